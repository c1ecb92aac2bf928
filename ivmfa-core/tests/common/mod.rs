//! The fast tier's world: the decision run with a host whose clock the test sets, fixed
//! randomness, a two-user database that ignores case, a conversation that answers from a
//! script, and a real store in a scratch directory. No libpam, no waiting: a test that needs
//! an hour to pass just asks for a login an hour later.
//!
//! Each test file of the tier takes what it needs from here, so not every item is used by
//! every file.
#![allow(dead_code)]

use std::cell::RefCell;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use ivmfa_core::auth::authenticate;
use ivmfa_core::enrollment::{Enrollment, Secret};
use ivmfa_core::ports::{Account, Conversation, Host, Login, Priority, Verdict};
use ivmfa_core::recovery;
use ivmfa_core::reset::{Notice, Ticket, FORMAT_VERSION};
use ivmfa_core::state::State;
use ivmfa_core::store::Store;
use ivmfa_core::username::UserName;
use ivmfa_core::Error;
use zeroize::Zeroizing;

/// 5 s into a 30 s step: the tier's "now" unless a test is about the time itself.
pub const NOW: u64 = 1_700_000_015;
pub const PERIOD: u64 = 30;
/// The first second of the step `NOW` is in.
pub const STEP_START: u64 = NOW - NOW % PERIOD;
/// The source the fake logins come from unless a test says otherwise.
pub const RHOST: &str = "192.0.2.1";

