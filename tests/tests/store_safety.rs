//! Hostile and broken store files: every case denies, says why in syslog, and leaves the
//! store as it was; once the fault is gone the next good login works.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use ivmfa_core::enrollment::Enrollment;
use ivmfa_tests::*;

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Applies `break_it`, checks a right code is refused as a service error, applies `mend`,
/// checks the next code is accepted.
fn refused_until_mended(break_it: impl FnOnce(&Fixture), mend: impl FnOnce(&Fixture)) {
    let f = Fixture::new("");
    let e = f.enroll("daemon");
    settle();
    break_it(&f);
    f.login("daemon", &[&code(&e, 0)])
        .assert("PAM_SERVICE_ERR")
        .assert_said("not available");
    mend(&f);
    f.login("daemon", &[&code(&e, 0)]).assert("PAM_SUCCESS");
}

fn secret(f: &Fixture) -> std::path::PathBuf {
    f.user_dir("daemon").join("secret.toml")
}

fn state(f: &Fixture) -> std::path::PathBuf {
    f.user_dir("daemon").join("state")
}

fn moved_aside(path: &Path) -> std::path::PathBuf {
    path.with_extension("aside")
}

#[test]
fn symlinked_files_and_directories() {
    // secret.toml, state and lock as links to a good copy elsewhere.
    for name in ["secret.toml", "state", "lock"] {
        eprintln!("symlinked {name}");
        refused_until_mended(
            |f| {
                let p = f.user_dir("daemon").join(name);
                let real = f.dir.join(format!("real-{name}"));
                fs::rename(&p, &real).unwrap();
                symlink(&real, &p).unwrap();
            },
            |f| {
                let p = f.user_dir("daemon").join(name);
                fs::remove_file(&p).unwrap();
                fs::rename(f.dir.join(format!("real-{name}")), &p).unwrap();
            },
        );
    }
    // The user's directory and the users directory as links.
    for dir in ["users/daemon", "users"] {
        eprintln!("symlinked {dir}");
        refused_until_mended(
            |f| {
                let p = f.store.join(dir);
                fs::rename(&p, f.dir.join("real-dir")).unwrap();
                symlink(f.dir.join("real-dir"), &p).unwrap();
            },
            |f| {
                let p = f.store.join(dir);
                fs::remove_file(&p).unwrap();
                fs::rename(f.dir.join("real-dir"), &p).unwrap();
            },
        );
    }
}

#[test]
fn group_or_world_bits() {
    for mode in [0o640, 0o604, 0o660, 0o644, 0o602] {
        refused_until_mended(|f| chmod(&secret(f), mode), |f| chmod(&secret(f), 0o600));
    }
    refused_until_mended(|f| chmod(&state(f), 0o644), |f| chmod(&state(f), 0o600));
    refused_until_mended(
        |f| chmod(&f.user_dir("daemon"), 0o755),
        |f| chmod(&f.user_dir("daemon"), 0o700),
    );
    refused_until_mended(|f| chmod(&f.store, 0o755), |f| chmod(&f.store, 0o700));
}

#[test]
#[ignore = "needs root"]
fn wrong_owner() {
    require_root("chown a store file to another user");
    let nobody = 65534;
    refused_until_mended(
        |f| std::os::unix::fs::chown(secret(f), Some(nobody), None).unwrap(),
        |f| std::os::unix::fs::chown(secret(f), Some(0), None).unwrap(),
    );
    refused_until_mended(
        |f| std::os::unix::fs::chown(f.user_dir("daemon"), Some(nobody), None).unwrap(),
        |f| std::os::unix::fs::chown(f.user_dir("daemon"), Some(0), None).unwrap(),
    );
}

#[test]
fn not_a_regular_file() {
    // A directory, and a FIFO (which must not hang the login), in place of the secret.
    refused_until_mended(
        |f| {
            fs::rename(secret(f), moved_aside(&secret(f))).unwrap();
            fs::create_dir(secret(f)).unwrap();
        },
        |f| {
            fs::remove_dir(secret(f)).unwrap();
            fs::rename(moved_aside(&secret(f)), secret(f)).unwrap();
        },
    );
    refused_until_mended(
        |f| {
            fs::rename(state(f), moved_aside(&state(f))).unwrap();
            let ok = std::process::Command::new("mkfifo")
                .args(["-m", "600"])
                .arg(state(f))
                .status()
                .unwrap()
                .success();
            assert!(ok);
        },
        |f| {
            fs::remove_file(state(f)).unwrap();
            fs::rename(moved_aside(&state(f)), state(f)).unwrap();
        },
    );
}

