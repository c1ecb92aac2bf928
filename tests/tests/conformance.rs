//! One suite, two backends: every login and flow scenario here runs through real libpam
//! against the file store and against the fleet database (a real PostgreSQL over TLS with a
//! client certificate, `backend = "postgres"`), and both runs must give the same PAM results
//! and say the same things to the user, line for line (numbers, QR codes, keys and recovery
//! codes aside, which differ by nature).
//!
//! Codes are computed at the real time, as the file-store tests do; the database judges at
//! its own clock, which is this machine's.

use std::fs;
use std::io::Read;

use ivmfa_core::enrollment::Enrollment;
use ivmfa_core::username::UserName;
use ivmfa_tests::fleet::{key_shown, Fleet};
use ivmfa_tests::postgres::require_postgres;
use ivmfa_tests::qrscan::is_block_line;
use ivmfa_tests::*;

const USER: &str = "daemon";

enum Backend {
    Files,
    Fleet(Fleet),
}

impl Backend {
    fn name(&self) -> &'static str {
        match self {
            Backend::Files => "files",
            Backend::Fleet(_) => "postgres",
        }
    }

    /// A fixture with module arguments `args` and config-file lines `config`.
    fn fixture(&self, args: &str, config: &str) -> Fixture {
        match self {
            Backend::Files => Fixture::with_config(args, config),
            Backend::Fleet(fleet) => fleet.fixture("host_a", args, config),
        }
    }

    fn enroll(&self, f: &Fixture, user: &str) -> Enrollment {
        match self {
            Backend::Files => f.enroll(user),
            Backend::Fleet(fleet) => fleet.enroll(user),
        }
    }

    /// Ten new recovery codes for an enrolled user.
    fn recovery_codes(&self, f: &Fixture, user: &str) -> Vec<String> {
        match self {
            Backend::Files => {
                let (codes, set) = ivmfa_core::recovery::issue(10, now(), |b| {
                    fs::File::open("/dev/urandom")
                        .and_then(|mut r| r.read_exact(b))
                        .map_err(|e| ivmfa_core::Error::System(e.to_string()))
                })
                .unwrap();
                let store = f.store();
                let name = UserName::parse(user).unwrap();
                let lock = store.lock(&name).unwrap();
                let mut e = store.reload_enrollment(&lock).unwrap().unwrap();
                e.recovery = set;
                store.save_enrollment(&lock, &e).unwrap();
                codes.iter().map(|c| c.to_string()).collect()
            }
            Backend::Fleet(fleet) => fleet.recovery_codes(user, 10),
        }
    }

    fn reset_pending(&self, f: &Fixture, user: &str) -> bool {
        match self {
            Backend::Files => f
                .store
                .join("requests")
                .join(format!("{user}.toml"))
                .exists(),
            Backend::Fleet(fleet) => fleet.reset_pending(user),
        }
    }

    /// The administrators approve the user's reset request.
    fn approve(&self, f: &Fixture, user: &str) {
        match self {
            Backend::Files => {
                f.cli(&["reset", "approve", user], "").expect(0, "Approved");
            }
            Backend::Fleet(fleet) => assert_eq!(fleet.approve(user), "approved"),
        }
    }

    fn deny(&self, f: &Fixture, user: &str, reason: &str) {
        match self {
            Backend::Files => {
                f.cli(&["reset", "deny", user, "--reason", reason], "")
                    .expect(0, "Declined");
            }
            Backend::Fleet(fleet) => assert_eq!(fleet.deny(user, reason), "denied"),
        }
    }

    /// Lets an unenrolled user set up in a login with `unenrolled=enroll`: the policy alone
    /// for the file store; the fleet's own setting too for the database.
    fn allow_inband(&self) {
        if let Backend::Fleet(fleet) = self {
            fleet.configure("inband_enroll", "true");
        }
    }
}

/// Runs `scenario` against the file store, then against the fleet database, and checks they
/// gave the same results and messages.
fn conform(scenario: impl Fn(&Backend) -> Vec<Outcome>) {
    require_postgres("the conformance suite");
    let files = scenario(&Backend::Files);
    let fleet = Backend::Fleet(Fleet::start());
    let database = scenario(&fleet);
    assert_eq!(files.len(), database.len());
    for (i, (a, b)) in files.iter().zip(&database).enumerate() {
        assert_eq!(
            (a.result.as_str(), normalized(a)),
            (b.result.as_str(), normalized(b)),
            "login {i}: the file store and the fleet database differ\nfiles: {a:#?}\n\
             postgres: {b:#?}"
        );
    }
}

