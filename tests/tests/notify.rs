//! The `notify_command` runs as root, so it must run in a state of our choosing, not the
//! caller's: working directory, umask, identity, resource limits, signals. Only a program
//! that no one but root can have written is run, and its timeout holds whatever the host
//! process does with SIGCHLD. All through real libpam and the real module.

use std::fs;
use std::os::unix::fs::{chown, symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

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

/// Whether `pid` is a process that has not ended (a zombie has).
fn running(pid: &str) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| !stat.contains(") Z "))
}

fn has_cap_sys_resource() -> bool {
    const CAP_SYS_RESOURCE: u32 = 24;
    fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|caps| u64::from_str_radix(caps.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_SYS_RESOURCE) != 0)
}

#[test]
#[ignore = "needs root"]
fn notify_command_runs_in_a_clean_environment() {
    require_root("setpriv, and a notify program owned by root");
    let f = Fixture::new("");
    let seen = f.dir.join("seen");
    // The shell's own signal state, read by the shell itself: a child reading it could catch
    // dash with every signal blocked for a moment around its fork of that child.
    let record = f.root_script(
        "notify-record",
        &format!(
            "exec > {}\n\
             echo \"cwd $(pwd)\"\n\
             echo \"umask $(umask)\"\n\
             echo \"uid $(id -ru) $(id -u)\"\n\
             echo \"gid $(id -rg) $(id -g)\"\n\
             echo \"groups $(id -G)\"\n\
             echo \"fsize $(ulimit -f)\"\n\
             echo \"nofile $(ulimit -n)\"\n\
             echo \"cpu $(ulimit -t)\"\n\
             echo \"core $(ulimit -c)\"\n\
             while read -r key value; do case $key in SigBlk:|SigIgn:) echo \"$key $value\";; \
             esac; done < /proc/$$/status",
            seen.display()
        ),
    );
    notify_config(&f, &record, 30);
    f.enroll("daemon");
    // The caller: elsewhere, permissive umask, small limits (ten descriptors, below what the
    // supervisor would otherwise hand out), terminal signals ignored, some
    // signals blocked (--block-signals), and run by a user through a setuid-root program
    // (real uid and gid nobody, effective root), as under su. Lowered hard limits can only
    // be raised again with CAP_SYS_RESOURCE, which some containers lack: there, only the
    // soft ones are lowered.
    let which = if has_cap_sys_resource() { "" } else { "-S " };
    let hostile = format!(
        "cd /usr/share && umask 000 && ulimit -c unlimited && ulimit {which}-f 2000 && \
         ulimit {which}-n 10 && ulimit {which}-t 120 && trap '' HUP INT QUIT TERM && \
         exec setpriv --ruid=65534 --rgid=65534 --groups=65534 -- \"$0\" \"$@\""
    );
    let mut args = f.auth_args("daemon", &["reset"]);
    args.push("--block-signals".into());
    let started = Instant::now();
    Outcome::of(
        Command::new("sh")
            .args(["-c", &hostile])
            .arg(driver())
            .args(args),
    )
    .assert("PAM_AUTH_ERR")
    .assert_said("sent to the administrators");
    // A program that is done is not waited for until the timeout.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    let seen = fs::read_to_string(&seen).expect("the notify program ran");
    let seen: Vec<&str> = seen.lines().collect();
    assert_eq!(
        seen,
        [
            "cwd /",
            "umask 0077",
            "uid 0 0",
            "gid 0 0",
            "groups 0",
            "fsize unlimited",
            "nofile 1024",
            "cpu unlimited",
            "core 0",
            "SigBlk: 0000000000000000",
            "SigIgn: 0000000000000000",
        ]
    );
}

#[test]
#[ignore = "needs root"]
fn a_caller_limit_that_cannot_be_lifted_keeps_the_program_from_running() {
    require_root("setpriv, and a private /dev/log in a mount namespace");
    let f = Fixture::new("");
    let ran = f.dir.join("ran");
    let program = f.root_script("notify", &format!("touch {}", ran.display()));
    notify_config(&f, &program, 10);
    f.enroll("daemon");
    // A hard limit on descriptors (dash's ulimit sets both) below the 1024 the program gets,
    // in a host without the capability to raise it, as in some containers.
    let host = "ulimit -n 64 && exec setpriv --bounding-set=-sys_resource \
                --inh-caps=-sys_resource -- \"$0\" \"$@\"";
    let mut args = vec![
        "-c".to_string(),
        host.into(),
        driver().display().to_string(),
    ];
    args.extend(f.auth_args("daemon", &["reset"]));
    let (output, lines) = f.logged(Path::new("/bin/sh"), &args);
    Outcome::parse(&output)
        .assert("PAM_AUTH_ERR")
        .assert_said("sent to the administrators");
    assert!(!ran.exists(), "it ran with a crippled limit");
    logged_line(
        &lines,
        &[
            "notify_command",
            "cannot set its resource limits",
            "not permitted",
        ],
    );
}

#[test]
#[ignore = "needs root"]
fn a_notify_program_others_could_have_written_is_not_run_and_is_logged() {
    require_root("chown, and a private /dev/log in a mount namespace");
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

#[test]
#[ignore = "needs root"]
fn the_notify_timeout_holds_whatever_the_host_does_with_sigchld() {
    require_root("a notify program owned by root");
    const TIMEOUT: u64 = 2;
    // A program that hangs with a child of its own, and one that leaves a child running.
    let programs = [("hangs", "sleep 30"), ("leaves", "exit 0")];
    for sigchld in [None, Some("ignore"), Some("reap")] {
        for (what, end) in programs {
            let f = Fixture::new("");
            let pids = f.dir.join("pids");
            let program = f.root_script(
                what,
                &format!("sleep 30 &\necho $! $$ > {}\n{end}", pids.display()),
            );
            notify_config(&f, &program, TIMEOUT);
            f.enroll("daemon");
            let mut args = f.auth_args("daemon", &["reset"]);
            if let Some(how) = sigchld {
                args.extend(["--sigchld".into(), how.into()]);
            }
            let started = Instant::now();
            f.run(args)
                .assert("PAM_AUTH_ERR")
                .assert_said("sent to the administrators");
            let took = started.elapsed();
            let case = format!("a program that {what}, host SIGCHLD {sigchld:?}");
            assert!(took < Duration::from_secs(TIMEOUT + 3), "{case}: {took:?}");
            let pids = fs::read_to_string(&pids).unwrap();
            // What the kernel still has to deliver after the kill, it delivers at once.
            std::thread::sleep(Duration::from_millis(300));
            for pid in pids.split_whitespace() {
                assert!(!running(pid), "{case}: {pid} outlived the login");
            }
        }
    }
}

#[test]
#[ignore = "needs root"]
fn a_notify_failure_is_reported_whatever_the_host_does_with_sigchld() {
    require_root("a private /dev/log in a mount namespace");
    for sigchld in ["ignore", "reap"] {
        let f = Fixture::new("");
        let program = f.root_script("fails", "sleep 0.2\nexit 3");
        notify_config(&f, &program, 10);
        f.enroll("daemon");
        let mut args = f.auth_args("daemon", &["reset"]);
        args.extend(["--sigchld".into(), sigchld.into()]);
        let (output, lines) = f.logged(&driver(), &args);
        Outcome::parse(&output).assert("PAM_AUTH_ERR");
        logged_line(&lines, &["notify_command", "ended with exit status: 3"]);
    }
}
