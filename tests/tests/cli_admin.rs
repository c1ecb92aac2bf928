//! ivmfa-enroll's administrative commands: status, remove, recovery-codes,
//! import-google-authenticator, check, the audit log and --help.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use ivmfa_tests::*;

fn root() {
    require_root("ivmfa-enroll runs as root only");
}

fn provisioned() -> Fixture {
    let f = Fixture::new("");
    f.enroll_by_cli("daemon");
    f
}

#[test]
#[ignore = "needs root"]
fn status_shows_enrollment_codes_and_backoff() {
    root();
    let f = provisioned();
    f.cli(&["status"], "").expect(0, "daemon: enrolled since");
    f.cli(&["status", "daemon"], "")
        .expect(0, "recovery codes left: 10")
        .expect(0, "back-off: none");
    f.cli(&["status", "bin"], "").expect(0, "bin: not enrolled");
    let e = f.enrollment("daemon").unwrap();
    settle();
    for _ in 0..3 {
        f.login("daemon", &[&wrong_code(&e)]).assert("PAM_AUTH_ERR");
    }
    f.cli(&["status", "daemon"], "")
        .expect(0, "back-off: local logins for");
    // A slot torn by a crash is worth a word.
    tear_older_slot(&f.user_dir("daemon").join("state"));
    f.cli(&["status", "daemon"], "")
        .expect(0, "one slot of the state file is damaged")
        .expect(0, "back-off: local logins for");
    let empty = Fixture::new("");
    empty
        .cli(&["status"], "")
        .expect(0, "No users are enrolled");
}

