//! Module options and `/etc/ivmfa/ivmfa.toml`.
//!
//! Both sources go through one setter ([`Config::set`]), so a key means the same thing and is
//! checked the same way wherever it is written. The file is read first and module arguments
//! override it. Anything unknown or out of range is an error, and the caller denies: a typo in
//! a security setting must never quietly fall back to something weaker.

use std::fmt;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::domain::format::parse_toml;
use crate::error::{Error, Result};
use crate::logtext::printable;
use crate::safefile::Policy;
use crate::state::RateLimit;

pub const DEFAULT_CONFIG: &str = "/etc/ivmfa/ivmfa.toml";
pub const DEFAULT_STORE: &str = "/var/lib/ivmfa";
pub(crate) const DEFAULT_PROMPT: &str = "Verification code: ";
/// The default prompt with `forward_pass`, where one answer holds the password and the code.
pub(crate) const FORWARD_PASS_PROMPT: &str = "Password & verification code: ";
pub(crate) const DEFAULT_RESET_MESSAGE: &str =
    "Your request to reset multi-factor authentication has \
been sent to the administrators. They will decide whether it can safely be reset; expect an \
answer within 24 hours on work days.";
/// Steps on each side of now; RFC 6238 §5.2 recommends at most one.
pub(crate) const MAX_WINDOW: u8 = 10;
/// Counters a hardware token may be ahead of the server; each one more accepts one more code
/// per guess.
pub(crate) const MAX_HOTP_WINDOW: u8 = 50;
const MAX_CONFIG_LEN: u64 = 64 * 1024;
/// Longest value of any key but `reset_message`, which may be a paragraph.
const MAX_VALUE_LEN: usize = 256;
const MAX_MESSAGE_LEN: usize = 1024;
const CONFIG_HINT: &str = "fix the file (the keys are described in ivmfa.toml(5))";

/// What happens to a user who has no enrollment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unenrolled {
    /// Deny the login (the default).
    Deny,
    /// Step aside with PAM_IGNORE, for a staged rollout.
    Allow,
    /// Enroll in-band during the login.
    Enroll,
}

/// Where enrollments, watermarks, failure counts and reset requests are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The local store under `store` (the default).
    Files,
    /// The fleet's PostgreSQL database, asked through its host API (docs/fleet.md).
    Postgres,
}

/// Most addresses `db_addresses` may list.
pub const MAX_DB_ADDRESSES: usize = 16;
/// `db_timeout_ms` bounds: below a tenth of a second even a healthy loopback server misses it.
const DB_TIMEOUT_MS: RangeInclusive<u64> = 100..=60_000;

/// How a host reaches the fleet database (`backend = "postgres"`). Nothing here is secret:
/// the key and the password stay in their files until a connection reads them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetDb {
    /// Servers to try in order; the first that is a read-write primary is used. IP literals
    /// only: a name would be resolved on a helper thread inside sshd.
    pub addresses: Vec<SocketAddr>,
    /// `db_name`.
    pub name: String,
    /// `db_user`: this host's login role. No default: the role is named where it is made
    /// (and, with a client certificate, is the certificate's common name).
    pub user: Option<String>,
    /// The pinned CA (PEM) the server's certificate must chain to.
    pub ca: Option<PathBuf>,
    /// The host's client certificate (PEM) and its key.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// A file holding the role's password, instead of a client certificate.
    pub password_file: Option<PathBuf>,
    /// One deadline for a database round: connect, TLS, authentication and every statement.
    pub timeout_ms: u64,
}

