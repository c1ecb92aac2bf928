//! Golden tests of ivmfa-enroll's error paths: for each one, the exact stderr and exit status,
//! so that a change of wording shows up in review as a change of a file under
//! `tests/golden/cli/`.
//!
//! Each row of [`CASES`] names its golden file `tests/golden/cli/<name>.stderr`, prepares a
//! fresh fixture, runs the CLI with the fixture's `--config` and `--store`, and compares the
//! exit status with the row and stderr with the file. Errors of ivmfa-enroll are the two lines
//! `error: ...` / `hint: ...`; usage errors found by clap are clap's own text.
//!
//! Before comparing, what differs from run to run is replaced by a placeholder:
//! the fixture's store by `<store>`, the fixture's directory by `<dir>` (in that order, so a
//! path in the store reads `<store>/users/daemon/secret.toml`), and the enrollment time in
//! "(since ...)" by `<time>`. Arguments may name the fixture's directory as `{dir}` and its
//! store as `{store}`.
//!
//! To regenerate the goldens after a deliberate change of wording, run with `IVMFA_BLESS=1`:
//! the actual (placeholder-substituted) stderr is written to the files instead of compared;
//! review the diff before committing it.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

use ivmfa_tests::*;

fn root() {
    require_root("ivmfa-enroll runs as root only");
}

/// One error path: golden name, fixture set-up, arguments, standard input, exit status.
struct Case {
    name: &'static str,
    setup: fn(&Fixture),
    args: &'static [&'static str],
    stdin: &'static str,
    code: i32,
}

const fn case(
    name: &'static str,
    setup: fn(&Fixture),
    args: &'static [&'static str],
    stdin: &'static str,
    code: i32,
) -> Case {
    Case {
        name,
        setup,
        args,
        stdin,
        code,
    }
}

// Exit statuses (ivmfa-enroll/src/error.rs; clap's usage errors are 2 as well).
const FAILED: i32 = 1;
const USAGE: i32 = 2;
const REFUSED: i32 = 3;

const K: &str = TEST_KEY;

fn nothing(_: &Fixture) {}

fn enrolled(f: &Fixture) {
    f.enroll_by_cli("daemon");
}

fn secret_file(f: &Fixture) -> PathBuf {
    f.user_dir("daemon").join("secret.toml")
}

fn corrupt_secret(f: &Fixture) {
    enrolled(f);
    fs::write(secret_file(f), "this is not toml [\n").unwrap();
}

fn secret_missing_key(f: &Fixture) {
    enrolled(f);
    fs::write(secret_file(f), "version = 1\n").unwrap();
}

fn secret_newer_version(f: &Fixture) {
    enrolled(f);
    let text = fs::read_to_string(secret_file(f)).unwrap();
    assert!(text.contains("version = 1"));
    fs::write(secret_file(f), text.replace("version = 1", "version = 3")).unwrap();
}

fn group_writable_secret(f: &Fixture) {
    enrolled(f);
    fs::set_permissions(secret_file(f), fs::Permissions::from_mode(0o660)).unwrap();
}

fn foreign_owned_secret(f: &Fixture) {
    enrolled(f);
    std::os::unix::fs::chown(secret_file(f), Some(65534), Some(65534)).unwrap();
}

fn secret_is_symlink(f: &Fixture) {
    enrolled(f);
    fs::remove_file(secret_file(f)).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", secret_file(f)).unwrap();
}

fn corrupt_state(f: &Fixture) {
    enrolled(f);
    fs::write(f.user_dir("daemon").join("state"), "garbage").unwrap();
}

fn open_store(f: &Fixture) {
    fs::set_permissions(&f.store, fs::Permissions::from_mode(0o777)).unwrap();
}

fn open_user_dir(f: &Fixture) {
    enrolled(f);
    fs::set_permissions(f.user_dir("daemon"), fs::Permissions::from_mode(0o777)).unwrap();
}

