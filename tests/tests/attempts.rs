//! Every attempt is counted, whatever the caller does to the process, and no wait is endless:
//! what a local user who knows a victim's password can do to `su` (resource limits, ignored
//! signals, a stopped lock holder, a full disk), through real libpam and the real setuid `su`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ivmfa_core::recovery;
use ivmfa_core::state::{Failures, State, MAX_SOURCES};
use ivmfa_core::store::LOCK_WAIT;
use ivmfa_tests::sshd::{module_line, private_system, PASSWORD, USER};
use ivmfa_tests::terminal::{plain, Terminal};
use ivmfa_tests::*;

/// The state file's size in KiB: `ulimit -f` values past it cannot cut any write of it.
const STATE_KIB: u64 = 24;

/// A state with the failure table full of long source names whose back-off is long over, so
/// that a failure write is as large as it gets while nobody is held back yet.
fn big_table(last_step: u64) -> State {
    let failures = (0..MAX_SOURCES - 1)
        .map(|i| Failures {
            source: format!("{i:02}-{}", "h".repeat(250)),
            count: 2,
            last: 1,
        })
        .collect();
    State {
        last_step,
        failures,
        ..State::default()
    }
}

fn put_state(f: &Fixture, user: &str, state: &State) {
    let store = f.store();
    let lock = store.lock(&user_name(user)).unwrap();
    store.save_state(&lock, state).unwrap();
}

/// The driver run by a caller who ignores SIGXFSZ and runs `ulimit <flag> -f kib` (bash counts
/// in KiB; dash would count in 512-byte blocks).
fn limited(flag: &str, kib: u64, args: Vec<String>) -> Outcome {
    Outcome::of(
        Command::new("bash")
            .args(["-c", "trap '' XFSZ; ulimit $0 -f $1; shift; exec \"$@\""])
            .args([flag, &kib.to_string(), "--"])
            .arg(driver())
            .args(args),
    )
}

/// What an attempt under a file-size limit came to. The module lifts the limit where it may
/// (root with CAP_SYS_RESOURCE; and any soft limit); where it may not, a write the limit cuts
/// happens before the code is judged, so the attempt is refused unjudged, right or wrong.
#[derive(Debug, PartialEq)]
enum Seen {
    /// Judged wrong and counted.
    Counted,
    /// Refused before the code was looked at.
    Unjudged,
}

fn seen(result: &str, screen: &str) -> Seen {
    if result == "PAM_AUTH_ERR" && screen.contains("That code is not correct") {
        Seen::Counted
    } else if result == "PAM_SERVICE_ERR" && screen.contains("not available") {
        Seen::Unjudged
    } else {
        panic!("neither counted nor refused unjudged: {result} {screen}")
    }
}

#[test]
fn a_file_size_limit_never_leaves_a_wrong_code_uncounted() {
    let f = Fixture::new("max_failures=3 max_failures_per_user=1000 backoff_seconds=600");
    let e = f.enroll("daemon");
    put_state(&f, "daemon", &big_table(0));
    // -S: a soft limit, which the module can always lift; -SH: both, which it lifts only with
    // CAP_SYS_RESOURCE (a container's root may lack it).
    for flag in ["-S", "-SH"] {
        for kib in 1..=STATE_KIB {
            // A source of its own for every limit, as long as a host name gets.
            let source = format!("{flag}{kib:02}-{}", "s".repeat(250));
            let from = |answer: &str| {
                let mut args = f.auth_args("daemon", &[answer]);
                args.extend(["--rhost".to_string(), source.clone()]);
                limited(flag, kib, args)
            };
            let mut counted = 0;
            for _ in 1..=3 {
                let out = from(&wrong_code(&e));
                let what = seen(&out.result, &out.transcript.join("\n"));
                if what == Seen::Counted {
                    counted += 1;
                    // Exactly as without a limit: the third failure starts the back-off.
                    assert_eq!(
                        out.said("Please wait"),
                        counted == 3,
                        "{flag} {kib}: {out:?}"
                    );
                }
                if flag == "-S" {
                    assert_eq!(what, Seen::Counted, "a soft limit is lifted: {out:?}");
                }
            }
            let right = from(&code(&e, 0));
            if counted == 3 {
                // The right code is not even looked at while the source backs off.
                right
                    .assert("PAM_AUTH_ERR")
                    .assert_said("Too many wrong codes");
            } else {
                // What stopped the failures from being written stops the right code too,
                // before it is judged: no oracle, and no way in.
                right.assert("PAM_SERVICE_ERR").assert_said("not available");
            }
        }
    }
    // Without a limit, the right code from elsewhere still works.
    f.login("daemon", &[&code(&e, 0)]).assert("PAM_SUCCESS");
}

