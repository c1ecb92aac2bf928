//! The fleet database's faults beyond those of `fleet_login` (a stopped server, an address
//! that never answers, a standby, a wrong CA, a newer schema): a backend killed mid-login, a
//! host role revoked, a schema too old, a row lock held elsewhere, a synchronous standby
//! down. Each login goes through real libpam to a real PostgreSQL over TLS, and each fault
//! must deny with "not available" to the user and the reason in syslog, within the deadline
//! (plus a generous slack: a hang check, not a benchmark), and no code may ever be accepted
//! twice: the audit table's acceptances are counted against what the logins saw.
//!
//! To stop a login at an exact point, the tests use the superuser's powers: a lock held by a
//! transaction of their own, or (`pause_verify`) a trigger added to the test's database that
//! makes `verify` wait on an advisory lock after it has decided and before it commits.

use std::time::{Duration, Instant};

use ivmfa_tests::fleet::Fleet;
use ivmfa_tests::postgres::{Session, DATABASE, SUPERUSER};
use ivmfa_tests::*;

const USER: &str = "daemon";
/// messages::UNAVAILABLE, as the user reads it.
const UNAVAILABLE: &str = "Multi-factor authentication is not available right now";
/// messages::REPLAYED.
const REPLAYED: &str = "already been used";
/// What a login may take beyond its deadline: process start, libpam, the first round,
/// syslog in a namespace, on a loaded 2-core machine.
const SLACK: Duration = Duration::from_secs(2);

/// Logs in with syslog captured, timing it.
fn timed(f: &Fixture, answers: &[&str]) -> (Outcome, Vec<String>, Duration) {
    let start = Instant::now();
    let (out, lines) = f.login_logged(USER, answers);
    (out, lines, start.elapsed())
}

/// The login was denied as unavailable, with a syslog line holding every one of `reason`,
/// and did not outlast `deadline` by more than [`SLACK`]. Returns the line.
#[track_caller]
fn denied_unavailable(
    (out, lines, took): &(Outcome, Vec<String>, Duration),
    deadline: Duration,
    reason: &[&str],
) -> String {
    out.assert("PAM_SERVICE_ERR").assert_said(UNAVAILABLE);
    let line = logged_line(lines, reason).to_owned();
    assert!(line.contains("denied: fleet database"), "{line}");
    assert!(
        line.starts_with("<83>"),
        "logged at err (authpriv.err): {line}"
    );
    assert!(
        *took < deadline + SLACK,
        "the login took {took:?}, deadline {deadline:?}: it hung"
    );
    line
}

/// Audit rows of `action` whose outcome is like `outcome` (SQL LIKE).
fn audited(fleet: &Fleet, action: &str, outcome: &str) -> usize {
    fleet
        .superuser(&format!(
            "SELECT count(*) FROM ivmfa.audit WHERE action = '{action}' \
             AND outcome LIKE '{outcome}'"
        ))
        .parse()
        .unwrap()
}

/// Codes accepted by the database, ever (each `verify` that accepted one is audited).
fn acceptances(fleet: &Fleet) -> usize {
    audited(fleet, "verify", "accepted%")
}

/// The user's replay watermark.
fn watermark(fleet: &Fleet) -> i64 {
    fleet
        .superuser(&format!(
            "SELECT last_step FROM ivmfa.account WHERE name = '{USER}'"
        ))
        .parse()
        .unwrap()
}

