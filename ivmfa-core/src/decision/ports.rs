//! What the decision needs from around it: the system ([`Host`]), the person ([`Conversation`]),
//! the facts of the login ([`Login`]), and what it answers ([`Verdict`]). The PAM module
//! implements them over libpam and libc; the core's tests, with a fake clock and user database.

use std::path::Path;

use zeroize::Zeroizing;

use crate::error::Result;
use crate::fleet_api::FleetApi;
use crate::logtext::printable;

/// How the module should answer libpam.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The code was right (or the user is exempt): PAM_SUCCESS.
    Success,
    /// Not our business (unenrolled user, `unenrolled=allow`): PAM_IGNORE.
    Ignore,
    /// Wrong, replayed or missing code, rate limited, not enrolled: PAM_AUTH_ERR.
    AuthErr,
    /// No such user, or a name that cannot be a user: PAM_USER_UNKNOWN.
    UserUnknown,
    /// The conversation failed: PAM_CONV_ERR.
    ConvErr,
    /// Configuration, store or system failure: PAM_SERVICE_ERR.
    ServiceErr,
}

/// syslog priorities the core uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    Error,
    Warning,
    Notice,
    Info,
    Debug,
}

/// A user as the user database knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// The name as the database spells it (`pw_name`).
    pub name: String,
    pub uid: u32,
}

/// The system around the login: clock, identity, randomness, user database, log.
pub trait Host {
    fn euid(&self) -> u32;
    /// The real uid when the application called the module: the invoking user of a setuid
    /// program (even while the module runs with real uid 0), root for a daemon such as sshd.
    fn uid(&self) -> u32;
    /// Seconds since the Unix epoch.
    fn now(&self) -> u64;
    /// Fills `buf` from a cryptographically secure source.
    fn random(&self, buf: &mut [u8]) -> Result<()>;
    /// The user as the user database knows it, or `None` if there is no such user. NSS may
    /// resolve `ALICE` or `alice@domain` to alice; the store is keyed by the database's
    /// spelling ([`Account::name`]) so such spellings cannot miss an enrollment.
    fn account(&self, user: &str) -> Result<Option<Account>>;
    /// `Ok(None)` if the group does not exist.
    fn in_group(&self, user: &str, group: &str) -> Result<Option<bool>>;
    fn log(&self, priority: Priority, message: &str);
    /// Hands `password` on to the modules after this one as PAM_AUTHTOK (`forward_pass`).
    /// A host that cannot fails, and the login is denied: a password module expecting it
    /// would otherwise find nothing.
    fn hand_on_password(&self, password: &str) -> Result<()> {
        let _ = password;
        Err(crate::Error::System(
            "this host cannot hand a password on to the next module".into(),
        ))
    }
    /// The client of the fleet database (`backend = "postgres"`). A host without one (the
    /// core's tests, a build that leaves it out) denies every fleet login as unavailable.
    fn fleet(&self) -> Option<&dyn FleetApi> {
        None
    }
    /// Runs `program` with exactly `env`, waiting at most `timeout` seconds.
    fn notify(
        &self,
        program: &Path,
        env: &[(&'static str, String)],
        timeout: u64,
    ) -> std::result::Result<(), String>;
}

/// The PAM conversation with the person logging in.
pub trait Conversation {
    /// Asks with echo off.
    fn ask_hidden(&mut self, prompt: &str) -> Result<Zeroizing<String>>;
    /// Asks with echo on, what is typed shown (`echo_code`). A conversation that cannot asks
    /// hidden, which is never less safe.
    fn ask_shown(&mut self, prompt: &str) -> Result<Zeroizing<String>> {
        self.ask_hidden(prompt)
    }
    /// Asks with echo off for the password and the code after it (`forward_pass`): the
    /// answer may be as long as [`crate::combined::MAX_COMBINED_LEN`].
    fn ask_password_and_code(&mut self, prompt: &str) -> Result<Zeroizing<String>> {
        self.ask_hidden(prompt)
    }
    fn info(&mut self, text: &str) -> Result<()>;
    fn error(&mut self, text: &str) -> Result<()>;
    /// False when the application asked for silence (PAM_SILENT): no QR code can be shown.
    fn can_show_text(&self) -> bool;
}

/// Who is logging in, from the PAM items. Its `Debug` leaves out the password.
#[derive(Clone, Copy)]
pub struct Login<'a> {
    pub user: &'a str,
    pub service: &'a str,
    pub rhost: Option<&'a str>,
    pub tty: Option<&'a str>,
    /// What an earlier module took (PAM_AUTHTOK), if any: usually the password, compared with
    /// the answer at the code prompt to recognise a service that answers every prompt with the
    /// password; with `try_first_pass` or `use_first_pass`, the answer itself (the code, or
    /// with `forward_pass` the password and the code).
    pub authtok: Option<&'a str>,
}

impl std::fmt::Debug for Login<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("user", &self.user)
            .field("service", &self.service)
            .field("rhost", &self.rhost)
            .field("tty", &self.tty)
            .field("authtok", &self.authtok.map(|_| "<redacted>"))
            .finish()
    }
}