impl Default for FleetDb {
    fn default() -> Self {
        FleetDb {
            addresses: Vec::new(),
            name: "ivmfa".to_owned(),
            user: None,
            ca: None,
            cert: None,
            key: None,
            password_file: None,
            timeout_ms: 3000,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub store: PathBuf,
    pub unenrolled: Unenrolled,
    pub window: u8,
    /// Codes a counter-based token may be ahead of the counter expected next.
    pub hotp_window: u8,
    pub prompt: String,
    pub exempt_group: Option<String>,
    pub debug: bool,
    pub rate_limit: RateLimit,
    /// The issuer shown in authenticator apps; the host name when unset.
    pub issuer: Option<String>,
    /// Typed at the code prompt, files a lost-device request; empty disables.
    pub reset_keyword: String,
    pub reset_message: String,
    /// Run (absolute path, no arguments) when a reset request is filed.
    pub notify_command: Option<PathBuf>,
    pub notify_timeout: u64,
    /// Seconds an approved reset lets the user enroll afresh.
    pub ticket_lifetime: u64,
    /// Draw the QR code in the login for a light terminal background instead of a dark one.
    pub qr_light_background: bool,
    /// The PAM services the module acts for; empty means every one. Others get PAM_IGNORE.
    pub services: Vec<String>,
    /// PAM services the module leaves alone (PAM_IGNORE), so that a stack shared by every
    /// service (common-auth) can leave out those that cannot ask a second question. A list
    /// of exceptions rather than of the services judged: one forgotten here is judged, and
    /// fails closed, where one forgotten in `services` (polkit, cockpit) would pass on the
    /// password alone.
    pub skip_services: Vec<String>,
    /// One prompt for the password and the code typed after it; the code is judged here and
    /// the password handed on (PAM_AUTHTOK) to the password module after this one.
    pub forward_pass: bool,
    /// Take the answer from PAM_AUTHTOK, set by an earlier module; ask if there is none.
    pub try_first_pass: bool,
    /// Take the answer from PAM_AUTHTOK, set by an earlier module; deny if there is none.
    pub use_first_pass: bool,
    /// Show what is typed at the code prompt (PAM_PROMPT_ECHO_ON).
    pub echo_code: bool,
    /// Seconds after a right code from a remote address during which the same user's logins
    /// from that address skip the code; 0 (the default) turns it off.
    pub grace_period: u64,
    pub backend: Backend,
    /// The fleet database, with `backend = "postgres"`.
    pub db: FleetDb,
    /// Members may pass at the console (a local terminal) with the password alone while no
    /// server of the fleet database can be reached.
    pub break_glass_group: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            store: PathBuf::from(DEFAULT_STORE),
            unenrolled: Unenrolled::Deny,
            window: 1,
            hotp_window: 10,
            prompt: DEFAULT_PROMPT.to_owned(),
            exempt_group: None,
            debug: false,
            rate_limit: RateLimit::default(),
            issuer: None,
            reset_keyword: "reset".to_owned(),
            reset_message: DEFAULT_RESET_MESSAGE.to_owned(),
            notify_command: None,
            notify_timeout: 10,
            ticket_lifetime: 72 * 3600,
            qr_light_background: false,
            services: Vec::new(),
            skip_services: Vec::new(),
            forward_pass: false,
            try_first_pass: false,
            use_first_pass: false,
            echo_code: false,
            grace_period: 0,
            backend: Backend::Files,
            db: FleetDb::default(),
            break_glass_group: None,
        }
    }
}

/// Who reads the configuration, which decides what a fleet config must hold.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reader {
    /// The module, and tools that act as the host: everything a host needs.
    Host,
    /// An administrator's tool, with credentials of its own.
    Administrator,
}

impl Config {
    /// Resolves the configuration from module arguments (`key=value` words) and the config
    /// file they name (or the default one, which may be absent). `euid` is the process's
    /// effective uid, trusted beside root as the owner of the file.
    pub fn resolve(args: &[String], euid: u32) -> Result<Config> {
        Config::resolve_as(args, euid, Reader::Host)
    }

    /// [`Config::resolve`] for an administrator's tool on the fleet database, which logs in
    /// with the administrator's own credentials: a host's role and credentials (`db_user`,
    /// `db_cert` and `db_key` or `db_password_file`) may be left out, so that a machine that
    /// is no host needs only the database's addresses, name and CA. Whatever is set is
    /// still checked.
    pub fn resolve_for_admin(args: &[String], euid: u32) -> Result<Config> {
        Config::resolve_as(args, euid, Reader::Administrator)
    }

    fn resolve_as(args: &[String], euid: u32, reader: Reader) -> Result<Config> {
        let args = split_args(args)?;
        let mut config = Config::default();
        let explicit = args.iter().find(|(k, _)| *k == "config").map(|(_, v)| *v);
        let path = match explicit {
            Some(Some(p)) => PathBuf::from(p),
            Some(None) => return Err(Error::Config("option config needs a value".into())),
            None => PathBuf::from(DEFAULT_CONFIG),
        };
        config.read_file(&path, explicit.is_some(), euid)?;
        for (key, value) in args.iter().filter(|(k, _)| *k != "config") {
            config.set(key, *value)?;
        }
        config.check(reader)?;
        Ok(config)
    }

    fn read_file(&mut self, path: &Path, required: bool, euid: u32) -> Result<()> {
        let policy = Policy {
            owner: euid,
            max_len: MAX_CONFIG_LEN,
            private: false,
            strict_owner: false,
        };
        let text = match policy.read_text(path)? {
            Some(text) => text,
            None if required => {
                return Err(Error::Config(format!(
                    "config file {} does not exist",
                    path.display()
                )))
            }
            None => return Ok(()),
        };
        self.apply_file_text(&text, path)
    }

    /// Applies the keys of a config file's text; `path` names it in errors.
    pub fn apply_file_text(&mut self, text: &str, path: &Path) -> Result<()> {
        let table: toml::Table = parse_toml(text, path, CONFIG_HINT)?;
        for (key, value) in &table {
            if key == "config" {
                return Err(Error::Config(format!(
                    "{}: the key config is only valid as a module argument",
                    path.display()
                )));
            }
            let not_a_value = || {
                Error::Config(format!(
                    "{}: {key} must be a string, a number, true/false or a list of strings",
                    path.display()
                ))
            };
            let value = match value {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                // A list is the file's spelling of a comma-separated value.
                toml::Value::Array(items) => items
                    .iter()
                    .map(|v| v.as_str().map(str::to_owned).ok_or_else(not_a_value))
                    .collect::<Result<Vec<_>>>()?
                    .join(","),
                _ => return Err(not_a_value()),
            };
            self.set(key, Some(&value)).map_err(|e| match e {
                Error::Config(msg) => Error::Config(format!("{}: {msg}", path.display())),
                other => other,
            })?;
        }
        Ok(())
    }

