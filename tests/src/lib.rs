//! Shared pieces of the integration tests: a private PAM config dir that loads the built
//! module, a store provisioned through `ivmfa-core`, and the `pam-driver` that logs in
//! through real libpam.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ivmfa_core::enrollment::{Enrollment, Secret};
use ivmfa_core::store::Store;

/// The PAM service name the fixtures use.
pub const SERVICE: &str = "ivmfa-test";

/// `target/<profile>`: test binaries run from its `deps/` directory.
fn profile_dir() -> PathBuf {
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
    for dir in ["pam_ivmfa/src", "ivmfa-core/src", "ivmfa-sys/src"] {
        let Ok(entries) = fs::read_dir(root.join(dir)) else {
            continue;
        };
        for entry in entries.flatten() {
            let changed = entry.metadata().and_then(|m| m.modified()).unwrap();
            assert!(
                changed <= built,
                "{} is older than {}: run cargo build --workspace (the README's test command \
                 does)",
                module.display(),
                entry.path().display()
            );
        }
    }
}

/// A binary of the workspace, built beside the tests.
fn built(name: &str) -> PathBuf {
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

/// For tests that need root (chown, mount namespaces): fails under CI, skips loudly elsewhere.
pub fn require_root(what: &str) -> bool {
    if is_root() {
        return true;
    }
    assert!(!is_ci(), "{what} needs root, and CI must run every tier");
    eprintln!("SKIPPED (not root): {what}");
    false
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

/// A private directory with a PAM service file that loads the module, a config file and a
/// store. Removed on drop.
pub struct Fixture {
    pub dir: PathBuf,
    pub store: PathBuf,
    pub config: PathBuf,
}

impl Fixture {
    /// `args` are extra module arguments (the store and config are always set).
    pub fn new(args: &str) -> Fixture {
        Fixture::with_config(args, "")
    }

    pub fn with_config(args: &str, config: &str) -> Fixture {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ivmfa-it-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("pam.d")).unwrap();
        let f = Fixture {
            store: dir.join("store"),
            config: dir.join("ivmfa.toml"),
            dir,
        };
        fs::create_dir(&f.store).unwrap();
        fs::set_permissions(&f.store, fs::Permissions::from_mode(0o700)).unwrap();
        fs::write(&f.config, config).unwrap();
        // libpam falls back to the service "other" for unknown services; have it deny.
        fs::write(f.dir.join("pam.d/other"), "auth required pam_deny.so\n").unwrap();
        f.set_module_line(&format!(
            "auth required {} store={} config={} {args}",
            module_path().display(),
            f.store.display(),
            f.config.display()
        ));
        f
    }

    /// Replaces the whole PAM stack of the test service.
    pub fn set_module_line(&self, stack: &str) {
        fs::write(self.dir.join("pam.d").join(SERVICE), format!("{stack}\n")).unwrap();
    }

    /// Adds a line after the module's, e.g. `auth required pam_permit.so`.
    pub fn append_line(&self, line: &str) {
        let path = self.dir.join("pam.d").join(SERVICE);
        let mut stack = fs::read_to_string(&path).unwrap();
        stack.push_str(line);
        stack.push('\n');
        fs::write(path, stack).unwrap();
    }

    pub fn store(&self) -> Store {
        Store::new(&self.store, euid())
    }

    /// Enrolls `user` with a fresh random secret, as `ivmfa-enroll` would.
    pub fn enroll(&self, user: &str) -> Enrollment {
        let e = Enrollment::standard(random_secret(), now());
        let name = ivmfa_core::username::UserName::parse(user).unwrap();
        let store = self.store();
        let lock = store.lock(&name).unwrap();
        store.save_enrollment(&lock, &e).unwrap();
        store
            .save_state(&lock, &ivmfa_core::state::State::default())
            .unwrap();
        e
    }

    pub fn user_dir(&self, user: &str) -> PathBuf {
        self.store.join("users").join(user)
    }

    pub fn login(&self, user: &str, answers: &[&str]) -> Outcome {
        self.run(self.auth_args(user, answers))
    }

    pub fn auth_args(&self, user: &str, answers: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "auth".into(),
            "--confdir".into(),
            self.dir.join("pam.d").display().to_string(),
            "--service".into(),
            SERVICE.into(),
            "--user".into(),
            user.into(),
        ];
        for a in answers {
            args.push("--answer".into());
            args.push((*a).into());
        }
        args
    }

    /// A command that runs `program args` in a private mount namespace after the shell
    /// commands `setup`, so faults such as a read-only or full file system never touch the
    /// real machine.
    pub fn in_namespace(setup: &str, program: &std::path::Path, args: &[String]) -> Command {
        let mut cmd = Command::new("unshare");
        cmd.args(["-m", "--propagation", "private", "sh", "-ec"])
            .arg(format!("{setup}\nexec \"$0\" \"$@\""))
            .arg(program)
            .args(args);
        cmd
    }

    /// Logs in from a private mount namespace prepared by `setup`.
    pub fn login_in_namespace(&self, setup: &str, user: &str, answers: &[&str]) -> Outcome {
        Outcome::of(&mut Fixture::in_namespace(
            setup,
            &driver(),
            &self.auth_args(user, answers),
        ))
    }

    /// Runs `program args` with `/dev/log` pointed at a socket of ours (in a private mount
    /// namespace); returns its output and what it sent to syslog.
    pub fn logged(
        &self,
        program: &std::path::Path,
        args: &[String],
    ) -> (std::process::Output, Vec<String>) {
        let sock_path = self.dir.join("log.sock");
        let _ = fs::remove_file(&sock_path);
        let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
        let dir = self.dir.display();
        let sock_name = sock_path.display();
        // Where /dev/log is missing (containers), a tmpfs /dev carries it, with the few device
        // nodes a process may open bound in from the real /dev.
        let setup = format!(
            "if [ -e /dev/log ]; then mount --bind {sock_name} /dev/log; else\n\
             mkdir -p {dir}/realdev; mount --bind /dev {dir}/realdev\n\
             mount -t tmpfs -o mode=755 ivmfa-dev /dev\n\
             for n in null zero random urandom; do touch /dev/$n; \
             mount --bind {dir}/realdev/$n /dev/$n; done\n\
             touch /dev/log; mount --bind {sock_name} /dev/log; fi"
        );
        let output = Fixture::in_namespace(&setup, program, args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        sock.set_nonblocking(true).unwrap();
        let mut lines = Vec::new();
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = sock.recv(&mut buf) {
            lines.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        (output, lines)
    }

    /// Logs in with syslog captured; see [`Fixture::logged`].
    pub fn login_logged(&self, user: &str, answers: &[&str]) -> (Outcome, Vec<String>) {
        let (output, lines) = self.logged(&driver(), &self.auth_args(user, answers));
        (Outcome::parse(&output), lines)
    }

    /// Starts one login per answer, all presenting at the same instant; returns what each
    /// driver printed.
    pub fn race(&self, user: &str, answers: &[String]) -> Vec<String> {
        let start_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis()
            + 150;
        let children: Vec<_> = answers
            .iter()
            .map(|answer| {
                let mut args = self.auth_args(user, &[answer]);
                args.extend(["--start-at".to_string(), start_at.to_string()]);
                Command::new(driver())
                    .args(args)
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        children
            .into_iter()
            .map(|c| String::from_utf8_lossy(&c.wait_with_output().unwrap().stdout).into_owned())
            .collect()
    }

    pub fn run(&self, args: Vec<String>) -> Outcome {
        Outcome::of(Command::new(driver()).args(args))
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
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

/// What one login showed and returned.
#[derive(Debug)]
pub struct Outcome {
    pub result: String,
    pub transcript: Vec<String>,
}

impl Outcome {
    pub fn of(cmd: &mut Command) -> Outcome {
        Outcome::parse(&cmd.output().expect("run pam-driver"))
    }

    pub fn parse(out: &std::process::Output) -> Outcome {
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let mut result = None;
        let mut transcript = Vec::new();
        for line in stdout.lines() {
            match line.strip_prefix("result: ") {
                Some(r) => result = Some(r.to_owned()),
                None => transcript.push(line.to_owned()),
            }
        }
        Outcome {
            result: result.unwrap_or_else(|| {
                panic!("pam-driver printed no result; stdout: {stdout} stderr: {stderr}")
            }),
            transcript,
        }
    }

    /// True if any message shown to the user contains `text`.
    pub fn said(&self, text: &str) -> bool {
        self.transcript.iter().any(|l| l.contains(text))
    }

    #[track_caller]
    pub fn assert(&self, result: &str) -> &Self {
        assert_eq!(self.result, result, "transcript: {:#?}", self.transcript);
        self
    }

    #[track_caller]
    pub fn assert_said(&self, text: &str) -> &Self {
        assert!(
            self.said(text),
            "expected {text:?} in {:#?}",
            self.transcript
        );
        self
    }
}

pub mod ffi;
pub mod sshd;
pub mod terminal;

/// Decodes a QR code drawn with half blocks (`▀ ▄ █` and spaces) with a real decoder
/// (zbarimg). `ink_is_dark`: the drawn cells are the dark modules (forced colours, light
/// backgrounds); false for the rendering meant for dark backgrounds.
pub fn decode_half_blocks(text: &str, ink_is_dark: bool) -> Option<String> {
    let is_block_line =
        |l: &&str| l.chars().count() >= 21 && l.chars().all(|c| matches!(c, ' ' | '▀' | '▄' | '█'));
    let plain = terminal::plain(text);
    let lines: Vec<&str> = plain
        .lines()
        .skip_while(|l| !is_block_line(l))
        .take_while(is_block_line)
        .collect();
    if lines.is_empty() {
        return None;
    }
    let width = lines.iter().map(|l| l.chars().count()).max().unwrap();
    let n = width.max(lines.len() * 2) + 8;
    // Padding is light: for the dark-background rendering that means "not ink".
    let mut grid = vec![false; n * n];
    for (row, line) in lines.iter().enumerate() {
        for (col, c) in line.chars().enumerate() {
            let (upper, lower) = match c {
                '█' => (true, true),
                '▀' => (true, false),
                '▄' => (false, true),
                _ => (false, false),
            };
            for (dy, ink) in [(0, upper), (1, lower)] {
                grid[(4 + row * 2 + dy) * n + 4 + col] = ink == ink_is_dark;
            }
        }
    }
    // Outside the drawn area is light either way.
    if !ink_is_dark {
        for y in 0..n {
            for x in 0..n {
                let inside = (4..4 + width).contains(&x) && (4..4 + lines.len() * 2).contains(&y);
                if !inside {
                    grid[y * n + x] = false;
                }
            }
        }
    }
    decode_png(&ivmfa_core::qr::png_of_grid(&grid, n, 4))
}

/// Decodes a PNG with zbarimg; `None` if it finds no code.
pub fn decode_png(png: &[u8]) -> Option<String> {
    static N: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "ivmfa-qr-{}-{}.png",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    fs::write(&path, png).unwrap();
    let out = Command::new("zbarimg")
        .args(["--raw", "-q"])
        .arg(&path)
        .output()
        .expect("zbarimg (zbar-tools) is needed to decode QR codes");
    let _ = fs::remove_file(&path);
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (!text.is_empty()).then_some(text)
}

pub fn enroll_bin() -> PathBuf {
    built("ivmfa-enroll")
}

impl Fixture {
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

    pub fn enrollment(&self, user: &str) -> Option<Enrollment> {
        let name = ivmfa_core::username::UserName::parse(user).unwrap();
        self.store().load_enrollment(&name).unwrap()
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

/// The recovery codes (`abcd-efgh-jkmn`) shown in some text, in order.
pub fn recovery_codes_in(text: &str) -> Vec<String> {
    text.split_whitespace()
        .filter(|w| w.len() == 14 && w.matches('-').count() == 2)
        .map(str::to_owned)
        .collect()
}

/// A login stopped at its first prompt, until [`HeldLogin::release`].
pub struct HeldLogin {
    child: std::process::Child,
    go: PathBuf,
}

impl Fixture {
    /// Starts a login that waits at its first prompt, so a test can act meanwhile.
    pub fn login_held(&self, user: &str, answers: &[&str]) -> HeldLogin {
        let go = self.dir.join("go");
        let mut args = self.auth_args(user, answers);
        args.extend(["--hold-answer-until".to_string(), go.display().to_string()]);
        let child = Command::new(driver())
            .args(args)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let waiting = go.with_extension("waiting");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !waiting.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "the login never reached the prompt"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        HeldLogin { child, go }
    }
}

impl HeldLogin {
    /// Lets the login answer and finish; returns what the driver printed.
    pub fn release(self) -> String {
        fs::write(&self.go, b"").unwrap();
        let out = self.child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}
