//! The three flows of the user guide inside a real libpam login: set-up at first login,
//! the lost device (request, approve or deny), and recovery codes at the prompt.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use ivmfa_core::reset::{Ticket, FORMAT_VERSION};
use ivmfa_core::username::UserName;
use ivmfa_tests::*;

fn codes_shown(out: &Outcome) -> Vec<String> {
    recovery_codes_in(&out.transcript.join("\n"))
}

#[test]
fn first_login_enrolls_with_the_qr_code_and_goes_on() {
    let f = Fixture::new("unenrolled=enroll");
    let out = f.login("daemon", &["@phone"]);
    out.assert("PAM_SUCCESS")
        .assert_said("Microsoft Authenticator")
        .assert_said("Enter this key in the app instead")
        .assert_said("prompt-hidden: Code shown in the app: ")
        .assert_said("Multi-factor authentication is set up");
    // The QR code went through the conversation as plain text: no escape sequences, and
    // every line fits an 80-column terminal.
    assert!(out.transcript.iter().all(|l| !l.contains('\x1b')));
    assert!(out.transcript.iter().filter(|l| l.contains('█')).all(|l| l
        .trim_start_matches("info: ")
        .chars()
        .count()
        <= 80));
    // What the phone scanned is what was saved, and the key shown beside it matches.
    let e = f.enrollment("daemon").expect("saved");
    let key = ivmfa_core::otpauth::grouped_key(&e);
    assert!(out.said(key.as_str()), "{out:?}");
    let codes = codes_shown(&out);
    assert_eq!(codes.len(), 10, "{out:?}");
    assert_eq!(e.recovery.remaining(), 10);
    // The code used to enroll cannot log in again; the next one is needed.
    let used = f.state("daemon").state.last_step;
    let used_code = ivmfa_core::totp::code_at(&e, used * e.period).unwrap();
    f.login("daemon", &[&used_code])
        .assert("PAM_AUTH_ERR")
        .assert_said("already been used");
    f.login("daemon", &[&code(&e, 1)]).assert("PAM_SUCCESS");
}

#[test]
fn the_qr_text_in_the_conversation_decodes_to_the_uri() {
    let f = Fixture::with_config("unenrolled=enroll", "issuer = \"Example Corp\"\n");
    let out = f.login("daemon", &["@phone"]);
    out.assert("PAM_SUCCESS");
    let shown: String = out
        .transcript
        .iter()
        .map(|l| l.trim_start_matches("info: "))
        .collect::<Vec<_>>()
        .join("\n");
    let uri = decode_half_blocks(&shown, false).expect("the dark-background QR decodes");
    let e = f.enrollment("daemon").unwrap();
    let expected = ivmfa_core::otpauth::uri(&e, "Example Corp", "daemon").unwrap();
    assert_eq!(uri, expected.as_str());
}

#[test]
fn invert_redraws_the_code_for_a_light_background() {
    let f = Fixture::new("unenrolled=enroll");
    let out = f.login("daemon", &["invert", "@phone"]);
    out.assert("PAM_SUCCESS");
    let e = f.enrollment("daemon").unwrap();
    let issuer = ivmfa_core::otpauth::issuer(None);
    let uri = ivmfa_core::otpauth::uri(&e, &issuer, "daemon").unwrap();
    // After the first prompt the code is drawn again, now with the dark modules as ink.
    let after: Vec<&str> = out
        .transcript
        .iter()
        .skip_while(|l| !l.starts_with("prompt-hidden"))
        .map(|l| l.trim_start_matches("info: "))
        .collect();
    let redrawn = after.join("\n");
    assert_eq!(
        decode_half_blocks(&redrawn, true).as_deref(),
        Some(uri.as_str())
    );
    assert_eq!(decode_half_blocks(&redrawn, false), None);
}

#[test]
fn a_wrong_code_at_set_up_leaves_tries() {
    // The tries, the hints and what is saved: ivmfa-core/tests/unenrolled.rs.
    let f = Fixture::new("unenrolled=enroll");
    f.login("daemon", &["@phone-wrong", "@phone"])
        .assert("PAM_SUCCESS")
        .assert_said("2 tries left");
}

