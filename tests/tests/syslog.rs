//! What the module writes to syslog: every accept and deny with its reason, user, service and
//! remote host, at facility authpriv, and never a code or a secret.

use ivmfa_tests::*;

const LOG_AUTHPRIV: u32 = 10 << 3;

/// `<PRI>` of a syslog datagram, split into facility and level.
fn priority(line: &str) -> (u32, u32) {
    let pri: u32 = line
        .strip_prefix('<')
        .and_then(|r| r.split_once('>'))
        .and_then(|(p, _)| p.parse().ok())
        .unwrap_or_else(|| panic!("no priority in {line:?}"));
    (pri & !7, pri & 7)
}

fn logged(f: &Fixture, user: &str, answers: &[&str]) -> (Outcome, Vec<String>) {
    require_root("a private /dev/log in a mount namespace");
    f.login_logged(user, answers)
}

#[test]
#[ignore = "needs root"]
fn accepts_and_denials_are_logged_with_reason_and_no_code() {
    let f = Fixture::new("");
    let e = f.enroll("daemon");
    settle();
    let good = code(&e, 0);
    let bad = wrong_code(&e);
    let secret = e.secret.to_base32().to_string();

    let mut all = Vec::new();
    for (answer, result, reason) in [
        (good.as_str(), "PAM_SUCCESS", "accepted: code verified"),
        (
            good.as_str(),
            "PAM_AUTH_ERR",
            "denied: code already used (replay)",
        ),
        (bad.as_str(), "PAM_AUTH_ERR", "denied: wrong code"),
        (
            "garbage",
            "PAM_AUTH_ERR",
            "denied: the answer is not a code",
        ),
    ] {
        let (out, lines) = logged(&f, "daemon", &[answer]);
        if out.result == "skipped" {
            return;
        }
        out.assert(result);
        let line = logged_line(&lines, &[reason]);
        assert!(
            line.contains("user=daemon service=ivmfa-test rhost=-"),
            "{line}"
        );
        assert!(line.contains("pam_ivmfa(ivmfa-test:auth)"), "{line}");
        assert_eq!(priority(line).0, LOG_AUTHPRIV, "{line}");
        lines.iter().for_each(|l| eprintln!("syslog: {l}"));
        all.extend(lines);
    }
    for line in &all {
        assert!(!line.contains(&good), "a code was logged: {line}");
        assert!(!line.contains(&bad), "a code was logged: {line}");
        assert!(
            !line.contains(&secret[..16]),
            "the secret was logged: {line}"
        );
    }
}

#[test]
#[ignore = "needs root"]
fn faults_are_logged_with_what_to_fix() {
    let f = Fixture::new("unenrolled=allow bogus=1");
    let (out, lines) = logged(&f, "daemon", &[]);
    if out.result == "skipped" {
        return;
    }
    out.assert("PAM_SERVICE_ERR");
    logged_line(&lines, &["unknown option bogus"]);

    let f = Fixture::new("");
    let e = f.enroll("daemon");
    let secret = f.user_dir("daemon").join("secret.toml");
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let (out, lines) = logged(&f, "daemon", &[&code(&e, 0)]);
    out.assert("PAM_SERVICE_ERR");
    let line = logged_line(&lines, &["secret.toml"]);
    assert!(line.contains("mode is 0644"), "{line}");
    assert_eq!(
        priority(line),
        (LOG_AUTHPRIV, 3),
        "an error, at authpriv: {line}"
    );
}

#[test]
#[ignore = "needs root"]
fn debug_logs_the_resolved_config() {
    let f = Fixture::new("debug window=2");
    f.enroll("daemon");
    let (out, lines) = logged(&f, "daemon", &["000000"]);
    if out.result == "skipped" {
        return;
    }
    let line = logged_line(&lines, &["config: store="]);
    assert!(line.contains("window=2"), "{line}");
    assert_eq!(priority(line).1, 7, "debug level: {line}");
}
