//! The fleet database client (`backend = "postgres"`, docs/fleet.md).
//!
//! - [`connect`] opens a [`Session`]: TCP to the first address that answers as a read-write
//!   primary, TLS verified against the pinned CA with the address as the certificate's IP
//!   SAN (`tls.rs`), a client certificate or a password, the schema version checked; one
//!   deadline for all of it and for every statement after. It serves a host (its files named
//!   in ivmfa.toml: [`Settings::for_host`]) and an administrator (their own certificate, or
//!   a password from their `~/.pgpass`: [`Credentials`], [`Owner::User`]).
//! - [`Session`]'s typed calls of the host API ([`host_api`]) and of the administrators'
//!   API ([`admin_api`], for `ivmfa-enroll`).
//! - [`Client`]: ivmfa-core's [`ivmfa_core::fleet_api::FleetApi`] port for the PAM module,
//!   a fresh connection per database round.
//!
//! tokio runs as a current-thread runtime made per connection, on the caller's thread: this
//! crate starts no thread, resolves no name and never sends a cancel request.
#![forbid(unsafe_code)]
// Code loaded into every login fails closed with an error, never by a panic.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod admin_api;
mod client;
mod credentials;
mod error;
pub mod host_api;
mod session;
mod settings;
mod tls;

pub use client::Client;
pub use error::{Error, Phase, Refusal};
pub use host_api::Submitted;
pub use session::{connect, connect_any_schema, Session, KNOWN_SCHEMA_VERSIONS};
pub use settings::{pgpass_path, Credentials, Owner, Settings};
pub use tls::TlsSessions;
/// What [`Session::query`] takes and gives, for callers beyond the host API (the CLI).
pub use tokio_postgres::types::{ToSql, Type};
pub use tokio_postgres::Row;