#[test]
fn the_callers_limit_and_signal_disposition_are_put_back() {
    let f = Fixture::new("");
    let e = f.enroll("daemon");
    // The driver reports its RLIMIT_FSIZE and SIGXFSZ disposition after pam_authenticate.
    let mut args = f.auth_args("daemon", &[&code(&e, 0)]);
    args.push("--report-limits".into());
    let out = limited("-S", 3, args);
    out.assert("PAM_SUCCESS")
        .assert_said("after: fsize 3072 18446744073709551615, sigxfsz ignored, ruid 0");
}

#[test]
#[ignore = "needs root"]
fn su_under_a_file_size_limit_counts_every_wrong_code() {
    require_root("su as an unprivileged caller in a private mount namespace");
    let f = Fixture::new("");
    let e = f.enroll(USER);
    let args = "max_failures=1 max_failures_per_user=1000 backoff_seconds=600";
    // nodelay: pam_unix's 2 s delay after a failed stack is no part of what is shown here,
    // and would be most of the test's time (every su below fails).
    let stack = format!(
        "auth requisite pam_unix.so nodelay\n{}",
        module_line(&f, args)
    );
    let setup = private_system(&f, "attempts-su", &[("su", &stack)]);
    let su = |kib: u64, answer: &str| {
        // The attacker's shell: an unprivileged account that ignores SIGXFSZ and sets a
        // file-size limit, then runs the setuid su, which keeps both.
        let attacker = format!(
            "setpriv --reuid=65534 --regid=65534 --clear-groups bash -c \"trap '' XFSZ; ulimit -f {kib}; \
             exec /usr/bin/su {USER} -c 'echo su-\\$((40+2))'\""
        );
        let mut t = Terminal::in_namespace(&setup, &attacker);
        t.expect("Password: ");
        t.type_line(PASSWORD);
        // A user backing off is told so first, then asked all the same (only the reset
        // keyword is taken then): wait for the prompt either way, or the message alone may
        // be on the screen when looked at and su left waiting for an answer.
        t.expect("Verification code: ");
        t.type_line(answer);
        let (status, screen) = t.finish();
        assert_ne!(status, 0, "ulimit -f {kib}: {screen}");
        plain(&screen)
    };
    // su prints the module's message, then its own "Authentication failure".
    let result = |screen: &str| {
        if screen.contains("not available") {
            "PAM_SERVICE_ERR"
        } else {
            "PAM_AUTH_ERR"
        }
    };
    for kib in 1..=STATE_KIB {
        put_state(&f, USER, &big_table(0));
        let screen = su(kib, &wrong_code(&e));
        let counted = seen(result(&screen), &screen) == Seen::Counted;
        assert!(
            !counted || screen.contains("Please wait"),
            "ulimit -f {kib}: a counted failure starts the back-off: {screen}"
        );
        let screen = su(kib, &code(&e, 0));
        assert!(
            !screen.contains("su-42"),
            "ulimit -f {kib}: let in: {screen}"
        );
        let expected = if counted {
            "Too many wrong codes"
        } else {
            "not available"
        };
        assert!(screen.contains(expected), "ulimit -f {kib}: {screen}");
    }
}

/// Enrolls `daemon` with ten recovery codes; returns the enrollment and the codes.
fn enroll_with_recovery(f: &Fixture) -> (ivmfa_core::enrollment::Enrollment, Vec<String>) {
    let mut e = f.enroll("daemon");
    let random: Vec<u8> = random_secret()
        .expose()
        .iter()
        .cycle()
        .take(recovery::random_bytes_needed(10))
        .enumerate()
        .map(|(i, b)| b.wrapping_mul(31).wrapping_add(i as u8))
        .collect();
    let (codes, set) = recovery::generate(&random, 10, now()).unwrap();
    e.recovery = set;
    let store = f.store();
    let lock = store.lock(&user_name("daemon")).unwrap();
    store.save_enrollment(&lock, &e).unwrap();
    (e, codes.iter().map(|c| c.to_string()).collect())
}

