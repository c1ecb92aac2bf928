//! google-authenticator's `forward_pass` through real libpam: one prompt for the password with
//! the code typed after it, as services that ask a single question need (OpenVPN's PAM plugin,
//! IMAP and SMTP AUTH). The module judges the code and hands the password on as PAM_AUTHTOK to
//! the password module after it: pam_unix with `use_first_pass` and a private user database,
//! a real sshd, or pam_exec showing exactly what was handed on.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use ivmfa_core::enrollment::Enrollment;
use ivmfa_tests::sshd::{
    module_line, private_system, require_sshd, set_password, Sshd, PASSWORD, USER,
};
use ivmfa_tests::*;

const ONE_PROMPT: &str = "prompt-hidden: Password & verification code: ";

/// The stack of a service that asks once: the module (requisite, `forward_pass` and `args`),
/// then pam_unix taking the password it hands on.
fn one_prompt_stack(f: &Fixture, args: &str) -> String {
    let ours = module_line(f, &format!("forward_pass {args}")).replacen(
        "auth required",
        "auth requisite",
        1,
    );
    format!("{ours}\nauth required pam_unix.so use_first_pass")
}

/// A fixture with [`one_prompt_stack`] and a private user database in which the test user's
/// password is `password`; returns it with the namespace set-up to log in under.
fn one_prompt(args: &str, password: &str) -> (Fixture, String) {
    require_root("pam_unix with a private user database");
    let f = Fixture::new("");
    f.set_module_line(&one_prompt_stack(&f, args));
    let setup = private_system(&f, "one-prompt", &[]);
    set_password(&f, "one-prompt", password);
    (f, setup)
}

fn failures(f: &Fixture, user: &str) -> u32 {
    f.state(user).state.total.count
}

/// Enrolls `user` with recovery codes, as `ivmfa-enroll enroll` does; returns them as shown.
fn enroll_with_recovery_codes(f: &Fixture, user: &str) -> (Enrollment, Vec<String>) {
    let mut e = f.enroll(user);
    let mut random = vec![0u8; ivmfa_core::recovery::random_bytes_needed(10)];
    ivmfa_core::random::fill(&mut random).unwrap();
    let (shown, set) = ivmfa_core::recovery::generate(&random, 10, now()).unwrap();
    e.recovery = set;
    let store = f.store();
    let lock = store.lock(&user_name(user)).unwrap();
    store.save_enrollment(&lock, &e).unwrap();
    (e, shown.iter().map(|c| c.to_string()).collect())
}

#[test]
#[ignore = "needs root"]
fn one_answer_carries_the_password_and_the_code() {
    let (f, setup) = one_prompt("max_failures=10", PASSWORD);
    let e = f.enroll(USER);
    let step = settle() / 30;
    let out = f.login_in_namespace(&setup, USER, &[&format!("{PASSWORD}{}", code(&e, 0))]);
    out.assert("PAM_SUCCESS");
    assert_eq!(out.prompts(), [ONE_PROMPT], "one prompt, no other");

    // The right password with a wrong code: denied before the password is looked at, and
    // counted like any wrong code.
    let out = f.login_in_namespace(&setup, USER, &[&format!("{PASSWORD}{}", wrong_code(&e))]);
    out.assert("PAM_AUTH_ERR")
        .assert_said("That code is not correct");
    assert_eq!(failures(&f, USER), 1);

    // A wrong password with the right code: the code is accepted and its time step spent,
    // then pam_unix denies.
    let next = code(&e, 1);
    let out = f.login_in_namespace(&setup, USER, &[&format!("not the password{next}")]);
    out.assert("PAM_AUTH_ERR");
    let state = f.state(USER).state;
    assert_eq!(state.last_step, step + 1, "the code's step is spent");
    assert_eq!(state.total.count, 0, "the code was right");
    // So that code is used up, even with the right password.
    f.login_in_namespace(&setup, USER, &[&format!("{PASSWORD}{next}")])
        .assert("PAM_AUTH_ERR")
        .assert_said("already been used");
}

