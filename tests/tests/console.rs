//! Console logins: `login` and `su` on a pseudo-terminal, with a test PAM stack in a private
//! mount namespace (the machine's /etc/pam.d is never touched).

use std::path::Path;

use ivmfa_tests::sshd::{module_line, private_system, PASSWORD, USER};
use ivmfa_tests::terminal::{plain, Terminal};
use ivmfa_tests::*;

fn available() -> bool {
    require_root("login and su in a private mount namespace")
}

/// Runs `command` in the private system on an 80-column terminal.
fn console(f: &Fixture, service: &str, args: &str, command: &str) -> Terminal {
    let stack = format!("auth requisite pam_unix.so\n{}", module_line(f, args));
    let setup = private_system(f, &format!("console-{service}"), &[(service, &stack)]);
    Terminal::spawn(
        80,
        Path::new("/usr/bin/unshare"),
        &[
            "-m".into(),
            "--propagation".into(),
            "private".into(),
            "sh".into(),
            "-ec".into(),
            format!("{setup}\nexec {command}"),
        ],
    )
}

#[test]
fn login_asks_for_the_password_then_the_code() {
    if !available() {
        return;
    }
    let f = Fixture::new("");
    let e = f.enroll(USER);
    settle();
    let mut t = console(&f, "login", "", &format!("/usr/bin/login {USER}"));
    t.expect("Password: ");
    t.type_line(PASSWORD);
    t.expect("Verification code: ");
    t.type_line(&code(&e, 0));
    t.expect("$ ");
    t.type_line("echo logged-$((40+2)); exit");
    let (_, screen) = t.finish();
    assert!(plain(&screen).contains("logged-42"), "{screen}");

    // A wrong code: no shell.
    let mut t = console(&f, "login", "", &format!("/usr/bin/login {USER}"));
    t.expect("Password: ");
    t.type_line(PASSWORD);
    t.expect("Verification code: ");
    t.type_line(&wrong_code(&e));
    t.expect("That code is not correct");
    // login says so and asks again from the start; no shell was started.
    t.expect("Login incorrect");
    t.expect("login: ");
    assert!(!plain(&t.screen).contains("$ "), "{}", t.screen);
}

#[test]
fn su_asks_for_the_password_then_the_code() {
    if !available() {
        return;
    }
    let f = Fixture::new("");
    let e = f.enroll(USER);
    settle();
    let su = |answer: &str| {
        let command = format!("/usr/bin/su {USER} -c 'echo su-$((40+2))'");
        let mut t = console(&f, "su", "", &command);
        t.expect("Password: ");
        t.type_line(PASSWORD);
        t.expect("Verification code: ");
        t.type_line(answer);
        t.finish()
    };
    let c = code(&e, 0);
    let (status, screen) = su(&c);
    assert_eq!(status, 0, "{screen}");
    assert!(plain(&screen).contains("su-42"), "{screen}");
    let (status, screen) = su(&c);
    assert_ne!(status, 0, "a replayed code: {screen}");
    assert!(plain(&screen).contains("already been used"), "{screen}");
}

#[test]
fn first_login_at_the_console_shows_a_qr_code_that_scans() {
    if !available() {
        return;
    }
    let f = Fixture::new("");
    settle();
    let mut t = console(
        &f,
        "login",
        "unenrolled=enroll",
        &format!("/usr/bin/login {USER}"),
    );
    t.expect("Password: ");
    t.type_line(PASSWORD);
    t.expect("Code shown in the app: ");
    let uri = decode_half_blocks(&t.screen, false).expect("the QR code on the console decodes");
    let secret = uri
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("secret="))
        .unwrap();
    let e = ivmfa_core::enrollment::Enrollment::standard(
        ivmfa_core::enrollment::Secret::from_base32(secret).unwrap(),
        0,
    );
    t.type_line(&code(&e, 0));
    t.expect("Recovery codes");
    t.expect("$ ");
    t.type_line("echo logged-$((40+2)); exit");
    let (_, screen) = t.finish();
    assert!(plain(&screen).contains("logged-42"), "{screen}");
    assert_eq!(f.enrollment(USER).unwrap().secret, e.secret);
}
