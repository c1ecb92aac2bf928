//! One login attempt: the ports to the host, the judging, in-band set-up and the messages.

pub(crate) mod attempt;
pub mod auth;
pub(crate) mod inband;
pub mod messages;
pub mod ports;