fn store_is_file(f: &Fixture) {
    fs::remove_dir(&f.store).unwrap();
    fs::write(&f.store, "").unwrap();
    fs::set_permissions(&f.store, fs::Permissions::from_mode(0o600)).unwrap();
}

fn config_unknown_key(f: &Fixture) {
    fs::write(&f.config, "no_such_key = 1\n").unwrap();
}

fn config_bad_value(f: &Fixture) {
    fs::write(&f.config, "window = 99\n").unwrap();
}

fn config_not_toml(f: &Fixture) {
    fs::write(&f.config, "window = [\n").unwrap();
}

fn config_open(f: &Fixture) {
    fs::set_permissions(&f.config, fs::Permissions::from_mode(0o666)).unwrap();
}

fn private_file(f: &Fixture, name: &str, text: &str, mode: u32) {
    let path = f.dir.join(name);
    fs::write(&path, text).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
}

fn existing_png(f: &Fixture) {
    private_file(f, "qr.png", "", 0o600);
}

fn ga_hotp(f: &Fixture) {
    private_file(f, "ga", &format!("{K}\n\" HOTP_COUNTER 1\n"), 0o600);
}

fn ga_no_totp(f: &Fixture) {
    private_file(f, "ga", &format!("{K}\n\" WINDOW_SIZE 3\n"), 0o600);
}

fn ga_empty(f: &Fixture) {
    private_file(f, "ga", "", 0o600);
}

fn ga_bad_secret(f: &Fixture) {
    private_file(f, "ga", "not a key!\n\" TOTP_AUTH\n", 0o600);
}

fn ga_bad_line(f: &Fixture) {
    private_file(f, "ga", &format!("{K}\n\" TOTP_AUTH\nhello\n"), 0o600);
}

fn ga_bad_window(f: &Fixture) {
    private_file(
        f,
        "ga",
        &format!("{K}\n\" TOTP_AUTH\n\" WINDOW_SIZE 99\n"),
        0o600,
    );
}

fn ga_open(f: &Fixture) {
    private_file(f, "ga", &format!("{K}\n\" TOTP_AUTH\n"), 0o644);
}

fn key_file_open(f: &Fixture) {
    private_file(f, "key", &format!("{K}\n"), 0o644);
}

fn key_file_bad(f: &Fixture) {
    private_file(f, "key", "not a key!\n", 0o600);
}

fn already_enrolled_ga(f: &Fixture) {
    enrolled(f);
    ga_ok(f);
}

fn ga_ok(f: &Fixture) {
    private_file(f, "ga", &format!("{K}\n\" TOTP_AUTH\n"), 0o600);
}

/// RFC 4226's key in hex, as token vendors and pam_oath give keys.
const HEX: &str = "3132333435363738393031323334353637383930";

fn token_enrolled(f: &Fixture) {
    f.cli(
        &["enroll", "daemon", "--hotp", "--secret", K, "--no-confirm"],
        "",
    )
    .expect(0, "enrolled");
}

fn oath_file(f: &Fixture, text: &str, mode: u32) {
    private_file(f, "users.oath", text, mode);
}

fn oath_pin(f: &Fixture) {
    oath_file(f, &format!("HOTP daemon 1234 {HEX}\n"), 0o600);
}

fn oath_other_user(f: &Fixture) {
    oath_file(f, &format!("HOTP bin - {HEX}\n"), 0o600);
}

fn oath_unknown_type(f: &Fixture) {
    oath_file(f, &format!("HOTP/T90 daemon - {HEX}\n"), 0o600);
}

fn oath_two_lines(f: &Fixture) {
    oath_file(
        f,
        &format!("HOTP daemon - {HEX}\n# x\nHOTP/T30 daemon - {HEX}\n"),
        0o600,
    );
}

fn oath_short_key(f: &Fixture) {
    oath_file(f, "HOTP daemon - 3132333435\n", 0o600);
}

fn oath_damaged(f: &Fixture) {
    // 755224 is the code for counter 0, not 4.
    oath_file(f, &format!("HOTP daemon - {HEX} 4 755224\n"), 0o600);
}