#[test]
fn a_client_that_cannot_show_text_is_told_and_denied() {
    let f = Fixture::new("unenrolled=enroll");
    let mut args = f.auth_args("daemon", &["@phone"]);
    args.push("--refuse-info".into());
    let out = f.run(args);
    out.assert("PAM_AUTH_ERR")
        .assert_said("cannot show the QR code");
    assert!(f.enrollment("daemon").is_none());
    let mut silent = f.auth_args("daemon", &["@phone"]);
    silent.push("--silent".into());
    f.run(silent).assert("PAM_AUTH_ERR");
    assert!(f.enrollment("daemon").is_none());
}

fn request_file(f: &Fixture, user: &str) -> std::path::PathBuf {
    f.store.join("requests").join(format!("{user}.toml"))
}

#[test]
fn reset_keyword_files_a_request_from_the_logins_items() {
    // Asked again, other keywords, switched off, approvals and denials: ivmfa-core/tests/reset.rs.
    let f = Fixture::new("");
    f.enroll("daemon");
    let mut args = f.auth_args("daemon", &["reset"]);
    args.extend([
        "--rhost".into(),
        "192.0.2.7".into(),
        "--tty".into(),
        "ssh".into(),
    ]);
    let out = f.run(args);
    out.assert("PAM_AUTH_ERR")
        .assert_said("info: Your request to reset multi-factor authentication has been sent to the administrators. They will decide whether it can safely be reset; expect an answer within 24 hours on work days.");
    let first = fs::read_to_string(request_file(&f, "daemon")).unwrap();
    for key in [
        "user = \"daemon\"",
        "service = \"ivmfa-test\"",
        "rhost = \"192.0.2.7\"",
        "tty = \"ssh\"",
    ] {
        assert!(first.contains(key), "{key} in {first}");
    }
}

#[test]
#[ignore = "needs root"]
fn approve_then_enroll_then_the_new_code() {
    require_root("ivmfa-enroll runs as root only");
    // unenrolled=deny: only the approval's ticket lets the user set up again.
    let f = Fixture::new("");
    let old = f.enroll("daemon");
    f.cli(&["reset", "approve", "daemon"], "")
        .expect(3, "no reset request from daemon");
    f.login("daemon", &["reset"]).assert("PAM_AUTH_ERR");
    f.cli(&["reset", "list"], "").expect(0, "daemon");
    f.cli(&["reset", "approve", "daemon"], "")
        .expect(0, "Approved");
    f.cli(&["reset", "list"], "")
        .expect(0, "No reset requests are pending");
    f.cli(&["status", "daemon"], "").expect(0, "reset approved");
    // The old phone no longer gets in; the next login shows a new QR code.
    let out = f.login("daemon", &["@phone"]);
    out.assert("PAM_SUCCESS").assert_said("scan this code");
    let new = f.enrollment("daemon").unwrap();
    assert_ne!(new.secret, old.secret);
    assert!(
        f.store()
            .ticket(&UserName::parse("daemon").unwrap())
            .unwrap()
            .is_none(),
        "ticket used up"
    );
    f.login("daemon", &[&code(&old, 1)]).assert("PAM_AUTH_ERR");
    f.login("daemon", &[&code(&new, 1)]).assert("PAM_SUCCESS");
}

#[test]
#[ignore = "needs root"]
fn deny_keeps_the_secret_and_shows_the_reason_once() {
    require_root("ivmfa-enroll runs as root only");
    let f = Fixture::new("");
    let e = f.enroll("daemon");
    f.login("daemon", &["reset"]).assert("PAM_AUTH_ERR");
    f.cli(&["reset", "deny", "daemon", "--reason", ""], "")
        .expect(2, "reason");
    f.cli(
        &[
            "reset",
            "deny",
            "daemon",
            "--reason",
            "Call the service desk first",
        ],
        "",
    )
    .expect(0, "Declined");
    f.cli(&["reset", "deny", "daemon", "--reason", "again"], "")
        .expect(3, "no reset request");
    f.login("daemon", &[&code(&e, 0)])
        .assert("PAM_SUCCESS")
        .assert_said("declined: Call the service desk first");
    let again = f.login("daemon", &[&code(&e, 1)]);
    again.assert("PAM_SUCCESS");
    assert!(!again.said("declined"), "shown once: {again:?}");
}

