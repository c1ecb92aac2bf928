//! One connection to the fleet database, with one deadline.
//!
//! [`connect`] makes a tokio current-thread runtime (no thread is started: the runtime runs
//! on the caller's thread, inside [`Session`]'s calls), then tries the addresses in order:
//! TCP, TLS with the pinned CA, authentication, and a check that the server is a read-write
//! primary with a schema version this client knows, running the session as the role asked
//! for. Every step and every statement after it runs against the one deadline fixed when
//! `connect` was called; each address may use only its share of what is left of it, so one
//! that never answers does not keep the next from being tried. When the deadline passes,
//! the runtime is dropped with the socket in it: nothing more is sent, and never a cancel
//! request (a cancelled wait for a synchronous standby was seen to come back "accepted").
//!
//! Statements are sent with `query_typed`: an unnamed statement with typed parameters, one
//! round trip, autocommitted on its own, as PgBouncer's transaction pooling needs.
//!
//! An administrator's tool may also connect to a database whose schema is missing or of
//! another version ([`connect_any_schema`], to install or upgrade it), and wait for
//! notifications on a channel it `LISTEN`s on ([`Session::wait_notification`]).

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::runtime::Runtime;
use tokio::sync::mpsc::{channel, Receiver};
use tokio::task::JoinHandle;
use tokio::time::timeout_at;
use tokio_postgres::config::SslMode;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{AsyncMessage, Client, Row};

use crate::credentials::Loaded;
use crate::error::{Error, Phase, Refusal};
use crate::settings::Settings;
use crate::tls::{self, TlsSessions};

/// The schema versions (`ivmfa_api.schema_version()`) this client can talk to.
pub const KNOWN_SCHEMA_VERSIONS: &[i32] = &[1];

/// Asked on every connection before anything else: which schema, whether it may write, and
/// as whom the server runs the session (a pooler may have logged in as another role).
const CHECK: &str = "SELECT ivmfa_api.schema_version(), \
                     pg_catalog.current_setting('transaction_read_only'), SESSION_USER::text";

/// The same, where the schema may be missing: whether its version function exists, then
/// (if it does) [`VERSION`].
const CHECK_ANY: &str = "SELECT pg_catalog.to_regprocedure('ivmfa_api.schema_version()') \
                         IS NOT NULL, pg_catalog.current_setting('transaction_read_only'), \
                         SESSION_USER::text";
const VERSION: &str = "SELECT ivmfa_api.schema_version()";

/// Notifications kept until [`Session::wait_notification`] takes them; more are dropped
/// (each is only a reason to look again, and any role that may connect can send them).
const NOTIFICATIONS_KEPT: usize = 16;

/// What a connection must find before it is handed out.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// A schema version this client knows: every connection that asks for verdicts.
    KnownSchema,
    /// Whatever is there, if anything: installing or upgrading the schema.
    AnySchema,
}

/// An open connection. Dropping it drops the socket; [`Session::close`] says goodbye first.
pub struct Session {
    runtime: Runtime,
    client: Option<Client>,
    connection: Option<JoinHandle<()>>,
    deadline: Instant,
    timeout: Duration,
    address: SocketAddr,
    schema_version: Option<i32>,
    tls_resumed: bool,
    /// That notifications arrived (at most [`NOTIFICATIONS_KEPT`] of them).
    notifications: Receiver<()>,
}

/// Connects as `settings` says, within `settings.timeout` for everything, resuming a TLS
/// session of `sessions` where the server offers one, and keeping there the sessions it
/// offers now.
pub fn connect(settings: &Settings, sessions: &TlsSessions) -> Result<Session, Error> {
    connect_expecting(settings, sessions, Expect::KnownSchema)
}

/// Connects as [`connect`] does, to a read-write primary, but takes a database without the
/// schema, or with a version this client does not know: for installing and upgrading it
/// (`ivmfa-enroll db install`, `db upgrade`). [`Session::installed_schema`] says what is
/// there. Never for verdicts.
pub fn connect_any_schema(settings: &Settings) -> Result<Session, Error> {
    connect_expecting(settings, &TlsSessions::default(), Expect::AnySchema)
}

fn connect_expecting(
    settings: &Settings,
    sessions: &TlsSessions,
    expect: Expect,
) -> Result<Session, Error> {
    let deadline = Instant::now() + settings.timeout;
    let loaded = Loaded::read(settings)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(Error::Runtime)?;
    let mut tried = Vec::new();
    for (i, &address) in settings.addresses.iter().enumerate() {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let until = share(now, deadline, settings.addresses.len() - i);
        let phase = Cell::new(Phase::Connecting);
        let attempt = runtime.block_on(within(
            until,
            open(address, settings, &loaded, sessions, &phase, expect),
        ));
        match attempt {
            Ok(Ok(opened)) => {
                return Ok(Session {
                    runtime,
                    client: Some(opened.client),
                    connection: Some(opened.connection),
                    deadline,
                    timeout: settings.timeout,
                    address,
                    schema_version: opened.schema_version,
                    tls_resumed: opened.tls_resumed,
                    notifications: opened.notifications,
                })
            }
            Ok(Err(refusal)) => tried.push((address, refusal)),
            // Its share is spent; the next address gets its own.
            Err(_) => tried.push((address, Refusal::Deadline(phase.get()))),
        }
    }
    // Dropping the runtime here closes every socket an attempt left open.
    Err(Error::Unavailable {
        timeout: settings.timeout,
        tried,
    })
}