fn oath_ok(f: &Fixture) {
    oath_file(f, &format!("HOTP daemon - {HEX}\n"), 0o600);
}

fn oath_group_writable(f: &Fixture) {
    oath_file(f, &format!("HOTP daemon - {HEX}\n"), 0o620);
}

fn oath_foreign_owned(f: &Fixture) {
    oath_ok(f);
    std::os::unix::fs::chown(f.dir.join("users.oath"), Some(65534), Some(65534)).unwrap();
}

fn already_enrolled_oath(f: &Fixture) {
    enrolled(f);
    oath_ok(f);
}

const NO_USER: &str = "nosuchuser-ivmfa";

#[rustfmt::skip]
const CASES: &[Case] = &[
    // ivmfa-enroll's own usage errors (exit 2).
    case("enroll_bad_user_name", nothing, &["enroll", "bad/name", "--secret", K, "--no-confirm"], "", USAGE),
    case("enroll_no_such_user", nothing, &["enroll", NO_USER, "--secret", K, "--no-confirm"], "", USAGE),
    case("enroll_no_user_given", nothing, &["enroll"], "", USAGE),
    case("enroll_secret_bad_base32", nothing, &["enroll", "daemon", "--secret", "not base32!", "--no-confirm"], "", USAGE),
    case("enroll_secret_too_short", nothing, &["enroll", "daemon", "--secret", "GEZDGNBV", "--no-confirm"], "", USAGE),
    case("enroll_secret_file_missing", nothing, &["enroll", "daemon", "--secret-file", "{dir}/missing", "--no-confirm"], "", USAGE),
    case("enroll_secret_file_bad_key", key_file_bad, &["enroll", "daemon", "--secret-file", "{dir}/key", "--no-confirm"], "", USAGE),
    case("enroll_secret_stdin_empty", nothing, &["enroll", "daemon", "--secret-file", "-", "--no-confirm"], "", USAGE),
    case("enroll_bad_issuer", nothing, &["enroll", "daemon", "--issuer", "a:b", "--secret", K, "--no-confirm"], "", USAGE),
    case("status_bad_user_name", nothing, &["status", "bad/name"], "", USAGE),
    case("recovery_codes_no_such_user", nothing, &["recovery-codes", NO_USER], "", USAGE),
    case("reset_deny_empty_reason", nothing, &["reset", "deny", "daemon", "--reason", " "], "", USAGE),
    case("reset_deny_multiline_reason", nothing, &["reset", "deny", "daemon", "--reason", "one\ntwo"], "", USAGE),
    case("check_bad_from", nothing, &["check", "--from", "example.org"], "", USAGE),
    case("check_bad_user", nothing, &["check", "--user", "bad/name"], "", USAGE),
    case("import_missing_file", nothing, &["import-google-authenticator", "daemon", "--file", "{dir}/missing"], "", USAGE),
    case("import_no_file_in_home", nothing, &["import-google-authenticator", "daemon"], "", USAGE),
    case("import_hotp", ga_hotp, &["import-google-authenticator", "daemon", "--file", "{dir}/ga"], "", USAGE),
    case("import_no_totp_line", ga_no_totp, &["import-google-authenticator", "daemon", "--file", "{dir}/ga"], "", USAGE),
    case("import_empty_file", ga_empty, &["import-google-authenticator", "daemon", "--file", "{dir}/ga"], "", USAGE),
    case("import_bad_secret", ga_bad_secret, &["import-google-authenticator", "daemon", "--file", "{dir}/ga"], "", USAGE),
    case("import_unknown_line", ga_bad_line, &["import-google-authenticator", "daemon", "--file", "{dir}/ga"], "", USAGE),
    case("import_bad_window", ga_bad_window, &["import-google-authenticator", "daemon", "--file", "{dir}/ga"], "", USAGE),
    case("enroll_hotp_no_key", nothing, &["enroll", "daemon", "--hotp", "--no-confirm"], "", USAGE),
    case("enroll_hotp_bad_hex", nothing, &["enroll", "daemon", "--hotp", "--hex", "--secret-file", "-", "--no-confirm"], "31323g\n", USAGE),
    case("enroll_hotp_hex_as_base32", nothing, &["enroll", "daemon", "--hotp", "--secret-file", "-", "--no-confirm"], "3132333435363738393031323334353637383930\n", USAGE),
    case("enroll_hotp_stdin_empty", nothing, &["enroll", "daemon", "--hotp", "--secret-file", "-", "--no-confirm"], "", USAGE),
    case("resync_no_such_user", nothing, &["resync", NO_USER, "755224", "287082"], "", USAGE),
    case("resync_bad_code", token_enrolled, &["resync", "daemon", "7552", "287082"], "", USAGE),
    case("import_oath_missing_file", nothing, &["import-oath", "daemon", "--file", "{dir}/missing"], "", USAGE),
    case("import_oath_pin", oath_pin, &["import-oath", "daemon", "--file", "{dir}/users.oath"], "", USAGE),
    case("import_oath_no_line", oath_other_user, &["import-oath", "daemon", "--file", "{dir}/users.oath"], "", USAGE),
    case("import_oath_unknown_type", oath_unknown_type, &["import-oath", "daemon", "--file", "{dir}/users.oath"], "", USAGE),
    case("import_oath_two_lines", oath_two_lines, &["import-oath", "daemon", "--file", "{dir}/users.oath"], "", USAGE),
    case("import_oath_short_key", oath_short_key, &["import-oath", "daemon", "--file", "{dir}/users.oath"], "", USAGE),
    case("import_oath_damaged", oath_damaged, &["import-oath", "daemon", "--file", "{dir}/users.oath"], "", USAGE),
    // clap's usage errors (exit 2, clap's wording).
    case("clap_unknown_subcommand", nothing, &["frobnicate"], "", USAGE),
    case("clap_remove_without_user", nothing, &["remove"], "", USAGE),
    case("clap_recovery_count_zero", nothing, &["recovery-codes", "daemon", "--count", "0"], "", USAGE),
    case("clap_enroll_recovery_codes_too_many", nothing, &["enroll", "daemon", "--recovery-codes", "1000"], "", USAGE),
    case("clap_secret_and_secret_file", nothing, &["enroll", "daemon", "--secret", K, "--secret-file", "-"], "", USAGE),
    case("clap_bad_qr_style", nothing, &["enroll", "daemon", "--qr", "sixel"], "", USAGE),
    case("clap_deny_without_reason", nothing, &["reset", "deny", "daemon"], "", USAGE),
    case("clap_hex_without_hotp", nothing, &["enroll", "daemon", "--hex", "--secret", K], "", USAGE),
    case("clap_hotp_with_qr_png", nothing, &["enroll", "daemon", "--hotp", "--qr-png", "{dir}/qr.png"], "", USAGE),
    case("clap_resync_one_code", nothing, &["resync", "daemon", "755224"], "", USAGE),
    case("clap_import_oath_without_file", nothing, &["import-oath", "daemon"], "", USAGE),
    // Refusals (exit 3).
    case("enroll_already_enrolled", enrolled, &["enroll", "daemon", "--secret", K, "--no-confirm"], "", REFUSED),
    case("enroll_no_code_entered", nothing, &["enroll", "daemon", "--secret", K], "", REFUSED),
    case("enroll_input_ended", nothing, &["enroll", "daemon", "--secret", K], "abc\n", REFUSED),
    case("enroll_wrong_three_times", nothing, &["enroll", "daemon", "--secret", K], "abc\nabc\nabc\n", REFUSED),
    case("remove_not_enrolled", nothing, &["remove", "daemon"], "", REFUSED),
    case("recovery_codes_not_enrolled", nothing, &["recovery-codes", "daemon"], "", REFUSED),
    case("reset_approve_no_request", enrolled, &["reset", "approve", "daemon"], "", REFUSED),
    case("reset_deny_no_request", enrolled, &["reset", "deny", "daemon", "--reason", "Call us"], "", REFUSED),
    case("import_already_enrolled", already_enrolled_ga, &["import-google-authenticator", "daemon", "--file", "{dir}/ga"], "", REFUSED),
    case("enroll_hotp_wrong_three_times", nothing, &["enroll", "daemon", "--hotp", "--secret-file", "-"], "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\n000000\n000000\nabc\n", REFUSED),
    case("resync_not_enrolled", nothing, &["resync", "daemon", "755224", "287082"], "", REFUSED),
    case("resync_time_based", enrolled, &["resync", "daemon", "755224", "287082"], "", REFUSED),
    case("resync_not_consecutive", token_enrolled, &["resync", "daemon", "755224", "359152"], "", REFUSED),
    case("import_oath_already_enrolled", already_enrolled_oath, &["import-oath", "daemon", "--file", "{dir}/users.oath"], "", REFUSED),
    // Failures (exit 1).
    case("status_no_such_user", nothing, &["status", NO_USER], "", FAILED),
    case("enroll_qr_png_exists", existing_png, &["enroll", "daemon", "--secret", K, "--no-confirm", "--qr-png", "{dir}/qr.png"], "", FAILED),
    case("enroll_qr_png_no_dir", nothing, &["enroll", "daemon", "--secret", K, "--no-confirm", "--qr-png", "{dir}/nodir/qr.png"], "", FAILED),
    case("enroll_qr_svg_exists", existing_png, &["enroll", "daemon", "--secret", K, "--no-confirm", "--qr-svg", "{dir}/qr.png"], "", FAILED),
    case("enroll_secret_file_open_mode", key_file_open, &["enroll", "daemon", "--secret-file", "{dir}/key", "--no-confirm"], "", FAILED),
    case("import_open_mode", ga_open, &["import-google-authenticator", "daemon", "--file", "{dir}/ga"], "", FAILED),
    case("import_oath_group_writable", oath_group_writable, &["import-oath", "daemon", "--file", "{dir}/users.oath"], "", FAILED),
    case("import_oath_foreign_owned", oath_foreign_owned, &["import-oath", "daemon", "--file", "{dir}/users.oath"], "", FAILED),
    case("status_corrupt_secret", corrupt_secret, &["status", "daemon"], "", FAILED),
    case("status_all_corrupt_secret", corrupt_secret, &["status"], "", FAILED),
    case("status_secret_missing_key", secret_missing_key, &["status", "daemon"], "", FAILED),
    case("status_secret_newer_version", secret_newer_version, &["status", "daemon"], "", FAILED),
    case("status_corrupt_state", corrupt_state, &["status", "daemon"], "", FAILED),
    case("remove_corrupt_secret", corrupt_secret, &["remove", "daemon"], "", FAILED),
    case("enroll_over_corrupt_secret", corrupt_secret, &["enroll", "daemon", "--secret", K, "--no-confirm"], "", FAILED),
    case("status_group_writable_secret", group_writable_secret, &["status", "daemon"], "", FAILED),
    case("status_foreign_owned_secret", foreign_owned_secret, &["status", "daemon"], "", FAILED),
    case("status_secret_is_symlink", secret_is_symlink, &["status", "daemon"], "", FAILED),
    case("status_open_user_dir", open_user_dir, &["status", "daemon"], "", FAILED),
    case("status_open_store", open_store, &["status"], "", FAILED),
    case("enroll_open_store", open_store, &["enroll", "daemon", "--secret", K, "--no-confirm"], "", FAILED),
    // A missing store is created; one under a file cannot be.
    case("enroll_store_under_a_file", nothing, &["--store", "{dir}/ivmfa.toml/store", "enroll", "daemon", "--secret", K, "--no-confirm"], "", FAILED),
    case("status_store_is_file", store_is_file, &["status"], "", FAILED),
    case("config_missing", nothing, &["--config", "{dir}/missing.toml", "status"], "", FAILED),
    case("config_unknown_key", config_unknown_key, &["status"], "", FAILED),
    case("config_bad_value", config_bad_value, &["status"], "", FAILED),
    case("config_not_toml", config_not_toml, &["status"], "", FAILED),
    case("config_open_mode", config_open, &["status"], "", FAILED),
];