    /// Sets one key. `value` is `None` for a bare word such as `debug`.
    pub fn set(&mut self, key: &str, value: Option<&str>) -> Result<()> {
        let bad =
            |what: &str| Error::Config(format!("{key}={}: {what}", printable(value.unwrap_or(""))));
        let max = if key == "reset_message" {
            MAX_MESSAGE_LEN
        } else {
            MAX_VALUE_LEN
        };
        if value.is_some_and(|v| v.len() > max) {
            return Err(Error::Config(format!(
                "the value of {} is longer than {max} bytes",
                printable(key)
            )));
        }
        if let Some(switch) = self.switch(key) {
            *switch = match value {
                None => true,
                Some(v) => on_off(v).ok_or_else(|| bad("must be true or false"))?,
            };
            return Ok(());
        }
        match (key, value) {
            ("nullok", None) => self.unenrolled = Unenrolled::Allow,
            (_, None) => {
                return Err(Error::Config(format!(
                    "option {} needs a value (key=value)",
                    printable(key)
                )))
            }
            ("store", Some(v)) => self.store = absolute(v).map_err(|m| bad(&m))?,
            ("unenrolled", Some(v)) => {
                self.unenrolled = match v {
                    "deny" => Unenrolled::Deny,
                    "allow" | "nullok" => Unenrolled::Allow,
                    "enroll" => Unenrolled::Enroll,
                    _ => return Err(bad("must be deny, allow (or nullok) or enroll")),
                }
            }
            ("window", Some(v)) => {
                self.window = number(v, 0..=MAX_WINDOW, "").map_err(|m| bad(&m))?;
            }
            ("hotp_window", Some(v)) => {
                self.hotp_window = number(v, 0..=MAX_HOTP_WINDOW, "").map_err(|m| bad(&m))?;
            }
            ("prompt", Some(v)) => {
                if v.trim().is_empty() || v.chars().any(char::is_control) {
                    return Err(bad("must be non-empty text without control characters"));
                }
                self.prompt = v.to_owned();
            }
            ("exempt_group", Some(v)) => {
                self.exempt_group = Some(group_name(v).map_err(|m| bad(&m))?);
            }
            ("break_glass_group", Some(v)) => {
                self.break_glass_group = Some(group_name(v).map_err(|m| bad(&m))?);
            }
            ("backend", Some(v)) => {
                self.backend = match v {
                    "files" => Backend::Files,
                    "postgres" => Backend::Postgres,
                    _ => return Err(bad("must be files or postgres")),
                }
            }
            ("db_addresses", Some(v)) => {
                self.db.addresses = db_addresses(v).map_err(|m| bad(&m))?;
            }
            ("db_name", Some(v)) => self.db.name = role_name(v).map_err(|m| bad(&m))?,
            ("db_user", Some(v)) => self.db.user = Some(role_name(v).map_err(|m| bad(&m))?),
            ("db_ca", Some(v)) => self.db.ca = Some(absolute(v).map_err(|m| bad(&m))?),
            ("db_cert", Some(v)) => self.db.cert = Some(absolute(v).map_err(|m| bad(&m))?),
            ("db_key", Some(v)) => self.db.key = Some(absolute(v).map_err(|m| bad(&m))?),
            ("db_password_file", Some(v)) => {
                self.db.password_file = Some(absolute(v).map_err(|m| bad(&m))?)
            }
            ("db_timeout_ms", Some(v)) => {
                self.db.timeout_ms =
                    number(v, DB_TIMEOUT_MS, "of milliseconds ").map_err(|m| bad(&m))?;
            }
            ("issuer", Some(v)) => {
                if v.trim().is_empty()
                    || v.len() > 64
                    || v.contains(':')
                    || v.chars().any(char::is_control)
                {
                    return Err(bad("must be 1 to 64 characters, without ':'"));
                }
                self.issuer = Some(v.to_owned());
            }
            ("max_failures", Some(v)) => {
                self.rate_limit.max_failures = number(v, 1..=1000, "").map_err(|m| bad(&m))?;
            }
            ("reset_keyword", Some(v)) => {
                if v.len() > 32 || !v.chars().all(|c| c.is_ascii_alphabetic()) {
                    return Err(bad(
                        "must be a word of letters (or empty to disable reset requests)",
                    ));
                }
                self.reset_keyword = v.to_owned();
            }
            ("reset_message", Some(v)) => {
                if v.trim().is_empty() || v.chars().any(|c| c.is_control() && c != '\n') {
                    return Err(bad("must be non-empty text"));
                }
                self.reset_message = v.to_owned();
            }
            ("notify_command", Some(v)) => {
                if !v.starts_with('/') || v.contains(char::is_whitespace) {
                    return Err(bad("must be the absolute path of a program (no arguments)"));
                }
                self.notify_command = Some(PathBuf::from(v));
            }
            ("notify_timeout_seconds", Some(v)) => {
                self.notify_timeout = number(v, 1..=300, "of seconds ").map_err(|m| bad(&m))?;
            }
            ("ticket_lifetime_hours", Some(v)) => {
                self.ticket_lifetime =
                    number(v, 1..=8760, "of hours ").map_err(|m| bad(&m))? * 3600;
            }
            ("qr_background", Some(v)) => {
                self.qr_light_background = match v {
                    "dark" => false,
                    "light" => true,
                    _ => return Err(bad("must be dark or light")),
                }
            }
            ("services", Some(v)) => self.services = service_list(v).map_err(|m| bad(&m))?,
            ("skip_services", Some(v)) => {
                self.skip_services = service_list(v).map_err(|m| bad(&m))?
            }
            ("max_failures_per_user", Some(v)) => {
                self.rate_limit.max_failures_per_user =
                    number(v, 1..=10_000, "").map_err(|m| bad(&m))?;
            }
            ("backoff_seconds", Some(v)) => {
                self.rate_limit.backoff =
                    number(v, 1..=86_400, "of seconds ").map_err(|m| bad(&m))?;
            }
            ("grace_period", Some(v)) => {
                self.grace_period =
                    number(v, 0..=crate::grace::MAX_PERIOD, "of seconds ").map_err(|m| bad(&m))?;
            }
            ("max_backoff_seconds", Some(v)) => {
                self.rate_limit.max_backoff =
                    number(v, 1..=86_400, "of seconds ").map_err(|m| bad(&m))?;
            }
            _ => return Err(Error::Config(format!("unknown option {}", printable(key)))),
        }
        Ok(())
    }