#[test]
#[ignore = "needs root"]
fn a_password_that_ends_in_digits_still_works() {
    for password in ["summer2024", "12345678", "1234"] {
        let (f, setup) = one_prompt("", password);
        let e = f.enroll(USER);
        settle();
        f.login_in_namespace(&setup, USER, &[&format!("{password}{}", code(&e, 0))])
            .assert("PAM_SUCCESS");
    }
}

#[test]
#[ignore = "needs root"]
fn the_password_alone_is_refused_and_counted_only_if_it_ends_in_a_code() {
    let (f, setup) = one_prompt("", PASSWORD);
    f.enroll(USER);
    // A client that sends the password without a code (a mail client's saved password):
    // refused unjudged, so it never holds back the user's other logins.
    let out = f.login_in_namespace(&setup, USER, &[PASSWORD]);
    out.assert("PAM_AUTH_ERR")
        .assert_said("Please type your password followed by the 6-digit code");
    assert_eq!(failures(&f, USER), 0);

    // A password that itself ends in six digits, sent alone, cannot be told from a password
    // with a wrong code after it: it is judged and counted (docs/admin-guide.md).
    let (f, setup) = one_prompt("", "summer123456");
    f.enroll(USER);
    f.login_in_namespace(&setup, USER, &["summer123456"])
        .assert("PAM_AUTH_ERR")
        .assert_said("That code is not correct");
    assert_eq!(failures(&f, USER), 1);
}

#[test]
#[ignore = "needs root"]
fn a_recovery_code_after_the_password_works_once() {
    let (f, setup) = one_prompt("", PASSWORD);
    let (_, codes) = enroll_with_recovery_codes(&f, USER);
    let out = f.login_in_namespace(&setup, USER, &[&format!("{PASSWORD}{}", codes[0])]);
    out.assert("PAM_SUCCESS")
        .assert_said("You have 9 recovery codes left");
    // Upper case, as read off paper.
    let upper = codes[1].to_uppercase();
    f.login_in_namespace(&setup, USER, &[&format!("{PASSWORD}{upper}")])
        .assert("PAM_SUCCESS");
    f.login_in_namespace(&setup, USER, &[&format!("{PASSWORD}{}", codes[0])])
        .assert("PAM_AUTH_ERR");
    assert_eq!(failures(&f, USER), 1);
}

#[test]
#[ignore = "needs root"]
fn users_who_need_no_code_get_the_same_prompt_and_their_password_through() {
    // Rolling out: a user not yet enrolled types the password alone at the same prompt.
    let (f, setup) = one_prompt("unenrolled=allow", PASSWORD);
    let out = f.login_in_namespace(&setup, USER, &[PASSWORD]);
    out.assert("PAM_SUCCESS");
    assert_eq!(out.prompts(), [ONE_PROMPT]);
    f.login_in_namespace(&setup, USER, &["not the password"])
        .assert("PAM_AUTH_ERR");

    // An exempt member (break-glass) likewise; the password is still checked.
    let (f, setup) = one_prompt(&format!("exempt_group={USER}"), PASSWORD);
    f.enroll(USER);
    f.login_in_namespace(&setup, USER, &[PASSWORD])
        .assert("PAM_SUCCESS");
    f.login_in_namespace(&setup, USER, &["not the password"])
        .assert("PAM_AUTH_ERR");
}

