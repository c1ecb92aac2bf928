//! The one error type of the core layer.
//!
//! Every variant says what happened and where ([`std::fmt::Display`]); [`Error::hint`] says
//! what to do about it where the error knows better than its caller. The module's syslog line
//! carries both (`Error::with_hint`); the CLI prints them as `error:` and `hint:`.

use std::fmt;
use std::io;
use std::path::PathBuf;

#[derive(Debug)]
pub enum Error {
    /// A module argument or config-file key is unknown or has a bad value.
    Config(String),
    /// A file or directory failed the ownership, mode, type or size checks.
    Unsafe { path: PathBuf, why: String },
    /// A file passed the checks but its contents do not parse or have an unknown version.
    Corrupt {
        path: PathBuf,
        why: String,
        /// What to do about it; depends on which file it is.
        hint: &'static str,
    },
    /// A system call on a store or config path failed.
    Io {
        path: PathBuf,
        op: &'static str,
        source: io::Error,
    },
    /// Input to an API (a secret, a user name) is not acceptable.
    Invalid(String),
    /// The PAM conversation could not deliver a message or an answer.
    Conversation(String),
    /// A fact about the system (user or group database) could not be read.
    System(String),
    /// Another process held the user's lock for longer than a login may wait.
    Busy { path: PathBuf, waited: u64 },
    /// The fleet database answered, or was reached, but the round failed: a statement that
    /// failed or missed the deadline, an answer the module cannot use, a refused
    /// certificate or role, an unknown schema version, a standby.
    Fleet(String),
    /// No server of the fleet database could be reached: each address refused or dropped
    /// the TCP connection, or gave no answer in time before a session was established (TCP,
    /// TLS, authentication). The one failure `break_glass_group` is for.
    FleetUnreachable(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, op: &'static str, source: io::Error) -> Self {
        Error::Io {
            path: path.into(),
            op,
            source,
        }
    }

    pub(crate) fn unsafe_file(path: impl Into<PathBuf>, why: impl Into<String>) -> Self {
        Error::Unsafe {
            path: path.into(),
            why: why.into(),
        }
    }

    pub(crate) fn corrupt(
        path: impl Into<PathBuf>,
        why: impl Into<String>,
        hint: &'static str,
    ) -> Self {
        Error::Corrupt {
            path: path.into(),
            why: why.into(),
            hint,
        }
    }
}

impl Error {
    /// What to do about it, where the error itself knows (which file, which condition).
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            Error::Corrupt { hint, .. } => Some(hint),
            Error::Io { source, .. } => match source.raw_os_error() {
                Some(libc::ENOSPC) | Some(libc::EDQUOT) => Some("free some disk space"),
                Some(libc::EROFS) => Some("the file system is mounted read-only; remount it"),
                _ => None,
            },
            Error::Busy { .. } => Some(
                "a stopped or hung login holds it: find it in /proc/locks (by the lock file's \
                 inode) and end it",
            ),
            _ => None,
        }
    }

    /// What happened and, where known, what to do: one line for syslog.
    pub(crate) fn with_hint(&self) -> String {
        match self.hint() {
            Some(hint) => format!("{self}; {hint}"),
            None => self.to_string(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(msg) => write!(f, "configuration error: {msg}"),
            Error::Unsafe { path, why } => {
                write!(f, "refusing to use {}: {why}", path.display())
            }
            Error::Corrupt { path, why, .. } => {
                write!(f, "{} cannot be used: {why}", path.display())
            }
            Error::Io { path, op, source } => {
                write!(f, "cannot {op} {}: {source}", path.display())
            }
            Error::Invalid(msg) => write!(f, "{msg}"),
            Error::Conversation(msg) => write!(f, "the PAM conversation failed: {msg}"),
            Error::System(msg) => write!(f, "{msg}"),
            Error::Fleet(msg) | Error::FleetUnreachable(msg) => {
                write!(f, "fleet database: {msg}")
            }
            Error::Busy { path, waited } => write!(
                f,
                "gave up waiting for the lock {} after {waited} s: another process holds it",
                path.display()
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
