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

/// The building block that is written into its callers' statements (v1.sql says why).
const CODES: &str = "ivmfa.codes(bytea,bigint,bigint,smallint,text)";

fn fields(row: &str) -> Vec<String> {
    row.split('|').map(str::to_owned).collect()
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
    let args = format!("{}, {}, {}", lit(user), lit(answer), lit(source));
    let submit = match at {
        Some(t) => format!("SELECT * FROM ivmfa_test.submit_at({args}, {t})"),
        None => format!("SELECT * FROM ivmfa_api.submit({args})"),
    };
    judge(s, &submit, at)
}

/// As [`attempt`], through submit_grace: a right code begins a grace period of `period`.
fn attempt_grace(
    s: &mut Session,
    user: &str,
    answer: &str,
    source: &str,
    period: u32,
    at: Option<u64>,
) -> Judged {
    let args = format!("{}, {}, {}, {period}", lit(user), lit(answer), lit(source));
    let submit = match at {
        Some(t) => format!("SELECT * FROM ivmfa_test.submit_grace_at({args}, {t})"),
        None => format!("SELECT * FROM ivmfa_api.submit_grace({args})"),
    };
    judge(s, &submit, at)
}

/// Runs `submit` (a statement answering as submit does), then verify on what it filed.
fn judge(s: &mut Session, submit: &str, at: Option<u64>) -> Judged {
    let rows = s.query(submit);
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

/// Flow 3 across the fleet: one request per user, an approval that lets the next login
/// through the host the request came from set up a new key (recovery codes shown once), a
/// denial whose reason is shown once, by that host.
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
        "SELECT verdict || ',' || host FROM ivmfa_api.admin_reset_approve('erin')",
    );
    assert_eq!(
        approved, "approved,host_a",
        "the host the request came from"
    );
    assert_eq!(before("host_a"), "ticket,false,-");
    assert_eq!(before("host_b"), "ticket_elsewhere,false,-");
    let begun = pg.value(
        "host_a",
        "SELECT verdict || '|' || secret_base32 FROM ivmfa_api.setup_begin('erin')",
    );
    let (verdict, secret) = begun.split_once('|').unwrap();
    assert_eq!(verdict, "ok");
    // Another host cannot finish host_a's set-up.
    let e = Enrollment::standard(Secret::from_base32(secret).unwrap(), 0);
    settle();
    let right = code(&e, 0);
    let finish = |host: &str, answer: &str| {
        pg.value(host, &format!("SELECT verdict || '|' || tries_left || '|' || COALESCE(array_to_string(recovery_codes, ' '), '') FROM ivmfa_api.setup_finish('erin', {})", lit(answer)))
    };
    assert_eq!(finish("host_b", &right), "no_setup|0|");
    assert_eq!(finish("host_a", &never_right(&e, now())), "wrong|2|");
    let done = finish("host_a", &right);
    assert!(done.starts_with("enrolled|0|"), "{done}");
    assert_eq!(
        recovery_codes_in(&done.replace('|', " ")).len(),
        10,
        "{done}"
    );
    assert_eq!(before("host_b"), "enrolled,false,-");
    // The code that finished the set-up is used; the next one works on any host.
    let mut b = pg.session("host_b");
    assert_eq!(
        attempt(&mut b, "erin", &right, "x", None).verdict,
        "replayed"
    );

    // A denial: its reason once, to the first login through host_a that takes it.
    assert_eq!(request("host_a"), "filed");
    let denied = pg.value("admin", "SELECT verdict FROM ivmfa_api.admin_reset_deny('erin', 'Call the service desk: ext. 4711')");
    assert_eq!(denied, "denied");
    assert_eq!(before("host_b"), "enrolled,false,-");
    assert_eq!(
        before("host_a"),
        "enrolled,false,Call the service desk: ext. 4711"
    );
    assert_eq!(before("host_a"), "enrolled,false,-");
    let audit = pg.sql(
        SUPERUSER,
        DATABASE,
        "SELECT role || ' ' || action || ' ' || outcome FROM ivmfa.audit ORDER BY id",
    );
    assert_audited(
        &audit,
        &[
            "host_a request_reset filed",
            "host_b request_reset already pending",
            "admin admin_reset_approve approved for host_a",
            "host_a setup_finish enrolled (ticket)",
            "admin admin_reset_deny denied",
            "host_a notice_shown shown",
        ],
    );
}

