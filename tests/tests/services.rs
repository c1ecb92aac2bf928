//! The module in a stack every service shares (common-auth): it steps aside for services it is
//! not meant for, for an unprivileged process that authenticates its own user, and for an
//! application that answers the code prompt with the password, and none of them counts a
//! failure against the user's SSH logins.

use std::fs;
use std::process::Command;

use ivmfa_tests::sshd::{private_system, set_password, USER};
use ivmfa_tests::*;

/// The config file the package installs as /etc/ivmfa/ivmfa.toml.
fn packaged_config() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/ivmfa.toml");
    fs::read_to_string(path).unwrap()
}

#[test]
fn the_packaged_config_skips_password_only_services_and_judges_every_other_one() {
    // Every service but the listed exceptions is judged: polkit, cockpit and any service the
    // list does not know ask for a code, and a missing entry fails closed.
    for (service, judged) in [
        ("sshd", true),
        ("polkit-1", true),
        ("cockpit", true),
        ("something-new", true),
        ("dovecot", false),
        ("cups", false),
        ("ppp", false),
    ] {
        let f = Fixture::with_config("", &packaged_config());
        let stack = fs::read_to_string(f.dir.join("pam.d").join(SERVICE)).unwrap();
        fs::write(
            f.dir.join("pam.d").join(service),
            format!("{stack}auth required pam_permit.so\n"),
        )
        .unwrap();
        let e = f.enroll("daemon");
        let mut login = f.auth_args("daemon", &[&wrong_code(&e)]);
        let at = login.iter().position(|a| a == "--service").unwrap();
        login[at + 1] = service.to_owned();
        let out = f.run(login);
        if judged {
            out.assert("PAM_AUTH_ERR").assert_said("prompt");
        } else {
            out.assert("PAM_SUCCESS");
            assert!(!out.said("prompt"), "{service}: {out:?}");
        }
    }
}

#[test]
fn services_outside_the_list_are_left_alone() {
    let f = Fixture::new("services=sshd,login");
    f.append_line("auth required pam_permit.so");
    let e = f.enroll("daemon");
    settle();
    // Not asked for a code, and the permit after it decides.
    let out = f.login("daemon", &[&wrong_code(&e)]);
    out.assert("PAM_SUCCESS");
    assert!(!out.said("prompt"), "{out:?}");
    assert_eq!(f.state("daemon").state.total.count, 0);

    // Listed (here in the config file, as a list): judged as ever.
    let listed = Fixture::with_config("", &format!("services = [\"sshd\", \"{SERVICE}\"]\n"));
    listed.append_line("auth required pam_permit.so");
    let e = listed.enroll("daemon");
    listed
        .login("daemon", &[&wrong_code(&e)])
        .assert("PAM_AUTH_ERR");
    listed
        .login("daemon", &[&code(&e, 0)])
        .assert("PAM_SUCCESS");

    // A list that names nothing is a mistake, and denies.
    let empty = Fixture::new("services=,");
    empty.enroll("daemon");
    empty.login("daemon", &["123456"]).assert("PAM_SERVICE_ERR");
}

/// The driver run as uid and gid 65534 (nobody), as a screen locker runs as its user.
fn as_nobody(f: &Fixture, user: &str, answers: &[&str]) -> Outcome {
    Outcome::of(
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(driver())
            .args(f.auth_args(user, answers)),
    )
}

#[test]
#[ignore = "needs root"]
fn an_unprivileged_process_authenticating_its_own_user_is_not_judged() {
    require_root("setpriv to run the driver as nobody");
    let f = Fixture::new("");
    f.append_line("auth required pam_permit.so");
    f.enroll("daemon");
    // The store is root's and private; nobody could not read it. Unlocking its own session
    // is not ours to judge: no prompt, the rest of the stack decides.
    let own = as_nobody(&f, "nobody", &["123456"]);
    own.assert("PAM_SUCCESS");
    assert!(!own.said("prompt"), "{own:?}");
    // Another user's login from an unprivileged process still fails closed.
    as_nobody(&f, "daemon", &["123456"]).assert("PAM_SERVICE_ERR");
    // And root authenticating nobody judges it: nobody has no enrollment.
    f.login("nobody", &["123456"])
        .assert("PAM_AUTH_ERR")
        .assert_said("has not been set up yet");
}

#[test]
#[ignore = "needs root"]
fn the_password_typed_again_at_the_code_prompt_is_not_counted() {
    require_root("pam_unix with a private user database");
    // A user whose password has the shape of a code, behind pam_unix as in common-auth.
    let password = "314159";
    let f = Fixture::new("max_failures=1");
    let setup = private_system(&f, "password-only", &[]);
    set_password(&f, "password-only", password);
    let stack = fs::read_to_string(f.dir.join("pam.d").join(SERVICE)).unwrap();
    f.set_module_line(&format!("auth requisite pam_unix.so\n{stack}"));
    let e = f.enroll(USER);
    settle();
    // An IMAP server's conversation: every prompt gets the password.
    let out = f.login_in_namespace(&setup, USER, &[password, password]);
    out.assert("PAM_AUTH_ERR")
        .assert_said("asks only for a password");
    assert_eq!(f.state(USER).state.total.count, 0, "not counted");
    // So SSH logins are not held back by it: the right code still gets in at once.
    f.login_in_namespace(&setup, USER, &[password, &code(&e, 0)])
        .assert("PAM_SUCCESS");
}
