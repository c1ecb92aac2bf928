//! Hardware tokens with a counter (HOTP) through real libpam and the real CLI: `enroll
//! --hotp`, codes in order and once each, the look-ahead window, `resync`, recovery codes,
//! and `import-oath` of a usersfile that the real pam_oath wrote.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ivmfa_core::enrollment::{Enrollment, Secret};
use ivmfa_tests::*;

fn root() {
    require_root("ivmfa-enroll runs as root only");
}

/// [`TEST_KEY_BYTES`] (RFC 4226's key) in hex, as token vendors and pam_oath give keys.
const HEX_KEY: &str = "3132333435363738393031323334353637383930";

fn token() -> Enrollment {
    Enrollment::hotp(Secret::from_bytes(TEST_KEY_BYTES).unwrap(), 0)
}

/// The code the token shows for `counter`.
fn press(counter: u64) -> String {
    ivmfa_core::hotp::code_at(&token(), counter)
        .unwrap()
        .to_string()
}

/// `enroll daemon --hotp` with the key in hex on standard input, without confirming.
fn enroll_token(f: &Fixture, extra: &[&str]) -> CliOutput {
    let mut args = vec![
        "enroll",
        "daemon",
        "--hotp",
        "--hex",
        "--secret-file",
        "-",
        "--no-confirm",
    ];
    args.extend(extra);
    f.cli(&args, &format!("{HEX_KEY}\n"))
}

fn next_counter(f: &Fixture) -> Option<u64> {
    f.state("daemon").state.hotp_next(&token().secret)
}

#[test]
#[ignore = "needs root"]
fn codes_work_in_order_once_each_and_only_ahead_within_the_window() {
    root();
    let f = Fixture::new("");
    let out = enroll_token(&f, &[]);
    out.expect(0, "daemon is enrolled with a hardware token");
    assert!(!out.stdout.contains(HEX_KEY) && !out.stdout.contains(TEST_KEY));
    assert_eq!(f.enrollment("daemon").unwrap().secret, token().secret);
    f.login("daemon", &[&press(0)]).assert("PAM_SUCCESS");
    f.login("daemon", &[&press(1)]).assert("PAM_SUCCESS");
    f.login("daemon", &[&press(1)])
        .assert("PAM_AUTH_ERR")
        .assert_said("already been used")
        .assert_said("Press the button on your token");
    // Five presses that never reached a login: the sixth is five ahead, in the window.
    f.login("daemon", &[&press(7)]).assert("PAM_SUCCESS");
    assert_eq!(next_counter(&f), Some(8));
    // Past the window (10 by default): refused and counted, and the counter stays.
    f.login("daemon", &[&press(19)])
        .assert("PAM_AUTH_ERR")
        .assert_said("That code is not correct.");
    let state = f.state("daemon").state;
    assert_eq!((state.total.count, next_counter(&f)), (1, Some(8)));
    // The codes passed over are spent, and count as failures too.
    for skipped in [2, 6] {
        f.login("daemon", &[&press(skipped)])
            .assert("PAM_AUTH_ERR")
            .assert_said("already been used");
    }
    assert_eq!(f.state("daemon").state.total.count, 3);
    f.cli(&["status", "daemon"], "")
        .expect(0, "codes: hardware token (HOTP), 6 digits, next counter 8")
        .expect(
            0,
            "back-off: local logins for 30 seconds more (after 3 failures)",
        );
    // Back-off after three failures holds a right code back like any other.
    f.login("daemon", &[&press(8)])
        .assert("PAM_AUTH_ERR")
        .assert_said("Too many wrong codes");
}

#[test]
#[ignore = "needs root"]
fn one_token_code_many_racing_logins_exactly_one_success() {
    root();
    // The losers' failures must not hold the next round back.
    let f = Fixture::new("max_failures=1000 max_failures_per_user=10000");
    enroll_token(&f, &[]).expect(0, "enrolled");
    // Each round races one code a press ahead of the counter (in the window): it wins once,
    // and the counter moves past it exactly once.
    for round in 0..20u64 {
        let ahead = press(round * 2 + 1);
        let outputs = f.race("daemon", &vec![ahead.clone(); 8]);
        let results: Vec<&str> = outputs
            .iter()
            .map(|o| {
                o.lines()
                    .find_map(|l| l.strip_prefix("result: "))
                    .unwrap_or("no result")
            })
            .collect();
        let wins = results.iter().filter(|r| **r == "PAM_SUCCESS").count();
        assert_eq!(wins, 1, "round {round}: {results:?}");
        assert_eq!(next_counter(&f), Some(round * 2 + 2), "round {round}");
    }
}

