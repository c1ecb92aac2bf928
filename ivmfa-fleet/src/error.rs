//! Why a database round failed, in words for syslog (or the CLI's `error:` line). Nothing
//! here quotes a key, a password or what a user typed.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use ivmfa_core::logtext::printable;

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
    /// The server runs the session as another role than the one asked for: a pooler
    /// (PgBouncer with `user=` on its database line) that puts every host in one role,
    /// which would make each host's failures, grace periods and audit rows everyone's.
    Role { asked: String, got: String },
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
            Refusal::Role { asked, got } => write!(
                f,
                "connected as the role {}, but the server runs the session as {}: a \
                 connection pooler in between that logs in as a role of its own (PgBouncer's \
                 user= on the database line) makes every host one; not used",
                printable(asked),
                printable(got)
            ),
            Refusal::Deadline(phase) => write!(f, "no answer in time while {phase}"),
        }
    }
}

impl Refusal {
    /// Whether this address could not be reached: the TCP connection failed, or no answer
    /// came in time before a session was established (TCP, TLS, authentication). Nothing
    /// after that counts, nor a refusal in words: a server that answered is up.
    fn unreachable(&self) -> bool {
        matches!(
            self,
            Refusal::Connect(_) | Refusal::Deadline(Phase::Connecting | Phase::Handshake)
        )
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

impl Error {
    /// Whether no server could be reached at all: every address tried failed before a
    /// session was established ([`Refusal`]'s `unreachable`). The login's break-glass rule
    /// opens on this alone; whatever a server that was reached says, or fails to say in
    /// time, denies.
    pub fn unreachable(&self) -> bool {
        match self {
            Error::Unavailable { tried, .. } => {
                !tried.is_empty() && tried.iter().all(|(_, why)| why.unreachable())
            }
            _ => false,
        }
    }
}

impl std::error::Error for Error {}

impl From<Error> for ivmfa_core::Error {
    fn from(e: Error) -> Self {
        if e.unreachable() {
            ivmfa_core::Error::FleetUnreachable(e.to_string())
        } else {
            ivmfa_core::Error::Fleet(e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unavailable(tried: Vec<Refusal>) -> Error {
        let address: SocketAddr = "192.0.2.1:5432".parse().unwrap();
        Error::Unavailable {
            timeout: Duration::from_secs(3),
            tried: tried.into_iter().map(|r| (address, r)).collect(),
        }
    }

    fn refused() -> Refusal {
        Refusal::Connect(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
    }

    #[test]
    fn only_a_server_never_reached_is_unreachable() {
        for tried in [
            vec![refused()],
            vec![Refusal::Deadline(Phase::Connecting)],
            vec![refused(), Refusal::Deadline(Phase::Handshake)],
        ] {
            let e = unavailable(tried);
            assert!(e.unreachable(), "{e}");
            assert!(matches!(
                ivmfa_core::Error::from(e),
                ivmfa_core::Error::FleetUnreachable(_)
            ));
        }
        let answered = [
            Refusal::Deadline(Phase::Checking),
            Refusal::Deadline(Phase::Statement),
            Refusal::Handshake("FATAL 28000: no pg_hba.conf entry".into()),
            Refusal::Credentials("no password".into()),
            Refusal::ReadOnly,
            Refusal::SchemaVersion(99),
            Refusal::Check("no row".into()),
            Refusal::Role {
                asked: "host_a".into(),
                got: "pooler".into(),
            },
        ];
        for why in answered {
            let e = unavailable(vec![refused(), why]);
            assert!(!e.unreachable(), "{e}");
            assert!(matches!(
                ivmfa_core::Error::from(e),
                ivmfa_core::Error::Fleet(_)
            ));
        }
        assert!(!unavailable(vec![]).unreachable());
        for e in [
            Error::Deadline {
                timeout: Duration::from_secs(3),
            },
            Error::Statement("ERROR 40P01: deadlock detected".into()),
            Error::Answer("verify answered error".into()),
            Error::Settings("db_ca".into()),
        ] {
            assert!(!e.unreachable(), "{e}");
        }
    }

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
