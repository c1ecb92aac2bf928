//! The decisions behind `pam_ivmfa.so` and `ivmfa-enroll`, in three layers:
//!
//! - [`decision`]: one login attempt. [`auth`] reads the [`config`], asks the [`store`] for the
//!   user's [`enrollment`] and [`state`], judges the answer and tells the caller what to answer
//!   PAM; [`ceremony`] is the set-up of flow 1, which `inband` runs inside the login and
//!   `ivmfa-enroll` at a terminal. Everything that touches the PAM handle or libc lives in
//!   the `pam_ivmfa` crate, behind the [`ports::Host`] and [`ports::Conversation`] traits.
//! - [`domain`]: what is judged and kept, with no I/O of its own: TOTP, the enrollment, the
//!   state, recovery codes, reset requests, user names, the otpauth URI and its QR matrix.
//! - [`store`]: persistence under `/var/lib/ivmfa`: symlink-safe checked files
//!   (`store::safefile`), crash-safe slot files (`store::slotfile`) and per-user locks.
//!
//! Dependencies point down only: decision → domain → (nothing), decision → store → domain.
#![forbid(unsafe_code)]
// Code loaded into every login fails closed with an error, never by a panic.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod decision;
pub mod domain;
pub mod error;
pub mod store;

// The crate's public paths stay flat (`ivmfa_core::auth`, `ivmfa_core::state`, …): the layers
// are how the source is arranged, not something callers need to spell.
pub use decision::{auth, ceremony, fleet_api, messages, ports};
pub use domain::{
    combined, config, enrollment, google, grace, hotp, input, logtext, oath, otpauth, qr, random,
    recovery, reset, state, totp, username,
};
pub use error::Error;
pub use store::{safefile, slotfile};
