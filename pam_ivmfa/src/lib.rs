//! `pam_ivmfa.so`: the PAM face of ivmfa.
//!
//! sshd → libpam → `ffi` (entry points, PAM items, conversation, syslog; with `ivmfa-sys`
//! the only code outside Rust's safety checks) → [`ivmfa_core::auth`] (every decision) → the
//! store. This file holds the one mapping from the core's verdict to a PAM return code.

#![deny(unsafe_code)]
// Code loaded into every login fails closed with an error, never by a panic.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(unsafe_code)]
mod ffi;

use ivmfa_core::ports::Verdict;

/// PAM return codes (`<security/_pam_types.h>`), the subset this module returns.
pub(crate) mod code {
    use std::os::raw::c_int;
    pub const SUCCESS: c_int = 0;
    pub const SERVICE_ERR: c_int = 3;
    pub const AUTH_ERR: c_int = 7;
    pub const USER_UNKNOWN: c_int = 10;
    pub const CONV_ERR: c_int = 19;
    pub const IGNORE: c_int = 25;
}

pub(crate) fn pam_code(verdict: Verdict) -> std::os::raw::c_int {
    match verdict {
        Verdict::Success => code::SUCCESS,
        Verdict::Ignore => code::IGNORE,
        Verdict::AuthErr => code::AUTH_ERR,
        Verdict::UserUnknown => code::USER_UNKNOWN,
        Verdict::ConvErr => code::CONV_ERR,
        Verdict::ServiceErr => code::SERVICE_ERR,
    }
}
