//! A user with no enrollment: the three policies (deny, allow, enroll), an enrollment made for
//! an earlier owner of the name, and the set-up in the login (flow 1): its tries, its hints,
//! and what it saves.

mod common;

use common::*;
use ivmfa_core::ports::Verdict;

#[test]
fn deny_refuses_without_a_prompt() {
    for args in ["", "unenrolled=deny"] {
        let f = Fixture::new(args);
        let seen = f.login(NOW, "alice", &["123456"]);
        seen.assert(Verdict::AuthErr)
            .assert_said("error: This account requires multi-factor authentication, but it has not been set up yet.")
            .assert_logged("not enrolled (unenrolled=deny)");
        assert_eq!(seen.prompts(), 0, "{args}");
    }
}

#[test]
fn allow_and_its_aliases_step_aside_for_unenrolled_users_only() {
    for args in ["unenrolled=allow", "unenrolled=nullok", "nullok"] {
        let f = Fixture::new(args);
        let seen = f.login(NOW, "alice", &[]);
        seen.assert(Verdict::Ignore)
            .assert_logged("not enrolled; unenrolled=allow, ignoring");
        assert_eq!(seen.prompts(), 0, "{args}");
        // An enrolled user is judged as ever.
        let e = f.enroll("alice");
        f.login(NOW, "alice", &[&wrong_code(&e, NOW)])
            .assert(Verdict::AuthErr);
        f.login(NOW, "alice", &[&code(&e, NOW)])
            .assert(Verdict::Success);
    }
    // With no store directory at all nobody is enrolled: the policy still decides, loudly.
    let f = Fixture::new("unenrolled=allow");
    std::fs::remove_dir(f.store_dir()).unwrap();
    f.login(NOW, "alice", &[])
        .assert(Verdict::Ignore)
        .assert_logged("does not exist, so nobody counts as enrolled");
    let f = Fixture::new("");
    std::fs::remove_dir(f.store_dir()).unwrap();
    f.login(NOW, "alice", &[]).assert(Verdict::AuthErr);
}

#[test]
fn enroll_sets_up_in_the_login_and_the_code_used_cannot_log_in_again() {
    let f = Fixture::new("unenrolled=enroll");
    let new = inband_enrollment();
    let seen = f.login(NOW, "alice", &[&code(&new, NOW)]);
    seen.assert(Verdict::Success)
        .assert_said("info: Set up multi-factor authentication for this account.")
        .assert_said("Enter this key in the app instead")
        .assert_said("prompt: Code shown in the app: ")
        .assert_said("Multi-factor authentication is set up")
        .assert_logged("enrolled in the login (unenrolled=enroll)");
    let codes = recovery_codes_in(&seen);
    assert_eq!(codes.len(), 10);
    let saved = f.enrollment("alice").unwrap();
    assert_eq!(saved.recovery.remaining(), 10);
    assert_eq!(f.state("alice").last_step, NOW / PERIOD);
    f.login(NOW, "alice", &[&code(&new, NOW)])
        .assert(Verdict::AuthErr)
        .assert_said("already been used");
    f.login(NOW + PERIOD, "alice", &[&code(&new, NOW + PERIOD)])
        .assert(Verdict::Success);
    // The recovery codes shown are the ones saved.
    f.login(NOW + PERIOD, "alice", &[&codes[9]])
        .assert(Verdict::Success)
        .assert_said("9 recovery codes left");
}

#[test]
fn three_wrong_codes_save_nothing_and_the_next_login_starts_over() {
    let f = Fixture::new("unenrolled=enroll");
    let new = inband_enrollment();
    let seen = f.login(
        NOW,
        "alice",
        &["000000", "not a code", "111111", "never asked"],
    );
    seen.assert(Verdict::AuthErr)
        .assert_said(
            "error: That code is not correct. Check the app shows this account; 2 tries left.",
        )
        .assert_said("1 try left")
        .assert_said("The code was not correct three times, so nothing was set up.");
    assert_eq!((seen.prompts(), seen.answers_left), (3, 1));
    assert!(f.enrollment("alice").is_none());
    assert!(!f.user_dir("alice").join("state").exists());
    // A phone whose clock is off is told so, and the next try can still succeed.
    let off = code_off(&new, NOW, -4);
    f.login(NOW, "alice", &[&off, &code(&new, NOW)])
        .assert(Verdict::Success)
        .assert_said("2 tries left. It matches a time about 2 minutes off: check the clock");
}

#[test]
fn the_set_up_takes_the_window_and_invert_redraws_without_using_a_try() {
    let f = Fixture::new("unenrolled=enroll window=0");
    let new = inband_enrollment();
    let seen = f.login(
        NOW,
        "alice",
        &[
            "invert",
            "INVERT",
            &code_off(&new, NOW, 1),
            &code(&new, NOW),
        ],
    );
    seen.assert(Verdict::Success).assert_said("2 tries left");
    assert_eq!(seen.prompts(), 4);
    // The QR code is drawn three times: at first, then inverted, then as at first.
    let drawings: Vec<String> = seen
        .shown
        .split(|l| !l.contains('▀'))
        .filter(|run| !run.is_empty())
        .map(|run| run.join("\n"))
        .collect();
    assert_eq!(drawings.len(), 3, "{seen:#?}");
    assert_ne!(drawings[0], drawings[1]);
    assert_eq!(drawings[0], drawings[2]);
}

#[test]
fn a_login_that_cannot_show_text_is_told_and_nothing_is_saved() {
    let f = Fixture::new("unenrolled=enroll");
    let seen = f.at(NOW).silent().login("alice", &["123456"]);
    seen.assert(Verdict::AuthErr)
        .assert_logged("needs a conversation that shows text (PAM_SILENT was set)");
    assert_eq!(seen.prompts(), 0);
    assert!(f.enrollment("alice").is_none());
    // Nothing answered at all: the conversation failed, nothing saved.
    f.login(NOW, "alice", &[]).assert(Verdict::ConvErr);
    assert!(f.enrollment("alice").is_none());
}

#[test]
fn an_enrollment_made_for_another_uid_is_not_this_users() {
    // Made for uid 12345, as if alice's account had been deleted and the name given again.
    let f = Fixture::new("");
    let mut old = f.enroll("alice");
    old.uid = Some(12345);
    f.save_enrollment("alice", &old);
    f.login(NOW, "alice", &[&code(&old, NOW)])
        .assert(Verdict::AuthErr)
        .assert_said("has not been set up yet")
        .assert_logged("made for uid 12345, but alice is now uid 1001")
        .assert_logged("ivmfa-enroll remove alice");
    // Made for this uid, or before uids were recorded: as ever.
    for uid in [Some(1001), None] {
        old.uid = uid;
        f.save_enrollment("alice", &old);
        let at = NOW + PERIOD * u64::from(uid.is_none());
        f.login(at, "alice", &[&code(&old, at)])
            .assert(Verdict::Success);
    }
    // With unenrolled=enroll the new owner sets up, and the old enrollment is archived.
    let g = Fixture::new("unenrolled=enroll");
    old.uid = Some(12345);
    g.save_enrollment("alice", &old);
    let new = inband_enrollment();
    g.login(NOW, "alice", &[&code(&new, NOW)])
        .assert(Verdict::Success)
        .assert_said("scan this code");
    let saved = g.enrollment("alice").unwrap();
    assert_eq!((saved.secret.clone(), saved.uid), (new.secret, Some(1001)));
    let archive = g.store_dir().join("archive");
    assert_eq!(std::fs::read_dir(archive).unwrap().count(), 1);
}
