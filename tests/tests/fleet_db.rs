//! The fleet schema (ivmfa-enroll/sql/v1.sql) in a real PostgreSQL: the same decisions as
//! the file store, exactly once across hosts, and nothing secret for a host to read or to be
//! told, whatever it sets. Each test starts its own server (tests/src/postgres.rs).

use std::time::Instant;

use ivmfa_core::enrollment::{Algorithm, Enrollment, Secret};
use ivmfa_tests::postgres::{require_postgres, Postgres, Session, DATABASE, SUPERUSER};
use ivmfa_tests::*;

/// A server with the schema, the test clock, an administrator `admin` and a role `clock`
/// that may call the API at a chosen time.
fn fleet() -> Postgres {
    require_postgres("the fleet database tests");
    let pg = Postgres::start();
    pg.install();
    pg.login_role("admin", &["ivmfa_admin"]);
    pg.login_role("clock", &["ivmfa_clock"]);
    pg
}

/// A SQL string literal.
fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn bytea(bytes: &[u8]) -> String {
    format!("'\\x{}'::bytea", hex(bytes))
}

/// Enrolls `user` with `key` through the administrators' API.
fn provision(pg: &Postgres, user: &str, key: &[u8], digits: u8, algorithm: &str) {
    let verdict = pg.value(
        "admin",
        &format!(
            "SELECT verdict FROM ivmfa_api.admin_provision({}, {}, {digits}, {}, true)",
            lit(user),
            bytea(key),
            lit(algorithm)
        ),
    );
    assert_eq!(verdict, "enrolled");
}

fn enrollment(key: &[u8], digits: u8, algorithm: Algorithm) -> Enrollment {
    Enrollment {
        digits,
        algorithm,
        ..Enrollment::standard(Secret::from_bytes(key).unwrap(), 0)
    }
}

/// The code ivmfa-core computes for `at`: the database must agree with it.
fn code_at(e: &Enrollment, at: u64) -> String {
    ivmfa_core::totp::code_at(e, at).unwrap().to_string()
}

fn fields(row: &str) -> Vec<String> {
    row.split('|').map(str::to_owned).collect()
}

/// A code right for no step within ten minutes of `at` (so never "clock_off" either), unlike
/// `wrong_code`, which may by chance match a neighbouring step.
fn never_right(e: &Enrollment, at: u64) -> String {
    let near: Vec<String> = (-21i64..=21)
        .map(|k| code_at(e, (at as i64 + k * 30) as u64))
        .collect();
    (0..)
        .map(|n| format!("{:0width$}", n, width = usize::from(e.digits)))
        .find(|c| !near.contains(c))
        .unwrap()
}

/// The columns of verify's answer, or of submit's when it did not file an attempt.
#[derive(Debug)]
struct Judged {
    verdict: String,
    failures: String,
    wait: String,
    recovery_left: String,
    clock_offset: String,
}

/// One answer through submit and verify, on a session of a host role (`at` None: the
/// database's clock) or of the clock role (`at` Some: that time).
fn attempt(s: &mut Session, user: &str, answer: &str, source: &str, at: Option<u64>) -> Judged {
    let submit = match at {
        Some(t) => format!(
            "SELECT * FROM ivmfa_test.submit_at({}, {}, {}, {t})",
            lit(user),
            lit(answer),
            lit(source)
        ),
        None => format!(
            "SELECT * FROM ivmfa_api.submit({}, {}, {})",
            lit(user),
            lit(answer),
            lit(source)
        ),
    };
    let rows = s.query(&submit);
    assert_eq!(rows.len(), 1, "{submit}: {rows:?} {}", s.errors());
    let f = fields(&rows[0]);
    if f[0] != "pending" {
        return Judged {
            verdict: f[0].clone(),
            failures: String::new(),
            wait: f[2].clone(),
            recovery_left: String::new(),
            clock_offset: String::new(),
        };
    }
    let verify = match at {
        Some(t) => format!("SELECT * FROM ivmfa_test.verify_at({}, {t})", f[1]),
        None => format!("SELECT * FROM ivmfa_api.verify({})", f[1]),
    };
    let rows = s.query(&verify);
    assert_eq!(rows.len(), 1, "{verify}: {rows:?} {}", s.errors());
    let f = fields(&rows[0]);
    Judged {
        verdict: f[0].clone(),
        failures: f[1].clone(),
        wait: f[2].clone(),
        recovery_left: f[3].clone(),
        clock_offset: f[4].clone(),
    }
}

/// RFC 6238 Appendix B: the database's HMAC and truncation give the RFC's codes for all
/// three hashes, and a login at each time is accepted with them.
#[test]
#[ignore = "needs root"]
fn rfc6238_vectors_computed_by_the_database() {
    let pg = fleet();
    let sha1 = b"12345678901234567890".as_slice();
    let sha256 = b"12345678901234567890123456789012".as_slice();
    let sha512 = b"1234567890123456789012345678901234567890123456789012345678901234".as_slice();
    let rows: [(u64, &str, &str, &str); 6] = [
        (59, "94287082", "46119246", "90693936"),
        (1111111109, "07081804", "68084774", "25091201"),
        (1111111111, "14050471", "67062674", "99943326"),
        (1234567890, "89005924", "91819424", "93441116"),
        (2000000000, "69279037", "90698825", "38618901"),
        (20000000000, "65353130", "77737706", "47863826"),
    ];
    let mut clock = pg.session("clock");
    for (key, algorithm, column) in [
        (sha1, "SHA1", 1),
        (sha256, "SHA256", 2),
        (sha512, "SHA512", 3),
    ] {
        let user = format!("rfc-{}", algorithm.to_lowercase());
        provision(&pg, &user, key, 8, algorithm);
        for row in rows {
            let (t, want) = (row.0, [row.1, row.2, row.3][column - 1]);
            let got = clock.query(&format!(
                "SELECT ivmfa_test.totp_at({}, {t}, 8, {})",
                bytea(key),
                lit(algorithm)
            ));
            assert_eq!(got, [want], "{algorithm} at {t}");
            let j = attempt(&mut clock, &user, want, "rfc", Some(t));
            assert_eq!(j.verdict, "accepted", "{algorithm} at {t}: {j:?}");
        }
    }
    // Six digits are the low six of the eight, and ivmfa-core agrees.
    provision(&pg, "rfc6", sha1, 6, "SHA1");
    let e = enrollment(sha1, 6, Algorithm::SHA1);
    assert_eq!(code_at(&e, 59), "287082");
    assert_eq!(
        attempt(&mut clock, "rfc6", "287082", "rfc", Some(59)).verdict,
        "accepted"
    );
}

