//! Console logins: `login`, `su` and `sudo` on a pseudo-terminal, with a test PAM stack in a
//! private mount namespace (the machine's /etc/pam.d and /etc/sudoers are never touched).

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ivmfa_tests::sshd::{module_line, private_system, PASSWORD, UID, USER};
use ivmfa_tests::terminal::{plain, Terminal};
use ivmfa_tests::*;

fn available() {
    require_root("login, su and sudo in a private mount namespace");
}

fn sudo_available() {
    available();
    assert!(
        Path::new("/usr/bin/sudo").exists(),
        "the sudo tests need sudo (the Debian package sudo)"
    );
}

/// Runs `command` in the private system on an 80-column terminal.
fn console(f: &Fixture, service: &str, args: &str, command: &str) -> Terminal {
    let stack = format!("auth requisite pam_unix.so\n{}", module_line(f, args));
    let setup = private_system(f, &format!("console-{service}"), &[(service, &stack)]);
    Terminal::in_namespace(&setup, command)
}

#[test]
#[ignore = "needs root"]
fn login_asks_for_the_password_then_the_code() {
    available();
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
#[ignore = "needs root"]
fn su_asks_for_the_password_then_the_code() {
    available();
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
#[ignore = "needs root"]
fn first_login_at_the_console_shows_a_qr_code_that_scans() {
    available();
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

// sudo: the test user runs sudo as themselves on a terminal. The private system gets sudo's
// PAM stack and a sudoers of its own; the timestamp records go to the private /run, so every
// run starts with none and the machine's own are never read.

/// The start of sudo's password prompt, shown in place of pam_unix's.
const SUDO_PASSWORD: &str = "[sudo] password for ";
const CODE_PROMPT: &str = "Verification code: ";
/// sudo's answer to a failed authentication when it will ask again.
const SORRY: &str = "Sorry, try again.";

/// The shell commands that put a private system with sudo in place: the `sudo` PAM service
/// asks for the password then the code, and sudoers lets the test user run anything after
/// authenticating, with `defaults` (sudoers `Defaults` lines) added.
fn sudo_system(f: &Fixture, name: &str, defaults: &str) -> String {
    let stack = format!("auth requisite pam_unix.so\n{}", module_line(f, ""));
    let setup = private_system(f, name, &[("sudo", &stack)]);
    let sudoers = f.dir.join(name).join("sudoers");
    // No syslog: sudo would log each command to the machine's journal. timestamp_timeout is
    // sudo's default, spelled out because the cache test relies on it.
    fs::write(
        &sudoers,
        format!(
            "Defaults timestampdir=/run/sudo-ts, timestamp_timeout=15, !lecture, !syslog\n\
             {defaults}\n{USER} ALL=(ALL) ALL\n"
        ),
    )
    .unwrap();
    // sudo refuses a sudoers that others may write, or that root does not own.
    fs::set_permissions(&sudoers, fs::Permissions::from_mode(0o440)).unwrap();
    format!("{setup}\nmount --bind {} /etc/sudoers", sudoers.display())
}

/// The test user's shell `script`, written to a file the user can read, and the command that
/// runs it as the user (not a login: sudo is run from the session the terminal is in).
fn as_user(f: &Fixture, name: &str, script: &str) -> String {
    let path = f.dir.join(name).join("script");
    // sudo's messages are matched in English.
    fs::write(&path, format!("export LC_ALL=C\n{script}\n")).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    format!(
        "setpriv --reuid={UID} --regid={UID} --init-groups sh {}",
        path.display()
    )
}

/// Runs `script` as the test user on a terminal in a private system with sudo (see
/// [`sudo_system`]).
fn sudo_session(f: &Fixture, name: &str, defaults: &str, script: &str) -> Terminal {
    let setup = sudo_system(f, name, defaults);
    let command = as_user(f, name, script);
    Terminal::in_namespace(&setup, &command)
}

/// Answers sudo's password prompt, then the code prompt with `answer`.
fn password_then(t: &mut Terminal, answer: &str) {
    t.expect_next(SUDO_PASSWORD);
    t.type_line(PASSWORD);
    t.expect_next(CODE_PROMPT);
    t.type_line(answer);
}

const SUDO_42: &str = "sudo -- sh -c 'echo sudo-$((40+2))'";

#[test]
#[ignore = "needs root"]
fn sudo_asks_for_the_password_then_the_code() {
    sudo_available();
    let f = Fixture::new("");
    let e = f.enroll(USER);
    settle();
    let mut t = sudo_session(&f, "sudo-right", "", SUDO_42);
    password_then(&mut t, &code(&e, 0));
    let (status, screen) = t.finish();
    assert_eq!(status, 0, "{screen}");
    assert!(plain(&screen).contains("sudo-42"), "{screen}");
}

#[test]
#[ignore = "needs root"]
fn sudo_asks_for_both_again_after_a_wrong_code() {
    sudo_available();
    let f = Fixture::new("");
    let e = f.enroll(USER);
    settle();
    let mut t = sudo_session(&f, "sudo-wrong", "", SUDO_42);
    password_then(&mut t, &wrong_code(&e));
    t.expect_next(SORRY);
    password_then(&mut t, &code(&e, 0));
    let (status, screen) = t.finish();
    assert_eq!(status, 0, "{screen}");
    let screen = plain(&screen);
    assert_eq!(screen.matches("sudo-42").count(), 1, "{screen}");
    // sudo asks for silence (PAM_SILENT): the module's own word is not shown.
    assert!(!screen.contains("not correct"), "{screen}");
}

/// sudo 1.9.13 (Debian 12) passes PAM_SILENT to every authentication and has no way to turn
/// it off: it warns that `Defaults !pam_silent` is unknown and the module's messages stay
/// hidden. sudo 1.9.16 added the option; with it turned off the messages show.
#[test]
#[ignore = "needs root"]
fn sudo_shows_the_modules_messages_only_where_pam_silent_can_be_turned_off() {
    sudo_available();
    let f = Fixture::new("");
    let e = f.enroll(USER);
    settle();
    let mut t = sudo_session(&f, "sudo-loud", "Defaults !pam_silent", SUDO_42);
    password_then(&mut t, &wrong_code(&e));
    t.expect_next(SORRY);
    t.expect_next(SUDO_PASSWORD);
    let (status, screen) = t.finish();
    assert_ne!(status, 0, "{screen}");
    let screen = plain(&screen);
    assert!(!screen.contains("sudo-42"), "{screen}");
    let shown = screen.contains("That code is not correct");
    if screen.contains("unknown defaults entry \"pam_silent\"") {
        assert!(!shown, "{screen}");
    } else {
        assert!(shown, "{screen}");
    }
}

#[test]
#[ignore = "needs root"]
fn a_replayed_code_under_sudo_gets_only_sudos_own_answer() {
    sudo_available();
    let f = Fixture::new("");
    let e = f.enroll(USER);
    settle();
    let script = format!("{SUDO_42}\nsudo -k\n{SUDO_42}");
    let mut t = sudo_session(&f, "sudo-replay", "", &script);
    t.expect_next(SUDO_PASSWORD);
    t.type_line(PASSWORD);
    t.expect_next(CODE_PROMPT);
    let c = code(&e, 0);
    t.type_line(&c);
    t.expect_next("sudo-42");
    password_then(&mut t, &c);
    // Under PAM_SILENT the user cannot tell a replay from a wrong code.
    t.expect_next(SORRY);
    t.expect_next(SUDO_PASSWORD);
    let (status, screen) = t.finish();
    assert_ne!(status, 0, "{screen}");
    let screen = plain(&screen);
    assert_eq!(screen.matches("sudo-42").count(), 1, "{screen}");
    assert!(!screen.contains("already been used"), "{screen}");
    // It was the module that said no: the replay is counted as a failure.
    assert_ne!(f.state(USER).state.total.count, 0);
}

#[test]
#[ignore = "needs root"]
fn sudos_timestamp_skips_password_and_code_until_sudo_k() {
    sudo_available();
    let f = Fixture::new("");
    let e = f.enroll(USER);
    settle();
    let script = "sudo -- sh -c 'echo first-$((40+2))'\n\
                  echo cached; read _\n\
                  sudo -- sh -c 'echo second-$((40+2))'\n\
                  echo forgetting; sudo -k\n\
                  sudo -- sh -c 'echo third-$((40+2))'";
    let mut t = sudo_session(&f, "sudo-cache", "", script);
    password_then(&mut t, &code(&e, 0));
    t.expect_next("first-42");
    let cached = t.expect_next("cached");
    let state = f.user_dir(USER).join("state");
    let before = (
        fs::read(&state).unwrap(),
        fs::metadata(&state).unwrap().modified().unwrap(),
    );
    t.type_line("");
    t.expect_next("second-42");
    let forgetting = t.expect_next("forgetting");
    let between = plain(&t.screen[cached..forgetting]);
    assert!(
        !between.contains("password") && !between.contains(CODE_PROMPT),
        "{between}"
    );
    // The module did not run at all: it writes the user's state at every attempt.
    let after = (
        fs::read(&state).unwrap(),
        fs::metadata(&state).unwrap().modified().unwrap(),
    );
    assert!(
        before == after,
        "the state file changed under the timestamp"
    );

    t.expect_next(SUDO_PASSWORD);
    t.type_line(PASSWORD);
    t.expect_next(CODE_PROMPT);
    // The first code's step is used up; the app's next one is still in the window.
    t.type_line(&code(&e, 1));
    let (status, screen) = t.finish();
    assert_eq!(status, 0, "{screen}");
    assert!(plain(&screen).contains("third-42"), "{screen}");
}

/// Runs `sudo args` as the test user with no terminal at all (a new session, so no
/// controlling one), `input` on its standard input; returns its status, its standard error
/// and how long it took. Fails if it is still running after 10 s.
fn sudo_without_terminal(
    f: &Fixture,
    name: &str,
    args: &str,
    input: &str,
) -> (i32, String, Duration) {
    let setup = sudo_system(f, name, "");
    let command = as_user(f, name, &format!("exec sudo {args}"));
    let started = Instant::now();
    let mut child = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-ec"])
        .arg(format!("{setup}\nexec setsid -w {command}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // sudo may be gone before it reads anything.
    let _ = stdin.write_all(input.as_bytes());
    drop(stdin);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("sudo {args} with no terminal was still running after 10 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let elapsed = started.elapsed();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (status.code().unwrap_or(-1), stderr, elapsed)
}

#[test]
#[ignore = "needs root"]
fn sudo_without_a_terminal_is_refused_without_waiting() {
    sudo_available();
    let f = Fixture::new("");
    let e = f.enroll(USER);
    settle();
    let state = f.user_dir(USER).join("state");
    let before = fs::read(&state).unwrap();
    // -n: sudo does not start PAM at all.
    let (status, stderr, took) = sudo_without_terminal(&f, "sudo-n", "-n true", "");
    assert_ne!(status, 0, "{stderr}");
    assert!(stderr.contains("a password is required"), "{stderr}");
    assert!(took < Duration::from_secs(5), "{took:?}: {stderr}");
    // No -n: sudo has no terminal to ask for the password on, so pam_unix (requisite) fails
    // and the stack ends before the module.
    let (status, stderr, took) = sudo_without_terminal(&f, "sudo-tty", "true", "");
    assert_ne!(status, 0, "{stderr}");
    assert!(stderr.contains("a terminal is required"), "{stderr}");
    assert!(took < Duration::from_secs(5), "{took:?}: {stderr}");
    assert!(
        fs::read(&state).unwrap() == before,
        "the module ran for a sudo that could not ask"
    );
    // -S, the password alone on standard input: the module asks, reads the end of the input
    // and denies, at once.
    let (status, stderr, took) =
        sudo_without_terminal(&f, "sudo-stdin", "-S true", &format!("{PASSWORD}\n"));
    assert_ne!(status, 0, "{stderr}");
    assert!(stderr.contains(CODE_PROMPT), "{stderr}");
    assert!(took < Duration::from_secs(8), "{took:?}: {stderr}");
    // The same with the code on the next line runs the command: the module was what said no.
    let (status, stderr, _) = sudo_without_terminal(
        &f,
        "sudo-stdin-code",
        "-S true",
        &format!("{PASSWORD}\n{}\n", code(&e, 0)),
    );
    assert_eq!(status, 0, "{stderr}");
}