#[test]
#[ignore = "needs root"]
fn neither_the_password_nor_the_code_reaches_syslog() {
    let (f, setup) = one_prompt("debug", PASSWORD);
    let e = f.enroll(USER);
    settle();
    for answer in [
        format!("{PASSWORD}{}", code(&e, 0)),
        format!("{PASSWORD}{}", wrong_code(&e)),
        PASSWORD.to_owned(),
    ] {
        // The private user database's mounts, inside the namespace that captures syslog.
        let mut args = vec![
            "-ec".to_owned(),
            format!("{setup}\nexec \"$0\" \"$@\""),
            driver().display().to_string(),
        ];
        args.extend(f.auth_args(USER, &[&answer]));
        let (output, lines) = f.logged(std::path::Path::new("/bin/sh"), &args);
        Outcome::parse(&output);
        assert!(!lines.is_empty(), "nothing logged");
        for line in &lines {
            for secret in ["correct horse", "battery", &code(&e, 0), &wrong_code(&e)] {
                assert!(!line.contains(secret), "{secret:?} in {line}");
            }
        }
    }
}

#[test]
#[ignore = "needs root"]
fn over_ssh_the_password_and_code_go_in_one_answer() {
    require_sshd();
    let f = Fixture::new("");
    let e = f.enroll(USER);
    let sshd = Sshd::start(
        &f,
        "sshd-one-prompt",
        &one_prompt_stack(&f, ""),
        "AuthenticationMethods keyboard-interactive",
    );
    settle();
    // The client's askpass answers any prompt that mentions a password with this.
    let good = sshd.login(&format!("{PASSWORD}{}", code(&e, 0)), "unused", None);
    assert!(good.ok, "{good:#?}\n{}", sshd.log());
    // One prompt (ssh puts the account in front of it), and nothing else asked.
    assert_eq!(good.prompts.lines().count(), 1, "{good:#?}");
    assert!(
        good.prompts.ends_with(") Password & verification code: \n"),
        "{good:#?}"
    );
    let bad = sshd.login(&format!("{PASSWORD}{}", wrong_code(&e)), "unused", None);
    assert!(!bad.ok);
    assert!(bad.stderr.contains("That code is not correct"), "{bad:#?}");
}

/// A stack whose last module, pam_exec, writes what it was handed as PAM_AUTHTOK to a file;
/// returns the file's path.
fn handing_on(f: &Fixture) -> std::path::PathBuf {
    let handed = f.dir.join("handed");
    let script = f.dir.join("capture");
    fs::write(&script, format!("#!/bin/sh\ncat > {}\n", handed.display())).unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    f.append_line(&format!(
        "auth required pam_exec.so quiet expose_authtok {}",
        script.display()
    ));
    handed
}

/// What pam_exec passed on: the item, without the NUL it writes after it.
fn handed_text(path: &std::path::Path) -> String {
    let bytes = fs::read(path).unwrap();
    String::from_utf8(bytes)
        .unwrap()
        .trim_end_matches('\0')
        .to_owned()
}

#[test]
fn the_password_is_handed_on_byte_for_byte_and_only_after_a_right_code() {
    let f = Fixture::new("forward_pass max_failures=10");
    f.set_module_line(
        &fs::read_to_string(f.dir.join("pam.d").join(SERVICE))
            .unwrap()
            .replacen("auth required", "auth requisite", 1),
    );
    let handed = handing_on(&f);
    let e = f.enroll("daemon");
    settle();
    let password = " pässwörd 2024 ";
    let out = f.login("daemon", &[&format!("{password}{}", code(&e, 0))]);
    out.assert("PAM_SUCCESS");
    assert_eq!(
        out.prompts(),
        [ONE_PROMPT],
        "pam_exec found it and did not ask"
    );
    assert_eq!(handed_text(&handed), password);

    // A wrong code hands nothing on: the stack ends at the module (requisite).
    fs::remove_file(&handed).unwrap();
    f.login("daemon", &[&format!("{password}{}", wrong_code(&e))])
        .assert("PAM_AUTH_ERR");
    assert!(!handed.exists());
}

