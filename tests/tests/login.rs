//! Logins through real libpam with the built module: one of each kind of answer and policy,
//! to show the wiring (the prompt, the messages, PAM_IGNORE in a stack, the items and flags
//! libpam passes). Their case analysis (every window edge, replays, shapes of answers,
//! policies) is in ivmfa-core/tests, with a fixed clock.

use ivmfa_tests::*;

#[test]
fn right_code_is_accepted_and_prompt_is_hidden() {
    let f = Fixture::new("");
    let e = f.enroll("daemon");
    f.login("daemon", &[&code(&e, 0)])
        .assert("PAM_SUCCESS")
        .assert_said("prompt-hidden: Verification code: ");
}

#[test]
fn wrong_code_is_refused_with_a_message() {
    let f = Fixture::new("");
    let e = f.enroll("daemon");
    f.login("daemon", &[&wrong_code(&e)])
        .assert("PAM_AUTH_ERR")
        .assert_said("error: That code is not correct.");
}

#[test]
fn a_code_is_accepted_once() {
    // Older steps, the next step, the clock set back: ivmfa-core/tests/replay.rs.
    let f = Fixture::new("");
    let e = f.enroll("daemon");
    let c = code(&e, 0);
    f.login("daemon", &[&c]).assert("PAM_SUCCESS");
    f.login("daemon", &[&c])
        .assert("PAM_AUTH_ERR")
        .assert_said("error: That code has already been used.");
}

#[test]
fn answers_the_conversation_cuts_or_that_are_huge_are_refused_without_counting() {
    // The shapes of answer that are no code: ivmfa-core/tests/answers.rs. Here, what only the
    // conversation shows: a NUL byte ends the C string, ten megabytes arrive whole.
    let f = Fixture::new("max_failures=1");
    let e = f.enroll("daemon");
    let ten_mb = f.dir.join("huge");
    std::fs::write(&ten_mb, "1".repeat(10 << 20)).unwrap();
    let nul = f.dir.join("nul");
    std::fs::write(&nul, b"12\x003456").unwrap();
    for file in [&ten_mb, &nul] {
        let mut args = f.auth_args("daemon", &[]);
        args.extend(["--answer-file".to_string(), file.display().to_string()]);
        let started = std::time::Instant::now();
        f.run(args)
            .assert("PAM_AUTH_ERR")
            .assert_said("6-digit code");
        assert!(
            started.elapsed().as_secs() < 10,
            "took {:?}",
            started.elapsed()
        );
    }
    // None of that counted as a failed guess (max_failures=1 would have locked us out).
    f.login("daemon", &[&code(&e, 0)]).assert("PAM_SUCCESS");
}

#[test]
fn unenrolled_policies_in_a_stack() {
    // Every policy and alias, the missing store: ivmfa-core/tests/unenrolled.rs. Here, what
    // libpam makes of the module's answer.
    let deny = Fixture::new("");
    deny.login("daemon", &[])
        .assert("PAM_AUTH_ERR")
        .assert_said("has not been set up");
    deny.append_line("auth required pam_permit.so");
    deny.login("daemon", &[]).assert("PAM_AUTH_ERR");

    // PAM_IGNORE: alone in the stack nothing said yes, so libpam denies...
    let f = Fixture::new("nullok");
    let out = f.login("daemon", &[]);
    out.assert("PAM_PERM_DENIED");
    assert!(!out.said("prompt"), "{out:?}");
    // ...and behind another module the stack's result is that module's.
    f.append_line("auth required pam_permit.so");
    f.login("daemon", &[]).assert("PAM_SUCCESS");

    // `enroll` sets the user up in the login (flows.rs); with no answer it saves nothing.
    let enroll = Fixture::new("unenrolled=enroll");
    enroll
        .login("daemon", &[])
        .assert("PAM_CONV_ERR")
        .assert_said("Set up multi-factor authentication");
    assert!(enroll.enrollment("daemon").is_none());
}

#[test]
fn unknown_and_invalid_users() {
    let f = Fixture::new("unenrolled=allow");
    for user in [
        "no-such-user-ivmfa",
        "../etc",
        "a/b",
        "",
        &"x".repeat(5000),
        "ümlaut",
    ] {
        let out = f.login(user, &[]);
        out.assert("PAM_USER_UNKNOWN");
        assert!(!out.said("prompt"), "{user}: {out:?}");
    }
}