/// The file store's decisions, at times the test chooses: window, watermark, refused future
/// steps, back-off doubling to its cap, the per-user total, recovery codes used once,
/// answers that are no code at all.
#[test]
#[ignore = "needs root"]
fn decisions_match_the_file_store() {
    let pg = fleet();
    let key = random_secret();
    let e = enrollment(key.expose(), 6, Algorithm::SHA1);
    provision(&pg, "dana", key.expose(), 6, "SHA1");
    let mut c = pg.session("clock");
    let t0: u64 = 1_700_000_010;
    let at = |s: i64| code_at(&e, (t0 as i64 + s * 30) as u64);

    // The window is one step either way; the watermark refuses what is not newer.
    assert_eq!(
        attempt(&mut c, "dana", &at(0), "h", Some(t0)).verdict,
        "accepted"
    );
    let again = attempt(&mut c, "dana", &at(0), "h", Some(t0));
    assert_eq!(
        (again.verdict.as_str(), again.failures.as_str()),
        ("replayed", "1")
    );
    assert_eq!(
        attempt(&mut c, "dana", &at(-1), "h", Some(t0)).verdict,
        "replayed"
    );
    assert_eq!(
        attempt(&mut c, "dana", &at(1), "h", Some(t0)).verdict,
        "accepted"
    );
    assert_eq!(
        attempt(&mut c, "dana", &at(1), "h", Some(t0 + 30)).verdict,
        "replayed"
    );
    // Spaces as apps show them, and the next step.
    let spaced = format!(" {} {} ", &at(2)[..3], &at(2)[3..]);
    assert_eq!(
        attempt(&mut c, "dana", &spaced, "h", Some(t0 + 60)).verdict,
        "accepted"
    );

    // Outside the window: told how far the phone is off, never accepted, and a code for a
    // time still to come stays refused when that time comes.
    let t1 = t0 + 600;
    // (A source each, so that these failures hold nothing back.)
    let ahead = code_at(&e, t1 + 90);
    let j = attempt(&mut c, "dana", &ahead, "s1", Some(t1));
    assert_eq!(
        (j.verdict.as_str(), j.clock_offset.as_str()),
        ("clock_off", "90"),
        "{j:?}"
    );
    let behind = code_at(&e, t1 - 150);
    let j = attempt(&mut c, "dana", &behind, "s2", Some(t1));
    assert_eq!(
        (j.verdict.as_str(), j.clock_offset.as_str()),
        ("clock_off", "-150"),
        "{j:?}"
    );
    let far = code_at(&e, t1 + 3600);
    assert_eq!(
        attempt(&mut c, "dana", &far, "s3", Some(t1)).verdict,
        "wrong"
    );
    assert_eq!(
        attempt(&mut c, "dana", &ahead, "s4", Some(t1 + 90)).verdict,
        "replayed"
    );
    assert_eq!(
        attempt(&mut c, "dana", &code_at(&e, t1 + 120), "s5", Some(t1 + 120)).verdict,
        "accepted"
    );

    // Not a code: refused and not counted.
    for answer in [
        "",
        "12345",
        "1234567",
        "12345a",
        "１２３４５６",
        "reset",
        &"1".repeat(65),
    ] {
        let j = attempt(&mut c, "dana", answer, "h", Some(t1 + 120));
        assert_eq!(j.verdict, "malformed", "{answer:?}");
    }

    // Back-off: three failures from a source, then a wait that doubles up to its cap.
    let t2 = t1 + 3600;
    let wrong = |t: u64| never_right(&e, t);
    let mut now = t2;
    let mut waits = Vec::new();
    for _ in 0..9 {
        let j = attempt(&mut c, "dana", &wrong(now), "10.0.0.1", Some(now));
        assert_eq!(j.verdict, "wrong", "{j:?}");
        let wait: u64 = j.wait.parse().unwrap();
        waits.push(wait);
        if wait > 0 {
            let held = attempt(
                &mut c,
                "dana",
                &wrong(now),
                "10.0.0.1",
                Some(now + wait - 1),
            );
            assert_eq!(held.verdict, "backing_off", "{held:?}");
            assert_eq!(held.wait, "1");
        }
        now += wait;
    }
    assert_eq!(waits, [0, 0, 30, 60, 120, 240, 480, 900, 900]);
    // Another source: the per-user total (10) holds it back after one more failure.
    let j = attempt(&mut c, "dana", &wrong(now), "10.0.0.2", Some(now));
    assert_eq!(
        (j.verdict.as_str(), j.wait.as_str()),
        ("wrong", "30"),
        "{j:?}"
    );
    let j = attempt(&mut c, "dana", &wrong(now), "10.0.0.3", Some(now + 1));
    assert_eq!((j.verdict.as_str(), j.wait.as_str()), ("backing_off", "29"));
    // A right code after the wait starts every counter over.
    let t3 = now + 30;
    assert_eq!(
        attempt(&mut c, "dana", &code_at(&e, t3), "10.0.0.3", Some(t3)).verdict,
        "accepted"
    );
    let state = pg.value(
        "clock",
        &format!(
            "SELECT wait_seconds FROM ivmfa_test.before_prompt_at('dana', '10.0.0.1', false, {t3})"
        ),
    );
    assert_eq!(state, "0");

    // Recovery codes: any spelling, once each; the count left is told.
    let codes = pg.sql(
        "admin",
        DATABASE,
        "SELECT code FROM ivmfa_api.admin_recovery_codes('dana', 3)",
    );
    let codes: Vec<&str> = codes.lines().collect();
    assert_eq!(codes.len(), 3);
    assert!(
        codes
            .iter()
            .all(|c| c.len() == 14 && c.matches('-').count() == 2),
        "{codes:?}"
    );
    let j = attempt(&mut c, "dana", codes[0], "h", Some(t3 + 5));
    assert_eq!(
        (j.verdict.as_str(), j.recovery_left.as_str()),
        ("recovered", "2")
    );
    assert_eq!(
        attempt(&mut c, "dana", codes[0], "h", Some(t3 + 6)).verdict,
        "wrong"
    );
    let typed = codes[1].to_uppercase().replace('-', " ");
    let j = attempt(&mut c, "dana", &typed, "h", Some(t3 + 7));
    assert_eq!(
        (j.verdict.as_str(), j.recovery_left.as_str()),
        ("recovered", "1")
    );
    // A new set: the old codes stop working.
    pg.sql(
        "admin",
        DATABASE,
        "SELECT code FROM ivmfa_api.admin_recovery_codes('dana', 1)",
    );
    assert_eq!(
        attempt(&mut c, "dana", codes[2], "h", Some(t3 + 8)).verdict,
        "wrong"
    );

    // Users the database does not know, or names no store would take.
    assert_eq!(
        attempt(&mut c, "nobody", "123456", "h", Some(t3)).verdict,
        "not_enrolled"
    );
    assert_eq!(
        attempt(&mut c, "../x", "123456", "h", Some(t3)).verdict,
        "invalid_user"
    );
    assert_eq!(
        attempt(&mut c, &"a".repeat(129), "123456", "h", Some(t3)).verdict,
        "invalid_user"
    );
}