#[test]
#[ignore = "needs root"]
fn remove_archives_and_refuses_twice() {
    root();
    let f = provisioned();
    assert!(f.user_dir("daemon").join("state").exists());
    f.cli(&["remove", "daemon"], "").expect(0, "archived as");
    assert!(f.enrollment("daemon").is_none());
    // The failures go with the enrollment; the watermark stays, so that the same secret
    // provisioned again does not make a used code work again.
    let kept = f.state("daemon").state;
    assert_eq!((kept.total.count, kept.failures.len()), (0, 0));
    let archived: Vec<_> = fs::read_dir(f.store.join("archive"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(archived.len(), 1);
    let kept = fs::read_to_string(archived[0].path()).unwrap();
    assert!(
        kept.contains(TEST_KEY),
        "the archived copy is the old enrollment"
    );
    assert_eq!(
        archived[0].metadata().unwrap().permissions().mode() & 0o777,
        0o600
    );
    f.cli(&["status", "daemon"], "").expect(0, "not enrolled");
    f.cli(&["remove", "daemon"], "")
        .expect(3, "daemon is not enrolled");
    // Logins now follow the unenrolled policy.
    f.login("daemon", &[])
        .assert("PAM_AUTH_ERR")
        .assert_said("not been set up");
}

#[test]
#[ignore = "needs root"]
fn recovery_codes_are_replaced_as_a_set() {
    root();
    let f = provisioned();
    let before = f.enrollment("daemon").unwrap().recovery;
    let out = f.cli(&["recovery-codes", "daemon", "--count", "5"], "");
    out.expect(0, "the previous ones no longer work");
    assert_eq!(recovery_codes_in(&out.stdout).len(), 5);
    let after = f.enrollment("daemon").unwrap().recovery;
    assert_eq!(after.remaining(), 5);
    assert!(before.hashes.iter().all(|h| !after.hashes.contains(h)));
    assert_eq!(
        f.enrollment("daemon").unwrap().secret.expose(),
        TEST_KEY_BYTES
    );
    f.cli(&["recovery-codes", "bin"], "")
        .expect(3, "bin is not enrolled");
}

/// Runs the real google-authenticator to write a file, as a user switching would have.
fn google_file(f: &Fixture, name: &str, extra: &[&str]) -> std::path::PathBuf {
    let path = f.dir.join(name);
    let status = Command::new("google-authenticator")
        .args([
            "-f", "-r", "3", "-R", "30", "-w", "3", "-Q", "NONE", "-q", "-s",
        ])
        .arg(&path)
        .args(extra)
        .status()
        .expect("google-authenticator (libpam-google-authenticator) is needed");
    assert!(status.success());
    path
}

#[test]
#[ignore = "needs root"]
fn import_google_authenticator_keeps_the_phone_working() {
    root();
    let f = Fixture::new("");
    let file = google_file(&f, "ga", &["-t", "-d"]);
    let text = fs::read_to_string(&file).unwrap();
    let secret = text.lines().next().unwrap();
    let scratch: Vec<&str> = text.lines().filter(|l| l.len() == 8).collect();
    let out = f.cli(
        &[
            "import-google-authenticator",
            "daemon",
            "--file",
            &file.display().to_string(),
        ],
        "",
    );
    out.expect(0, "Imported daemon's google-authenticator account");
    assert!(!out.stdout.contains(secret) && !out.stderr.contains(secret));
    let e = f.enrollment("daemon").unwrap();
    assert_eq!(e.secret.to_base32().as_str(), secret);
    assert_eq!(e.window, Some(1), "WINDOW_SIZE 3 is one step either side");
    assert_eq!(e.recovery.remaining(), scratch.len());
    for code in &scratch {
        assert!(e.recovery.find(code).unwrap().is_some());
    }
    settle();
    f.login("daemon", &[&code(&e, 0)]).assert("PAM_SUCCESS");
    assert!(file.exists(), "the old file is left in place");

    // A second import needs --force.
    f.cli(
        &[
            "import-google-authenticator",
            "daemon",
            "--file",
            &file.display().to_string(),
        ],
        "",
    )
    .expect(3, "already enrolled");
}

#[test]
#[ignore = "needs root"]
fn import_refuses_hotp_unsafe_and_missing_files() {
    root();
    let f = Fixture::new("");
    let hotp = google_file(&f, "hotp", &["-c"]);
    f.cli(
        &[
            "import-google-authenticator",
            "daemon",
            "--file",
            &hotp.display().to_string(),
        ],
        "",
    )
    .expect(2, "counter-based (HOTP)");
    let open = google_file(&f, "open", &["-t", "-d"]);
    fs::set_permissions(&open, fs::Permissions::from_mode(0o644)).unwrap();
    f.cli(
        &[
            "import-google-authenticator",
            "daemon",
            "--file",
            &open.display().to_string(),
        ],
        "",
    )
    .expect(1, "mode is 0644");
    let missing = f.dir.join("missing").display().to_string();
    f.cli(
        &["import-google-authenticator", "daemon", "--file", &missing],
        "",
    )
    .expect(2, "does not exist");
    // daemon's home is /usr/sbin: no ~/.google_authenticator there.
    f.cli(&["import-google-authenticator", "daemon"], "")
        .expect(2, ".google_authenticator does not exist");
    assert!(f.enrollment("daemon").is_none());
}

#[test]
#[ignore = "needs root"]
fn check_finds_what_is_wrong_and_passes_when_it_is_fixed() {
    root();
    let f = provisioned();
    let bad_pam = f.pam_dir(&[
        ("common-auth", COMMON_AUTH),
        ("sshd", "@include common-auth\nauth required pam_ivmfa.so\n"),
        (
            "login",
            "@include common-auth\nauth optional pam_ivmfa.so\n",
        ),
        (
            "su",
            "auth required pam_unix.so\nauth required pam_ivmfa.so unenrolled=enroll\n",
        ),
        (
            "sudo",
            "@include common-auth\nauth required pam_ivmfa.so windwo=1\n",
        ),
    ]);
    let bad_sshd = f.sshd_printing("usepam yes\nkbdinteractiveauthentication no\npubkeyauthentication yes\nauthenticationmethods any",
    );
    let out = f.cli(&["check", "--pam-dir", &bad_pam, "--sshd", &bad_sshd], "");
    assert_eq!(out.code, 1, "{out:#?}");
    for problem in [
        "pam_ivmfa.so is optional",
        "a wrong password at pam_unix.so (required",
        "unknown option windwo",
        "KbdInteractiveAuthentication no",
        "without a code through: publickey",
    ] {
        assert!(
            out.stdout.contains(problem),
            "{problem:?} not found in:\n{}",
            out.stdout
        );
    }
    assert!(out.stdout.contains("5 problems found"), "{}", out.stdout);

    let good_pam = f.pam_dir(&[
        ("common-auth", COMMON_AUTH),
        (
            "sshd",
            "@include common-auth\nauth required pam_ivmfa.so unenrolled=enroll\n",
        ),
        (
            "su",
            "auth requisite pam_unix.so\nauth required pam_ivmfa.so\n",
        ),
    ]);
    let good_sshd = f.sshd_printing(
        "usepam yes\nkbdinteractiveauthentication yes\npubkeyauthentication yes\n\
         authenticationmethods publickey,keyboard-interactive keyboard-interactive",
    );
    let out = f.cli(&["check", "--pam-dir", &good_pam, "--sshd", &good_sshd], "");
    out.expect(0, "No problems found");
    assert!(out.stdout.contains("1 user(s) enrolled"), "{}", out.stdout);

    // A store file with the wrong mode is a problem too.
    let secret = f.user_dir("daemon").join("secret.toml");
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o644)).unwrap();
    let out = f.cli(&["check", "--pam-dir", &good_pam, "--sshd", &good_sshd], "");
    assert_eq!(out.code, 1);
    assert!(out.stdout.contains("chmod go-rwx"), "{}", out.stdout);
}

