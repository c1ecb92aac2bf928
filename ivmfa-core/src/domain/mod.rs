//! What is judged and kept: codes, secrets, state, requests, names. No file or process I/O
//! here beyond parsing text the store hands over.

pub mod combined;
pub mod config;
pub mod enrollment;
pub(crate) mod format;
pub mod google;
pub mod grace;
pub mod hotp;
pub mod input;
pub mod logtext;
pub mod oath;
pub mod otpauth;
pub mod qr;
pub mod random;
pub mod recovery;
pub mod reset;
pub mod state;
pub mod totp;
pub mod username;