/// Flow 3 across the fleet: one request per user, an approval that lets the next login set
/// up a new key (recovery codes shown once), a denial whose reason is shown once.
#[test]
#[ignore = "needs root"]
fn reset_desk_and_setup_under_a_ticket() {
    let pg = fleet();
    pg.login_role("host_a", &["ivmfa_host"]);
    pg.login_role("host_b", &["ivmfa_host"]);
    let key = random_secret();
    provision(&pg, "erin", key.expose(), 6, "SHA1");
    let request = |host: &str| {
        pg.value(
            host,
            "SELECT verdict FROM ivmfa_api.request_reset('erin', 'sshd', '192.0.2.7', 'ssh')",
        )
    };
    assert_eq!(request("host_a"), "filed");
    assert_eq!(request("host_b"), "pending");
    let list = pg.sql(
        "admin",
        DATABASE,
        "SELECT user_name, service, rhost, host FROM ivmfa_api.admin_reset_list()",
    );
    assert_eq!(list, "erin|sshd|192.0.2.7|host_a");
    let before = |host: &str| {
        pg.value(host, "SELECT status || ',' || reset_pending || ',' || COALESCE(notice, '-') FROM ivmfa_api.before_prompt('erin', '', true)")
    };
    assert_eq!(before("host_b"), "enrolled,true,-");

    // Without a ticket no host may set up a key.
    assert_eq!(
        pg.value(
            "host_a",
            "SELECT verdict FROM ivmfa_api.setup_begin('erin')"
        ),
        "enrolled"
    );
    assert_eq!(
        pg.value(
            "host_a",
            "SELECT verdict FROM ivmfa_api.setup_begin('frank')"
        ),
        "not_allowed"
    );

    let approved = pg.value(
        "admin",
        "SELECT verdict FROM ivmfa_api.admin_reset_approve('erin')",
    );
    assert_eq!(approved, "approved");
    assert_eq!(before("host_b"), "ticket,false,-");
    let begun = pg.value(
        "host_b",
        "SELECT verdict || '|' || secret_base32 FROM ivmfa_api.setup_begin('erin')",
    );
    let (verdict, secret) = begun.split_once('|').unwrap();
    assert_eq!(verdict, "ok");
    // Another host cannot finish host_b's set-up.
    let e = Enrollment::standard(Secret::from_base32(secret).unwrap(), 0);
    settle();
    let right = code(&e, 0);
    let finish = |host: &str, answer: &str| {
        pg.value(host, &format!("SELECT verdict || '|' || tries_left || '|' || COALESCE(array_to_string(recovery_codes, ' '), '') FROM ivmfa_api.setup_finish('erin', {})", lit(answer)))
    };
    assert_eq!(finish("host_a", &right), "no_setup|0|");
    assert_eq!(finish("host_b", &never_right(&e, now())), "wrong|2|");
    let done = finish("host_b", &right);
    assert!(done.starts_with("enrolled|0|"), "{done}");
    assert_eq!(
        recovery_codes_in(&done.replace('|', " ")).len(),
        10,
        "{done}"
    );
    assert_eq!(before("host_a"), "enrolled,false,-");
    // The code that finished the set-up is used; the next one works on any host.
    let mut a = pg.session("host_a");
    assert_eq!(
        attempt(&mut a, "erin", &right, "x", None).verdict,
        "replayed"
    );

    // A denial: its reason once, to the first login that takes it.
    assert_eq!(request("host_a"), "filed");
    let denied = pg.value("admin", "SELECT verdict FROM ivmfa_api.admin_reset_deny('erin', 'Call the service desk: ext. 4711')");
    assert_eq!(denied, "denied");
    assert_eq!(
        before("host_b"),
        "enrolled,false,Call the service desk: ext. 4711"
    );
    assert_eq!(before("host_a"), "enrolled,false,-");
    let audit = pg.sql(
        SUPERUSER,
        DATABASE,
        "SELECT role || ' ' || action || ' ' || outcome FROM ivmfa.audit ORDER BY id",
    );
    for line in [
        "host_a request_reset filed",
        "host_b request_reset already pending",
        "admin admin_reset_approve approved",
        "host_b setup_finish enrolled (ticket)",
        "admin admin_reset_deny denied",
        "host_b notice_shown shown",
    ] {
        assert!(
            audit.lines().any(|l| l == line),
            "{line} not in the audit:\n{audit}"
        );
    }
}