#[test]
fn only_the_one_prompt_is_offered_no_set_up_and_no_reset() {
    // Set-up in the login would let anyone who knows a user name bind a phone to it.
    let f = Fixture::new("forward_pass unenrolled=enroll");
    settle();
    let out = f.login("daemon", &["password123456"]);
    out.assert("PAM_AUTH_ERR")
        .assert_said("must be set up for this account first");
    assert!(!out.said("info:"), "no QR code: {out:?}");
    assert!(f.enrollment("daemon").is_none());

    // The reset keyword is no code here: refused, not counted, no request filed.
    let f = Fixture::new("forward_pass max_failures=1");
    let e = f.enroll("daemon");
    for answer in ["reset", "passwordreset"] {
        f.login("daemon", &[answer])
            .assert("PAM_AUTH_ERR")
            .assert_said("followed by the 6-digit code");
    }
    assert!(!f.store.join("requests/daemon.toml").exists());
    assert_eq!(f.state("daemon").state.total.count, 0);

    // Backing off, it offers no way to ask for a reset either: it asks nothing.
    f.login("daemon", &[&format!("pw{}", wrong_code(&e))])
        .assert("PAM_AUTH_ERR");
    let out = f.login("daemon", &["reset"]);
    out.assert("PAM_AUTH_ERR")
        .assert_said("Too many wrong codes");
    assert!(out.prompts().is_empty(), "{out:?}");
    assert!(!f.store.join("requests/daemon.toml").exists());
}

#[test]
fn the_prompt_holds_the_password_so_echo_code_never_shows_it() {
    let f = Fixture::new("forward_pass echo_code");
    let e = f.enroll("daemon");
    settle();
    let out = f.login("daemon", &[&format!("pw{}", code(&e, 0))]);
    out.assert("PAM_SUCCESS");
    assert_eq!(out.prompts(), [ONE_PROMPT]);
    // A prompt the administrator set is asked as written.
    let f = Fixture::with_config("forward_pass", "prompt = \"Password+OTP: \"\n");
    let e = f.enroll("daemon");
    let out = f.login("daemon", &[&format!("pw{}", code(&e, 0))]);
    assert_eq!(out.prompts(), ["prompt-hidden: Password+OTP: "]);
}

#[test]
#[ignore = "needs root"]
fn use_first_pass_with_forward_pass_splits_what_an_earlier_module_collected() {
    // All input collected up front (pam_exec asks), split here, the password on to pam_unix.
    let (f, setup) = one_prompt("use_first_pass", PASSWORD);
    let stack = fs::read_to_string(f.dir.join("pam.d").join(SERVICE)).unwrap();
    f.set_module_line(&format!(
        "auth required pam_exec.so quiet expose_authtok /usr/bin/cat\n{stack}"
    ));
    let e = f.enroll(USER);
    settle();
    let out = f.login_in_namespace(&setup, USER, &[&format!("{PASSWORD}{}", code(&e, 0))]);
    out.assert("PAM_SUCCESS");
    assert_eq!(out.prompts(), ["prompt-hidden: Password: "]);
    f.login_in_namespace(&setup, USER, &[&format!("not it{}", code(&e, 1))])
        .assert("PAM_AUTH_ERR");
}

/// `ivmfa-enroll check` on one PAM file `openvpn` holding `stack` (the module by path).
fn check_stack(f: &Fixture, stack: &str) -> CliOutput {
    let dir = f.dir.join("pam-check");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let stack = stack.replace("pam_ivmfa.so", &module_path().display().to_string());
    fs::write(dir.join("openvpn"), stack).unwrap();
    // Stands in for `sshd -T`, which this check is not about.
    let sshd = f.dir.join("sshd-T");
    fs::write(
        &sshd,
        "#!/bin/sh\necho usepam yes\necho kbdinteractiveauthentication yes\n\
         echo authenticationmethods keyboard-interactive\n",
    )
    .unwrap();
    fs::set_permissions(&sshd, fs::Permissions::from_mode(0o755)).unwrap();
    f.cli(
        &[
            "check",
            "--pam-dir",
            &dir.display().to_string(),
            "--sshd",
            &sshd.display().to_string(),
        ],
        "",
    )
}

