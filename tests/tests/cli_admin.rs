//! ivmfa-enroll's administrative commands: status, remove, recovery-codes,
//! import-google-authenticator, check, the audit log and --help.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use ivmfa_tests::*;

const KEY: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

fn root() -> bool {
    require_root("ivmfa-enroll runs as root only")
}

fn provisioned() -> Fixture {
    let f = Fixture::new("");
    f.cli(&["enroll", "daemon", "--secret", KEY, "--no-confirm"], "")
        .expect(0, "enrolled");
    f
}

#[test]
fn status_shows_enrollment_codes_and_backoff() {
    if !root() {
        return;
    }
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
    let empty = Fixture::new("");
    empty
        .cli(&["status"], "")
        .expect(0, "No users are enrolled");
}

#[test]
fn remove_archives_and_refuses_twice() {
    if !root() {
        return;
    }
    let f = provisioned();
    f.cli(&["remove", "daemon"], "").expect(0, "archived as");
    assert!(f.enrollment("daemon").is_none());
    let archived: Vec<_> = fs::read_dir(f.store.join("archive"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(archived.len(), 1);
    let kept = fs::read_to_string(archived[0].path()).unwrap();
    assert!(
        kept.contains(KEY),
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
fn recovery_codes_are_replaced_as_a_set() {
    if !root() {
        return;
    }
    let f = provisioned();
    let before = f.enrollment("daemon").unwrap().recovery;
    let out = f.cli(&["recovery-codes", "daemon", "--count", "5"], "");
    out.expect(0, "the previous ones no longer work");
    let shown = out
        .stdout
        .split_whitespace()
        .filter(|w| w.len() == 14 && w.matches('-').count() == 2)
        .count();
    assert_eq!(shown, 5);
    let after = f.enrollment("daemon").unwrap().recovery;
    assert_eq!(after.remaining(), 5);
    assert!(before.hashes.iter().all(|h| !after.hashes.contains(h)));
    assert_eq!(
        f.enrollment("daemon").unwrap().secret.expose(),
        b"12345678901234567890"
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
fn import_google_authenticator_keeps_the_phone_working() {
    if !root() {
        return;
    }
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
fn import_refuses_hotp_unsafe_and_missing_files() {
    if !root() {
        return;
    }
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

fn pam_dir(f: &Fixture, files: &[(&str, &str)]) -> String {
    let dir = f.dir.join("pam-check");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    for (name, text) in files {
        fs::write(dir.join(name), text).unwrap();
    }
    dir.display().to_string()
}

/// Stands in for `sshd -T`: prints the given effective settings.
fn sshd_printing(f: &Fixture, settings: &str) -> String {
    let path = f.dir.join("sshd-T");
    fs::write(&path, format!("#!/bin/sh\ncat <<'END'\n{settings}\nEND\n")).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

const COMMON_AUTH: &str = "auth [success=1 default=ignore] pam_unix.so nullok\n\
                           auth requisite pam_deny.so\nauth required pam_permit.so\n";

#[test]
fn check_finds_what_is_wrong_and_passes_when_it_is_fixed() {
    if !root() {
        return;
    }
    let f = provisioned();
    let bad_pam = pam_dir(
        &f,
        &[
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
        ],
    );
    let bad_sshd = sshd_printing(
        &f,
        "usepam yes\nkbdinteractiveauthentication no\npubkeyauthentication yes\nauthenticationmethods any",
    );
    let out = f.cli(&["check", "--pam-dir", &bad_pam, "--sshd", &bad_sshd], "");
    assert_eq!(out.code, 1, "{out:#?}");
    for problem in [
        "pam_ivmfa.so is optional",
        "unenrolled=enroll, but a wrong password does not stop the stack",
        "unknown option windwo",
        "KbdInteractiveAuthentication no",
        "users with a key log in without a code",
    ] {
        assert!(
            out.stdout.contains(problem),
            "{problem:?} not found in:\n{}",
            out.stdout
        );
    }
    assert!(out.stdout.contains("5 problems found"), "{}", out.stdout);

    let good_pam = pam_dir(
        &f,
        &[
            ("common-auth", COMMON_AUTH),
            (
                "sshd",
                "@include common-auth\nauth required pam_ivmfa.so unenrolled=enroll\n",
            ),
            (
                "su",
                "auth requisite pam_unix.so\nauth required pam_ivmfa.so\n",
            ),
        ],
    );
    let good_sshd = sshd_printing(
        &f,
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
fn admin_actions_are_audited_without_secrets() {
    if !root() {
        return;
    }
    let f = Fixture::new("");
    let (out, lines) = f.logged(
        &enroll_bin(),
        &f.cli_args(&["enroll", "daemon", "--secret", KEY, "--no-confirm"]),
    );
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8_lossy(&out.stdout);
    let line = lines
        .iter()
        .find(|l| l.contains("enrolled user=daemon"))
        .unwrap_or_else(|| panic!("no audit line in {lines:#?}"));
    assert!(line.contains("ivmfa-enroll["), "{line}");
    assert!(line.contains("(by root"), "{line}");
    assert!(line.starts_with("<85>"), "authpriv.notice: {line}");
    let codes: Vec<&str> = printed
        .split_whitespace()
        .filter(|w| w.len() == 14 && w.matches('-').count() == 2)
        .collect();
    for l in &lines {
        assert!(
            !l.contains(KEY) && !l.contains("GEZD"),
            "secret logged: {l}"
        );
        assert!(
            codes.iter().all(|c| !l.contains(c)),
            "recovery code logged: {l}"
        );
    }
    let (_, lines) = f.logged(&enroll_bin(), &f.cli_args(&["remove", "daemon"]));
    assert!(
        lines
            .iter()
            .any(|l| l.contains("removed the enrollment of user=daemon")),
        "{lines:#?}"
    );
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
        vec!["check", "--help"],
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
