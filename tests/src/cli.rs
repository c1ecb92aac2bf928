//! Running ivmfa-enroll against a fixture's config and store.

use std::path::PathBuf;
use std::process::Command;

use ivmfa_core::enrollment::{Enrollment, Secret};

use crate::{built, terminal, Fixture};

/// A known key (RFC 6238's test key, base32), for provisioning with `--secret`.
pub const TEST_KEY: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
/// [`TEST_KEY`] decoded.
pub const TEST_KEY_BYTES: &[u8] = b"12345678901234567890";

pub fn enroll_bin() -> PathBuf {
    built("ivmfa-enroll")
}

impl Fixture {
    /// Enrolls `user` with [`TEST_KEY`] through `ivmfa-enroll --secret --no-confirm`.
    pub fn enroll_by_cli(&self, user: &str) {
        self.cli(&["enroll", user, "--secret", TEST_KEY, "--no-confirm"], "")
            .expect(0, "enrolled");
    }

    /// `--config` and `--store` of this fixture, then `args`.
    pub fn cli_args(&self, args: &[&str]) -> Vec<String> {
        let mut all = vec![
            "--config".to_string(),
            self.config.display().to_string(),
            "--store".to_string(),
            self.store.display().to_string(),
        ];
        all.extend(args.iter().map(|a| a.to_string()));
        all
    }

    /// Runs ivmfa-enroll with this fixture's config and store; no terminal, stdin as given.
    pub fn cli(&self, args: &[&str], stdin: &str) -> CliOutput {
        CliOutput::of(Command::new(enroll_bin()).args(self.cli_args(args)), stdin)
    }
}

#[derive(Debug)]
pub struct CliOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    /// Runs `cmd` with `stdin` as its input (no terminal) and collects what it said.
    pub fn of(cmd: &mut Command, stdin: &str) -> CliOutput {
        use std::io::Write;
        use std::process::Stdio;
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The command may exit before reading its input.
        let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
        let out = child.wait_with_output().unwrap();
        CliOutput {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Checks the exit status and that stderr is the two-line `error:` / `hint:` form
    /// containing `text` (or, for status 0, that stdout contains it).
    #[track_caller]
    pub fn expect(&self, code: i32, text: &str) -> &Self {
        assert_eq!(self.code, code, "{self:#?}");
        if code == 0 {
            assert!(self.stdout.contains(text), "{text:?} not in {self:#?}");
        } else {
            assert!(self.stderr.contains(text), "{text:?} not in {self:#?}");
            let lines: Vec<&str> = self.stderr.lines().collect();
            assert!(
                lines.len() >= 2
                    && lines[lines.len() - 2].starts_with("error: ")
                    && lines[lines.len() - 1].starts_with("hint: "),
                "not an error:/hint: pair: {self:#?}"
            );
        }
        self
    }
}

/// The secret in an otpauth URI shown on screen, as an enrollment to compute codes with.
pub fn enrollment_from_uri(screen: &str) -> (String, Enrollment) {
    let plain = terminal::plain(screen);
    let uri = plain
        .lines()
        .find_map(|l| l.strip_prefix("URI:"))
        .expect("a URI line on screen")
        .trim()
        .to_owned();
    let secret = uri
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("secret="))
        .unwrap();
    let e = Enrollment::standard(Secret::from_base32(secret).unwrap(), 0);
    (uri, e)
}

/// Golden files of ivmfa-enroll's standard error, `tests/golden/cli/<name>.stderr`: compared,
/// or written instead with `IVMFA_BLESS=1` (review the diff before committing it).
pub mod golden {
    use std::collections::BTreeSet;
    use std::fs;
    use std::path::PathBuf;

    use super::CliOutput;

    pub fn dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("golden/cli")
    }

    pub fn blessing() -> bool {
        std::env::var("IVMFA_BLESS").is_ok_and(|v| v == "1")
    }

    /// Compares `actual` (the run's stderr with what differs between runs already replaced)
    /// and the exit status with golden `name`; returns what is wrong, if anything. Every error
    /// of ivmfa-enroll itself is the `error:`/`hint:` pair; clap's (`clap_*`) are its own.
    pub fn check(name: &str, code: i32, actual: &str, out: &CliOutput) -> Option<String> {
        let path = dir().join(format!("{name}.stderr"));
        let mut wrong = Vec::new();
        if out.code != code {
            wrong.push(format!("exit status {} instead of {code}", out.code));
        }
        if !name.starts_with("clap_") {
            let lines: Vec<&str> = actual.lines().collect();
            if !(lines.len() == 2
                && lines[0].starts_with("error: ")
                && lines[1].starts_with("hint: "))
            {
                wrong.push("stderr is not exactly an error:/hint: pair".into());
            }
        }
        if blessing() {
            fs::create_dir_all(dir()).unwrap();
            fs::write(&path, actual).unwrap();
        } else {
            match fs::read_to_string(&path) {
                Ok(expected) if expected == actual => {}
                Ok(expected) => wrong.push(format!(
                    "stderr differs from {}:\n--- expected\n{expected}--- actual\n{actual}",
                    path.display()
                )),
                Err(e) => wrong.push(format!(
                    "{}: {e} (IVMFA_BLESS=1 writes it)\n--- actual\n{actual}",
                    path.display()
                )),
            }
        }
        (!wrong.is_empty())
            .then(|| format!("{name}: {}\nstdout: {:?}", wrong.join("\n"), out.stdout))
    }

    /// A golden file without a case would go stale unnoticed: every file whose name `mine`
    /// claims must be among `names`.
    pub fn every_file_has_a_case(names: &BTreeSet<String>, mine: impl Fn(&str) -> bool) {
        if blessing() {
            return;
        }
        for entry in fs::read_dir(dir()).unwrap() {
            let file = entry.unwrap().file_name().to_string_lossy().into_owned();
            let name = file.strip_suffix(".stderr").unwrap_or(&file);
            if mine(name) {
                assert!(names.contains(name), "{file} belongs to no case");
            }
        }
    }
}

/// A password step that only a right password gets past, for PAM directories made for
/// `check`.
pub const COMMON_AUTH: &str = "auth [success=1 default=ignore] pam_unix.so nullok\n\
                               auth requisite pam_deny.so\nauth required pam_permit.so\n";

impl Fixture {
    /// A PAM directory for `check --pam-dir` holding `files` (name, text), where
    /// ` pam_ivmfa.so` names the module under test by absolute path under its installed
    /// name, as it is not installed on this machine.
    pub fn pam_dir(&self, files: &[(&str, &str)]) -> String {
        use std::fs;
        let dir = self.dir.join("pam-check");
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let installed = self.dir.join("pam_ivmfa.so");
        if !installed.exists() {
            std::os::unix::fs::symlink(crate::module_path(), &installed).unwrap();
        }
        let module = format!(" {}", installed.display());
        for (name, text) in files {
            fs::write(dir.join(name), text.replace(" pam_ivmfa.so", &module)).unwrap();
        }
        dir.display().to_string()
    }

    /// Stands in for `sshd -T`: prints the given effective settings.
    pub fn sshd_printing(&self, settings: &str) -> String {
        use std::fs;
        use std::os::unix::fs::PermissionsExt;
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = self.dir.join(format!("sshd-T-{n}"));
        fs::write(&path, format!("#!/bin/sh\ncat <<'END'\n{settings}\nEND\n")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        path.display().to_string()
    }
}
