//! The fleet decision (`backend = "postgres"`) with a scripted database: which rounds are
//! made and with what, what is never sent, and the break-glass rule. The real database and
//! libpam are in tests/tests/conformance.rs.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use ivmfa_core::auth::authenticate;
use ivmfa_core::config::FleetDb;
use ivmfa_core::enrollment::{Algorithm, Secret};
use ivmfa_core::fleet_api::{
    FleetApi, Grace, Judgement, NewKey, ResetFiled, SetupBegun, SetupFinished, Standing, Status,
};
use ivmfa_core::ports::{Account, Conversation, Host, Login, Priority, Verdict};
use ivmfa_core::Error;
use zeroize::Zeroizing;

/// A database that answers from a script and records every round.
#[derive(Default)]
struct FakeFleet {
    /// No server can be reached.
    down: bool,
    /// A server answers, but the round fails (a statement past the deadline, a verdict the
    /// module cannot use).
    broken: bool,
    status: Option<Status>,
    wait: u64,
    inband: bool,
    judgement: Option<Judgement>,
    /// `grace`'s answer; `Lapsed` if unset.
    grace: Option<Grace>,
    /// Set-up in the login is allowed, and ends with these recovery codes.
    codes: Option<Vec<String>>,
    rounds: RefCell<Vec<String>>,
}

impl FakeFleet {
    fn round(&self, what: String) -> Result<(), Error> {
        self.rounds.borrow_mut().push(what);
        if self.down {
            return Err(Error::FleetUnreachable(
                "no usable server within 3000 ms".into(),
            ));
        }
        if self.broken {
            return Err(Error::Fleet(
                "no answer within the deadline (3000 ms) to a statement".into(),
            ));
        }
        Ok(())
    }
}

impl FleetApi for FakeFleet {
    fn before_prompt(
        &self,
        _: &FleetDb,
        user: &str,
        source: &str,
        take_notice: bool,
        grace_period: u64,
    ) -> Result<Standing, Error> {
        self.round(format!(
            "before_prompt {user} {source} {take_notice}{}",
            with_grace(grace_period)
        ))?;
        let mut standing = Standing {
            status: self.status.unwrap_or(Status::Enrolled),
            digits: 6,
            wait: self.wait,
            reset_pending: false,
            notice: None,
            inband_enroll: self.inband,
            grace: None,
        };
        if grace_period > 0 && standing.asks_for_a_code() {
            standing.grace = Some(self.grace.unwrap_or(Grace::Lapsed));
        }
        Ok(standing)
    }
    fn judge(
        &self,
        _: &FleetDb,
        user: &str,
        answer: &str,
        source: &str,
        grace_period: u64,
    ) -> Result<Judgement, Error> {
        self.round(format!(
            "judge {user} {answer} {source}{}",
            with_grace(grace_period)
        ))?;
        Ok(self.judgement.clone().unwrap_or(Judgement::Accepted))
    }
    fn request_reset(
        &self,
        _: &FleetDb,
        user: &str,
        service: &str,
        rhost: &str,
        _: &str,
    ) -> Result<ResetFiled, Error> {
        self.round(format!("request_reset {user} {service} {rhost}"))?;
        Ok(ResetFiled::Filed)
    }
    fn setup_begin(&self, _: &FleetDb, user: &str) -> Result<SetupBegun, Error> {
        self.round(format!("setup_begin {user}"))?;
        if self.codes.is_none() {
            return Ok(SetupBegun::NotAllowed);
        }
        Ok(SetupBegun::Ready(NewKey {
            secret: Secret::from_base32("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP").unwrap(),
            digits: 6,
            period: 30,
            algorithm: Algorithm::SHA1,
        }))
    }
    fn setup_finish(&self, _: &FleetDb, user: &str, _: &str) -> Result<SetupFinished, Error> {
        self.round(format!("setup_finish {user}"))?;
        Ok(match &self.codes {
            Some(codes) => SetupFinished::Enrolled {
                recovery_codes: codes.iter().cloned().map(Zeroizing::new).collect(),
            },
            None => SetupFinished::Failed,
        })
    }
}

/// How a round records the grace period it was asked with.
fn with_grace(period: u64) -> String {
    match period {
        0 => String::new(),
        p => format!(" grace {p}"),
    }
}

struct FakeHost {
    uid: u32,
    euid: u32,
    fleet: Option<FakeFleet>,
    log: RefCell<Vec<String>>,
}

