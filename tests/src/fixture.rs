//! The fixture every libpam test starts from, and what a login returned.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ivmfa_core::enrollment::Enrollment;
use ivmfa_core::store::{LoadedState, Store};
use ivmfa_core::username::UserName;

use crate::{driver, euid, module_path, now, random_secret, SERVICE};

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

    /// A directory for programs the module runs as root (`notify_command`): owned by root and
    /// writable by root alone, as the module demands of a program's directories, which the
    /// fixture's own (in the world-writable temporary directory) is not. It is
    /// `/run/<the fixture's name>`, removed on drop; only root can make it.
    pub fn root_dir(&self) -> PathBuf {
        let dir = self.run_dir();
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        dir
    }

    fn run_dir(&self) -> PathBuf {
        PathBuf::from("/run").join(self.dir.file_name().unwrap())
    }

    /// A shell script `name` in [`Fixture::root_dir`], mode 0755; returns its path.
    pub fn root_script(&self, name: &str, body: &str) -> PathBuf {
        let path = self.root_dir().join(name);
        fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    pub fn store(&self) -> Store {
        Store::new(&self.store, euid())
    }

    /// Enrolls `user` with a fresh random secret, as `ivmfa-enroll` would.
    pub fn enroll(&self, user: &str) -> Enrollment {
        let e = Enrollment::standard(random_secret(), now());
        let name = user_name(user);
        let store = self.store();
        let lock = store.lock(&name).unwrap();
        store.save_enrollment(&lock, &e).unwrap();
        store
            .save_state(&lock, &ivmfa_core::state::State::default())
            .unwrap();
        e
    }

    pub fn enrollment(&self, user: &str) -> Option<Enrollment> {
        self.store().load_enrollment(&user_name(user)).unwrap()
    }

    /// The user's state as a login reads it, under the user's lock.
    pub fn state(&self, user: &str) -> LoadedState {
        let store = self.store();
        let lock = store.lock(&user_name(user)).unwrap();
        store.load_state(&lock).unwrap()
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

/// The syslog line that holds every one of `parts`; fails the test with all lines if none does.
#[track_caller]
pub fn logged_line<'a>(lines: &'a [String], parts: &[&str]) -> &'a str {
    lines
        .iter()
        .find(|l| parts.iter().all(|p| l.contains(p)))
        .unwrap_or_else(|| panic!("no line with {parts:?} in {lines:#?}"))
}

pub fn user_name(user: &str) -> UserName {
    UserName::parse(user).unwrap()
}

/// Damages the slot of a state file that does not hold the newest state (the one with the
/// lower sequence number in its `ivmfa-slot 1 <seq> ...` header), as a crash in the middle of
/// the next write would.
pub fn tear_older_slot(state: &std::path::Path) {
    let mut bytes = fs::read(state).unwrap();
    let half = bytes.len() / 2;
    let seq = |at: usize| -> u64 {
        let header = String::from_utf8_lossy(&bytes[at..at + 40]).into_owned();
        header
            .split(' ')
            .nth(2)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let older = if seq(0) < seq(half) { 0 } else { half };
    bytes[older + 10..older + 100].fill(b'#');
    fs::write(state, &bytes).unwrap();
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
        let _ = fs::remove_dir_all(self.run_dir());
    }
}

/// What one login showed and returned.
#[derive(Debug)]
pub struct Outcome {
    pub result: String,
    pub transcript: Vec<String>,
}

impl Outcome {
    /// The prompts the stack asked, in order, each as `style: text`.
    pub fn prompts(&self) -> Vec<&str> {
        self.transcript
            .iter()
            .filter(|l| l.starts_with("prompt-"))
            .map(String::as_str)
            .collect()
    }

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
