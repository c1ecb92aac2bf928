//! The decisions behind `pam_ivmfa.so` and `ivmfa-enroll`.
//!
//! Data flows top-down: [`auth`] runs one login attempt; it reads [`config`], asks the
//! [`store`] for the user's [`enrollment`] and [`state`], checks the code with [`totp`] and
//! tells the caller what to answer PAM. Everything that touches the PAM handle or libc lives in
//! the `pam_ivmfa` crate, behind the [`ports::Host`] and [`ports::Conversation`] traits.
#![forbid(unsafe_code)]
// Code loaded into every login fails closed with an error, never by a panic.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod attempt;
pub mod auth;
pub mod config;
pub mod enrollment;
pub mod error;
mod format;
pub mod google;
mod inband;

pub mod input;
pub mod logtext;
pub mod messages;
pub mod otpauth;
pub mod ports;
pub mod qr;
pub mod random;
pub mod recovery;
pub mod reset;

pub mod safefile;
pub mod slotfile;
pub mod state;
pub mod store;
pub mod totp;
pub mod username;

pub use error::Error;
