//! Where to connect and as whom: the database's addresses, the pinned CA, and the
//! credentials of a host (root's files named in ivmfa.toml) or of an administrator (their
//! own client certificate, or a password from their `~/.pgpass`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ivmfa_core::config::FleetDb;

use crate::error::Error;

/// How the role proves who it is, besides TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credentials {
    /// A client certificate (PEM, with any intermediates after it) and its private key (PEM:
    /// PKCS#8, SEC1 or PKCS#1); the server's pg_hba line says `cert`.
    Certificate { cert: PathBuf, key: PathBuf },
    /// A file holding the role's password (its first line), for `scram-sha-256`.
    PasswordFile(PathBuf),
    /// A libpq password file (`host:port:database:user:password` lines, `*` for any field),
    /// as an administrator keeps in `~/.pgpass` or names in `PGPASSFILE`. The line for the
    /// address connected to is used.
    PgPass(PathBuf),
}

/// Who may own the credential files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// Root, or the process's effective uid: a host's files, named in the root-owned config.
    System,
    /// Exactly this user, with no hard links: an administrator's files in their home
    /// directory (root's files there are not theirs to hand over).
    User(u32),
}

/// Everything a connection needs. Nothing here is secret: keys and passwords are read from
/// their files, checked, when a connection is made, and wiped after.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Tried in order; the first read-write primary is used.
    pub addresses: Vec<SocketAddr>,
    pub database: String,
    pub user: String,
    /// The pinned CA (PEM): the only root the server's certificate may chain to. It must be
    /// owned by root or the effective uid and not writable by others, whoever connects.
    pub ca: PathBuf,
    pub credentials: Credentials,
    /// Who may own the credential files (the CA is always root's or `euid`'s).
    pub owner: Owner,
    /// The process's effective uid, trusted beside root to own the files.
    pub euid: u32,
    /// One deadline for connect, TLS, authentication and every statement of a session.
    pub timeout: Duration,
    /// Shown in `pg_stat_activity` and the server's log.
    pub application_name: String,
}

impl Settings {
    /// A host's settings from its ivmfa.toml (`db_*` keys), its files owned by root or
    /// `euid`. The config has been checked complete (`Config::resolve`); a field missing
    /// anyway is an error, never a default.
    pub fn for_host(db: &FleetDb, euid: u32) -> Result<Settings, Error> {
        let missing = |key: &str| Error::Settings(format!("{key} is not set"));
        let credentials = match (&db.cert, &db.key, &db.password_file) {
            (Some(cert), Some(key), None) => Credentials::Certificate {
                cert: cert.clone(),
                key: key.clone(),
            },
            (None, None, Some(file)) => Credentials::PasswordFile(file.clone()),
            _ => {
                return Err(Error::Settings(
                    "set db_cert and db_key, or db_password_file".into(),
                ))
            }
        };
        if db.addresses.is_empty() {
            return Err(missing("db_addresses"));
        }
        Ok(Settings {
            addresses: db.addresses.clone(),
            database: db.name.clone(),
            user: db.user.clone().ok_or_else(|| missing("db_user"))?,
            ca: db.ca.clone().ok_or_else(|| missing("db_ca"))?,
            credentials,
            owner: Owner::System,
            euid,
            timeout: Duration::from_millis(db.timeout_ms),
            application_name: "pam_ivmfa".to_owned(),
        })
    }
}

/// The password file libpq would read for the invoking user: `PGPASSFILE` if set, else
/// `.pgpass` in `home`. The caller decides whose environment and home these are (under sudo,
/// the administrator's, not root's).
pub fn pgpass_path(pgpassfile: Option<&Path>, home: &Path) -> PathBuf {
    match pgpassfile {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => home.join(".pgpass"),
    }
}
