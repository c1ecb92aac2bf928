//! Flow 3 of the user guide, the lost device: the request a user files at the code prompt,
//! the ticket an administrator's approval opens, and the notice a denial leaves.
//!
//! On disk (see docs/FILEFORMAT.md): `requests/<user>.toml`, `users/<user>/ticket.toml`,
//! `users/<user>/notice.toml`. All are written under the user's lock.

use serde::{Deserialize, Serialize};

pub const FORMAT_VERSION: u32 = 1;
/// Longest reason an administrator may give for a denial.
pub const MAX_REASON_LEN: usize = 500;

/// A small versioned TOML file of the store.
pub trait Record: Serialize + serde::de::DeserializeOwned {
    /// What to do when the file is corrupt.
    const HINT: &'static str;
    fn version(&self) -> u32;
}

/// A user's request to reset MFA, waiting for an administrator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    pub version: u32,
    pub user: String,
    /// Unix time it was filed.
    pub time: u64,
    pub service: String,
    /// Remote host, empty for a local login.
    pub rhost: String,
    pub tty: String,
}

impl Record for ResetRequest {
    const HINT: &'static str = "remove it; the user can ask again at the next login";
    fn version(&self) -> u32 {
        self.version
    }
}

/// Opened by `reset approve`: the next login of the user enrolls afresh, until `expires`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ticket {
    pub version: u32,
    pub issued: u64,
    pub expires: u64,
}

impl Record for Ticket {
    const HINT: &'static str = "remove it and approve the reset again";
    fn version(&self) -> u32 {
        self.version
    }
}

impl Ticket {
    pub fn is_valid_at(&self, now: u64) -> bool {
        now < self.expires
    }
}

/// Left by `reset deny`: shown to the user once, at the next login.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notice {
    pub version: u32,
    pub time: u64,
    pub reason: String,
}

impl Record for Notice {
    const HINT: &'static str = "remove it";
    fn version(&self) -> u32 {
        self.version
    }
}

/// The environment a `notify_command` gets: the request's fields, nothing else of ours. The
/// remote host, service and tty come from the client's side of the login, so they are passed
/// escaped (no control characters, at most 64 characters); scripts must still treat them as
/// untrusted text.
pub fn notify_env(r: &ResetRequest) -> Vec<(&'static str, String)> {
    use crate::logtext::printable;
    vec![
        ("IVMFA_USER", r.user.clone()),
        ("IVMFA_TIME", r.time.to_string()),
        ("IVMFA_SERVICE", printable(&r.service)),
        ("IVMFA_RHOST", printable(&r.rhost)),
        ("IVMFA_TTY", printable(&r.tty)),
    ]
}
