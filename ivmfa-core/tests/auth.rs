//! Who is judged: user names as the user database spells them, exempt groups, unknown users,
//! and the randomness a set-up in the login draws on. The cases a real system cannot easily
//! produce (a directory service that ignores case), with the fake host of `common`.

mod common;

use common::*;
use ivmfa_core::ports::Verdict;

#[test]
fn any_spelling_of_the_name_finds_the_enrollment() {
    let f = Fixture::new("");
    let e = f.enroll("alice");
    // ALICE resolves to alice: the enrollment must not be missed (with unenrolled=allow
    // that would let ALICE in on the password alone).
    f.at(NOW)
        .args("unenrolled=allow")
        .login("ALICE", &[])
        .assert(Verdict::ConvErr)
        .assert_said("prompt: Verification code: ");
    f.login(NOW, "Alice", &[&code(&e, NOW)])
        .assert(Verdict::Success);
    // And the code is then used for alice, whatever the spelling.
    f.login(NOW, "alice", &[&code(&e, NOW)])
        .assert(Verdict::AuthErr)
        .assert_said("already been used");
}

#[test]
fn exempt_members_skip_the_code_and_others_do_not() {
    let f = Fixture::new("exempt_group=wheel");
    f.enroll("alice");
    f.enroll("bob");
    f.login(NOW, "bob", &[])
        .assert(Verdict::Success)
        .assert_logged("member of exempt group wheel");
    assert_eq!(f.login(NOW, "alice", &[]).verdict, Verdict::ConvErr);
    // A group the database does not know exempts nobody, and says so.
    let g = Fixture::new("exempt_group=nosuchgroup");
    g.enroll("bob");
    g.login(NOW, "bob", &[])
        .assert(Verdict::ConvErr)
        .assert_logged("does not exist; nobody is exempt");
}

#[test]
fn in_band_enrollment_uses_the_injected_randomness() {
    let f = Fixture::new("unenrolled=enroll");
    let expected = inband_enrollment();
    let seen = f.login(NOW, "alice", &[&code(&expected, NOW)]);
    seen.assert(Verdict::Success).assert_said("Recovery codes");
    let saved = f.enrollment("alice").unwrap();
    assert_eq!(saved.secret, expected.secret);
    assert_eq!(saved.uid, Some(1001));
}

#[test]
fn unknown_users_and_bad_names_are_user_unknown() {
    let f = Fixture::new("unenrolled=allow");
    for user in ["carol", "", "../alice", "alice\n", &"a".repeat(300)] {
        let seen = f.login(NOW, user, &[]);
        seen.assert(Verdict::UserUnknown);
        assert_eq!(seen.prompts(), 0, "{user:?}");
    }
}
