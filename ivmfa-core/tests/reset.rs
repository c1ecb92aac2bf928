//! Flow 3, the lost device, as the login sees it: the request filed once however often asked,
//! the administrators told once, an approval's ticket (the next login sets up, until it
//! expires), a denial's reason shown once, to a login that can show it.

mod common;

use common::*;
use ivmfa_core::ports::Verdict;

const SENT: &str = "info: Your request to reset multi-factor authentication has been sent to \
the administrators. They will decide whether it can safely be reset; expect an answer within \
24 hours on work days.";

#[test]
fn the_keyword_files_one_request_and_tells_the_administrators_once() {
    let f = Fixture::with_config("", "notify_command = \"/usr/local/sbin/tell-the-desk\"\n");
    let e = f.enroll("alice");
    let first = f
        .at(NOW)
        .from("192.0.2.7")
        .tty("ssh")
        .service("sshd")
        .login("alice", &["reset"]);
    first
        .assert(Verdict::AuthErr)
        .assert_said(SENT)
        .assert_logged("denied: filed a request to reset MFA (lost device)")
        .assert_logged("notify_command ran");
    let request = std::fs::read_to_string(f.request_file("alice")).unwrap();
    for key in [
        "user = \"alice\"",
        &format!("time = {NOW}"),
        "service = \"sshd\"",
        "rhost = \"192.0.2.7\"",
        "tty = \"ssh\"",
    ] {
        assert!(request.contains(key), "{key} in {request}");
    }
    assert_eq!(
        first.notified,
        [vec![
            ("IVMFA_USER", "alice".to_owned()),
            ("IVMFA_TIME", NOW.to_string()),
            ("IVMFA_SERVICE", "sshd".to_owned()),
            ("IVMFA_RHOST", "192.0.2.7".to_owned()),
            ("IVMFA_TTY", "ssh".to_owned()),
        ]]
    );
    // Asked again later, in any case: the same answer, the request unchanged, nobody told.
    for (later, typed) in [(NOW + 60, "RESET"), (NOW + 3600, " Reset ")] {
        let again = f.login(later, "alice", &[typed]);
        again
            .assert(Verdict::AuthErr)
            .assert_said(SENT)
            .assert_logged("asked again to reset MFA; a request is pending");
        assert!(again.notified.is_empty(), "{again:#?}");
        assert_eq!(
            std::fs::read_to_string(f.request_file("alice")).unwrap(),
            request
        );
    }
    let requests = f.store().reset_requests().unwrap();
    assert_eq!(requests.len(), 1);
    // Asking counts as no failure, and the enrollment is untouched: the code still works.
    assert_eq!(f.state("alice").total.count, 0);
    f.login(NOW + 3600, "alice", &[&code(&e, NOW + 3600)])
        .assert(Verdict::Success);
}

#[test]
fn a_failing_notify_command_is_logged_and_the_request_still_filed() {
    let f = Fixture::with_config("", "notify_command = \"/usr/local/sbin/tell-the-desk\"\n");
    f.enroll("alice");
    f.at(NOW)
        .notify_fails()
        .login("alice", &["reset"])
        .assert(Verdict::AuthErr)
        .assert_said(SENT)
        .assert_logged("notify_command /usr/local/sbin/tell-the-desk failed: exit status: 3");
    assert!(f.request_file("alice").exists());
}

#[test]
fn the_keyword_and_message_are_the_administrators_to_choose_or_to_switch_off() {
    let f = Fixture::with_config(
        "",
        "reset_keyword = \"lost\"\nreset_message = \"Call the desk.\"\n",
    );
    f.enroll("alice");
    f.login(NOW, "alice", &["LOST"])
        .assert(Verdict::AuthErr)
        .assert_said("info: Call the desk.");
    // The default keyword is now just a wrong answer.
    f.enroll("bob");
    f.login(NOW, "bob", &["reset"])
        .assert_said("Please enter the 6-digit code");
    assert!(!f.request_file("bob").exists());
    // An empty keyword switches requests off: the word is not a code, and is not counted.
    let off = Fixture::with_config("", "reset_keyword = \"\"\n");
    off.enroll("alice");
    off.login(NOW, "alice", &["reset"])
        .assert(Verdict::AuthErr)
        .assert_said("error: Please enter the 6-digit code from your authenticator app.");
    assert!(!off.request_file("alice").exists());
    assert_eq!(off.state("alice").total.count, 0);
}

