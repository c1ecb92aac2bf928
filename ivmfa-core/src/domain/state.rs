//! Per-user state that changes at every login: the replay watermark (or a hardware token's
//! counter), failure counters, and the addresses in a grace period.
//!
//! On disk this is `users/<name>/state`, a [`crate::slotfile`] whose slots hold the TOML text
//! below. It is only written while the user's lock is held (the store API demands the lock
//! guard), so the check "is this step newer than the last accepted one" and the update that
//! follows are one atomic step across processes.
//!
//! Each judged attempt is written twice under that lock: first as a failure, before the code
//! is even looked at, then (for a right code) as the success that replaces it. So whatever
//! stops the writing (a resource limit, a signal, a full disk) either stops it before the
//! code is judged, or leaves the attempt counted.

use std::borrow::Cow;
use std::fmt::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::enrollment::Secret;
use crate::error::{Error, Result};
use crate::grace::Grace;
use crate::recovery::{RecoveryCodes, MAX_COUNT};

pub const FORMAT_VERSION: u32 = 1;
pub(crate) const STATE_HINT: &str =
    "remove it to start afresh (this forgets the failure counts and lets \
                          the last code used be used once more)";
/// Sources remembered per user, so a client rotating addresses cannot grow the file without
/// bound. A source is forgotten only once its back-off is over; rotating addresses gains
/// nothing anyway, because the per-user total ([`RateLimit::max_failures_per_user`]) still
/// counts every failure.
pub const MAX_SOURCES: usize = 32;
/// Longest source (remote host) kept; longer ones are cut.
const MAX_SOURCE_LEN: usize = 255;

/// Failure counting and back-off, from the config file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Consecutive failures from one source before the user has to wait.
    pub max_failures: u32,
    /// First wait, in seconds; it doubles with every further failure.
    pub backoff: u64,
    /// Longest wait, in seconds, so nobody can lock a user out for good.
    pub max_backoff: u64,
    /// Consecutive failures from all sources together before the user has to wait.
    pub max_failures_per_user: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            max_failures: 3,
            backoff: 30,
            max_backoff: 900,
            max_failures_per_user: 10,
        }
    }
}

impl RateLimit {
    /// Seconds to wait after the `count`-th consecutive failure from one source.
    pub(crate) fn delay_after(&self, count: u32) -> u64 {
        self.delay(count, self.max_failures)
    }

    /// Seconds to wait after the `count`-th consecutive failure from any source.
    pub(crate) fn user_delay_after(&self, count: u32) -> u64 {
        self.delay(count, self.max_failures_per_user)
    }

    fn delay(&self, count: u32, threshold: u32) -> u64 {
        if count < threshold {
            return 0;
        }
        let doublings = (count - threshold).min(63);
        self.backoff
            .saturating_mul(1u64 << doublings)
            .min(self.max_backoff)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Failures {
    /// Remote host the failures came from; empty for local logins.
    pub source: String,
    pub count: u32,
    /// Unix time of the latest failure.
    pub last: u64,
}

/// Failures of the user from every source together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Total {
    pub count: u32,
    pub last: u64,
}

/// Recovery codes of one set that have been used, by their index in the enrollment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsedRecovery {
    /// The salt of the set they belong to; a new set (new salt) starts with none used.
    pub set: String,
    pub used: Vec<u16>,
}

impl UsedRecovery {
    fn is_empty(&self) -> bool {
        self.used.is_empty()
    }
}

/// Where a counter-based token stands: what `last_step` is to a time-based code.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counter {
    /// [`crate::hotp::key_id`] of the secret the counter belongs to.
    pub key: String,
    /// The counter the token is expected to show next; the codes of all before it are used.
    pub next: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    /// Highest time step accepted so far; a code must be for a later step.
    pub last_step: u64,
    pub total: Total,
    pub failures: Vec<Failures>,
    pub recovery: UsedRecovery,
    /// Future steps a wrong code matched (a phone clock ahead, or a lucky guess the user was
    /// told about): refused when their time comes.
    pub refused: Vec<u64>,
    /// Remote addresses that gave a right code lately (`grace_period`).
    pub grace: Grace,
    /// A counter-based token's counter.
    pub hotp: Option<Counter>,
}