    /// The on/off keys: a bare word turns one on, `key=true` or `key=false` sets it. The
    /// google-authenticator spelling `echo_verification_code` is kept, so that a stack moves
    /// over by changing the module's name.
    fn switch(&mut self, key: &str) -> Option<&mut bool> {
        Some(match key {
            "debug" => &mut self.debug,
            "forward_pass" => &mut self.forward_pass,
            "try_first_pass" => &mut self.try_first_pass,
            "use_first_pass" => &mut self.use_first_pass,
            "echo_code" | "echo_verification_code" => &mut self.echo_code,
            _ => return None,
        })
    }

    /// Whether the answer is taken from PAM_AUTHTOK when an earlier module set it.
    pub(crate) fn first_pass(&self) -> bool {
        self.try_first_pass || self.use_first_pass
    }

    /// The prompt asked: with `forward_pass`, the default one asks for the password too; a
    /// prompt the administrator set is asked as written.
    pub(crate) fn asked_prompt(&self) -> &str {
        if self.forward_pass && self.prompt == DEFAULT_PROMPT {
            FORWARD_PASS_PROMPT
        } else {
            &self.prompt
        }
    }

    /// Whether the module judges logins of `service` (see [`Config::services`] and
    /// [`Config::skip_services`]).
    pub(crate) fn acts_for(&self, service: &str) -> bool {
        (self.services.is_empty() || self.services.iter().any(|s| s == service))
            && !self.skip_services.iter().any(|s| s == service)
    }

    fn check(&self, reader: Reader) -> Result<()> {
        if self.try_first_pass && self.use_first_pass {
            // One asks when no earlier module took an answer, the other denies: no reading of
            // both is obviously the one meant.
            return Err(Error::Config(
                "try_first_pass and use_first_pass exclude each other; set one".into(),
            ));
        }
        if self.rate_limit.max_backoff < self.rate_limit.backoff {
            return Err(Error::Config(format!(
                "max_backoff_seconds ({}) is smaller than backoff_seconds ({})",
                self.rate_limit.max_backoff, self.rate_limit.backoff
            )));
        }
        if self.backend == Backend::Postgres {
            self.check_fleet(reader)?;
        }
        Ok(())
    }

    /// What `backend = "postgres"` needs, and what it cannot do.
    fn check_fleet(&self, reader: Reader) -> Result<()> {
        let refuse = |why: &str| Err(Error::Config(format!("backend = \"postgres\": {why}")));
        let db = &self.db;
        if db.addresses.is_empty() {
            return refuse("db_addresses is not set (IP:PORT of the database servers)");
        }
        let host = reader == Reader::Host;
        if db.user.is_none() && host {
            return refuse("db_user is not set (this host's database role)");
        }
        if db.ca.is_none() {
            return refuse("db_ca is not set (the CA that signed the server's certificate)");
        }
        match (&db.cert, &db.key, &db.password_file) {
            (Some(_), Some(_), None) | (None, None, Some(_)) => {}
            (None, None, None) if !host => {}
            (Some(_), None, _) | (None, Some(_), _) => {
                return refuse("db_cert and db_key go together");
            }
            (Some(_), Some(_), Some(_)) => {
                return refuse("set db_cert and db_key, or db_password_file, not both");
            }
            (None, None, None) => {
                return refuse("set db_cert and db_key (a client certificate) or db_password_file");
            }
        }
        // One answer carrying the password and the code: the password must never reach the
        // database, and cutting a recovery code from it could judge one answer twice.
        if self.forward_pass {
            return refuse("forward_pass is not available with the fleet database");
        }
        Ok(())
    }