/// Writes an approved reset's ticket, as `reset approve` does.
fn approve(f: &Fixture, user: &str, issued: u64, expires: u64) {
    let name = UserName::parse(user).unwrap();
    let store = f.store();
    let lock = store.lock(&name).unwrap();
    let ticket = Ticket {
        version: FORMAT_VERSION,
        issued,
        expires,
    };
    store.save_ticket(&lock, &ticket).unwrap();
}

#[test]
fn a_recovery_code_works_once() {
    // Other spellings, the last codes, a wrong one counted: ivmfa-core/tests/recovery.rs.
    let f = Fixture::new("unenrolled=enroll");
    let codes = codes_shown(&f.login("daemon", &["@phone"]));
    f.login("daemon", &[&codes[0]])
        .assert("PAM_SUCCESS")
        .assert_said("You have 9 recovery codes left");
    f.login("daemon", &[&codes[0]])
        .assert("PAM_AUTH_ERR")
        .assert_said("That code is not correct");
    assert_eq!(f.enrollment("daemon").unwrap().recovery.remaining(), 9);
}

#[test]
fn a_recovery_code_raced_by_eight_logins_gets_one_in() {
    let f = Fixture::new("unenrolled=enroll");
    let codes = codes_shown(&f.login("daemon", &["@phone"]));
    for (round, code) in codes.iter().take(5).enumerate() {
        let outputs = f.race("daemon", &vec![code.clone(); 8]);
        let wins = outputs
            .iter()
            .filter(|o| o.contains("result: PAM_SUCCESS"))
            .count();
        assert_eq!(wins, 1, "round {round}: {outputs:#?}");
        // Losers are told the code is wrong, or held back by the failures of the others.
        assert!(outputs
            .iter()
            .all(|o| o.contains("result: PAM_SUCCESS") || o.contains("result: PAM_AUTH_ERR")));
        // The losers' failures would hold the next round back.
        fs::remove_file(f.user_dir("daemon").join("state")).unwrap();
    }
    assert_eq!(f.enrollment("daemon").unwrap().recovery.remaining(), 5);
}

/// A notify program the module will run: root's, in a directory only root may write.
fn script(f: &Fixture, name: &str, body: &str) -> String {
    f.root_script(name, body).display().to_string()
}

#[test]
#[ignore = "needs root"]
fn notify_command_runs_with_the_request_and_never_breaks_the_login() {
    require_root("a notify program owned by root");
    let f = Fixture::new("");
    let seen = f.dir.join("seen");
    let ok = script(
        &f,
        "notify-ok",
        &format!("env | grep ^IVMFA_ | sort > {}", seen.display()),
    );
    fs::write(&f.config, format!("notify_command = \"{ok}\"\n")).unwrap();
    f.enroll("daemon");
    let mut args = f.auth_args("daemon", &["reset"]);
    args.extend(["--rhost".into(), "198.51.100.4".into()]);
    f.run(args)
        .assert("PAM_AUTH_ERR")
        .assert_said("sent to the administrators");
    let env = fs::read_to_string(&seen).unwrap();
    assert!(env.contains("IVMFA_USER=daemon"), "{env}");
    assert!(env.contains("IVMFA_RHOST=198.51.100.4"), "{env}");
    assert!(env.contains("IVMFA_SERVICE=ivmfa-test"), "{env}");
    assert!(env.contains("IVMFA_TIME="), "{env}");
    // Only for a new request, not for every repetition.
    fs::remove_file(&seen).unwrap();
    f.login("daemon", &["reset"]).assert("PAM_AUTH_ERR");
    assert!(!seen.exists());

    // A failing command: the request is still filed and the user told.
    let g = Fixture::new("");
    let fail = script(&g, "notify-fail", "exit 3");
    fs::write(&g.config, format!("notify_command = \"{fail}\"\n")).unwrap();
    g.enroll("daemon");
    g.login("daemon", &["reset"])
        .assert("PAM_AUTH_ERR")
        .assert_said("sent to the administrators");
    assert!(request_file(&g, "daemon").exists());

    // A hanging command is killed after the timeout.
    let h = Fixture::new("");
    let hang = script(&h, "notify-hang", "sleep 30");
    fs::write(
        &h.config,
        format!("notify_command = \"{hang}\"\nnotify_timeout_seconds = 1\n"),
    )
    .unwrap();
    h.enroll("daemon");
    let started = Instant::now();
    h.login("daemon", &["reset"])
        .assert("PAM_AUTH_ERR")
        .assert_said("sent to the administrators");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(request_file(&h, "daemon").exists());
}

