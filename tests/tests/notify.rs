//! The `notify_command` runs as root: only a program that no one but root can have written
//! is run. Through real libpam and the real module.

use std::fs;
use std::os::unix::fs::{chown, symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use ivmfa_tests::*;

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn notify_config(f: &Fixture, program: &Path, timeout: u64) {
    fs::write(
        &f.config,
        format!(
            "notify_command = \"{}\"\nnotify_timeout_seconds = {timeout}\n",
            program.display()
        ),
    )
    .unwrap();
}

#[test]
fn a_notify_program_others_could_have_written_is_not_run_and_is_logged() {
    if !require_root("chown, and a private /dev/log in a mount namespace") {
        return;
    }
    // Each case: how the program is laid out, and what the log must say about it.
    type Layout = fn(&Fixture, &str) -> PathBuf;
    let cases: [(&str, Layout, &str); 9] = [
        (
            "a file owned by another user",
            |f, body| {
                let p = f.root_script("theirs", body);
                chown(&p, Some(1), None).unwrap();
                p
            },
            "is owned by uid 1, not root",
        ),
        (
            "a group-writable file",
            |f, body| {
                let p = f.root_script("group-writable", body);
                set_mode(&p, 0o775);
                p
            },
            "is writable by its group",
        ),
        (
            "a file writable by others",
            |f, body| {
                let p = f.root_script("other-writable", body);
                set_mode(&p, 0o757);
                p
            },
            "is writable by others",
        ),
        (
            "a file in a directory writable by others (the temporary directory)",
            |f, body| {
                let p = f.dir.join("in-tmp");
                fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
                set_mode(&p, 0o755);
                p
            },
            "is writable by others",
        ),
        (
            "a file in a group-writable directory",
            |f, body| {
                let dir = f.root_dir().join("shared");
                fs::create_dir(&dir).unwrap();
                set_mode(&dir, 0o775);
                let p = dir.join("prog");
                fs::rename(f.root_script("prog", body), &p).unwrap();
                p
            },
            "shared is writable by its group",
        ),
        (
            "a file in a directory owned by another user",
            |f, body| {
                let dir = f.root_dir().join("their-dir");
                fs::create_dir(&dir).unwrap();
                set_mode(&dir, 0o755);
                chown(&dir, Some(1), None).unwrap();
                let p = dir.join("prog");
                fs::rename(f.root_script("prog", body), &p).unwrap();
                p
            },
            "their-dir is owned by uid 1, not root",
        ),
        (
            "a symbolic link to a good program",
            |f, body| {
                let good = f.root_script("good", body);
                let link = f.root_dir().join("link");
                symlink(&good, &link).unwrap();
                link
            },
            "link is a symbolic link",
        ),
        (
            "a good program under a symbolic link to a directory",
            |f, body| {
                let real = f.root_dir().join("real");
                fs::create_dir(&real).unwrap();
                set_mode(&real, 0o755);
                fs::rename(f.root_script("prog", body), real.join("prog")).unwrap();
                symlink(&real, f.root_dir().join("alias")).unwrap();
                f.root_dir().join("alias/prog")
            },
            "alias is a symbolic link",
        ),
        (
            "a file no one may execute",
            |f, body| {
                let p = f.root_script("not-executable", body);
                set_mode(&p, 0o644);
                p
            },
            "is not executable",
        ),
    ];
    for (what, layout, why) in cases {
        let f = Fixture::new("");
        let ran = f.dir.join("ran");
        let program = layout(&f, &format!("touch {}", ran.display()));
        notify_config(&f, &program, 10);
        f.enroll("daemon");
        let (out, lines) = f.login_logged("daemon", &["reset"]);
        out.assert("PAM_AUTH_ERR")
            .assert_said("sent to the administrators");
        assert!(!ran.exists(), "{what} was run");
        let program = program.display().to_string();
        let line = logged_line(&lines, &["notify_command", &program, "refused", why]);
        assert!(
            line.starts_with("<84>"),
            "logged at authpriv.warning: {line}"
        );
    }
}