#[test]
fn oversized_truncated_and_corrupt_files() {
    let keep = |p: &Path| {
        fs::copy(p, moved_aside(p)).unwrap();
    };
    let restore = |p: &Path| fs::rename(moved_aside(p), p).unwrap();
    type Damage = fn(&Path);
    let damages: [(&str, Damage); 5] = [
        ("oversized", |p| {
            let mut text = fs::read_to_string(p).unwrap();
            text.push_str(&"# padding\n".repeat(8000));
            fs::write(p, text).unwrap();
        }),
        ("truncated", |p| {
            let text = fs::read(p).unwrap();
            fs::write(p, &text[..text.len() / 2]).unwrap();
        }),
        ("garbage", |p| {
            fs::write(p, b"\x00\xff\xfe not toml [[[").unwrap()
        }),
        ("empty", |p| fs::write(p, b"").unwrap()),
        ("future version", |p| {
            let text = fs::read_to_string(p).unwrap();
            fs::write(p, text.replace("version = 1", "version = 99")).unwrap();
        }),
    ];
    for (what, damage) in damages {
        for file in [secret as fn(&Fixture) -> std::path::PathBuf, state] {
            refused_until_mended(
                |f| {
                    let p = file(f);
                    keep(&p);
                    damage(&p);
                },
                |f| restore(&file(f)),
            );
            eprintln!("{what}: refused and recovered");
        }
    }
}

#[test]
#[ignore = "needs root"]
fn a_torn_state_write_leaves_the_state_before_it() {
    let f = Fixture::new("");
    let e = f.enroll("daemon");
    settle();
    f.login("daemon", &[&code(&e, 0)]).assert("PAM_SUCCESS");
    let used = f.state("daemon").state.last_step;
    tear_older_slot(&state(&f));
    let torn = f.state("daemon");
    assert!(torn.damaged_slot);
    assert_eq!(
        torn.state.last_step, used,
        "the login's write is intact and in force"
    );
    let replay = code(&e, 0);
    require_root("a private /dev/log to see the warning");
    let (out, lines) = f.login_logged("daemon", &[&replay]);
    out.assert("PAM_AUTH_ERR").assert_said("already been used");
    logged_line(&lines, &["the state file has a damaged slot"]);
    // That check's write went into the torn slot and mended the file.
    let mended = f.state("daemon");
    assert!(!mended.damaged_slot);
    let mended = mended.state;
    assert_eq!((mended.last_step, mended.total.count), (used, 1));
}

#[test]
fn state_from_version_0_1_is_read_and_replaced() {
    let f = Fixture::new("");
    let e = f.enroll("daemon");
    settle();
    let now = ivmfa_tests::now();
    let legacy = f.user_dir("daemon").join("state.toml");
    fs::remove_file(state(&f)).unwrap();
    fs::write(&legacy, format!("version = 1\nlast_step = {}\n", now / 30)).unwrap();
    chmod(&legacy, 0o600);
    // Its watermark still holds: the current code was used before the upgrade.
    f.login("daemon", &[&code(&e, 0)])
        .assert("PAM_AUTH_ERR")
        .assert_said("already been used");
    assert!(!legacy.exists(), "replaced by the new file");
    let migrated = f.state("daemon").state;
    assert_eq!((migrated.last_step, migrated.total.count), (now / 30, 1));
}

