//! The grace period (`grace_period`), through real libpam and real sshd: after a right code
//! from a remote address, the same user's logins from there skip the code for a while, and
//! nothing else does.
//!
//! A grace period is given only to an application running with real uid root (sshd is one;
//! the pam-driver run by root plays one), so these tests need root.

use std::process::Command;

use ivmfa_core::grace::{self, Address};
use ivmfa_tests::sshd::{module_line, require_sshd, Sshd, PASSWORD, USER};
use ivmfa_tests::*;

const HERE: &str = "192.0.2.1";
const ELSEWHERE: &str = "192.0.2.2";
const ASKED: &str = "prompt-hidden: Verification code";

/// The pam-driver's arguments for a login of daemon from `rhost` (`None`: a local one).
fn args_from(f: &Fixture, rhost: Option<&str>, answers: &[&str]) -> Vec<String> {
    let mut args = f.auth_args("daemon", answers);
    if let Some(host) = rhost {
        args.extend(["--rhost".to_string(), host.to_string()]);
    }
    args
}

fn from(f: &Fixture, rhost: Option<&str>, answers: &[&str]) -> Outcome {
    f.run(args_from(f, rhost, answers))
}

fn logged_from(f: &Fixture, rhost: Option<&str>, answers: &[&str]) -> (Outcome, Vec<String>) {
    let (output, lines) = f.logged(&driver(), &args_from(f, rhost, answers));
    (Outcome::parse(&output), lines)
}

/// A login that skipped the code: it succeeded without being asked anything.
#[track_caller]
fn skipped(out: &Outcome) {
    out.assert("PAM_SUCCESS");
    assert!(!out.said("prompt"), "asked: {:#?}", out.transcript);
}

/// A login that was asked for a code (and, given no answer, ended there, counting nothing).
#[track_caller]
fn asked(out: &Outcome) {
    out.assert("PAM_CONV_ERR").assert_said(ASKED);
}

/// Puts grace entries in daemon's state, as right codes from those addresses at those times
/// would have (in the order of their times: a later code forgets what is dated after it).
fn provision(f: &Fixture, entries: &[(&str, u64)]) {
    let store = f.store();
    let lock = store.lock(&user_name("daemon")).unwrap();
    let mut state = store.load_state(&lock).unwrap().state;
    let mut entries = entries.to_vec();
    entries.sort_by_key(|(_, at)| *at);
    for (address, at) in entries {
        let address = Address::parse(address).unwrap();
        state.grace.record(&address, at, grace::MAX_PERIOD);
    }
    store.save_state(&lock, &state).unwrap();
}

fn grace_of(f: &Fixture) -> ivmfa_core::grace::Grace {
    f.state("daemon").state.grace
}

#[test]
#[ignore = "needs root"]
fn a_right_code_from_an_address_lets_its_next_logins_skip_the_code() {
    require_root("a grace period, given only to an application running as root");
    let f = Fixture::new("grace_period=600");
    let e = f.enroll("daemon");
    settle();
    from(&f, Some(HERE), &[&code(&e, 0)])
        .assert("PAM_SUCCESS")
        .assert_said(ASKED);
    let (out, lines) = logged_from(&f, Some(HERE), &[]);
    skipped(&out);
    logged_line(
        &lines,
        &["rhost=192.0.2.1", "accepted: grace period from 192.0.2.1"],
    );
    // Not once only: for the period, however often.
    skipped(&from(&f, Some(HERE), &[]));
    // Not from another address, nor locally.
    asked(&from(&f, Some(ELSEWHERE), &[]));
    asked(&from(&f, None, &[]));
    // The grace login changed nothing: the period still runs from the code.
    let since = grace_of(&f).since(&Address::parse(HERE).unwrap()).unwrap();
    assert!(now() - since < 60, "{since}");
    // The same address in another spelling is the same address.
    provision(&f, &[("2001:db8::7", now())]);
    skipped(&from(&f, Some("2001:DB8:0::7"), &[]));
}

#[test]
#[ignore = "needs root"]
fn the_period_runs_out() {
    require_root("a grace period, given only to an application running as root");
    let f = Fixture::new("grace_period=600");
    f.enroll("daemon");
    provision(&f, &[(HERE, now() - 590), (ELSEWHERE, now() - 610)]);
    skipped(&from(&f, Some(HERE), &[]));
    asked(&from(&f, Some(ELSEWHERE), &[]));
    // A shorter period set since covers less of what was recorded.
    let shorter = Fixture::new("grace_period=60");
    shorter.enroll("daemon");
    provision(&shorter, &[(HERE, now() - 120)]);
    asked(&from(&shorter, Some(HERE), &[]));
    // And a code dated in the future (the clock set back since) covers nothing.
    let ahead = Fixture::new("grace_period=600");
    ahead.enroll("daemon");
    provision(&ahead, &[(HERE, now() + 300)]);
    asked(&from(&ahead, Some(HERE), &[]));
}