/// One fleet, one watermark and one failure count: a failure on host A holds the user back
/// on host B, and a code used through A is refused through B.
#[test]
#[ignore = "needs root"]
fn hosts_share_failures_and_the_watermark() {
    let pg = fleet();
    pg.login_role("host_a", &["ivmfa_host"]);
    pg.login_role("host_b", &["ivmfa_host"]);
    let key = random_secret();
    let e = enrollment(key.expose(), 6, Algorithm::SHA1);
    provision(&pg, "gail", key.expose(), 6, "SHA1");
    let mut a = pg.session("host_a");
    let mut b = pg.session("host_b");
    settle();
    let c = code(&e, 0);
    assert_eq!(
        attempt(&mut a, "gail", &c, "192.0.2.1", None).verdict,
        "accepted"
    );
    assert_eq!(
        attempt(&mut b, "gail", &c, "192.0.2.1", None).verdict,
        "replayed"
    );
    // Three failures from one client address: two on A, one on B.
    let w = never_right(&e, now());
    assert_eq!(
        attempt(&mut a, "gail", &w, "192.0.2.9", None).verdict,
        "wrong"
    );
    let j = attempt(&mut b, "gail", &w, "192.0.2.9", None);
    assert_eq!(
        (j.verdict.as_str(), j.failures.as_str()),
        ("wrong", "2"),
        "{j:?}"
    );
    let j = attempt(&mut a, "gail", &w, "192.0.2.9", None);
    assert_eq!(
        (j.verdict.as_str(), j.failures.as_str(), j.wait.as_str()),
        ("wrong", "3", "30")
    );
    let held = b.query(
        "SELECT status, wait_seconds FROM ivmfa_api.before_prompt('gail', '192.0.2.9', false)",
    );
    assert_eq!(held, ["enrolled|30"]);
    assert_eq!(
        attempt(&mut b, "gail", &code(&e, 1), "192.0.2.9", None).verdict,
        "backing_off"
    );
    // Another client address is not held back.
    assert_eq!(
        attempt(&mut b, "gail", &code(&e, 1), "192.0.2.10", None).verdict,
        "accepted"
    );
}

/// A host that rolls back what it called learns nothing for free: submit's counted failure is
/// committed before any verdict exists, and rolling back a verdict leaves it counted.
#[test]
#[ignore = "needs root"]
fn a_rolled_back_call_still_counts() {
    let pg = fleet();
    pg.login_role("host_a", &["ivmfa_host"]);
    let key = random_secret();
    let e = enrollment(key.expose(), 6, Algorithm::SHA1);
    provision(&pg, "hal", key.expose(), 6, "SHA1");
    let submit = format!(
        "SELECT attempt FROM ivmfa_api.submit('hal', {}, 'x')",
        lit(&never_right(&e, now()))
    );
    let verify = |id: &str| format!("SELECT verdict FROM ivmfa_api.verify({id})");
    let mut h = pg.session("host_a");

    // An attempt rolled back never existed: there is nothing to judge.
    h.query("BEGIN");
    let id = h.query(&submit).concat();
    h.query("ROLLBACK");
    assert_eq!(h.query(&verify(&id)), ["unknown_attempt"]);
    // Judged in the transaction that filed it, its failure would be rolled back with the
    // verdict: refused, in an explicit transaction and within one statement.
    h.query("BEGIN");
    let id = h.query(&submit).concat();
    assert_eq!(h.query(&verify(&id)), ["uncommitted"]);
    h.query("ROLLBACK");
    let both = h.query(&verify(&format!("({submit})")));
    assert_eq!(both, ["uncommitted"], "{}", h.errors());

    // A verdict seen and rolled back: the attempt stays counted (that statement's was
    // the first).
    let id = h.query(&submit).concat();
    h.query("BEGIN");
    assert_eq!(h.query(&verify(&id)), ["wrong"]);
    h.query("ROLLBACK");
    // The same in one query string of two statements, one transaction that fails once the
    // verdict is out.
    let id = h.query(&submit).concat();
    let told = h.query(&format!("{} \\; SELECT 1/0", verify(&id)));
    assert_eq!(told, ["wrong"], "{}", h.errors());
    assert!(h.errors().contains("division by zero"), "{}", h.errors());

    // Three failures from this source: it must wait, even with the right code.
    let j = attempt(&mut h, "hal", &code(&e, 0), "x", None);
    assert_eq!(j.verdict, "backing_off", "{j:?}");
    let failures = pg.value(
        "admin",
        "SELECT failures FROM ivmfa_api.admin_status('hal')",
    );
    assert_eq!(failures, "3");
}

