//! What the login asks the fleet database (`backend = "postgres"`), and the answers it can
//! get: the host API of docs/SCHEMA.md as Rust types. The core only states the questions;
//! the `ivmfa-fleet` crate asks them over the network (tokio and TLS stay out of the core),
//! and `pam_ivmfa` hands its client to the decision through [`crate::ports::Host::fleet`].
//!
//! Every method is one database round: a fresh connection, its statements, closed again, all
//! within the configured deadline. A round that fails in any way (unreachable, TLS, refused
//! role, unknown schema version, a statement that failed, the verdict `error`, an answer of
//! a shape the module does not know) is an `Err` ([`crate::Error::Fleet`]), and the login is
//! denied as unavailable.

use zeroize::Zeroizing;

use crate::config::FleetDb;
use crate::enrollment::{Algorithm, Secret};
use crate::error::Result;

/// The database's side of a login.
pub trait FleetApi {
    /// `before_prompt`: what to do with the user before anything is asked. `take_notice`: a
    /// denied reset's reason is returned (and removed) only if this login can show it.
    ///
    /// `grace_period` above 0: in the same round, when the standing is one where a code
    /// would be asked ([`Standing::asks_for_a_code`]), also `grace(user, source,
    /// grace_period)`, its answer in [`Standing::grace`]. The caller passes 0 unless this
    /// login may have a grace period at all.
    fn before_prompt(
        &self,
        db: &FleetDb,
        user: &str,
        source: &str,
        take_notice: bool,
        grace_period: u64,
    ) -> Result<Standing>;

    /// `submit`, then `verify`: two statements on one connection, each committed on its own,
    /// so the attempt is counted before any verdict exists. `grace_period` above 0 files the
    /// answer with `submit_grace` instead, so that a right code begins a grace period of that
    /// length (as far as the fleet allows) for `source` through this host role.
    fn judge(
        &self,
        db: &FleetDb,
        user: &str,
        answer: &str,
        source: &str,
        grace_period: u64,
    ) -> Result<Judgement>;

    /// `request_reset`: flow 3, the lost device.
    fn request_reset(
        &self,
        db: &FleetDb,
        user: &str,
        service: &str,
        rhost: &str,
        tty: &str,
    ) -> Result<ResetFiled>;

    /// `setup_begin`: a new key made by the database, if it allows set-up in this login.
    fn setup_begin(&self, db: &FleetDb, user: &str) -> Result<SetupBegun>;

    /// `setup_finish`: the first code of the new key.
    fn setup_finish(&self, db: &FleetDb, user: &str, answer: &str) -> Result<SetupFinished>;
}

/// `before_prompt`'s `status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Enrolled,
    NotEnrolled,
    /// An approved reset for this host: set up a new key.
    Ticket,
    /// An approved reset for another host: only a login through that one sets up the new
    /// key (the host that shows a key learns it, so the administrators choose which).
    TicketElsewhere,
    TicketExpired,
    /// A name the database does not take as a user name.
    InvalidUser,
}

/// The user as the database sees them before the prompt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Standing {
    pub status: Status,
    /// Length of the user's codes (enrolled users only).
    pub digits: u8,
    /// Back-off in force for this source, in seconds; 0 for none.
    pub wait: u64,
    pub reset_pending: bool,
    /// A denied reset's reason, to be shown now: the database has forgotten it.
    pub notice: Option<String>,
    /// `settings.inband_enroll`: an unenrolled user may set up without a ticket.
    pub inband_enroll: bool,
    /// `grace`'s answer, when it was asked.
    pub grace: Option<Grace>,
}

impl Standing {
    /// Whether the login goes on to ask for a code: the only standing where a grace period
    /// can matter, so the only one `grace` is asked for.
    pub fn asks_for_a_code(&self) -> bool {
        self.status == Status::Enrolled && self.wait == 0
    }
}