/// The system around the login, with the time and the notify command's fate set by the test.
pub struct FakeHost {
    pub euid: u32,
    pub now: u64,
    pub log: RefCell<Vec<String>>,
    /// The environment of each notify command run.
    pub notified: RefCell<Vec<Vec<(&'static str, String)>>>,
    /// What a notify command run comes to.
    pub notify_fails: bool,
}

impl Host for FakeHost {
    fn euid(&self) -> u32 {
        self.euid
    }
    fn now(&self) -> u64 {
        self.now
    }
    fn random(&self, buf: &mut [u8]) -> Result<(), Error> {
        fill_fake_random(buf);
        Ok(())
    }
    fn uid(&self) -> u32 {
        self.euid
    }
    fn account(&self, user: &str) -> Result<Option<Account>, Error> {
        // A directory service that ignores case, as SSSD can be set up to.
        Ok([("alice", 1001), ("bob", 1002)]
            .into_iter()
            .find(|(u, _)| u.eq_ignore_ascii_case(user))
            .map(|(name, uid)| Account {
                name: name.to_owned(),
                uid,
            }))
    }
    fn in_group(&self, user: &str, group: &str) -> Result<Option<bool>, Error> {
        Ok((group == "wheel").then_some(user == "bob"))
    }
    fn log(&self, priority: Priority, message: &str) {
        self.log
            .borrow_mut()
            .push(format!("{priority:?} {message}"));
    }
    fn notify(&self, _: &Path, env: &[(&'static str, String)], _: u64) -> Result<(), String> {
        self.notified.borrow_mut().push(env.to_vec());
        if self.notify_fails {
            Err("exit status: 3".into())
        } else {
            Ok(())
        }
    }
}

/// The randomness of [`FakeHost`]: the same xorshift sequence for every call, so a test can
/// know the secret and the recovery codes a login makes. (A pattern that repeats, such as
/// i ^ 0x5a, would give recovery codes that repeat, and a used code would seem to work twice.)
pub fn fill_fake_random(buf: &mut [u8]) {
    let mut x: u32 = 0x5a5a_1234;
    for b in buf {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = (x >> 24) as u8;
    }
}

/// The enrollment a set-up in the login makes with the fake randomness.
pub fn inband_enrollment() -> Enrollment {
    let mut bytes = [0u8; 20];
    fill_fake_random(&mut bytes);
    Enrollment::standard(Secret::from_bytes(&bytes).unwrap(), 0)
}

/// The person at the prompt, answering from a script; what was shown is kept as the
/// pam-driver prints it (`prompt: `, `info: `, `error: `).
pub struct FakeConv {
    pub answers: Vec<String>,
    pub shown: Vec<String>,
    pub can_show_text: bool,
}

impl Conversation for FakeConv {
    fn ask_hidden(&mut self, prompt: &str) -> Result<Zeroizing<String>, Error> {
        self.shown.push(format!("prompt: {prompt}"));
        if self.answers.is_empty() {
            return Err(Error::Conversation("no answer".into()));
        }
        Ok(Zeroizing::new(self.answers.remove(0)))
    }
    fn info(&mut self, text: &str) -> Result<(), Error> {
        self.shown.push(format!("info: {text}"));
        Ok(())
    }
    fn error(&mut self, text: &str) -> Result<(), Error> {
        self.shown.push(format!("error: {text}"));
        Ok(())
    }
    fn can_show_text(&self) -> bool {
        self.can_show_text
    }
}

/// A scratch directory with an empty config file and a store, and the module arguments every
/// login of the fixture gets. Removed on drop.
pub struct Fixture {
    pub dir: PathBuf,
    pub args: Vec<String>,
}

impl Fixture {
    /// `args` are module arguments, `key=value` words (the store and config are always set).
    pub fn new(args: &str) -> Fixture {
        Fixture::with_config(args, "")
    }

    pub fn with_config(args: &str, config: &str) -> Fixture {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = scratch_root().join(format!(
            "ivmfa-core-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("store")).unwrap();
        std::fs::set_permissions(dir.join("store"), std::fs::Permissions::from_mode(0o700))
            .unwrap();
        std::fs::write(dir.join("ivmfa.toml"), config).unwrap();
        let mut all = vec![
            format!("store={}", dir.join("store").display()),
            format!("config={}", dir.join("ivmfa.toml").display()),
        ];
        all.extend(args.split_whitespace().map(str::to_owned));
        Fixture { dir, args: all }
    }

    pub fn store_dir(&self) -> PathBuf {
        self.dir.join("store")
    }

    /// Whoever runs the tests owns the files; the store trusts that owner, as the module
    /// trusts root.
    pub fn euid(&self) -> u32 {
        std::fs::metadata(self.dir.join("ivmfa.toml"))
            .unwrap()
            .uid()
    }

    pub fn store(&self) -> Store {
        Store::new(self.store_dir(), self.euid())
    }

    /// Enrolls `user` with a fixed secret, as `ivmfa-enroll` would (no state yet).
    pub fn enroll(&self, user: &str) -> Enrollment {
        let e = Enrollment::standard(Secret::from_bytes(&[7; 20]).unwrap(), 0);
        self.save_enrollment(user, &e);
        e
    }

    /// Enrolls `user` with ten recovery codes; returns the enrollment and the codes as shown.
    pub fn enroll_with_recovery(&self, user: &str) -> (Enrollment, Vec<String>) {
        let mut e = self.enroll(user);
        let mut random = vec![0u8; recovery::random_bytes_needed(10)];
        fill_fake_random(&mut random);
        let (codes, set) = recovery::generate(&random, 10, NOW).unwrap();
        e.recovery = set;
        self.save_enrollment(user, &e);
        (e, codes.iter().map(|c| c.to_string()).collect())
    }

    pub fn save_enrollment(&self, user: &str, e: &Enrollment) {
        let store = self.store();
        let lock = store.lock(&name(user)).unwrap();
        store.save_enrollment(&lock, e).unwrap();
    }

    pub fn enrollment(&self, user: &str) -> Option<Enrollment> {
        self.store().load_enrollment(&name(user)).unwrap()
    }

    /// The user's state as a login reads it, under the user's lock.
    pub fn state(&self, user: &str) -> State {
        let store = self.store();
        let lock = store.lock(&name(user)).unwrap();
        store.load_state(&lock).unwrap().state
    }

    pub fn put_state(&self, user: &str, state: &State) {
        let store = self.store();
        let lock = store.lock(&name(user)).unwrap();
        store.save_state(&lock, state).unwrap();
    }

    /// What `ivmfa-enroll reset approve` does: the enrollment archived, a ticket until
    /// `expires`, the request closed.
    pub fn approve(&self, user: &str, now: u64, expires: u64) {
        let store = self.store();
        let user = name(user);
        let lock = store.lock(&user).unwrap();
        store.archive_enrollment(&lock, &user, now).unwrap();
        let ticket = Ticket {
            version: FORMAT_VERSION,
            issued: now,
            expires,
        };
        store.save_ticket(&lock, &ticket).unwrap();
        store.close_reset_request(&lock, &user).unwrap();
    }

    /// What `ivmfa-enroll reset deny --reason` does: the request closed, a notice left.
    pub fn deny(&self, user: &str, now: u64, reason: &str) {
        let store = self.store();
        let user = name(user);
        let lock = store.lock(&user).unwrap();
        store.close_reset_request(&lock, &user).unwrap();
        let notice = Notice {
            version: FORMAT_VERSION,
            time: now,
            reason: reason.to_owned(),
        };
        store.save_notice(&lock, &notice).unwrap();
    }

    pub fn request_file(&self, user: &str) -> PathBuf {
        self.store_dir()
            .join("requests")
            .join(format!("{user}.toml"))
    }

    pub fn user_dir(&self, user: &str) -> PathBuf {
        self.store_dir().join("users").join(user)
    }

    /// A login at `now` from [`RHOST`], answering `answers` in turn.
    pub fn login(&self, now: u64, user: &str, answers: &[&str]) -> Seen {
        self.at(now).login(user, answers)
    }

    /// A login at `now` to be described further before it runs.
    pub fn at(&self, now: u64) -> Try<'_> {
        Try {
            fixture: self,
            now,
            rhost: Some(RHOST.to_owned()),
            tty: None,
            service: "test".to_owned(),
            extra: Vec::new(),
            can_show_text: true,
            password: None,
            notify_fails: false,
        }
    }
}

/// Where fixtures go: memory (/dev/shm) where there is one. What is judged here is the
/// decision; every login syncs its writes to disk, which on a real disk costs more than the
/// judging (the crash and store-safety tests of the libpam tier cover durability).
fn scratch_root() -> PathBuf {
    let shm = Path::new("/dev/shm");
    let writable = std::fs::metadata(shm)
        .is_ok_and(|m| m.is_dir() && m.permissions().mode() & 0o1777 == 0o1777);
    if writable {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One login being described: where from, with what flags, then [`Try::login`].
pub struct Try<'f> {
    fixture: &'f Fixture,
    now: u64,
    rhost: Option<String>,
    tty: Option<String>,
    service: String,
    extra: Vec<String>,
    can_show_text: bool,
    password: Option<String>,
    notify_fails: bool,
}

impl Try<'_> {
    pub fn from(mut self, rhost: &str) -> Self {
        self.rhost = Some(rhost.to_owned());
        self
    }
    /// At the console: no remote host.
    pub fn local(mut self) -> Self {
        self.rhost = None;
        self
    }
    pub fn tty(mut self, tty: &str) -> Self {
        self.tty = Some(tty.to_owned());
        self
    }
    pub fn service(mut self, service: &str) -> Self {
        self.service = service.to_owned();
        self
    }
    /// More module arguments for this login only; they come after the fixture's, so they win.
    pub fn args(mut self, args: &str) -> Self {
        self.extra
            .extend(args.split_whitespace().map(str::to_owned));
        self
    }
    /// PAM_SILENT: nothing but the prompt can be shown.
    pub fn silent(mut self) -> Self {
        self.can_show_text = false;
        self
    }
    /// The password an earlier module took (PAM_AUTHTOK).
    pub fn password(mut self, password: &str) -> Self {
        self.password = Some(password.to_owned());
        self
    }
    pub fn notify_fails(mut self) -> Self {
        self.notify_fails = true;
        self
    }

    pub fn login(self, user: &str, answers: &[&str]) -> Seen {
        let host = FakeHost {
            euid: self.fixture.euid(),
            now: self.now,
            log: RefCell::new(Vec::new()),
            notified: RefCell::new(Vec::new()),
            notify_fails: self.notify_fails,
        };
        let mut conv = FakeConv {
            answers: answers.iter().map(|s| s.to_string()).collect(),
            shown: Vec::new(),
            can_show_text: self.can_show_text,
        };
        let mut args = self.fixture.args.clone();
        args.extend(self.extra);
        let login = Login {
            user,
            service: &self.service,
            rhost: self.rhost.as_deref(),
            tty: self.tty.as_deref(),
            authtok: self.password.as_deref(),
        };
        let verdict = authenticate(&args, &login, &host, &mut conv);
        Seen {
            verdict,
            shown: conv.shown,
            log: host.log.into_inner(),
            notified: host.notified.into_inner(),
            answers_left: conv.answers.len(),
        }
    }
}

/// What one login decided, showed and logged.
#[derive(Debug)]
pub struct Seen {
    pub verdict: Verdict,
    pub shown: Vec<String>,
    pub log: Vec<String>,
    pub notified: Vec<Vec<(&'static str, String)>>,
    /// Scripted answers the login never asked for.
    pub answers_left: usize,
}

impl Seen {
    pub fn said(&self, text: &str) -> bool {
        self.shown.iter().any(|l| l.contains(text))
    }

    pub fn logged(&self, text: &str) -> bool {
        self.log.iter().any(|l| l.contains(text))
    }

    pub fn prompts(&self) -> usize {
        self.shown
            .iter()
            .filter(|l| l.starts_with("prompt: "))
            .count()
    }

    #[track_caller]
    pub fn assert(&self, verdict: Verdict) -> &Self {
        assert_eq!(self.verdict, verdict, "{self:#?}");
        self
    }

    #[track_caller]
    pub fn assert_said(&self, text: &str) -> &Self {
        assert!(self.said(text), "expected {text:?} in {self:#?}");
        self
    }

    #[track_caller]
    pub fn assert_not_said(&self, text: &str) -> &Self {
        assert!(!self.said(text), "did not expect {text:?} in {self:#?}");
        self
    }

    #[track_caller]
    pub fn assert_logged(&self, text: &str) -> &Self {
        assert!(self.logged(text), "expected {text:?} logged in {self:#?}");
        self
    }
}

pub fn name(user: &str) -> UserName {
    UserName::parse(user).unwrap()
}

/// The code the app shows at unix time `at`.
pub fn code(e: &Enrollment, at: u64) -> String {
    ivmfa_core::totp::code_at(e, at).unwrap().to_string()
}

/// The code for `offset` steps from `now`.
pub fn code_off(e: &Enrollment, now: u64, offset: i64) -> String {
    code(e, (now as i64 + offset * e.period as i64) as u64)
}

/// A six-digit answer that is no code of `e` within 25 steps of `now` (further than the
/// clock-off search reaches), so it is plainly wrong rather than a phone's clock being off.
pub fn wrong_code(e: &Enrollment, now: u64) -> String {
    let near: Vec<String> = (-25..=25).map(|o| code_off(e, now, o)).collect();
    (0..1_000_000u32)
        .map(|n| format!("{:06}", (n * 7_919 + 13) % 1_000_000))
        .find(|c| !near.contains(c))
        .unwrap()
}

/// The recovery codes (`abcd-efgh-jkmn`) shown in a login, in order.
pub fn recovery_codes_in(seen: &Seen) -> Vec<String> {
    seen.shown
        .iter()
        .flat_map(|l| l.split_whitespace())
        .filter(|w| w.len() == 14 && w.matches('-').count() == 2)
        .map(str::to_owned)
        .collect()
}
