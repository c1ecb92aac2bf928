//! Recovery codes at the code prompt: each is good once, in any case and spacing; a wrong one
//! is counted like a wrong code; the user is told how many are left; the state alone is
//! enough to keep a code used.

mod common;

use common::*;
use ivmfa_core::ports::Verdict;
use ivmfa_core::state::State;

#[test]
fn a_recovery_code_works_once() {
    let f = Fixture::new("");
    let (e, codes) = f.enroll_with_recovery("alice");
    f.login(NOW, "alice", &[&codes[0]])
        .assert(Verdict::Success)
        .assert_said("info: Recovery code accepted. You have 9 recovery codes left.")
        .assert_logged("accepted: recovery code, 9 left");
    f.login(NOW, "alice", &[&codes[0]])
        .assert(Verdict::AuthErr)
        .assert_said("error: That code is not correct.")
        .assert_logged("wrong recovery code, 1 consecutive failure(s)");
    let state = f.state("alice");
    assert_eq!(state.total.count, 1, "counted");
    assert_eq!(state.last_step, 0, "a recovery code moves no watermark");
    assert_eq!(f.enrollment("alice").unwrap().recovery.remaining(), 9);
    // The app's code works as before.
    f.login(NOW, "alice", &[&code(&e, NOW)])
        .assert(Verdict::Success);
}

#[test]
fn any_case_and_spacing_of_a_recovery_code_is_the_code() {
    let f = Fixture::new("max_failures=100");
    let (_, codes) = f.enroll_with_recovery("alice");
    let plain = codes[1].replace('-', "");
    for (i, typed) in [
        codes[1].to_uppercase(),
        codes[2].replace('-', " "),
        format!("  {}\t", codes[3]),
        codes[4].replace('-', ""),
        format!(
            "{} {} {}",
            &plain[..4].to_uppercase(),
            &plain[4..8],
            &plain[8..]
        ),
    ]
    .iter()
    .enumerate()
    {
        let seen = f.login(NOW, "alice", &[typed]);
        if i == 4 {
            // codes[1] again, in yet another spelling: used.
            seen.assert(Verdict::AuthErr);
        } else {
            seen.assert(Verdict::Success);
        }
    }
    assert_eq!(f.enrollment("alice").unwrap().recovery.remaining(), 6);
}

#[test]
fn a_wrong_recovery_code_counts_as_a_failure() {
    let f = Fixture::new("max_failures=2");
    let (_, codes) = f.enroll_with_recovery("alice");
    assert!(!codes.contains(&"abcd-efgh-jkmn".to_owned()));
    f.login(NOW, "alice", &["abcd-efgh-jkmn"])
        .assert(Verdict::AuthErr)
        .assert_said("That code is not correct.")
        .assert_logged("wrong recovery code, 1 consecutive failure(s)");
    assert_eq!(f.state("alice").total.count, 1);
    f.login(NOW, "alice", &["ABCD-EFGH-JKMN"])
        .assert_said("Too many wrong codes");
    // And without any recovery codes at all, the same.
    let g = Fixture::new("");
    g.enroll("alice");
    g.login(NOW, "alice", &["abcd-efgh-jkmn"])
        .assert(Verdict::AuthErr)
        .assert_said("not correct");
    assert_eq!(g.state("alice").total.count, 1);
}

#[test]
fn a_recovery_code_clears_the_failures_but_not_a_wait() {
    let f = Fixture::new("max_failures=3");
    let (_, codes) = f.enroll_with_recovery("alice");
    for _ in 0..2 {
        f.login(NOW, "alice", &["000000"]);
    }
    f.login(NOW, "alice", &[&codes[0]]).assert(Verdict::Success);
    assert_eq!(f.state("alice").total.count, 0);
    // Backing off, a recovery code is not looked at (see backoff.rs), and stays unused.
    for _ in 0..3 {
        f.login(NOW, "alice", &["000000"]);
    }
    f.login(NOW, "alice", &[&codes[1]])
        .assert(Verdict::AuthErr)
        .assert_said("Too many wrong codes");
    f.login(NOW + 30, "alice", &[&codes[1]])
        .assert(Verdict::Success)
        .assert_said("8 recovery codes left");
}

#[test]
fn the_last_codes_are_told_and_logged_louder() {
    let f = Fixture::new("");
    let (_, codes) = f.enroll_with_recovery("alice");
    for c in &codes[..7] {
        f.login(NOW, "alice", &[c]).assert(Verdict::Success);
    }
    let seen = f.login(NOW, "alice", &[&codes[7]]);
    seen.assert_said("You have 2 recovery codes left.");
    assert!(
        seen.log
            .iter()
            .any(|l| l.starts_with("Warning") && l.contains("accepted: recovery code, 2 left")),
        "{seen:#?}"
    );
    f.login(NOW, "alice", &[&codes[8]])
        .assert_said("You have 1 recovery code left.");
    f.login(NOW, "alice", &[&codes[9]])
        .assert(Verdict::Success)
        .assert_said("It was your last one: ask your administrator for new recovery codes.");
    assert_eq!(f.enrollment("alice").unwrap().recovery.remaining(), 0);
    f.login(NOW, "alice", &[&codes[9]]).assert(Verdict::AuthErr);
}

#[test]
fn a_recovery_code_recorded_only_in_the_state_stays_used() {
    let f = Fixture::new("");
    let (e, codes) = f.enroll_with_recovery("alice");
    // As if the enrollment could not be rewritten when code 3 was used: the state alone
    // knows.
    let mut state = State::default();
    state.use_recovery(&e.recovery, 3);
    f.put_state("alice", &state);
    f.login(NOW, "alice", &[&codes[3]])
        .assert(Verdict::AuthErr)
        .assert_said("That code is not correct")
        .assert_logged("recovery code already used");
    f.login(NOW, "alice", &[&codes[4]])
        .assert(Verdict::Success)
        .assert_said("You have 8 recovery codes left");
    // The enrollment is rewritten with every code the state knows as used, so removing the
    // state revives nothing.
    assert_eq!(f.enrollment("alice").unwrap().recovery.remaining(), 8);
    std::fs::remove_file(f.user_dir("alice").join("state")).unwrap();
    for c in [&codes[3], &codes[4]] {
        f.login(NOW, "alice", &[c])
            .assert(Verdict::AuthErr)
            .assert_said("That code is not correct");
    }
}

#[test]
fn an_imported_scratch_code_of_eight_digits_works_once() {
    let f = Fixture::new("");
    let mut e = f.enroll("alice");
    e.recovery = ivmfa_core::recovery::from_plain(&[9; 16], ["12345678"].into_iter(), NOW);
    f.save_enrollment("alice", &e);
    f.login(NOW, "alice", &["1234 5678"])
        .assert(Verdict::Success)
        .assert_said("It was your last one");
    f.login(NOW, "alice", &["12345678"])
        .assert(Verdict::AuthErr);
    // An enrollment of eight digits takes its codes and the scratch codes at one prompt.
    let g = Fixture::new("");
    let mut e = g.enroll("alice");
    e.digits = 8;
    e.recovery = ivmfa_core::recovery::from_plain(&[9; 16], ["87654321"].into_iter(), NOW);
    g.save_enrollment("alice", &e);
    g.login(NOW, "alice", &["87654321"])
        .assert(Verdict::Success)
        .assert_said("Recovery code accepted");
    g.login(NOW, "alice", &[&code(&e, NOW)])
        .assert(Verdict::Success)
        .assert_not_said("Recovery");
}