/// A ticket is for one host role: the one the request came through, or the one the
/// administrator names. Any other host is told so before the prompt, refused set-up
/// (audited), cannot end the named host's set-up under way, and neither sees nor takes a
/// declined reset's reason meant for the host the request came through.
#[test]
#[ignore = "needs root"]
fn a_ticket_is_for_one_host() {
    let pg = fleet();
    pg.login_role("host_a", &["ivmfa_host"]);
    pg.login_role("host_b", &["ivmfa_host"]);
    pg.login_role("retired", &["ivmfa_host"]);
    pg.sql(SUPERUSER, DATABASE, "ALTER ROLE retired NOLOGIN");
    pg.login_role("boss", &[]);
    pg.sql(SUPERUSER, DATABASE, "ALTER ROLE boss SUPERUSER");
    provision(&pg, "gus", random_secret().expose(), 6, "SHA1");
    let request = |host: &str| {
        pg.value(
            host,
            "SELECT verdict FROM ivmfa_api.request_reset('gus', 'sshd', '', '')",
        )
    };
    let status = |host: &str| {
        pg.value(
            host,
            "SELECT status FROM ivmfa_api.before_prompt('gus', '', true)",
        )
    };
    let begin = |host: &str| {
        pg.value(
            host,
            "SELECT verdict || '|' || COALESCE(secret_base32, '') FROM ivmfa_api.setup_begin('gus')",
        )
    };
    let finish = |host: &str, answer: &str| {
        pg.value(
            host,
            &format!(
                "SELECT verdict FROM ivmfa_api.setup_finish('gus', {})",
                lit(answer)
            ),
        )
    };
    let approve = |host: Option<&str>| {
        let named = host.map_or(String::new(), |h| format!(", {}", lit(h)));
        pg.value(
            "admin",
            &format!(
                "SELECT verdict || ',' || COALESCE(host, '-') || ',' || (ticket_expires IS NOT NULL) \
                 FROM ivmfa_api.admin_reset_approve('gus'{named})"
            ),
        )
    };
    let ticket_host = || {
        pg.value(
            "admin",
            "SELECT COALESCE(ticket_host, '-') || ',' || COALESCE(reset_host, '-') \
             FROM ivmfa_api.admin_status('gus')",
        )
    };

    // Filed through host_a, approved as it came: host_b is told the ticket is elsewhere and
    // refused the key (the review's attack: B takes A's ticket and learns the new key).
    assert_eq!(request("host_a"), "filed");
    assert_eq!(ticket_host(), "-,host_a");
    assert_eq!(approve(None), "approved,host_a,true");
    assert_eq!(ticket_host(), "host_a,-");
    assert_eq!(status("host_b"), "ticket_elsewhere");
    assert_eq!(begin("host_b"), "not_allowed|");
    assert_eq!(finish("host_b", "000000"), "no_setup");
    assert_eq!(status("host_a"), "ticket");
    // host_a begins; host_b neither ends it nor finishes it.
    let begun = begin("host_a");
    let (verdict, secret) = begun.split_once('|').unwrap();
    assert_eq!(verdict, "ok");
    let e = Enrollment::standard(Secret::from_base32(secret).unwrap(), 0);
    assert_eq!(begin("host_b"), "not_allowed|");
    settle();
    assert_eq!(finish("host_b", &code(&e, 0)), "no_setup");
    // host_a starting over replaces its own set-up: the first key is gone.
    let again = begin("host_a");
    let (verdict, secret) = again.split_once('|').unwrap();
    assert_eq!(verdict, "ok");
    let e2 = Enrollment::standard(Secret::from_base32(secret).unwrap(), 0);
    assert_ne!(e.secret, e2.secret);

    // The administrator sends the user to host_b instead (the ticket is issued again): now
    // only host_b may set up, and host_a's set-up under way has ended.
    assert_eq!(approve(Some("host_b")), "reissued,host_b,true");
    assert_eq!(ticket_host(), "host_b,-");
    assert_eq!(status("host_a"), "ticket_elsewhere");
    assert_eq!(status("host_b"), "ticket");
    settle();
    assert_eq!(finish("host_a", &code(&e2, 0)), "no_setup");
    assert_eq!(begin("host_a"), "not_allowed|");
    let begun = begin("host_b");
    let (verdict, secret) = begun.split_once('|').unwrap();
    assert_eq!(verdict, "ok");
    let e3 = Enrollment::standard(Secret::from_base32(secret).unwrap(), 0);
    // No role but a host that may log in can be named; nothing changes.
    for role in ["nobody_at_all", "admin", "boss", "retired", "ivmfa_host"] {
        assert_eq!(
            approve(Some(role)),
            format!("not_a_host,{role},false"),
            "{role}"
        );
    }
    assert_eq!(ticket_host(), "host_b,-");
    settle();
    let done = pg.value(
        "host_b",
        &format!(
            "SELECT verdict || ' ' || array_length(recovery_codes, 1) \
             FROM ivmfa_api.setup_finish('gus', {})",
            lit(&code(&e3, 0))
        ),
    );
    assert_eq!(done, "enrolled 10");
    assert_eq!(status("host_a"), "enrolled");
    assert_eq!(ticket_host(), "-,-");
    // With no request and no ticket there is nothing to approve.
    assert_eq!(approve(Some("host_a")), "no_request,-,false");

    // A request filed through host_b and approved for host_a.
    assert_eq!(request("host_b"), "filed");
    assert_eq!(approve(Some("host_a")), "approved,host_a,true");
    assert_eq!(status("host_b"), "ticket_elsewhere");
    assert_eq!(begin("host_b"), "not_allowed|");
    assert_eq!(status("host_a"), "ticket");
    assert_eq!(begin("host_a").split_once('|').unwrap().0, "ok");
    // An expired ticket is expired wherever it is asked about.
    pg.sql(
        SUPERUSER,
        DATABASE,
        "UPDATE ivmfa.ticket SET expires = 1 WHERE name = 'gus'",
    );
    assert_eq!(status("host_b"), "ticket_expired");
    assert_eq!(begin("host_b"), "ticket_expired|");
    // Approved again, it holds once more (for the host it was for).
    assert_eq!(approve(None), "reissued,host_a,true");
    assert_eq!(status("host_a"), "ticket");
    provision(&pg, "gus", random_secret().expose(), 6, "SHA1");

    // Set-up without a ticket (inband_enroll on): a set-up under way through host_a is not
    // ended by host_b beginning one.
    let configure = |value: &str| {
        pg.value(
            "admin",
            &format!("SELECT verdict FROM ivmfa_api.admin_configure('inband_enroll', '{value}')"),
        )
    };
    assert_eq!(configure("true"), "set");
    let begun = pg.value(
        "host_a",
        "SELECT verdict || '|' || secret_base32 FROM ivmfa_api.setup_begin('ida')",
    );
    let (verdict, secret) = begun.split_once('|').unwrap();
    assert_eq!(verdict, "ok");
    let f = Enrollment::standard(Secret::from_base32(secret).unwrap(), 0);
    assert_eq!(
        pg.value("host_b", "SELECT verdict FROM ivmfa_api.setup_begin('ida')"),
        "not_allowed"
    );
    settle();
    assert_eq!(
        pg.value(
            "host_a",
            &format!(
                "SELECT verdict FROM ivmfa_api.setup_finish('ida', {})",
                lit(&code(&f, 0))
            )
        ),
        "enrolled"
    );
    assert_eq!(configure("false"), "set");

    // A declined reset's reason is for the host the request came through: host_b neither
    // sees it nor takes it away.
    assert_eq!(request("host_a"), "filed");
    assert_eq!(
        pg.value(
            "admin",
            "SELECT verdict FROM ivmfa_api.admin_reset_deny('gus', 'ask in person')"
        ),
        "denied"
    );
    let notice = |host: &str| {
        pg.value(
            host,
            "SELECT COALESCE(notice, '-') FROM ivmfa_api.before_prompt('gus', '', true)",
        )
    };
    assert_eq!(notice("host_b"), "-");
    assert_eq!(notice("host_b"), "-");
    assert_eq!(notice("host_a"), "ask in person");
    assert_eq!(notice("host_a"), "-");

    let audit = pg.sql(
        SUPERUSER,
        DATABASE,
        "SELECT role || ' ' || action || ' ' || outcome FROM ivmfa.audit ORDER BY id",
    );
    assert_audited(
        &audit,
        &[
            "host_b setup_begin not allowed (the ticket is for host_a)",
            "host_b setup_begin not allowed (a set-up is under way through host_a)",
            "host_a setup_finish enrolled (policy)",
            "admin admin_reset_approve issued again for host_b",
            "admin admin_reset_approve refused: no host role boss",
            "host_b setup_finish enrolled (ticket)",
            "host_a notice_shown shown",
        ],
    );
    assert!(
        !audit.contains("host_b notice_shown"),
        "host_b took the notice:\n{audit}"
    );
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

/// A judged code is durable whatever the host's session says: `verify` and `setup_finish`
/// commit at least with `synchronous_commit = on` (waiting for the disk and the synchronous
/// standbys) even when the session has it off, so an acceptance is not lost in a crash or
/// failover and the code taken again. `submit`'s filing is the one commit that does not
/// wait; the verdict's commit flushes it with everything before it. (A host that holds the
/// transaction open can lower the setting again before COMMIT: SCHEMA.md.)
#[test]
#[ignore = "needs root"]
fn a_verdict_commits_durably_whatever_the_host_set() {
    let pg = fleet();
    pg.login_role("host_a", &["ivmfa_host"]);
    let key = random_secret();
    let e = enrollment(key.expose(), 6, Algorithm::SHA1);
    provision(&pg, "val", key.expose(), 6, "SHA1");
    let setting = "SELECT pg_catalog.current_setting('synchronous_commit')";
    let mut h = pg.session("host_a");
    for asked in ["off", "local", "on", "remote_write", "remote_apply"] {
        h.query(&format!("SET synchronous_commit = {asked}"));
        // As each commit would run: the setting at the end of the call's transaction.
        h.query("BEGIN");
        let id = h
            .query(&format!(
                "SELECT attempt FROM ivmfa_api.submit('val', {}, 'x')",
                lit(&never_right(&e, now()))
            ))
            .concat();
        assert_eq!(h.query(setting), ["off"], "submit, host asked {asked}");
        h.query("COMMIT");
        h.query("BEGIN");
        assert_eq!(
            h.query(&format!("SELECT verdict FROM ivmfa_api.verify({id})")),
            ["wrong"]
        );
        let durable = if asked == "off" || asked == "local" {
            "on"
        } else {
            asked
        };
        assert_eq!(h.query(setting), [durable], "verify, host asked {asked}");
        h.query("COMMIT");
        h.query("BEGIN");
        assert_eq!(
            h.query("SELECT verdict FROM ivmfa_api.setup_finish('val', '000000')"),
            ["no_setup"]
        );
        assert_eq!(
            h.query(setting),
            [durable],
            "setup_finish, host asked {asked}"
        );
        h.query("COMMIT");
        // Outside the calls' transactions, the host's own setting is its own again.
        assert_eq!(h.query(setting), [asked]);
        pg.sql(SUPERUSER, DATABASE, "DELETE FROM ivmfa.failure");
    }
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

    // A hardware token: each round a new press, raced by every host; its counter moves once.
    let rfc = b"12345678901234567890";
    let token = Enrollment::hotp(Secret::from_bytes(rfc).unwrap(), 0);
    admin.query(&format!(
        "SELECT verdict FROM ivmfa_api.admin_enroll_key('race', {}, 'hotp', 6, 'SHA1', true)",
        bytea(rfc)
    ));
    admin.query("SELECT verdict FROM ivmfa_api.admin_enroll_unconfirmed('race', 1)");
    let started = Instant::now();
    let token_rounds = ROUNDS / 4;
    for round in 0..token_rounds {
        clock.query("SELECT ivmfa_test.rewind('race')");
        let verdicts = race(&mut hosts, &token_code(&token, round as u64));
        let accepted = verdicts.iter().filter(|v| *v == "accepted").count();
        assert_eq!(accepted, 1, "round {round}: {verdicts:?}");
        assert!(
            verdicts
                .iter()
                .all(|v| v == "accepted" || v == "token_used"),
            "{verdicts:?}"
        );
    }
    let counter = admin
        .query("SELECT token_counter FROM ivmfa_api.admin_status('race')")
        .concat();
    assert_eq!(counter, token_rounds.to_string());
    let tokens = started.elapsed();
    eprintln!(
        "exactly once: {ROUNDS} rounds of {HOSTS} hosts, TOTP {:.1} s, recovery codes {:.1} s, \
         {token_rounds} token rounds {:.1} s",
        totp.as_secs_f64(),
        recovery.as_secs_f64(),
        tokens.as_secs_f64()
    );
    let audit = pg.value(SUPERUSER, "SELECT count(*) FROM ivmfa.audit WHERE action = 'verify' AND outcome IN ('accepted', 'recovery code accepted')");
    assert_eq!(audit, (2 * ROUNDS + token_rounds).to_string());
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
/// message setting a host can change, but `ivmfa.codes`, which only the owner may call and
/// the planner writes into its callers; the API is SECURITY DEFINER, owned by a role that
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
                COALESCE(array_to_string(p.proconfig, '#'), '') \
         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
         WHERE n.nspname IN ('ivmfa', 'ivmfa_api', 'ivmfa_test') AND p.proowner = 'ivmfa_owner'::regrole",
    );
    let mut count = 0;
    for line in functions.lines() {
        count += 1;
        let f = fields(line);
        if f[0] == CODES {
            assert_eq!(
                f[3], "",
                "{CODES} pins settings: it would no longer be inlined"
            );
            continue;
        }
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
    // The one function without pins runs only as part of its callers' statements: planned
    // with their settings, no call of its own, and nobody else may call it.
    let plan = pg.sql(
        SUPERUSER,
        DATABASE,
        "SET ROLE ivmfa_owner; SET search_path = pg_catalog, pg_temp; \
         EXPLAIN (VERBOSE, COSTS OFF) SELECT c.counter FROM ivmfa.secret AS s, \
         ivmfa.codes(s.key, 1, 9, s.digits, s.algorithm) AS c WHERE c.code = '123456'",
    );
    assert!(
        plan.contains("generate_series") && plan.contains("hmac") && !plan.contains("codes("),
        "{CODES} is not inlined:\n{plan}"
    );
    for role in ["public", "ivmfa_host", "ivmfa_admin"] {
        let may = pg.value(
            SUPERUSER,
            &format!("SELECT has_function_privilege('{role}', '{CODES}', 'EXECUTE')"),
        );
        assert_eq!(may, "f", "{role} may call {CODES}");
    }
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
    // A hardware token's key, and the name its counter is kept under.
    let token_key = random_secret();
    let token = Enrollment::hotp(token_key.clone(), 0);
    for sql in [
        format!(
            "SELECT verdict FROM ivmfa_api.admin_enroll_key('tess', {}, 'hotp', 6, 'SHA1', false)",
            bytea(token_key.expose())
        ),
        "SELECT verdict FROM ivmfa_api.admin_enroll_unconfirmed('tess', 1)".to_owned(),
    ] {
        pg.sql("admin", DATABASE, &sql);
    }
    secrets.push(token_key.expose().to_vec());
    secrets.push(unhex(&ivmfa_core::hotp::key_id(&token_key)));
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
    for (i, answer) in [
        token_code(&token, 0),
        token_code(&token, 0),
        token_code(&token, 3),
    ]
    .iter()
    .enumerate()
    {
        script.push_str(&format!(
            "SELECT COALESCE(attempt, 0) AS t{i} FROM ivmfa_api.submit_grace('tess', {a}, '192.0.2.1', 600) \\gset\n\
             SELECT * FROM ivmfa_api.verify(:t{i});\n\
             SELECT * FROM ivmfa_api.grace('tess', '192.0.2.1', 600);\n",
            a = lit(answer),
        ));
    }
    script.push_str(&format!(
        "SELECT COALESCE(attempt, 0) AS g FROM ivmfa_api.submit_grace('judy', {r}, '192.0.2.1', 600) \\gset\n\
         SELECT * FROM ivmfa_api.verify(:g);\n\
         SELECT * FROM ivmfa_api.grace('judy', '192.0.2.1', 600);\n\
         SELECT * FROM ivmfa_api.grace('judy', {w}, 600);\n",
        r = lit(&code(&e, 1)),
        w = lit(&wide),
    ));
    script.push_str(&every_call("ivmfa_host", &pg, &huge, &wide));
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
        "token_used|",
        "grace|",
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

    // Administrators are shown a key only when it is made (admin_enroll): every other
    // function of theirs, called as loudly, tells them none of these.
    let admin_script = format!("{loud}{}", every_call("ivmfa_admin", &pg, &huge, &wide));
    let run = pg.run("admin", &admin_script);
    assert!(run.all().contains("PLANNEDSTMT"), "no plan was printed");
    assert!(!run.stderr.contains("ERROR"), "{}", run.stderr);
    if let Some(form) = leak(&run.all(), &secrets) {
        panic!("an administrator was told a secret, as {form}");
    }
    if let Some(form) = leak(&pg.log(), &secrets) {
        panic!("the server log has a secret, as {form}");
    }
}

/// Calls of every function `group` may execute (so a new one is covered without being
/// listed): with every argument NULL, with every text argument huge or multibyte, and with
/// the user `judy` and the other arguments at their extremes.
fn every_call(group: &str, pg: &Postgres, huge: &str, wide: &str) -> String {
    let functions = pg.sql(
        SUPERUSER,
        DATABASE,
        &format!(
            "SELECT p.oid::regproc || '|' || array_to_string(array(SELECT format_type(t, NULL) \
                    FROM unnest(p.proargtypes::oid[]) WITH ORDINALITY AS a(t, i) ORDER BY i), ',') \
             FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
             WHERE n.nspname = 'ivmfa_api' AND has_function_privilege('{group}', p.oid, 'EXECUTE') \
             ORDER BY 1"
        ),
    );
    let mut script = String::new();
    let mut count = 0;
    for line in functions.lines() {
        count += 1;
        let (name, types) = line.split_once('|').unwrap();
        let types: Vec<&str> = types.split(',').filter(|t| !t.is_empty()).collect();
        let value = |ty: &str, text: &str, first: bool| match ty {
            "text" if first => "'judy'".to_owned(),
            "text" => lit(text),
            "text[]" => format!("ARRAY[{}]", lit(text)),
            "boolean" => "true".into(),
            "integer" => "2147483647".into(),
            "integer[]" => "ARRAY[-1]".into(),
            "bigint" => "9223372036854775807".into(),
            "bigint[]" => "ARRAY[-9223372036854775808]".into(),
            // (The loud settings turn standard_conforming_strings off.)
            "bytea" => "decode('00', 'hex')".into(),
            "bytea[]" => "ARRAY[decode('00', 'hex')]".into(),
            other => panic!("{name}: no test value for {other}"),
        };
        let call = |args: Vec<String>| format!("SELECT * FROM {name}({});\n", args.join(", "));
        script.push_str(&call(types.iter().map(|_| "NULL".to_owned()).collect()));
        for text in [huge, wide] {
            script.push_str(&call(types.iter().map(|t| value(t, text, false)).collect()));
            script.push_str(&call(
                types
                    .iter()
                    .enumerate()
                    .map(|(i, t)| value(t, text, i == 0))
                    .collect(),
            ));
        }
    }
    assert!(count >= 9, "{functions}");
    script
}

/// A hardware token's code for `counter`, as ivmfa-core computes it.
fn token_code(token: &Enrollment, counter: u64) -> String {
    ivmfa_core::hotp::code_at(token, counter)
        .unwrap()
        .to_string()
}

/// The first row of `sql` run on a session, its columns joined by `|`.
fn row(s: &mut Session, sql: &str) -> String {
    let rows = s.query(sql);
    assert!(rows.len() <= 1, "{sql}: {rows:?}");
    rows.concat()
}

/// Hardware tokens (HOTP) as the file store judges them: RFC 4226 codes computed by the
/// database, the counter moved past the accepted code only, hotp_window presses ahead and
/// none behind, a used or passed-over code told as such, resync from two consecutive codes
/// ahead only, the counter kept for the same key provisioned again and started afresh for
/// another, and no judging without a counter.
#[test]
#[ignore = "needs root"]
fn hardware_tokens_are_judged_by_their_counter() {
    let pg = fleet();
    pg.login_role("host_a", &["ivmfa_host"]);
    let rfc = b"12345678901234567890";
    let secret = Secret::from_bytes(rfc).unwrap();
    let token = Enrollment::hotp(secret.clone(), 0);
    let at = |c: u64| token_code(&token, c);
    let mut clock = pg.session("clock");
    let mut admin = pg.session("admin");
    let mut h = pg.session("host_a");

    // RFC 4226 Appendix D, computed by the database (a step of 30 s is a counter).
    for (c, want) in [
        "755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871",
        "520489",
    ]
    .iter()
    .enumerate()
    {
        let got = row(
            &mut clock,
            &format!(
                "SELECT ivmfa_test.totp_at({}, {}, 6, 'SHA1')",
                bytea(rfc),
                c * 30
            ),
        );
        assert_eq!(got, *want, "counter {c}");
        assert_eq!(at(c as u64), *want);
    }

    // Enrolled as `enroll --hotp` does: one press confirms it, and is used by that.
    let enroll_key = |a: &mut Session, key: &[u8], replace: bool| {
        row(
            a,
            &format!(
                "SELECT verdict FROM ivmfa_api.admin_enroll_key('tok', {}, 'hotp', 6, 'SHA1', {replace})",
                bytea(key)
            ),
        )
    };
    assert_eq!(enroll_key(&mut admin, rfc, false), "ok");
    let confirmed = row(
        &mut admin,
        &format!(
            "SELECT verdict, array_length(recovery_codes, 1) FROM ivmfa_api.admin_enroll_confirm('tok', {}, 2)",
            lit(&at(0))
        ),
    );
    assert_eq!(confirmed, "enrolled|2");
    let status = |a: &mut Session| {
        row(
            a,
            "SELECT kind, token_counter, failures FROM ivmfa_api.admin_status('tok')",
        )
    };
    assert_eq!(status(&mut admin), "hotp|1|0");
    // The counter is kept under the same name for a key as the file store gives it.
    let key_id = pg.value(
        SUPERUSER,
        "SELECT encode(key_id, 'hex') FROM ivmfa.token_counter WHERE name = 'tok'",
    );
    assert_eq!(key_id, ivmfa_core::hotp::key_id(&secret));

    assert_eq!(
        row(
            &mut admin,
            "SELECT verdict FROM ivmfa_api.admin_configure('hotp_window', '3')"
        ),
        "set"
    );
    let verdict =
        |h: &mut Session, code: &str, source: &str| attempt(h, "tok", code, source, None).verdict;
    assert_eq!(verdict(&mut h, &at(0), "a"), "token_used");
    assert_eq!(verdict(&mut h, &at(1), "a"), "accepted");
    assert_eq!(verdict(&mut h, &at(1), "b"), "token_used");
    // Presses that never reached a login: up to the window ahead, and what they skipped
    // is used up with them.
    assert_eq!(verdict(&mut h, &at(5), "c"), "accepted");
    assert_eq!(verdict(&mut h, &at(3), "d"), "token_used");
    assert_eq!(verdict(&mut h, &at(10), "e"), "wrong");
    assert_eq!(verdict(&mut h, &at(9), "f"), "accepted");
    assert_eq!(status(&mut admin), "hotp|10|0");

    // A token pressed far ahead is found again from two consecutive codes, ahead only.
    let resync = |a: &mut Session, first: &str, second: &str| {
        row(
            a,
            &format!(
                "SELECT * FROM ivmfa_api.admin_resync('tok', {}, {})",
                lit(first),
                lit(second)
            ),
        )
    };
    assert_eq!(resync(&mut admin, &at(500), &at(502)), "not_found|10|10");
    assert_eq!(resync(&mut admin, &at(501), &at(500)), "not_found|10|10");
    assert_eq!(resync(&mut admin, &at(500), &at(501)), "resynced|10|502");
    assert_eq!(resync(&mut admin, &at(400), &at(401)), "not_found|502|502");
    assert_eq!(resync(&mut admin, "12345", "123456"), "malformed||");
    assert_eq!(verdict(&mut h, &at(501), "g"), "token_used");
    assert_eq!(verdict(&mut h, &at(502), "g"), "accepted");

    // The same key provisioned again goes on from where it was; a new key starts afresh.
    assert_eq!(
        row(
            &mut admin,
            "SELECT verdict FROM ivmfa_api.admin_remove('tok')"
        ),
        "removed"
    );
    assert_eq!(enroll_key(&mut admin, rfc, false), "ok");
    let unconfirmed =
        "SELECT verdict, array_length(recovery_codes, 1) FROM ivmfa_api.admin_enroll_unconfirmed('tok', 1)";
    assert_eq!(row(&mut admin, unconfirmed), "enrolled|1");
    assert_eq!(status(&mut admin), "hotp|503|0");
    assert_eq!(verdict(&mut h, &at(502), "h"), "token_used");
    let other = random_secret();
    let other_token = Enrollment::hotp(other.clone(), 0);
    assert_eq!(enroll_key(&mut admin, other.expose(), false), "exists");
    assert_eq!(enroll_key(&mut admin, other.expose(), true), "ok");
    let codes = admin
        .query("SELECT unnest(recovery_codes) FROM ivmfa_api.admin_enroll_unconfirmed('tok', 1)");
    assert_eq!(codes.len(), 1, "{codes:?}");
    assert_eq!(status(&mut admin), "hotp|0|0");
    assert_eq!(
        verdict(&mut h, &token_code(&other_token, 0), "i"),
        "accepted"
    );
    // The old key's counter is still kept, should that token come back.
    let kept = pg.value(
        SUPERUSER,
        "SELECT string_agg(next::text, ',' ORDER BY next) FROM ivmfa.token_counter WHERE name = 'tok'",
    );
    assert_eq!(kept, "1,503");

    // No counter for the key (removed by hand): its codes are refused before they are
    // counted, as in the file store; a recovery code still works; resync sets one.
    pg.sql(
        SUPERUSER,
        DATABASE,
        "DELETE FROM ivmfa.token_counter WHERE name = 'tok' AND next = 1",
    );
    assert_eq!(status(&mut admin), "hotp||0");
    let j = attempt(&mut h, "tok", &token_code(&other_token, 1), "j", None);
    assert_eq!(j.verdict, "no_counter");
    assert_eq!(status(&mut admin), "hotp||0", "not counted");
    let j = attempt(&mut h, "tok", &codes[0], "j", None);
    assert_eq!(
        (j.verdict.as_str(), j.recovery_left.as_str()),
        ("recovered", "0")
    );
    assert_eq!(
        row(
            &mut admin,
            &format!(
                "SELECT * FROM ivmfa_api.admin_resync('tok', {}, {})",
                lit(&token_code(&other_token, 7)),
                lit(&token_code(&other_token, 8))
            )
        ),
        "resynced||9"
    );
    assert_eq!(
        verdict(&mut h, &token_code(&other_token, 9), "k"),
        "accepted"
    );

    // An app's codes have no counter to set.
    provision(&pg, "app", random_secret().expose(), 6, "SHA1");
    assert_eq!(
        row(
            &mut admin,
            "SELECT verdict FROM ivmfa_api.admin_resync('app', '123456', '654321')"
        ),
        "not_token"
    );
    let audit = pg.sql(
        SUPERUSER,
        DATABASE,
        "SELECT role || ' ' || action || ' ' || outcome FROM ivmfa.audit ORDER BY id",
    );
    assert_audited(
        &audit,
        &[
            "admin admin_enroll_key begun (hotp)",
            "admin admin_enroll_confirm enrolled (hotp)",
            "admin admin_resync counter 10 -> 502",
            "admin admin_enroll_unconfirmed enrolled without a code (hotp)",
            "host_a verify token_used",
            "host_a submit no counter",
        ],
    );
}

/// Grace periods as the file store keeps them, per address, and per host role: a right code
/// through submit_grace lets the same address skip the code through the same host for the
/// period (at most the fleet's grace_period_max), never through another host; addresses
/// only; none while backing off or while a reset is pending; a wrong code anywhere ends
/// them all; a recovery code neither begins nor ends one; 8 addresses per host; removal
/// drops them.
#[test]
#[ignore = "needs root"]
fn grace_periods_by_address_and_host() {
    let pg = fleet();
    pg.login_role("clock_b", &["ivmfa_clock"]);
    pg.login_role("host_a", &["ivmfa_host"]);
    let key = random_secret();
    let e = enrollment(key.expose(), 6, Algorithm::SHA1);
    provision(&pg, "gwen", key.expose(), 6, "SHA1");
    // Two hosts that may choose the time.
    let mut a = pg.session("clock");
    let mut b = pg.session("clock_b");
    let mut admin = pg.session("admin");
    let grace = |s: &mut Session, address: &str, period: i64, t: u64| {
        row(
            s,
            &format!(
                "SELECT * FROM ivmfa_test.grace_at('gwen', {}, {period}, {t})",
                lit(address)
            ),
        )
    };
    let t0: u64 = 1_700_000_010;
    let ip = "192.0.2.1";

    assert_eq!(grace(&mut a, ip, 600, t0), "none|0");
    assert_eq!(
        attempt_grace(&mut a, "gwen", &code_at(&e, t0), ip, 600, Some(t0)).verdict,
        "accepted"
    );
    assert_eq!(grace(&mut a, ip, 600, t0 + 10), "grace|590");
    assert_eq!(grace(&mut a, ip, 600, t0 + 599), "grace|1");
    assert_eq!(grace(&mut a, ip, 600, t0 + 600), "none|0");
    // The period the host asks for now is the one that counts, and a clock set back finds
    // a code from the future, which covers nothing.
    assert_eq!(grace(&mut a, ip, 300, t0 + 300), "none|0");
    assert_eq!(grace(&mut a, ip, 600, t0 - 5), "none|0");
    // Not through another host, nor for another address, nor for a name.
    assert_eq!(grace(&mut b, ip, 600, t0 + 10), "none|0");
    assert_eq!(grace(&mut a, "192.0.2.2", 600, t0 + 10), "none|0");
    for name in [
        "host.example",
        "fe80::1%eth0",
        "",
        "192.0.2.1/32",
        "0192.0.2.1",
    ] {
        assert_eq!(
            grace(&mut a, name, 600, t0 + 10),
            "not_an_address|0",
            "{name}"
        );
    }
    assert_eq!(grace(&mut a, ip, 0, t0 + 10), "off|0");
    assert_eq!(grace(&mut a, ip, -1, t0 + 10), "off|0");
    // The fleet's ceiling.
    let configure = |admin: &mut Session, value: &str| {
        row(
            admin,
            &format!(
                "SELECT verdict FROM ivmfa_api.admin_configure('grace_period_max', '{value}')"
            ),
        )
    };
    assert_eq!(configure(&mut admin, "60"), "set");
    assert_eq!(grace(&mut a, ip, 600, t0 + 59), "grace|1");
    assert_eq!(grace(&mut a, ip, 600, t0 + 60), "none|0");
    assert_eq!(configure(&mut admin, "0"), "set");
    assert_eq!(grace(&mut a, ip, 600, t0 + 10), "off|0");
    assert_eq!(configure(&mut admin, "86401"), "invalid");
    assert_eq!(configure(&mut admin, "86400"), "set");
    // Other users, and names no store would take.
    let other = row(
        &mut a,
        &format!(
            "SELECT verdict FROM ivmfa_test.grace_at('nobody', {}, 600, {t0})",
            lit(ip)
        ),
    );
    assert_eq!(other, "not_enrolled");
    let other = row(
        &mut a,
        &format!(
            "SELECT verdict FROM ivmfa_test.grace_at('../x', {}, 600, {t0})",
            lit(ip)
        ),
    );
    assert_eq!(other, "invalid_user");

    // A plain submit begins none; a recovery code neither begins one nor ends one.
    assert_eq!(
        attempt(&mut b, "gwen", &code_at(&e, t0 + 30), ip, Some(t0 + 30)).verdict,
        "accepted"
    );
    assert_eq!(grace(&mut b, ip, 600, t0 + 40), "none|0");
    let codes = admin.query("SELECT code FROM ivmfa_api.admin_recovery_codes('gwen', 2)");
    let j = attempt_grace(&mut a, "gwen", &codes[0], "192.0.2.3", 600, Some(t0 + 50));
    assert_eq!(j.verdict, "recovered");
    assert_eq!(grace(&mut a, "192.0.2.3", 600, t0 + 50), "none|0");
    assert_eq!(grace(&mut a, ip, 600, t0 + 50), "grace|550");

    // Withheld while a reset request waits, given again once it is declined.
    let filed = pg.value(
        "host_a",
        "SELECT verdict FROM ivmfa_api.request_reset('gwen', 'sshd', '192.0.2.1', '')",
    );
    assert_eq!(filed, "filed");
    assert_eq!(grace(&mut a, ip, 600, t0 + 55), "reset_pending|0");
    assert_eq!(
        row(
            &mut admin,
            "SELECT verdict FROM ivmfa_api.admin_reset_deny('gwen', 'found it')"
        ),
        "denied"
    );
    assert_eq!(grace(&mut a, ip, 600, t0 + 55), "grace|545");

    // Withheld while the source backs off: three wrong codes filed through the other host,
    // not judged yet. Judged, they end every grace period of the user, on every host.
    let wrong = never_right(&e, t0 + 60);
    let filed: Vec<String> = (0..3)
        .map(|_| {
            let r = row(
                &mut b,
                &format!(
                    "SELECT attempt FROM ivmfa_test.submit_at('gwen', {}, {}, {})",
                    lit(&wrong),
                    lit(ip),
                    t0 + 60
                ),
            );
            assert!(!r.is_empty());
            r
        })
        .collect();
    assert_eq!(grace(&mut a, ip, 600, t0 + 61), "backing_off|29");
    for id in &filed {
        let v = row(
            &mut b,
            &format!(
                "SELECT verdict FROM ivmfa_test.verify_at({id}, {})",
                t0 + 62
            ),
        );
        assert_eq!(v, "wrong");
    }
    assert_eq!(grace(&mut a, ip, 600, t0 + 95), "none|0");
    let left = pg.value(SUPERUSER, "SELECT count(*) FROM ivmfa.grace");
    assert_eq!(left, "0");

    // Eight addresses per user and host: a ninth forgets the oldest, and another host's
    // are left alone.
    let t1 = t0 + 120;
    let net = |i: u64| format!("198.51.100.{i}");
    assert_eq!(
        attempt_grace(
            &mut b,
            "gwen",
            &code_at(&e, t1 - 30),
            &net(0),
            3600,
            Some(t1 - 30)
        )
        .verdict,
        "accepted"
    );
    for i in 0..10 {
        let t = t1 + 30 * i;
        let j = attempt_grace(&mut a, "gwen", &code_at(&e, t), &net(i), 3600, Some(t));
        assert_eq!(j.verdict, "accepted", "{i}: {j:?}");
    }
    let t2 = t1 + 300;
    let kept = pg.value(
        SUPERUSER,
        "SELECT count(*) FROM ivmfa.grace WHERE name = 'gwen' AND host = 'clock'",
    );
    assert_eq!(kept, "8");
    assert_eq!(grace(&mut a, &net(0), 3600, t2), "none|0");
    assert_eq!(grace(&mut a, &net(1), 3600, t2), "none|0");
    assert!(grace(&mut a, &net(2), 3600, t2).starts_with("grace|"));
    assert!(grace(&mut b, &net(0), 3600, t2).starts_with("grace|"));
    // IPv6 in any spelling is one address.
    let t3 = t1 + 330;
    let j = attempt_grace(
        &mut a,
        "gwen",
        &code_at(&e, t3),
        "2001:DB8:0:0::1",
        600,
        Some(t3),
    );
    assert_eq!(j.verdict, "accepted");
    assert!(grace(&mut a, "2001:db8::1", 600, t3).starts_with("grace|"));

    // Removal drops every one of them.
    assert_eq!(
        row(
            &mut admin,
            "SELECT verdict FROM ivmfa_api.admin_remove('gwen')"
        ),
        "removed"
    );
    assert_eq!(pg.value(SUPERUSER, "SELECT count(*) FROM ivmfa.grace"), "0");
    let audit = pg.sql(
        SUPERUSER,
        DATABASE,
        "SELECT role || ' ' || action || ' ' || COALESCE(source, '-') || ' ' || outcome \
         FROM ivmfa.audit ORDER BY id",
    );
    assert_audited(
        &audit,
        &[
            "clock verify 192.0.2.1 accepted, grace period begun",
            "clock grace 192.0.2.1 grace",
            "clock_b grace 192.0.2.1 none",
            "clock grace 192.0.2.1 reset_pending",
        ],
    );
}

/// `enroll` on the fleet: the key is made in the database and shown once; the CLI's
/// ceremony follows (three tries, the clock hint, recovery codes, the watermark at the
/// confirming code's step), only the administrator who began it may finish it, and an
/// enrollment is replaced only when asked.
#[test]
#[ignore = "needs root"]
fn enrollment_with_a_key_made_in_the_database() {
    let pg = fleet();
    pg.login_role("admin2", &["ivmfa_admin"]);
    pg.login_role("host_a", &["ivmfa_host"]);
    let mut admin = pg.session("admin");
    let mut h = pg.session("host_a");
    let begin = |admin: &mut Session, user: &str, digits: u8, algorithm: &str, replace: bool| {
        row(
            admin,
            &format!(
                "SELECT * FROM ivmfa_api.admin_enroll({}, {digits}, {}, {replace})",
                lit(user),
                lit(algorithm)
            ),
        )
    };
    let confirm = |admin: &mut Session, user: &str, code: &str| {
        row(
            admin,
            &format!(
                "SELECT verdict, tries_left, clock_offset_seconds, array_length(recovery_codes, 1) \
                 FROM ivmfa_api.admin_enroll_confirm({}, {}, NULL)",
                lit(user),
                lit(code)
            ),
        )
    };
    let begun = begin(&mut admin, "nora", 6, "sha1", false);
    let f = fields(&begun);
    assert_eq!(
        (f[0].as_str(), &f[2..]),
        ("ok", &["6", "30", "SHA1"].map(String::from)[..])
    );
    let secret = Secret::from_base32(&f[1]).unwrap();
    assert_eq!(secret.expose().len(), 20);
    let e = enrollment(secret.expose(), 6, Algorithm::SHA1);
    settle();
    assert_eq!(
        confirm(&mut admin, "nora", &never_right(&e, now())),
        "wrong|2||"
    );
    // A code for four minutes ahead: wrong, with a hint about the phone's clock.
    assert_eq!(confirm(&mut admin, "nora", &code(&e, 8)), "wrong|1|240|");
    let mut other = pg.session("admin2");
    assert_eq!(
        confirm(&mut other, "nora", &code(&e, 0)),
        "no_enrollment|0||"
    );
    let step = now() / 30;
    assert_eq!(confirm(&mut admin, "nora", &code(&e, 0)), "enrolled|0||10");
    let status = row(
        &mut admin,
        "SELECT enrolled, kind, last_step, recovery_left FROM ivmfa_api.admin_status('nora')",
    );
    assert_eq!(status, format!("t|totp|{step}|10"));
    // The confirming code cannot log in as well; the next one can, on any host.
    assert_eq!(
        attempt(&mut h, "nora", &code(&e, 0), "x", None).verdict,
        "replayed"
    );
    assert_eq!(
        attempt(&mut h, "nora", &code(&e, 1), "x", None).verdict,
        "accepted"
    );

    // Three wrong answers end it, having saved nothing; the right code then finds nothing.
    let begun = begin(&mut admin, "omar", 8, "SHA256", false);
    let f = fields(&begun);
    assert_eq!(f[0], "ok");
    let e8 = enrollment(
        Secret::from_base32(&f[1]).unwrap().expose(),
        8,
        Algorithm::SHA256,
    );
    let bad = never_right(&e8, now());
    assert_eq!(confirm(&mut admin, "omar", &bad), "wrong|2||");
    assert_eq!(confirm(&mut admin, "omar", "not a code"), "wrong|1||");
    assert_eq!(confirm(&mut admin, "omar", &bad), "failed|0||");
    assert_eq!(
        confirm(&mut admin, "omar", &code(&e8, 0)),
        "no_enrollment|0||"
    );
    let enrolled = row(
        &mut admin,
        "SELECT enrolled FROM ivmfa_api.admin_status('omar')",
    );
    assert_eq!(enrolled, "f");
    // An expired set-up.
    assert_eq!(
        fields(&begin(&mut admin, "omar", 6, "SHA1", false))[0],
        "ok"
    );
    pg.sql(
        SUPERUSER,
        DATABASE,
        "UPDATE ivmfa.pending_enrollment SET started = started - 601",
    );
    assert_eq!(confirm(&mut admin, "omar", "123456"), "expired|0||");

    // Replacing: refused unless asked; a key vouched for keeps the watermark.
    assert_eq!(begin(&mut admin, "nora", 6, "SHA1", false), "exists||||");
    let replaced = begin(&mut admin, "nora", 6, "SHA1", true);
    assert_eq!(fields(&replaced)[0], "ok");
    let unconfirmed = row(
        &mut admin,
        "SELECT verdict, array_length(recovery_codes, 1) FROM ivmfa_api.admin_enroll_unconfirmed('nora', 3)",
    );
    assert_eq!(unconfirmed, "enrolled|3");
    let last = row(
        &mut admin,
        "SELECT last_step FROM ivmfa_api.admin_status('nora')",
    );
    assert!(last.parse::<u64>().unwrap() > step, "{last}");
    assert_eq!(
        attempt(&mut h, "nora", &code(&e, 0), "y", None).verdict,
        "wrong",
        "the old key is gone"
    );
    // Arguments out of range.
    assert_eq!(begin(&mut admin, "nora", 5, "SHA1", true), "invalid||||");
    assert_eq!(begin(&mut admin, "nora", 6, "MD5", true), "invalid||||");
    assert_eq!(
        begin(&mut admin, "../x", 6, "SHA1", true),
        "invalid_user||||"
    );
    let invalid = row(
        &mut admin,
        "SELECT verdict FROM ivmfa_api.admin_enroll_confirm('nora', '123456', 101)",
    );
    assert_eq!(invalid, "invalid");
    let short = row(
        &mut admin,
        "SELECT verdict FROM ivmfa_api.admin_enroll_key('nora', '\\x00112233445566778899aabbccddee'::bytea, 'totp', 6, 'SHA1', true)",
    );
    assert_eq!(short, "invalid", "15 bytes");
}

/// `db fence` after a failover: every watermark at least the step of now plus the window,
/// so no code of an app from before now works again; tokens' counters left alone.
#[test]
#[ignore = "needs root"]
fn fence_raises_every_watermark() {
    let pg = fleet();
    pg.login_role("host_a", &["ivmfa_host"]);
    let key = random_secret();
    let e = enrollment(key.expose(), 6, Algorithm::SHA1);
    provision(&pg, "pia", key.expose(), 6, "SHA1");
    provision(&pg, "quin", random_secret().expose(), 6, "SHA1");
    let rfc = b"12345678901234567890";
    let token = Enrollment::hotp(Secret::from_bytes(rfc).unwrap(), 0);
    let mut admin = pg.session("admin");
    row(
        &mut admin,
        &format!(
            "SELECT verdict FROM ivmfa_api.admin_enroll_key('tim', {}, 'hotp', 6, 'SHA1', false)",
            bytea(rfc)
        ),
    );
    row(
        &mut admin,
        "SELECT verdict FROM ivmfa_api.admin_enroll_unconfirmed('tim', 1)",
    );
    let mut h = pg.session("host_a");
    settle();
    let step = now() / 30;
    assert_eq!(
        row(&mut admin, "SELECT * FROM ivmfa_api.admin_fence()"),
        "fenced|3"
    );
    for user in ["pia", "quin", "tim"] {
        let last = row(
            &mut admin,
            &format!("SELECT last_step FROM ivmfa_api.admin_status('{user}')"),
        );
        assert_eq!(last, (step + 1).to_string(), "{user}");
    }
    assert_eq!(
        attempt(&mut h, "pia", &code(&e, 0), "x", None).verdict,
        "replayed"
    );
    assert_eq!(
        attempt(&mut h, "pia", &code(&e, 1), "y", None).verdict,
        "replayed"
    );
    // A token goes on from its counter.
    assert_eq!(
        row(
            &mut admin,
            "SELECT token_counter FROM ivmfa_api.admin_status('tim')"
        ),
        "0"
    );
    assert_eq!(
        attempt(&mut h, "tim", &token_code(&token, 0), "x", None).verdict,
        "accepted"
    );
    // Run again within the step, it has nothing left to raise.
    assert_eq!(
        row(&mut admin, "SELECT * FROM ivmfa_api.admin_fence()"),
        "fenced|0"
    );
    let audit = pg.value(
        SUPERUSER,
        "SELECT role || ' ' || outcome FROM ivmfa.audit WHERE action = 'admin_fence' ORDER BY id",
    );
    assert_eq!(audit, "admin raised 3 watermarks");
}

/// The SQL of one admin_import call.
#[allow(clippy::too_many_arguments)]
fn import_sql(
    user: &str,
    kind: &str,
    key: &[u8],
    recovery: Option<(&ivmfa_core::recovery::RecoveryCodes, &[u16])>,
    last_step: u64,
    refused: &[u64],
    token_next: Option<u64>,
    total: (u32, u64),
    sources: &[(&str, u32, u64)],
    replace: bool,
) -> String {
    let (salt, hashes, issued, used) = match recovery {
        Some((set, used)) => (
            format!("'\\x{}'::bytea", set.salt),
            format!(
                "ARRAY[{}]::bytea[]",
                set.hashes
                    .iter()
                    .map(|h| if h.is_empty() {
                        "NULL".to_owned()
                    } else {
                        format!("'\\x{h}'::bytea")
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            set.issued.to_string(),
            format!(
                "ARRAY[{}]::integer[]",
                used.iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        None => ("NULL".into(), "NULL".into(), "NULL".into(), "NULL".into()),
    };
    let list = |items: Vec<String>, ty: &str| format!("ARRAY[{}]::{ty}[]", items.join(", "));
    format!(
        "SELECT * FROM ivmfa_api.admin_import({}, {}, {}, 6, {}, 'SHA1', NULL, 1600000000, \
         {salt}, {hashes}, {issued}, {used}, {last_step}, {}, {}, {}, {}, {}, {}, {}, {replace})",
        lit(user),
        lit(kind),
        bytea(key),
        if kind == "totp" { "30" } else { "NULL" },
        list(refused.iter().map(u64::to_string).collect(), "bigint"),
        token_next.map_or("NULL".into(), |n| n.to_string()),
        total.0,
        total.1,
        list(sources.iter().map(|s| lit(s.0)).collect(), "text"),
        list(sources.iter().map(|s| s.1.to_string()).collect(), "integer"),
        list(sources.iter().map(|s| s.2.to_string()).collect(), "bigint"),
    )
}

/// `db migrate`: a file store's enrollment, recovery codes and state come over with nothing
/// lost: codes at or below the watermark and steps refused in advance stay refused, used
/// recovery codes (blanked in secret.toml, or recorded in the state) stay used, unused ones
/// work once, a source backing off still backs off, a token goes on from its counter. The
/// database checks the recovery hashes' format, and a second import never lowers anything.
#[test]
#[ignore = "needs root"]
fn import_from_a_file_store_loses_nothing() {
    let pg = fleet();
    pg.login_role("host_a", &["ivmfa_host"]);
    let key = random_secret();
    let e = enrollment(key.expose(), 6, Algorithm::SHA1);
    let (codes, mut set) =
        ivmfa_core::recovery::issue(4, 1_600_000_000, ivmfa_core::random::fill).unwrap();
    // Code 1 was used and blanked in secret.toml; code 2 was used, recorded in the state only.
    set.hashes[1].clear();
    let mut admin = pg.session("admin");
    let mut h = pg.session("host_a");
    let mut clock = pg.session("clock");
    let t = settle();
    let step = t / 30;
    let sql = import_sql(
        "dora",
        "totp",
        key.expose(),
        Some((&set, &[2])),
        step + 1,
        &[step + 5],
        None,
        (3, t),
        &[("192.0.2.9", 3, t), ("%22odd%25", 1, t - 100)],
        false,
    );
    assert_eq!(row(&mut admin, &sql), "imported||2");
    let status = row(
        &mut admin,
        "SELECT enrolled, kind, last_step, recovery_left, failures FROM ivmfa_api.admin_status('dora')",
    );
    assert_eq!(status, format!("t|totp|{}|2|3", step + 1));
    // The source that was backing off still is.
    let j = attempt(&mut h, "dora", &code(&e, 1), "192.0.2.9", None);
    assert_eq!(j.verdict, "backing_off", "{j:?}");
    // At or below the watermark: used.
    assert_eq!(
        attempt(&mut h, "dora", &code(&e, 0), "s1", None).verdict,
        "replayed"
    );
    assert_eq!(
        attempt(&mut h, "dora", &code(&e, 1), "s2", None).verdict,
        "replayed"
    );
    // A step refused in advance stays refused when it comes.
    let later = (step + 5) * 30 + 1;
    assert_eq!(
        attempt(&mut clock, "dora", &code_at(&e, later), "s3", Some(later)).verdict,
        "replayed"
    );
    // Used recovery codes stay used; an unused one works once.
    assert_eq!(
        attempt(&mut h, "dora", &codes[1], "s4", None).verdict,
        "wrong"
    );
    assert_eq!(
        attempt(&mut h, "dora", &codes[2], "s5", None).verdict,
        "wrong"
    );
    let j = attempt(&mut h, "dora", &codes[3], "s6", None);
    assert_eq!(
        (j.verdict.as_str(), j.recovery_left.as_str()),
        ("recovered", "1")
    );
    assert_eq!(
        attempt(&mut h, "dora", &codes[3], "s7", None).verdict,
        "wrong"
    );

    // A second import of an older state merges without lowering anything, and keeps the
    // enrollment unless asked to replace it.
    let sql = import_sql(
        "dora",
        "totp",
        key.expose(),
        None,
        0,
        &[],
        None,
        (0, 0),
        &[],
        false,
    );
    assert_eq!(row(&mut admin, &sql), "exists||1");
    let status = row(
        &mut admin,
        "SELECT last_step, recovery_left FROM ivmfa_api.admin_status('dora')",
    );
    assert_eq!(status, format!("{}|1", step + 1));
    let refused = pg.value(
        SUPERUSER,
        "SELECT refused FROM ivmfa.account WHERE name = 'dora'",
    );
    assert_eq!(refused, format!("{{{}}}", step + 5));

    // A token, at its counter.
    let rfc = b"12345678901234567890";
    let token = Enrollment::hotp(Secret::from_bytes(rfc).unwrap(), 0);
    let sql = import_sql(
        "tia",
        "hotp",
        rfc,
        None,
        0,
        &[],
        Some(5),
        (0, 0),
        &[],
        false,
    );
    assert_eq!(row(&mut admin, &sql), "imported||0");
    assert_eq!(
        attempt(&mut h, "tia", &token_code(&token, 4), "x", None).verdict,
        "token_used"
    );
    assert_eq!(
        attempt(&mut h, "tia", &token_code(&token, 5), "x", None).verdict,
        "accepted"
    );

    // What the database refuses, and says which argument was wrong.
    let mut bad_hash = set.clone();
    bad_hash.hashes[0].truncate(62);
    let mut bad_salt = set.clone();
    bad_salt.salt.truncate(30);
    for (sql, problem) in [
        (
            import_sql(
                "eve",
                "totp",
                key.expose(),
                Some((&bad_hash, &[])),
                0,
                &[],
                None,
                (0, 0),
                &[],
                false,
            ),
            "recovery_hashes",
        ),
        (
            import_sql(
                "eve",
                "totp",
                key.expose(),
                Some((&bad_salt, &[])),
                0,
                &[],
                None,
                (0, 0),
                &[],
                false,
            ),
            "recovery_salt",
        ),
        (
            import_sql(
                "eve",
                "totp",
                &key.expose()[..15],
                None,
                0,
                &[],
                None,
                (0, 0),
                &[],
                false,
            ),
            "key",
        ),
        (
            import_sql(
                "eve",
                "totp",
                key.expose(),
                Some((&set, &[100])),
                0,
                &[],
                None,
                (0, 0),
                &[],
                false,
            ),
            "recovery_used",
        ),
        (
            import_sql(
                "eve",
                "totp",
                key.expose(),
                None,
                0,
                &[],
                Some(1),
                (0, 0),
                &[],
                false,
            ),
            "token_next",
        ),
        (
            import_sql(
                "eve",
                "sms",
                key.expose(),
                None,
                0,
                &[],
                None,
                (0, 0),
                &[],
                false,
            ),
            "kind",
        ),
        (
            import_sql(
                "eve",
                "totp",
                key.expose(),
                None,
                0,
                &[],
                None,
                (0, 0),
                &[("a b", 1, 0)],
                false,
            ),
            "sources",
        ),
        (
            import_sql(
                "eve",
                "totp",
                key.expose(),
                None,
                0,
                &[1; 17],
                None,
                (0, 0),
                &[],
                false,
            ),
            "refused",
        ),
    ] {
        assert_eq!(
            row(&mut admin, &sql),
            format!("invalid|{problem}|"),
            "{problem}"
        );
    }
    let eve = pg.value(
        SUPERUSER,
        "SELECT count(*) FROM ivmfa.account WHERE name = 'eve'",
    );
    assert_eq!(eve, "0", "nothing of a refused import is kept");
    let audit = pg.sql(
        SUPERUSER,
        DATABASE,
        "SELECT role || ' ' || outcome FROM ivmfa.audit WHERE action = 'admin_import' ORDER BY id",
    );
    assert!(audit.starts_with("admin imported (totp)\nadmin enrolled already: state merged\nadmin imported (hotp)\nadmin invalid recovery_hashes"), "{audit}");
}

/// A filed request wakes the administrators' `reset watch`: a NOTIFY on ivmfa_reset, with
/// no payload (any role that may connect may LISTEN, hosts too, so it names nobody), once
/// per request filed, not for a request already waiting.
#[test]
#[ignore = "needs root"]
fn a_filed_request_notifies_listeners() {
    let pg = fleet();
    pg.login_role("host_a", &["ivmfa_host"]);
    pg.login_role("host_b", &["ivmfa_host"]);
    provision(&pg, "rita", random_secret().expose(), 6, "SHA1");
    let mut watch = pg.session("admin");
    let mut other_host = pg.session("host_b");
    assert!(watch.query("LISTEN ivmfa_reset").is_empty());
    assert!(other_host.query("LISTEN ivmfa_reset").is_empty());
    let request = || {
        pg.value(
            "host_a",
            "SELECT verdict FROM ivmfa_api.request_reset('rita', 'sshd', '192.0.2.7', 'ssh')",
        )
    };
    assert_eq!(request(), "filed");
    let heard = |s: &mut Session| {
        s.query("SELECT 1")
            .into_iter()
            .filter(|l| l.starts_with("Asynchronous notification"))
            .collect::<Vec<_>>()
    };
    let told = heard(&mut watch);
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(
        told[0]
            .starts_with("Asynchronous notification \"ivmfa_reset\" received from server process"),
        "no payload: {told:?}"
    );
    assert_eq!(heard(&mut other_host).len(), 1);
    assert_eq!(request(), "pending");
    assert!(heard(&mut watch).is_empty(), "nothing new was filed");
    let list = row(
        &mut watch,
        "SELECT user_name, host FROM ivmfa_api.admin_reset_list()",
    );
    assert_eq!(list, "rita|host_a");
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

/// Every one of `lines` is a whole line of the audit (as the tests print it: role, action,
/// outcome).
#[track_caller]
fn assert_audited(audit: &str, lines: &[&str]) {
    for line in lines {
        assert!(
            audit.lines().any(|l| l == *line),
            "{line} not in the audit:\n{audit}"
        );
    }
}
