//! Counter-based codes (RFC 4226), as event-based hardware tokens show them (YubiKey
//! OATH-HOTP, Feitian c100 and the like): every press of the button moves the token's counter
//! on by one and shows the code for the new value.
//!
//! The server keeps the counter it expects next (in the state, written under the user's
//! lock). A code is looked for from there up to `hotp_window` presses ahead, since presses that
//! never reached a login (a code mistyped or not sent, a button pressed in a pocket) move the
//! token on alone; accepting a code moves the counter past it, so that code and every one
//! before it are used up. Codes a little behind the counter are recognised only to tell the
//! user so. Nothing here depends on the clock.

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::enrollment::{Enrollment, Secret};
use crate::error::Result;
use crate::input::Code;
use crate::totp::generator;

#[derive(Debug, PartialEq, Eq)]
pub enum Check {
    /// The code is right for `counter`, the expected one or up to the window ahead of it.
    Accepted { counter: u64 },
    /// The code is right for a counter already passed: used, or skipped by a later code.
    Used,
    /// The code is not right for any counter near the expected one.
    Wrong,
}

/// How many counters after the expected one `resync` searches for two consecutive codes. Two
/// 6-digit codes match a wrong pair of neighbours by chance about once in 10^12 tries, so a
/// thousand presses ahead are still safe to find.
pub const RESYNC_RANGE: u64 = 1000;

/// The counter every code is computed for; the largest one is never accepted, as the counter
/// after it could not be stored.
fn usable(counter: u64) -> bool {
    counter < u64::MAX
}

/// Checks `code` for the counters from `next` (the one the server expects) to `window`
/// after it, the lowest first; a code for one of the `window` (at least one) counters before
/// `next` is reported as [`Check::Used`].
pub fn verify(enrollment: &Enrollment, code: &Code, next: u64, window: u8) -> Result<Check> {
    let hotp = generator(enrollment, 1)?;
    let matches = |counter: u64| usable(counter) && hotp.check(code.as_str(), counter).is_some();
    let window = u64::from(window);
    if let Some(counter) = (next..=next.saturating_add(window)).find(|&c| matches(c)) {
        return Ok(Check::Accepted { counter });
    }
    if (next.saturating_sub(window.max(1))..next).any(matches) {
        return Ok(Check::Used);
    }
    Ok(Check::Wrong)
}

/// The counter of `second`, if `first` and `second` are the codes of two consecutive
/// counters from `next` on, within [`RESYNC_RANGE`]: where a token that ran beyond the
/// window stands. Counters before `next` are never searched: their codes stay used.
pub fn resync(
    enrollment: &Enrollment,
    first: &Code,
    second: &Code,
    next: u64,
) -> Result<Option<u64>> {
    let hotp = generator(enrollment, 1)?;
    let matches =
        |code: &Code, counter: u64| usable(counter) && hotp.check(code.as_str(), counter).is_some();
    let found = (next..next.saturating_add(RESYNC_RANGE))
        .find(|&c| matches(first, c) && matches(second, c.saturating_add(1)));
    Ok(found.map(|c| c + 1))
}

/// The code for `counter`, as the token shows it; for tests and the import's checks.
pub fn code_at(enrollment: &Enrollment, counter: u64) -> Result<Zeroizing<String>> {
    Ok(Zeroizing::new(
        generator(enrollment, 1)?.generate(counter).to_string(),
    ))
}

