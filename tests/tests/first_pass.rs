//! google-authenticator's `try_first_pass`, `use_first_pass` and `echo_verification_code`
//! through real libpam: the answer taken from PAM_AUTHTOK, set by a module earlier in the
//! stack, instead of a prompt; and a code prompt that shows what is typed.
//!
//! The earlier module is pam_exec with `expose_authtok`, as a stack that collects all its input
//! up front uses one: it asks `Password: `, sets PAM_AUTHTOK to the answer and passes it to a
//! program (here `cat`, which only reads it).

use std::fs;

use ivmfa_tests::*;

/// A fixture whose stack first collects an answer into PAM_AUTHTOK, then runs the module
/// with `args`.
fn collecting(args: &str) -> Fixture {
    let f = Fixture::new(args);
    let ours = fs::read_to_string(f.dir.join("pam.d").join(SERVICE)).unwrap();
    f.set_module_line(&format!(
        "auth required pam_exec.so quiet expose_authtok /usr/bin/cat\n{ours}"
    ));
    f
}

/// A wrong code for now other than [`wrong_code`]'s.
fn another_wrong_code(e: &ivmfa_core::enrollment::Enrollment) -> String {
    let mut c = code(e, 0).into_bytes();
    let last = c.last_mut().unwrap();
    *last = b'0' + (*last - b'0' + 5) % 10;
    String::from_utf8(c).unwrap()
}

fn failures(f: &Fixture) -> u32 {
    f.state("daemon").state.total.count
}

#[test]
fn use_first_pass_judges_the_code_an_earlier_module_collected() {
    let f = collecting("use_first_pass max_failures=10");
    let e = f.enroll("daemon");
    settle();
    let out = f.login("daemon", &[&code(&e, 0)]);
    out.assert("PAM_SUCCESS");
    assert_eq!(
        out.prompts(),
        ["prompt-hidden: Password: "],
        "asked only once"
    );

    // A wrong one is a guess like a typed one: judged, counted, and no prompt follows.
    let out = f.login("daemon", &[&wrong_code(&e)]);
    out.assert("PAM_AUTH_ERR")
        .assert_said("That code is not correct");
    assert_eq!(out.prompts().len(), 1, "{out:?}");
    assert_eq!(failures(&f), 1);

    // What is no code (the password) is refused unjudged, so not counted; the reset keyword
    // is no code either when it comes from an earlier module, and files no request.
    for not_a_code in ["correct horse", "reset", ""] {
        let out = f.login("daemon", &[not_a_code]);
        out.assert("PAM_AUTH_ERR")
            .assert_said("Please enter the 6-digit code");
        assert_eq!(out.prompts().len(), 1, "{out:?}");
    }
    assert_eq!(failures(&f), 1);
    assert!(!f.store.join("requests/daemon.toml").exists());

    // A recovery code (or the shape of one) is taken as at the prompt.
    f.login("daemon", &["abcd-efgh-jkmn"])
        .assert("PAM_AUTH_ERR");
    assert_eq!(failures(&f), 2);
}

#[test]
fn use_first_pass_with_nothing_collected_fails_closed_without_asking() {
    let f = Fixture::new("use_first_pass");
    let e = f.enroll("daemon");
    settle();
    let out = f.login("daemon", &[&code(&e, 0)]);
    out.assert("PAM_SERVICE_ERR")
        .assert_said("not available right now");
    assert!(out.prompts().is_empty(), "{out:?}");
    assert_eq!(failures(&f), 0);
}

#[test]
#[ignore = "needs root"]
fn use_first_pass_with_nothing_collected_says_why_in_syslog() {
    require_root("a private /dev/log");
    let f = Fixture::new("use_first_pass");
    f.enroll("daemon");
    let (out, lines) = f.login_logged("daemon", &["123456"]);
    out.assert("PAM_SERVICE_ERR");
    logged_line(
        &lines,
        &["use_first_pass", "no earlier module set PAM_AUTHTOK"],
    );
}