/// Replaces what differs between runs by placeholders (see the top of this file).
fn normalize(f: &Fixture, text: &str) -> String {
    let mut text = text
        .replace(&f.store.display().to_string(), "<store>")
        .replace(&f.dir.display().to_string(), "<dir>");
    while let Some(start) = text.find("(since 2") {
        let from = start + "(since ".len();
        let Some(len) = text[from..].find(')') else {
            break;
        };
        text.replace_range(from..from + len, "<time>");
    }
    text
}

/// Runs ivmfa-enroll as [`Fixture::cli`] does, but with a known environment: no `SUDO_USER`
/// (enroll's default user) and no colours or locale from the caller.
fn run(f: &Fixture, args: &[&str], stdin: &str, as_user: Option<u32>) -> CliOutput {
    let dir = f.dir.display().to_string();
    let store = f.store.display().to_string();
    let args: Vec<String> = args
        .iter()
        .map(|a| a.replace("{dir}", &dir).replace("{store}", &store))
        .collect();
    // The fixture's --config and --store, unless the row gives its own (clap takes each once).
    let mut all = Vec::new();
    for (option, value) in [("--config", &f.config), ("--store", &f.store)] {
        if !args.iter().any(|a| a == option) {
            all.extend([option.to_owned(), value.display().to_string()]);
        }
    }
    all.extend(args);
    let mut cmd = match as_user {
        Some(uid) => {
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={uid}"))
                .arg(format!("--regid={uid}"))
                .arg("--clear-groups")
                .arg(enroll_bin());
            c
        }
        None => Command::new(enroll_bin()),
    };
    CliOutput::of(
        cmd.args(&all)
            .env_remove("SUDO_USER")
            .env("LC_ALL", "C")
            .env("NO_COLOR", "1")
            .env_remove("CLICOLOR_FORCE"),
        stdin,
    )
}

