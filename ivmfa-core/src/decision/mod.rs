//! One login attempt: the ports to the host, the judging, the set-up ceremony (shared with
//! the CLI), in-band set-up and the messages.

pub(crate) mod attempt;
pub mod auth;
pub mod ceremony;
pub(crate) mod fleet;
pub mod fleet_api;
pub(crate) mod inband;
pub mod messages;
pub mod ports;
