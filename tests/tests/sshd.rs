//! End to end: a real sshd on 127.0.0.1 with the module in its PAM stack, and the real
//! OpenSSH client answering keyboard-interactive prompts.

use ivmfa_tests::sshd::{module_line, require_sshd, Sshd, PASSWORD, USER};
use ivmfa_tests::*;

/// The sshd tier is #[ignore]d unless asked for; asked for, what it needs must be here.
/// Password (pam_unix, requisite), then the code.
fn password_then_code(f: &Fixture, args: &str) -> String {
    format!("auth requisite pam_unix.so\n{}", module_line(f, args))
}

/// sshd asking for the password, then the code, through keyboard-interactive only.
fn password_sshd(f: &Fixture, args: &str) -> Sshd {
    Sshd::start(
        f,
        "sshd",
        &password_then_code(f, args),
        "AuthenticationMethods keyboard-interactive",
    )
}

#[test]
#[ignore = "needs root"]
fn password_and_code_log_in_and_wrong_ones_do_not() {
    require_sshd();
    let f = Fixture::new("");
    let e = f.enroll(USER);
    let sshd = password_sshd(&f, "");
    settle();
    let c = code(&e, 0);
    let good = sshd.login(PASSWORD, &c, None);
    assert!(good.ok, "{good:#?}\n{}", sshd.log());
    assert!(good.prompts.contains("Password"), "{good:#?}");
    assert!(good.prompts.contains("Verification code: "), "{good:#?}");

    // The same code again: replay.
    let replay = sshd.login(PASSWORD, &c, None);
    assert!(!replay.ok, "{replay:#?}");
    assert!(replay.stderr.contains("already been used"), "{replay:#?}");

    let wrong = sshd.login(PASSWORD, &wrong_code(&e), None);
    assert!(!wrong.ok);
    assert!(
        wrong.stderr.contains("That code is not correct"),
        "{wrong:#?}"
    );

    // A wrong password never reaches the code prompt.
    let bad_password = sshd.login("not the password", &code(&e, 1), None);
    assert!(!bad_password.ok);
    assert!(
        !bad_password.prompts.contains("Verification code"),
        "{bad_password:#?}"
    );
}

#[test]
#[ignore = "needs root"]
fn two_clients_racing_with_one_code_one_gets_in() {
    require_sshd();
    let f = Fixture::new("");
    let e = f.enroll(USER);
    // nodelay: every trial has a loser, and pam_unix's 2 s delay after a failed stack would
    // be most of the test's time while showing nothing about the race.
    let sshd = Sshd::start(
        &f,
        "sshd",
        &format!(
            "auth requisite pam_unix.so nodelay\n{}",
            module_line(&f, "")
        ),
        "AuthenticationMethods keyboard-interactive",
    );
    let state = f.user_dir(USER).join("state");
    for trial in 0..20 {
        let _ = std::fs::remove_file(&state);
        let c = code(&e, 0);
        let logins: Vec<_> = std::thread::scope(|s| {
            let a = s.spawn(|| sshd.login(PASSWORD, &c, None));
            let b = s.spawn(|| sshd.login(PASSWORD, &c, None));
            vec![a.join().unwrap(), b.join().unwrap()]
        });
        let wins = logins.iter().filter(|l| l.ok).count();
        assert_eq!(wins, 1, "trial {trial}: {logins:#?}");
    }
}

#[test]
#[ignore = "needs root"]
fn key_and_code_with_a_code_only_stack() {
    require_sshd();
    let f = Fixture::new("");
    let e = f.enroll(USER);
    let sshd = Sshd::start(
        &f,
        "sshd-key",
        &module_line(&f, ""),
        "PubkeyAuthentication yes\nAuthenticationMethods publickey,keyboard-interactive",
    );
    let key = sshd.user_key(&f);
    settle();
    let good = sshd.login(PASSWORD, &code(&e, 0), Some(&key));
    assert!(good.ok, "{good:#?}\n{}", sshd.log());
    assert!(
        !good.prompts.contains("Password"),
        "no password with a key: {good:#?}"
    );
    // The key alone is not enough.
    let wrong = sshd.login(PASSWORD, &wrong_code(&e), Some(&key));
    assert!(!wrong.ok);
    // And the code without the key gets nowhere (sshd's AuthenticationMethods at work).
    let no_key = sshd.login(PASSWORD, &code(&e, 1), None);
    assert!(!no_key.ok);
}

