//! Hardware tokens (HOTP): a counter instead of a clock. A press is good once, presses lost on
//! the way are spent with it, and a token whose counter is unknown is not judged at all.

mod common;

use common::*;
use ivmfa_core::enrollment::{Enrollment, Secret};
use ivmfa_core::ports::Verdict;
use ivmfa_core::state::State;

/// alice with a hardware token (RFC 4226's key), installed as `ivmfa-enroll enroll --hotp`
/// does: the state expects counter 0.
fn enroll_token(f: &Fixture) -> Enrollment {
    let e = Enrollment::hotp(Secret::from_bytes(b"12345678901234567890").unwrap(), 0);
    let store = f.store();
    let lock = store.lock(&name("alice")).unwrap();
    store.install_enrollment(&lock, &e, 0).unwrap();
    e
}

fn press(e: &Enrollment, counter: u64) -> String {
    ivmfa_core::hotp::code_at(e, counter).unwrap().to_string()
}

#[test]
fn a_token_code_works_once_and_moves_the_counter_past_it() {
    let f = Fixture::new("");
    let e = enroll_token(&f);
    f.login(NOW, "alice", &[&press(&e, 0)])
        .assert(Verdict::Success);
    f.login(NOW, "alice", &[&press(&e, 0)])
        .assert(Verdict::AuthErr)
        .assert_said("Press the button on your token");
    // Three presses lost on the way: still in the window, and the ones skipped are spent.
    f.login(NOW, "alice", &[&press(&e, 4)])
        .assert(Verdict::Success);
    f.login(NOW, "alice", &[&press(&e, 2)])
        .assert(Verdict::AuthErr)
        .assert_said("already been used");
    // The clock plays no part: a day later the next press is just as good.
    f.login(NOW + 86_400, "alice", &[&press(&e, 5)])
        .assert(Verdict::Success);
    // Past the window (hotp_window=2 here): refused and counted, the counter unmoved.
    f.at(NOW)
        .args("hotp_window=2")
        .login("alice", &[&press(&e, 9)])
        .assert(Verdict::AuthErr)
        .assert_said("not correct");
    let state = f.state("alice");
    assert_eq!(state.hotp_next(&e.secret), Some(6));
    assert_eq!(state.total.count, 1);
}

#[test]
fn a_token_without_its_counter_is_not_judged() {
    let f = Fixture::new("");
    let e = enroll_token(&f);
    f.put_state("alice", &State::default());
    // Counter 0 would be the guess; the codes pam_oath or an earlier enrollment saw stay dead.
    f.login(NOW, "alice", &[&press(&e, 0)])
        .assert(Verdict::ServiceErr)
        .assert_logged("ivmfa-enroll resync");
    assert_eq!(f.state("alice").total.count, 0);
}