/// Whatever goes wrong inside a host function is a verdict, `error`, never an error message
/// (whose text could quote a row): a read-only transaction, a lock held elsewhere past the
/// caller's lock_timeout or statement_timeout. Only the SQLSTATE is kept, in the audit.
#[test]
#[ignore = "needs root"]
fn errors_are_verdicts_not_messages() {
    let pg = fleet();
    pg.login_role("host_a", &["ivmfa_host"]);
    let key = random_secret();
    provision(&pg, "lee", key.expose(), 6, "SHA1");
    let calls = [
        "SELECT verdict FROM ivmfa_api.submit('lee', '123456', 'x')",
        "SELECT verdict FROM ivmfa_api.request_reset('lee', 's', 'r', 't')",
        "SELECT verdict FROM ivmfa_api.setup_begin('lee')",
        "SELECT status FROM ivmfa_api.before_prompt('lee', 'x', true)",
    ];
    let read_only: String = calls.iter().map(|c| format!("{c};\n")).collect();
    let run = pg.run(
        "host_a",
        &format!("SET default_transaction_read_only = on;\n{read_only}"),
    );
    assert_eq!(run.stdout, "error\nerror\nerror\nerror\n", "{run:#?}");
    assert_eq!(run.stderr, "");

    // The user's row locked by someone else: the caller's own timeouts end the wait.
    let mut holder = pg.session(SUPERUSER);
    holder.query("BEGIN");
    holder.query("SELECT 1 FROM ivmfa.account WHERE name = 'lee' FOR UPDATE");
    for timeout in ["lock_timeout", "statement_timeout"] {
        let run = pg.run(
            "host_a",
            &format!("SET {timeout} = '200ms';\n{};\n{};\n", calls[0], calls[1]),
        );
        assert_eq!(run.stdout, "error\nerror\n", "{timeout}: {run:#?}");
        assert_eq!(run.stderr, "", "{timeout}");
    }
    holder.query("ROLLBACK");
    let kept = pg.sql(
        SUPERUSER,
        DATABASE,
        "SELECT DISTINCT outcome FROM ivmfa.audit WHERE outcome LIKE 'error%' ORDER BY 1",
    );
    assert_eq!(
        kept, "error 55P03\nerror 57014",
        "lock_not_available, query_canceled"
    );
}

/// Exactly once, fleet-wide: 8 psql processes on 8 host roles race one code (and then one
/// recovery code) round after round; each round exactly one of them is accepted.
#[test]
#[ignore = "needs root"]
fn exactly_once_across_eight_hosts() {
    const HOSTS: usize = 8;
    const ROUNDS: usize = 200;
    let pg = fleet();
    let key = random_secret();
    let e = enrollment(key.expose(), 6, Algorithm::SHA1);
    provision(&pg, "race", key.expose(), 6, "SHA1");
    let mut hosts: Vec<Session> = (0..HOSTS)
        .map(|i| {
            let role = format!("host{i}");
            pg.login_role(&role, &["ivmfa_host"]);
            pg.session(&role)
        })
        .collect();
    let mut clock = pg.session("clock");
    let mut admin = pg.session("admin");

    let race = |hosts: &mut Vec<Session>, answer: &str| -> Vec<String> {
        for (i, h) in hosts.iter_mut().enumerate() {
            h.send(&format!(
                "SELECT attempt FROM ivmfa_api.submit('race', {}, '10.0.0.{i}')",
                lit(answer)
            ));
        }
        let ids: Vec<String> = hosts.iter_mut().map(|h| h.receive().concat()).collect();
        // All eight verifications are sent before any answer is read.
        for (h, id) in hosts.iter_mut().zip(&ids) {
            h.send(&format!("SELECT verdict FROM ivmfa_api.verify({id})"));
        }
        hosts.iter_mut().map(|h| h.receive().concat()).collect()
    };

    let started = Instant::now();
    for round in 0..ROUNDS {
        clock.query("SELECT ivmfa_test.rewind('race')");
        let verdicts = race(&mut hosts, &code(&e, 0));
        let accepted = verdicts.iter().filter(|v| *v == "accepted").count();
        assert_eq!(accepted, 1, "round {round}: {verdicts:?}");
        assert!(
            verdicts.iter().all(|v| v == "accepted" || v == "replayed"),
            "{verdicts:?}"
        );
    }
    let totp = started.elapsed();

    let started = Instant::now();
    for round in 0..ROUNDS {
        clock.query("SELECT ivmfa_test.rewind('race')");
        let code = admin
            .query("SELECT code FROM ivmfa_api.admin_recovery_codes('race', 1)")
            .concat();
        let verdicts = race(&mut hosts, &code);
        let recovered = verdicts.iter().filter(|v| *v == "recovered").count();
        assert_eq!(recovered, 1, "round {round}: {verdicts:?}");
        assert!(
            verdicts.iter().all(|v| v == "recovered" || v == "wrong"),
            "{verdicts:?}"
        );
    }
    let recovery = started.elapsed();
    eprintln!(
        "exactly once: {ROUNDS} rounds of {HOSTS} hosts, TOTP {:.1} s, recovery codes {:.1} s",
        totp.as_secs_f64(),
        recovery.as_secs_f64()
    );
    let audit = pg.value(SUPERUSER, "SELECT count(*) FROM ivmfa.audit WHERE action = 'verify' AND outcome IN ('accepted', 'recovery code accepted')");
    assert_eq!(audit, (2 * ROUNDS).to_string());
}

/// Every function a host role may call, in alphabetical order.
const HOST_API: [&str; 9] = [
    "before_prompt",
    "grace",
    "request_reset",
    "schema_version",
    "setup_begin",
    "setup_finish",
    "submit",
    "submit_grace",
    "verify",
];

