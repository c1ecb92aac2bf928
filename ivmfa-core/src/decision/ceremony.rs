//! Flow 1, the set-up ceremony, once for both places it happens: `ivmfa-enroll enroll` at a
//! terminal and `inband.rs` inside a login. A new secret, its otpauth URI and QR
//! matrix; up to [`TRIES`] answers judged as the login will judge them; then, only once a code
//! was right, the enrollment goes in under the user's lock with its watermark at the step
//! that code was for.
//!
//! What differs between the two is how things are shown and answers read (a terminal with
//! forced colours, or the PAM conversation with `invert`), and the CLI's own options. Those
//! stay with the front-ends; nothing here prints, prompts or logs.

use zeroize::Zeroizing;

use crate::config::Config;
use crate::enrollment::{Enrollment, Secret, DEFAULT_SECRET_BYTES};
use crate::error::{Error, Result};
use crate::input::{Accepts, Answer};
use crate::otpauth;
use crate::qr::Qr;
use crate::recovery::RecoveryCodes;
use crate::store::Store;
use crate::totp::{self, Check};
use crate::username::UserName;

/// Wrong answers before the ceremony gives up, having saved nothing.
pub const TRIES: usize = 3;

/// A new random secret of the standard size, from `random` (the OS for the CLI, the host
/// for the login).
pub fn new_secret(random: impl FnOnce(&mut [u8]) -> Result<()>) -> Result<Secret> {
    let mut bytes = Zeroizing::new([0u8; DEFAULT_SECRET_BYTES]);
    random(&mut *bytes)?;
    Secret::from_bytes(&*bytes)
}

/// The standard enrollment of `secret` for the account `uid`, made at `now`.
pub fn new_enrollment(secret: Secret, uid: u32, now: u64) -> Enrollment {
    Enrollment {
        uid: Some(uid),
        ..Enrollment::standard(secret, now)
    }
}

/// The issuer the app shows: `given` (the CLI's `--issuer`), else the config's, else the
/// host name.
pub fn issuer(config: &Config, given: Option<&str>) -> String {
    otpauth::issuer(given.or(config.issuer.as_deref()))
}

/// What one answer came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The code was right: the enrollment may be installed.
    Confirmed,
    /// Not right; `left` more answers will be judged. `clock_off`: the code was right for a
    /// time about that many seconds away, so the phone's clock is likely off.
    Wrong { left: usize, clock_off: Option<u64> },
    /// Wrong for the last time: nothing may be installed.
    Failed,
}

/// One enrollment being set up. Its `Debug` is left out on purpose: it holds the secret.
pub struct Ceremony {
    enrollment: Enrollment,
    issuer: String,
    account: String,
    uri: Zeroizing<String>,
    qr: Qr,
    /// As the login will judge this enrollment's codes.
    window: u8,
    wrong: usize,
    /// The step of the confirming code (0 when the caller vouched for the secret).
    confirmed: Option<u64>,
}

impl Ceremony {
    /// Builds the URI and QR matrix of `enrollment` for `user`. Fails if the issuer or the
    /// user name cannot be part of a URI.
    pub fn new(
        enrollment: Enrollment,
        issuer: String,
        user: &UserName,
        config: &Config,
    ) -> Result<Ceremony> {
        let uri = otpauth::uri(&enrollment, &issuer, user.as_str())?;
        let qr = Qr::new(&uri)?;
        // The rule of the login (auth.rs): an enrollment's own window wins over the option.
        let window = enrollment.window.unwrap_or(config.window);
        Ok(Ceremony {
            enrollment,
            issuer,
            account: user.as_str().to_owned(),
            uri,
            qr,
            window,
            wrong: 0,
            confirmed: None,
        })
    }

    pub fn enrollment(&self) -> &Enrollment {
        &self.enrollment
    }

    pub fn uri(&self) -> &str {
        &self.uri
    }

    pub fn qr(&self) -> &Qr {
        &self.qr
    }

    /// The key for typing in by hand, in groups of four.
    pub fn key(&self) -> Zeroizing<String> {
        otpauth::grouped_key(&self.enrollment)
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn account(&self) -> &str {
        &self.account
    }

    /// What the confirming prompt takes: a code of this enrollment's length, and `invert`
    /// where the front-end can redraw the picture.
    pub fn accepts(&self, invert: bool) -> Accepts<'static> {
        Accepts {
            digits: self.enrollment.digits,
            reset: None,
            invert,
            recovery: false,
        }
    }