#[test]
#[ignore = "needs root"]
fn the_window_is_hotp_window() {
    root();
    let f = Fixture::new("hotp_window=2");
    enroll_token(&f, &[]).expect(0, "enrolled");
    f.login("daemon", &[&press(3)]).assert("PAM_AUTH_ERR");
    f.login("daemon", &[&press(2)]).assert("PAM_SUCCESS");
    let f = Fixture::with_config("", "hotp_window = 0\n");
    enroll_token(&f, &[]).expect(0, "enrolled");
    f.login("daemon", &[&press(1)]).assert("PAM_AUTH_ERR");
    f.login("daemon", &[&press(0)]).assert("PAM_SUCCESS");
}

#[test]
#[ignore = "needs root"]
fn enrolling_confirms_with_a_press_that_cannot_log_in_again() {
    root();
    let f = Fixture::new("");
    let stdin = format!("{TEST_KEY}\n123\n{}\n", press(2));
    f.cli(
        &["enroll", "daemon", "--hotp", "--secret-file", "-"],
        &stdin,
    )
    .expect(0, "Code confirmed.")
    .expect(0, "That code is not correct.");
    f.login("daemon", &[&press(2)])
        .assert("PAM_AUTH_ERR")
        .assert_said("already been used");
    f.login("daemon", &[&press(3)]).assert("PAM_SUCCESS");
}

#[test]
#[ignore = "needs root"]
fn resync_moves_the_counter_to_a_token_that_ran_ahead() {
    root();
    let f = Fixture::new("");
    enroll_token(&f, &[]).expect(0, "enrolled");
    f.login("daemon", &[&press(40)]).assert("PAM_AUTH_ERR");
    f.cli(&["resync", "daemon", &press(40), &press(42)], "")
        .expect(
            3,
            "not consecutive codes of daemon's token within 1000 presses after counter 0",
        );
    assert_eq!(next_counter(&f), Some(0), "a failed resync changes nothing");
    let out = f.cli(&["resync", "daemon", &press(40), &press(41)], "");
    out.expect(0, "the server now expects counter 42 (it expected 0)");
    // The two codes given are used up, and the one before them stays wrong.
    f.login("daemon", &[&press(41)]).assert("PAM_AUTH_ERR");
    f.login("daemon", &[&press(42)]).assert("PAM_SUCCESS");
    // Never backwards: codes before the counter are not searched.
    f.cli(&["resync", "daemon", &press(10), &press(11)], "")
        .expect(3, "after counter 43");
    f.login("daemon", &[&press(43)]).assert("PAM_SUCCESS");
}

#[test]
#[ignore = "needs root"]
fn recovery_codes_work_for_a_token_and_leave_its_counter_alone() {
    root();
    let f = Fixture::new("");
    let out = enroll_token(&f, &["--recovery-codes", "2"]);
    let codes = recovery_codes_in(&out.stdout);
    assert_eq!(codes.len(), 2, "{out:?}");
    f.login("daemon", &[&codes[0]])
        .assert("PAM_SUCCESS")
        .assert_said("You have 1 recovery code left");
    f.login("daemon", &[&codes[0]]).assert("PAM_AUTH_ERR");
    assert_eq!(next_counter(&f), Some(0));
    f.login("daemon", &[&press(0)]).assert("PAM_SUCCESS");
}

#[test]
#[ignore = "needs root"]
fn the_same_key_provisioned_again_keeps_its_counter_and_a_new_key_starts_afresh() {
    root();
    let f = Fixture::new("");
    enroll_token(&f, &[]).expect(0, "enrolled");
    for counter in 0..3 {
        f.login("daemon", &[&press(counter)]).assert("PAM_SUCCESS");
    }
    enroll_token(&f, &["--force"]).expect(0, "enrolled");
    f.login("daemon", &[&press(2)]).assert("PAM_AUTH_ERR");
    f.login("daemon", &[&press(3)]).assert("PAM_SUCCESS");
    // Another token: its first code works, whatever the old one's counter was.
    let other = Enrollment::hotp(Secret::from_bytes(&[0x42; 20]).unwrap(), 0);
    f.cli(
        &[
            "enroll",
            "daemon",
            "--hotp",
            "--hex",
            "--secret-file",
            "-",
            "--no-confirm",
            "--force",
        ],
        &format!("{}\n", "42".repeat(20)),
    )
    .expect(0, "enrolled");
    let first = ivmfa_core::hotp::code_at(&other, 0).unwrap().to_string();
    f.login("daemon", &[&first]).assert("PAM_SUCCESS");
}