#[test]
fn an_approval_lets_the_next_login_set_up_a_new_phone_once() {
    // unenrolled=deny: only the ticket lets the user set up again.
    let f = Fixture::new("");
    let old = f.enroll("alice");
    f.login(NOW, "alice", &["reset"]).assert(Verdict::AuthErr);
    let approved = NOW + 600;
    f.approve("alice", approved, approved + 72 * 3600);
    assert!(f.store().reset_requests().unwrap().is_empty(), "closed");
    // The old phone no longer gets in; the login shows a new QR code instead.
    let at = approved + 3600;
    let new = inband_enrollment();
    let old_code = code(&old, at);
    let seen = f.login(at, "alice", &[&old_code, &old_code, &old_code]);
    seen.assert(Verdict::AuthErr)
        .assert_said("scan this code")
        .assert_said("nothing was set up");
    let seen = f.login(at, "alice", &[&code(&new, at)]);
    seen.assert(Verdict::Success)
        .assert_said("Multi-factor authentication is set up")
        .assert_logged("enrolled in the login, after an approved reset");
    assert_eq!(recovery_codes_in(&seen).len(), 10);
    assert_eq!(f.enrollment("alice").unwrap().secret, new.secret);
    assert!(f.store().ticket(&name("alice")).unwrap().is_none(), "spent");
    // The code that set it up is used; the next one logs in; no second set-up is offered.
    f.login(at, "alice", &[&code(&new, at)])
        .assert(Verdict::AuthErr)
        .assert_said("already been used");
    f.login(at + PERIOD, "alice", &[&code(&new, at + PERIOD)])
        .assert(Verdict::Success)
        .assert_not_said("scan this code");
    // The old enrollment is archived, not deleted.
    let archive = f.store_dir().join("archive");
    assert_eq!(std::fs::read_dir(archive).unwrap().count(), 1);
}

#[test]
fn a_ticket_holds_until_the_second_it_expires() {
    let expires = NOW + 3600;
    for (now, valid) in [
        (expires - 1, true),
        (expires, false),
        (expires + 86_400, false),
    ] {
        let f = Fixture::new("");
        f.enroll("alice");
        f.approve("alice", NOW, expires);
        let new = inband_enrollment();
        let seen = f.login(now, "alice", &[&code(&new, now)]);
        if valid {
            seen.assert(Verdict::Success).assert_said("scan this code");
        } else {
            seen.assert(Verdict::AuthErr)
                .assert_said(
                    "error: Your multi-factor authentication reset was approved, but the time \
                     to set it up again has run out. Please contact your administrators.",
                )
                .assert_logged("the approved reset has expired");
            assert_eq!(seen.prompts(), 0);
            assert!(f.enrollment("alice").is_none(), "nothing enrolled");
        }
    }
}

#[test]
fn a_declined_request_shows_its_reason_once() {
    let f = Fixture::new("");
    let e = f.enroll("alice");
    f.login(NOW, "alice", &["reset"]).assert(Verdict::AuthErr);
    f.deny("alice", NOW + 60, "Call the service desk first");
    assert!(!f.request_file("alice").exists(), "closed");
    let at = NOW + 120;
    f.login(at, "alice", &[&code(&e, at)])
        .assert(Verdict::Success)
        .assert_said(
            "info: Your request to reset multi-factor authentication was declined: Call the \
             service desk first",
        );
    let again = at + PERIOD;
    f.login(again, "alice", &[&code(&e, again)])
        .assert(Verdict::Success)
        .assert_not_said("declined");
    // The user may ask again.
    f.login(again, "alice", &["reset"]).assert_said(SENT);
    assert!(f.request_file("alice").exists());
}

#[test]
fn a_declined_reason_waits_for_a_login_that_can_show_it() {
    let f = Fixture::new("max_failures=1 backoff_seconds=60 max_backoff_seconds=60");
    let e = f.enroll("alice");
    f.deny("alice", NOW, "Come to the desk with your badge.");
    // PAM_SILENT: nothing can be shown, so the reason is kept.
    f.at(NOW)
        .silent()
        .login("alice", &[&wrong_code(&e, NOW)])
        .assert(Verdict::AuthErr)
        .assert_not_said("declined");
    assert!(f.user_dir("alice").join("notice.toml").exists(), "kept");
    // Shown to the next login that can, even one that is backing off, whatever its answer.
    f.login(NOW + 1, "alice", &["000000"])
        .assert(Verdict::AuthErr)
        .assert_said("Too many wrong codes")
        .assert_said("declined: Come to the desk with your badge.");
    assert!(
        !f.user_dir("alice").join("notice.toml").exists(),
        "shown once"
    );
}