impl Host for FakeHost {
    fn euid(&self) -> u32 {
        self.euid
    }
    fn uid(&self) -> u32 {
        self.uid
    }
    fn now(&self) -> u64 {
        1_700_000_015
    }
    fn random(&self, buf: &mut [u8]) -> Result<(), Error> {
        buf.fill(7);
        Ok(())
    }
    fn account(&self, user: &str) -> Result<Option<Account>, Error> {
        Ok([("alice", 1001), ("root", 0)]
            .into_iter()
            .find(|(u, _)| *u == user)
            .map(|(name, uid)| Account {
                name: name.to_owned(),
                uid,
            }))
    }
    fn in_group(&self, user: &str, group: &str) -> Result<Option<bool>, Error> {
        Ok((group == "breakglass").then_some(user == "root"))
    }
    fn log(&self, priority: Priority, message: &str) {
        self.log
            .borrow_mut()
            .push(format!("{priority:?} {message}"));
    }
    fn fleet(&self) -> Option<&dyn FleetApi> {
        self.fleet.as_ref().map(|f| f as &dyn FleetApi)
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

/// A config file of the fleet keys (the files it names are not read: the fleet is fake).
fn config(extra: &str) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "ivmfa-core-fleet-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ivmfa.toml");
    std::fs::write(
        &path,
        format!(
            "backend = \"postgres\"\ndb_addresses = [\"127.0.0.1:5432\"]\ndb_user = \"host_a\"\n\
             db_ca = \"/etc/ivmfa/ca.pem\"\ndb_cert = \"/etc/ivmfa/a.crt\"\n\
             db_key = \"/etc/ivmfa/a.key\"\n{extra}"
        ),
    )
    .unwrap();
    path
}

struct Run {
    verdict: Verdict,
    shown: Vec<String>,
    rounds: Vec<String>,
    log: Vec<String>,
}

fn run(
    fleet: Option<FakeFleet>,
    user: &str,
    rhost: Option<&str>,
    uid: u32,
    answers: &[&str],
    extra: &str,
) -> Run {
    run_on(None, fleet, user, rhost, uid, answers, extra)
}

/// [`run`], with PAM_TTY `tty`.
fn run_on(
    tty: Option<&str>,
    fleet: Option<FakeFleet>,
    user: &str,
    rhost: Option<&str>,
    uid: u32,
    answers: &[&str],
    extra: &str,
) -> Run {
    let path = config(extra);
    use std::os::unix::fs::MetadataExt;
    let euid = std::fs::metadata(&path).unwrap().uid();
    let host = FakeHost {
        uid,
        euid,
        fleet,
        log: RefCell::new(Vec::new()),
    };
    let mut conv = FakeConv {
        answers: answers.iter().map(|s| s.to_string()).collect(),
        shown: Vec::new(),
    };
    let login = Login {
        user,
        service: "sshd",
        rhost,
        tty,
        authtok: None,
    };
    let args = vec![format!("config={}", path.display())];
    let verdict = authenticate(&args, &login, &host, &mut conv);
    Run {
        verdict,
        shown: conv.shown,
        rounds: host
            .fleet
            .as_ref()
            .map(|f| f.rounds.borrow().clone())
            .unwrap_or_default(),
        log: host.log.into_inner(),
    }
}

const UNAVAILABLE: &str = "not available right now";

#[test]
fn a_code_is_one_round_before_the_prompt_and_one_after() {
    let r = run(
        Some(FakeFleet::default()),
        "alice",
        Some("192.0.2.9"),
        0,
        &["123 456"],
        "",
    );
    assert_eq!(r.verdict, Verdict::Success);
    assert_eq!(
        r.rounds,
        [
            "before_prompt alice 192.0.2.9 true",
            "judge alice 123456 192.0.2.9"
        ]
    );
}

#[test]
fn what_is_no_code_never_leaves_the_host() {
    for typed in ["hunter2 is my password", "", "invert"] {
        let r = run(Some(FakeFleet::default()), "alice", None, 0, &[typed], "");
        assert_eq!(r.verdict, Verdict::AuthErr, "{typed:?}");
        assert_eq!(r.rounds.len(), 1, "{typed:?}: {:?}", r.rounds);
        assert!(
            r.shown.iter().any(|s| s.contains("6-digit code")),
            "{:?}",
            r.shown
        );
    }
}

#[test]
fn the_reset_keyword_files_a_request_even_while_backing_off() {
    let fleet = FakeFleet {
        wait: 60,
        ..FakeFleet::default()
    };
    let r = run(Some(fleet), "alice", Some("192.0.2.9"), 0, &["reset"], "");
    assert_eq!(r.verdict, Verdict::AuthErr);
    assert_eq!(r.rounds[1], "request_reset alice sshd 192.0.2.9");
    assert!(r
        .shown
        .iter()
        .any(|s| s.contains("sent to the administrators")));
}