/// When an address, with `left` addresses still to try (itself included), must have given a
/// usable connection: an equal share of what remains of the deadline. An address that never
/// answers then keeps no other from being tried, and one refused at once leaves its share to
/// those after it.
fn share(now: Instant, deadline: Instant, left: usize) -> Instant {
    let remaining = deadline.saturating_duration_since(now);
    let left = u32::try_from(left.max(1)).unwrap_or(u32::MAX);
    now + remaining / left
}

/// A connection that passed its check.
struct Opened {
    client: Client,
    connection: JoinHandle<()>,
    schema_version: Option<i32>,
    tls_resumed: bool,
    notifications: Receiver<()>,
}

/// One address: TCP, TLS and authentication, then the check.
async fn open(
    address: SocketAddr,
    settings: &Settings,
    loaded: &Loaded,
    sessions: &TlsSessions,
    phase: &Cell<Phase>,
    expect: Expect,
) -> Result<Opened, Refusal> {
    let password = loaded.password_for(address, settings)?;
    let resumed = Arc::new(AtomicBool::new(false));
    let tls = tls::connector(
        settings,
        loaded,
        address.ip(),
        sessions,
        Arc::clone(&resumed),
    )
    .map_err(Refusal::Handshake)?;
    let tcp = TcpStream::connect(address)
        .await
        .map_err(Refusal::Connect)?;
    // Statements are small and answered at once: no reason to hold them back.
    let _ = tcp.set_nodelay(true);
    phase.set(Phase::Handshake);
    let mut config = tokio_postgres::Config::new();
    config
        .user(&settings.user)
        .dbname(&settings.database)
        .application_name(&settings.application_name)
        .ssl_mode(SslMode::Require);
    if let Some(password) = &password {
        config.password(password.as_bytes());
    }
    let (client, connection) = config
        .connect_raw(tcp, tls)
        .await
        .map_err(|e| Refusal::Handshake(describe(&e)))?;
    drop(config);
    // The connection's half that reads and writes the socket; it runs whenever this thread
    // waits in the runtime, and ends with it. That a notification came goes to the session
    // (only an administrator's watch ever LISTENs), past a few unread ones it is dropped;
    // notices are dropped (every function of ours raises none to its caller).
    let (notified, notifications) = channel(NOTIFICATIONS_KEPT);
    let mut connection = connection;
    let connection = tokio::spawn(async move {
        while let Some(Ok(message)) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            if let AsyncMessage::Notification(_) = message {
                let _ = notified.try_send(());
            }
        }
    });
    phase.set(Phase::Checking);
    let check = |e: tokio_postgres::Error| Refusal::Check(describe(&e));
    let rows = client
        .query_typed(
            if expect == Expect::KnownSchema {
                CHECK
            } else {
                CHECK_ANY
            },
            &[],
        )
        .await
        .map_err(check)?;
    let row = rows
        .first()
        .ok_or_else(|| Refusal::Check("no row".into()))?;
    let session_user: String = row.try_get(2).map_err(check)?;
    same_role(&settings.user, &session_user)?;
    let read_only: String = row.try_get(1).map_err(check)?;
    if read_only != "off" {
        return Err(Refusal::ReadOnly);
    }
    let schema_version = match expect {
        Expect::KnownSchema => {
            let version: i32 = row.try_get(0).map_err(check)?;
            if !KNOWN_SCHEMA_VERSIONS.contains(&version) {
                return Err(Refusal::SchemaVersion(version));
            }
            Some(version)
        }
        Expect::AnySchema => {
            let installed: bool = row.try_get(0).map_err(check)?;
            if installed {
                let rows = client.query_typed(VERSION, &[]).await.map_err(check)?;
                let row = rows
                    .first()
                    .ok_or_else(|| Refusal::Check("no row".into()))?;
                Some(row.try_get(0).map_err(check)?)
            } else {
                None
            }
        }
    };
    Ok(Opened {
        client,
        connection,
        schema_version,
        tls_resumed: resumed.load(Ordering::Relaxed),
        notifications,
    })
}

/// Refuses a session the server runs as another role than `asked`. A host's failures, grace
/// periods, set-ups and audit rows are its role's: a pooler that logs every host in as one
/// role of its own (PgBouncer with `user=` on its database line) would merge them.
fn same_role(asked: &str, session_user: &str) -> Result<(), Refusal> {
    if asked == session_user {
        Ok(())
    } else {
        Err(Refusal::Role {
            asked: asked.to_owned(),
            got: session_user.to_owned(),
        })
    }
}

