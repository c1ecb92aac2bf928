//! Many processes presenting one valid code at the same instant: exactly one gets in.

use std::process::{Command, Stdio};

use ivmfa_tests::*;

const PROCESSES: usize = 8;
const ROUNDS: usize = 50;

#[test]
fn one_code_many_logins_exactly_one_success() {
    let f = Fixture::new("");
    let e = f.enroll("daemon");
    let state = f.user_dir("daemon").join("state.toml");
    for round in 0..ROUNDS {
        // A fresh watermark each round, so the same current code is valid again.
        let _ = std::fs::remove_file(&state);
        let c = code(&e, 0);
        let start_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
            + 150;
        let children: Vec<_> = (0..PROCESSES)
            .map(|_| {
                let mut args = f.auth_args("daemon", &[&c]);
                args.extend(["--start-at".to_string(), start_at.to_string()]);
                Command::new(driver())
                    .args(args)
                    .stdout(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let results: Vec<String> = children
            .into_iter()
            .map(|c| {
                let out = c.wait_with_output().unwrap();
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                text.lines()
                    .find_map(|l| l.strip_prefix("result: ").map(str::to_owned))
                    .unwrap_or_else(|| format!("no result: {text}"))
            })
            .collect();
        let wins = results.iter().filter(|r| *r == "PAM_SUCCESS").count();
        assert_eq!(wins, 1, "round {round}: {results:?}");
        assert!(
            results
                .iter()
                .all(|r| r == "PAM_SUCCESS" || r == "PAM_AUTH_ERR"),
            "round {round}: {results:?}"
        );
    }
}

/// Parallel wrong codes: the back-off is re-checked under the lock, so with max_failures=1
/// exactly one of them is judged, and the others are held back.
#[test]
fn parallel_wrong_codes_are_judged_one_at_a_time() {
    let f = Fixture::new("max_failures=1 backoff_seconds=60 max_backoff_seconds=60");
    let e = f.enroll("daemon");
    settle();
    let wrong = wrong_code(&e);
    let start_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + 150;
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            let mut args = f.auth_args("daemon", &[&wrong]);
            args.extend(["--start-at".to_string(), start_at.to_string()]);
            Command::new(driver())
                .args(args)
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<String> = children
        .into_iter()
        .map(|c| String::from_utf8_lossy(&c.wait_with_output().unwrap().stdout).into_owned())
        .collect();
    let judged = outputs
        .iter()
        .filter(|o| o.contains("That code is not correct"))
        .count();
    assert_eq!(judged, 1, "{outputs:#?}");
    assert!(
        outputs.iter().all(|o| o.contains("result: PAM_AUTH_ERR")),
        "{outputs:#?}"
    );
}
