//! Many processes presenting one code at the same instant: the per-user lock serialises them.

use ivmfa_tests::*;

const PROCESSES: usize = 8;
const ROUNDS: usize = 50;

fn result(output: &str) -> &str {
    output
        .lines()
        .find_map(|l| l.strip_prefix("result: "))
        .unwrap_or("no result")
}

#[test]
fn one_code_many_logins_exactly_one_success() {
    let f = Fixture::new("");
    let e = f.enroll("daemon");
    let state = f.user_dir("daemon").join("state");
    for round in 0..ROUNDS {
        // A fresh watermark each round, so the same current code is valid again.
        let _ = std::fs::remove_file(&state);
        let outputs = f.race("daemon", &vec![code(&e, 0); PROCESSES]);
        let results: Vec<&str> = outputs.iter().map(|o| result(o)).collect();
        let wins = results.iter().filter(|r| **r == "PAM_SUCCESS").count();
        assert_eq!(wins, 1, "round {round}: {results:?}");
        assert!(
            results
                .iter()
                .all(|r| *r == "PAM_SUCCESS" || *r == "PAM_AUTH_ERR"),
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
    let outputs = f.race("daemon", &vec![wrong_code(&e); PROCESSES]);
    let judged = outputs
        .iter()
        .filter(|o| o.contains("That code is not correct"))
        .count();
    assert_eq!(judged, 1, "{outputs:#?}");
    assert!(
        outputs.iter().all(|o| result(o) == "PAM_AUTH_ERR"),
        "{outputs:#?}"
    );
}
