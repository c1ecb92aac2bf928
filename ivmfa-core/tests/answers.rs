//! What may be typed at the code prompt: a code as apps show it, and everything that is not a
//! code, which is refused without counting as a guess (it guesses nothing); the password
//! typed again by an application that cannot ask for a code.

mod common;

use common::*;
use ivmfa_core::ports::Verdict;

#[test]
fn a_code_as_apps_show_it_is_the_code() {
    let f = Fixture::new("");
    let e = f.enroll("alice");
    for (i, shape) in [
        |c: &str| format!("{} {}", &c[..3], &c[3..]),
        |c: &str| format!("  {c}\t"),
        |c: &str| format!("{} {} {}", &c[..2], &c[2..4], &c[4..]),
    ]
    .iter()
    .enumerate()
    {
        let at = NOW + i as u64 * PERIOD;
        f.login(at, "alice", &[&shape(&code(&e, at))])
            .assert(Verdict::Success);
    }
}

#[test]
fn anything_but_a_code_is_refused_without_counting() {
    // max_failures=1: one counted failure would hold the next login back.
    let f = Fixture::new("max_failures=1");
    let e = f.enroll("alice");
    let c = code(&e, NOW);
    for answer in [
        String::new(),
        "   ".to_owned(),
        "abcdef".to_owned(),
        "12345".to_owned(),
        "1234567".to_owned(),
        "+12345".to_owned(),
        "-123456".to_owned(),
        "12-3456".to_owned(),
        "١٢٣٤٥٦".to_owned(),
        "１２３４５６".to_owned(),
        "12\u{0}3456".to_owned(),
        format!("{c}x"),
        format!("{c}\n"),
        format!("{c} {c}"),
        "1".repeat(65),
        "1".repeat(100_000),
        "invert".to_owned(),
    ] {
        let seen = f.login(NOW, "alice", &[&answer]);
        seen.assert(Verdict::AuthErr)
            .assert_said("error: Please enter the 6-digit code from your authenticator app.");
        assert!(
            seen.logged("the answer is not a code") || seen.logged("no code entered"),
            "{answer:?}: {seen:#?}"
        );
        assert_eq!(f.state("alice").total.count, 0, "{answer:?} was counted");
    }
    f.login(NOW, "alice", &[&c]).assert(Verdict::Success);
}

#[test]
fn an_eight_digit_enrollment_asks_for_eight_digits() {
    let f = Fixture::new("max_failures=1");
    let mut e = f.enroll("alice");
    e.digits = 8;
    f.save_enrollment("alice", &e);
    let six_digits = ivmfa_core::enrollment::Enrollment {
        digits: 6,
        ..e.clone()
    };
    let six = code(&six_digits, NOW);
    f.login(NOW, "alice", &[&six])
        .assert(Verdict::AuthErr)
        .assert_said("Please enter the 8-digit code");
    f.login(NOW, "alice", &[&code(&e, NOW)])
        .assert(Verdict::Success);
}

#[test]
fn the_password_typed_again_is_not_a_guess() {
    // An application that answers every prompt with the password (IMAP, SMTP AUTH).
    let f = Fixture::new("max_failures=1");
    let e = f.enroll("alice");
    for password in ["314159", "hunter2"] {
        f.at(NOW)
            .password(password)
            .login("alice", &[password])
            .assert(Verdict::AuthErr)
            .assert_said("This service asks only for a password")
            .assert_logged("not counted");
    }
    assert_eq!(f.state("alice").total.count, 0);
    // With a password in hand, a different answer is judged as ever.
    f.at(NOW)
        .password("314159")
        .login("alice", &[&code(&e, NOW)])
        .assert(Verdict::Success);
}