/// Steps refused in advance, at most: more than this many lucky matches within ten minutes
/// would take about a million guesses.
pub(crate) const MAX_REFUSED: usize = 16;

/// Seconds left of a wait of `delay` that began at `last`. Never more than `delay`, so a clock
/// set back between two failures cannot stretch a back-off past `max_backoff_seconds`.
fn remaining(last: u64, delay: u64, now: u64) -> Option<u64> {
    let left = last.saturating_add(delay).saturating_sub(now).min(delay);
    (left > 0).then_some(left)
}

impl State {
    /// Seconds `source` must still wait before another code is checked, if any: the longer
    /// of its own back-off and the user's.
    pub fn wait_for(&self, source: &str, now: u64, limit: &RateLimit) -> Option<u64> {
        let own = self
            .entry(source)
            .and_then(|e| remaining(e.last, limit.delay_after(e.count), now));
        let user = remaining(
            self.total.last,
            limit.user_delay_after(self.total.count),
            now,
        );
        own.max(user)
    }

    /// Counts a failure from `source`. It also ends every grace period of the user: someone
    /// is typing wrong codes, so from wherever they come, the next login asks for a code.
    pub fn record_failure(&mut self, source: &str, now: u64, limit: &RateLimit) {
        self.grace.clear();
        self.total.count = self.total.count.saturating_add(1);
        self.total.last = now;
        let source = cap(source);
        if let Some(entry) = self.failures.iter_mut().find(|f| f.source == *source) {
            entry.count = entry.count.saturating_add(1);
            entry.last = now;
            return;
        }
        if self.failures.len() >= MAX_SOURCES {
            // Forget a source whose back-off is over, the oldest first; if every one is still
            // backing off, the oldest goes, and the per-user total keeps holding it back.
            let backing_off =
                |f: &Failures| remaining(f.last, limit.delay_after(f.count), now).is_some();
            let victim = (0..self.failures.len())
                .min_by_key(|&i| (backing_off(&self.failures[i]), self.failures[i].last));
            if let Some(i) = victim {
                self.failures.swap_remove(i);
            }
        }
        self.failures.push(Failures {
            source: source.into_owned(),
            count: 1,
            last: now,
        });
    }

    /// A correct code proves possession of the secret: every counter starts over.
    pub(crate) fn record_success(&mut self, step: u64) {
        self.last_step = step;
        self.total = Total::default();
        self.failures.clear();
    }

    /// A token's code for `counter` was right: it and every code before it are used.
    pub(crate) fn record_hotp_success(&mut self, secret: &Secret, counter: u64) {
        let last = self.last_step;
        self.record_success(last);
        self.set_hotp_next(secret, counter.saturating_add(1));
    }

    /// The counter `secret`'s token is expected to show next, if the state keeps one for it.
    pub fn hotp_next(&self, secret: &Secret) -> Option<u64> {
        let key = crate::hotp::key_id(secret);
        self.hotp.as_ref().filter(|c| c.key == key).map(|c| c.next)
    }

    /// Sets where `secret`'s token stands, forgetting any other token's counter.
    pub fn set_hotp_next(&mut self, secret: &Secret, next: u64) {
        self.hotp = Some(Counter {
            key: crate::hotp::key_id(secret),
            next,
        });
    }

    /// Refuses `step` in advance; `false` if the list is full (then nobody may be told it
    /// matched).
    pub(crate) fn refuse_step(&mut self, step: u64) -> bool {
        if self.refused.contains(&step) {
            return true;
        }
        if self.refused.len() >= MAX_REFUSED {
            return false;
        }
        self.refused.push(step);
        true
    }

    /// Forgets refused steps before `step`: no window can reach them any more.
    pub(crate) fn forget_refused_before(&mut self, step: u64) {
        self.refused.retain(|&s| s >= step);
    }