#[test]
#[ignore = "needs root"]
fn a_full_disk_tells_right_from_wrong_recovery_codes_only_by_letting_in() {
    require_root("a small tmpfs in a private mount namespace");
    let f = Fixture::new("");
    let (e, codes) = enroll_with_recovery(&f);
    let store = f.store.display().to_string();
    let copy = f.dir.join("copy").display().to_string();
    let driver = driver().display().to_string();
    // The store on a full 64 KiB tmpfs; `first` is a login run there before the one checked.
    let setup = |first: &str| {
        let first_login = if first.is_empty() {
            String::new()
        } else {
            format!(
                "{driver} {} >/dev/null",
                f.auth_args("daemon", &[first]).join(" ")
            )
        };
        format!(
            "cp -a {store} {copy}\n\
             mount -t tmpfs -o size=64k,mode=700 ivmfa-full {store}\n\
             cp -a {copy}/. {store}/\n\
             dd if=/dev/zero of={store}/fill bs=4k 2>/dev/null || true\n\
             {first_login}"
        )
    };
    // The right recovery code gets in (the state records it in place), once.
    f.login_in_namespace(&setup(""), "daemon", &[&codes[0]])
        .assert("PAM_SUCCESS")
        .assert_said("You have 9 recovery codes left");
    f.login_in_namespace(&setup(&codes[0]), "daemon", &[&codes[0]])
        .assert("PAM_AUTH_ERR")
        .assert_said("That code is not correct");
    // A wrong one is counted like any wrong code.
    f.login_in_namespace(&setup(""), "daemon", &["abcd-efgh-jkmn"])
        .assert("PAM_AUTH_ERR")
        .assert_said("That code is not correct");
    // TOTP codes alike: a right one gets in, a wrong one is refused; neither is a fault.
    f.login_in_namespace(&setup(""), "daemon", &[&code(&e, 0)])
        .assert("PAM_SUCCESS");
    f.login_in_namespace(&setup(""), "daemon", &[&wrong_code(&e)])
        .assert("PAM_AUTH_ERR")
        .assert_said("That code is not correct");
}

/// Another process (flock(1)) holding the lock file `lock`, once /proc/locks shows it so.
fn hold(lock: &std::path::Path) -> std::process::Child {
    let holder = Command::new("flock")
        .arg("-o")
        .arg(lock)
        .args(["sleep", "300"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let taken = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string("/proc/locks")
        .unwrap()
        .contains(&format!(" {} ", holder.id()))
    {
        assert!(Instant::now() < taken, "flock never took the lock");
        std::thread::sleep(Duration::from_millis(10));
    }
    holder
}

#[test]
#[ignore = "needs root"]
fn a_stopped_lock_holder_delays_a_login_only_until_the_deadline() {
    require_root("flock(1) on the store's lock file, and syslog capture");
    let f = Fixture::new("");
    let e = f.enroll("daemon");
    // Another process holds daemon's lock and has been stopped (as a caller can stop its own
    // su with SIGSTOP while the lock is held).
    let lock = f.user_dir("daemon").join("lock");
    let mut holder = hold(&lock);
    Command::new("kill")
        .args(["-STOP", &holder.id().to_string()])
        .status()
        .unwrap();
    let started = Instant::now();
    let (out, lines) = f.login_logged("daemon", &[&code(&e, 0)]);
    let took = started.elapsed();
    let _ = holder.kill();
    let _ = holder.wait();
    out.assert("PAM_SERVICE_ERR")
        .assert_said("Try again in a moment");
    logged_line(
        &lines,
        &["denied: gave up waiting for the lock", "/proc/locks"],
    );
    assert!(
        took >= LOCK_WAIT && took < LOCK_WAIT + Duration::from_secs(5),
        "the login waited {took:?}"
    );
    // The holder gone, the same code gets in: nothing was recorded meanwhile.
    f.login("daemon", &[&code(&e, 0)]).assert("PAM_SUCCESS");
}

/// The real uid and state of a process, from /proc.
fn proc_status(pid: u32) -> (String, String) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or("")
            .trim()
            .to_owned()
    };
    let ruid = field("Uid:")
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_owned();
    (ruid, field("State:"))
}

#[test]
#[ignore = "needs root"]
fn the_caller_of_a_setuid_login_cannot_stop_it_while_it_works() {
    require_root("setpriv, flock(1) and a lock held by root");
    let f = Fixture::new("");
    let e = f.enroll("daemon");
    // Another login holds daemon's lock for a moment, so this one is seen waiting for it.
    let lock = f.user_dir("daemon").join("lock");
    let mut holder = hold(&lock);
    // The login as a setuid program runs it: real uid nobody, effective uid root.
    let mut args = f.auth_args("daemon", &[&code(&e, 0)]);
    args.push("--report-limits".into());
    let login = Command::new("setpriv")
        .args(["--ruid=65534", "--euid=0"])
        .arg(driver())
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = login.id();
    // Past the prompt (answered at once), it waits for the lock with real uid 0.
    let seen = Instant::now() + Duration::from_secs(4);
    while proc_status(pid).0 != "0" {
        assert!(Instant::now() < seen, "the real uid never became 0");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(proc_status(pid).0, "0", "still waiting for the lock");
    // Its caller (nobody) may no longer stop it, nor end it.
    for signal in ["-STOP", "-KILL"] {
        let refused = Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "kill",
                signal,
            ])
            .arg(pid.to_string())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(
            !refused.success(),
            "kill {signal} from the caller succeeded"
        );
    }
    assert!(!proc_status(pid).1.starts_with('T'), "stopped");
    let _ = holder.kill();
    let _ = holder.wait();
    let out = Outcome::parse(&login.wait_with_output().unwrap());
    // And once done, the caller's real uid is back.
    out.assert("PAM_SUCCESS").assert_said(", ruid 65534");
}