/// `future`, unless `deadline` passes first. The timer is made inside the runtime (it needs
/// the runtime's clock), so this is what `block_on` is given.
async fn within<F: std::future::Future>(
    deadline: Instant,
    future: F,
) -> Result<F::Output, tokio::time::error::Elapsed> {
    timeout_at(deadline.into(), future).await
}

/// A client library error in words: the server's own for a server error, else the kind and
/// its cause (rustls's reason for a refused certificate, the socket's error).
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} {}: {}", db.severity(), db.code().code(), db.message());
    }
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        cause = c.source();
    }
    text
}

impl Session {
    /// Runs one statement (unnamed, typed parameters, autocommitted) and returns its rows.
    /// A statement that misses the deadline drops the connection: later calls fail.
    pub fn query(
        &mut self,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Vec<Row>, Error> {
        let Some(client) = &self.client else {
            return Err(Error::Deadline {
                timeout: self.timeout,
            });
        };
        match self
            .runtime
            .block_on(within(self.deadline, client.query_typed(sql, params)))
        {
            Ok(Ok(rows)) => Ok(rows),
            Ok(Err(e)) => Err(Error::Statement(describe(&e))),
            Err(_) => {
                self.abandon();
                Err(Error::Deadline {
                    timeout: self.timeout,
                })
            }
        }
    }

    /// Runs SQL text with the simple query protocol: several statements, no parameters
    /// (installing a schema script, `LISTEN`). Within the deadline like every statement.
    pub fn batch(&mut self, sql: &str) -> Result<(), Error> {
        let Some(client) = &self.client else {
            return Err(Error::Deadline {
                timeout: self.timeout,
            });
        };
        match self
            .runtime
            .block_on(within(self.deadline, client.batch_execute(sql)))
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::Statement(describe(&e))),
            Err(_) => {
                self.abandon();
                Err(Error::Deadline {
                    timeout: self.timeout,
                })
            }
        }
    }

    /// A new deadline, `timeout` from now, for what follows (an administrator's command that
    /// waits on purpose). A login never calls it.
    pub fn renew_deadline(&mut self, timeout: Duration) {
        self.timeout = timeout;
        self.deadline = Instant::now() + timeout;
    }

    /// The server this session is connected to.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Whether TLS resumed a session of an earlier connection (see [`TlsSessions`]).
    pub fn tls_resumed(&self) -> bool {
        self.tls_resumed
    }

    /// The schema version (0 only from [`connect_any_schema`] where there is no schema).
    pub fn schema_version(&self) -> i32 {
        self.schema_version.unwrap_or(0)
    }

    /// The schema version installed, `None` if there is no schema (a session from
    /// [`connect_any_schema`]).
    pub fn installed_schema(&self) -> Option<i32> {
        self.schema_version
    }

    /// Waits up to `wait` for a notification on a channel this session `LISTEN`s on; whether
    /// one (or more: all that arrived are taken) came. No deadline of the session applies:
    /// waiting is the point. An error when the connection has ended.
    pub fn wait_notification(&mut self, wait: Duration) -> Result<bool, Error> {
        let closed = || Error::Statement("the server closed the connection".into());
        if self.client.is_none() {
            return Err(closed());
        }
        let until = Instant::now() + wait;
        match self
            .runtime
            .block_on(within(until, self.notifications.recv()))
        {
            Ok(Some(_)) => {
                while self.notifications.try_recv().is_ok() {}
                Ok(true)
            }
            Ok(None) => {
                self.abandon();
                Err(closed())
            }
            Err(_) => Ok(false),
        }
    }

    /// Ends the session politely (a Terminate message) if the deadline allows, then drops
    /// the socket.
    pub fn close(mut self) {
        self.client = None;
        if let Some(connection) = self.connection.take() {
            let _ = self.runtime.block_on(within(self.deadline, connection));
        }
    }

    /// Gives up on the connection: no statement can be sent any more, and the socket goes
    /// with the runtime.
    fn abandon(&mut self) {
        self.client = None;
        if let Some(connection) = self.connection.take() {
            connection.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_gets_an_equal_share_of_what_is_left() {
        let now = Instant::now();
        let deadline = now + Duration::from_millis(3000);
        assert_eq!(share(now, deadline, 3), now + Duration::from_millis(1000));
        assert_eq!(share(now, deadline, 1), deadline);
        // What an address refused at once did not use goes to the ones after it.
        let later = now + Duration::from_millis(10);
        assert_eq!(
            share(later, deadline, 2),
            later + Duration::from_millis(1495)
        );
        assert_eq!(share(deadline, deadline, 2), deadline);
        assert_eq!(share(now, deadline, 0), deadline);
    }

    #[test]
    fn a_session_run_as_another_role_is_refused() {
        assert!(same_role("host_web1", "host_web1").is_ok());
        for got in ["pgbouncer", "host_web2", "Host_web1", "host_web1 "] {
            let refusal = same_role("host_web1", got).unwrap_err();
            let text = refusal.to_string();
            assert!(
                text.contains("connected as the role host_web1") && text.contains("PgBouncer"),
                "{text}"
            );
        }
    }
}
