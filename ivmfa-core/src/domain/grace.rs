//! The grace period (`grace_period`): once a user has typed a right code in a login from a
//! remote address, that user's further logins from the same address skip the code for a
//! while. Kept in the user's state: which addresses gave a right code, and when.
//!
//! Only addresses are kept, never host names: a name is whatever its DNS says, and it would
//! cost a slot more room than an address. Each address is kept in one canonical spelling, so
//! `::FFFF:192.0.2.1` and `::ffff:192.0.2.1` are one address, and the largest state still fits
//! its slot (see the state module's tests).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// The longest grace period an administrator may set: one day.
pub const MAX_PERIOD: u64 = 86_400;
/// Addresses remembered per user. When a right code comes from one more, the one whose code
/// is oldest is forgotten (its next login asks for a code again, nothing worse).
pub const MAX_ADDRESSES: usize = 8;

/// A remote address, in the one spelling it is kept and logged in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address(String);

impl Address {
    /// The remote host as an address; `None` for a host name, an address with a zone
    /// (`fe80::1%eth0`) or anything else.
    pub fn parse(rhost: &str) -> Option<Address> {
        rhost
            .parse::<IpAddr>()
            .ok()
            .map(|ip| Address(ip.to_string()))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a grace period that covers a login is not given: something that denies before a code
/// is asked for holds it back (the file store and the fleet database hold it back alike).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Withheld {
    /// The user or the source is backing off after wrong codes.
    BackingOff,
    /// The user said the device is lost: until the administrators decide, every login shows
    /// the device, or a recovery code.
    ResetPending,
}

impl fmt::Display for Withheld {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Withheld::BackingOff => "backing off after wrong codes",
            Withheld::ResetPending => "a reset request is pending",
        })
    }
}

/// The addresses that gave a right code, each with the Unix time of its latest one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Grace(BTreeMap<String, u64>);

impl Grace {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// When `address` last gave a right code, if it is remembered.
    pub fn since(&self, address: &Address) -> Option<u64> {
        self.0.get(&address.0).copied()
    }

    /// Records a right code from `address` at `now`. Addresses whose grace is over are
    /// forgotten, and when the list is full, the one with the oldest code.
    pub fn record(&mut self, address: &Address, now: u64, period: u64) {
        self.forget_expired(now, period);
        self.0.remove(&address.0);
        while self.0.len() >= MAX_ADDRESSES {
            let oldest = self
                .0
                .iter()
                .min_by_key(|(_, &at)| at)
                .map(|(a, _)| a.clone());
            match oldest {
                Some(a) => self.0.remove(&a),
                None => break,
            };
        }
        self.0.insert(address.0.clone(), now);
    }

    /// Forgets the addresses whose grace is over at `now`: all of them with `period` 0 (the
    /// option turned off since).
    pub fn forget_expired(&mut self, now: u64, period: u64) {
        self.0.retain(|_, &mut at| covers(at, now, period));
    }

    /// Whether `address` gave a right code less than `period` seconds before `now`.
    pub fn covers(&self, address: &Address, now: u64, period: u64) -> bool {
        self.since(address)
            .is_some_and(|at| covers(at, now, period))
    }

    /// Ends every grace period (a wrong code was typed somewhere).
    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// Whether this is something [`Grace::record`] could have written: few enough entries,
    /// each an address in its canonical spelling. Anything else would not be found by a
    /// login, and might not fit the slot.
    pub(crate) fn is_well_formed(&self) -> bool {
        self.0.len() <= MAX_ADDRESSES
            && self
                .0
                .keys()
                .all(|a| Address::parse(a).is_some_and(|parsed| parsed.0 == *a))
    }
}

/// A code at `at` covers `now` if it is less than `period` seconds old. A code dated after
/// `now` (the clock was set back since) covers nothing: the wait would last until the clock
/// caught up.
fn covers(at: u64, now: u64, period: u64) -> bool {
    at <= now && now - at < period
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> Address {
        Address::parse(text).unwrap()
    }

    #[test]
    fn only_addresses_in_one_spelling() {
        assert_eq!(addr("192.0.2.1").to_string(), "192.0.2.1");
        assert_eq!(addr("2001:DB8:0:0::1").to_string(), "2001:db8::1");
        assert_eq!(addr("::FFFF:192.0.2.1"), addr("::ffff:192.0.2.1"));
        for not in [
            "",
            "host.example",
            "fe80::1%eth0",
            "192.0.2.1 ",
            "192.0.2.1:22",
            "[::1]",
        ] {
            assert!(Address::parse(not).is_none(), "{not:?}");
        }
    }

    #[test]
    fn a_right_code_covers_its_address_for_the_period_only() {
        let mut g = Grace::default();
        g.record(&addr("192.0.2.1"), 1000, 60);
        assert!(g.covers(&addr("192.0.2.1"), 1000, 60));
        assert!(g.covers(&addr("192.0.2.1"), 1059, 60));
        assert!(!g.covers(&addr("192.0.2.1"), 1060, 60));
        assert!(!g.covers(&addr("192.0.2.2"), 1000, 60));
        assert!(!g.covers(&addr("192.0.2.1"), 1000, 0), "off");
        // The clock set back: a code from the future covers nothing.
        assert!(!g.covers(&addr("192.0.2.1"), 999, 60));
        // A later code renews it; an earlier entry's time is not kept.
        g.record(&addr("192.0.2.1"), 1050, 60);
        assert_eq!(g.since(&addr("192.0.2.1")), Some(1050));
        g.clear();
        assert!(g.is_empty());
    }

    #[test]
    fn the_list_is_bounded_and_forgets_the_oldest_and_the_expired() {
        let mut g = Grace::default();
        for i in 0..(MAX_ADDRESSES as u64 + 3) {
            g.record(&addr(&format!("198.51.100.{i}")), 1000 + i, 3600);
        }
        assert_eq!(g.len(), MAX_ADDRESSES);
        assert!(!g.covers(&addr("198.51.100.0"), 1011, 3600));
        assert!(!g.covers(&addr("198.51.100.2"), 1011, 3600));
        assert!(g.covers(&addr("198.51.100.3"), 1011, 3600));
        // Expired ones go first, whatever the count.
        g.record(&addr("203.0.113.1"), 10_000, 3600);
        assert_eq!(g.len(), 1);
        assert!(g.is_well_formed());
        g.forget_expired(10_000, 0);
        assert!(g.is_empty(), "turned off: nothing is kept");
    }

    #[test]
    fn only_what_record_writes_is_well_formed() {
        let mut g = Grace::default();
        g.0.insert("host.example".into(), 1);
        assert!(!g.is_well_formed());
        let mut g = Grace::default();
        g.0.insert("2001:DB8::1".into(), 1);
        assert!(!g.is_well_formed(), "not the canonical spelling");
        let mut g = Grace::default();
        for i in 0..=MAX_ADDRESSES {
            g.0.insert(format!("192.0.2.{i}"), 1);
        }
        assert!(!g.is_well_formed(), "too many");
    }
}