#[test]
#[ignore = "needs root"]
fn notify_failures_are_logged() {
    require_root("a private /dev/log in a mount namespace");
    let f = Fixture::new("");
    let fail = script(&f, "notify-fail", "exit 3");
    fs::write(&f.config, format!("notify_command = \"{fail}\"\n")).unwrap();
    f.enroll("daemon");
    let (out, lines) = f.login_logged("daemon", &["reset"]);
    out.assert("PAM_AUTH_ERR");
    logged_line(&lines, &["filed a request to reset MFA"]);
    logged_line(&lines, &["notify_command", "ended with exit status: 3"]);
}

#[test]
fn a_ticket_withdrawn_while_the_prompt_is_open_enrolls_nobody() {
    let f = Fixture::new("");
    approve(&f, "daemon", now(), now() + 3600);
    let held = f.login_held("daemon", &["@phone"]);
    // The administrator takes the approval back (here: the ticket file goes away).
    fs::remove_file(f.user_dir("daemon").join("ticket.toml")).unwrap();
    let text = held.release();
    assert!(text.contains("result: PAM_AUTH_ERR"), "{text}");
    assert!(f.enrollment("daemon").is_none(), "nothing was enrolled");
}

#[test]
#[ignore = "needs root"]
fn a_notify_command_that_cannot_start_is_logged_and_the_request_still_filed() {
    require_root("a private /dev/log in a mount namespace");
    // Missing, and present but with an interpreter that is not (execve fails in the child).
    for (name, body) in [
        ("no-such-program", None),
        ("bad-interpreter", Some("#!/no/such")),
    ] {
        let f = Fixture::new("");
        let program = f.root_dir().join(name);
        if let Some(body) = body {
            fs::write(&program, format!("{body}\n")).unwrap();
            fs::set_permissions(&program, fs::Permissions::from_mode(0o755)).unwrap();
        }
        fs::write(
            &f.config,
            format!("notify_command = \"{}\"\n", program.display()),
        )
        .unwrap();
        f.enroll("daemon");
        let (out, lines) = f.login_logged("daemon", &["reset"]);
        out.assert("PAM_AUTH_ERR")
            .assert_said("sent to the administrators");
        assert!(request_file(&f, "daemon").exists());
        logged_line(
            &lines,
            &["notify_command", "cannot start it", "No such file"],
        );
    }
}

#[test]
#[ignore = "needs root"]
fn a_hanging_notify_command_is_killed_with_its_children() {
    require_root("a notify program owned by root");
    let f = Fixture::new("");
    let pidfile = f.dir.join("grandchild.pid");
    let hang = script(
        &f,
        "notify-hang",
        &format!("sleep 60 &\necho $! > {}\nwait", pidfile.display()),
    );
    fs::write(
        &f.config,
        format!("notify_command = \"{hang}\"\nnotify_timeout_seconds = 1\n"),
    )
    .unwrap();
    f.enroll("daemon");
    f.login("daemon", &["reset"]).assert("PAM_AUTH_ERR");
    let pid = fs::read_to_string(&pidfile).unwrap().trim().to_owned();
    std::thread::sleep(Duration::from_millis(200));
    let alive = std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ");
    assert!(!alive, "the script's own child {pid} outlived the timeout");
}

#[test]
#[ignore = "needs root"]
fn an_enrollment_by_the_administrator_spends_the_ticket() {
    require_root("ivmfa-enroll runs as root only");
    let f = Fixture::new("");
    f.enroll("daemon");
    f.login("daemon", &["reset"]).assert("PAM_AUTH_ERR");
    f.cli(&["reset", "approve", "daemon"], "")
        .expect(0, "Approved");
    // The administrator sets the new phone up by hand instead, then removes it again.
    f.cli(&["enroll", "daemon", "--no-confirm", "--qr", "none"], "")
        .expect(0, "enrolled");
    f.cli(&["remove", "daemon"], "").expect(0, "archived");
    // No leftover approval lets the next login enroll a device.
    let out = f.login("daemon", &["@phone"]);
    out.assert("PAM_AUTH_ERR")
        .assert_said("has not been set up");
    assert!(f.enrollment("daemon").is_none());
}