/// `grace`'s verdict: may this login skip the code? Grace periods are kept per user,
/// address and host role (docs/SCHEMA.md says why).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grace {
    /// Skip the code; `left` seconds of the period remain.
    Granted {
        left: u64,
    },
    /// No right code from this address through this host within the period.
    Lapsed,
    /// There is one, but the user or the source is backing off.
    BackingOff,
    /// There is one, but the user asked for a reset (the device is lost).
    ResetPending,
    /// The fleet's `grace_period_max` is 0: grace periods are off everywhere.
    Off,
    /// The database does not take the source for an IP address.
    NotAnAddress,
    /// The enrollment went away since `before_prompt`.
    NotEnrolled,
    InvalidUser,
}

/// What one answer at the code prompt came to (`submit`, and `verify` if it filed one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Judgement {
    Accepted,
    Recovered {
        left: u32,
    },
    /// `failures`: consecutive ones from this source; `wait`: the back-off this failure
    /// started, 0 for none.
    Wrong {
        failures: u32,
        wait: u64,
    },
    Replayed {
        failures: u32,
        wait: u64,
    },
    /// A hardware token's code for a counter already passed.
    TokenUsed {
        failures: u32,
        wait: u64,
    },
    /// Right for a time `offset` seconds away (positive: the phone is ahead).
    ClockOff {
        offset: i64,
        failures: u32,
        wait: u64,
    },
    /// The enrollment went away while the prompt was open.
    Removed,
    /// Not judged: the source or the user is backing off for `wait` more seconds.
    BackingOff {
        wait: u64,
    },
    /// Neither a code nor a recovery code; not counted.
    Malformed,
    InvalidUser,
}

/// `request_reset`'s verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetFiled {
    Filed,
    /// One was waiting already.
    Pending,
    NotEnrolled,
    InvalidUser,
}

/// A key the database made for a set-up in the login. It must be shown to the user, so the
/// host sees it: the threat model says so.
pub struct NewKey {
    pub secret: Secret,
    pub digits: u8,
    pub period: u64,
    pub algorithm: Algorithm,
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewKey")
            .field("digits", &self.digits)
            .field("period", &self.period)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// `setup_begin`'s verdict.
#[derive(Debug)]
pub enum SetupBegun {
    Ready(NewKey),
    /// The user has a key (enrolled meanwhile).
    Enrolled,
    TicketExpired,
    /// No ticket for this host and `inband_enroll` off, a ticket for another host, or a
    /// set-up under way through another host.
    NotAllowed,
    InvalidUser,
}

/// `setup_finish`'s verdict.
pub enum SetupFinished {
    /// Enrolled; the recovery codes are shown once.
    Enrolled {
        recovery_codes: Vec<Zeroizing<String>>,
    },
    Wrong {
        tries_left: u32,
    },
    /// Three wrong codes: nothing was set up.
    Failed,
    /// The set-up waited longer than the database allows.
    Expired,
    /// No set-up of this host is waiting (ended by the administrators moving the ticket,
    /// begun again elsewhere after it expired, or never begun).
    NoSetup,
    /// Enrolled meanwhile by another login.
    Raced,
    TicketExpired,
    NotAllowed,
}

impl std::fmt::Debug for SetupFinished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SetupFinished::Enrolled { recovery_codes } => {
                write!(f, "Enrolled({} recovery codes)", recovery_codes.len())
            }
            SetupFinished::Wrong { tries_left } => write!(f, "Wrong({tries_left} left)"),
            SetupFinished::Failed => f.write_str("Failed"),
            SetupFinished::Expired => f.write_str("Expired"),
            SetupFinished::NoSetup => f.write_str("NoSetup"),
            SetupFinished::Raced => f.write_str("Raced"),
            SetupFinished::TicketExpired => f.write_str("TicketExpired"),
            SetupFinished::NotAllowed => f.write_str("NotAllowed"),
        }
    }
}