    /// One line for the debug log: every key, as resolved. (Nothing here is secret; text the
    /// administrator wrote is escaped like any log text.)
    pub(crate) fn summary(&self) -> String {
        let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
        format!(
            "store={} unenrolled={} window={} hotp_window={} prompt=\"{}\" exempt_group={} debug={} \
             max_failures={} max_failures_per_user={} backoff_seconds={} \
             max_backoff_seconds={} issuer={} reset_keyword=\"{}\" reset_message=\"{}\" \
             notify_command={} notify_timeout_seconds={} ticket_lifetime_hours={} \
             qr_background={} services={} skip_services={} forward_pass={} \
             try_first_pass={} use_first_pass={} echo_code={} \
             grace_period={} backend={} db_addresses={} db_name={} db_user={} db_ca={} \
             db_cert={} db_key={} db_password_file={} db_timeout_ms={} break_glass_group={}",
            self.store.display(),
            format!("{:?}", self.unenrolled).to_lowercase(),
            self.window,
            self.hotp_window,
            printable(&self.prompt),
            or_dash(self.exempt_group.as_deref().map(printable)),
            self.debug,
            self.rate_limit.max_failures,
            self.rate_limit.max_failures_per_user,
            self.rate_limit.backoff,
            self.rate_limit.max_backoff,
            or_dash(self.issuer.as_deref().map(printable)),
            printable(&self.reset_keyword),
            printable(&self.reset_message),
            or_dash(
                self.notify_command
                    .as_ref()
                    .map(|p| printable(&p.to_string_lossy()))
            ),
            self.notify_timeout,
            self.ticket_lifetime / 3600,
            if self.qr_light_background {
                "light"
            } else {
                "dark"
            },
            if self.services.is_empty() {
                "(all)".to_owned()
            } else {
                self.services.join(",")
            },
            if self.skip_services.is_empty() {
                "-".to_owned()
            } else {
                self.skip_services.join(",")
            },
            self.forward_pass,
            self.try_first_pass,
            self.use_first_pass,
            self.echo_code,
            self.grace_period,
            match self.backend {
                Backend::Files => "files",
                Backend::Postgres => "postgres",
            },
            if self.db.addresses.is_empty() {
                "-".to_owned()
            } else {
                let all: Vec<String> = self.db.addresses.iter().map(|a| a.to_string()).collect();
                all.join(",")
            },
            self.db.name,
            or_dash(self.db.user.clone()),
            or_dash(path(&self.db.ca)),
            or_dash(path(&self.db.cert)),
            or_dash(path(&self.db.key)),
            or_dash(path(&self.db.password_file)),
            self.db.timeout_ms,
            or_dash(self.break_glass_group.as_deref().map(printable)),
        )
    }
}

fn path(p: &Option<PathBuf>) -> Option<String> {
    p.as_ref().map(|p| printable(&p.to_string_lossy()))
}

/// An absolute path, or why not.
fn absolute(text: &str) -> std::result::Result<PathBuf, String> {
    if !text.starts_with('/') || text.chars().any(char::is_control) {
        return Err("must be an absolute path".into());
    }
    Ok(PathBuf::from(text))
}

fn group_name(text: &str) -> std::result::Result<String, String> {
    if text.is_empty() || text.chars().any(|c| c.is_control() || c == ':' || c == '/') {
        return Err("must be a group name".into());
    }
    Ok(text.to_owned())
}

/// A database or role name as sent in the start-up message: never part of SQL text, but kept
/// to a plain spelling that needs no quoting anywhere it is shown.
fn role_name(text: &str) -> std::result::Result<String, String> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if text.is_empty() || text.len() > 63 || !text.chars().all(plain) {
        return Err("must be 1 to 63 letters, digits, '_', '-' or '.'".into());
    }
    Ok(text.to_owned())
}

/// `IP:PORT` literals separated by commas (`10.0.0.5:5432,[2001:db8::5]:5432`). Names are
/// refused: resolving one inside sshd starts helper threads and depends on the resolver.
fn db_addresses(text: &str) -> std::result::Result<Vec<SocketAddr>, String> {
    let how = "must be IP:PORT addresses separated by commas (10.0.0.5:5432, [2001:db8::5]:5432); \
               host names are not accepted";
    let mut out: Vec<SocketAddr> = Vec::new();
    for word in text.split(',').map(str::trim) {
        let addr: SocketAddr = word.parse().map_err(|_| how.to_owned())?;
        if addr.port() == 0 || addr.ip().is_unspecified() || addr.ip().is_multicast() {
            return Err(how.into());
        }
        if !out.contains(&addr) {
            out.push(addr);
        }
    }
    if out.is_empty() || out.len() > MAX_DB_ADDRESSES {
        return Err(format!("{how}; at most {MAX_DB_ADDRESSES}"));
    }
    Ok(out)
}