#[test]
fn try_first_pass_takes_a_collected_code_and_asks_when_there_is_none() {
    let f = collecting("try_first_pass");
    let e = f.enroll("daemon");
    settle();
    let out = f.login("daemon", &[&code(&e, 0)]);
    out.assert("PAM_SUCCESS");
    assert_eq!(out.prompts(), ["prompt-hidden: Password: "]);

    // The earlier module collected something that is no code (a password): not judged, not
    // counted, and the module asks.
    let out = f.login("daemon", &["correct horse", &code(&e, 1)]);
    out.assert("PAM_SUCCESS");
    assert_eq!(
        out.prompts(),
        [
            "prompt-hidden: Password: ",
            "prompt-hidden: Verification code: "
        ]
    );
    assert_eq!(failures(&f), 0);

    // Nothing collected at all: the module asks.
    let alone = Fixture::new("try_first_pass");
    let e = alone.enroll("daemon");
    let out = alone.login("daemon", &[&code(&e, 0)]);
    out.assert("PAM_SUCCESS");
    assert_eq!(out.prompts(), ["prompt-hidden: Verification code: "]);
}

#[test]
fn try_first_pass_counts_each_answer_once() {
    let f = collecting("try_first_pass max_failures=10");
    let e = f.enroll("daemon");
    settle();
    // A wrong collected code is counted; the prompt then takes another guess, counted too.
    let out = f.login("daemon", &[&wrong_code(&e), &another_wrong_code(&e)]);
    out.assert("PAM_AUTH_ERR");
    assert_eq!(out.prompts().len(), 2, "{out:?}");
    assert_eq!(failures(&f), 2);

    // The same wrong code typed again at the prompt was judged already: not counted twice.
    let out = f.login("daemon", &[&wrong_code(&e), &wrong_code(&e)]);
    out.assert("PAM_AUTH_ERR")
        .assert_said("That code is not correct");
    assert_eq!(failures(&f), 3);

    // A wrong collected code, then the right one at the prompt: in, and the count cleared.
    f.login("daemon", &[&wrong_code(&e), &code(&e, 0)])
        .assert("PAM_SUCCESS");
    assert_eq!(failures(&f), 0);
}

#[test]
fn try_first_pass_does_not_ask_once_the_collected_code_starts_a_wait() {
    let f = collecting("try_first_pass max_failures=1");
    let e = f.enroll("daemon");
    settle();
    let out = f.login("daemon", &[&wrong_code(&e), &code(&e, 0)]);
    out.assert("PAM_AUTH_ERR")
        .assert_said("Too many wrong codes");
    assert_eq!(out.prompts().len(), 1, "{out:?}");
    assert_eq!(
        f.state("daemon").state.last_step,
        0,
        "the right code was never judged"
    );
}

#[test]
fn the_first_pass_modes_exclude_each_other() {
    let f = Fixture::new("try_first_pass use_first_pass");
    f.enroll("daemon");
    f.login("daemon", &["123456"]).assert("PAM_SERVICE_ERR");
}

#[test]
fn echo_code_shows_what_is_typed_at_the_code_prompt() {
    for (args, config, style) in [
        ("", "", "prompt-hidden"),
        ("echo_code", "", "prompt-shown"),
        ("echo_verification_code", "", "prompt-shown"),
        ("echo_code=false", "echo_code = true\n", "prompt-hidden"),
        ("", "echo_code = true\n", "prompt-shown"),
    ] {
        let f = Fixture::with_config(args, config);
        let e = f.enroll("daemon");
        settle();
        let out = f.login("daemon", &[&code(&e, 0)]);
        out.assert("PAM_SUCCESS");
        assert_eq!(
            out.prompts(),
            [format!("{style}: Verification code: ")],
            "{args} / {config}"
        );
    }
}

#[test]
fn echo_code_shows_the_code_typed_at_set_up_too() {
    let f = Fixture::new("unenrolled=enroll echo_code");
    settle();
    let out = f.login("daemon", &["@phone"]);
    out.assert("PAM_SUCCESS");
    assert_eq!(out.prompts(), ["prompt-shown: Code shown in the app: "]);
}
