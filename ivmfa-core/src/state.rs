//! Per-user state that changes at every login: the replay watermark and failure counters.
//!
//! On disk this is `users/<name>/state.toml`. It is only read and written while the user's
//! lock is held (the store API demands the lock guard), so the check "is this step newer than
//! the last accepted one" and the update that follows are one atomic step across processes.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const FORMAT_VERSION: u32 = 1;
/// Sources remembered per user; the least recently failing one is forgotten first, so a
/// client rotating addresses cannot grow the file without bound.
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
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            max_failures: 3,
            backoff: 30,
            max_backoff: 900,
        }
    }
}

impl RateLimit {
    /// Seconds to wait after the `count`-th consecutive failure.
    pub fn delay_after(&self, count: u32) -> u64 {
        if count < self.max_failures {
            return 0;
        }
        let doublings = (count - self.max_failures).min(63);
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

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    /// Highest time step accepted so far; a code must be for a later step.
    pub last_step: u64,
    pub failures: Vec<Failures>,
}

impl State {
    /// Seconds `source` must still wait before another code is checked, if any.
    pub fn wait_for(&self, source: &str, now: u64, limit: &RateLimit) -> Option<u64> {
        let entry = self.entry(source)?;
        let until = entry.last.saturating_add(limit.delay_after(entry.count));
        (until > now).then(|| until - now)
    }

    pub fn record_failure(&mut self, source: &str, now: u64) {
        let source = cap(source);
        if let Some(entry) = self.failures.iter_mut().find(|f| f.source == source) {
            entry.count = entry.count.saturating_add(1);
            entry.last = now;
            return;
        }
        if self.failures.len() >= MAX_SOURCES {
            if let Some(oldest) = (0..self.failures.len()).min_by_key(|&i| self.failures[i].last) {
                self.failures.swap_remove(oldest);
            }
        }
        self.failures.push(Failures {
            source: source.to_owned(),
            count: 1,
            last: now,
        });
    }

    /// A correct code proves possession of the secret: every counter starts over.
    pub fn record_success(&mut self, step: u64) {
        self.last_step = step;
        self.failures.clear();
    }

    pub fn failures_from(&self, source: &str) -> u32 {
        self.entry(source).map_or(0, |f| f.count)
    }

    fn entry(&self, source: &str) -> Option<&Failures> {
        let source = cap(source);
        self.failures.iter().find(|f| f.source == source)
    }

    pub fn to_toml(&self) -> Result<String> {
        let file = File {
            version: FORMAT_VERSION,
            last_step: self.last_step,
            failures: self.failures.clone(),
        };
        toml::to_string(&file).map_err(|e| Error::Invalid(format!("cannot encode state: {e}")))
    }

    pub fn from_toml(text: &str, path: &Path) -> Result<State> {
        let file: File = crate::config::parse_toml(text, path)?;
        if file.version != FORMAT_VERSION {
            return Err(Error::corrupt(
                path,
                format!("format version {} is not supported", file.version),
            ));
        }
        if file.failures.len() > MAX_SOURCES {
            return Err(Error::corrupt(path, "too many failure entries"));
        }
        Ok(State {
            last_step: file.last_step,
            failures: file.failures,
        })
    }
}

fn cap(source: &str) -> &str {
    if source.len() <= MAX_SOURCE_LEN {
        return source;
    }
    let mut end = MAX_SOURCE_LEN;
    while !source.is_char_boundary(end) {
        end -= 1;
    }
    &source[..end]
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    version: u32,
    last_step: u64,
    #[serde(default)]
    failures: Vec<Failures>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: RateLimit = RateLimit {
        max_failures: 3,
        backoff: 30,
        max_backoff: 900,
    };

    #[test]
    fn backoff_doubles_and_is_bounded() {
        let delays: Vec<u64> = (0..10).map(|n| LIMIT.delay_after(n)).collect();
        assert_eq!(delays, [0, 0, 0, 30, 60, 120, 240, 480, 900, 900]);
        assert_eq!(LIMIT.delay_after(u32::MAX), 900);
    }

    #[test]
    fn waiting_counts_from_the_last_failure() {
        let mut s = State::default();
        for t in [100, 101, 102] {
            assert_eq!(s.wait_for("a", t, &LIMIT), None);
            s.record_failure("a", t);
        }
        assert_eq!(s.wait_for("a", 102, &LIMIT), Some(30));
        assert_eq!(s.wait_for("a", 131, &LIMIT), Some(1));
        assert_eq!(s.wait_for("a", 132, &LIMIT), None);
        assert_eq!(
            s.wait_for("b", 102, &LIMIT),
            None,
            "other sources are not held back"
        );
        s.record_failure("a", 140);
        assert_eq!(s.wait_for("a", 140, &LIMIT), Some(60));
        s.record_success(7);
        assert_eq!(s.wait_for("a", 141, &LIMIT), None);
        assert_eq!(s.last_step, 7);
    }

    #[test]
    fn sources_are_bounded() {
        let mut s = State::default();
        for i in 0..(MAX_SOURCES as u64 + 10) {
            s.record_failure(&format!("10.0.0.{i}"), i);
        }
        assert_eq!(s.failures.len(), MAX_SOURCES);
        assert!(
            s.failures.iter().all(|f| f.last >= 10),
            "the oldest were evicted"
        );
        s.record_failure(&"h".repeat(10_000), 1);
        assert!(s.failures.iter().all(|f| f.source.len() <= 255));
    }

    #[test]
    fn file_round_trip_and_versions() {
        let mut s = State::default();
        s.record_success(123_456);
        s.record_failure("192.0.2.1", 99);
        s.record_failure("", 100);
        let text = s.to_toml().unwrap();
        let back = State::from_toml(&text, Path::new("state.toml")).unwrap();
        assert_eq!(back, s);
        let newer = text.replace("version = 1", "version = 9");
        assert!(State::from_toml(&newer, Path::new("state.toml")).is_err());
        assert!(State::from_toml("last_step = -1", Path::new("s")).is_err());
    }
}
