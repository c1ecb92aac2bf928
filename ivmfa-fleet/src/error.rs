//! Why a database round failed, in words for syslog (or the CLI's `error:` line). Nothing
//! here quotes a key, a password or what a user typed.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// Where a round was when it failed or ran out of time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Connecting,
    /// TLS handshake, start-up and authentication (one exchange in tokio-postgres).
    Handshake,
    /// The schema version and read-write check every connection makes.
    Checking,
    /// A statement of the host or admin API.
    Statement,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Connecting => "connecting",
            Phase::Handshake => "in the TLS handshake or authentication",
            Phase::Checking => "checking the schema version",
            Phase::Statement => "running a statement",
        })
    }
}

/// Why one address gave no usable connection.
#[derive(Debug)]
pub enum Refusal {
    /// The TCP connection failed.
    Connect(std::io::Error),
    /// No password for this address (a libpq password file without a matching line).
    Credentials(String),
    /// TLS, authentication or the start-up failed (the server's or rustls's words).
    Handshake(String),
    /// A standby (or a server with `default_transaction_read_only`): never used for a verdict.
    ReadOnly,
    /// The schema has a version this client does not know.
    SchemaVersion(i32),
    /// The check statement failed.
    Check(String),
    /// The deadline passed here.
    Deadline(Phase),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Connect(e) => write!(f, "cannot connect: {e}"),
            Refusal::Handshake(e) | Refusal::Credentials(e) => write!(f, "{e}"),
            Refusal::ReadOnly => f.write_str(
                "read-only (a standby, or default_transaction_read_only is on); not used",
            ),
            // Older and newer call for different fixes, on the database or on this host.
            Refusal::SchemaVersion(v)
                if crate::session::KNOWN_SCHEMA_VERSIONS
                    .iter()
                    .all(|known| v < known) =>
            {
                write!(
                    f,
                    "the database has ivmfa schema version {v}, older than any this version \
                     of ivmfa knows (it knows {}): upgrade the schema on the database \
                     (ivmfa-enroll db upgrade), or install the ivmfa that matches it on this \
                     host",
                    known_versions()
                )
            }
            Refusal::SchemaVersion(v) => write!(
                f,
                "the database has ivmfa schema version {v}, which this version of ivmfa does \
                 not know (it knows {}): install the matching ivmfa on this host, or the \
                 schema it expects on the database",
                known_versions()
            ),
            Refusal::Check(e) => write!(f, "cannot read the schema version: {e}"),
            Refusal::Deadline(phase) => write!(f, "no answer in time while {phase}"),
        }
    }
}

fn known_versions() -> String {
    let v: Vec<String> = crate::session::KNOWN_SCHEMA_VERSIONS
        .iter()
        .map(|v| v.to_string())
        .collect();
    v.join(", ")
}

#[derive(Debug)]
pub enum Error {
    /// The settings cannot make a connection (a key missing, a file absent).
    Settings(String),
    /// A CA, certificate, key or password file failed its checks or does not parse.
    File(ivmfa_core::Error),
    /// No address gave a usable connection within the deadline.
    Unavailable {
        timeout: Duration,
        tried: Vec<(SocketAddr, Refusal)>,
    },
    /// The deadline passed during a statement.
    Deadline { timeout: Duration },
    /// A statement failed (the server's words).
    Statement(String),
    /// An answer the host API should never give: the verdict `error` (the database keeps
    /// its SQLSTATE in the audit table) or a shape this client does not know.
    Answer(String),
    /// The event loop could not be made (out of file descriptors?).
    Runtime(std::io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Settings(m) => write!(f, "{m}"),
            Error::File(e) => write!(f, "{e}"),
            Error::Unavailable { timeout, tried } => {
                write!(f, "no usable server within {} ms:", timeout.as_millis())?;
                for (i, (addr, why)) in tried.iter().enumerate() {
                    let sep = if i == 0 { " " } else { "; " };
                    write!(f, "{sep}{addr}: {why}")?;
                }
                if tried.is_empty() {
                    f.write_str(" the deadline passed before any was tried")?;
                }
                Ok(())
            }
            Error::Deadline { timeout } => write!(
                f,
                "no answer within the deadline ({} ms) to a statement; the connection was \
                 dropped",
                timeout.as_millis()
            ),
            Error::Statement(m) => write!(f, "a statement failed: {m}"),
            Error::Answer(m) => write!(f, "{m}"),
            Error::Runtime(e) => write!(f, "cannot set up the connection's event loop: {e}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<Error> for ivmfa_core::Error {
    fn from(e: Error) -> Self {
        ivmfa_core::Error::Fleet(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_older_schema_is_told_apart_from_a_newer_one() {
        let older = Refusal::SchemaVersion(0).to_string();
        assert!(older.contains("version 0, older than any"), "{older}");
        assert!(
            older.contains("upgrade the schema on the database"),
            "{older}"
        );
        let newer = Refusal::SchemaVersion(2).to_string();
        assert!(newer.contains("does not know (it knows 1)"), "{newer}");
        assert!(newer.contains("install the matching ivmfa"), "{newer}");
    }
}
