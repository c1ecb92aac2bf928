//! What every command needs: root, the resolved config, the store, the clock, the audit log.

use std::path::Path;

use ivmfa_core::config::{Backend, Config};
use ivmfa_core::logtext::printable;
use ivmfa_core::store::Store;
use ivmfa_core::username::UserName;
use ivmfa_sys::{Level, Passwd};

use crate::error::{CliError, Kind, Result};
use crate::fleet::{Admin, Login};

/// Where a command acts: the local store (as root), or the fleet database (as the
/// administrator's own role).
pub enum Target {
    Files(Context),
    Fleet(Admin),
}

impl Target {
    /// The config decides. Without root only the fleet is open: there the database, not
    /// this machine, decides what the administrator's role may do.
    pub fn resolve(config: Option<&Path>, store: Option<&Path>, login: &Login) -> Result<Target> {
        let euid = ivmfa_sys::euid();
        let resolved = resolve_config(config, euid);
        if euid != 0 {
            return match resolved {
                Ok(c) if c.backend == Backend::Postgres => {
                    Ok(Target::Fleet(Admin::new(c, login, actor())?))
                }
                _ => Err(not_root()),
            };
        }
        let config = resolved?;
        if config.backend == Backend::Postgres {
            return Ok(Target::Fleet(Admin::new(config, login, actor())?));
        }
        Ok(Target::Files(Context::with_config(config, store)?))
    }

    /// For the commands that exist only for the fleet database.
    pub fn fleet(
        config: Option<&Path>,
        store: Option<&Path>,
        login: &Login,
        command: &str,
    ) -> Result<Admin> {
        match Target::resolve(config, store, login)? {
            Target::Fleet(admin) => Ok(admin),
            Target::Files(_) => Err(CliError::new(
                Kind::Usage,
                format!(
                    "{command} acts on the fleet database, and the config says backend = \"files\""
                ),
                "set backend = \"postgres\" and the db_* keys (ivmfa.toml(5)), or name such a \
                 file with --config",
            )),
        }
    }
}

fn resolve_config(config: Option<&Path>, euid: u32) -> Result<Config> {
    let args: Vec<String> = config
        .map(|p| vec![format!("config={}", p.display())])
        .unwrap_or_default();
    // The administrator logs in as themselves: a host's role and credentials may be absent.
    Ok(Config::resolve_for_admin(&args, euid)?)
}

pub struct Context {
    pub config: Config,
    pub store: Store,
    pub now: u64,
    /// Who is acting, for the audit log: `root (uid 0, loginuid 1000, env SUDO_USER=alice)`.
    pub actor: String,
}

impl Context {
    /// The store the resolved `config` names (or `store`), as root.
    fn with_config(mut config: Config, store: Option<&Path>) -> Result<Context> {
        require_root()?;
        let euid = ivmfa_sys::euid();
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
    Err(not_root())
}

fn not_root() -> CliError {
    CliError::new(
        Kind::Refused,
        "ivmfa-enroll must be run as root: the store is readable by root only",
        "run it with sudo",
    )
}

/// The kernel's "nobody logged in" value of /proc/self/loginuid: (uid_t)-1.
const LOGINUID_UNSET: &str = "4294967295";

pub fn actor() -> String {
    let uid = ivmfa_sys::uid();
    let name = ivmfa_sys::passwd_by_uid(uid).ok().flatten().map(|p| p.name);
    let loginuid = std::fs::read_to_string("/proc/self/loginuid").ok();
    let sudo_user = std::env::var_os("SUDO_USER");
    describe_actor(
        name.as_deref(),
        uid,
        ivmfa_sys::euid(),
        loginuid.as_deref(),
        sudo_user.as_deref().map(|s| s.to_string_lossy()).as_deref(),
    )
}

/// The audit log's "by" part. The real uid and the login uid come from the kernel: the
/// login uid is set once at login (pam_loginuid) and kept across su and sudo, so it names
/// the person behind a shared root shell. SUDO_USER is only what the caller's environment
/// says, so the line marks it as such.
fn describe_actor(
    name: Option<&str>,
    uid: u32,
    euid: u32,
    loginuid: Option<&str>,
    sudo_user: Option<&str>,
) -> String {
    let mut ids = vec![format!("uid {uid}")];
    if euid != uid {
        ids.push(format!("euid {euid}"));
    }
    ids.push(match loginuid.map(str::trim) {
        Some(LOGINUID_UNSET) => "loginuid unset".to_owned(),
        Some(n) if n.parse::<u32>().is_ok() => format!("loginuid {n}"),
        // No audit support in the kernel, or no /proc.
        _ => "loginuid unknown".to_owned(),
    });
    if let Some(by) = sudo_user.filter(|s| !s.is_empty()) {
        ids.push(format!("env SUDO_USER={}", printable(by)));
    }
    format!("{} ({})", name.unwrap_or("?"), ids.join(", "))
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
    use super::{describe_actor, format_time};

    #[test]
    fn the_actor_names_every_id_and_marks_the_environment() {
        assert_eq!(
            describe_actor(Some("root"), 0, 0, Some("1000\n"), Some("alice")),
            "root (uid 0, loginuid 1000, env SUDO_USER=alice)"
        );
        assert_eq!(
            describe_actor(Some("root"), 0, 0, Some("4294967295"), None),
            "root (uid 0, loginuid unset)"
        );
        // A name the caller made up is escaped, so it cannot forge a second log line.
        assert_eq!(
            describe_actor(None, 1001, 0, None, Some("bob\nroot")),
            "? (uid 1001, euid 0, loginuid unknown, env SUDO_USER=bob\\nroot)"
        );
    }

    #[test]
    fn dates() {
        assert_eq!(format_time(0), "1970-01-01 00:00 UTC");
        assert_eq!(format_time(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(format_time(1_764_270_000), "2025-11-27 19:00 UTC");
    }
}