/// What a login said, with what differs by nature taken out: numbers (codes, waits that
/// may be a second apart), the QR picture, the key beside it and recovery codes.
fn normalized(out: &Outcome) -> Vec<String> {
    const KEY: &str = "Enter this key in the app instead:";
    out.transcript
        .iter()
        .filter(|l| !is_block_line(l.trim_start_matches("info: ")))
        .map(|l| {
            let l = match l.find(KEY) {
                Some(at) => &l[..at + KEY.len()],
                None => l.as_str(),
            };
            let words: Vec<String> = l
                .split(' ')
                .map(|w| {
                    if w.len() == 14 && w.matches('-').count() == 2 {
                        "<recovery code>".to_owned()
                    } else {
                        w.to_owned()
                    }
                })
                .collect();
            let mut text = String::new();
            for c in words.join(" ").chars() {
                match c {
                    '0'..='9' if text.ends_with('#') => {}
                    '0'..='9' => text.push('#'),
                    c => text.push(c),
                }
            }
            text
        })
        .collect()
}

#[test]
#[ignore = "needs root"]
fn codes_replay_and_back_off() {
    conform(|b| {
        let f = b.fixture("", "");
        let e = b.enroll(&f, USER);
        settle();
        let mut outs = vec![f.login(USER, &[&code(&e, 0)])];
        outs.last().unwrap().assert("PAM_SUCCESS");
        outs.push(f.login(USER, &[&code(&e, 0)]));
        outs.last()
            .unwrap()
            .assert("PAM_AUTH_ERR")
            .assert_said("already been used");
        outs.push(f.login(USER, &[&never_right(&e, now())]));
        outs.last()
            .unwrap()
            .assert("PAM_AUTH_ERR")
            .assert_said("That code is not correct.");
        // Not a code: told so, not counted.
        outs.push(f.login(USER, &["12345"]));
        outs.last()
            .unwrap()
            .assert("PAM_AUTH_ERR")
            .assert_said("Please enter the 6-digit code");
        // The replay counted too: this is the third failure, which starts the back-off.
        outs.push(f.login(USER, &[&never_right(&e, now())]));
        outs.last()
            .unwrap()
            .assert("PAM_AUTH_ERR")
            .assert_said("Too many wrong codes. Please wait 30 seconds");
        // Held: a right code is not even judged; the way out is offered.
        outs.push(f.login(USER, &[&code(&e, 1)]));
        outs.last()
            .unwrap()
            .assert("PAM_AUTH_ERR")
            .assert_said("type reset to ask the administrators");
        outs
    });
}

#[test]
#[ignore = "needs root"]
fn a_recovery_code_works_once() {
    conform(|b| {
        let f = b.fixture("", "");
        b.enroll(&f, USER);
        let codes = b.recovery_codes(&f, USER);
        assert_eq!(codes.len(), 10, "{}", b.name());
        let typed = codes[0].to_uppercase().replace('-', " ");
        let outs = vec![
            f.login(USER, &[&typed]),
            f.login(USER, &[&codes[0]]),
            f.login(USER, &["abcd-efgh-jkmn"]),
            f.login(USER, &[&codes[1]]),
        ];
        outs[0]
            .assert("PAM_SUCCESS")
            .assert_said("You have 9 recovery codes left");
        outs[1]
            .assert("PAM_AUTH_ERR")
            .assert_said("That code is not correct");
        outs[2].assert("PAM_AUTH_ERR");
        outs[3]
            .assert("PAM_SUCCESS")
            .assert_said("You have 8 recovery codes left");
        outs
    });
}