#[test]
#[ignore = "needs root"]
fn admin_actions_are_audited_without_secrets() {
    root();
    let f = Fixture::new("");
    let (out, lines) = f.logged(
        &enroll_bin(),
        &f.cli_args(&["enroll", "daemon", "--secret", TEST_KEY, "--no-confirm"]),
    );
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8_lossy(&out.stdout);
    let line = logged_line(&lines, &["enrolled user=daemon"]);
    assert!(line.contains("ivmfa-enroll["), "{line}");
    assert!(line.contains("(by root"), "{line}");
    assert!(line.starts_with("<85>"), "authpriv.notice: {line}");
    let codes = recovery_codes_in(&printed);
    for l in &lines {
        assert!(
            !l.contains(TEST_KEY) && !l.contains("GEZD"),
            "secret logged: {l}"
        );
        assert!(
            codes.iter().all(|c| !l.contains(c)),
            "recovery code logged: {l}"
        );
    }
    let (_, lines) = f.logged(&enroll_bin(), &f.cli_args(&["remove", "daemon"]));
    logged_line(&lines, &["removed the enrollment of user=daemon"]);
}

#[test]
fn every_command_has_help_with_examples() {
    for command in [
        vec!["--help"],
        vec!["enroll", "--help"],
        vec!["status", "--help"],
        vec!["remove", "--help"],
        vec!["recovery-codes", "--help"],
        vec!["import-google-authenticator", "--help"],
        vec!["import-oath", "--help"],
        vec!["resync", "--help"],
        vec!["check", "--help"],
        vec!["reset", "--help"],
        vec!["reset", "list", "--help"],
        vec!["reset", "approve", "--help"],
        vec!["reset", "deny", "--help"],
    ] {
        let out = Command::new(enroll_bin()).args(&command).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{command:?}");
        assert!(
            text.contains("Example"),
            "{command:?} has no example:\n{text}"
        );
    }
}

