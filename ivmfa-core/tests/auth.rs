//! The decision flow with an injected clock, randomness and user database, no libpam: the
//! cases a real system cannot easily produce (case-insensitive user names, a frozen clock).

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use ivmfa_core::auth::authenticate;
use ivmfa_core::enrollment::{Enrollment, Secret};
use ivmfa_core::ports::{Account, Conversation, Host, Login, Priority, Verdict};
use ivmfa_core::store::Store;
use ivmfa_core::username::UserName;
use ivmfa_core::Error;
use zeroize::Zeroizing;

const NOW: u64 = 1_700_000_015;

struct FakeHost {
    euid: u32,
    now: u64,
    log: RefCell<Vec<String>>,
}

impl Host for FakeHost {
    fn euid(&self) -> u32 {
        self.euid
    }
    fn now(&self) -> u64 {
        self.now
    }
    fn random(&self, buf: &mut [u8]) -> Result<(), Error> {
        buf.iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = i as u8 ^ 0x5a);
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
    fn notify(&self, _: &Path, _: &[(&'static str, String)], _: u64) -> Result<(), String> {
        Ok(())
    }
}

struct FakeConv {
    answers: Vec<String>,
    shown: Vec<String>,
}

impl Conversation for FakeConv {
    fn ask_hidden(&mut self, prompt: &str) -> Result<Zeroizing<String>, Error> {
        self.shown.push(prompt.to_owned());
        if self.answers.is_empty() {
            return Err(Error::Conversation("no answer".into()));
        }
        Ok(Zeroizing::new(self.answers.remove(0)))
    }
    fn info(&mut self, text: &str) -> Result<(), Error> {
        self.shown.push(text.to_owned());
        Ok(())
    }
    fn error(&mut self, text: &str) -> Result<(), Error> {
        self.shown.push(text.to_owned());
        Ok(())
    }
    fn can_show_text(&self) -> bool {
        true
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ivmfa-core-auth-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("store")).unwrap();
    std::fs::write(dir.join("ivmfa.toml"), "").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.join("store"), std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

fn euid_of(path: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().uid()
}

fn run(dir: &Path, user: &str, answers: &[&str], extra: &[&str]) -> (Verdict, FakeConv, FakeHost) {
    run_at(NOW, dir, user, answers, extra)
}

fn run_at(
    now: u64,
    dir: &Path,
    user: &str,
    answers: &[&str],
    extra: &[&str],
) -> (Verdict, FakeConv, FakeHost) {
    let host = FakeHost {
        euid: euid_of(&dir.join("ivmfa.toml")),
        now,
        log: RefCell::new(Vec::new()),
    };
    let mut conv = FakeConv {
        answers: answers.iter().map(|s| s.to_string()).collect(),
        shown: Vec::new(),
    };
    let mut args = vec![
        format!("store={}", dir.join("store").display()),
        format!("config={}", dir.join("ivmfa.toml").display()),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let login = Login {
        user,
        service: "test",
        rhost: Some("192.0.2.1"),
        tty: None,
        authtok: None,
    };
    let verdict = authenticate(&args, &login, &host, &mut conv);
    (verdict, conv, host)
}

fn enroll(dir: &Path, user: &str) -> Enrollment {
    let store = Store::new(dir.join("store"), euid_of(&dir.join("ivmfa.toml")));
    let e = Enrollment::standard(Secret::from_bytes(&[7; 20]).unwrap(), 0);
    let name = UserName::parse(user).unwrap();
    let lock = store.lock(&name).unwrap();
    store.save_enrollment(&lock, &e).unwrap();
    e
}

fn code(e: &Enrollment, at: u64) -> String {
    ivmfa_core::totp::code_at(e, at).unwrap().to_string()
}

#[test]
fn any_spelling_of_the_name_finds_the_enrollment() {
    let dir = scratch("case");
    let e = enroll(&dir, "alice");
    // ALICE resolves to alice: the enrollment must not be missed (with unenrolled=allow
    // that would let ALICE in on the password alone).
    let (v, _, host) = run(&dir, "ALICE", &[], &["unenrolled=allow"]);
    assert_eq!(
        v,
        Verdict::ConvErr,
        "asked for a code: {:?}",
        host.log.borrow()
    );
    let (v, _, _) = run(&dir, "Alice", &[&code(&e, NOW)], &[]);
    assert_eq!(v, Verdict::Success);
    // And the code is then used for alice, whatever the spelling.
    let (v, conv, _) = run(&dir, "alice", &[&code(&e, NOW)], &[]);
    assert_eq!(v, Verdict::AuthErr);
    assert!(conv.shown.iter().any(|s| s.contains("already been used")));
}

#[test]
fn exempt_members_skip_the_code_and_others_do_not() {
    let dir = scratch("exempt");
    enroll(&dir, "alice");
    enroll(&dir, "bob");
    assert_eq!(
        run(&dir, "bob", &[], &["exempt_group=wheel"]).0,
        Verdict::Success
    );
    assert_eq!(
        run(&dir, "alice", &[], &["exempt_group=wheel"]).0,
        Verdict::ConvErr
    );
}

#[test]
fn in_band_enrollment_uses_the_injected_randomness() {
    let dir = scratch("inband");
    // The secret the fake random source yields: bytes i ^ 0x5a.
    let bytes: Vec<u8> = (0..20u8).map(|i| i ^ 0x5a).collect();
    let expected = Enrollment::standard(Secret::from_bytes(&bytes).unwrap(), 0);
    let (v, conv, _) = run(
        &dir,
        "alice",
        &[&code(&expected, NOW)],
        &["unenrolled=enroll"],
    );
    assert_eq!(v, Verdict::Success, "{:?}", conv.shown);
    let store = Store::new(dir.join("store"), euid_of(&dir.join("ivmfa.toml")));
    let saved = store
        .load_enrollment(&UserName::parse("alice").unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(saved.secret, expected.secret);
    assert!(conv.shown.iter().any(|s| s.contains("Recovery codes")));
}

#[test]
fn unknown_users_and_bad_names_are_user_unknown() {
    let dir = scratch("unknown");
    for user in ["carol", "", "../alice", "alice\n", &"a".repeat(300)] {
        assert_eq!(
            run(&dir, user, &[], &["unenrolled=allow"]).0,
            Verdict::UserUnknown,
            "{user:?}"
        );
    }
}

#[test]
fn a_clock_set_back_holds_for_the_longest_back_off_at_most() {
    let dir = scratch("clockback");
    let e = enroll(&dir, "alice");
    let store = Store::new(dir.join("store"), euid_of(&dir.join("ivmfa.toml")));
    let lock = store.lock(&UserName::parse("alice").unwrap()).unwrap();
    // Eight failures an hour from now: the clock has since been set back an hour.
    let mut state = ivmfa_core::state::State::default();
    let limit = ivmfa_core::state::RateLimit::default();
    for _ in 0..8 {
        state.record_failure("192.0.2.1", NOW + 3600, &limit);
    }
    store.save_state(&lock, &state).unwrap();
    drop(lock);
    let (v, conv, _) = run(&dir, "alice", &[&code(&e, NOW)], &[]);
    assert_eq!(v, Verdict::AuthErr);
    assert!(
        conv.shown.iter().any(|s| s.contains("wait 15 minutes")),
        "{:?}",
        conv.shown
    );
    // The failures now count from now, so the wait ends 15 minutes on in real time.
    let lock = store.lock(&UserName::parse("alice").unwrap()).unwrap();
    let saved = store.load_state(&lock).unwrap().state;
    assert_eq!(saved.total.last, NOW);
    assert!(saved.failures.iter().all(|f| f.last == NOW));
}

#[test]
fn a_code_from_a_phone_ahead_is_refused_and_stays_refused_when_its_time_comes() {
    let dir = scratch("ahead");
    let e = enroll(&dir, "alice");
    let ahead = NOW + 5 * 60;
    // A phone five minutes fast: refused, counted, and the user told why.
    let (v, conv, host) = run_at(NOW, &dir, "alice", &[&code(&e, ahead)], &[]);
    assert_eq!(v, Verdict::AuthErr);
    assert!(
        conv.shown
            .iter()
            .any(|s| s.contains("about 5 minutes off: check the clock on your phone")),
        "{:?}",
        conv.shown
    );
    assert!(host
        .log
        .borrow()
        .iter()
        .any(|l| l.contains("matches a time 300 s ahead") && l.contains("1 consecutive")));
    // Five minutes on, the same code is the current one: still refused.
    let (v, conv, _) = run_at(ahead, &dir, "alice", &[&code(&e, ahead)], &[]);
    assert_eq!(v, Verdict::AuthErr);
    assert!(conv.shown.iter().any(|s| s.contains("already been used")));
    // The next step's code works as usual.
    let (v, _, _) = run_at(ahead + 30, &dir, "alice", &[&code(&e, ahead + 30)], &[]);
    assert_eq!(v, Verdict::Success);
    // A phone behind: told, counted, nothing to refuse later.
    let (v, conv, _) = run_at(ahead + 60, &dir, "alice", &[&code(&e, ahead - 120)], &[]);
    assert_eq!(v, Verdict::AuthErr);
    assert!(conv.shown.iter().any(|s| s.contains("about 3 minutes off")));
}

/// alice with a hardware token (RFC 4226's key), installed as `ivmfa-enroll enroll --hotp`
/// does: the state expects counter 0.
fn enroll_token(dir: &Path) -> Enrollment {
    let store = Store::new(dir.join("store"), euid_of(&dir.join("ivmfa.toml")));
    let e = Enrollment::hotp(Secret::from_bytes(b"12345678901234567890").unwrap(), 0);
    let lock = store.lock(&UserName::parse("alice").unwrap()).unwrap();
    store.install_enrollment(&lock, &e, 0).unwrap();
    e
}

fn press(e: &Enrollment, counter: u64) -> String {
    ivmfa_core::hotp::code_at(e, counter).unwrap().to_string()
}

#[test]
fn a_token_code_works_once_and_moves_the_counter_past_it() {
    let dir = scratch("token");
    let e = enroll_token(&dir);
    let said = |conv: &FakeConv, text: &str| conv.shown.iter().any(|s| s.contains(text));
    assert_eq!(
        run(&dir, "alice", &[&press(&e, 0)], &[]).0,
        Verdict::Success
    );
    let (v, conv, _) = run(&dir, "alice", &[&press(&e, 0)], &[]);
    assert_eq!(v, Verdict::AuthErr);
    assert!(
        said(&conv, "Press the button on your token"),
        "{:?}",
        conv.shown
    );
    // Three presses lost on the way: still in the window, and the ones skipped are spent.
    assert_eq!(
        run(&dir, "alice", &[&press(&e, 4)], &[]).0,
        Verdict::Success
    );
    let (v, conv, _) = run(&dir, "alice", &[&press(&e, 2)], &[]);
    assert_eq!(v, Verdict::AuthErr);
    assert!(said(&conv, "already been used"), "{:?}", conv.shown);
    // The clock plays no part: a day later the next press is just as good.
    assert_eq!(
        run_at(NOW + 86_400, &dir, "alice", &[&press(&e, 5)], &[]).0,
        Verdict::Success
    );
    // Past the window (hotp_window=2 here): refused and counted, the counter unmoved.
    let (v, conv, _) = run(&dir, "alice", &[&press(&e, 9)], &["hotp_window=2"]);
    assert_eq!(v, Verdict::AuthErr);
    assert!(said(&conv, "not correct"), "{:?}", conv.shown);
    let store = Store::new(dir.join("store"), euid_of(&dir.join("ivmfa.toml")));
    let lock = store.lock(&UserName::parse("alice").unwrap()).unwrap();
    let state = store.load_state(&lock).unwrap().state;
    assert_eq!(state.hotp_next(&e.secret), Some(6));
    assert_eq!(state.total.count, 1);
}

#[test]
fn a_token_without_its_counter_is_not_judged() {
    let dir = scratch("nocounter");
    let e = enroll_token(&dir);
    let store = Store::new(dir.join("store"), euid_of(&dir.join("ivmfa.toml")));
    let lock = store.lock(&UserName::parse("alice").unwrap()).unwrap();
    store
        .save_state(&lock, &ivmfa_core::state::State::default())
        .unwrap();
    drop(lock);
    // Counter 0 would be the guess; the codes pam_oath or an earlier enrollment saw stay dead.
    let (v, _, host) = run(&dir, "alice", &[&press(&e, 0)], &[]);
    assert_eq!(v, Verdict::ServiceErr);
    assert!(
        host.log
            .borrow()
            .iter()
            .any(|l| l.contains("ivmfa-enroll resync")),
        "{:?}",
        host.log.borrow()
    );
    let lock = store.lock(&UserName::parse("alice").unwrap()).unwrap();
    assert_eq!(store.load_state(&lock).unwrap().state.total.count, 0);
}
