//! `db add-host NAME`: a host's login role in the group `ivmfa_host`, and everything else
//! the host needs, printed: its pg_hba.conf line, how to issue its client certificate (or,
//! with `--password-file`, a random password kept in a root-only file), and its ivmfa.toml.
//!
//! A password never reaches the server in the clear: the role gets the SCRAM-SHA-256
//! verifier, made here, as psql's `\password` does; the server's statement log cannot hold
//! the password.

use std::net::IpAddr;
use std::path::Path;

use ivmfa_core::logtext::printable;
use ivmfa_fleet::Type;
use ivmfa_sys::Level;
use zeroize::Zeroizing;

use crate::error::{CliError, Kind, Result};
use crate::fleet::{require_root, Admin};

/// Where the printed instructions put the host's files.
const HOST_CA: &str = "/etc/ivmfa/db-ca.pem";
const HOST_CERT: &str = "/etc/ivmfa/db-host.crt";
const HOST_KEY: &str = "/etc/ivmfa/db-host.key";
const HOST_PASSWORD: &str = "/etc/ivmfa/db-host.password";

/// Roles of the schema itself, which no host may be.
const RESERVED: [&str; 4] = ["ivmfa_owner", "ivmfa_host", "ivmfa_admin", "ivmfa_clock"];

/// A role name that needs no quoting anywhere it goes (SQL, pg_hba.conf, a certificate's
/// common name, ivmfa.toml): a lower-case letter, then lower-case letters, digits and `_`.
fn host_role(name: &str) -> Result<&str> {
    let plain = name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !plain || name.starts_with("pg_") || RESERVED.contains(&name) {
        return Err(CliError::new(
            Kind::Usage,
            format!("{:?} cannot be a host's role", printable(name)),
            "give 1 to 63 lower-case letters, digits and _, starting with a letter (not pg_ \
             and not one of the schema's own roles), e.g. host_web1",
        ));
    }
    Ok(name)
}

