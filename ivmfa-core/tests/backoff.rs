//! Failure counting and back-off: per source and per user, the threshold, the doubling and
//! its bound, to the second; what a user backing off may still do; a clock set back. Waits of
//! fifteen minutes take no time, because the clock is the test's.

mod common;

use common::*;
use ivmfa_core::ports::Verdict;
use ivmfa_core::state::{RateLimit, State};

#[test]
fn the_third_failure_starts_the_wait_and_the_wait_ends_to_the_second() {
    // The defaults: 3 failures from a source, 30 s, doubling to 15 minutes.
    let f = Fixture::new("");
    let e = f.enroll("alice");
    for n in 1..=2 {
        f.login(NOW, "alice", &[&wrong_code(&e, NOW)])
            .assert(Verdict::AuthErr)
            .assert_said("error: That code is not correct.")
            .assert_not_said("Please wait")
            .assert_logged(&format!("wrong code, {n} consecutive failure(s)"));
    }
    f.login(NOW, "alice", &[&wrong_code(&e, NOW)])
        .assert(Verdict::AuthErr)
        .assert_said(
            "That code is not correct. Too many wrong codes. Please wait 30 seconds before \
             trying again.",
        );
    let counted = f.state("alice");
    assert_eq!((counted.total.count, counted.failures[0].count), (3, 3));
    // A second before the end even the right code is not looked at; the prompt is there
    // only for a lost phone's reset request.
    let late = NOW + 29;
    f.login(late, "alice", &[&code(&e, late)])
        .assert(Verdict::AuthErr)
        .assert_said("Too many wrong codes. Please wait 1 second before trying again.")
        .assert_said("type reset to ask the administrators for help")
        .assert_logged("rate limited for 1 more seconds");
    assert_eq!(f.state("alice"), counted, "nothing judged, nothing written");
    // On the second the wait ends, the right code gets in and every count starts over.
    let over = NOW + 30;
    f.login(over, "alice", &[&code(&e, over)])
        .assert(Verdict::Success);
    let state = f.state("alice");
    assert_eq!(state.total.count, 0);
    assert!(state.failures.is_empty());
    // One more failure does not hold the user back.
    f.login(over, "alice", &[&wrong_code(&e, over)])
        .assert_not_said("Please wait");
}

#[test]
fn the_wait_doubles_with_every_failure_up_to_the_bound() {
    for (args, waits) in [
        (
            "",
            &[
                (30, "30 seconds"),
                (60, "1 minute"),
                (120, "2 minutes"),
                (240, "4 minutes"),
                (480, "8 minutes"),
                (900, "15 minutes"),
                (900, "15 minutes"),
            ][..],
        ),
        (
            "max_failures=1 backoff_seconds=1 max_backoff_seconds=2",
            &[(1, "1 second"), (2, "2 seconds"), (2, "2 seconds")][..],
        ),
        (
            "max_failures=2 backoff_seconds=45 max_backoff_seconds=100",
            &[
                (45, "45 seconds"),
                (90, "1 minute 30 seconds"),
                (100, "1 minute 40 seconds"),
            ][..],
        ),
    ] {
        let f = Fixture::new(args);
        let e = f.enroll("alice");
        let limit = limit_of(args);
        for _ in 1..limit.max_failures {
            // The failures before the first wait.
            f.login(NOW, "alice", &[&wrong_code(&e, NOW)])
                .assert_not_said("Please wait");
        }
        let mut now = NOW;
        for (i, (seconds, wait)) in waits.iter().enumerate() {
            let seen = f.login(now, "alice", &[&wrong_code(&e, now)]);
            let case = format!("{args}: failure {}", limit.max_failures as usize + i);
            assert!(
                seen.said(&format!("Please wait {wait} before")),
                "{case}: {seen:#?}"
            );
            assert_eq!(
                f.state("alice").wait_for(RHOST, now, &limit),
                Some(*seconds),
                "{case}"
            );
            // A second early is still held; the next failure comes the second the wait ends.
            f.login(now + seconds - 1, "alice", &[&wrong_code(&e, now)])
                .assert_said("Please wait 1 second");
            now += seconds;
        }
    }
}

/// The rate limit the module arguments `args` set (the rest from the defaults).
fn limit_of(args: &str) -> RateLimit {
    let mut limit = RateLimit::default();
    for (key, value) in args.split_whitespace().filter_map(|a| a.split_once('=')) {
        let n: u64 = value.parse().unwrap();
        match key {
            "max_failures" => limit.max_failures = n as u32,
            "backoff_seconds" => limit.backoff = n,
            "max_backoff_seconds" => limit.max_backoff = n,
            "max_failures_per_user" => limit.max_failures_per_user = n as u32,
            _ => panic!("{key}"),
        }
    }
    limit
}

#[test]
fn failures_are_counted_per_source_and_a_success_anywhere_clears_them() {
    let f = Fixture::new("max_failures=1 backoff_seconds=60 max_backoff_seconds=60");
    let e = f.enroll("alice");
    f.at(NOW)
        .from("192.0.2.1")
        .login("alice", &[&wrong_code(&e, NOW)])
        .assert_said("Please wait 1 minute");
    f.at(NOW)
        .from("192.0.2.1")
        .login("alice", &[&code(&e, NOW)])
        .assert(Verdict::AuthErr)
        .assert_said("Too many wrong codes");
    // Another address, and the console, are not held back by it.
    f.at(NOW)
        .from("198.51.100.7")
        .login("alice", &[&code(&e, NOW)])
        .assert(Verdict::Success);
    let state = f.state("alice");
    assert!(
        state.failures.is_empty(),
        "a right code proves the phone: {state:?}"
    );
    f.at(NOW + PERIOD)
        .local()
        .login("alice", &[&wrong_code(&e, NOW)])
        .assert_said("Please wait 1 minute");
    assert_eq!(
        f.state("alice").failures[0].source,
        "",
        "the console's source"
    );
    // ...and the first address is free again.
    f.at(NOW + PERIOD)
        .from("192.0.2.1")
        .login("alice", &[&code(&e, NOW + PERIOD)])
        .assert(Verdict::Success);
}