impl Login<'_> {
    /// The part of every log line that says whose login it was.
    pub(crate) fn describe(&self) -> String {
        format!(
            "user={} service={} rhost={}",
            printable(self.user),
            printable(self.service),
            printable(self.rhost.unwrap_or("-"))
        )
    }

    /// Failures are counted per source; local logins share the empty source.
    pub(crate) fn source(&self) -> &str {
        self.rhost.unwrap_or("")
    }

    /// Whether PAM_TTY names a terminal someone must sit at: a virtual console (`ttyN`), a
    /// serial line (`ttySN`) or the system console (`console`), each also with `/dev/` before
    /// it, or a local X display (`:N`); N is a number. Not a pseudo-terminal (`pts/N`: ssh,
    /// tmux, a terminal emulator, anyone's), and not a missing one: a network service
    /// running as root that sets no PAM_RHOST (OpenVPN's PAM plugin, FreeRADIUS's rlm_pam)
    /// sets no PAM_TTY either.
    pub(crate) fn on_local_terminal(&self) -> bool {
        let Some(tty) = self.tty else {
            return false;
        };
        if let Some(display) = tty.strip_prefix(':') {
            return number(display);
        }
        let device = tty.strip_prefix("/dev/").unwrap_or(tty);
        device == "console"
            || device
                .strip_prefix("ttyS")
                .or_else(|| device.strip_prefix("tty"))
                .is_some_and(number)
    }
}

/// A terminal's or display's number: decimal digits, no sign, no space.
fn number(text: &str) -> bool {
    (1..=5).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(tty: Option<&str>) -> bool {
        Login {
            user: "alice",
            service: "login",
            rhost: None,
            tty,
            authtok: None,
        }
        .on_local_terminal()
    }

    #[test]
    fn a_local_terminal_is_a_console_a_serial_line_or_a_local_display() {
        for tty in [
            "tty1",
            "/dev/tty1",
            "tty63",
            "ttyS0",
            "/dev/ttyS1",
            "console",
            "/dev/console",
            ":0",
            ":10",
        ] {
            assert!(on(Some(tty)), "{tty}");
        }
        for tty in [
            "pts/3",
            "/dev/pts/3",
            "tty",
            "/dev/tty",
            "ttyS",
            "ttyX1",
            "tty1 ",
            " tty1",
            "tty-1",
            "tty1/../pts/0",
            "/dev//tty1",
            "/devtty1",
            "dev/tty1",
            "ttyUSB0",
            "hvc0",
            ":",
            ":0.0",
            "host:0",
            "localhost:0",
            "console1",
            "openvpn",
            "ssh",
            "",
        ] {
            assert!(!on(Some(tty)), "{tty:?}");
        }
        assert!(!on(None));
    }
}
