//! The administrator at the fleet database (`backend = "postgres"`): who connects (their own
//! role, never the host's), with which credentials, and one database round per step of a
//! command, so that no connection is held while someone types.
//!
//! The role is `--db-user`, else the invoking user's login name (under sudo, the user who
//! ran sudo, not root). It proves itself with `--db-cert` and `--db-key`, else with a
//! password from `PGPASSFILE` or `~/.pgpass` of that user, as libpq would find it. Those
//! files must be that user's own: root's files are not theirs to hand over. The server, its
//! CA and the database name come from the config, as for the host.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ivmfa_core::config::Config;
use ivmfa_core::logtext::printable;
use ivmfa_fleet::{Credentials, Owner, Session, Settings, TlsSessions};
use ivmfa_sys::Level;

use crate::error::{CliError, Kind, Result};

/// How the administrator asked to connect (the global options).
#[derive(Clone, Copy, Debug, Default)]
pub struct Login<'a> {
    pub user: Option<&'a str>,
    pub cert: Option<&'a Path>,
    pub key: Option<&'a Path>,
}

/// The person behind the command: whose role and whose files.
struct Invoker {
    name: String,
    uid: u32,
    home: PathBuf,
}

/// Under sudo the person is SUDO_USER (only root gets here with it honoured, and root could
/// read their files anyway); otherwise the real uid's account.
fn invoker() -> Result<Invoker> {
    let lookup_failed = |e: std::io::Error| {
        CliError::new(
            Kind::Failed,
            format!("cannot read the user database: {e}"),
            "check NSS (getent passwd)",
        )
    };
    let sudo_user = std::env::var("SUDO_USER")
        .ok()
        .filter(|n| !n.is_empty() && n != "root");
    let entry = match sudo_user {
        Some(name) if ivmfa_sys::uid() == 0 => {
            ivmfa_sys::passwd_by_name(&name).map_err(lookup_failed)?
        }
        _ => ivmfa_sys::passwd_by_uid(ivmfa_sys::uid()).map_err(lookup_failed)?,
    };
    let pw = entry.ok_or_else(|| {
        CliError::new(
            Kind::Failed,
            "the user running this command is not in the user database",
            "run it as a user with an account (getent passwd), or give --db-user",
        )
    })?;
    Ok(Invoker {
        name: pw.name,
        uid: pw.uid,
        home: pw.home,
    })
}

/// An administrator's connection settings, and the config they came with.
pub struct Admin {
    pub config: Config,
    settings: Settings,
    /// Shared by the command's connections (PgBouncer resumes them).
    tls: TlsSessions,
    /// Who is acting, for syslog (as the file store's commands say it).
    actor: String,
}

/// Longer than a login's: an administrator's statements may take a while (an import, a
/// schema), and nobody waits at a login prompt for them.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(60);

impl Admin {
    /// The settings for `login` on the database the fleet config names.
    pub fn new(config: Config, login: &Login, actor: String) -> Result<Admin> {
        let who = invoker()?;
        let user = match login.user {
            Some(role) => {
                if role.is_empty() || role.len() > 63 || role.chars().any(char::is_control) {
                    return Err(CliError::new(
                        Kind::Usage,
                        format!("--db-user {:?} is not a role name", printable(role)),
                        "give the database role as it was created (1 to 63 characters)",
                    ));
                }
                role.to_owned()
            }
            None => who.name.clone(),
        };
        let credentials = match (login.cert, login.key) {
            (Some(cert), Some(key)) => Credentials::Certificate {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
            },
            _ => Credentials::PgPass(ivmfa_fleet::pgpass_path(
                std::env::var_os("PGPASSFILE").as_deref().map(Path::new),
                &who.home,
            )),
        };
        let Some(ca) = config.db.ca.clone() else {
            return Err(CliError::new(
                Kind::Usage,
                "db_ca is not set in the config",
                "set db_ca to the CA that signed the database servers' certificates",
            ));
        };
        let settings = Settings {
            addresses: config.db.addresses.clone(),
            database: config.db.name.clone(),
            user,
            ca,
            credentials,
            owner: Owner::User(who.uid),
            euid: ivmfa_sys::euid(),
            timeout: Duration::from_millis(config.db.timeout_ms),
            application_name: "ivmfa-enroll".to_owned(),
        };
        Ok(Admin {
            config,
            settings,
            tls: TlsSessions::default(),
            actor,
        })
    }

    /// The role this command acts as.
    pub fn role(&self) -> &str {
        &self.settings.user
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// A connection with the schema known (within db_timeout_ms), then a longer deadline for
    /// the statements that follow.
    pub fn connect(&self) -> Result<Session> {
        let mut session =
            ivmfa_fleet::connect(&self.settings, &self.tls).map_err(|e| self.error(e))?;
        session.renew_deadline(STATEMENT_TIMEOUT);
        Ok(session)
    }

    /// One round: connect, `calls`, close.
    pub fn round<T>(
        &self,
        calls: impl FnOnce(&mut Session) -> std::result::Result<T, ivmfa_fleet::Error>,
    ) -> Result<T> {
        let mut session = self.connect()?;
        let answer = calls(&mut session).map_err(|e| self.error(e))?;
        session.close();
        Ok(answer)
    }

    /// A database failure, with what to check.
    pub fn error(&self, e: ivmfa_fleet::Error) -> CliError {
        db_error(&e, self.role())
    }

    /// One syslog line (authpriv): who did what, and as which database role. The database
    /// keeps its own audit row with the role.
    pub fn audit(&self, level: Level, what: &str) {
        ivmfa_sys::syslog_authpriv(
            c"ivmfa-enroll",
            level,
            &format!(
                "{what} in the fleet database (by {}, as role {})",
                self.actor,
                printable(self.role())
            ),
        );
    }
}

/// What went wrong at the database, and what to check. A refused right names the group the
/// role lacks.
pub fn db_error(e: &ivmfa_fleet::Error, role: &str) -> CliError {
    use ivmfa_fleet::Error as E;
    let text = e.to_string();
    let role = printable(role);
    let hint = if text.contains("42501") {
        format!(
            "the role {role} lacks the right: an administrator's role must be a member of \
             ivmfa_admin (as a superuser: GRANT ivmfa_admin TO {role})"
        )
    } else {
        match e {
            E::Settings(_) | E::File(_) => "check the db_* keys of the config, and your own \
                 --db-cert and --db-key (yours, the key mode 0600), PGPASSFILE or ~/.pgpass (yours, \
                 mode 0600)"
                .to_owned(),
            E::Unavailable { .. } => format!(
                "check db_addresses and db_ca, that the server is up and lets the role {role} \
                 in over TLS (pg_hba.conf), and its credentials: --db-cert and --db-key, or a \
                 line for it in PGPASSFILE or ~/.pgpass"
            ),
            _ => "check the database server's log".to_owned(),
        }
    };
    CliError::new(Kind::Failed, format!("fleet database: {text}"), hint)
}

/// Refuses a command that changes the host itself or runs programs as root, without root.
pub fn require_root(what: &str) -> Result<()> {
    if ivmfa_sys::euid() == 0 {
        return Ok(());
    }
    Err(CliError::new(
        Kind::Refused,
        format!("{what} must be run as root"),
        "run it with sudo",
    ))
}