#[test]
#[ignore = "needs root"]
fn off_by_default_and_when_set_to_zero() {
    require_root("a grace period, given only to an application running as root");
    for args in ["", "grace_period=0"] {
        let f = Fixture::new(args);
        let e = f.enroll("daemon");
        settle();
        from(&f, Some(HERE), &[&code(&e, 0)]).assert("PAM_SUCCESS");
        asked(&from(&f, Some(HERE), &[]));
        assert!(grace_of(&f).is_empty(), "nothing recorded with {args:?}");
        // Entries left from when it was on give nothing either, and the next right code
        // forgets them.
        provision(&f, &[(HERE, now())]);
        asked(&from(&f, Some(HERE), &[]));
        from(&f, None, &[&code(&e, 1)]).assert("PAM_SUCCESS");
        assert!(grace_of(&f).is_empty());
    }
}

#[test]
#[ignore = "needs root"]
fn set_in_the_config_file_and_bad_values_fail_closed() {
    require_root("a grace period, given only to an application running as root");
    let f = Fixture::with_config("", "grace_period = 300\n");
    let e = f.enroll("daemon");
    settle();
    from(&f, Some(HERE), &[&code(&e, 0)]).assert("PAM_SUCCESS");
    skipped(&from(&f, Some(HERE), &[]));
    for bad in [
        "grace_period=86401",
        "grace_period=-1",
        "grace_period=1h",
        "grace_period",
    ] {
        let f = Fixture::new(bad);
        f.enroll("daemon");
        provision(&f, &[(HERE, now())]);
        from(&f, Some(HERE), &[]).assert("PAM_SERVICE_ERR");
    }
    let longest = Fixture::new("grace_period=86400");
    longest.enroll("daemon");
    provision(&longest, &[(HERE, now() - 86_000)]);
    skipped(&from(&longest, Some(HERE), &[]));
}

#[test]
#[ignore = "needs root"]
fn a_wrong_code_grants_nothing_and_ends_every_grace_period() {
    require_root("a grace period, given only to an application running as root");
    let f = Fixture::new("grace_period=600");
    let e = f.enroll("daemon");
    settle();
    // A wrong code from an address earns it nothing.
    from(&f, Some(HERE), &[&wrong_code(&e)]).assert("PAM_AUTH_ERR");
    asked(&from(&f, Some(HERE), &[]));
    assert!(grace_of(&f).is_empty());
    // A right one does; then a wrong one from anywhere else ends it.
    from(&f, Some(HERE), &[&code(&e, 0)]).assert("PAM_SUCCESS");
    skipped(&from(&f, Some(HERE), &[]));
    from(&f, Some(ELSEWHERE), &[&wrong_code(&e)]).assert("PAM_AUTH_ERR");
    asked(&from(&f, Some(HERE), &[]));
    // A replayed code is a wrong one too.
    from(&f, Some(HERE), &[&code(&e, 1)]).assert("PAM_SUCCESS");
    skipped(&from(&f, Some(HERE), &[]));
    from(&f, None, &[&code(&e, 1)])
        .assert("PAM_AUTH_ERR")
        .assert_said("already been used");
    asked(&from(&f, Some(HERE), &[]));
}

#[test]
#[ignore = "needs root"]
fn the_list_of_addresses_is_bounded_and_forgets_the_oldest() {
    require_root("a grace period, given only to an application running as root");
    let f = Fixture::new("grace_period=3600");
    let e = f.enroll("daemon");
    let t = now();
    let addresses: Vec<String> = (0..grace::MAX_ADDRESSES)
        .map(|i| format!("198.51.100.{i}"))
        .collect();
    let entries: Vec<(&str, u64)> = addresses
        .iter()
        .enumerate()
        .map(|(i, a)| (a.as_str(), t - 100 + i as u64))
        .collect();
    provision(&f, &entries);
    settle();
    // One address more: the one with the oldest code makes room.
    from(&f, Some(HERE), &[&code(&e, 0)]).assert("PAM_SUCCESS");
    let kept = grace_of(&f);
    assert_eq!(kept.len(), grace::MAX_ADDRESSES);
    asked(&from(&f, Some(&addresses[0]), &[]));
    skipped(&from(&f, Some(&addresses[1]), &[]));
    skipped(&from(&f, Some(HERE), &[]));
    let text = std::fs::read(f.user_dir("daemon").join("state")).unwrap();
    assert_eq!(text.len(), ivmfa_core::slotfile::FILE_LEN);
}

