//! The CLI's one error type: what happened, what to do next, and the exit status.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Something failed (I/O, a broken store): exit 1.
    Failed,
    /// The command line is wrong (unknown user, bad key): exit 2.
    Usage,
    /// Refused on purpose (not root, already enrolled, wrong codes): exit 3.
    Refused,
}

#[derive(Debug)]
pub struct CliError {
    pub kind: Kind,
    pub what: String,
    pub hint: String,
}

pub type Result<T> = std::result::Result<T, CliError>;

impl CliError {
    pub fn new(kind: Kind, what: impl Into<String>, hint: impl Into<String>) -> Self {
        CliError {
            kind,
            what: what.into(),
            hint: hint.into(),
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self.kind {
            Kind::Failed => 1,
            Kind::Usage => 2,
            Kind::Refused => 3,
        }
    }
}

impl From<ivmfa_core::Error> for CliError {
    fn from(e: ivmfa_core::Error) -> Self {
        use ivmfa_core::Error as E;
        let generic = match &e {
            E::Config(_) => "fix the config file or the option named above",
            E::Unsafe { .. } => {
                "fix the ownership or mode (chown root:root, chmod 600 files, 700 dirs)"
            }
            E::Corrupt { .. } => {
                "restore the file from a backup, or remove the enrollment and enroll again"
            }
            E::Io { .. } => {
                "check the path named above, and that its file system is writable and has free \
                 space"
            }
            E::Invalid(_) => "check the value given on the command line",
            E::Conversation(_) | E::System(_) => "check the system's user database (getent passwd)",
            E::Busy { .. } => {
                "try again in a moment; if it persists, find the process holding the lock in \
                 /proc/locks and end it"
            }
            E::Fleet(_) | E::FleetUnreachable(_) => {
                "check the db_* settings, that the database server is up and reachable, and \
                 its log"
            }
        };
        let kind = if matches!(e, E::Invalid(_)) {
            Kind::Usage
        } else {
            Kind::Failed
        };
        CliError::new(kind, e.to_string(), e.hint().unwrap_or(generic))
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}\nhint: {}", self.what, self.hint)
    }
}