    /// Moves failures dated after `now` (the clock was set back) to `now`, so that their wait
    /// runs out in real time; `true` if there were any.
    pub(crate) fn forget_the_future(&mut self, now: u64) -> bool {
        let mut moved = false;
        let lasts = self
            .failures
            .iter_mut()
            .map(|f| &mut f.last)
            .chain(std::iter::once(&mut self.total.last));
        for last in lasts.filter(|l| **l > now) {
            *last = now;
            moved = true;
        }
        moved
    }

    /// Whether the recovery code at `index` of `set` has been used.
    pub(crate) fn recovery_used(&self, set: &RecoveryCodes, index: usize) -> bool {
        self.recovery.set == set.salt && self.recovery.used.iter().any(|&i| usize::from(i) == index)
    }

    /// Records the recovery code at `index` of `set` as used.
    pub fn use_recovery(&mut self, set: &RecoveryCodes, index: usize) {
        if self.recovery.set != set.salt {
            self.recovery = UsedRecovery {
                set: set.salt.clone(),
                used: Vec::new(),
            };
        }
        if let Ok(i) = u16::try_from(index) {
            if !self.recovery_used(set, index) {
                self.recovery.used.push(i);
            }
        }
    }

    /// Recovery codes of `set` that are still unused, counting what only the state knows.
    pub fn recovery_left(&self, set: &RecoveryCodes) -> usize {
        (0..set.hashes.len())
            .filter(|&i| !set.hashes[i].is_empty() && !self.recovery_used(set, i))
            .count()
    }

    pub(crate) fn failures_from(&self, source: &str) -> u32 {
        self.entry(source).map_or(0, |f| f.count)
    }

    fn entry(&self, source: &str) -> Option<&Failures> {
        let source = cap(source);
        self.failures.iter().find(|f| f.source == *source)
    }

    pub fn to_toml(&self) -> Result<String> {
        let file = File {
            version: FORMAT_VERSION,
            last_step: self.last_step,
            total: self.total,
            failures: self.failures.clone(),
            recovery: self.recovery.clone(),
            refused: self.refused.clone(),
            grace: self.grace.clone(),
            hotp: self.hotp.clone(),
        };
        toml::to_string(&file).map_err(|e| Error::Invalid(format!("cannot encode state: {e}")))
    }

    /// Reads the TOML of a state slot. Its sources must be in the form `cap` gives them, or
    /// the state might not fit its slot when it is written back.
    pub fn from_toml(text: &str, path: &Path) -> Result<State> {
        let state = Self::parse(text, path)?;
        if !state.failures.iter().all(|f| in_kept_form(&f.source)) {
            return Err(Error::corrupt(
                path,
                "a failure source is not in the form ivmfa writes",
                STATE_HINT,
            ));
        }
        Ok(state)
    }

    /// Reads `state.toml` as ivmfa 0.1.0 wrote it, with sources kept as given: they are put
    /// in today's form (merging any that become one), so the state fits a slot.
    pub(crate) fn from_legacy_toml(text: &str, path: &Path) -> Result<State> {
        let mut state = Self::parse(text, path)?;
        let mut kept: Vec<Failures> = Vec::with_capacity(state.failures.len());
        for mut f in state.failures.drain(..) {
            f.source = cap(&f.source).into_owned();
            match kept.iter_mut().find(|k| k.source == f.source) {
                Some(k) => {
                    k.count = k.count.max(f.count);
                    k.last = k.last.max(f.last);
                }
                None => kept.push(f),
            }
        }
        state.failures = kept;
        Ok(state)
    }

