//! ivmfa-enroll enroll, driven through a pseudo-terminal like a person, and its refusals.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use ivmfa_tests::terminal::{plain, Terminal};
use ivmfa_tests::*;

fn root() {
    require_root("ivmfa-enroll runs as root only");
}

#[test]
#[ignore = "needs root"]
fn enroll_like_a_person_then_log_in() {
    root();
    let f = Fixture::new("");
    let mut t = Terminal::spawn(
        80,
        &enroll_bin(),
        &f.cli_args(&["enroll", "daemon", "--issuer", "Example Corp"]),
    );
    t.expect("Enter the 6-digit code");
    let (uri, e) = enrollment_from_uri(&t.screen);
    assert!(
        uri.starts_with("otpauth://totp/Example%20Corp:daemon?secret="),
        "{uri}"
    );
    assert!(
        uri.ends_with("&issuer=Example%20Corp&algorithm=SHA1&digits=6&period=30"),
        "{uri}"
    );
    // The picture in the terminal is the URI, in forced black on white, 80 columns at most.
    assert!(t.screen.contains("\x1b[30;107m"), "forced colours");
    assert_eq!(
        decode_half_blocks(&t.screen, true).as_deref(),
        Some(uri.as_str())
    );
    let widest = plain(&t.screen)
        .lines()
        .filter(|l| l.contains(['▀', '▄', '█']))
        .map(|l| l.chars().count())
        .max()
        .unwrap();
    assert!(widest <= 80, "the QR code is {widest} columns wide");
    assert!(
        plain(&t.screen).contains("Key: "),
        "the key for manual entry is shown"
    );

    // A wrong code first: told so, without the right one.
    settle();
    let right = code(&e, 0);
    t.type_line(&wrong_code(&e));
    t.expect("not correct");
    assert!(
        !plain(&t.screen).contains(&right),
        "the right code was revealed"
    );
    t.type_line(&right);
    let (status, screen) = t.finish();
    assert_eq!(status, 0, "{screen}");
    let screen = plain(&screen);
    assert!(screen.contains("daemon is enrolled"), "{screen}");
    // Ten recovery codes, shown once; only hashes are stored.
    let codes = recovery_codes_in(&screen);
    assert_eq!(codes.len(), 10, "{screen}");
    let stored = f.enrollment("daemon").unwrap();
    assert_eq!(stored.secret, e.secret);
    assert_eq!(stored.recovery.remaining(), 10);
    let file = std::fs::read_to_string(f.user_dir("daemon").join("secret.toml")).unwrap();
    assert!(codes.iter().all(|c| !file.contains(&c.replace('-', ""))));
    let mode = std::fs::metadata(f.user_dir("daemon").join("secret.toml"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // The code used to confirm cannot log in too; the next one does.
    f.login("daemon", &[&right]).assert("PAM_AUTH_ERR");
    f.login("daemon", &[&code(&e, 1)]).assert("PAM_SUCCESS");
}

#[test]
#[ignore = "needs root"]
fn three_wrong_codes_save_nothing() {
    root();
    let f = Fixture::new("");
    let mut t = Terminal::spawn(80, &enroll_bin(), &f.cli_args(&["enroll", "daemon"]));
    t.expect("Enter the 6-digit code");
    let (_, e) = enrollment_from_uri(&t.screen);
    settle();
    for attempt in ["000000x", &wrong_code(&e), ""] {
        t.type_line(attempt);
    }
    let (status, screen) = t.finish();
    assert_eq!(status, 3, "{screen}");
    assert!(
        screen.contains("wrong three times; nothing was saved"),
        "{screen}"
    );
    assert!(f.enrollment("daemon").is_none());
    assert!(!f.user_dir("daemon").join("secret.toml").exists());
}

#[test]
#[ignore = "needs root"]
fn narrow_terminal_and_no_terminal_fall_back_to_the_key() {
    root();
    let f = Fixture::new("");
    let mut t = Terminal::spawn(40, &enroll_bin(), &f.cli_args(&["enroll", "daemon"]));
    t.expect("Enter the 6-digit code");
    assert!(t.screen.contains("40 columns wide"), "{}", t.screen);
    assert!(
        !t.screen.contains(['▀', '▄', '█']),
        "no broken picture: {}",
        t.screen
    );
    assert!(plain(&t.screen).contains("Key: "));
    drop(t);

    // stdout a pipe: no picture, the URI and key instead; stdin at EOF: nothing saved.
    let out = f.cli(&["enroll", "daemon"], "");
    assert!(out.stderr.contains("not a terminal"), "{out:#?}");
    assert!(out.stdout.contains("URI:     otpauth://totp/"), "{out:#?}");
    assert!(!out.stdout.contains('█'));
    out.expect(3, "no code was entered; nothing was saved");
    assert!(f.enrollment("daemon").is_none());
}

#[test]
#[ignore = "needs root"]
fn ansi_rendering_and_image_files_decode() {
    root();
    let f = Fixture::new("");
    let png = f.dir.join("qr.png");
    let svg = f.dir.join("qr.svg");
    let mut t = Terminal::spawn(
        120,
        &enroll_bin(),
        &f.cli_args(&[
            "enroll",
            "daemon",
            "--qr",
            "ansi",
            "--qr-png",
            &png.display().to_string(),
            "--qr-svg",
            &svg.display().to_string(),
        ]),
    );
    t.expect("Enter the 6-digit code");
    let (uri, _) = enrollment_from_uri(&t.screen);
    assert!(t.screen.contains("\x1b[40m  "), "ANSI background cells");
    for path in [&png, &svg] {
        let mode = std::fs::metadata(path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", path.display());
    }
    assert_eq!(
        decode_png(&std::fs::read(&png).unwrap()).as_deref(),
        Some(uri.as_str())
    );
    let rendered = std::process::Command::new("rsvg-convert")
        .args(["-w", "600"])
        .arg(&svg)
        .output()
        .expect("rsvg-convert (librsvg2-bin) renders the SVG");
    assert!(rendered.status.success());
    assert_eq!(decode_png(&rendered.stdout).as_deref(), Some(uri.as_str()));
    let (status, _) = t.finish();
    assert_eq!(status, 3, "stdin closed: nothing saved");
    // Nothing saved, so the pictures of the unused secret are gone too.
    assert!(!png.exists() && !svg.exists());

    // An existing file is never overwritten.
    fs::write(&png, b"precious").unwrap();
    f.cli(
        &["enroll", "daemon", "--qr-png", &png.display().to_string()],
        "",
    )
    .expect(1, "File exists");
    assert_eq!(fs::read(&png).unwrap(), b"precious");
}

#[test]
#[ignore = "needs root"]
fn provisioning_a_known_key_round_trips_through_pam() {
    root();
    let f = Fixture::new("");
    let key = "gezd gnbv gy3t qojq gezd gnbv gy3t qojq"; // lower case, spaces, no padding
    let out = f.cli(
        &[
            "enroll",
            "daemon",
            "--secret",
            key,
            "--no-confirm",
            "--qr",
            "none",
        ],
        "",
    );
    out.expect(0, "daemon is enrolled");
    assert!(
        !out.stdout.contains("GEZDGNBV"),
        "a supplied key is not echoed: {out:#?}"
    );
    let e = f.enrollment("daemon").unwrap();
    assert_eq!(e.secret.expose(), TEST_KEY_BYTES);
    settle();
    f.login("daemon", &[&code(&e, 0)]).assert("PAM_SUCCESS");

    // From standard input, so it never shows in ps.
    let g = Fixture::new("");
    g.cli(
        &["enroll", "bin", "--secret-file", "-", "--no-confirm"],
        &format!("{TEST_KEY}\n"),
    )
    .expect(0, "bin is enrolled");
    assert_eq!(g.enrollment("bin").unwrap().secret.expose(), TEST_KEY_BYTES);

    // From a file only if root wrote it: whoever controls the file picks the secret.
    let file = g.dir.join("key");
    fs::write(&file, format!("{TEST_KEY}\n")).unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
    let path = file.display().to_string();
    g.cli(
        &["enroll", "sys", "--secret-file", &path, "--no-confirm"],
        "",
    )
    .expect(0, "sys is enrolled");
    std::os::unix::fs::chown(&file, Some(65534), None).unwrap();
    g.cli(
        &["enroll", "sync", "--secret-file", &path, "--no-confirm"],
        "",
    )
    .expect(1, "owned by uid 65534");
    assert!(g.enrollment("sync").is_none());
}

#[test]
#[ignore = "needs root"]
fn refusals_and_errors_have_distinct_exit_codes() {
    root();
    let f = Fixture::new("");
    f.cli(
        &[
            "enroll",
            "daemon",
            "--secret",
            "not base32!",
            "--no-confirm",
        ],
        "",
    )
    .expect(2, "not valid base32");
    f.cli(
        &[
            "enroll",
            "daemon",
            "--secret",
            "JBSWY3DPEHPK3PXP",
            "--no-confirm",
        ],
        "",
    )
    .expect(2, "at least 128 bits");
    f.cli(&["enroll", "no-such-user-ivmfa", "--no-confirm"], "")
        .expect(2, "there is no user");
    f.cli(&["enroll", "../etc", "--no-confirm"], "")
        .expect(2, "not a valid user name");
    let unknown = f.cli(&["enroll", "daemon", "--frobnicate"], "");
    assert_eq!(unknown.code, 2, "clap usage error: {unknown:#?}");

    f.enroll_by_cli("daemon");
    f.cli(
        &["enroll", "daemon", "--secret", TEST_KEY, "--no-confirm"],
        "",
    )
    .expect(3, "already enrolled");
    // --force replaces it and keeps the old one in the archive.
    f.cli(
        &[
            "enroll",
            "daemon",
            "--no-confirm",
            "--force",
            "--qr",
            "none",
        ],
        "",
    )
    .expect(0, "enrolled");
    assert_ne!(
        f.enrollment("daemon").unwrap().secret.expose(),
        TEST_KEY_BYTES
    );
    let archived: Vec<_> = std::fs::read_dir(f.store.join("archive"))
        .unwrap()
        .collect();
    assert_eq!(archived.len(), 1);

    // A broken config is a failure with a hint.
    let bad = Fixture::with_config("", "windwo = 1\n");
    bad.cli(&["status"], "").expect(1, "unknown option windwo");
}

/// The login already counts an enrollment made for another uid (an account deleted and its
/// name given to someone else) as no one's; the CLI replaces it without --force, as set-up in
/// the login does, and keeps it in the archive.
#[test]
#[ignore = "needs root"]
fn an_earlier_owners_enrollment_is_replaced_without_force() {
    root();
    let f = Fixture::new("");
    let mut old = f.enroll("daemon");
    old.uid = Some(12345);
    let store = f.store();
    let lock = store.lock(&user_name("daemon")).unwrap();
    store.save_enrollment(&lock, &old).unwrap();
    drop(lock);
    let out = f.cli(&["enroll", "daemon", "--no-confirm", "--qr", "none"], "");
    out.expect(0, "daemon is enrolled");
    assert!(
        out.stderr.contains("made for uid 12345"),
        "the replacement is noted: {out:#?}"
    );
    let new = f.enrollment("daemon").unwrap();
    assert_eq!(new.uid, Some(1));
    assert_ne!(new.secret, old.secret);
    assert_eq!(fs::read_dir(f.store.join("archive")).unwrap().count(), 1);
    // One made for this very account still needs --force.
    f.cli(&["enroll", "daemon", "--no-confirm", "--qr", "none"], "")
        .expect(3, "already enrolled");
}

#[test]
#[ignore = "needs root"]
fn not_root_is_refused() {
    root();
    let f = Fixture::new("");
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(enroll_bin())
        .args(f.cli_args(&["status"]))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("error: ivmfa-enroll must be run as root"),
        "{stderr}"
    );
    assert!(stderr.contains("hint: run it with sudo"), "{stderr}");
}

#[test]
#[ignore = "needs root"]
fn unwritable_store_fails_and_writes_nothing() {
    root();
    let f = Fixture::new("");
    let store = f.store.display().to_string();
    let out = std::process::Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-ec"])
        .arg(format!(
            "mount --bind {store} {store}; mount -o remount,bind,ro {store}; exec \"$0\" \"$@\""
        ))
        .arg(enroll_bin())
        .args(f.cli_args(&["enroll", "daemon", "--secret", TEST_KEY, "--no-confirm"]))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("read-only"), "{stderr}");
    assert!(stderr.contains("hint: "), "{stderr}");
    assert!(f.enrollment("daemon").is_none());
}