/// Names a secret in the state without revealing it: the counter kept there belongs to this
/// secret, so the same key provisioned again goes on from where it was (its used codes stay
/// used), and a new key starts afresh. 64 bits of a hash no one can turn back into a 128-bit
/// or longer key.
pub fn key_id(secret: &Secret) -> String {
    let mut h = Sha256::new();
    h.update(b"ivmfa hotp counter\0");
    h.update(secret.expose());
    crate::recovery::hex(&h.finalize()[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"12345678901234567890";

    fn token() -> Enrollment {
        Enrollment::hotp(Secret::from_bytes(KEY).unwrap(), 0)
    }

    fn code(text: &str) -> Code {
        crate::input::code_for_tests(text, 6)
    }

    /// RFC 4226 Appendix D: the RFC's key, counters 0 to 9.
    const APPENDIX_D: [&str; 10] = [
        "755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871",
        "520489",
    ];

    #[test]
    fn rfc4226_appendix_d_vectors() {
        let e = token();
        for (counter, want) in APPENDIX_D.iter().enumerate() {
            let counter = counter as u64;
            assert_eq!(code_at(&e, counter).unwrap().as_str(), *want, "{counter}");
            assert_eq!(
                verify(&e, &code(want), counter, 0).unwrap(),
                Check::Accepted { counter }
            );
        }
        // The 8-digit values are the RFC's truncated decimals (its table's last column).
        let eight = Enrollment {
            digits: 8,
            ..token()
        };
        assert_eq!(code_at(&eight, 0).unwrap().as_str(), "84755224");
        assert_eq!(code_at(&eight, 9).unwrap().as_str(), "45520489");
    }

    #[test]
    fn the_window_looks_ahead_only() {
        let e = token();
        // Expecting 2: codes 2 to 5 are in a window of 3, 6 is not; 0 and 1 are used.
        for (counter, want) in APPENDIX_D.iter().enumerate() {
            let counter = counter as u64;
            let got = verify(&e, &code(want), 2, 3).unwrap();
            let expected = match counter {
                0 | 1 => Check::Used,
                2..=5 => Check::Accepted { counter },
                _ => Check::Wrong,
            };
            assert_eq!(got, expected, "{counter}");
        }
        // A window of 0 takes the expected code alone, and still knows the last one used.
        assert_eq!(
            verify(&e, &code(APPENDIX_D[3]), 3, 0).unwrap(),
            Check::Accepted { counter: 3 }
        );
        assert_eq!(
            verify(&e, &code(APPENDIX_D[4]), 3, 0).unwrap(),
            Check::Wrong
        );
        assert_eq!(verify(&e, &code(APPENDIX_D[2]), 3, 0).unwrap(), Check::Used);
    }

    #[test]
    fn resync_finds_two_consecutive_codes_ahead_only() {
        let e = token();
        let at = |c: u64| code(&code_at(&e, c).unwrap());
        assert_eq!(resync(&e, &at(500), &at(501), 0).unwrap(), Some(501));
        assert_eq!(resync(&e, &at(500), &at(501), 500).unwrap(), Some(501));
        // Not consecutive, in the wrong order, behind the counter, or beyond the range.
        assert_eq!(resync(&e, &at(500), &at(502), 0).unwrap(), None);
        assert_eq!(resync(&e, &at(501), &at(500), 0).unwrap(), None);
        assert_eq!(resync(&e, &at(500), &at(501), 501).unwrap(), None);
        let far = RESYNC_RANGE + 10;
        assert_eq!(resync(&e, &at(far), &at(far + 1), 0).unwrap(), None);
    }

    #[test]
    fn the_end_of_the_counter_does_not_overflow() {
        let e = token();
        let c = code("123456");
        assert!(verify(&e, &c, u64::MAX, 100).is_ok());
        assert!(verify(&e, &c, u64::MAX - 1, 100).is_ok());
        assert!(resync(&e, &c, &c, u64::MAX - 5).is_ok());
        let last = code(&code_at(&e, u64::MAX).unwrap());
        assert_ne!(
            verify(&e, &last, u64::MAX - 1, 5).unwrap(),
            Check::Accepted { counter: u64::MAX }
        );
    }

    #[test]
    fn the_key_id_tells_keys_apart_and_shows_nothing_of_them() {
        let a = Secret::from_bytes(KEY).unwrap();
        let b = Secret::from_bytes(&[7; 20]).unwrap();
        assert_eq!(key_id(&a), key_id(&a.clone()));
        assert_ne!(key_id(&a), key_id(&b));
        assert_eq!(key_id(&a).len(), 16);
        assert!(!key_id(&a).contains("3132"));
    }
}