pub fn run(
    admin: &Admin,
    name: &str,
    address: Option<&str>,
    password_file: Option<&Path>,
) -> Result<()> {
    let role = host_role(name)?;
    let address: Option<IpAddr> = address
        .map(|a| {
            a.parse().map_err(|_| {
                CliError::new(
                    Kind::Usage,
                    format!("--address {:?} is not an IP address", printable(a)),
                    "give the address the host connects from, e.g. 10.0.1.21 or 2001:db8::21",
                )
            })
        })
        .transpose()?;
    if password_file.is_some() {
        require_root("db add-host --password-file")?;
    }
    let mut db = admin.connect()?;
    let rows = db
        .query(
            "SELECT pg_catalog.pg_has_role(r.oid, 'ivmfa_host', 'MEMBER') \
             FROM pg_catalog.pg_roles AS r WHERE r.rolname = $1",
            &[(&role, Type::TEXT)],
        )
        .map_err(|e| admin.error(e))?;
    if let Some(row) = rows.first() {
        let host: bool = row.try_get(0).unwrap_or(false);
        return Err(CliError::new(
            Kind::Refused,
            format!(
                "the role {role} exists already{}; nothing was changed",
                if host {
                    " (a member of ivmfa_host)"
                } else {
                    ", and is not a member of ivmfa_host"
                }
            ),
            "choose another name, or drop the old role first (DROP ROLE, as a superuser)",
        ));
    }

    // The password file first: should it fail, no role is left with a password nobody has.
    let password = match password_file {
        Some(path) => {
            let mut bytes = Zeroizing::new([0u8; 24]);
            ivmfa_core::random::fill(&mut *bytes)?;
            let text: Zeroizing<String> =
                Zeroizing::new(bytes.iter().map(|b| format!("{b:02x}")).collect());
            crate::enroll::write_private_file(path, format!("{}\n", text.as_str()).as_bytes())?;
            Some((path, text))
        }
        None => None,
    };
    let verifier = password
        .as_ref()
        .map(|(_, p)| postgres_protocol::password::scram_sha_256(p.as_bytes()));
    // The name is plain (checked above) and the verifier is base64 and `$:`, so neither
    // needs more than the quotes.
    let statement = format!(
        "CREATE ROLE \"{role}\" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION \
         NOBYPASSRLS IN ROLE ivmfa_host{}",
        verifier
            .as_ref()
            .map(|v| format!(" PASSWORD '{v}'"))
            .unwrap_or_default()
    );
    if let Err(e) = db.batch(&statement) {
        if let Some((path, _)) = &password {
            let _ = std::fs::remove_file(path);
        }
        return Err(admin.error(e));
    }
    let server = db.address();
    db.close();
    admin.audit(
        Level::Notice,
        &format!(
            "created the host role {role}{}",
            if password.is_some() {
                " with a password"
            } else {
                ""
            }
        ),
    );

    let from = match address {
        Some(IpAddr::V4(a)) => format!("{a}/32"),
        Some(IpAddr::V6(a)) => format!("{a}/128"),
        None => "ADDRESS/32".to_owned(),
    };
    println!(
        "Created the role {role} (LOGIN, a member of ivmfa_host, nothing else) in the database \
         {} on {server}.",
        admin.settings().database
    );
    let method = if password.is_some() {
        "scram-sha-256"
    } else {
        "cert"
    };
    println!(
        "\n1. On the database server, add this line to pg_hba.conf before any broader one, then \
         reload\n   (SELECT pg_reload_conf()){}:\n\n   hostssl {} {role} {from} {method}",
        if address.is_none() {
            ", ADDRESS being the host's"
        } else {
            ""
        },
        admin.settings().database
    );
    match &password {
        None => println!(
            "\n2. The host's client certificate, its common name the role. On the host, so that \
             its key\n   never leaves it:\n\n   \
             openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \\\n     \
             -keyout {HOST_KEY} -subj /CN={role} -out {role}.csr\n   \
             chmod 600 {HOST_KEY}\n\n   \
             Where the CA's key is (the CA of the server's ssl_ca_file), sign the request:\n\n   \
             printf 'basicConstraints=CA:false\\nextendedKeyUsage=clientAuth\\n' > {role}.ext\n   \
             openssl x509 -req -in {role}.csr -CA db-ca.pem -CAkey ca.key -CAcreateserial \\\n     \
             -days 825 -extfile {role}.ext -out {role}.crt\n\n   \
             Install {role}.crt on the host as {HOST_CERT}, and the CA that signed the \
             server's\n   certificate as {HOST_CA} (both root's, mode 0644)."
        ),
        Some((path, _)) => println!(
            "\n2. The role's password is in {} (root's, mode 0600). Copy it to the host as\n   \
             {HOST_PASSWORD} (root's, mode 0600), then remove it here. Install the CA that \
             signed\n   the server's certificate on the host as {HOST_CA} (root's, mode 0644).",
            path.display()
        ),
    }
    let addresses: Vec<String> = admin
        .config
        .db
        .addresses
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect();
    let credentials = match &password {
        None => format!("db_cert = \"{HOST_CERT}\"\n   db_key = \"{HOST_KEY}\""),
        Some(_) => format!("db_password_file = \"{HOST_PASSWORD}\""),
    };
    println!(
        "\n3. The host's /etc/ivmfa/ivmfa.toml:\n\n   \
         backend = \"postgres\"\n   \
         db_addresses = [{}]\n   \
         db_name = \"{}\"\n   \
         db_user = \"{role}\"\n   \
         db_ca = \"{HOST_CA}\"\n   \
         {credentials}\n\n\
         Then, on the host: ivmfa-enroll check",
        addresses.join(", "),
        admin.settings().database
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::host_role;

    #[test]
    fn host_roles_need_no_quoting_anywhere() {
        for good in ["host_web1", "a", "db2"] {
            assert!(host_role(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Host",
            "1host",
            "host-web1",
            "host web",
            "host\"",
            "pg_host",
            "ivmfa_host",
            "ivmfa_owner",
            &"h".repeat(64),
        ] {
            assert!(host_role(bad).is_err(), "{bad}");
        }
    }
}