#[test]
#[ignore = "needs root"]
fn no_grace_for_the_caller_of_a_setuid_program_nor_for_host_names() {
    require_root("setpriv and a grace period");
    let f = Fixture::new("grace_period=600");
    let e = f.enroll("daemon");
    provision(&f, &[(HERE, now())]);
    // A setuid program run by nobody, which sets PAM_RHOST as its caller asked: real uid
    // nobody, effective uid root. It gets no grace period...
    let as_setuid = |answers: &[&str]| {
        Outcome::of(
            Command::new("setpriv")
                .args(["--ruid=65534", "--euid=0"])
                .arg(driver())
                .args(args_from(&f, Some(HERE), answers)),
        )
    };
    asked(&as_setuid(&[]));
    // ...and its right code starts none.
    let store = f.store();
    {
        let lock = store.lock(&user_name("daemon")).unwrap();
        let mut state = store.load_state(&lock).unwrap().state;
        state.grace.clear();
        store.save_state(&lock, &state).unwrap();
    }
    settle();
    as_setuid(&[&code(&e, 0)]).assert("PAM_SUCCESS");
    assert!(grace_of(&f).is_empty());
    // A host name (sshd with UseDNS yes) is not an address: no grace period either.
    from(&f, Some("client.example"), &[&code(&e, 1)]).assert("PAM_SUCCESS");
    assert!(grace_of(&f).is_empty());
    asked(&from(&f, Some("client.example"), &[]));
}

#[test]
#[ignore = "needs root"]
fn a_pending_reset_request_withholds_the_grace_period() {
    require_root("a grace period, given only to an application running as root");
    let f = Fixture::new("grace_period=600");
    let e = f.enroll("daemon");
    settle();
    from(&f, Some(HERE), &[&code(&e, 0)]).assert("PAM_SUCCESS");
    // The user reports the device lost, from anywhere.
    from(&f, None, &["reset"])
        .assert("PAM_AUTH_ERR")
        .assert_said("sent to the administrators");
    let (out, lines) = logged_from(&f, Some(HERE), &[]);
    asked(&out);
    logged_line(
        &lines,
        &["no grace period from 192.0.2.1: a reset request is pending"],
    );
    // Declined: the grace period the code started is back, for what is left of it.
    f.cli(&["reset", "deny", "daemon", "--reason", "Found it."], "")
        .expect(0, "");
    skipped(&from(&f, Some(HERE), &[]));
}

#[test]
#[ignore = "needs root"]
fn a_new_enrollment_a_removal_or_an_approved_reset_drops_every_grace_period() {
    require_root("ivmfa-enroll runs as root only");
    let f = Fixture::new("grace_period=600");
    f.enroll_by_cli("daemon");
    provision(&f, &[(HERE, now())]);
    skipped(&from(&f, Some(HERE), &[]));
    f.cli(
        &[
            "enroll",
            "daemon",
            "--force",
            "--secret",
            TEST_KEY,
            "--no-confirm",
        ],
        "",
    )
    .expect(0, "enrolled");
    assert!(grace_of(&f).is_empty());
    asked(&from(&f, Some(HERE), &[]));

    provision(&f, &[(HERE, now())]);
    f.cli(&["remove", "daemon"], "").expect(0, "archived as");
    assert!(grace_of(&f).is_empty());

    f.enroll_by_cli("daemon");
    provision(&f, &[(HERE, now())]);
    from(&f, None, &["reset"]).assert("PAM_AUTH_ERR");
    f.cli(&["reset", "approve", "daemon"], "").expect(0, "");
    assert!(grace_of(&f).is_empty());
}

#[test]
#[ignore = "needs root"]
fn over_ssh_the_second_login_from_the_same_address_needs_no_code() {
    require_sshd();
    let f = Fixture::new("");
    let e = f.enroll(USER);
    let sshd = Sshd::start(
        &f,
        "sshd",
        &format!(
            "auth requisite pam_unix.so\n{}",
            module_line(&f, "grace_period=600")
        ),
        "AuthenticationMethods keyboard-interactive",
    );
    settle();
    let first = sshd.login(PASSWORD, &code(&e, 0), None);
    assert!(first.ok, "{first:#?}\n{}", sshd.log());
    assert!(first.prompts.contains("Verification code: "), "{first:#?}");
    // Within the period, from 127.0.0.1 again: the password only. (The code the client
    // would give is a wrong one: it is never asked for.)
    let second = sshd.login(PASSWORD, &wrong_code(&e), None);
    assert!(second.ok, "{second:#?}\n{}", sshd.log());
    assert!(second.prompts.contains("Password"), "{second:#?}");
    assert!(!second.prompts.contains("Verification code"), "{second:#?}");
    // The password is still needed.
    let bad = sshd.login("not the password", &code(&e, 1), None);
    assert!(!bad.ok, "{bad:#?}");
}

#[test]
#[ignore = "needs root"]
fn forward_pass_gives_no_grace_period() {
    // Its one answer carries the password for the next module, so it is always asked.
    require_root("a root application");
    let f = Fixture::new("forward_pass grace_period=3600");
    let e = f.enroll("daemon");
    settle();
    from(&f, Some(HERE), &[&format!("hunter2{}", code(&e, 0))]).assert("PAM_SUCCESS");
    let again = from(&f, Some(HERE), &["hunter2"]);
    again.assert("PAM_AUTH_ERR");
    assert!(again.said("prompt-hidden: Password & verification code"));
}