/// A host role can read nothing: no table, no function but its own API, no other role, no
/// temporary or other object, no server file, no large object.
#[test]
#[ignore = "needs root"]
fn a_host_reads_nothing_secret() {
    let pg = fleet();
    pg.login_role("host_a", &["ivmfa_host"]);
    let key = random_secret();
    provision(&pg, "ivan", key.expose(), 6, "SHA1");
    pg.sql(
        "admin",
        DATABASE,
        "SELECT code FROM ivmfa_api.admin_recovery_codes('ivan', 5)",
    );
    pg.sql(SUPERUSER, DATABASE, "ANALYZE");
    let object = pg.value(
        SUPERUSER,
        &format!("SELECT lo_from_bytea(0, {})", bytea(key.expose())),
    );

    // Every table and sequence of ours, every function but the host API.
    let mut refused: Vec<String> = pg
        .sql(
            SUPERUSER,
            DATABASE,
            "SELECT format('SELECT * FROM %I.%I', n.nspname, c.relname) FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname IN ('ivmfa', 'ivmfa_api', 'ivmfa_test') AND c.relkind IN ('r', 'v', 'm', 'S', 'p', 'f') \
             ORDER BY 1",
        )
        .lines()
        .map(str::to_owned)
        .collect();
    let tables = refused.len();
    assert!(tables >= 13, "{refused:?}");
    let functions: Vec<String> = pg
        .sql(
            SUPERUSER,
            DATABASE,
            "SELECT format('SELECT %s(%s)', p.oid::regproc, \
                    COALESCE(string_agg('NULL::' || format_type(a.t, NULL), ', ' ORDER BY a.i), '')) \
             FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
             LEFT JOIN LATERAL unnest(p.proargtypes::oid[]) WITH ORDINALITY AS a(t, i) ON true \
             WHERE n.nspname IN ('ivmfa', 'ivmfa_api', 'ivmfa_test') \
               AND NOT (n.nspname = 'ivmfa_api' \
                        AND has_function_privilege('ivmfa_host', p.oid, 'EXECUTE')) \
             GROUP BY p.oid ORDER BY 1",
        )
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(functions.len() > 40, "{functions:?}");
    refused.extend(functions);
    // What a host may call, all of it in ivmfa_api: everything else of ours is tried above.
    let host_api = pg.sql(
        SUPERUSER,
        DATABASE,
        "SELECT n.nspname || '.' || p.proname FROM pg_proc p \
         JOIN pg_namespace n ON n.oid = p.pronamespace \
         WHERE n.nspname IN ('ivmfa', 'ivmfa_api', 'ivmfa_test') \
           AND has_function_privilege('ivmfa_host', p.oid, 'EXECUTE') ORDER BY 1",
    );
    assert_eq!(
        host_api.lines().collect::<Vec<_>>(),
        HOST_API.map(|f| format!("ivmfa_api.{f}")),
        "the functions a host may call"
    );
    refused.extend(
        [
            "SET ROLE ivmfa_owner",
            "SET ROLE ivmfa_admin",
            "SET ROLE ivmfa_clock",
            "SET ROLE postgres",
            "SET SESSION AUTHORIZATION postgres",
            "CREATE TEMP TABLE t (a int)",
            "CREATE TABLE public.t (a int)",
            "CREATE SCHEMA mine",
            "CREATE FUNCTION public.f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
            "SELECT pg_read_file('/etc/passwd')",
            "SELECT pg_read_binary_file('/etc/shadow')",
            "SELECT pg_ls_dir('.')",
            "SELECT lo_import('/etc/passwd')",
            "SELECT lo_create(0)",
            "SELECT lo_from_bytea(0, '\\x00')",
            &format!("SELECT lo_get({object})"),
            &format!("SELECT lo_open({object}, 262144)"),
            "COPY (SELECT 1) TO PROGRAM 'id'",
            "COPY (SELECT 1) TO '/tmp/ivmfa-host-copy'",
            "SELECT * FROM ivmfa.secret",
        ]
        .map(str::to_owned),
    );
    let script: String = refused.iter().map(|s| format!("{s};\n")).collect();
    let run = pg.run("host_a", &script);
    assert_eq!(run.stdout.trim(), "", "a host was answered: {run:#?}");
    let errors: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("ERROR:"))
        .collect();
    assert_eq!(errors.len(), refused.len(), "{run:#?}");
    for (statement, error) in refused.iter().zip(&errors) {
        assert!(
            error.contains("permission denied")
                || error.contains("must be superuser or have privileges"),
            "{statement}: {error}"
        );
    }
    // Column statistics are filtered by what the role may read.
    let stats = pg.value(
        "host_a",
        "SELECT count(*) FROM pg_stats WHERE schemaname LIKE 'ivmfa%'",
    );
    assert_eq!(stats, "0");
    // What the host may call, it may call.
    assert_eq!(pg.value("host_a", "SELECT ivmfa_api.schema_version()"), "1");
}

/// Every function of ours pins search_path (pg_catalog first, pg_temp last) and every
/// message setting a host can change; the API is SECURITY DEFINER, owned by a role that
/// cannot log in and is no superuser; PUBLIC may neither connect nor make temporary tables.
#[test]
#[ignore = "needs root"]
fn every_function_pins_its_settings() {
    let pg = fleet();
    // Every setting a plain role may change that makes the server say more (plpgsql's are
    // listed once the language is loaded).
    let raisable = pg.sql(
        SUPERUSER,
        DATABASE,
        "DO $$ BEGIN END $$; SELECT name FROM pg_settings WHERE context = 'user' \
         AND (name ~ '^(client_min_messages|debug_|trace_|log_|plpgsql\\.)' \
              OR name IN ('exit_on_error', 'standard_conforming_strings', 'transform_null_equals', \
                          'search_path')) ORDER BY 1",
    );
    let raisable: Vec<&str> = raisable.lines().collect();
    for needed in [
        "client_min_messages",
        "debug_print_plan",
        "plpgsql.print_strict_params",
        "search_path",
    ] {
        assert!(raisable.contains(&needed), "{raisable:?}");
    }
    let functions = pg.sql(
        SUPERUSER,
        DATABASE,
        "SELECT p.oid::regprocedure || '|' || n.nspname || '|' || p.prosecdef || '|' || \
                array_to_string(p.proconfig, '#') \
         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
         WHERE n.nspname IN ('ivmfa', 'ivmfa_api', 'ivmfa_test') AND p.proowner = 'ivmfa_owner'::regrole",
    );
    let mut count = 0;
    for line in functions.lines() {
        count += 1;
        let f = fields(line);
        let config: Vec<&str> = f[3].split('#').collect();
        assert!(
            config.contains(&"search_path=pg_catalog, pg_temp"),
            "{line}"
        );
        assert!(config.contains(&"client_min_messages=error"), "{line}");
        for name in &raisable {
            assert!(
                config.iter().any(|c| c.starts_with(&format!("{name}="))),
                "{} does not pin {name}",
                f[0]
            );
        }
        if f[1] != "ivmfa" {
            assert_eq!(f[2], "true", "{} is not SECURITY DEFINER", f[0]);
        }
    }
    assert!(count > 30, "{functions}");
    let owner = pg.value(
        SUPERUSER,
        "SELECT rolsuper OR rolcanlogin FROM pg_roles WHERE rolname = 'ivmfa_owner'",
    );
    assert_eq!(owner, "f");
    let public = pg.value(
        SUPERUSER,
        "SELECT has_database_privilege('public', 'ivmfa', 'CONNECT') \
             OR has_database_privilege('public', 'ivmfa', 'TEMP') \
             OR has_schema_privilege('public', 'ivmfa', 'USAGE') \
             OR has_schema_privilege('public', 'ivmfa_api', 'USAGE')",
    );
    assert_eq!(public, "f");
    let executable = pg.value(
        SUPERUSER,
        "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
         WHERE n.nspname IN ('ivmfa', 'ivmfa_api', 'ivmfa_test') \
           AND has_function_privilege('public', p.oid, 'EXECUTE')",
    );
    assert_eq!(executable, "0");
    // A second install is refused, and says what to do instead.
    let again = pg.run(
        SUPERUSER,
        &format!(
            "\\set ON_ERROR_STOP 1\n\\i {}\n",
            ivmfa_tests::postgres::schema_path().display()
        ),
    );
    assert!(
        !again.ok && again.stderr.contains("already has the ivmfa schema"),
        "{again:#?}"
    );
}