    /// Judges one answer given at unix time `now` (the time of the answer: a person may take
    /// a while to scan). Anything but a code of the right shape counts as wrong; the front-end
    /// deals with `invert` before asking. Once failed, it stays failed; the right code is
    /// never revealed, only how far off the phone's clock seems.
    pub fn judge(&mut self, answer: &Answer, now: u64) -> Result<Outcome> {
        if self.confirmed.is_some() {
            return Ok(Outcome::Confirmed);
        }
        if self.wrong >= TRIES {
            return Ok(Outcome::Failed);
        }
        let mut clock_off = None;
        if let Answer::Code(code) = answer {
            match totp::verify(&self.enrollment, code, now, self.window, 0, &[])? {
                Check::Accepted { step } => {
                    self.confirmed = Some(step);
                    return Ok(Outcome::Confirmed);
                }
                Check::Skewed { offset, .. } => {
                    clock_off = Some(offset.unsigned_abs().saturating_mul(self.enrollment.period));
                }
                Check::Replayed | Check::Wrong => {}
            }
        }
        self.wrong += 1;
        Ok(match TRIES - self.wrong {
            0 => Outcome::Failed,
            left => Outcome::Wrong { left, clock_off },
        })
    }

    /// Wrong answers so far.
    pub fn wrong_answers(&self) -> usize {
        self.wrong
    }

    /// The caller vouches for the secret without a code (the CLI's `--no-confirm`, for a
    /// known key): the watermark stays where it is.
    pub fn skip_confirmation(&mut self) {
        if self.confirmed.is_none() {
            self.confirmed = Some(0);
        }
    }

    /// Puts the enrollment, with `recovery`, in the store under the user's lock (see
    /// [`install`]), its watermark at the confirmed step so that the confirming code cannot
    /// log in as well. Refused with an error, writing nothing, unless a code was confirmed.
    pub fn install(
        self,
        store: &Store,
        user: &UserName,
        recovery: RecoveryCodes,
        rules: &Rules,
    ) -> Result<Installed> {
        let Some(step) = self.confirmed else {
            return Err(Error::Invalid(
                "an enrollment cannot be saved before a code confirmed it".into(),
            ));
        };
        let enrollment = Enrollment {
            recovery,
            ..self.enrollment
        };
        install(store, user, &enrollment, step, rules)
    }
}

/// What an install may do besides writing the new enrollment.
#[derive(Clone, Copy, Debug)]
pub struct Rules {
    /// Replace (archive) an enrollment of the same account: the CLI's `--force`. One made
    /// for an earlier owner of the name (another uid) is no one's and is always replaced.
    pub replace: bool,
    /// Only while the user's approved reset (its ticket) is still valid at `now`.
    pub needs_ticket: bool,
    pub now: u64,
}

/// What an install came to. Anything but [`Installed::Done`] wrote nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Installed {
    /// In place; `archived`: an earlier enrollment was moved to the archive.
    Done { archived: bool },
    /// The account was enrolled meanwhile, and replacing was not asked for.
    EnrolledMeanwhile,
    /// The approved reset that allowed this expired or was withdrawn meanwhile.
    TicketGone,
}

