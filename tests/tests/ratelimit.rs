//! Failure counting and back-off through real libpam: the wait is told, holds even the right
//! code, and is counted per remote host (PAM_RHOST). The arithmetic (the threshold, doubling,
//! the bound, the end of a wait to the second, the per-user limit, a clock set back) is in
//! ivmfa-core/tests/backoff.rs, where the clock is the test's and nothing waits.

use ivmfa_tests::*;

#[test]
fn backoff_is_told_and_holds_the_right_code_too() {
    let f = Fixture::new("max_failures=2 backoff_seconds=600 max_backoff_seconds=600");
    let e = f.enroll("daemon");
    f.login("daemon", &[&wrong_code(&e)]).assert("PAM_AUTH_ERR");
    // The second failure starts the back-off, and the user is told how long.
    f.login("daemon", &[&wrong_code(&e)])
        .assert("PAM_AUTH_ERR")
        .assert_said("Please wait 10 minutes");
    // Even the right code is not checked while backing off; the prompt is there only for a
    // lost phone's reset request.
    f.login("daemon", &[&code(&e, 0)])
        .assert("PAM_AUTH_ERR")
        .assert_said("Too many wrong codes")
        .assert_said("type reset to ask the administrators");
    f.login("daemon", &["reset"])
        .assert("PAM_AUTH_ERR")
        .assert_said("has been sent to the administrators");
    assert_eq!(f.state("daemon").state.total.count, 2);
}

#[test]
fn failures_are_counted_per_source() {
    let f = Fixture::new("max_failures=1 backoff_seconds=60 max_backoff_seconds=60");
    let e = f.enroll("daemon");
    let from = |host: &str, answer: &str| {
        let mut args = f.auth_args("daemon", &[answer]);
        args.extend(["--rhost".to_string(), host.to_string()]);
        f.run(args)
    };
    from("192.0.2.1", &wrong_code(&e)).assert("PAM_AUTH_ERR");
    from("192.0.2.1", &code(&e, 0))
        .assert("PAM_AUTH_ERR")
        .assert_said("Too many wrong codes");
    // Another address is not held back by it.
    from("198.51.100.7", &code(&e, 0)).assert("PAM_SUCCESS");
}
