//! A code is good once: the watermark (the last step accepted) only moves forward, and a code
//! for a step at or below it is refused as used, however it comes back: the same code again,
//! in the next step, an older code after a newer one, the clock set back.

mod common;

use common::*;
use ivmfa_core::ports::Verdict;
use ivmfa_core::state::State;

#[test]
fn the_same_code_twice_is_refused_as_used_and_counted() {
    let f = Fixture::new("");
    let e = f.enroll("alice");
    let c = code(&e, NOW);
    f.login(NOW, "alice", &[&c])
        .assert(Verdict::Success)
        .assert_logged("accepted: code verified");
    assert_eq!(f.state("alice").last_step, NOW / PERIOD);
    f.login(NOW + 1, "alice", &[&c])
        .assert(Verdict::AuthErr)
        .assert_said("error: That code has already been used. Wait for the next code")
        .assert_logged("code already used (replay), 1 consecutive failure(s)");
    assert_eq!(f.state("alice").total.count, 1, "a replay counts");
    // In the next step the code is still in the window (one step old): still used.
    f.login(NOW + PERIOD, "alice", &[&c])
        .assert(Verdict::AuthErr)
        .assert_said("already been used");
    // The next step's own code is new.
    f.login(NOW + PERIOD, "alice", &[&code(&e, NOW + PERIOD)])
        .assert(Verdict::Success);
    assert_eq!(
        f.state("alice").total.count,
        0,
        "a success clears the count"
    );
}

#[test]
fn an_older_step_after_a_newer_one_is_refused() {
    let f = Fixture::new("");
    let e = f.enroll("alice");
    // The phone a little fast: the next step's code is accepted now...
    f.login(NOW, "alice", &[&code_off(&e, NOW, 1)])
        .assert(Verdict::Success);
    assert_eq!(f.state("alice").last_step, NOW / PERIOD + 1);
    // ...so this step's and the last one's, though in the window, are used up.
    for offset in [0, -1] {
        f.login(NOW, "alice", &[&code_off(&e, NOW, offset)])
            .assert(Verdict::AuthErr)
            .assert_said("already been used");
    }
    // When the next step comes, its code is the one already used; the one after is new.
    f.login(NOW + PERIOD, "alice", &[&code(&e, NOW + PERIOD)])
        .assert(Verdict::AuthErr)
        .assert_said("already been used");
    f.login(NOW + 2 * PERIOD, "alice", &[&code(&e, NOW + 2 * PERIOD)])
        .assert(Verdict::Success);
}

#[test]
fn a_watermark_provisioned_ahead_refuses_every_code_up_to_it() {
    let f = Fixture::new("window=2 max_failures=100");
    let e = f.enroll("alice");
    let current = NOW / PERIOD;
    f.put_state(
        "alice",
        &State {
            last_step: current + 1,
            ..State::default()
        },
    );
    for offset in [-2, -1, 0, 1] {
        f.login(NOW, "alice", &[&code_off(&e, NOW, offset)])
            .assert(Verdict::AuthErr)
            .assert_said("already been used");
    }
    f.login(NOW, "alice", &[&code_off(&e, NOW, 2)])
        .assert(Verdict::Success);
    assert_eq!(f.state("alice").last_step, current + 2);
}

#[test]
fn a_clock_set_back_after_a_login_cannot_reuse_its_codes() {
    let f = Fixture::new("max_failures=100");
    let e = f.enroll("alice");
    f.login(NOW, "alice", &[&code(&e, NOW)])
        .assert(Verdict::Success);
    // The clock goes back two minutes: the codes of then were never used, but every step
    // in the window is at or below the watermark, so none can be accepted.
    let back = NOW - 120;
    f.login(back, "alice", &[&code(&e, back)])
        .assert(Verdict::AuthErr)
        .assert_said("already been used");
    // Nor the code used before the clock went back.
    f.login(back, "alice", &[&code(&e, NOW)])
        .assert(Verdict::AuthErr);
    assert_eq!(f.state("alice").last_step, NOW / PERIOD, "unmoved");
    // Once the clock is past the watermark again, codes work.
    f.login(NOW + PERIOD, "alice", &[&code(&e, NOW + PERIOD)])
        .assert(Verdict::Success);
}

#[test]
fn the_watermark_is_each_users_own() {
    let f = Fixture::new("");
    // Two users with the same secret (a shared hardware token provisioned twice).
    let e = f.enroll("alice");
    f.enroll("bob");
    let c = code(&e, NOW);
    f.login(NOW, "alice", &[&c]).assert(Verdict::Success);
    f.login(NOW, "bob", &[&c]).assert(Verdict::Success);
    f.login(NOW, "bob", &[&c]).assert(Verdict::AuthErr);
}

#[test]
fn replays_count_toward_the_back_off_like_wrong_codes() {
    let f = Fixture::new("max_failures=2 backoff_seconds=60 max_backoff_seconds=60");
    let e = f.enroll("alice");
    let c = code(&e, NOW);
    f.login(NOW, "alice", &[&c]).assert(Verdict::Success);
    f.login(NOW, "alice", &[&c])
        .assert(Verdict::AuthErr)
        .assert_not_said("Please wait");
    f.login(NOW, "alice", &[&c])
        .assert(Verdict::AuthErr)
        .assert_said("already been used")
        .assert_said("Too many wrong codes. Please wait 1 minute before trying again.");
}

#[test]
fn a_reenrollment_keeps_the_watermark_of_the_secret_provisioned_again() {
    let f = Fixture::new("");
    let e = f.enroll("alice");
    let c = code(&e, NOW);
    f.login(NOW, "alice", &[&c]).assert(Verdict::Success);
    // The administrator provisions the same secret again (a hardware token re-registered).
    let store = f.store();
    let lock = store.lock(&name("alice")).unwrap();
    store
        .archive_enrollment(&lock, &name("alice"), NOW)
        .unwrap();
    store.install_enrollment(&lock, &e, 0).unwrap();
    drop(lock);
    f.login(NOW, "alice", &[&c])
        .assert(Verdict::AuthErr)
        .assert_said("already been used");
}