#[test]
fn bad_options_fail_closed() {
    for args in [
        "bogus=1",
        "window=1 window=2",
        "window=99",
        "window=",
        "unenrolled=maybe",
        "store=relative/path",
        "prompt=",
        "frobnicate",
        "max_backoff_seconds=1 backoff_seconds=5",
    ] {
        let f = Fixture::new(&format!("unenrolled=allow {args}"));
        let out = f.login("daemon", &["123456"]);
        out.assert("PAM_SERVICE_ERR").assert_said("not available");
    }
    let huge = format!("prompt={}", "p".repeat(100_000));
    let f = Fixture::new(&format!("unenrolled=allow {huge}"));
    f.login("daemon", &[]).assert("PAM_SERVICE_ERR");
}

#[test]
fn config_file_sets_keys_and_arguments_win() {
    let f = Fixture::with_config(
        "window=0",
        "window = 5\nprompt = \"Code from your app: \"\n",
    );
    let e = f.enroll("daemon");
    settle();
    // window=0 from the arguments beats window = 5 from the file.
    f.login("daemon", &[&code(&e, 2)]).assert("PAM_AUTH_ERR");
    f.login("daemon", &[&code(&e, 0)])
        .assert("PAM_SUCCESS")
        .assert_said("prompt-hidden: Code from your app: ");

    let bad = Fixture::with_config("", "windwo = 1\n");
    bad.enroll("daemon");
    bad.login("daemon", &[]).assert("PAM_SERVICE_ERR");
    let garbage = Fixture::with_config("", "\u{0}\u{1}not toml [[[");
    garbage.login("daemon", &[]).assert("PAM_SERVICE_ERR");
    let missing = Fixture::new("");
    std::fs::remove_file(&missing.config).unwrap();
    missing.login("daemon", &[]).assert("PAM_SERVICE_ERR");
}

#[test]
fn exempt_group_skips_the_code_for_members_only() {
    // root's primary group is root; daemon is not in it.
    let f = Fixture::new("exempt_group=root");
    f.enroll("root");
    f.enroll("daemon");
    f.login("root", &[]).assert("PAM_SUCCESS");
    f.login("daemon", &["000000"]).assert("PAM_AUTH_ERR");
    // A group that does not exist exempts nobody.
    let g = Fixture::new("exempt_group=no-such-group-ivmfa");
    g.enroll("root");
    g.login("root", &["000000"]).assert("PAM_AUTH_ERR");
}

#[test]
fn no_conversation_answer_fails_closed() {
    let f = Fixture::new("");
    f.enroll("daemon");
    // The driver has no answer left and its conversation fails.
    f.login("daemon", &[]).assert("PAM_CONV_ERR");
}

#[test]
fn enrollment_replaced_while_at_the_prompt_is_honoured() {
    let f = Fixture::new("");
    let old = f.enroll("daemon");
    let held = f.login_held("daemon", &[&code(&old, 0)]);
    // The administrator replaces the enrollment (lost phone) while the prompt is open.
    let new = f.enroll("daemon");
    let text = held.release();
    assert!(
        text.contains("result: PAM_AUTH_ERR"),
        "the old phone's code got in: {text}"
    );
    f.login("daemon", &[&code(&new, 0)]).assert("PAM_SUCCESS");
}

#[test]
fn silent_flag_suppresses_messages_but_not_the_prompt() {
    let f = Fixture::new("");
    let e = f.enroll("daemon");
    let mut args = f.auth_args("daemon", &[&wrong_code(&e)]);
    args.push("--silent".into());
    let out = f.run(args);
    out.assert("PAM_AUTH_ERR").assert_said("prompt-hidden");
    assert!(!out.said("error:"), "{out:?}");
}

/// An enrollment of `daemon` made for another uid, as if the account had been deleted and its
/// name given to someone else.
fn stale_enrollment(f: &Fixture) -> ivmfa_core::enrollment::Enrollment {
    let mut e = f.enroll("daemon");
    e.uid = Some(12345);
    let store = f.store();
    let lock = store.lock(&user_name("daemon")).unwrap();
    store.save_enrollment(&lock, &e).unwrap();
    e
}

#[test]
#[ignore = "needs root"]
fn an_enrollment_made_for_another_uid_is_not_this_users() {
    require_root("a private /dev/log in a mount namespace");
    let f = Fixture::new("");
    let e = stale_enrollment(&f);
    let (out, lines) = f.login_logged("daemon", &[&code(&e, 0)]);
    out.assert("PAM_AUTH_ERR")
        .assert_said("has not been set up yet");
    logged_line(
        &lines,
        &[
            "made for uid 12345",
            "now uid 1",
            "ivmfa-enroll remove daemon",
        ],
    );
    // Made for this uid (or from before uids were recorded): as ever.
    let mut mine = e.clone();
    mine.uid = Some(1);
    let store = f.store();
    let lock = store.lock(&user_name("daemon")).unwrap();
    store.save_enrollment(&lock, &mine).unwrap();
    drop(lock);
    f.login("daemon", &[&code(&e, 0)]).assert("PAM_SUCCESS");
}