#[test]
#[ignore = "needs root"]
fn check_sees_through_includes_jumps_and_sshd_bypasses() {
    root();
    let f = provisioned();
    let good_sshd = f.sshd_printing(
        "usepam yes\nkbdinteractiveauthentication yes\npubkeyauthentication yes\n\
         authenticationmethods publickey,keyboard-interactive keyboard-interactive",
    );
    let run = |files: &[(&str, &str)], sshd: &str| {
        let dir = f.pam_dir(files);
        f.cli(&["check", "--pam-dir", &dir, "--sshd", sshd], "")
    };
    // The module in an included file still counts for sshd, and a key alone is a bypass.
    let key_alone = f.sshd_printing("usepam yes\nkbdinteractiveauthentication yes\npubkeyauthentication host-bound\nauthenticationmethods any",
    );
    let out = run(
        &[
            (
                "common-auth",
                &format!("{COMMON_AUTH}auth required pam_ivmfa.so\n"),
            ),
            ("sshd", "@include common-auth\n"),
        ],
        &key_alone,
    );
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stdout.contains("without a code through: publickey"),
        "{}",
        out.stdout
    );

    for (stack, problem) in [
        ("auth sufficient pam_unix.so\nauth required pam_ivmfa.so\n", "ends the stack before pam_ivmfa.so"),
        ("auth [success=done default=ignore] pam_unix.so\nauth required pam_ivmfa.so\n", "ends the stack"),
        ("auth [success=2 default=ignore] pam_unix.so\nauth requisite pam_deny.so\nauth required pam_ivmfa.so\n", "jumps past"),
        ("auth include password-auth\nauth required pam_ivmfa.so\n", "ends the stack before"),
        ("AUTH required pam_unix.so\n-auth required pam_ivmfa.so\n", "-auth makes libpam skip"),
        ("auth required pam_unix.so\nauth required /nonexistent/pam_ivmfa.so\n", "is not installed"),
    ] {
        let out = run(
            &[("password-auth", "auth sufficient pam_unix.so\nauth requisite pam_deny.so\n"), ("sshd", stack)],
            &good_sshd,
        );
        assert_eq!(out.code, 1, "{stack}: {}", out.stdout);
        assert!(out.stdout.contains(problem), "{problem:?} for {stack:?}:\n{}", out.stdout);
    }

    // sshd settings that cannot be read are a problem, not a shrug; so are gssapi and
    // hostbased logins that skip keyboard-interactive.
    let broken = f.dir.join("sshd-broken");
    fs::write(
        &broken,
        "#!/bin/sh\necho 'Missing privilege separation directory: /run/sshd' >&2\nexit 255\n",
    )
    .unwrap();
    fs::set_permissions(&broken, fs::Permissions::from_mode(0o755)).unwrap();
    let broken = broken.display().to_string();
    let stack = [
        ("common-auth", COMMON_AUTH),
        ("sshd", "@include common-auth\nauth required pam_ivmfa.so\n"),
    ];
    let out = run(&stack, &broken);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stdout.contains("cannot read sshd's effective settings"),
        "{}",
        out.stdout
    );
    let gssapi = f.sshd_printing("usepam yes\nkbdinteractiveauthentication yes\npubkeyauthentication no\ngssapiauthentication yes\n\
         hostbasedauthentication yes\nauthenticationmethods any",
    );
    let out = run(&stack, &gssapi);
    assert!(
        out.stdout.contains("gssapi-with-mic, hostbased"),
        "{}",
        out.stdout
    );

    // Roll-out settings are reported even when nothing is wrong.
    let out = run(
        &[("common-auth", COMMON_AUTH), ("sshd", "@include common-auth\nauth required pam_ivmfa.so unenrolled=allow exempt_group=wheel\n")],
        &good_sshd,
    );
    out.expect(0, "No problems found");
    assert!(out
        .stdout
        .contains("unenrolled=allow: users who have not enrolled log in with the password alone"));
    assert!(out
        .stdout
        .contains("members of group wheel log in without a code"));
}

#[test]
#[ignore = "needs root"]
fn mistyped_names_leave_no_trace() {
    root();
    let f = provisioned();
    f.cli(&["remove", "daemonn"], "")
        .expect(3, "daemonn is not enrolled");
    f.cli(&["reset", "approve", "daemonn"], "")
        .expect(3, "no reset request from daemonn");
    f.cli(&["reset", "deny", "daemonn", "--reason", "x"], "")
        .expect(3, "no reset request");
    assert!(!f.user_dir("daemonn").exists());
    let out = f.cli(&["status"], "");
    assert!(!out.stdout.contains("daemonn"), "{}", out.stdout);
}