/// The server processes of host role `role`, each as `pid wait_event_type wait_event`.
fn backends(fleet: &Fleet, role: &str) -> Vec<String> {
    fleet
        .pg
        .sql(
            SUPERUSER,
            DATABASE,
            &format!(
                "SELECT pid || ' ' || coalesce(wait_event_type, '-') || ' ' || \
                 coalesce(wait_event, '-') FROM pg_catalog.pg_stat_activity \
                 WHERE usename = '{role}'"
            ),
        )
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Polls `probe` until it gives something, for at most `within`.
#[track_caller]
fn wait_for<T>(what: &str, within: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(Instant::now() < deadline, "waited {within:?} for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The pid of the backend of `role` waiting on `event` (pg_stat_activity's wait_event).
#[track_caller]
fn backend_waiting(fleet: &Fleet, role: &str, event: &str) -> String {
    wait_for(
        &format!("a backend of {role} waiting on {event}"),
        Duration::from_secs(10),
        || {
            backends(fleet, role).into_iter().find_map(|b| {
                let mut parts = b.split(' ');
                let pid = parts.next()?.to_owned();
                (parts.nth(1)? == event).then_some(pid)
            })
        },
    )
}

/// Waits until `role` has no server process left.
#[track_caller]
fn no_backend_left(fleet: &Fleet, role: &str, within: Duration) {
    wait_for(&format!("the backends of {role} to end"), within, || {
        backends(fleet, role).is_empty().then_some(())
    });
}

/// A test-only pause inside `verify`, after it has decided and before it commits: a trigger
/// on the audit table makes verify's audit row wait for advisory lock 4242, which the
/// returned session holds until [`resume`]. [`unpause`] removes the trigger.
fn pause_verify(fleet: &Fleet) -> Session {
    fleet.pg.sql(
        SUPERUSER,
        DATABASE,
        "CREATE FUNCTION ivmfa.test_pause() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN PERFORM pg_catalog.pg_advisory_xact_lock(4242); RETURN NEW; END $$; \
         CREATE TRIGGER test_pause BEFORE INSERT ON ivmfa.audit FOR EACH ROW \
         WHEN (NEW.action = 'verify') EXECUTE FUNCTION ivmfa.test_pause()",
    );
    let mut holder = fleet.pg.session(SUPERUSER);
    holder.query("SELECT pg_catalog.pg_advisory_lock(4242)");
    holder
}

fn resume(mut holder: Session) {
    holder.query("SELECT pg_catalog.pg_advisory_unlock(4242)");
}

fn unpause(fleet: &Fleet) {
    fleet.pg.sql(
        SUPERUSER,
        DATABASE,
        "DROP TRIGGER test_pause ON ivmfa.audit; DROP FUNCTION ivmfa.test_pause()",
    );
}

/// A superuser transaction holding a lock (`lock`: the statement that takes it) until
/// [`release`].
fn hold(fleet: &Fleet, lock: &str) -> Session {
    let mut holder = fleet.pg.session(SUPERUSER);
    holder.query("BEGIN");
    holder.query(lock);
    assert_eq!(holder.errors(), "", "{lock}");
    holder
}

fn release(mut holder: Session) {
    holder.query("COMMIT");
}

/// A backend killed (pg_terminate_backend) while the login waits on it: before the prompt,
/// and between the answer's two statements, after `submit` committed and while `verify`,
/// having accepted the code, has not. Denied at once; the code was not accepted, so a fresh
/// login takes it, once.
#[test]
#[ignore = "needs root"]
fn a_backend_killed_mid_login_denies_and_the_code_is_accepted_once() {
    let fleet = Fleet::start();
    let deadline = Duration::from_millis(3000);
    let f = fleet.fixture("host_a", "", "db_timeout_ms = 3000\n");
    let e = fleet.enroll(USER);

    // Before the prompt: before_prompt waits to read the enrollment.
    let lock = hold(&fleet, "LOCK TABLE ivmfa.secret IN ACCESS EXCLUSIVE MODE");
    let denied = std::thread::scope(|s| {
        let login = s.spawn(|| timed(&f, &["000000"]));
        let pid = backend_waiting(&fleet, "host_a", "relation");
        fleet.superuser(&format!("SELECT pg_catalog.pg_terminate_backend({pid})"));
        login.join().unwrap()
    });
    release(lock);
    denied_unavailable(&denied, deadline, &["57P01", "terminating connection"]);
    assert!(denied.0.prompts().is_empty(), "{:?}", denied.0);
    assert_eq!(audited(&fleet, "submit", "%"), 0);

    // Between submit and verify's commit.
    settle();
    let right = code(&e, 0);
    let before = watermark(&fleet);
    let pause = pause_verify(&fleet);
    let denied = std::thread::scope(|s| {
        let login = s.spawn(|| timed(&f, &[&right]));
        let pid = backend_waiting(&fleet, "host_a", "advisory");
        fleet.superuser(&format!("SELECT pg_catalog.pg_terminate_backend({pid})"));
        login.join().unwrap()
    });
    resume(pause);
    unpause(&fleet);
    denied_unavailable(&denied, deadline, &["57P01", "terminating connection"]);
    assert_eq!(denied.0.prompts().len(), 1, "{:?}", denied.0);
    // The attempt was filed and counted (submit committed); verify's acceptance went with
    // its transaction.
    assert_eq!(audited(&fleet, "submit", "counted"), 1);
    assert_eq!(acceptances(&fleet), 0);
    assert_eq!(watermark(&fleet), before);
    // So the code is still good: once.
    f.login(USER, &[&right]).assert("PAM_SUCCESS");
    f.login(USER, &[&right])
        .assert("PAM_AUTH_ERR")
        .assert_said(REPLAYED);
    assert_eq!(acceptances(&fleet), 1);
}

/// A host whose role lost the host group, or may no longer log in: the server refuses the
/// connection, before the prompt or (revoked while the user types) after it.
#[test]
#[ignore = "needs root"]
fn a_revoked_host_role_is_not_available_and_the_reason_is_logged() {
    let fleet = Fleet::start();
    let deadline = Duration::from_millis(3000);
    let f = fleet.fixture("host_a", "", "");
    let e = fleet.enroll(USER);
    settle();
    f.login(USER, &[&code(&e, 0)]).assert("PAM_SUCCESS");

    fleet.superuser("REVOKE ivmfa_host FROM host_a");
    let denied = timed(&f, &[&code(&e, 1)]);
    denied_unavailable(
        &denied,
        deadline,
        &["permission denied for database \"ivmfa\""],
    );
    assert!(denied.0.prompts().is_empty(), "{:?}", denied.0);
    fleet.superuser("GRANT ivmfa_host TO host_a");

    // Revoked between the prompt and the answer: the answer is never sent.
    let held = f.login_held(USER, &[&code(&e, 1)]);
    fleet.superuser("ALTER ROLE host_a NOLOGIN");
    let said = held.release();
    assert!(said.contains("result: PAM_SERVICE_ERR"), "{said}");
    assert!(said.contains(UNAVAILABLE), "{said}");
    let denied = timed(&f, &[&code(&e, 1)]);
    denied_unavailable(
        &denied,
        deadline,
        &["role \"host_a\" is not permitted to log in"],
    );
    assert_eq!(audited(&fleet, "submit", "%"), 1, "only the first login's");

    // Given back, the host logs in with the code the refused logins never sent.
    fleet.superuser("ALTER ROLE host_a LOGIN");
    f.login(USER, &[&code(&e, 1)]).assert("PAM_SUCCESS");
    assert_eq!(acceptances(&fleet), 2);
}

/// A schema older than the module knows (faked by replacing `schema_version()`), or none at
/// all: refused on connecting, with a line that says which and what to do. (A newer one is
/// `fleet_login`'s `an_unknown_schema_version_is_refused_with_a_clear_line`.)
#[test]
#[ignore = "needs root"]
fn a_schema_too_old_is_refused_with_a_clear_line() {
    let fleet = Fleet::start();
    let deadline = Duration::from_millis(3000);
    let f = fleet.fixture("host_a", "", "");
    fleet.enroll(USER);
    fleet.superuser(
        "CREATE OR REPLACE FUNCTION ivmfa_api.schema_version() RETURNS integer \
         LANGUAGE sql STABLE SECURITY DEFINER AS $$ SELECT 0 $$",
    );
    let denied = timed(&f, &["000000"]);
    denied_unavailable(
        &denied,
        deadline,
        &[
            "ivmfa schema version 0, older than any this version of ivmfa knows (it knows 1)",
            "upgrade the schema on the database",
        ],
    );
    assert!(denied.0.prompts().is_empty(), "{:?}", denied.0);
    // No schema at all in the database the host was pointed at.
    fleet.superuser("ALTER FUNCTION ivmfa_api.schema_version() RENAME TO schema_version_gone");
    let denied = timed(&f, &["000000"]);
    denied_unavailable(
        &denied,
        deadline,
        &[
            "cannot read the schema version",
            "function ivmfa_api.schema_version() does not exist",
        ],
    );
    assert_eq!(audited(&fleet, "submit", "%"), 0);
}

/// The user's account row locked by another transaction (a stuck administrator's session,
/// say): `submit` waits for it, the login is denied at its deadline and drops the socket.
/// What the abandoned statement does then is the server's: with
/// `client_connection_check_interval` (docs/fleet.md recommends it) the backend notices the
/// client is gone and ends, nothing counted; without it, it waits for the lock, and the
/// failure it counts when it gets it is at most one, never judged. Either way, once the lock
/// is released the same code logs in, once.
#[test]
#[ignore = "needs root"]
fn a_row_lock_held_elsewhere_denies_at_the_deadline() {
    let fleet = Fleet::start();
    let deadline = Duration::from_millis(1500);
    let f = fleet.fixture("host_a", "", "db_timeout_ms = 1500\n");
    let e = fleet.enroll(USER);
    let lock_account = format!("SELECT name FROM ivmfa.account WHERE name = '{USER}' FOR UPDATE");
    assert_eq!(
        fleet.superuser(&format!(
            "SELECT count(*) FROM ivmfa.account WHERE name = '{USER}'"
        )),
        "1"
    );

    // With the recommended setting.
    fleet.superuser("ALTER DATABASE ivmfa SET client_connection_check_interval = '200ms'");
    settle();
    let right = code(&e, 0);
    let lock = hold(&fleet, &lock_account);
    let denied = timed(&f, &[&right]);
    let line = denied_unavailable(
        &denied,
        deadline,
        &["no answer within the deadline (1500 ms)"],
    );
    assert!(denied.2 >= deadline, "{:?}: {line}", denied.2);
    assert_eq!(denied.0.prompts().len(), 1, "{:?}", denied.0);
    // The server ends the abandoned statement while the lock is still held.
    no_backend_left(&fleet, "host_a", Duration::from_secs(3));
    release(lock);
    assert_eq!(audited(&fleet, "submit", "%"), 0);
    f.login(USER, &[&right]).assert("PAM_SUCCESS");
    f.login(USER, &[&right])
        .assert("PAM_AUTH_ERR")
        .assert_said(REPLAYED);
    assert_eq!(acceptances(&fleet), 1);

    // Without it (PostgreSQL's default): the backend waits on, its client long gone.
    fleet.superuser("ALTER DATABASE ivmfa RESET client_connection_check_interval");
    let next = code(&e, 1);
    let lock = hold(&fleet, &lock_account);
    let submits = audited(&fleet, "submit", "%");
    let denied = timed(&f, &[&next]);
    denied_unavailable(
        &denied,
        deadline,
        &["no answer within the deadline (1500 ms)"],
    );
    std::thread::sleep(Duration::from_millis(500));
    let waiting = backends(&fleet, "host_a");
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    assert!(waiting[0].contains(" Lock "), "{waiting:?}");
    release(lock);
    no_backend_left(&fleet, "host_a", Duration::from_secs(5));
    // At most the one failure, and no verdict: verify was never sent.
    let counted = audited(&fleet, "submit", "%") - submits;
    assert!(counted <= 1, "{counted}");
    assert_eq!(acceptances(&fleet), 1);
    f.login(USER, &[&next]).assert("PAM_SUCCESS");
    assert_eq!(acceptances(&fleet), 2);
}

/// A synchronous standby stopped (`synchronous_standby_names`, the standby down): a commit
/// waits for it, so the login's round waits too and is denied at the deadline; the module
/// drops the socket and never sends a cancel, which would end the wait with the commit
/// standing ("accepted" to whoever cancelled). When the standby returns, the commit
/// completes. Twice:
///
/// - standby down before the login: `submit`'s filing does not wait (its commit is the one
///   that is not durable by itself), `verify`'s acceptance does; it completes when the
///   standby returns, after the user was denied: the same code again is "already been
///   used";
/// - standby down between `submit` and `verify` (verify paused, the standby stopped, verify
///   let go): verify's acceptance completes after the user was denied. The code is spent:
///   the same code again is "already been used", the next code logs in.
///
/// Never accepted twice.
#[test]
#[ignore = "needs root"]
fn a_synchronous_standby_down_denies_at_the_deadline_and_sends_no_cancel() {
    let fleet = Fleet::start();
    let deadline = Duration::from_millis(3000);
    let f = fleet.fixture("host_a", "", "db_timeout_ms = 3000\n");
    let e = fleet.enroll(USER);
    let standby = fleet.pg.standby();
    let slot = standby.slot().unwrap().to_owned();
    fleet.superuser("ALTER SYSTEM SET synchronous_standby_names = '*'");
    fleet.superuser("SELECT pg_catalog.pg_reload_conf()");
    wait_for(
        "the standby to be synchronous",
        Duration::from_secs(10),
        || {
            (fleet.superuser("SELECT string_agg(sync_state, ',') FROM pg_stat_replication")
                == "sync")
                .then_some(())
        },
    );
    // Four codes, each for a step of its own, all within the window for the whole test.
    fleet.configure("totp_window", "3");
    settle();
    let codes: Vec<String> = (-2..=1).map(|step| code(&e, step)).collect();
    f.login(USER, &[&codes[0]]).assert("PAM_SUCCESS");

    // Down before the login.
    standby.stop();
    let right = &codes[1];
    let denied = timed(&f, &[right]);
    denied_unavailable(
        &denied,
        deadline,
        &["no answer within the deadline (3000 ms)"],
    );
    assert!(denied.2 >= deadline, "{:?}", denied.2);
    assert_eq!(denied.0.prompts().len(), 1, "{:?}", denied.0);
    // Its client gone, the backend still waits for the standby: no cancel ended the wait.
    let waiting = backends(&fleet, "host_a");
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    assert!(waiting[0].ends_with(" IPC SyncRep"), "{waiting:?}");
    standby.restart();
    fleet.pg.wait_streaming(&slot);
    no_backend_left(&fleet, "host_a", Duration::from_secs(10));
    assert_eq!(audited(&fleet, "submit", "counted"), 2);
    assert_eq!(acceptances(&fleet), 2);
    f.login(USER, &[right])
        .assert("PAM_AUTH_ERR")
        .assert_said(REPLAYED);

    // Down between submit and verify.
    let right = &codes[2];
    let pause = pause_verify(&fleet);
    let denied = std::thread::scope(|s| {
        let login = s.spawn(|| timed(&f, &[right]));
        backend_waiting(&fleet, "host_a", "advisory");
        standby.stop();
        resume(pause);
        backend_waiting(&fleet, "host_a", "SyncRep");
        login.join().unwrap()
    });
    denied_unavailable(
        &denied,
        deadline,
        &["no answer within the deadline (3000 ms)"],
    );
    assert_eq!(acceptances(&fleet), 2, "not yet visible while it waits");
    standby.restart();
    fleet.pg.wait_streaming(&slot);
    no_backend_left(&fleet, "host_a", Duration::from_secs(10));
    unpause(&fleet);
    // The user was denied, but the database accepted the code: it is spent.
    assert_eq!(acceptances(&fleet), 3);
    f.login(USER, &[right])
        .assert("PAM_AUTH_ERR")
        .assert_said(REPLAYED);
    f.login(USER, &[&codes[3]]).assert("PAM_SUCCESS");
    assert_eq!(acceptances(&fleet), 4);
    assert!(
        !fleet
            .pg
            .log()
            .contains("canceling wait for synchronous replication"),
        "a cancel was sent: {}",
        fleet.pg.log()
    );
}