/// Compares (or, blessing, writes) one golden; returns what is wrong, if anything.
fn check(f: &Fixture, name: &str, code: i32, out: &CliOutput) -> Option<String> {
    golden::check(name, code, &normalize(f, &out.stderr), out)
}

#[test]
#[ignore = "needs root"]
fn every_error_path_matches_its_golden_stderr() {
    root();
    let mut failures = Vec::new();
    for c in CASES {
        let f = Fixture::new("");
        (c.setup)(&f);
        let out = run(&f, c.args, c.stdin, None);
        failures.extend(check(&f, c.name, c.code, &out));
    }
    assert!(
        failures.is_empty(),
        "{} of {} error paths do not match:\n\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n\n")
    );
}

#[test]
#[ignore = "needs root"]
fn not_root_matches_its_golden_stderr() {
    root();
    let f = Fixture::new("");
    // nobody: every command but --help needs root.
    for (name, args) in [
        ("not_root_status", &["status"][..]),
        ("not_root_check", &["check"][..]),
    ] {
        let out = run(&f, args, "", Some(65534));
        if let Some(wrong) = check(&f, name, REFUSED, &out) {
            panic!("{wrong}");
        }
    }
}

/// A golden file without a row would go stale unnoticed.
#[test]
fn every_golden_file_has_a_case() {
    let mut names: BTreeSet<String> = CASES.iter().map(|c| c.name.to_owned()).collect();
    names.extend(["not_root_status".into(), "not_root_check".into()]);
    assert_eq!(names.len(), CASES.len() + 2, "duplicate case names");
    // The fleet tier (fleet_admin.rs) checks its own, named fleet_*.
    golden::every_file_has_a_case(&names, |name| !name.starts_with("fleet_"));
}