#[test]
#[ignore = "needs root"]
fn a_reset_request_approved_sets_up_a_new_code_at_the_next_login() {
    conform(|b| {
        let f = b.fixture("", "");
        let old = b.enroll(&f, USER);
        let mut args = f.auth_args(USER, &["reset"]);
        args.extend(["--rhost".into(), "192.0.2.7".into()]);
        let mut outs = vec![f.run(args)];
        outs[0]
            .assert("PAM_AUTH_ERR")
            .assert_said("sent to the administrators");
        assert!(b.reset_pending(&f, USER), "{}", b.name());
        // Asked again: the same answer, still one request.
        outs.push(f.login(USER, &["RESET"]));
        outs[1].assert("PAM_AUTH_ERR");
        b.approve(&f, USER);
        assert!(!b.reset_pending(&f, USER), "{}", b.name());
        settle();
        let setup = f.login(USER, &["@phone"]);
        setup
            .assert("PAM_SUCCESS")
            .assert_said("scan this code")
            .assert_said("Multi-factor authentication is set up");
        assert_eq!(
            recovery_codes_in(&setup.transcript.join("\n")).len(),
            10,
            "{setup:?}"
        );
        let new = key_shown(&setup.transcript).expect("the key was shown");
        assert_ne!(new.secret, old.secret);
        outs.push(setup);
        // The old phone is out; the new one is in, once per code.
        outs.push(f.login(USER, &[&code(&old, 1)]));
        outs.last().unwrap().assert("PAM_AUTH_ERR");
        outs.push(f.login(USER, &[&code(&new, 1)]));
        outs.last().unwrap().assert("PAM_SUCCESS");
        outs
    });
}

#[test]
#[ignore = "needs root"]
fn a_denied_reset_shows_its_reason_once() {
    conform(|b| {
        let f = b.fixture("", "");
        let e = b.enroll(&f, USER);
        let mut outs = vec![f.login(USER, &["reset"])];
        outs[0].assert("PAM_AUTH_ERR");
        b.deny(&f, USER, "Call the service desk first");
        settle();
        outs.push(f.login(USER, &[&code(&e, 0)]));
        outs[1]
            .assert("PAM_SUCCESS")
            .assert_said("declined: Call the service desk first");
        outs.push(f.login(USER, &[&code(&e, 1)]));
        outs[2].assert("PAM_SUCCESS");
        assert!(!outs[2].said("declined"), "{}: {:?}", b.name(), outs[2]);
        outs
    });
}

#[test]
#[ignore = "needs root"]
fn an_unenrolled_user_is_denied_ignored_or_set_up_as_configured() {
    conform(|b| {
        let deny = b.fixture("", "");
        let allow = b.fixture("unenrolled=allow", "");
        // The module steps aside (PAM_IGNORE): the stack's answer is pam_permit's.
        allow.append_line("auth required pam_permit.so");
        b.allow_inband();
        let enroll = b.fixture("unenrolled=enroll", "");
        let mut outs = vec![
            deny.login(USER, &["000000"]),
            allow.login(USER, &["000000"]),
        ];
        outs[0]
            .assert("PAM_AUTH_ERR")
            .assert_said("has not been set up yet");
        outs[1].assert("PAM_SUCCESS");
        assert!(outs[1].transcript.is_empty(), "{:?}", outs[1]);
        settle();
        // Three wrong answers save nothing; the next login starts over and succeeds.
        outs.push(enroll.login(USER, &["@phone-wrong", "999999x", "not a code"]));
        outs[2]
            .assert("PAM_AUTH_ERR")
            .assert_said("2 tries left")
            .assert_said("1 try left")
            .assert_said("nothing was set up");
        settle();
        outs.push(enroll.login(USER, &["invert", "@phone"]));
        outs[3]
            .assert("PAM_SUCCESS")
            .assert_said("Multi-factor authentication is set up");
        let e = key_shown(&outs[3].transcript).unwrap();
        outs.push(enroll.login(USER, &[&code(&e, 1)]));
        outs[4].assert("PAM_SUCCESS");
        outs
    });
}

#[test]
#[ignore = "needs root"]
fn an_answer_an_earlier_module_collected_is_judged_like_a_typed_one() {
    /// The stack first collects an answer into PAM_AUTHTOK (pam_exec with expose_authtok),
    /// then runs the module with `args`.
    fn collecting(f: &Fixture, args: &str) {
        let ours = fs::read_to_string(f.dir.join("pam.d").join(SERVICE)).unwrap();
        let ours = ours.lines().last().unwrap();
        f.set_module_line(&format!(
            "auth required pam_exec.so quiet expose_authtok /usr/bin/cat\n{ours} {args}"
        ));
    }
    conform(|b| {
        let f = b.fixture("", "");
        let e = b.enroll(&f, USER);
        let stack = fs::read_to_string(f.dir.join("pam.d").join(SERVICE)).unwrap();
        collecting(&f, "use_first_pass");
        settle();
        let mut outs = vec![
            f.login(USER, &[&code(&e, 0)]),
            f.login(USER, &[&never_right(&e, now())]),
            f.login(USER, &["correct horse"]),
        ];
        outs[0].assert("PAM_SUCCESS");
        outs[1].assert("PAM_AUTH_ERR").assert_said("not correct");
        outs[2]
            .assert("PAM_AUTH_ERR")
            .assert_said("Please enter the 6-digit code");
        // try_first_pass: a wrong one there, then the right one at the prompt.
        f.set_module_line(stack.trim_end());
        collecting(&f, "try_first_pass");
        outs.push(f.login(USER, &[&never_right(&e, now()), &code(&e, 1)]));
        outs[3].assert("PAM_SUCCESS");
        outs
    });
}

