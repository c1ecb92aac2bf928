//! Which steps a code is accepted for: the window on each side of now, where a step begins and
//! ends, where the window comes from, and a phone whose clock is off. The clock is set by the
//! test, so every edge is hit exactly, with no waiting for a step to turn.

mod common;

use common::*;
use ivmfa_core::ports::Verdict;

/// Seconds into a step the edge cases are tried at: its first, an ordinary and its last one.
const INTO_STEP: [u64; 3] = [0, 5, PERIOD - 1];

#[test]
fn every_offset_from_one_past_the_window_to_one_past_the_other_side() {
    for window in [0u8, 1, 2, 3, 10] {
        let reach = i64::from(window) + 1;
        for into in INTO_STEP {
            let now = STEP_START + 10 * PERIOD + into;
            for offset in -reach..=reach {
                let f = Fixture::new(&format!("window={window}"));
                let e = f.enroll("alice");
                let seen = f.login(now, "alice", &[&code_off(&e, now, offset)]);
                let case = format!("window={window} offset={offset} at {into} s into the step");
                let step = (now / PERIOD) as i64 + offset;
                let state = f.state("alice");
                if offset.abs() <= i64::from(window) {
                    assert_eq!(seen.verdict, Verdict::Success, "{case}: {seen:#?}");
                    assert_eq!(state.last_step as i64, step, "{case}: the watermark");
                    assert_eq!(state.total.count, 0, "{case}");
                } else {
                    // Just outside: refused, counted, and the phone's clock blamed.
                    assert_eq!(seen.verdict, Verdict::AuthErr, "{case}: {seen:#?}");
                    assert!(seen.said("That code is not correct."), "{case}");
                    assert!(seen.said("check the clock on your phone"), "{case}");
                    assert_eq!(state.last_step, 0, "{case}: no watermark moved");
                    assert_eq!(state.total.count, 1, "{case}: counted");
                    // A step still to come is refused in advance; one gone needs nothing.
                    assert_eq!(
                        state.refused,
                        if offset > 0 {
                            vec![step as u64]
                        } else {
                            vec![]
                        },
                        "{case}"
                    );
                }
            }
        }
    }
}

#[test]
fn a_step_is_thirty_seconds_from_a_multiple_of_thirty() {
    let f = Fixture::new("window=0");
    let e = f.enroll("alice");
    let start = STEP_START + 20 * PERIOD;
    let step = start / PERIOD;
    // The code shown in the step's first and last second is one code, and only that step's.
    assert_eq!(code(&e, start), code(&e, start + PERIOD - 1));
    assert_ne!(code(&e, start - 1), code(&e, start));
    assert_ne!(code(&e, start + PERIOD - 1), code(&e, start + PERIOD));
    // With no window, the code of the second before the step began is already too old...
    f.login(start, "alice", &[&code(&e, start - 1)])
        .assert(Verdict::AuthErr);
    // ...and the step's own code holds from its first second to its last.
    f.login(start, "alice", &[&code(&e, start)])
        .assert(Verdict::Success);
    assert_eq!(f.state("alice").last_step, step);
    let last = start + PERIOD - 1;
    f.login(last, "alice", &[&code(&e, last)])
        .assert(Verdict::AuthErr)
        .assert_said("already been used");
    f.login(last + 1, "alice", &[&code(&e, last + 1)])
        .assert(Verdict::Success);
    assert_eq!(f.state("alice").last_step, step + 1);
    // The next step's code a second early is one step ahead: refused, and refused for good,
    // so that being told it matched gives nobody a code to use a second later.
    let g = Fixture::new("window=0");
    let e = g.enroll("alice");
    g.login(last, "alice", &[&code(&e, last + 1)])
        .assert(Verdict::AuthErr)
        .assert_said("check the clock");
    g.login(last + 1, "alice", &[&code(&e, last + 1)])
        .assert(Verdict::AuthErr)
        .assert_said("already been used");
}

#[test]
fn a_code_typed_in_its_last_second_and_judged_in_the_next_step() {
    // What the window is for: the user reads the code at :29 and the login gets it at :30.
    let typed = STEP_START + 30 * PERIOD + PERIOD - 1;
    let judged = typed + 1;
    for (window, verdict) in [(0, Verdict::AuthErr), (1, Verdict::Success)] {
        let f = Fixture::new(&format!("window={window}"));
        let e = f.enroll("alice");
        f.login(judged, "alice", &[&code(&e, typed)])
            .assert(verdict);
    }
}