/// sshd with `unenrolled=enroll`, and the test user's first login, scanning the QR code.
fn first_login(f: &Fixture) -> (Sshd, ivmfa_tests::sshd::SshLogin) {
    let sshd = password_sshd(f, "unenrolled=enroll");
    settle();
    let first = sshd.login(PASSWORD, "@phone", None);
    (sshd, first)
}

#[test]
#[ignore = "needs root"]
fn first_login_enrollment_over_ssh_with_a_qr_that_scans() {
    require_sshd();
    let f = Fixture::new("");
    let (sshd, first) = first_login(&f);
    assert!(first.ok, "{first:#?}\n{}", sshd.log());
    // The QR code reached the user's screen as plain half blocks and scanned.
    assert!(first.prompts.contains('▀'), "{first:#?}");
    assert!(
        !first.prompts.contains("\\033"),
        "no escaped escape sequences"
    );
    let shown_text = format!("{}{}", first.prompts, first.stderr);
    assert!(shown_text.contains("Recovery codes"), "{first:#?}");
    let e = f.enrollment(USER).expect("enrolled over ssh");
    let shown = decode_half_blocks(&first.prompts, false).expect("the QR code on screen decodes");
    assert!(
        shown.contains(&format!(":{USER}?secret={}", e.secret.to_base32().as_str())),
        "{shown}"
    );
    // From now on the code is asked for.
    let next = sshd.login(PASSWORD, &code(&e, 1), None);
    assert!(next.ok, "{next:#?}");
}

#[test]
#[ignore = "needs root"]
fn reset_request_and_recovery_code_over_ssh() {
    require_sshd();
    let f = Fixture::new("");
    let (sshd, first) = first_login(&f);
    assert!(first.ok, "{first:#?}");
    let shown = format!("{}{}", first.prompts, first.stderr);
    let recovery = recovery_codes_in(&shown);
    assert_eq!(recovery.len(), 10, "{first:#?}");

    let with_recovery = sshd.login(PASSWORD, &recovery[0], None);
    assert!(with_recovery.ok, "{with_recovery:#?}");
    let said = format!("{}{}", with_recovery.prompts, with_recovery.stderr);
    assert!(said.contains("9 recovery codes left"), "{with_recovery:#?}");

    let reset = sshd.login(PASSWORD, "reset", None);
    assert!(!reset.ok);
    let said = format!("{}{}", reset.prompts, reset.stderr);
    assert!(said.contains("sent to the administrators"), "{reset:#?}");
    let request =
        std::fs::read_to_string(f.store.join("requests").join(format!("{USER}.toml"))).unwrap();
    assert!(request.contains("service = \"sshd\""), "{request}");
    assert!(request.contains("rhost = \"127.0.0.1\""), "{request}");
}

/// The fleet backend inside sshd: the module's tokio runtime and TLS run in sshd's
/// per-connection process, set-up and codes judged by the database.
#[test]
#[ignore = "needs root"]
fn a_fleet_login_over_ssh() {
    require_sshd();
    let fleet = ivmfa_tests::fleet::Fleet::start();
    fleet.configure("inband_enroll", "true");
    let f = fleet.fixture("host_ssh", "", "");
    let sshd = password_sshd(&f, "unenrolled=enroll");
    settle();
    let first = sshd.login(PASSWORD, "@phone", None);
    assert!(first.ok, "{first:#?}\n{}", sshd.log());
    let shown = format!("{}{}", first.prompts, first.stderr);
    assert!(shown.contains("Recovery codes"), "{first:#?}");
    let uri = decode_half_blocks(&first.prompts, false).expect("the QR code on screen decodes");
    let secret = uri
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("secret="))
        .unwrap();
    let e = ivmfa_core::enrollment::Enrollment::standard(
        ivmfa_core::enrollment::Secret::from_base32(secret).unwrap(),
        0,
    );
    let c = code(&e, 1);
    let next = sshd.login(PASSWORD, &c, None);
    assert!(next.ok, "{next:#?}\n{}", sshd.log());
    let replay = sshd.login(PASSWORD, &c, None);
    assert!(!replay.ok);
    assert!(replay.stderr.contains("already been used"), "{replay:#?}");
    // The database stopped: not available, and sshd lives on.
    fleet.pg.stop();
    let down = sshd.login(PASSWORD, &code(&e, 1), None);
    assert!(!down.ok);
    assert!(down.stderr.contains("not available right now"), "{down:#?}");
}