#[test]
#[ignore = "needs root"]
fn one_broken_user_does_not_hide_the_others() {
    root();
    let f = provisioned();
    f.cli(&["enroll", "bin", "--secret", TEST_KEY, "--no-confirm"], "")
        .expect(0, "enrolled");
    fs::set_permissions(
        f.user_dir("bin").join("secret.toml"),
        fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let out = f.cli(&["status"], "");
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stdout.contains("bin: cannot be read"), "{out:#?}");
    assert!(out.stdout.contains("daemon: enrolled since"), "{out:#?}");
}

/// Runs `check` on a private PAM directory holding `files` and a sshd that asks for a code.
fn check_stacks(f: &Fixture, files: &[(&str, &str)]) -> CliOutput {
    let sshd = f.sshd_printing(
        "usepam yes\nkbdinteractiveauthentication yes\npubkeyauthentication yes\n\
         authenticationmethods publickey,keyboard-interactive keyboard-interactive",
    );
    let dir = f.pam_dir(files);
    f.cli(&["check", "--pam-dir", &dir, "--sshd", &sshd], "")
}

/// The `problem:` line that mentions `what`, or a failed test showing the whole report.
#[track_caller]
fn problem_line<'a>(out: &'a CliOutput, what: &str) -> &'a str {
    out.stdout
        .lines()
        .find(|l| l.starts_with("problem:") && l.contains(what))
        .unwrap_or_else(|| panic!("no problem with {what:?} in:\n{}", out.stdout))
}

#[test]
#[ignore = "needs root"]
fn check_flags_every_password_step_a_wrong_password_gets_past() {
    root();
    let f = provisioned();
    // Each stack lets a wrong password through to the code prompt. The options vary on
    // purpose: the prompt alone lets strangers file reset requests and run up the failure
    // count, so the stack is wrong whatever unenrolled says.
    for (stack, culprit) in [
        ("auth required pam_unix.so\nauth required pam_ivmfa.so\n", "pam_unix.so (required"),
        ("auth optional pam_unix.so\nauth required pam_ivmfa.so unenrolled=allow\n", "pam_unix.so (optional"),
        ("auth sufficient pam_sss.so\nauth required pam_ivmfa.so\n", "pam_sss.so (sufficient"),
        ("auth [success=ok default=bad] pam_ldap.so\nauth required pam_ivmfa.so\n", "pam_ldap.so ([success=ok default=bad]"),
        ("auth [success=ok default=ignore] pam_winbind.so\nauth required pam_ivmfa.so\n", "pam_winbind.so"),
        ("auth [success=ok user_unknown=bad default=die] pam_unix.so\nauth required pam_ivmfa.so\n", "pam_unix.so ([success=ok user_unknown=bad default=die]"),
        // Debian's pattern, with the deny weakened to required.
        ("auth [success=1 default=ignore] pam_unix.so nullok\nauth required pam_deny.so\nauth required pam_permit.so\nauth required pam_ivmfa.so\n", "pam_unix.so ([success=1 default=ignore]"),
        // pam-auth-update's two password modules, without the deny.
        ("auth [success=2 default=ignore] pam_unix.so nullok\nauth [success=1 default=ignore] pam_systemd_home.so\nauth required pam_permit.so\nauth required pam_ivmfa.so\n", "pam_systemd_home.so"),
        // In a substack, a requisite deny ends only the substack.
        ("auth substack common-auth\nauth required pam_ivmfa.so unenrolled=enroll\n", "substack"),
    ] {
        let out = check_stacks(&f, &[("common-auth", COMMON_AUTH), ("sshd", stack)]);
        assert_eq!(out.code, 1, "{stack}:\n{}", out.stdout);
        let line = problem_line(&out, "a wrong password");
        assert!(line.contains("does not end the stack") && line.contains(culprit), "{stack}:\n{}", out.stdout);
    }

    // A way round the password module is as bad as one through it.
    let out = check_stacks(
        &f,
        &[(
            "sshd",
            "auth [success=1 default=ignore] pam_succeed_if.so uid >= 1000\n\
             auth requisite pam_unix.so\nauth required pam_ivmfa.so\n",
        )],
    );
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(problem_line(&out, "skips the password step").contains("pam_unix.so"));

    // With unenrolled=enroll the report says what else is at stake.
    let out = check_stacks(
        &f,
        &[(
            "su",
            "auth required pam_unix.so\nauth required pam_ivmfa.so unenrolled=enroll\n",
        )],
    );
    assert!(problem_line(&out, "a wrong password").contains("enroll their own phone"));

    // Stacks that end on a wrong password are left alone.
    for stack in [
        "@include common-auth\nauth required pam_ivmfa.so\n",
        "auth required pam_env.so\nauth requisite pam_unix.so\nauth required pam_ivmfa.so\n",
        "auth [success=ok default=die] pam_unix.so\nauth required pam_ivmfa.so unenrolled=enroll\n",
        "auth [success=ok default=die] pam_krb5.so\n\
         auth [success=ok default=ignore] pam_winbind.so\nauth required pam_ivmfa.so\n",
        "auth [success=ok new_authtok_reqd=ok ignore=ignore default=die] pam_sss.so\n\
         auth required pam_ivmfa.so\n",
        "auth [success=2 default=ignore] pam_unix.so nullok\n\
         auth [success=1 default=ignore] pam_sss.so use_first_pass\n\
         auth requisite pam_deny.so\nauth required pam_permit.so\nauth required pam_ivmfa.so\n",
    ] {
        let out = check_stacks(&f, &[("common-auth", COMMON_AUTH), ("sshd", stack)]);
        assert_eq!(out.code, 0, "{stack}:\n{}", out.stdout);
        assert!(
            out.stdout.contains("pam_ivmfa.so after the password step"),
            "{stack}:\n{}",
            out.stdout
        );
    }
}