/// pam_oath.so from libpam-oath, which the tests drive as pam_oath's users would.
fn require_pam_oath() {
    let found = ["/lib", "/usr/lib", "/lib64", "/usr/lib64"]
        .iter()
        .any(|base| {
            fs::read_dir(base)
                .into_iter()
                .flatten()
                .flatten()
                .any(|d| d.path().join("security/pam_oath.so").exists())
                || Path::new(base).join("security/pam_oath.so").exists()
        });
    assert!(found, "pam_oath.so is needed: apt-get install libpam-oath");
}

fn usersfile(f: &Fixture, text: &str) -> PathBuf {
    let path = f.dir.join("users.oath");
    fs::write(&path, text).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    path
}

#[test]
#[ignore = "needs root"]
fn import_oath_takes_over_what_pam_oath_wrote() {
    root();
    require_pam_oath();
    let f = Fixture::new("");
    let users = usersfile(
        &f,
        &format!("# tokens\nHOTP daemon - {HEX_KEY}\nHOTP/T30 bin + {HEX_KEY}\n"),
    );
    // Logins through pam_oath itself first, so the file holds what pam_oath writes.
    let stack = f.dir.join("pam.d").join(SERVICE);
    let ivmfa = fs::read_to_string(&stack).unwrap();
    f.set_module_line(&format!(
        "auth required pam_oath.so usersfile={} window=20 digits=6",
        users.display()
    ));
    f.login("daemon", &[&press(3)]).assert("PAM_SUCCESS");
    let app = Enrollment::standard(token().secret, 0);
    settle();
    let used = code(&app, 0);
    f.login("bin", &[&used]).assert("PAM_SUCCESS");
    let written = fs::read_to_string(&users).unwrap();
    assert!(
        written.contains(&format!("daemon\t-\t{HEX_KEY}\t3\t{}\t", press(3))),
        "pam_oath wrote: {written}"
    );
    fs::write(&stack, ivmfa).unwrap();

    let file = users.display().to_string();
    let out = f.cli(&["import-oath", "daemon", "--file", &file], "");
    out.expect(0, "Imported daemon's hardware token")
        .expect(0, "counter 4");
    assert!(!out.stdout.contains(HEX_KEY) && !out.stdout.contains(&press(3)));
    f.login("daemon", &[&press(3)])
        .assert("PAM_AUTH_ERR")
        .assert_said("already been used");
    f.login("daemon", &[&press(4)]).assert("PAM_SUCCESS");
    // The time-based line: the code pam_oath took stays used, the next one works.
    f.cli(&["import-oath", "bin", "--file", &file], "")
        .expect(0, "Imported bin's time-based account");
    f.login("bin", &[&used])
        .assert("PAM_AUTH_ERR")
        .assert_said("already been used");
    f.login("bin", &[&code(&app, 1)]).assert("PAM_SUCCESS");
    // A second import needs --force; the file is left as it was.
    f.cli(&["import-oath", "daemon", "--file", &file], "")
        .expect(3, "already enrolled");
    assert_eq!(fs::read_to_string(&users).unwrap(), written);
}

#[test]
#[ignore = "needs root"]
fn import_oath_takes_eight_digit_tokens_and_refuses_pins() {
    root();
    let f = Fixture::new("");
    let eight = Enrollment {
        digits: 8,
        ..token()
    };
    let at = |c: u64| ivmfa_core::hotp::code_at(&eight, c).unwrap().to_string();
    let users = usersfile(
        &f,
        &format!(
            "HOTP/E/8\tdaemon\t-\t{HEX_KEY}\t6\t{}\t2025-01-01T10:00:00L\n\
             HOTP\tbin\t4711\t{HEX_KEY}\n",
            at(6)
        ),
    );
    let file = users.display().to_string();
    f.cli(&["import-oath", "daemon", "--file", &file], "")
        .expect(0, "counter 7 (8 digits)");
    f.login("daemon", &[&at(6)]).assert("PAM_AUTH_ERR");
    f.login("daemon", &[&at(7)]).assert("PAM_SUCCESS");
    let out = f.cli(&["import-oath", "bin", "--file", &file], "");
    out.expect(2, "line 2: the line has a PIN");
    assert!(!out.stderr.contains("4711"));
    assert!(f.enrollment("bin").is_none());
}