#[test]
fn a_wrong_code_that_starts_a_wait_says_so() {
    let fleet = FakeFleet {
        judgement: Some(Judgement::Wrong {
            failures: 3,
            wait: 30,
        }),
        ..FakeFleet::default()
    };
    let r = run(Some(fleet), "alice", None, 0, &["000000"], "");
    assert_eq!(r.verdict, Verdict::AuthErr);
    assert!(r
        .shown
        .iter()
        .any(|s| s == "That code is not correct. Too many wrong codes. Please wait 30 seconds before trying again."));
}

#[test]
fn set_up_waits_for_the_database_to_allow_it() {
    let fleet = FakeFleet {
        status: Some(Status::NotEnrolled),
        ..FakeFleet::default()
    };
    let r = run(
        Some(fleet),
        "alice",
        None,
        0,
        &[],
        "unenrolled = \"enroll\"\n",
    );
    assert_eq!(r.verdict, Verdict::AuthErr);
    assert_eq!(r.rounds.len(), 1, "no setup_begin without inband_enroll");
    let fleet = FakeFleet {
        status: Some(Status::NotEnrolled),
        inband: true,
        ..FakeFleet::default()
    };
    let r = run(
        Some(fleet),
        "alice",
        None,
        0,
        &[],
        "unenrolled = \"enroll\"\n",
    );
    assert_eq!(r.rounds[1], "setup_begin alice");
}

#[test]
fn unreachable_denies_except_break_glass_at_the_console() {
    let down = || FakeFleet {
        down: true,
        ..FakeFleet::default()
    };
    let glass = "break_glass_group = \"breakglass\"\n";
    const TTY: Option<&str> = Some("tty1");
    // No client at all, or a database that cannot be asked: unavailable.
    let r = run_on(TTY, None, "root", None, 0, &[], glass);
    assert_eq!(r.verdict, Verdict::ServiceErr);
    let r = run_on(TTY, Some(down()), "alice", None, 0, &[], glass);
    assert_eq!(r.verdict, Verdict::ServiceErr);
    assert!(
        r.shown.iter().any(|s| s.contains(UNAVAILABLE)),
        "{:?}",
        r.shown
    );
    assert!(
        r.log
            .iter()
            .any(|l| l.starts_with("Error") && l.contains("3000 ms")),
        "{:?}",
        r.log
    );
    // A member at the console passes, logged at err.
    let r = run_on(TTY, Some(down()), "root", None, 0, &[], glass);
    assert_eq!(r.verdict, Verdict::Success, "{:?}", r.log);
    assert!(r
        .log
        .iter()
        .any(|l| l.starts_with("Error") && l.contains("break-glass")));
    // Not from a remote host, not through a setuid program someone else started, not
    // without a local terminal (a root service that sets no PAM_RHOST), not without the
    // option.
    assert_eq!(
        run_on(TTY, Some(down()), "root", Some("192.0.2.9"), 0, &[], glass).verdict,
        Verdict::ServiceErr
    );
    assert_eq!(
        run_on(TTY, Some(down()), "root", None, 1001, &[], glass).verdict,
        Verdict::ServiceErr
    );
    for tty in [None, Some("pts/3")] {
        assert_eq!(
            run_on(tty, Some(down()), "root", None, 0, &[], glass).verdict,
            Verdict::ServiceErr,
            "{tty:?}"
        );
    }
    assert_eq!(
        run_on(TTY, Some(down()), "root", None, 0, &[], "").verdict,
        Verdict::ServiceErr
    );
    // A database that answers is never bypassed: not when its verdict is a wrong code, and
    // not when the round fails after a server was reached.
    let r = run_on(
        TTY,
        Some(FakeFleet::default()),
        "root",
        None,
        0,
        &["000000"],
        glass,
    );
    assert_eq!(r.rounds.len(), 2);
    let broken = FakeFleet {
        broken: true,
        ..FakeFleet::default()
    };
    let r = run_on(TTY, Some(broken), "root", None, 0, &["000000"], glass);
    assert_eq!(r.verdict, Verdict::ServiceErr, "{:?}", r.log);
    assert!(
        !r.log.iter().any(|l| l.contains("break-glass")),
        "{:?}",
        r.log
    );
}