/// The host role raises every message setting it may, then calls every host function with
/// right, wrong, replayed, huge, NUL and multibyte input: nothing it is told, result or
/// message, holds the key, the recovery salt or a recovery hash, in hex, base32 or as a list
/// of bytes.
#[test]
#[ignore = "needs root"]
fn no_secret_in_anything_a_host_is_told() {
    let pg = fleet();
    pg.login_role("host_a", &["ivmfa_host"]);
    let key = random_secret();
    let e = enrollment(key.expose(), 6, Algorithm::SHA1);
    provision(&pg, "judy", key.expose(), 6, "SHA1");
    let codes = pg.sql(
        "admin",
        DATABASE,
        "SELECT code FROM ivmfa_api.admin_recovery_codes('judy', 4)",
    );
    let codes: Vec<&str> = codes.lines().collect();
    let salt = pg.value(
        SUPERUSER,
        "SELECT encode(salt, 'hex') FROM ivmfa.recovery_set WHERE name = 'judy'",
    );
    let hashes = pg.sql(
        SUPERUSER,
        DATABASE,
        "SELECT encode(hash, 'hex') FROM ivmfa.recovery_code WHERE name = 'judy'",
    );
    let mut secrets: Vec<Vec<u8>> = vec![key.expose().to_vec(), unhex(&salt)];
    secrets.extend(hashes.lines().map(unhex));
    assert_eq!(secrets.len(), 6);
    // A ticket for another user, whose set-up this host sees (as it must).
    provision(&pg, "kim", random_secret().expose(), 6, "SHA1");
    pg.sql(
        "host_a",
        DATABASE,
        "SELECT * FROM ivmfa_api.request_reset('kim', 's', 'r', 't')",
    );
    pg.sql(
        "admin",
        DATABASE,
        "SELECT * FROM ivmfa_api.admin_reset_approve('kim')",
    );

    let loud = "SET client_min_messages = debug5;\nSET debug_print_parse = on;\n\
                SET debug_print_rewritten = on;\nSET debug_print_plan = on;\n\
                SET debug_pretty_print = on;\nSET trace_sort = on;\nSET trace_notify = on;\n\
                SET log_parameter_max_length_on_error = -1;\n\
                SET plpgsql.print_strict_params = on;\nSET plpgsql.extra_warnings = 'all';\n\
                SET plpgsql.extra_errors = 'all';\nSET plpgsql.check_asserts = on;\n\
                SET standard_conforming_strings = off;\nSET escape_string_warning = on;\n\
                SET transform_null_equals = on;\nSET plan_cache_mode = force_custom_plan;\n\
                SET jit = off;\n";
    settle();
    let right = code(&e, 0);
    let huge = "9".repeat(20_000);
    let wide = "é€𝄞".repeat(3_000);
    let answers: Vec<String> = vec![
        right.clone(),
        right.clone(),
        never_right(&e, now()),
        code(&e, 5),
        codes[0].to_owned(),
        codes[0].to_owned(),
        "abcd-efgh-jkmn".into(),
        "１２３４５６".into(),
        "12345678".into(),
        huge.clone(),
        wide.clone(),
    ];
    let mut script = format!("{loud}SET exit_on_error = on;\n");
    for (i, answer) in answers.iter().enumerate() {
        script.push_str(&format!(
            "SELECT * FROM ivmfa_api.before_prompt('judy', {src}, true);\n\
             SELECT COALESCE(attempt, 0) AS a{i}, verdict AS s{i} FROM ivmfa_api.submit('judy', {a}, {src}) \\gset\n\
             \\echo submit :s{i}\n\
             SELECT * FROM ivmfa_api.verify(:a{i});\n",
            a = lit(answer),
            src = lit(if i % 2 == 0 { "192.0.2.1" } else { &wide }),
        ));
    }
    script.push_str(&format!(
        "SELECT * FROM ivmfa_api.before_prompt({h}, {h}, true);\n\
         SELECT * FROM ivmfa_api.submit({h}, {h}, {h});\n\
         SELECT * FROM ivmfa_api.verify(-1);\n\
         SELECT * FROM ivmfa_api.verify(9223372036854775807);\n\
         SELECT * FROM ivmfa_api.request_reset('judy', {w}, {w}, {h});\n\
         SELECT * FROM ivmfa_api.request_reset('judy', 'sshd', '', '');\n\
         SELECT * FROM ivmfa_api.request_reset({w}, '', '', '');\n\
         SELECT * FROM ivmfa_api.setup_begin('judy');\n\
         SELECT * FROM ivmfa_api.setup_finish('judy', {r});\n\
         SELECT verdict FROM ivmfa_api.setup_begin('kim');\n\
         SELECT * FROM ivmfa_api.setup_finish('kim', {h});\n\
         SELECT * FROM ivmfa_api.setup_finish('kim', {w});\n\
         SELECT * FROM ivmfa_api.setup_finish('kim', '000000');\n\
         SELECT * FROM ivmfa_api.before_prompt(NULL, NULL, NULL);\n\
         SELECT * FROM ivmfa_api.submit('judy', NULL, NULL);\n\
         SELECT * FROM ivmfa_api.submit(NULL, NULL, NULL);\n\
         SELECT * FROM ivmfa_api.verify(NULL);\n\
         SELECT * FROM ivmfa_api.request_reset('judy', NULL, NULL, NULL);\n\
         SELECT * FROM ivmfa_api.setup_begin(NULL);\n\
         SELECT * FROM ivmfa_api.setup_finish('kim', NULL);\n\
         SELECT ivmfa_api.schema_version();\n",
        h = lit(&huge),
        w = lit(&wide),
        r = lit(&right),
    ));
    let started = Instant::now();
    let run = pg.run("host_a", &script);
    let told = run.all();
    eprintln!(
        "told {} bytes in {:.1} s",
        told.len(),
        started.elapsed().as_secs_f64()
    );
    // The settings took effect (else this proves nothing), and every path was taken.
    assert!(told.contains("PLANNEDSTMT"), "no plan was printed");
    assert!(told.contains("DEBUG:"), "no debug message was printed");
    for verdict in [
        "submit pending",
        "accepted|",
        "replayed|",
        "wrong|",
        "clock_off|",
        "recovered|",
        "submit malformed",
        "enrolled|",
        "unknown_attempt|",
        "invalid_user|",
        "filed\n",
        "pending\n",
        "\nok\n",
        "failed|",
    ] {
        assert!(
            told.contains(verdict),
            "{verdict} never came: {}",
            &told[told.len().saturating_sub(3000)..]
        );
    }
    assert!(
        run.ok,
        "{}",
        run.stderr
            .lines()
            .filter(|l| l.starts_with("ERROR") || l.starts_with("FATAL"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // NUL cannot reach a function: the server refuses it in the statement itself.
    let mut nul = loud.to_owned();
    for call in [
        "ivmfa_api.submit('judy', E'1234\\x0056', 'x')",
        "ivmfa_api.submit('judy', convert_from(decode('313200', 'hex'), 'UTF8'), 'x')",
        "ivmfa_api.before_prompt(E'ju\\x00dy', 'x', true)",
        "ivmfa_api.request_reset('judy', chr(0), 'x', 'y')",
        "ivmfa_api.setup_finish('kim', E'\\x00')",
        "ivmfa_api.setup_begin(E'k\\x00im')",
    ] {
        nul.push_str(&format!("SELECT * FROM {call};\n"));
    }
    let refused = pg.run("host_a", &nul);
    assert_eq!(refused.stderr.matches("ERROR:").count(), 6, "{refused:#?}");
    let told = format!("{told}\n{}", refused.all());

    // The search finds what it looks for, as psql and a plan dump would show it.
    let as_hex = format!("key | \\x{}", hex(&secrets[0]));
    let as_bytes = format!(
        ":constvalue 36 [ -112 0 0 0 {} ]",
        secrets[2]
            .iter()
            .map(u8::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    );
    assert!(leak(&as_hex, &secrets).is_some_and(|f| f.starts_with("hex")));
    assert!(leak(&as_bytes, &secrets).is_some_and(|f| f.starts_with("decimal")));
    assert!(leak(&base32_of(&secrets[1]).to_lowercase(), &secrets).is_some());
    if let Some(form) = leak(&told, &secrets) {
        panic!("a host was told a secret, as {form}");
    }
    // Nor did the server log one (errors are caught inside, so none is logged with its row).
    if let Some(form) = leak(&pg.log(), &secrets) {
        panic!("the server log has a secret, as {form}");
    }
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// Where `text` shows any 8 bytes in a row of a secret: as hex (either case, either
/// alignment), as decimal numbers one after another (plan dumps list a datum's bytes so,
/// whatever stands between them), or as the whole secret in base32 (either case).
fn leak(text: &str, secrets: &[Vec<u8>]) -> Option<String> {
    use std::collections::HashSet;
    let windows: HashSet<&[u8]> = secrets.iter().flat_map(|s| s.windows(8)).collect();
    let found = |bytes: &[u8]| bytes.windows(8).find(|w| windows.contains(w)).map(hex);
    // Decimal: runs of numbers up to 255, with anything but digits between them.
    let mut run = Vec::new();
    for token in text
        .split(|c: char| !c.is_ascii_digit())
        .filter(|t| !t.is_empty())
    {
        match token.parse::<u8>() {
            Ok(b) => run.push(b),
            Err(_) => {
                if let Some(w) = found(&run) {
                    return Some(format!("decimal bytes {w}"));
                }
                run.clear();
            }
        }
    }
    if let Some(w) = found(&run) {
        return Some(format!("decimal bytes {w}"));
    }
    // Hex: runs of hex digits, read from either first digit.
    for token in text
        .split(|c: char| !c.is_ascii_hexdigit())
        .filter(|t| t.len() >= 16)
    {
        for start in 0..2 {
            let bytes: Vec<u8> = token.as_bytes()[start..]
                .chunks_exact(2)
                .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
                .collect();
            if let Some(w) = found(&bytes) {
                return Some(format!("hex {w}"));
            }
        }
    }
    let upper = text.to_uppercase();
    secrets
        .iter()
        .map(|s| base32_of(s))
        .find(|b| upper.contains(b.as_str()))
        .map(|b| format!("base32 {b}"))
}

fn base32_of(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let (mut buffer, mut bits) = (0u32, 0);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}