#[test]
#[ignore = "needs root"]
fn check_flags_the_module_before_the_password_step() {
    root();
    let f = provisioned();
    for files in [
        &[
            ("common-auth", COMMON_AUTH),
            (
                "login",
                "auth required pam_ivmfa.so\n@include common-auth\n",
            ),
        ][..],
        &[(
            "sshd",
            "auth required pam_env.so\nauth requisite pam_ivmfa.so\nauth requisite pam_unix.so\n",
        )],
        // Put there through an include: common-auth itself and every service using it.
        &[
            (
                "common-auth",
                &format!("auth required pam_ivmfa.so unenrolled=allow\n{COMMON_AUTH}"),
            ),
            ("sshd", "@include common-auth\n"),
        ],
    ] {
        let out = check_stacks(&f, files);
        assert_eq!(out.code, 1, "{files:?}:\n{}", out.stdout);
        let line = problem_line(&out, "before the password step");
        assert!(line.contains("pam_unix.so"), "{line}");
        assert!(
            out.stdout
                .contains("put pam_ivmfa.so after the password module"),
            "{}",
            out.stdout
        );
    }
}

#[test]
#[ignore = "needs root"]
fn check_knows_the_module_under_any_name() {
    root();
    let f = provisioned();
    let module = module_path();
    let symlink = f.dir.join("pam_mfa.so");
    std::os::unix::fs::symlink(&module, &symlink).unwrap();
    let copy = f.dir.join("pam_otp.so");
    fs::copy(&module, &copy).unwrap();
    let hard_link = f.dir.join("pam_second.so");
    fs::hard_link(&copy, &hard_link).unwrap();
    // libpam puts a name without a leading '/' after its module directory; enough '..'
    // climb from any of them to the root.
    let relative = format!("{}{}", "../".repeat(8), symlink.display()).replace("//", "/");
    for name in [
        symlink.display().to_string(),
        copy.display().to_string(),
        hard_link.display().to_string(),
        relative,
    ] {
        let out = check_stacks(
            &f,
            &[(
                "sshd",
                &format!("auth required pam_unix.so\nauth required {name} window=0\n"),
            )],
        );
        assert_eq!(out.code, 1, "{name}:\n{}", out.stdout);
        assert!(
            problem_line(&out, "a wrong password").contains("service sshd"),
            "{name}:\n{}",
            out.stdout
        );
        assert!(
            out.stdout.contains("is pam_ivmfa.so under another name"),
            "{name}:\n{}",
            out.stdout
        );
    }

    // Another module under a made-up name is not taken for it.
    let other = f.dir.join("pam_site.so");
    std::os::unix::fs::symlink("/usr/lib/x86_64-linux-gnu/security/pam_permit.so", &other).unwrap();
    let out = check_stacks(
        &f,
        &[(
            "sshd",
            &format!(
                "auth required pam_unix.so\nauth required {}\n",
                other.display()
            ),
        )],
    );
    out.expect(0, "no PAM stack");
}