#[test]
fn the_users_failures_from_every_source_together_have_their_own_limit() {
    let f = Fixture::new(
        "max_failures=100 max_failures_per_user=3 backoff_seconds=30 max_backoff_seconds=900",
    );
    let e = f.enroll("alice");
    // A guesser with a new address for every guess: the third guess starts the user's wait.
    for i in 1..=3 {
        let seen = f
            .at(NOW)
            .from(&format!("2001:db8::{i}"))
            .login("alice", &[&wrong_code(&e, NOW)]);
        seen.assert(Verdict::AuthErr)
            .assert_said("That code is not correct.");
        assert_eq!(
            seen.said("Please wait 30 seconds"),
            i == 3,
            "source {i}: {seen:#?}"
        );
    }
    // Every source, however new, and the console now wait for the user's limit.
    for from in [Some("2001:db8::99"), None] {
        let attempt = f.at(NOW);
        let attempt = match from {
            Some(host) => attempt.from(host),
            None => attempt.local(),
        };
        attempt
            .login("alice", &[&code(&e, NOW)])
            .assert(Verdict::AuthErr)
            .assert_said("Too many wrong codes. Please wait 30 seconds");
    }
    assert_eq!(
        f.state("alice").total.count,
        3,
        "held logins are not counted"
    );
    // The user's wait doubles too.
    let later = NOW + 30;
    f.at(later)
        .from("2001:db8::100")
        .login("alice", &[&wrong_code(&e, later)])
        .assert_said("Please wait 1 minute");
    // With the defaults it takes ten.
    let g = Fixture::new("max_failures=100");
    let e = g.enroll("alice");
    let mut judged = 0;
    for i in 0..50 {
        let seen = g
            .at(NOW)
            .from(&format!("10.0.0.{i}"))
            .login("alice", &[&wrong_code(&e, NOW)]);
        if seen.said("That code is not correct") {
            judged += 1;
        }
    }
    assert_eq!(judged, 10);
}

#[test]
fn a_user_backing_off_may_still_ask_for_a_reset() {
    let f = Fixture::new("max_failures=1 backoff_seconds=600 max_backoff_seconds=600");
    let e = f.enroll("alice");
    f.login(NOW, "alice", &[&wrong_code(&e, NOW)])
        .assert_said("Please wait 10 minutes");
    let held = f.login(NOW + 1, "alice", &["reset"]);
    held.assert(Verdict::AuthErr)
        .assert_said("error: Too many wrong codes. Please wait 9 minutes 59 seconds")
        .assert_said("has been sent to the administrators");
    assert_eq!(held.prompts(), 1);
    assert!(f.request_file("alice").exists());
    // Anything else at that prompt is just held: a recovery code is not looked at either.
    let (_, codes) = f.enroll_with_recovery("bob");
    f.login(NOW, "bob", &["000000"]).assert(Verdict::AuthErr);
    f.login(NOW, "bob", &[&codes[0]])
        .assert(Verdict::AuthErr)
        .assert_said("Too many wrong codes")
        .assert_not_said("recovery codes left");
    // With requests disabled, a user backing off is not even asked.
    let off = Fixture::with_config(
        "max_failures=1 backoff_seconds=600 max_backoff_seconds=600",
        "reset_keyword = \"\"\n",
    );
    let e = off.enroll("alice");
    off.login(NOW, "alice", &[&wrong_code(&e, NOW)])
        .assert(Verdict::AuthErr);
    let held = off.login(NOW, "alice", &["reset"]);
    held.assert(Verdict::AuthErr)
        .assert_said("Too many wrong codes")
        .assert_not_said("type reset");
    assert_eq!((held.prompts(), held.answers_left), (0, 1));
    assert!(!off.request_file("alice").exists());
}

#[test]
fn a_clock_set_back_holds_for_the_longest_back_off_at_most() {
    let f = Fixture::new("");
    let e = f.enroll("alice");
    // Eight failures an hour from now: the clock has since been set back an hour.
    let mut state = State::default();
    let limit = RateLimit::default();
    for _ in 0..8 {
        state.record_failure(RHOST, NOW + 3600, &limit);
    }
    f.put_state("alice", &state);
    f.login(NOW, "alice", &[&code(&e, NOW)])
        .assert(Verdict::AuthErr)
        .assert_said("wait 15 minutes");
    // The failures now count from now, so the wait ends 15 minutes on in real time.
    let saved = f.state("alice");
    assert_eq!(saved.total.last, NOW);
    assert!(saved.failures.iter().all(|f| f.last == NOW));
    f.login(NOW + 899, "alice", &[&code(&e, NOW + 899)])
        .assert_said("Please wait 1 second");
    f.login(NOW + 900, "alice", &[&code(&e, NOW + 900)])
        .assert(Verdict::Success);
}
