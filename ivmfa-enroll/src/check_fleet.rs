//! `check` with `backend = "postgres"`: what this host's logins will meet at the database.
//! It connects as the module does (the host's role and files, TLS verified against the
//! pinned CA, one deadline), reads the schema version, and then tries what must fail: to read
//! each table of the schema as the host. A host role that can read one could read every
//! user's key; one that is a member of the administrators' or the owner's role could act as
//! them. It reads nothing even where it could (`LIMIT 0`).

use ivmfa_core::config::Config;
use ivmfa_fleet::{Session, Settings, Type};

use crate::check::Report;

/// The tables of schema version 1, asked for by name as well as found in the catalog: a
/// table the catalog hides from the host is tried all the same.
const TABLES: [&str; 16] = [
    "meta",
    "settings",
    "account",
    "secret",
    "token_counter",
    "grace",
    "pending_enrollment",
    "failure",
    "recovery_set",
    "recovery_code",
    "attempt",
    "reset_request",
    "ticket",
    "notice",
    "pending_setup",
    "audit",
];

pub fn check(r: &mut Report, config: &Config) {
    let settings = match Settings::for_host(&config.db, ivmfa_sys::euid()) {
        Ok(s) => s,
        Err(e) => {
            r.problem(
                &format!("fleet database: {e}"),
                "set the db_* keys (ivmfa.toml(5)); until then every login is denied",
            );
            return;
        }
    };
    let mut db = match ivmfa_fleet::connect(&settings, &Default::default()) {
        Ok(db) => db,
        Err(e) => {
            r.problem(
                &format!("fleet database, as this host (role {}): {e}", settings.user),
                "until the host can connect, every login through pam_ivmfa is denied as \
                 unavailable (break_glass_group aside); check db_addresses, db_ca, the host's \
                 certificate or password file, the server's pg_hba.conf, and that the role \
                 exists (ivmfa-enroll db add-host)",
            );
            return;
        }
    };
    r.ok(&format!(
        "fleet database {} on {}: connected over TLS as the host role {}, in {} ms or less",
        settings.database,
        db.address(),
        settings.user,
        config.db.timeout_ms
    ));
    r.ok(&format!(
        "fleet database schema version {} (this ivmfa knows {})",
        db.schema_version(),
        known()
    ));
    check_role(r, &mut db, &settings.user);
    check_tables(r, &mut db, &settings.user);
    db.close();
}

fn known() -> String {
    let v: Vec<String> = ivmfa_fleet::KNOWN_SCHEMA_VERSIONS
        .iter()
        .map(i32::to_string)
        .collect();
    v.join(", ")
}

/// The host role must be a plain login role in `ivmfa_host`, nothing more.
fn check_role(r: &mut Report, db: &mut Session, role: &str) {
    let asked = db.query(
        "SELECT r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolbypassrls, \
                pg_catalog.pg_has_role(r.oid, 'ivmfa_host', 'MEMBER'), \
                pg_catalog.pg_has_role(r.oid, 'ivmfa_admin', 'MEMBER'), \
                pg_catalog.pg_has_role(r.oid, 'ivmfa_owner', 'MEMBER') \
           FROM pg_catalog.pg_roles AS r WHERE r.rolname = current_user",
        &[],
    );
    let row = match asked {
        Ok(rows) if rows.len() == 1 => rows.into_iter().next(),
        Ok(_) => None,
        Err(e) => {
            r.problem(
                &format!("fleet database: cannot read the host role's attributes: {e}"),
                "check the database server's log",
            );
            return;
        }
    };
    let Some(row) = row else {
        r.problem(
            "fleet database: the host role is not in pg_roles",
            "check the database server",
        );
        return;
    };
    let flag = |i: usize| row.try_get::<_, bool>(i).unwrap_or(true);
    let mut powers = Vec::new();
    for (i, what) in [
        (0, "SUPERUSER"),
        (1, "CREATEROLE"),
        (2, "CREATEDB"),
        (3, "BYPASSRLS"),
        (5, "a member of ivmfa_admin"),
        (6, "a member of ivmfa_owner"),
    ] {
        if flag(i) {
            powers.push(what);
        }
    }
    if !powers.is_empty() {
        r.problem(
            &format!(
                "fleet database: the host role {role} is {}: root on this host could act as \
                 an administrator for every user",
                powers.join(", ")
            ),
            &format!(
                "a host role is a login role in ivmfa_host and nothing else: ALTER ROLE {role} \
                 NOSUPERUSER NOCREATEROLE NOCREATEDB NOBYPASSRLS, and REVOKE the memberships"
            ),
        );
    } else if !flag(4) {
        r.problem(
            &format!("fleet database: the host role {role} is not a member of ivmfa_host"),
            &format!("as a superuser: GRANT ivmfa_host TO {role}"),
        );
    } else {
        r.ok(&format!(
            "fleet database: {role} is a plain member of ivmfa_host"
        ));
    }
}

/// Each table must refuse the host (SQLSTATE 42501, insufficient privilege).
fn check_tables(r: &mut Report, db: &mut Session, role: &str) {
    let mut tables: Vec<String> = TABLES.iter().map(|t| (*t).to_owned()).collect();
    if let Ok(rows) = db.query(
        "SELECT c.relname::text FROM pg_catalog.pg_class AS c \
           JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace \
          WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f')",
        &[(&"ivmfa", Type::TEXT)],
    ) {
        for row in rows {
            if let Ok(name) = row.try_get::<_, String>(0) {
                if !tables.contains(&name) {
                    tables.push(name);
                }
            }
        }
    }
    let mut readable = Vec::new();
    let mut odd = Vec::new();
    for table in &tables {
        // The name is quoted as an identifier: catalog names are not to be trusted as SQL.
        let sql = format!(
            "SELECT FROM ivmfa.\"{}\" LIMIT 0",
            table.replace('"', "\"\"")
        );
        match db.query(&sql, &[]) {
            Ok(_) => readable.push(table.clone()),
            Err(e) if e.to_string().contains("42501") => {}
            // A table of the list missing from this schema version is no risk.
            Err(e) if e.to_string().contains("42P01") => {}
            Err(e) => odd.push(format!("{table}: {e}")),
        }
    }
    if !readable.is_empty() {
        r.problem(
            &format!(
                "fleet database: the host role {role} can read {}: root on this host can read \
                 every user's key, recovery hashes and state",
                readable
                    .iter()
                    .map(|t| format!("ivmfa.{t}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            &format!(
                "only ivmfa_owner may use the schema ivmfa: REVOKE ALL ON SCHEMA ivmfa FROM \
                 {role}, PUBLIC; REVOKE ALL ON ALL TABLES IN SCHEMA ivmfa FROM {role}, PUBLIC \
                 (and from every group {role} is in but ivmfa_host); then check again"
            ),
        );
    } else if odd.is_empty() {
        r.ok(&format!(
            "fleet database: the host role {role} is refused every table of the schema ({} \
             tried)",
            tables.len()
        ));
    }
    for line in odd {
        r.problem(
            &format!("fleet database: reading a table as the host failed oddly: {line}"),
            "check the database server's log",
        );
    }
}