#[test]
#[ignore = "needs root"]
fn check_expects_forward_pass_before_a_password_step_that_takes_the_password() {
    require_root("ivmfa-enroll runs as root only");
    let f = Fixture::new("");
    f.enroll_by_cli("daemon");
    let problems = |out: &CliOutput| -> Vec<String> {
        out.stdout
            .lines()
            .filter(|l| l.starts_with("problem:") && l.contains("openvpn"))
            .map(str::to_owned)
            .collect()
    };

    let out = check_stack(
        &f,
        "auth requisite pam_ivmfa.so forward_pass\nauth required pam_unix.so use_first_pass\n",
    );
    assert!(problems(&out).is_empty(), "{}", out.stdout);
    assert!(
        out.stdout.contains(
            "forward_pass: pam_ivmfa.so takes the password and the code in one answer and \
             hands the password on to pam_unix.so"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("run up that user's failure count"),
        "{}",
        out.stdout
    );

    // A password module that asks again would get the code's answer a second time.
    let out = check_stack(
        &f,
        "auth requisite pam_ivmfa.so forward_pass\nauth required pam_unix.so\n",
    );
    let found = problems(&out);
    assert!(
        found.len() == 1 && found[0].contains("asks for it again"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("add use_first_pass to pam_unix.so"),
        "{}",
        out.stdout
    );

    // Without forward_pass, the module before the password step is the problem it was.
    let out = check_stack(
        &f,
        "auth requisite pam_ivmfa.so\nauth required pam_unix.so use_first_pass\n",
    );
    assert!(
        problems(&out)
            .iter()
            .any(|l| l.contains("before the password step")),
        "{}",
        out.stdout
    );
}

#[test]
fn eight_digits_at_the_end_are_one_attempt_with_two_readings() {
    // Scratch codes imported from google-authenticator are eight digits, so "pw" + a scratch
    // code also reads as "pw" + two digits + a code.
    let f = Fixture::new("forward_pass max_failures=10");
    f.set_module_line(
        &fs::read_to_string(f.dir.join("pam.d").join(SERVICE))
            .unwrap()
            .replacen("auth required", "auth requisite", 1),
    );
    let handed = handing_on(&f);
    let mut e = f.enroll("daemon");
    e.recovery =
        ivmfa_core::recovery::from_plain(&[9; 16], ["12345678", "87654321"].into_iter(), now());
    let store = f.store();
    let lock = store.lock(&user_name("daemon")).unwrap();
    store.save_enrollment(&lock, &e).unwrap();
    drop(lock);

    // Neither reading right: one failure, not two.
    f.login("daemon", &["pw11223344"]).assert("PAM_AUTH_ERR");
    assert_eq!(f.state("daemon").state.total.count, 1);

    // The scratch code reading is right: the password before it goes on.
    f.login("daemon", &["pw12345678"])
        .assert("PAM_SUCCESS")
        .assert_said("Recovery code accepted");
    assert_eq!(handed_text(&handed), "pw");

    // The code reading is right (a password ending in two digits): that password goes on.
    settle();
    f.login("daemon", &[&format!("pw87{}", code(&e, 0))])
        .assert("PAM_SUCCESS");
    assert_eq!(handed_text(&handed), "pw87");
}

#[test]
fn a_name_that_is_no_user_gets_the_same_prompt_and_answer_as_a_wrong_code() {
    // The module asks before any password is checked: were the prompt only for real users,
    // it would tell a stranger which names exist.
    let f = Fixture::new("forward_pass");
    let e = f.enroll("daemon");
    let known = f.login("daemon", &[&format!("hunter2{}", wrong_code(&e))]);
    let unknown = f.login("no-such-user-ivmfa", &["hunter2123456"]);
    known.assert("PAM_AUTH_ERR");
    unknown.assert("PAM_USER_UNKNOWN");
    assert_eq!(unknown.prompts(), [ONE_PROMPT]);
    assert_eq!(known.prompts(), unknown.prompts());
    unknown.assert_said("That code is not correct");
}