#[test]
fn the_argument_beats_the_config_file_and_the_enrollment_beats_both() {
    // The file alone.
    let f = Fixture::with_config("", "window = 3\n");
    let e = f.enroll("alice");
    f.login(NOW, "alice", &[&code_off(&e, NOW, 3)])
        .assert(Verdict::Success);
    // An argument wins over the file.
    let f = Fixture::with_config("window=0", "window = 5\n");
    let e = f.enroll("alice");
    f.login(NOW, "alice", &[&code_off(&e, NOW, 1)])
        .assert(Verdict::AuthErr);
    f.login(NOW, "alice", &[&code(&e, NOW)])
        .assert(Verdict::Success);
    // A window kept with the enrollment (imported from google-authenticator) wins over both.
    let f = Fixture::new("window=3");
    let mut e = f.enroll("alice");
    e.window = Some(0);
    f.save_enrollment("alice", &e);
    f.login(NOW, "alice", &[&code_off(&e, NOW, -1)])
        .assert(Verdict::AuthErr);
    f.login(NOW + PERIOD, "alice", &[&code(&e, NOW + PERIOD)])
        .assert(Verdict::Success);
}

#[test]
fn a_phone_whose_clock_is_off_is_told_so_and_counted() {
    let f = Fixture::new("max_failures=100 max_failures_per_user=100");
    let e = f.enroll("alice");
    let mut failures = 0;
    for (steps, minutes) in [(-20i64, 10), (-6, 3), (-2, 1), (3, 2), (10, 5), (20, 10)] {
        let seen = f.login(NOW, "alice", &[&code_off(&e, NOW, steps)]);
        failures += 1;
        let unit = if minutes == 1 { "minute" } else { "minutes" };
        seen.assert(Verdict::AuthErr)
            .assert_said("That code is not correct.")
            .assert_said(&format!(
                "about {minutes} {unit} off: check the clock on your phone"
            ));
        assert_eq!(f.state("alice").total.count, failures, "{steps}: counted");
    }
    // Further out it is just wrong.
    for steps in [-21i64, 21] {
        f.login(NOW, "alice", &[&code_off(&e, NOW, steps)])
            .assert(Verdict::AuthErr)
            .assert_said("That code is not correct.")
            .assert_not_said("check the clock");
    }
    // The codes reported ahead wait as refused steps; the current code still works.
    let current = NOW / PERIOD;
    let mut refused = f.state("alice").refused;
    refused.sort_unstable();
    assert_eq!(refused, [current + 3, current + 10, current + 20]);
    f.login(NOW, "alice", &[&code(&e, NOW)])
        .assert(Verdict::Success);
}

#[test]
fn a_code_from_a_phone_ahead_is_refused_and_stays_refused_when_its_time_comes() {
    let f = Fixture::new("");
    let e = f.enroll("alice");
    let ahead = NOW + 5 * 60;
    // A phone five minutes fast: refused, counted, and the user told why.
    f.login(NOW, "alice", &[&code(&e, ahead)])
        .assert(Verdict::AuthErr)
        .assert_said("about 5 minutes off: check the clock on your phone")
        .assert_logged("matches a time 300 s ahead")
        .assert_logged("1 consecutive");
    // Five minutes on, the same code is the current one: still refused.
    f.login(ahead, "alice", &[&code(&e, ahead)])
        .assert(Verdict::AuthErr)
        .assert_said("already been used");
    // The next step's code works as usual.
    f.login(ahead + 30, "alice", &[&code(&e, ahead + 30)])
        .assert(Verdict::Success);
    // A phone behind: told, counted, nothing to refuse later.
    f.login(ahead + 60, "alice", &[&code(&e, ahead - 120)])
        .assert(Verdict::AuthErr)
        .assert_said("about 3 minutes off");
    assert_eq!(
        f.state("alice").refused,
        [ahead / PERIOD],
        "nothing new refused"
    );
}

#[test]
fn refused_steps_are_forgotten_once_no_window_can_reach_them() {
    let f = Fixture::new("max_failures=100");
    let e = f.enroll("alice");
    f.login(NOW, "alice", &[&code_off(&e, NOW, 4)])
        .assert(Verdict::AuthErr);
    assert_eq!(f.state("alice").refused.len(), 1);
    // Well past it (more than the largest window), the next judged login drops it.
    let later = NOW + 20 * PERIOD;
    f.login(later, "alice", &[&wrong_code(&e, later)])
        .assert(Verdict::AuthErr);
    assert!(f.state("alice").refused.is_empty());
}