/// What the database sends for the user's terminal is escaped and bounded: the recovery
/// codes of a set-up in the login.
#[test]
fn recovery_codes_from_the_database_are_shown_escaped_and_bounded() {
    let fleet = FakeFleet {
        status: Some(Status::Ticket),
        codes: Some(
            (0..150)
                .map(|i| format!("abcd-efgh-{i:04}\x1b]0;x\x07{}", "y".repeat(100)))
                .collect(),
        ),
        ..FakeFleet::default()
    };
    let r = run(Some(fleet), "alice", None, 0, &["123456"], "");
    assert_eq!(r.verdict, Verdict::Success, "{:?} {:?}", r.log, r.shown);
    let codes = r
        .shown
        .iter()
        .find(|s| s.starts_with("Recovery codes:"))
        .expect("the recovery codes are shown");
    assert!(!codes.contains(['\x1b', '\x07']), "{codes:?}");
    assert!(
        codes.contains("abcd-efgh-0000\\u{1b}]0;x\\u{7}yyy"),
        "{codes:?}"
    );
    assert_eq!(codes.matches("abcd-efgh-").count(), 100);
    assert!(!codes.contains("abcd-efgh-0100"));
    assert!(codes.len() < 100 * 60, "{}", codes.len());
}

#[test]
fn a_grace_period_is_asked_before_the_prompt_only_under_the_file_stores_conditions() {
    let grace = "grace_period = 600\n";
    let granted = || FakeFleet {
        grace: Some(Grace::Granted { left: 500 }),
        ..FakeFleet::default()
    };
    // A root application, a remote address: asked in the round before the prompt, and
    // given without a prompt.
    let r = run(Some(granted()), "alice", Some("192.0.2.9"), 0, &[], grace);
    assert_eq!(r.verdict, Verdict::Success, "{:?}", r.log);
    assert_eq!(r.rounds, ["before_prompt alice 192.0.2.9 true grace 600"]);
    assert!(r.shown.is_empty(), "{:?}", r.shown);
    assert!(
        r.log.iter().any(
            |l| l.starts_with("Notice") && l.ends_with("accepted: grace period from 192.0.2.9")
        ),
        "{:?}",
        r.log
    );
    // Not asked (and a code filed with plain submit): locally, from a host name, through a
    // setuid program someone else started, or with the option off.
    for (rhost, uid, config) in [
        (None, 0, grace),
        (Some("client.example"), 0, grace),
        (Some("192.0.2.9"), 1001, grace),
        (Some("192.0.2.9"), 0, ""),
    ] {
        let r = run(Some(granted()), "alice", rhost, uid, &["123456"], config);
        assert_eq!(r.verdict, Verdict::Success);
        assert_eq!(r.rounds.len(), 2, "{rhost:?} {uid}: {:?}", r.rounds);
        assert!(
            !r.rounds.iter().any(|x| x.contains("grace")),
            "{:?}",
            r.rounds
        );
    }
    // Backing off: no grace is asked for; the login is held.
    let r = run(
        Some(FakeFleet {
            wait: 30,
            ..granted()
        }),
        "alice",
        Some("192.0.2.9"),
        0,
        &["123456"],
        grace,
    );
    assert_eq!(r.verdict, Verdict::AuthErr);
}

#[test]
fn without_a_grace_period_the_code_is_filed_to_begin_one() {
    let grace = "grace_period = 600\n";
    for (verdict, logged) in [
        (Grace::Lapsed, None),
        (
            Grace::BackingOff,
            Some(
                "no grace period from 2001:db8::7: backing off after wrong codes; a code is asked",
            ),
        ),
        (
            Grace::ResetPending,
            Some("no grace period from 2001:db8::7: a reset request is pending; a code is asked"),
        ),
        (Grace::Off, None),
        (Grace::NotEnrolled, None),
    ] {
        let fleet = FakeFleet {
            grace: Some(verdict),
            ..FakeFleet::default()
        };
        let r = run(
            Some(fleet),
            "alice",
            Some("2001:DB8::7"),
            0,
            &["123456"],
            grace,
        );
        assert_eq!(r.verdict, Verdict::Success, "{verdict:?}");
        assert_eq!(
            r.rounds,
            [
                "before_prompt alice 2001:DB8::7 true grace 600",
                "judge alice 123456 2001:DB8::7 grace 600"
            ],
            "{verdict:?}"
        );
        if let Some(line) = logged {
            assert!(
                r.log
                    .iter()
                    .any(|l| l.starts_with("Info") && l.ends_with(line)),
                "{verdict:?}: {:?}",
                r.log
            );
        }
    }
    // A database that cannot say is no grace: unavailable, as any round.
    let r = run(
        Some(FakeFleet {
            down: true,
            ..FakeFleet::default()
        }),
        "alice",
        Some("192.0.2.9"),
        0,
        &[],
        grace,
    );
    assert_eq!(r.verdict, Verdict::ServiceErr);
}