    fn parse(text: &str, path: &Path) -> Result<State> {
        let file: File = crate::domain::format::parse_versioned(
            text,
            path,
            STATE_HINT,
            FORMAT_VERSION,
            |f: &File| f.version,
        )?;
        if file.failures.len() > MAX_SOURCES {
            return Err(Error::corrupt(path, "too many failure entries", STATE_HINT));
        }
        let indices = file.recovery.used.iter();
        if file.recovery.used.len() > MAX_COUNT
            || indices.clone().any(|&i| usize::from(i) >= MAX_COUNT)
            || file.recovery.set.len() > 64
        {
            return Err(Error::corrupt(
                path,
                "the used recovery codes are malformed",
                STATE_HINT,
            ));
        }
        if file.refused.len() > MAX_REFUSED {
            return Err(Error::corrupt(path, "too many refused steps", STATE_HINT));
        }
        if file.hotp.as_ref().is_some_and(|c| {
            c.key.len() != KEY_ID_LEN || !c.key.bytes().all(|b| b.is_ascii_hexdigit())
        }) {
            return Err(Error::corrupt(
                path,
                "the token's counter names no key ivmfa writes",
                STATE_HINT,
            ));
        }
        if !file.grace.is_well_formed() {
            return Err(Error::corrupt(
                path,
                "the grace period addresses are malformed",
                STATE_HINT,
            ));
        }
        Ok(State {
            last_step: file.last_step,
            total: file.total,
            failures: file.failures,
            recovery: file.recovery,
            refused: file.refused,
            grace: file.grace,
            hotp: file.hotp,
        })
    }
}

/// Whether a source read from a slot could have come from [`cap`].
fn in_kept_form(source: &str) -> bool {
    source.len() <= MAX_SOURCE_LEN
        && source
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\\'))
}

/// The form a source is kept in: printable ASCII as it is, except `"`, `\\` and `%`, which
/// like every other byte become `%XX`; at most [`MAX_SOURCE_LEN`] characters, never cut inside
/// an escape. Real remote hosts (names, addresses) are kept as they are, distinct ones stay
/// distinct, and an entry is one short TOML line however strange the host, so the largest
/// state always fits its file.
fn cap(source: &str) -> Cow<'_, str> {
    let plain = |b: u8| b.is_ascii_graphic() && !matches!(b, b'"' | b'\\' | b'%');
    if source.len() <= MAX_SOURCE_LEN && source.bytes().all(plain) {
        return Cow::Borrowed(source);
    }
    let mut kept = String::with_capacity(MAX_SOURCE_LEN);
    for b in source.bytes() {
        let width = if plain(b) { 1 } else { 3 };
        if kept.len() + width > MAX_SOURCE_LEN {
            break;
        }
        if plain(b) {
            kept.push(char::from(b));
        } else {
            let _ = write!(kept, "%{b:02X}");
        }
    }
    Cow::Owned(kept)
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    version: u32,
    last_step: u64,
    #[serde(default)]
    total: Total,
    #[serde(default)]
    failures: Vec<Failures>,
    /// Absent until a recovery code is used (and in files of 0.1.0).
    #[serde(default, skip_serializing_if = "UsedRecovery::is_empty")]
    recovery: UsedRecovery,
    /// Absent while empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    refused: Vec<u64>,
    /// Absent while empty (and always with `grace_period` off), so the format version stays.
    #[serde(default, skip_serializing_if = "Grace::is_empty")]
    grace: Grace,
    /// Absent unless the user has (or had) a counter-based token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hotp: Option<Counter>,
}

