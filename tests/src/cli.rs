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
        use std::io::Write;
        let mut child = Command::new(enroll_bin())
            .args(self.cli_args(args))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        CliOutput {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

#[derive(Debug)]
pub struct CliOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
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
