//! Failure counting and back-off, through real libpam.

use std::time::Duration;

use ivmfa_tests::*;

#[test]
fn backoff_after_max_failures_then_success_resets() {
    let f = Fixture::new("max_failures=2 backoff_seconds=2 max_backoff_seconds=4");
    let e = f.enroll("daemon");
    settle();
    f.login("daemon", &[&wrong_code(&e)]).assert("PAM_AUTH_ERR");
    // The second failure starts the back-off, and the user is told how long.
    f.login("daemon", &[&wrong_code(&e)])
        .assert("PAM_AUTH_ERR")
        .assert_said("Please wait 2 seconds");
    // Even the right code is not checked while backing off; the prompt is there only for a
    // lost phone's reset request.
    let held = f.login("daemon", &[&code(&e, 0)]);
    held.assert("PAM_AUTH_ERR")
        .assert_said("Too many wrong codes")
        .assert_said("type reset to ask the administrators");

    std::thread::sleep(Duration::from_millis(2100));
    settle();
    f.login("daemon", &[&code(&e, 0)]).assert("PAM_SUCCESS");
    // The success cleared the count: one more failure does not hold the user back.
    f.login("daemon", &[&wrong_code(&e)]).assert("PAM_AUTH_ERR");
    let out = f.login("daemon", &[&code(&e, 1)]);
    out.assert("PAM_SUCCESS");
}

#[test]
fn backoff_doubles_up_to_the_bound() {
    let f = Fixture::new("max_failures=1 backoff_seconds=1 max_backoff_seconds=2");
    let e = f.enroll("daemon");
    settle();
    f.login("daemon", &[&wrong_code(&e)])
        .assert_said("Please wait 1 second before");
    std::thread::sleep(Duration::from_millis(1100));
    f.login("daemon", &[&wrong_code(&e)])
        .assert_said("Please wait 2 seconds");
    std::thread::sleep(Duration::from_millis(2100));
    // Bounded: the third failure waits 2 s too, not 4.
    f.login("daemon", &[&wrong_code(&e)])
        .assert_said("Please wait 2 seconds");
}

#[test]
fn failures_are_counted_per_source() {
    let f = Fixture::new("max_failures=1 backoff_seconds=60 max_backoff_seconds=60");
    let e = f.enroll("daemon");
    settle();
    let from = |host: &str, answer: &str| {
        let mut args = f.auth_args("daemon", &[answer]);
        args.extend(["--rhost".to_string(), host.to_string()]);
        f.run(args)
    };
    from("192.0.2.1", &wrong_code(&e)).assert("PAM_AUTH_ERR");
    from("192.0.2.1", &code(&e, 0))
        .assert("PAM_AUTH_ERR")
        .assert_said("Too many wrong codes");
    // Another address, and the console, are not held back by it.
    from("198.51.100.7", &code(&e, 0)).assert("PAM_SUCCESS");
    f.login("daemon", &[&code(&e, 1)]).assert("PAM_SUCCESS");
}

#[test]
fn a_user_backing_off_can_still_ask_for_a_reset() {
    let f = Fixture::new("max_failures=1 backoff_seconds=600 max_backoff_seconds=600");
    let e = f.enroll("daemon");
    settle();
    f.login("daemon", &[&wrong_code(&e)])
        .assert_said("Please wait 10 minutes");
    f.login("daemon", &["reset"])
        .assert("PAM_AUTH_ERR")
        .assert_said("Please wait")
        .assert_said("has been sent to the administrators");
    assert!(f.store.join("requests/daemon.toml").exists());
    // With requests disabled, a user backing off is not even asked.
    let off = Fixture::with_config(
        "max_failures=1 backoff_seconds=600 max_backoff_seconds=600",
        "reset_keyword = \"\"\n",
    );
    let e = off.enroll("daemon");
    off.login("daemon", &[&wrong_code(&e)])
        .assert("PAM_AUTH_ERR");
    let held = off.login("daemon", &["reset"]);
    held.assert("PAM_AUTH_ERR")
        .assert_said("Too many wrong codes");
    assert!(!held.said("prompt"), "{held:?}");
}