/// Writes `enrollment` under the user's lock: an earlier one is archived if `rules` allow,
/// an approved reset's ticket is spent, and the watermark starts at `step` (or stays where
/// it is, if further on). Everything is decided again under the lock: the prompt may have
/// stayed open for minutes.
pub fn install(
    store: &Store,
    user: &UserName,
    enrollment: &Enrollment,
    step: u64,
    rules: &Rules,
) -> Result<Installed> {
    let lock = store.lock(user)?;
    let existing = store.reload_enrollment(&lock)?;
    if let Some(old) = &existing {
        let stale = enrollment.uid.is_some_and(|uid| !old.belongs_to(uid));
        if !stale && !rules.replace {
            return Ok(Installed::EnrolledMeanwhile);
        }
    }
    if rules.needs_ticket
        && !store
            .ticket(user)?
            .is_some_and(|t| t.is_valid_at(rules.now))
    {
        return Ok(Installed::TicketGone);
    }
    let archived = match existing {
        Some(_) => store.archive_enrollment(&lock, user, rules.now)?.is_some(),
        None => false,
    };
    store.install_enrollment(&lock, enrollment, step)?;
    Ok(Installed::Done { archived })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::parse;
    use crate::reset::Ticket;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::path::PathBuf;

    const NOW: u64 = 1_700_000_015;
    const UID: u32 = 1001;

    fn scratch(name: &str) -> (PathBuf, Store) {
        let dir =
            std::env::temp_dir().join(format!("ivmfa-ceremony-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let euid = std::fs::metadata(&dir).unwrap().uid();
        (dir.clone(), Store::new(dir, euid))
    }

    fn alice() -> UserName {
        UserName::parse("alice").unwrap()
    }

    fn ceremony(config: &Config) -> Ceremony {
        let secret = new_secret(|b| {
            b.iter_mut().enumerate().for_each(|(i, x)| *x = i as u8);
            Ok(())
        })
        .unwrap();
        let e = new_enrollment(secret, UID, NOW);
        Ceremony::new(e, "Example".into(), &alice(), config).unwrap()
    }

    fn answer(c: &Ceremony, text: &str) -> Answer {
        parse(text, c.accepts(false))
    }

    fn code(c: &Ceremony, at: u64) -> String {
        totp::code_at(c.enrollment(), at).unwrap().to_string()
    }

    fn codes() -> RecoveryCodes {
        crate::recovery::issue(2, NOW, |b| {
            b.fill(7);
            Ok(())
        })
        .unwrap()
        .1
    }

    fn rules() -> Rules {
        Rules {
            replace: false,
            needs_ticket: false,
            now: NOW,
        }
    }

    /// A code that is right for no step in reach of `now`.
    fn wrong(c: &Ceremony) -> String {
        let reach = crate::totp::SKEW_SEARCH_SECONDS / 30 + 2;
        let near: Vec<String> = (0..=2 * reach)
            .map(|i| code(c, NOW - reach * 30 + i * 30))
            .collect();
        (0..1_000_000)
            .map(|n| format!("{n:06}"))
            .find(|s| !near.contains(s))
            .unwrap()
    }

    #[test]
    fn three_wrong_answers_install_nothing() {
        let (dir, store) = scratch("wrong");
        let mut c = ceremony(&Config::default());
        let bad = wrong(&c);
        assert_eq!(
            c.judge(&answer(&c, &bad), NOW).unwrap(),
            Outcome::Wrong {
                left: 2,
                clock_off: None
            }
        );
        assert_eq!(
            c.judge(&answer(&c, "not a code"), NOW).unwrap(),
            Outcome::Wrong {
                left: 1,
                clock_off: None
            }
        );
        assert_eq!(c.judge(&answer(&c, ""), NOW).unwrap(), Outcome::Failed);
        // Failed stays failed: the right code now changes nothing.
        let right = code(&c, NOW);
        assert_eq!(c.judge(&answer(&c, &right), NOW).unwrap(), Outcome::Failed);
        assert!(c.install(&store, &alice(), codes(), &rules()).is_err());
        assert!(store.load_enrollment(&alice()).unwrap().is_none());
        assert!(!dir.join("users/alice/secret.toml").exists());
    }

    #[test]
    fn the_confirming_code_cannot_log_in_afterwards() {
        let (_dir, store) = scratch("replay");
        let mut c = ceremony(&Config::default());
        // One step behind: inside the default window of 1.
        let at = NOW - 30;
        let right = code(&c, at);
        assert_eq!(
            c.judge(&answer(&c, &right), NOW).unwrap(),
            Outcome::Confirmed
        );
        let secret = c.enrollment().secret.clone();
        assert_eq!(
            c.install(&store, &alice(), codes(), &rules()).unwrap(),
            Installed::Done { archived: false }
        );
        let saved = store.load_enrollment(&alice()).unwrap().unwrap();
        assert_eq!(saved.secret, secret);
        assert_eq!(saved.uid, Some(UID));
        assert_eq!(saved.recovery.remaining(), 2);
        let lock = store.lock(&alice()).unwrap();
        let state = store.load_state(&lock).unwrap().state;
        assert_eq!(state.last_step, at / 30);
        // As the login judges: the confirming code is used up, the next one is not.
        let check = |text: &str| {
            let a = parse(
                text,
                crate::input::Accepts {
                    digits: 6,
                    reset: None,
                    invert: false,
                    recovery: false,
                },
            );
            let Answer::Code(code) = a else {
                panic!("not a code")
            };
            totp::verify(&saved, &code, NOW, 1, state.last_step, &state.refused).unwrap()
        };
        assert_eq!(check(&right), Check::Replayed);
        assert!(matches!(
            check(&totp::code_at(&saved, NOW).unwrap()),
            Check::Accepted { .. }
        ));
    }

    #[test]
    fn codes_are_judged_with_the_configured_window() {
        let config = Config {
            window: 0,
            ..Config::default()
        };
        let mut c = ceremony(&config);
        let late = code(&c, NOW - 30);
        let on_time = code(&c, NOW);
        assert!(matches!(
            c.judge(&answer(&c, &late), NOW).unwrap(),
            Outcome::Wrong {
                left: 2,
                clock_off: Some(30)
            }
        ));
        assert_eq!(
            c.judge(&answer(&c, &on_time), NOW).unwrap(),
            Outcome::Confirmed
        );
    }

    #[test]
    fn an_install_needs_a_confirmation_or_the_callers_word() {
        let (_dir, store) = scratch("unconfirmed");
        let c = ceremony(&Config::default());
        assert!(c.install(&store, &alice(), codes(), &rules()).is_err());
        assert!(store.load_enrollment(&alice()).unwrap().is_none());
        let mut c = ceremony(&Config::default());
        c.skip_confirmation();
        assert_eq!(
            c.install(&store, &alice(), codes(), &rules()).unwrap(),
            Installed::Done { archived: false }
        );
    }

    #[test]
    fn an_existing_enrollment_is_replaced_only_when_stale_or_asked() {
        let (dir, store) = scratch("replace");
        let confirmed = || {
            let mut c = ceremony(&Config::default());
            c.skip_confirmation();
            c
        };
        assert!(matches!(
            confirmed().install(&store, &alice(), codes(), &rules()),
            Ok(Installed::Done { archived: false })
        ));
        assert_eq!(
            confirmed()
                .install(&store, &alice(), codes(), &rules())
                .unwrap(),
            Installed::EnrolledMeanwhile
        );
        let forced = Rules {
            replace: true,
            ..rules()
        };
        assert_eq!(
            confirmed()
                .install(&store, &alice(), codes(), &forced)
                .unwrap(),
            Installed::Done { archived: true }
        );
        // Made for an earlier owner of the name: replaced without being asked.
        let lock = store.lock(&alice()).unwrap();
        let mut old = store.reload_enrollment(&lock).unwrap().unwrap();
        old.uid = Some(UID + 1);
        store.save_enrollment(&lock, &old).unwrap();
        drop(lock);
        assert_eq!(
            confirmed()
                .install(&store, &alice(), codes(), &rules())
                .unwrap(),
            Installed::Done { archived: true }
        );
        assert_eq!(std::fs::read_dir(dir.join("archive")).unwrap().count(), 2);
    }

    #[test]
    fn a_ticket_must_still_hold_and_is_spent() {
        let (dir, store) = scratch("ticket");
        let needs = Rules {
            needs_ticket: true,
            ..rules()
        };
        let confirmed = || {
            let mut c = ceremony(&Config::default());
            c.skip_confirmation();
            c
        };
        assert_eq!(
            confirmed()
                .install(&store, &alice(), codes(), &needs)
                .unwrap(),
            Installed::TicketGone
        );
        let lock = store.lock(&alice()).unwrap();
        let ticket = |expires| Ticket {
            version: crate::reset::FORMAT_VERSION,
            issued: NOW - 10,
            expires,
        };
        store.save_ticket(&lock, &ticket(NOW)).unwrap();
        drop(lock);
        assert_eq!(
            confirmed()
                .install(&store, &alice(), codes(), &needs)
                .unwrap(),
            Installed::TicketGone
        );
        assert!(store.load_enrollment(&alice()).unwrap().is_none());
        let lock = store.lock(&alice()).unwrap();
        store.save_ticket(&lock, &ticket(NOW + 60)).unwrap();
        drop(lock);
        assert_eq!(
            confirmed()
                .install(&store, &alice(), codes(), &needs)
                .unwrap(),
            Installed::Done { archived: false }
        );
        assert!(store.ticket(&alice()).unwrap().is_none());
        assert!(!dir.join("users/alice/ticket.toml").exists());
    }
}
