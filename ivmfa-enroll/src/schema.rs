//! `db install` and `db upgrade`: the schema scripts built into this tool, and the version
//! each one leaves.
//!
//! Version 1 is installed whole (`sql/v1.sql`). Each later version comes as an upgrade
//! script from the version before it, `sql/upgrade-vN.sql`, added to [`UPGRADES`]: it runs
//! in one transaction of its own, checks that it finds version N - 1, and leaves N in
//! `ivmfa.meta`. `db install` applies v1 and then every upgrade in order, so a database
//! installed new and one upgraded step by step end the same. The fleet client
//! (`ivmfa_fleet::KNOWN_SCHEMA_VERSIONS`) must know the latest before a release ships it.

use std::time::Duration;

use ivmfa_core::logtext::printable;
use ivmfa_fleet::{connect_any_schema, Refusal, Session, Settings};
use ivmfa_sys::Level;

use crate::error::{CliError, Kind, Result};
use crate::fleet::Admin;

/// Version 1, whole.
const INSTALL: &str = include_str!("../sql/v1.sql");

/// One upgrade script: from `to - 1` to `to`.
struct Upgrade {
    to: i32,
    sql: &'static str,
}

/// In order, each from the version before it. None yet: version 1 is the first.
const UPGRADES: &[Upgrade] = &[];

/// A schema and its upgrades take a moment; nobody is waiting at a login for them.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);

/// The version this tool installs and upgrades to.
pub fn latest() -> i32 {
    UPGRADES.last().map_or(1, |u| u.to)
}

/// What `db upgrade` does with the version it finds.
#[derive(Debug, PartialEq, Eq)]
enum Plan {
    UpToDate,
    /// These upgrades, in order.
    Apply(Vec<i32>),
    /// Made by a newer ivmfa, or by none.
    Unknown,
}

fn plan(installed: i32) -> Plan {
    let latest = latest();
    if installed == latest {
        Plan::UpToDate
    } else if (1..latest).contains(&installed) {
        Plan::Apply(
            UPGRADES
                .iter()
                .filter(|u| u.to > installed)
                .map(|u| u.to)
                .collect(),
        )
    } else {
        Plan::Unknown
    }
}

fn upgrade_to(version: i32) -> Option<&'static Upgrade> {
    UPGRADES.iter().find(|u| u.to == version)
}

/// The role names the schema makes, for saying which were made and which were there.
const GROUPS: [&str; 3] = ["ivmfa_owner", "ivmfa_host", "ivmfa_admin"];

pub fn install(admin: &Admin) -> Result<()> {
    let settings = admin.settings();
    let mut did = Vec::new();
    let mut db = match connect_any_schema(settings) {
        Ok(db) => db,
        Err(e) if database_missing(&e) => {
            create_database(admin)?;
            did.push(format!(
                "created the database {} (UTF8, from template0)",
                settings.database
            ));
            connect_any_schema(settings).map_err(|e| admin.error(e))?
        }
        Err(e) => return Err(admin.error(e)),
    };
    if let Some(version) = db.installed_schema() {
        return Err(CliError::new(
            Kind::Refused,
            format!(
                "the database {} on {} has the ivmfa schema already (version {version}); \
                 nothing was changed",
                settings.database,
                db.address()
            ),
            "to bring it to this tool's version: ivmfa-enroll db upgrade",
        ));
    }
    db.renew_deadline(SCRIPT_TIMEOUT);
    let existing = existing_groups(&mut db).map_err(|e| admin.error(e))?;
    db.batch(INSTALL).map_err(|e| script_failed(admin, 1, &e))?;
    for u in UPGRADES {
        db.batch(u.sql)
            .map_err(|e| script_failed(admin, u.to, &e))?;
    }
    let version = version(&mut db).map_err(|e| admin.error(e))?;
    let recommended = recommend(&mut db);
    let address = db.address();
    db.close();

    let made: Vec<&str> = GROUPS
        .iter()
        .copied()
        .filter(|g| !existing.iter().any(|e| e == g))
        .collect();
    let kept: Vec<&str> = GROUPS
        .iter()
        .copied()
        .filter(|g| existing.iter().any(|e| e == g))
        .collect();
    admin.audit(
        Level::Notice,
        &format!("installed the schema, version {version}, on {address}"),
    );
    println!(
        "Connected to {address}, database {}, as role {}.",
        settings.database,
        printable(admin.role())
    );
    for line in &did {
        println!("- {line}");
    }
    println!(
        "- installed the ivmfa schema, version {version}, in one transaction:\n  \
         - the group roles (no login, no other rights): {}\n  \
         - the schema ivmfa (the tables; only ivmfa_owner may use it) with pgcrypto inside \
         it, and the schema ivmfa_api (the functions, each granted to ivmfa_host or \
         ivmfa_admin)\n  \
         - on the database {}: PUBLIC lost CONNECT and TEMP, ivmfa_host and ivmfa_admin may \
         connect; PUBLIC lost USAGE on the schema public and EXECUTE on the functions that \
         create large objects",
        describe_groups(&made, &kept),
        settings.database
    );
    let db_name = format!("\"{}\"", settings.database);
    for (name, value, what) in recommended {
        match what {
            Recommended::Set => println!(
                "- set {name} = '{value}' on the database {} (docs/fleet.md, \"Recommended \
                 server settings\"; ALTER DATABASE {db_name} RESET {name} undoes it)",
                settings.database
            ),
            Recommended::Kept { source } => println!(
                "- left {name} as the server has it (from: {source}; the recommendation is \
                 '{value}')"
            ),
            Recommended::Unknown => {
                println!("- {name}: this server does not have it (PostgreSQL 14 and later do)")
            }
            Recommended::Failed { why } => println!(
                "- could not set {name} ({}); as the database's owner: ALTER DATABASE \
                 {db_name} SET {name} = '{value}'",
                printable(&why)
            ),
        }
    }
    println!(
        "\nNext:\n  \
         - a role of your own to administer with, as a superuser:\n      \
         CREATE ROLE NAME LOGIN IN ROLE ivmfa_admin;\n    \
         and a hostssl line for it in pg_hba.conf (cert, or scram-sha-256 with a password)\n  \
         - each host: ivmfa-enroll --db-user {} db add-host NAME",
        printable(admin.role())
    );
    Ok(())
}

