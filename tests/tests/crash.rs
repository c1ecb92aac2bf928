//! Writers killed with SIGKILL at random points: every file still parses (the old or the new
//! version, never a mix), no code is ever accepted twice, and the next good login works.

use std::fs;
use std::process::{Command, Stdio};
use std::time::Duration;

use ivmfa_core::username::UserName;
use ivmfa_tests::*;

/// A cheap random number from the clock, enough to spread the kill points.
fn jitter(max_micros: u64) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    Duration::from_micros(nanos % max_micros)
}

fn assert_parses(f: &Fixture, user: &str) -> u64 {
    f.enrollment(user).expect("the enrollment survives");
    f.state(user).state.last_step
}

#[test]
fn logins_killed_mid_write_leave_parsable_files_and_no_double_use() {
    let f = Fixture::new(
        "max_failures=1000 max_failures_per_user=10000 backoff_seconds=1 max_backoff_seconds=1",
    );
    let e = f.enroll("daemon");
    let mut killed = 0;
    for round in 0..150 {
        settle();
        let right = code(&e, 0);
        let answer = if round % 2 == 0 {
            right.clone()
        } else {
            wrong_code(&e)
        };
        let mut child = Command::new(driver())
            .args(f.auth_args("daemon", &[&answer]))
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(jitter(8_000));
        if child.try_wait().unwrap().is_none() {
            killed += 1;
        }
        let _ = child.kill();
        let _ = child.wait();
        let watermark = assert_parses(&f, "daemon");
        // Whatever the killed login managed, the right code now works at most once.
        let first = f.login("daemon", &[&right]).result;
        let second = f.login("daemon", &[&right]).result;
        assert_ne!(
            (first.as_str(), second.as_str()),
            ("PAM_SUCCESS", "PAM_SUCCESS"),
            "round {round}: a code was accepted twice"
        );
        assert!(
            assert_parses(&f, "daemon") >= watermark,
            "the watermark never goes back"
        );
    }
    eprintln!("{killed} of 150 logins were killed while running");
    assert!(killed > 0, "the kill points never hit a running login");
    // No temp file is left for readers to trip over, or it is harmless: the next login works.
    settle();
    f.login("daemon", &[&code(&e, 1)]).assert("PAM_SUCCESS");
}

#[test]
#[ignore = "needs root"]
fn enrollment_writes_killed_mid_way_leave_the_old_or_the_new_file() {
    require_root("ivmfa-enroll runs as root only");
    let f = Fixture::new("");
    f.enroll_by_cli("daemon");
    let name = UserName::parse("daemon").unwrap();
    for _ in 0..100 {
        let mut child = Command::new(enroll_bin())
            .args(f.cli_args(&["recovery-codes", "daemon"]))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(jitter(6_000));
        let _ = child.kill();
        let _ = child.wait();
        let e = f
            .store()
            .load_enrollment(&name)
            .unwrap()
            .expect("still enrolled");
        assert_eq!(
            e.secret.expose(),
            TEST_KEY_BYTES,
            "the secret never changes"
        );
        assert_eq!(e.recovery.remaining(), 10, "a whole set, old or new");
    }
    settle();
    let e = f.enrollment("daemon").unwrap();
    f.login("daemon", &[&code(&e, 0)]).assert("PAM_SUCCESS");
}

/// What strace saw one login do to the state file: the calls on its descriptor, in order,
/// from opening it for writing to closing it.
fn state_calls(f: &Fixture, answer: &str) -> (String, Vec<String>) {
    let trace = f.dir.join("strace.out");
    let out = Command::new("strace")
        .args([
            "-f",
            "-qq",
            "-e",
            "trace=openat,pwrite64,fdatasync,close",
            "-o",
        ])
        .arg(&trace)
        .arg(driver())
        .args(f.auth_args("daemon", &[answer]))
        .output()
        .expect("strace is needed to watch the flush (apt install strace)");
    let result = String::from_utf8_lossy(&out.stdout).into_owned();
    let text = std::fs::read_to_string(&trace).unwrap();
    let state = f.user_dir("daemon").join("state").display().to_string();
    let mut calls = Vec::new();
    let mut fd = None;
    for line in text.lines() {
        // "<pid> call(args) = result"
        let call = line
            .split_once(' ')
            .map_or(line, |(_, rest)| rest.trim_start());
        match fd {
            None if call.contains(&format!("\"{state}\"")) && call.contains("O_RDWR") => {
                fd = call.rsplit_once("= ").map(|(_, n)| n.trim().to_owned());
            }
            Some(ref n) if call.starts_with(&format!("close({n})")) => break,
            Some(ref n) if call.contains(&format!("({n},")) || call.contains(&format!("({n})")) => {
                calls.push(
                    call.split('(').next().unwrap().to_owned()
                        + " "
                        + call.rsplit("= ").next().unwrap(),
                )
            }
            _ => {}
        }
    }
    (result, calls)
}

/// The step a login used, and a failure, reach the disk before the login is answered: the slot
/// is written and flushed on the descriptor before the module returns. Every attempt is first
/// written as a failure; then the slot is written again, with the success of a right code or
/// the same failure, so right and wrong codes make the same calls.
#[test]
fn state_is_flushed_before_the_login_is_answered() {
    let f = Fixture::new("");
    let e = f.enroll("daemon");
    settle();
    for (answer, result) in [
        (code(&e, 0), "PAM_SUCCESS"),
        (wrong_code(&e), "PAM_AUTH_ERR"),
    ] {
        let (out, calls) = state_calls(&f, &answer);
        assert!(out.contains(&format!("result: {result}")), "{out}");
        // "pwrite64 <bytes written>": the number varies with the state's length.
        let calls: Vec<&str> = calls
            .iter()
            .map(|c| {
                if c.starts_with("pwrite64 ") {
                    "pwrite64"
                } else {
                    c.as_str()
                }
            })
            .collect();
        assert_eq!(
            calls,
            ["pwrite64", "pwrite64", "fdatasync 0"],
            "{answer}: {out}"
        );
    }
}

/// A login killed between writing its slot and flushing it leaves the newest state in memory
/// only; the next login flushes it before it overwrites the other slot, so a crash then never
/// finds both slots half written. The lock file's first byte tells it.
#[test]
fn the_next_login_flushes_what_a_killed_one_left_unflushed() {
    let f = Fixture::new("");
    let e = f.enroll("daemon");
    settle();
    let lock = f.user_dir("daemon").join("lock");
    // As a login killed after its first write leaves it.
    fs::write(&lock, b"1").unwrap();
    let (out, calls) = state_calls(&f, &wrong_code(&e));
    assert!(out.contains("result: PAM_AUTH_ERR"), "{out}");
    assert_eq!(
        calls.first().map(String::as_str),
        Some("fdatasync 0"),
        "{calls:?}"
    );
    assert_eq!(fs::read(&lock).unwrap(), b"0", "the write was finished");
    // Finished writes leave nothing to flush first.
    let (_, calls) = state_calls(&f, &wrong_code(&e));
    assert!(
        calls.first().is_some_and(|c| c.starts_with("pwrite64")),
        "{calls:?}"
    );
}