/// A login of `user` from `rhost` (`None`: a local one), with syslog captured.
fn logged_from(f: &Fixture, rhost: Option<&str>, answers: &[&str]) -> (Outcome, Vec<String>) {
    let mut args = f.auth_args(USER, answers);
    if let Some(host) = rhost {
        args.extend(["--rhost".to_string(), host.to_string()]);
    }
    let (output, lines) = f.logged(&driver(), &args);
    (Outcome::parse(&output), lines)
}

#[test]
#[ignore = "needs root"]
fn a_right_code_from_an_address_begins_a_grace_period_for_it_alone() {
    require_root("a grace period, given only to an application running as root");
    const HERE: &str = "192.0.2.1";
    const ELSEWHERE: &str = "192.0.2.2";
    const ASKED: &str = "prompt-hidden: Verification code";
    conform(|b| {
        let f = b.fixture("", "grace_period = 600\n");
        let e = b.enroll(&f, USER);
        settle();
        let from = |rhost: Option<&str>, answers: &[&str]| {
            let (out, lines) = logged_from(&f, rhost, answers);
            (out, lines.join("\n"))
        };
        let mut outs = Vec::new();
        let (out, _) = from(Some(HERE), &[&code(&e, 0)]);
        out.assert("PAM_SUCCESS").assert_said(ASKED);
        outs.push(out);
        // From the same address: no code asked, and the reason logged.
        let (out, log) = from(Some(HERE), &[]);
        out.assert("PAM_SUCCESS");
        assert!(out.transcript.is_empty(), "{}: {out:?}", b.name());
        assert!(
            log.contains("rhost=192.0.2.1: accepted: grace period from 192.0.2.1"),
            "{}: {log}",
            b.name()
        );
        outs.push(out);
        // Not from another address, nor locally: asked (and, given no answer, ended there).
        for rhost in [Some(ELSEWHERE), None] {
            let (out, log) = from(rhost, &[]);
            out.assert("PAM_CONV_ERR").assert_said(ASKED);
            assert!(!log.contains("grace period"), "{}: {log}", b.name());
            outs.push(out);
        }
        // A wrong code from anywhere ends it.
        let (out, _) = from(Some(ELSEWHERE), &[&never_right(&e, now())]);
        out.assert("PAM_AUTH_ERR")
            .assert_said("That code is not correct.");
        outs.push(out);
        let (out, _) = from(Some(HERE), &[]);
        out.assert("PAM_CONV_ERR").assert_said(ASKED);
        outs.push(out);
        // The next right code from there begins it again.
        let (out, _) = from(Some(HERE), &[&code(&e, 1)]);
        out.assert("PAM_SUCCESS");
        outs.push(out);
        let (out, _) = from(Some(HERE), &[]);
        out.assert("PAM_SUCCESS");
        assert!(out.transcript.is_empty(), "{}: {out:?}", b.name());
        outs.push(out);
        outs
    });
}

#[test]
#[ignore = "needs root"]
fn a_pending_reset_request_withholds_the_grace_period() {
    require_root("a grace period, given only to an application running as root");
    conform(|b| {
        let f = b.fixture("", "grace_period = 600\n");
        let e = b.enroll(&f, USER);
        settle();
        let mut outs = vec![logged_from(&f, Some("192.0.2.1"), &[&code(&e, 0)]).0];
        outs[0].assert("PAM_SUCCESS");
        outs.push(f.login(USER, &["reset"]));
        outs[1]
            .assert("PAM_AUTH_ERR")
            .assert_said("sent to the administrators");
        let (out, lines) = logged_from(&f, Some("192.0.2.1"), &[]);
        out.assert("PAM_CONV_ERR");
        logged_line(
            &lines,
            &["no grace period from 192.0.2.1: a reset request is pending; a code is asked"],
        );
        outs.push(out);
        // Declined: what is left of the period is back.
        b.deny(&f, USER, "Found it");
        outs.push(logged_from(&f, Some("192.0.2.1"), &[]).0);
        outs[3].assert("PAM_SUCCESS");
        outs
    });
}
