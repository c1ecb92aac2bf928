//! What every command needs: root, the resolved config, the store, the clock, the audit log.

use std::path::Path;

use ivmfa_core::config::{printable, Config};
use ivmfa_core::store::Store;
use ivmfa_core::username::UserName;
use ivmfa_sys::{Level, Passwd};

use crate::error::{CliError, Kind, Result};

pub struct Context {
    pub config: Config,
    pub store: Store,
    pub now: u64,
    /// Who is acting, for the audit log: "root", or "root (sudo by alice)".
    pub actor: String,
}

impl Context {
    pub fn new(config: Option<&Path>, store: Option<&Path>) -> Result<Context> {
        require_root()?;
        let euid = ivmfa_sys::euid();
        let args: Vec<String> = config
            .map(|p| vec![format!("config={}", p.display())])
            .unwrap_or_default();
        let mut config = Config::resolve(&args, euid)?;
        if let Some(store) = store {
            config.set("store", Some(&store.display().to_string()))?;
        }
        let store = Store::new(&config.store, euid);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Ok(Context {
            config,
            store,
            now,
            actor: actor(),
        })
    }

    /// Writes one line to syslog (authpriv): who did what to whom. Never a secret or a code.
    pub fn audit(&self, level: Level, what: &str) {
        ivmfa_sys::syslog_authpriv(
            c"ivmfa-enroll",
            level,
            &format!("{what} (by {})", self.actor),
        );
    }
}

pub fn require_root() -> Result<()> {
    if ivmfa_sys::euid() == 0 {
        return Ok(());
    }
    Err(CliError::new(
        Kind::Refused,
        "ivmfa-enroll must be run as root: the store is readable by root only",
        "run it with sudo",
    ))
}

fn actor() -> String {
    let me = ivmfa_sys::passwd_by_uid(ivmfa_sys::uid())
        .ok()
        .flatten()
        .map_or_else(|| format!("uid {}", ivmfa_sys::uid()), |p| p.name);
    match std::env::var("SUDO_USER") {
        Ok(by) if !by.is_empty() && by != me => {
            format!("{me} (sudo by {})", ivmfa_core::config::printable(&by))
        }
        _ => me,
    }
}

/// Checks that a name can be a user name (it becomes a directory in the store).
pub fn user_name(name: &str) -> Result<UserName> {
    UserName::parse(name).ok_or_else(|| {
        CliError::new(
            Kind::Usage,
            format!("{:?} is not a valid user name", printable(name)),
            "use the login name as shown by getent passwd",
        )
    })
}

/// Checks a user name and that the user exists.
pub fn existing_user(name: &str) -> Result<(UserName, Passwd)> {
    let shown = printable(name);
    user_name(name)?;
    let pw = ivmfa_sys::passwd_by_name(name)
        .map_err(|e| {
            CliError::new(
                Kind::Failed,
                format!("cannot read the user database: {e}"),
                "check NSS (getent passwd)",
            )
        })?
        .ok_or_else(|| {
            CliError::new(
                Kind::Usage,
                format!("there is no user {shown}"),
                "create the account first, or check the spelling (getent passwd NAME)",
            )
        })?;
    // The store is keyed by the name as the user database spells it, as the module does:
    // with case-insensitive NSS, `Alice` and `alice` are one account and one enrollment.
    let user = user_name(&pw.name)?;
    Ok((user, pw))
}

/// `2026-11-27 19:30 UTC`.
pub fn format_time(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    use super::format_time;

    #[test]
    fn dates() {
        assert_eq!(format_time(0), "1970-01-01 00:00 UTC");
        assert_eq!(format_time(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(format_time(1_764_270_000), "2025-11-27 19:00 UTC");
    }
}