#[test]
#[ignore = "needs root"]
fn check_wants_a_key_first_when_sshd_asks_only_for_the_code() {
    root();
    let f = provisioned();
    let run = |methods: &str| {
        let sshd = f.sshd_printing(&format!(
            "usepam yes\nkbdinteractiveauthentication yes\npubkeyauthentication yes\n\
                 authenticationmethods {methods}"
        ));
        let dir = f.pam_dir(&[("sshd", "auth required pam_ivmfa.so\n")]);
        f.cli(&["check", "--pam-dir", &dir, "--sshd", &sshd], "")
    };
    // The stack of packaging/examples/pam.d-sshd-key-and-code, with a method list that
    // lets a login start at the code prompt.
    for methods in ["publickey,keyboard-interactive keyboard-interactive", "any"] {
        let out = run(methods);
        assert_eq!(out.code, 1, "{methods}:\n{}", out.stdout);
        assert!(
            problem_line(&out, "asks for no password before the code")
                .contains("start with keyboard-interactive"),
            "{methods}:\n{}",
            out.stdout
        );
    }
    let out = run("publickey,keyboard-interactive");
    out.expect(0, "No problems found");
    assert!(out.stdout.contains("right only for key + code logins"));
}

#[test]
#[ignore = "needs root"]
fn the_audit_line_names_the_uid_the_login_uid_and_sudo_user() {
    root();
    let f = Fixture::new("");
    let enroll = enroll_bin().display().to_string();
    // The login uid is the kernel's record of who logged in, inherited by every child and
    // kept across su and sudo; SUDO_USER is whatever the caller's environment says.
    let inherited = match fs::read_to_string("/proc/self/loginuid").unwrap().trim() {
        "4294967295" => "unset".to_owned(),
        n => n.to_owned(),
    };
    let mut args = vec!["SUDO_USER=alice".to_owned(), enroll.clone()];
    args.extend(f.cli_args(&["enroll", "daemon", "--secret", TEST_KEY, "--no-confirm"]));
    let (out, lines) = f.logged(std::path::Path::new("/usr/bin/env"), &args);
    assert!(out.status.success(), "{out:?}");
    let line = logged_line(&lines, &["enrolled user=daemon"]);
    let by = format!("by root (uid 0, loginuid {inherited}, env SUDO_USER=alice)");
    assert!(line.contains(&by), "{by:?} not in {line}");

    // As pam_loginuid sets it at a login. Setting it needs CAP_AUDIT_CONTROL, which some
    // containers withhold.
    let settable = Command::new("sh")
        .args(["-c", "echo 1000 > /proc/self/loginuid"])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success();
    if !settable {
        assert!(!is_ci(), "CI must be able to set a login uid");
        eprintln!("skipped: cannot set /proc/self/loginuid here");
        return;
    }
    let mut args = vec![
        "-c".to_owned(),
        "echo 1000 > /proc/self/loginuid && exec env -u SUDO_USER \"$0\" \"$@\"".to_owned(),
        enroll,
    ];
    args.extend(f.cli_args(&["remove", "daemon"]));
    let (out, lines) = f.logged(std::path::Path::new("/bin/sh"), &args);
    assert!(out.status.success(), "{out:?}");
    let line = logged_line(&lines, &["removed the enrollment of user=daemon"]);
    assert!(line.contains("by root (uid 0, loginuid 1000)"), "{line}");
}