/// An on/off value as the config file and module arguments spell it.
fn on_off(text: &str) -> Option<bool> {
    match text {
        "true" | "yes" | "1" => Some(true),
        "false" | "no" | "0" => Some(false),
        _ => None,
    }
}

/// PAM service names separated by commas (`sshd,login`), or why not.
fn service_list(text: &str) -> std::result::Result<Vec<String>, String> {
    let names: Vec<String> = text
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect();
    let is_service =
        |n: &String| n.len() <= 64 && n.chars().all(|c| c.is_ascii_graphic() && c != '/');
    if names.is_empty() || names.len() > 64 || !names.iter().all(is_service) {
        return Err("must be PAM service names separated by commas (sshd,login,su,sudo)".into());
    }
    Ok(names)
}

/// Splits `key=value` words, refusing a key given twice: with two values for one security
/// setting, no choice between them is obviously the one the administrator meant.
fn split_args(args: &[String]) -> Result<Vec<(&str, Option<&str>)>> {
    let mut out: Vec<(&str, Option<&str>)> = Vec::with_capacity(args.len());
    for arg in args {
        let (key, value) = match arg.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (arg.as_str(), None),
        };
        if out.iter().any(|(k, _)| *k == key) {
            return Err(Error::Config(format!(
                "option {} is given more than once",
                printable(key)
            )));
        }
        out.push((key, value));
    }
    Ok(out)
}