#[test]
fn stale_temp_files_do_not_matter() {
    let f = Fixture::new("");
    let e = f.enroll("daemon");
    settle();
    let requests = f.store.join("requests");
    fs::create_dir(&requests).unwrap();
    chmod(&requests, 0o700);
    // A writer killed before its rename left these; the fresh ones could as well belong to a
    // writer at work right now (requests/ is shared by every user's lock).
    let temp = |dir: &Path, name: &str, age: &str| {
        let path = dir.join(name);
        fs::write(&path, b"version = 1\nlast_step = 99999999999\n").unwrap();
        chmod(&path, 0o600);
        let touched = std::process::Command::new("touch")
            .args(["-d", &format!("{age} ago")])
            .arg(&path)
            .status()
            .unwrap();
        assert!(touched.success());
        path
    };
    let user_dir = f.user_dir("daemon");
    let stale = temp(&user_dir, ".tmp-state.99999.1.0", "10 minutes");
    let fresh = temp(&user_dir, ".tmp-state.99999.2.0", "1 second");
    let stale_request = temp(&requests, ".tmp-bin.toml.99999.1.0", "1 hour");
    let fresh_request = temp(&requests, ".tmp-bin.toml.99999.2.0", "1 second");
    f.login("daemon", &[&code(&e, 0)]).assert("PAM_SUCCESS");
    // A new enrollment and a reset request (each under its user's lock) sweep away what is
    // older than a few minutes, and leave the rest.
    f.enroll("daemon");
    f.login("daemon", &["reset"]).assert("PAM_AUTH_ERR");
    assert!(!stale.exists() && !stale_request.exists());
    assert!(fresh.exists() && fresh_request.exists());
}

fn assert_store_intact(f: &Fixture, e: &Enrollment) {
    assert_eq!(f.enrollment("daemon").as_ref(), Some(e));
    f.state("daemon");
}

#[test]
#[ignore = "needs root"]
fn read_only_store_denies_and_keeps_the_store() {
    require_root("a read-only bind mount in a private mount namespace");
    let f = Fixture::new("");
    let e = f.enroll("daemon");
    settle();
    let store = f.store.display().to_string();
    let setup = format!("mount --bind {store} {store}\nmount -o remount,bind,ro {store}");
    // After the prompt the lock cannot be opened for writing: no code can be recorded (a
    // right one could be replayed) and no failure counted, and both end alike.
    for answer in [code(&e, 0), wrong_code(&e)] {
        let out = f.login_in_namespace(&setup, "daemon", &[&answer]);
        out.assert("PAM_SERVICE_ERR")
            .assert_said("prompt-hidden")
            .assert_said("not available");
    }
    assert_store_intact(&f, &e);
    f.login("daemon", &[&code(&e, 0)]).assert("PAM_SUCCESS");
}

#[test]
#[ignore = "needs root"]
fn a_full_store_file_system_loses_nothing_and_tells_nothing() {
    require_root("a small tmpfs in a private mount namespace");
    let f = Fixture::new("");
    let e = f.enroll("daemon");
    settle();
    let store = f.store.display().to_string();
    let copy = f.dir.join("copy").display().to_string();
    // Copy the store onto a 64 KiB tmpfs mounted over it, then fill that up.
    let setup = |before_filling: &str| {
        format!(
            "cp -a {store} {copy}\n\
             mount -t tmpfs -o size=64k,mode=700 ivmfa-full {store}\n\
             cp -a {copy}/. {store}/\n\
             {before_filling}\n\
             dd if=/dev/zero of={store}/fill bs=4k 2>/dev/null || true"
        )
    };
    // The state is rewritten in place, so a full disk does not stop logins or failure counts.
    let out = f.login_in_namespace(&setup(""), "daemon", &[&code(&e, 0)]);
    out.assert("PAM_SUCCESS");
    let out = f.login_in_namespace(&setup(""), "daemon", &[&wrong_code(&e)]);
    out.assert("PAM_AUTH_ERR");
    // Without a state file one has to be created: then neither the right code nor a failure
    // can be recorded, and both end alike, so a full disk is no right/wrong oracle.
    let no_state = format!("rm {}", state(&f).display());
    for answer in [code(&e, 0), wrong_code(&e)] {
        let out = f.login_in_namespace(&setup(&no_state), "daemon", &[&answer]);
        out.assert("PAM_SERVICE_ERR")
            .assert_said("prompt-hidden")
            .assert_said("not available");
    }
    assert_store_intact(&f, &e);
    f.login("daemon", &[&code(&e, 0)]).assert("PAM_SUCCESS");
}