#[test]
fn enroll_help_says_where_a_secret_argument_shows() {
    let out = Command::new(enroll_bin())
        .args(["enroll", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let secret = text
        .split("--secret <BASE32>")
        .nth(1)
        .and_then(|rest| rest.split("--secret-file <FILE>").next())
        .unwrap_or_else(|| panic!("no --secret in:\n{text}"));
    for warning in [
        "ps",
        "/proc",
        "sudo logs the whole command line",
        "--secret-file -",
    ] {
        assert!(secret.contains(warning), "{warning:?} not in {secret}");
    }
}

#[test]
#[ignore = "needs root"]
fn provisioning_the_same_secret_again_keeps_used_codes_used() {
    root();
    let f = provisioned();
    let e = f.enrollment("daemon").unwrap();
    settle();
    let used = code(&e, 0);
    f.login("daemon", &[&used]).assert("PAM_SUCCESS");
    // A code five steps ahead, reported as a phone clock off: refused in advance.
    f.login("daemon", &[&code(&e, 5)])
        .assert_said("check the clock on your phone");
    let refused = f.state("daemon").state.refused;
    assert_eq!(refused.len(), 1);
    f.cli(
        &[
            "enroll",
            "daemon",
            "--force",
            "--secret-file",
            "-",
            "--no-confirm",
        ],
        &format!("{TEST_KEY}\n"),
    )
    .expect(0, "enrolled");
    f.login("daemon", &[&used])
        .assert("PAM_AUTH_ERR")
        .assert_said("already been used");
    assert_eq!(
        f.state("daemon").state.refused,
        refused,
        "still refused in advance"
    );
}

#[test]
#[ignore = "needs root"]
fn status_tells_a_typo_and_a_name_given_to_someone_else() {
    root();
    let f = provisioned();
    assert_eq!(f.enrollment("daemon").unwrap().uid, Some(1), "recorded");
    f.cli(&["status", "daemon"], "").expect(0, "uid: 1");
    f.cli(&["status", "no-such-user-here"], "")
        .expect(1, "there is no user no-such-user-here");
    let mut e = f.enrollment("daemon").unwrap();
    e.uid = Some(12345);
    let store = f.store();
    let lock = store.lock(&user_name("daemon")).unwrap();
    store.save_enrollment(&lock, &e).unwrap();
    drop(lock);
    f.cli(&["status", "daemon"], "").expect(
        0,
        "problem: enrolled for uid 12345, but daemon is now uid 1",
    );
}

/// The exact two lines of a failure: what happened, from the layer that saw it, and what to do,
/// from whichever knows best (here the core, which knows which file it is).
#[test]
#[ignore = "needs root"]
fn errors_say_what_happened_then_what_to_do_once() {
    root();
    let f = provisioned();
    let state = f.user_dir("daemon").join("state");
    fs::write(&state, b"not a state file").unwrap();
    let out = f.cli(&["status", "daemon"], "");
    assert_eq!(out.code, 1, "{out:#?}");
    assert_eq!(
        out.stderr,
        format!(
            "error: {} cannot be used: it is 16 bytes long, not the 24576 of two slots\n\
             hint: remove it to start afresh (this forgets the failure counts and lets the \
             last code used be used once more)\n",
            state.display()
        )
    );
    let out = f.cli(&["status", "no-such-user-here"], "");
    assert_eq!(
        out.stderr,
        "error: there is no user no-such-user-here in the user database\n\
         hint: check the spelling (getent passwd NAME); for a deleted account, ivmfa-enroll \
         remove NAME clears what is left in the store\n"
    );
}