/// A whole number in `range`, or what to tell about it (`unit`, if any, ends with a space).
fn number<T>(text: &str, range: RangeInclusive<T>, unit: &str) -> std::result::Result<T, String>
where
    T: FromStr + PartialOrd + fmt::Display,
{
    match text.parse::<T>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(format!(
            "must be a whole number {unit}from {} to {}",
            range.start(),
            range.end()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_debug_line_names_every_key() {
        let keys = [
            "store",
            "unenrolled",
            "window",
            "hotp_window",
            "prompt",
            "exempt_group",
            "debug",
            "max_failures",
            "max_failures_per_user",
            "backoff_seconds",
            "max_backoff_seconds",
            "issuer",
            "reset_keyword",
            "reset_message",
            "notify_command",
            "notify_timeout_seconds",
            "ticket_lifetime_hours",
            "qr_background",
            "services",
            "skip_services",
            "forward_pass",
            "try_first_pass",
            "use_first_pass",
            "echo_code",
            "grace_period",
            "backend",
            "db_addresses",
            "db_name",
            "db_user",
            "db_ca",
            "db_cert",
            "db_key",
            "db_password_file",
            "db_timeout_ms",
            "break_glass_group",
        ];
        let line = Config::default().summary();
        for key in keys {
            assert!(
                line.contains(&format!(" {key}=")) || line.starts_with(&format!("{key}=")),
                "{key}: {line}"
            );
        }
        // And every key the setter knows is in that list.
        for key in keys {
            let mut c = Config::default();
            let known = !matches!(c.set(key, Some("")), Err(Error::Config(m)) if m.starts_with("unknown option"));
            assert!(known, "{key}");
        }
    }

    fn args(words: &[&str]) -> Vec<String> {
        words.iter().map(|s| s.to_string()).collect()
    }

    fn resolve(words: &[&str]) -> Result<Config> {
        // Never read the machine's /etc/ivmfa: default to an empty file of our own.
        let mut all = args(words);
        if !words.iter().any(|w| w.starts_with("config=")) {
            all.push(format!("config={}", empty_file().display()));
        }
        Config::resolve(&all, current_euid())
    }

    fn current_euid() -> u32 {
        use std::os::unix::fs::MetadataExt;
        // A file we just created is owned by our effective uid.
        std::fs::metadata(empty_file()).unwrap().uid()
    }

    fn empty_file() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ivmfa-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("empty.toml");
        std::fs::write(&p, "").unwrap();
        p
    }

    #[test]
    fn defaults() {
        let c = Config::default();
        assert_eq!(c.window, 1);
        assert_eq!(c.hotp_window, 10);
        assert_eq!(c.unenrolled, Unenrolled::Deny);
        assert_eq!(c.prompt, "Verification code: ");
        assert_eq!(c.store, PathBuf::from("/var/lib/ivmfa"));
    }

    #[test]
    fn setter_accepts_every_documented_key() {
        let mut c = Config::default();
        c.set("store", Some("/tmp/s")).unwrap();
        c.set("unenrolled", Some("nullok")).unwrap();
        assert_eq!(c.unenrolled, Unenrolled::Allow);
        c.set("unenrolled", Some("enroll")).unwrap();
        c.set("window", Some("3")).unwrap();
        c.set("hotp_window", Some("0")).unwrap();
        c.set("hotp_window", Some("50")).unwrap();
        assert_eq!(c.hotp_window, 50);
        c.set("prompt", Some("Code: ")).unwrap();
        c.set("exempt_group", Some("wheel")).unwrap();
        c.set("debug", None).unwrap();
        c.set("max_failures", Some("5")).unwrap();
        c.set("backoff_seconds", Some("10")).unwrap();
        c.set("max_backoff_seconds", Some("60")).unwrap();
        c.set("issuer", Some("Example Corp")).unwrap();
        c.set("grace_period", Some("86400")).unwrap();
        assert_eq!(c.grace_period, 86_400);
        c.set("grace_period", Some("0")).unwrap();
        assert_eq!(c.grace_period, 0);
        assert!(c.set("issuer", Some("a:b")).is_err());
        assert_eq!(c.window, 3);
        assert!(c.debug);
        assert_eq!(c.rate_limit.max_failures, 5);
    }

    #[test]
    fn bad_values_are_errors() {
        let mut c = Config::default();
        for (k, v) in [
            ("store", Some("relative")),
            ("unenrolled", Some("maybe")),
            ("window", Some("11")),
            ("window", Some("-1")),
            ("window", Some("")),
            ("hotp_window", Some("51")),
            ("hotp_window", Some("-1")),
            ("prompt", Some("")),
            ("prompt", Some("a\nb")),
            ("debug", Some("perhaps")),
            ("max_failures", Some("0")),
            ("backoff_seconds", Some("x")),
            ("frobnicate", Some("1")),
            ("window", None),
            ("grace_period", Some("86401")),
            ("grace_period", Some("-1")),
            ("grace_period", Some("1h")),
            ("grace_period", Some("")),
        ] {
            assert!(c.set(k, v).is_err(), "{k}={v:?}");
        }
        let huge = "9".repeat(10_000);
        assert!(c.set("window", Some(&huge)).is_err());
    }

    #[test]
    fn google_authenticator_switches_as_words_keys_and_values() {
        let c = resolve(&["forward_pass", "use_first_pass", "echo_verification_code"]).unwrap();
        assert!(c.forward_pass && c.use_first_pass && c.echo_code && !c.try_first_pass);
        assert_eq!(c.asked_prompt(), FORWARD_PASS_PROMPT);
        let c = resolve(&["forward_pass", "prompt=Token:"]).unwrap();
        assert_eq!(
            c.asked_prompt(),
            "Token:",
            "a prompt set is asked as written"
        );
        let c = resolve(&["echo_code=true", "try_first_pass=yes", "debug=0"]).unwrap();
        assert!(c.echo_code && c.try_first_pass && !c.debug);
        assert_eq!(resolve(&[]).unwrap().asked_prompt(), DEFAULT_PROMPT);
        // Both first-pass modes at once is a mistake, wherever they were set.
        assert!(resolve(&["try_first_pass", "use_first_pass"]).is_err());
        assert!(resolve(&["forward_pass=maybe"]).is_err());

        let dir = empty_file().parent().unwrap().join("switches");
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("ivmfa.toml");
        std::fs::write(&p, "forward_pass = true\nuse_first_pass = true\n").unwrap();
        let file = format!("config={}", p.display());
        let c = resolve(&[&file]).unwrap();
        assert!(c.forward_pass && c.use_first_pass);
        // An argument switches a file's key off, as it overrides any other key.
        let c = resolve(&[&file, "use_first_pass=false", "try_first_pass"]).unwrap();
        assert!(c.try_first_pass && !c.use_first_pass);
        assert!(resolve(&[&file, "try_first_pass"]).is_err());
    }

    #[test]
    fn duplicates_and_unknown_arguments_fail() {
        assert!(resolve(&["window=1", "window=2"]).is_err());
        assert!(resolve(&["bogus=1"]).is_err());
        assert!(resolve(&["max_backoff_seconds=5", "backoff_seconds=10"]).is_err());
        assert_eq!(resolve(&["window=2"]).unwrap().window, 2);
    }

    #[test]
    fn file_values_apply_and_arguments_win() {
        let dir = empty_file().parent().unwrap().join("win");
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("ivmfa.toml");
        std::fs::write(&p, "window = 3\ndebug = true\nprompt = \"Code: \"\n").unwrap();
        let c = resolve(&[&format!("config={}", p.display()), "window=0"]).unwrap();
        assert_eq!(c.window, 0);
        assert!(c.debug);
        assert_eq!(c.prompt, "Code: ");

        std::fs::write(&p, "window = [1]\n").unwrap();
        assert!(resolve(&[&format!("config={}", p.display())]).is_err());
        std::fs::write(&p, "not toml at all").unwrap();
        assert!(resolve(&[&format!("config={}", p.display())]).is_err());
        let missing = dir.join("missing.toml");
        assert!(resolve(&[&format!("config={}", missing.display())]).is_err());
    }

    #[test]
    fn fleet_keys_take_ip_literals_and_absolute_paths() {
        let mut c = Config::default();
        c.set("backend", Some("postgres")).unwrap();
        assert_eq!(c.backend, Backend::Postgres);
        c.set(
            "db_addresses",
            Some("10.0.0.5:5432, [2001:db8::5]:6432,10.0.0.5:5432"),
        )
        .unwrap();
        assert_eq!(c.db.addresses.len(), 2, "a repeated address is kept once");
        assert_eq!(c.db.addresses[1].to_string(), "[2001:db8::5]:6432");
        c.set("db_name", Some("ivmfa_prod")).unwrap();
        c.set("db_user", Some("host_web1")).unwrap();
        c.set("db_ca", Some("/etc/ivmfa/db-ca.pem")).unwrap();
        c.set("db_timeout_ms", Some("250")).unwrap();
        c.set("break_glass_group", Some("breakglass")).unwrap();
        assert_eq!(c.db.timeout_ms, 250);
        for (k, v) in [
            ("backend", "sqlite"),
            ("db_addresses", "db.example.com:5432"),
            ("db_addresses", "localhost:5432"),
            ("db_addresses", "10.0.0.5"),
            ("db_addresses", "10.0.0.5:0"),
            ("db_addresses", "0.0.0.0:5432"),
            ("db_addresses", "::1:5432"),
            ("db_addresses", ""),
            ("db_addresses", "10.0.0.5:5432,,10.0.0.6:5432"),
            ("db_name", "ivmfa; DROP"),
            ("db_user", ""),
            ("db_user", &"x".repeat(64)),
            ("db_ca", "relative/ca.pem"),
            ("db_key", "key.pem"),
            ("db_timeout_ms", "99"),
            ("db_timeout_ms", "60001"),
            ("break_glass_group", "a:b"),
        ] {
            assert!(c.set(k, Some(v)).is_err(), "{k}={v}");
        }
        let many: Vec<String> = (1..=17).map(|i| format!("10.0.0.{i}:5432")).collect();
        assert!(c.set("db_addresses", Some(&many.join(","))).is_err());
    }

    #[test]
    fn a_fleet_config_must_be_complete_and_refuses_what_it_cannot_do() {
        let base = [
            "backend=postgres",
            "db_addresses=127.0.0.1:5432",
            "db_user=host_a",
            "db_ca=/etc/ivmfa/ca.pem",
        ];
        let with = |extra: &[&str]| {
            let mut words: Vec<&str> = base.to_vec();
            words.extend_from_slice(extra);
            resolve(&words)
        };
        let cert = ["db_cert=/etc/ivmfa/host.crt", "db_key=/etc/ivmfa/host.key"];
        let c = with(&cert).unwrap();
        assert_eq!(c.db.name, "ivmfa");
        assert_eq!(c.db.timeout_ms, 3000);
        with(&["db_password_file=/etc/ivmfa/db-password"]).unwrap();
        for bad in [
            &[][..],
            &["db_cert=/etc/ivmfa/host.crt"][..],
            &["db_key=/etc/ivmfa/host.key"][..],
            &[cert[0], cert[1], "db_password_file=/etc/ivmfa/p"][..],
            &[cert[0], cert[1], "forward_pass"][..],
        ] {
            assert!(with(bad).is_err(), "{bad:?}");
        }
        for missing in 1..base.len() {
            let mut words: Vec<&str> = base.to_vec();
            words.remove(missing);
            words.extend_from_slice(&cert);
            assert!(resolve(&words).is_err(), "without {}", base[missing]);
        }
        // try_first_pass and use_first_pass work with the fleet: the answer is submitted.
        with(&[cert[0], cert[1], "try_first_pass"]).unwrap();
        // Grace periods too: the database keeps them, per host role.
        assert_eq!(
            with(&[cert[0], cert[1], "grace_period=60"])
                .unwrap()
                .grace_period,
            60
        );
        // The file store takes none of this into account.
        resolve(&["grace_period=60", "forward_pass"]).unwrap();
    }

    #[test]
    fn an_administrators_fleet_config_needs_no_host_role_or_credentials() {
        let admin = |words: &[&str]| {
            let mut all = args(words);
            all.push(format!("config={}", empty_file().display()));
            Config::resolve_for_admin(&all, current_euid())
        };
        let base = [
            "backend=postgres",
            "db_addresses=127.0.0.1:5432",
            "db_ca=/etc/ivmfa/ca.pem",
        ];
        admin(&base).unwrap();
        // What the module needs: refused to it.
        assert!(resolve(&base).is_err());
        // Whatever is set is still checked.
        let half = [base[0], base[1], base[2], "db_cert=/etc/ivmfa/host.crt"];
        assert!(admin(&half).is_err());
        for missing in 1..base.len() {
            let mut words = base.to_vec();
            words.remove(missing);
            assert!(admin(&words).is_err(), "without {}", base[missing]);
        }
    }

    #[test]
    fn toml_errors_do_not_quote_the_file() {
        let secret_line = "secret = \"JBSWY3DPEHPK3PXP\" oops";
        let err = parse_toml::<toml::Table>(secret_line, Path::new("f"), "")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("JBSWY3DP"), "{err}");
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn printable_escapes_and_caps() {
        assert_eq!(printable("a\nb"), "a\\nb");
        assert!(printable(&"x".repeat(1000)).len() < 80);
    }
}
