//! Shared pieces of the integration tests: a private PAM config dir that loads the built
//! module, a store provisioned through `ivmfa-core`, the `pam-driver` that logs in through
//! real libpam, the CLI, a QR scanner, sshd and a pseudo-terminal.

#![deny(unsafe_code)]

pub mod cli;
#[allow(unsafe_code)]
pub mod ffi;
pub mod fixture;
pub mod fleet;
pub mod postgres;
pub mod qrscan;
pub mod sshd;
pub mod terminal;

pub use cli::{
    enroll_bin, enrollment_from_uri, golden, CliOutput, COMMON_AUTH, TEST_KEY, TEST_KEY_BYTES,
};
pub use fixture::{logged_line, tear_older_slot, user_name, Fixture, HeldLogin, Outcome};
pub use qrscan::{decode_half_blocks, decode_matrix, decode_png};

use std::fs;
use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ivmfa_core::enrollment::{Enrollment, Secret};

/// The PAM service name the fixtures use.
pub const SERVICE: &str = "ivmfa-test";

/// `target/<profile>`: test binaries run from its `deps/` directory.
pub(crate) fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    deps.parent().unwrap_or(deps).to_path_buf()
}

/// The module under test: `$IVMFA_MODULE`, else the one built beside the tests.
pub fn module_path() -> PathBuf {
    let path = std::env::var_os("IVMFA_MODULE")
        .map_or_else(|| profile_dir().join("libpam_ivmfa.so"), PathBuf::from);
    assert!(
        path.exists(),
        "{} is missing: build the module first (cargo build --workspace), as the README's \
         test command does",
        path.display()
    );
    assert_fresh(&path);
    path.canonicalize().unwrap()
}

/// Refuses a module older than the sources it is built from: `cargo test` alone does not
/// rebuild a cdylib, and a stale one would test yesterday's code.
fn assert_fresh(module: &std::path::Path) {
    let built = fs::metadata(module).and_then(|m| m.modified()).unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut dirs: Vec<PathBuf> = ["pam_ivmfa/src", "ivmfa-core/src", "ivmfa-sys/src"]
        .iter()
        .map(|d| root.join(d))
        .collect();
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                dirs.push(entry.path());
            } else {
                assert!(
                    meta.modified().unwrap() <= built,
                    "{} is older than {}: run cargo build --workspace (the README's test \
                     command does)",
                    module.display(),
                    entry.path().display()
                );
            }
        }
    }
}

/// A binary of the workspace, built beside the tests.
pub(crate) fn built(name: &str) -> PathBuf {
    let path = profile_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing; run cargo build --workspace",
        path.display()
    );
    path
}

pub fn driver() -> PathBuf {
    built("pam-driver")
}

pub fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

pub fn is_root() -> bool {
    euid() == 0
}

/// For tests that need root (chown, mount namespaces, setuid programs). Such tests are
/// `#[ignore = "needs root"]`, so a plain `cargo test` counts them as ignored rather than
/// passing them unrun; run as root with `--include-ignored` (scripts/test.sh does), they run.
/// Asked for without root, they fail here and say why.
#[track_caller]
pub fn require_root(what: &str) {
    assert!(
        is_root(),
        "{what} needs root: run the ignored tests as root (sudo ./scripts/test.sh)"
    );
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Returns once the clock is well inside a 30 s step, so a code computed now for a given
/// offset is still at that offset when the module checks it.
pub fn settle() -> u64 {
    loop {
        let t = now();
        if (2..=26).contains(&(t % 30)) {
            return t;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

pub fn random_secret() -> Secret {
    let mut bytes = [0u8; 20];
    fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut bytes)
        .unwrap();
    Secret::from_bytes(&bytes).unwrap()
}

/// The code for `offset` steps from now.
pub fn code(e: &Enrollment, offset: i64) -> String {
    let at = (now() as i64 + offset * e.period as i64) as u64;
    ivmfa_core::totp::code_at(e, at).unwrap().to_string()
}

/// A wrong code for now: the right one with its last digit changed.
pub fn wrong_code(e: &Enrollment) -> String {
    let mut c = code(e, 0).into_bytes();
    let last = c.last_mut().unwrap();
    *last = if *last == b'9' { b'0' } else { *last + 1 };
    String::from_utf8(c).unwrap()
}

/// A code of `e` right for no step within ten minutes of `at`: a wrong code that no phone
/// clock explains either (so never "clock off"), unlike [`wrong_code`], which may by chance
/// match a neighbouring step.
pub fn never_right(e: &Enrollment, at: u64) -> String {
    let period = e.period.max(1) as i64;
    let reach = 600 / period + 1;
    let near: Vec<String> = (-reach..=reach)
        .map(|k| {
            let t = (at as i64 + k * period).max(0) as u64;
            ivmfa_core::totp::code_at(e, t).unwrap().to_string()
        })
        .collect();
    (0..)
        .map(|n| format!("{:0width$}", n, width = usize::from(e.digits)))
        .find(|c| !near.contains(c))
        .unwrap()
}

/// The effective uid, from the second field of `Uid:` in /proc/self/status.
pub fn euid() -> u32 {
    fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1)?.parse().ok())
        .expect("Uid: line in /proc/self/status")
}

/// The recovery codes (`abcd-efgh-jkmn`) shown in some text, in order.
pub fn recovery_codes_in(text: &str) -> Vec<String> {
    text.split_whitespace()
        .filter(|w| w.len() == 14 && w.matches('-').count() == 2)
        .map(str::to_owned)
        .collect()
}