pub fn upgrade(admin: &Admin) -> Result<()> {
    let settings = admin.settings();
    let mut db = connect_any_schema(settings).map_err(|e| admin.error(e))?;
    let address = db.address();
    let Some(installed) = db.installed_schema() else {
        return Err(CliError::new(
            Kind::Refused,
            format!(
                "the database {} on {address} has no ivmfa schema to upgrade",
                settings.database
            ),
            "install it: ivmfa-enroll db install",
        ));
    };
    match plan(installed) {
        Plan::UpToDate => {
            println!(
                "The schema of the database {} on {address} is up to date: version \
                 {installed}, the latest this ivmfa-enroll knows.",
                settings.database
            );
            Ok(())
        }
        Plan::Unknown => Err(CliError::new(
            Kind::Refused,
            format!(
                "the database {} on {address} has schema version {installed}, which this \
                 ivmfa-enroll does not know (it knows versions up to {}); nothing was changed",
                settings.database,
                latest()
            ),
            "use the ivmfa-enroll of the release that made it (a schema is never \
             downgraded), and give the hosts that release too",
        )),
        Plan::Apply(versions) => {
            db.renew_deadline(SCRIPT_TIMEOUT);
            let mut from = installed;
            for to in versions {
                let Some(u) = upgrade_to(to) else {
                    continue;
                };
                db.batch(u.sql).map_err(|e| script_failed(admin, to, &e))?;
                let now = version(&mut db).map_err(|e| admin.error(e))?;
                if now != to {
                    return Err(CliError::new(
                        Kind::Failed,
                        format!("the upgrade to version {to} left version {now}"),
                        "check the database server's log",
                    ));
                }
                admin.audit(
                    Level::Notice,
                    &format!("upgraded the schema from version {from} to {to} on {address}"),
                );
                println!("Upgraded the schema from version {from} to {to}.");
                from = to;
            }
            db.close();
            println!(
                "The schema of the database {} on {address} is now version {from}.",
                settings.database
            );
            Ok(())
        }
    }
}

/// The server said the database does not exist (SQLSTATE 3D000) for every address tried.
fn database_missing(e: &ivmfa_fleet::Error) -> bool {
    match e {
        ivmfa_fleet::Error::Unavailable { tried, .. } => {
            !tried.is_empty()
                && tried
                    .iter()
                    .all(|(_, why)| matches!(why, Refusal::Handshake(t) if t.contains("3D000")))
        }
        _ => false,
    }
}

/// The server settings docs/fleet.md recommends for the fleet's database: a statement a
/// login abandoned at its deadline while waiting for a lock ends within a second instead of
/// running when the lock comes free, and a session left idle inside a transaction (the
/// usual holder of a stuck lock) ends after a minute. Both only guard against accidents:
/// any role may set them back for its own sessions.
const RECOMMENDED: [(&str, &str); 2] = [
    ("client_connection_check_interval", "1s"),
    ("idle_in_transaction_session_timeout", "60s"),
];

/// What became of one of [`RECOMMENDED`].
enum Recommended {
    Set,
    /// The server has a value from elsewhere (postgresql.conf, ALTER SYSTEM, the database
    /// or a role): that one stands.
    Kept {
        source: String,
    },
    /// The server does not know it (`client_connection_check_interval` is PostgreSQL 14's).
    Unknown,
    /// Refused (not the database's owner, or a platform that cannot check the client): the
    /// schema is installed all the same.
    Failed {
        why: String,
    },
}

/// Sets each of [`RECOMMENDED`] on the database connected to, where the server has no
/// value of its own for it. After the schema has committed: a setting that cannot be set is
/// a note for the administrator, never the install's failure.
fn recommend(db: &mut Session) -> Vec<(&'static str, &'static str, Recommended)> {
    RECOMMENDED
        .iter()
        .map(|&(name, value)| (name, value, recommend_one(db, name, value)))
        .collect()
}