/// Length of [`crate::hotp::key_id`]: 8 bytes in hex.
const KEY_ID_LEN: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: RateLimit = RateLimit {
        max_failures: 3,
        backoff: 30,
        max_backoff: 900,
        max_failures_per_user: 10,
    };

    #[test]
    fn backoff_doubles_and_is_bounded() {
        let delays: Vec<u64> = (0..10).map(|n| LIMIT.delay_after(n)).collect();
        assert_eq!(delays, [0, 0, 0, 30, 60, 120, 240, 480, 900, 900]);
        assert_eq!(LIMIT.delay_after(u32::MAX), 900);
        assert_eq!(LIMIT.user_delay_after(9), 0);
        assert_eq!(LIMIT.user_delay_after(10), 30);
        assert_eq!(LIMIT.user_delay_after(u32::MAX), 900);
    }

    #[test]
    fn waiting_counts_from_the_last_failure() {
        let mut s = State::default();
        for t in [100, 101, 102] {
            assert_eq!(s.wait_for("a", t, &LIMIT), None);
            s.record_failure("a", t, &LIMIT);
        }
        assert_eq!(s.wait_for("a", 102, &LIMIT), Some(30));
        assert_eq!(s.wait_for("a", 131, &LIMIT), Some(1));
        assert_eq!(s.wait_for("a", 132, &LIMIT), None);
        assert_eq!(
            s.wait_for("b", 102, &LIMIT),
            None,
            "other sources are not held back"
        );
        s.record_failure("a", 140, &LIMIT);
        assert_eq!(s.wait_for("a", 140, &LIMIT), Some(60));
        s.record_success(7);
        assert_eq!(s.wait_for("a", 141, &LIMIT), None);
        assert_eq!(s.last_step, 7);
    }

    #[test]
    fn a_clock_set_back_never_stretches_the_wait() {
        let mut s = State::default();
        for _ in 0..8 {
            s.record_failure("a", 10_000, &LIMIT);
        }
        assert_eq!(s.wait_for("a", 10_000, &LIMIT), Some(900));
        // The clock goes back an hour: the wait is still at most the longest back-off...
        assert_eq!(s.wait_for("a", 6_400, &LIMIT), Some(900));
        assert_eq!(s.wait_for("a", 0, &LIMIT), Some(900));
        // ...and once the failure times are moved to now, it runs out in real time rather
        // than when the clock is back at 10_900.
        assert!(s.forget_the_future(6_400));
        assert!(!s.forget_the_future(6_400));
        assert_eq!(s.wait_for("a", 7_299, &LIMIT), Some(1));
        assert_eq!(s.wait_for("a", 7_300, &LIMIT), None);
        s.record_failure("a", 7_300, &LIMIT);
        assert_eq!(s.wait_for("a", 7_300, &LIMIT), Some(900));
        // And forward: the wait is over.
        assert_eq!(s.wait_for("a", 100_000, &LIMIT), None);
        for now in [0, 1, 899, 900, 5_000, 7_299, 7_300, 8_199, u64::MAX] {
            assert!(s.wait_for("a", now, &LIMIT).unwrap_or(0) <= LIMIT.max_backoff);
        }
    }

    #[test]
    fn used_recovery_codes_belong_to_their_set() {
        let set = crate::recovery::from_plain(&[1; 16], ["11111111", "22222222"].into_iter(), 1);
        let mut s = State::default();
        assert_eq!(s.recovery_left(&set), 2);
        s.use_recovery(&set, 1);
        s.use_recovery(&set, 1);
        assert!(s.recovery_used(&set, 1) && !s.recovery_used(&set, 0));
        assert_eq!((s.recovery_left(&set), s.recovery.used.len()), (1, 1));
        s.record_success(9);
        assert!(s.recovery_used(&set, 1), "a login does not forget it");
        let text = s.to_toml().unwrap();
        assert_eq!(State::from_toml(&text, Path::new("state")).unwrap(), s);
        // A new set: nothing of it is used.
        let fresh = crate::recovery::from_plain(&[2; 16], ["11111111"].into_iter(), 2);
        assert_eq!(s.recovery_left(&fresh), 1);
        s.use_recovery(&fresh, 0);
        assert_eq!(s.recovery.used, [0]);
        assert_eq!(s.recovery_left(&set), 2);
        let bad = text.replace("used = [1]", "used = [100]");
        assert!(State::from_toml(&bad, Path::new("state")).is_err());
    }

    #[test]
    fn sources_are_bounded() {
        let mut s = State::default();
        for i in 0..(MAX_SOURCES as u64 + 10) {
            s.record_failure(&format!("10.0.0.{i}"), i, &LIMIT);
        }
        assert_eq!(s.failures.len(), MAX_SOURCES);
        assert!(
            s.failures.iter().all(|f| f.last >= 10),
            "the oldest were evicted"
        );
        s.record_failure(&"h".repeat(10_000), 1, &LIMIT);
        s.record_failure("\"\\\n\u{7f}é ok", 1, &LIMIT);
        assert!(s.failures.iter().all(|f| f.source.len() <= 255));
        assert_eq!(s.failures_from("\"\\\n\u{7f}é ok"), 1);
        assert!(s
            .failures
            .iter()
            .any(|f| f.source == "%22%5C%0A%7F%C3%A9%20ok"));
        let mut apart = State::default();
        apart.record_failure("a b", 1, &LIMIT);
        apart.record_failure("a%20b", 1, &LIMIT);
        assert_eq!(
            apart.failures_from("a b"),
            1,
            "escaping keeps sources apart"
        );
        apart.record_failure(&"é".repeat(200), 1, &LIMIT);
        let sources: Vec<&str> = apart.failures.iter().map(|f| f.source.as_str()).collect();
        assert_eq!(
            sources,
            ["a%20b", "a%2520b", &("%C3%A9".repeat(42) + "%C3")]
        );
        // The largest possible state still fits a slot.
        for (i, f) in s.failures.iter_mut().enumerate() {
            f.source = format!("{i:02}{}", "x".repeat(253));
            f.count = u32::MAX;
            f.last = u64::MAX;
        }
        s.last_step = u64::MAX;
        s.recovery = UsedRecovery {
            set: "f".repeat(64),
            used: (0..MAX_COUNT as u16).collect(),
        };
        s.refused = vec![u64::MAX; MAX_REFUSED];
        s.hotp = Some(Counter {
            key: "f".repeat(KEY_ID_LEN),
            next: u64::MAX,
        });
        // Every grace address at its longest spelling, dated as late as can be.
        for i in 0..crate::grace::MAX_ADDRESSES {
            let longest = format!("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff{i:x}");
            let address = crate::grace::Address::parse(&longest).unwrap();
            assert_eq!(address.to_string().len(), 39);
            s.grace.record(&address, u64::MAX, 1);
        }
        assert_eq!(s.grace.len(), crate::grace::MAX_ADDRESSES);
        let largest = s.to_toml().unwrap();
        assert!(
            largest.len() <= crate::slotfile::CAPACITY,
            "{}",
            largest.len()
        );
        assert_eq!(State::from_toml(&largest, Path::new("state")).unwrap(), s);
    }

    #[test]
    fn rotating_sources_meet_the_per_user_limit() {
        let mut s = State::default();
        let mut checked = 0;
        // A frozen clock and a new address for every guess.
        for i in 0..2000 {
            let source = format!("2001:db8::{i:x}");
            if s.wait_for(&source, 1000, &LIMIT).is_none() {
                checked += 1;
                s.record_failure(&source, 1000, &LIMIT);
            }
        }
        assert_eq!(
            checked, 10,
            "only max_failures_per_user guesses are checked"
        );
        assert_eq!(s.wait_for("fresh", 1000, &LIMIT), Some(30));
        assert_eq!(s.wait_for("fresh", 1030, &LIMIT), None);
    }

    #[test]
    fn a_full_table_forgets_sources_that_are_done_waiting_first() {
        let mut s = State::default();
        for i in 0..MAX_SOURCES as u64 {
            s.record_failure(&format!("h{i}"), 100, &LIMIT);
        }
        // h0 is backing off (3 failures) until 130; the others failed once and are free.
        for _ in 0..2 {
            s.record_failure("h0", 100, &LIMIT);
        }
        s.record_failure("new", 110, &LIMIT);
        assert!(
            s.failures.iter().any(|f| f.source == "h0"),
            "h0 is still held back"
        );
        assert_eq!(s.failures.len(), MAX_SOURCES);
        assert!(s.failures.iter().any(|f| f.source == "new"));
    }

    #[test]
    fn sources_from_0_1_are_put_in_todays_form_and_others_refused() {
        // As 0.1.0 wrote it: sources kept as given, escaped by the TOML writer alone.
        let odd = "x\u{1}".repeat(120);
        let old = State {
            last_step: 5,
            failures: vec![
                Failures {
                    source: odd.clone(),
                    count: 2,
                    last: 7,
                },
                Failures {
                    source: format!("{odd}y"),
                    count: 4,
                    last: 6,
                },
            ],
            ..State::default()
        };
        let text = old.to_toml().unwrap();
        let path = Path::new("state.toml");
        let legacy = State::from_legacy_toml(&text, path).unwrap();
        // Cut at 255 characters, the two become one, with the larger count and time.
        assert_eq!(legacy.failures.len(), 1, "{legacy:?}");
        let f = &legacy.failures[0];
        assert!(f.source.len() <= MAX_SOURCE_LEN && f.source.starts_with("x%01x%01"));
        assert_eq!((f.count, f.last), (4, 7));
        assert!(legacy.to_toml().unwrap().len() < 1000);
        // The same text in a slot is not what ivmfa writes there.
        assert!(State::from_toml(&text, path).is_err());
        let back = State::from_toml(&legacy.to_toml().unwrap(), path).unwrap();
        assert_eq!(back, legacy);
    }

    #[test]
    fn a_token_counter_belongs_to_its_key() {
        let a = Secret::from_bytes(&[1; 20]).unwrap();
        let b = Secret::from_bytes(&[2; 20]).unwrap();
        let mut s = State::default();
        assert_eq!(s.hotp_next(&a), None);
        s.record_failure("x", 5, &LIMIT);
        s.record_hotp_success(&a, 41);
        assert_eq!((s.hotp_next(&a), s.hotp_next(&b)), (Some(42), None));
        assert_eq!((s.total.count, s.failures.len(), s.last_step), (0, 0, 0));
        let text = s.to_toml().unwrap();
        assert!(text.contains("next = 42"), "{text}");
        assert_eq!(State::from_toml(&text, Path::new("state")).unwrap(), s);
        let key = crate::hotp::key_id(&a);
        for bad in [&key[..15], "zzzzzzzzzzzzzzzz"] {
            let text = text.replace(&key, bad);
            assert!(
                State::from_toml(&text, Path::new("state")).is_err(),
                "{bad}"
            );
        }
        s.set_hotp_next(&b, 7);
        assert_eq!((s.hotp_next(&a), s.hotp_next(&b)), (None, Some(7)));
    }

    #[test]
    fn file_round_trip_and_versions() {
        let mut s = State::default();
        s.record_success(123_456);
        s.record_failure("192.0.2.1", 99, &LIMIT);
        s.record_failure("", 100, &LIMIT);
        let text = s.to_toml().unwrap();
        let back = State::from_toml(&text, Path::new("state.toml")).unwrap();
        assert_eq!(back, s);
        let newer = text.replace("version = 1", "version = 9");
        assert!(State::from_toml(&newer, Path::new("state.toml")).is_err());
        assert!(!text.contains("grace"), "absent while empty");
        let newer = text.replace("version = 1", "version = 9");
        assert!(State::from_toml(&newer, Path::new("state.toml")).is_err());
        assert!(State::from_toml("last_step = -1", Path::new("s")).is_err());
    }

    #[test]
    fn grace_addresses_round_trip_and_a_failure_ends_them() {
        use crate::grace::Address;
        let a = Address::parse("192.0.2.1").unwrap();
        let b = Address::parse("2001:db8::1").unwrap();
        let mut s = State::default();
        s.record_success(5);
        s.grace.record(&a, 1000, 60);
        s.grace.record(&b, 1001, 60);
        let text = s.to_toml().unwrap();
        assert!(
            text.contains("[grace]\n\"192.0.2.1\" = 1000\n\"2001:db8::1\" = 1001\n"),
            "{text}"
        );
        let path = Path::new("state");
        assert_eq!(State::from_toml(&text, path).unwrap(), s);
        // A login succeeding elsewhere keeps them; a wrong code anywhere ends them all.
        s.record_success(6);
        assert!(s.grace.covers(&a, 1001, 60));
        s.record_failure("", 1002, &LIMIT);
        assert!(s.grace.is_empty());
        // What ivmfa never writes is refused.
        for bad in [
            "\"host.example\" = 1",
            "\"2001:DB8::1\" = 1",
            "\"192.0.2.1\" = -1",
        ] {
            let odd = text.replace("\"192.0.2.1\" = 1000", bad);
            assert!(State::from_toml(&odd, path).is_err(), "{bad}");
        }
    }
}