fn recommend_one(db: &mut Session, name: &str, value: &str) -> Recommended {
    let failed = |e: ivmfa_fleet::Error| Recommended::Failed { why: e.to_string() };
    let source = match db.query(
        "SELECT source FROM pg_catalog.pg_settings WHERE name = $1",
        &[(&name, ivmfa_fleet::Type::TEXT)],
    ) {
        Ok(rows) => match rows.first().map(|r| r.try_get::<_, String>(0)) {
            None => return Recommended::Unknown,
            Some(Ok(source)) => source,
            Some(Err(e)) => return Recommended::Failed { why: e.to_string() },
        },
        Err(e) => return failed(e),
    };
    if source != "default" {
        return Recommended::Kept { source };
    }
    // The database connected to, whatever name a pooler may have given it; the setting and
    // its value are ours.
    match db.batch(&format!(
        "DO $$BEGIN EXECUTE pg_catalog.format('ALTER DATABASE %I SET {name} = %L', \
         pg_catalog.current_database(), '{value}'); END$$"
    )) {
        Ok(()) => Recommended::Set,
        Err(e) => failed(e),
    }
}

/// `CREATE DATABASE`, from the maintenance database `postgres`, as the same role.
fn create_database(admin: &Admin) -> Result<()> {
    let settings = admin.settings();
    let maintenance = Settings {
        database: "postgres".to_owned(),
        ..settings.clone()
    };
    let cannot = |why: String| {
        CliError::new(
            Kind::Failed,
            format!(
                "the database {} does not exist, and it cannot be created: {why}",
                settings.database
            ),
            format!(
                "create it on the server (createdb -E UTF8 -T template0 {}), or let the role \
                 {} connect to the database postgres, then run db install again",
                settings.database,
                printable(admin.role())
            ),
        )
    };
    let mut db = connect_any_schema(&maintenance).map_err(|e| cannot(e.to_string()))?;
    // The name passed the config's check (letters, digits, '_', '-', '.'), so quoting it is
    // enough.
    db.batch(&format!(
        "CREATE DATABASE \"{}\" ENCODING 'UTF8' TEMPLATE template0",
        settings.database
    ))
    .map_err(|e| cannot(e.to_string()))?;
    db.close();
    admin.audit(
        Level::Notice,
        &format!("created the database {}", settings.database),
    );
    Ok(())
}

fn existing_groups(db: &mut Session) -> std::result::Result<Vec<String>, ivmfa_fleet::Error> {
    let rows = db.query(
        "SELECT rolname::text FROM pg_catalog.pg_roles WHERE rolname = ANY($1)",
        &[(&GROUPS.as_slice(), ivmfa_fleet::Type::TEXT_ARRAY)],
    )?;
    Ok(rows
        .iter()
        .filter_map(|r| r.try_get::<_, String>(0).ok())
        .collect())
}

fn describe_groups(made: &[&str], kept: &[&str]) -> String {
    match (made.is_empty(), kept.is_empty()) {
        (false, true) => format!("{} created", made.join(", ")),
        (true, false) => format!("{} were there and were checked", kept.join(", ")),
        _ => format!(
            "{} created; {} were there and were checked",
            made.join(", "),
            kept.join(", ")
        ),
    }
}

fn version(db: &mut Session) -> std::result::Result<i32, ivmfa_fleet::Error> {
    let rows = db.query("SELECT ivmfa_api.schema_version()", &[])?;
    rows.first()
        .and_then(|r| r.try_get::<_, i32>(0).ok())
        .ok_or_else(|| ivmfa_fleet::Error::Answer("schema_version() answered nothing".into()))
}

fn script_failed(admin: &Admin, version: i32, e: &ivmfa_fleet::Error) -> CliError {
    let mut err = admin.error(ivmfa_fleet::Error::Statement(format!(
        "the script for schema version {version} failed, and was rolled back whole: {e}"
    )));
    if !e.to_string().contains("42501") {
        err.hint = "the message above says what the script refused; the roles installing needs \
                    are in docs/SCHEMA.md (Installing)"
            .to_owned();
    }
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_follows_the_version_found() {
        assert_eq!(latest(), 1);
        assert_eq!(plan(1), Plan::UpToDate);
        assert_eq!(plan(2), Plan::Unknown);
        assert_eq!(plan(0), Plan::Unknown);
        assert_eq!(plan(-3), Plan::Unknown);
    }

    #[test]
    fn upgrades_follow_each_other_and_the_client_knows_the_last() {
        for (expected, u) in (2..).zip(UPGRADES) {
            assert_eq!(u.to, expected, "upgrades must go one version at a time");
            assert!(u.sql.contains("BEGIN") && u.sql.contains("COMMIT"));
        }
        assert!(ivmfa_fleet::KNOWN_SCHEMA_VERSIONS.contains(&latest()));
        assert!(INSTALL.contains("INSERT INTO ivmfa.meta (schema_version) VALUES (1)"));
    }
}
