//! Checking a code against an enrollment (RFC 6238 on top of totp-rs).
//!
//! The window is walked here rather than inside totp-rs, because replay protection needs to
//! know *which* step matched and must skip steps at or below the watermark: a code that matches
//! an old step and, by coincidence, a newer one is accepted for the newer one.

use zeroize::Zeroizing;

use crate::enrollment::{Algorithm, Enrollment};
use crate::error::{Error, Result};
use crate::input::Code;

#[derive(Debug, PartialEq, Eq)]
pub enum Check {
    /// The code is right for `step`, which is newer than any accepted before.
    Accepted { step: u64 },
    /// The code is right, but only for steps already used (or refused in advance).
    Replayed,
    /// The code is not right for any step in the window.
    Wrong,
    /// Not right in the window, but for `step`, `offset` steps from now and within
    /// `SKEW_SEARCH_SECONDS`: most likely a phone whose clock is off. Refused all the same.
    Skewed { step: u64, offset: i64 },
}

/// How far outside the window a wrong code is looked for, to tell the user that their phone's
/// clock is off. Never accepted: see [`Check::Skewed`].
pub(crate) const SKEW_SEARCH_SECONDS: u64 = 600;

fn totp(enrollment: &Enrollment) -> Result<totp_rs::Totp> {
    generator(enrollment, enrollment.period)
}

/// totp-rs computes the HOTP value of `time / step`; with a step of 1 s that is the HOTP
/// value of the time itself, which is how [`crate::hotp`] gets RFC 4226's codes from it.
pub(crate) fn generator(enrollment: &Enrollment, step: u64) -> Result<totp_rs::Totp> {
    let algorithm = match enrollment.algorithm {
        Algorithm::SHA1 => totp_rs::Algorithm::SHA1,
        Algorithm::SHA256 => totp_rs::Algorithm::SHA256,
        Algorithm::SHA512 => totp_rs::Algorithm::SHA512,
    };
    totp_rs::Builder::new()
        .with_algorithm(algorithm)
        .with_digits(enrollment.digits)
        .with_skew(0)
        .with_step_duration(step)
        .with_secret(enrollment.secret.expose())
        .build()
        .map_err(|e| Error::Invalid(format!("unusable TOTP parameters: {e}")))
}

/// Checks `code` at unix time `now`, accepting `window` steps on either side, and refusing
/// steps at or below `last_step` and the steps in `refused` (matched earlier while they were
/// ahead of the clock). A code wrong in the window is looked for further out, up to
/// `SKEW_SEARCH_SECONDS` either way, only to say so.
pub fn verify(
    enrollment: &Enrollment,
    code: &Code,
    now: u64,
    window: u8,
    last_step: u64,
    refused: &[u64],
) -> Result<Check> {
    let totp = totp(enrollment)?;
    let matches = |step: u64| {
        step.checked_mul(enrollment.period)
            .is_some_and(|at| totp.check(code.as_str(), at).is_some())
    };
    let current = now / enrollment.period;
    let window = u64::from(window);
    let first = current.saturating_sub(window);
    let last = current.saturating_add(window);
    let mut replayed = false;
    for step in first..=last {
        if matches(step) {
            if step > last_step && !refused.contains(&step) {
                return Ok(Check::Accepted { step });
            }
            replayed = true;
        }
    }
    if replayed {
        return Ok(Check::Replayed);
    }
    // Nearest first, so that the offset reported is the likeliest one.
    let reach = (SKEW_SEARCH_SECONDS / enrollment.period.max(1)).max(window + 1);
    for distance in window + 1..=reach {
        for (step, offset) in [
            (current.checked_add(distance), distance as i64),
            (current.checked_sub(distance), -(distance as i64)),
        ] {
            if let Some(step) = step.filter(|&s| matches(s)) {
                return Ok(Check::Skewed { step, offset });
            }
        }
    }
    Ok(Check::Wrong)
}

/// The code for unix time `at`, as the user's app shows it; for tests and the benchmark.
pub fn code_at(enrollment: &Enrollment, at: u64) -> Result<Zeroizing<String>> {
    Ok(Zeroizing::new(totp(enrollment)?.generate(at).to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrollment::Secret;
    use crate::input::code_for_tests as code;

    fn enrollment(key: &[u8], algorithm: Algorithm, digits: u8) -> Enrollment {
        Enrollment {
            algorithm,
            digits,
            ..Enrollment::standard(Secret::from_bytes(key).unwrap(), 0)
        }
    }

    /// RFC 6238 Appendix B, all three algorithms, 8 digits, with the RFC's seeds.
    #[test]
    fn rfc6238_appendix_b_vectors() {
        let sha1 = b"12345678901234567890".as_slice();
        let sha256 = b"12345678901234567890123456789012".as_slice();
        let sha512 = b"1234567890123456789012345678901234567890123456789012345678901234".as_slice();
        let rows: [(u64, &str, &str, &str); 6] = [
            (59, "94287082", "46119246", "90693936"),
            (1111111109, "07081804", "68084774", "25091201"),
            (1111111111, "14050471", "67062674", "99943326"),
            (1234567890, "89005924", "91819424", "93441116"),
            (2000000000, "69279037", "90698825", "38618901"),
            (20000000000, "65353130", "77737706", "47863826"),
        ];
        for (t, c1, c256, c512) in rows {
            for (key, alg, want) in [
                (sha1, Algorithm::SHA1, c1),
                (sha256, Algorithm::SHA256, c256),
                (sha512, Algorithm::SHA512, c512),
            ] {
                let e = enrollment(key, alg, 8);
                assert_eq!(code_at(&e, t).unwrap().as_str(), want, "{alg:?} at {t}");
                assert_eq!(
                    verify(&e, &code(want, 8), t, 0, 0, &[]).unwrap(),
                    Check::Accepted { step: t / 30 }
                );
            }
        }
        // Six digits are the low six of the eight.
        let e = enrollment(sha1, Algorithm::SHA1, 6);
        assert_eq!(code_at(&e, 59).unwrap().as_str(), "287082");
    }

    #[test]
    fn window_edges() {
        let e = enrollment(b"12345678901234567890", Algorithm::SHA1, 6);
        let now = 1_111_111_111; // step 37037037, 1 s into it
        let step = now / 30;
        let at = |s: u64| code(&code_at(&e, s * 30).unwrap(), 6);
        for w in 0..=2u8 {
            for offset in -3i64..=3 {
                let s = (step as i64 + offset) as u64;
                let got = verify(&e, &at(s), now, w, 0, &[]).unwrap();
                if offset.unsigned_abs() <= u64::from(w) {
                    assert_eq!(got, Check::Accepted { step: s }, "w={w} offset={offset}");
                } else {
                    assert_eq!(
                        got,
                        Check::Skewed { step: s, offset },
                        "w={w} offset={offset}"
                    );
                }
            }
        }
    }

    #[test]
    fn replay_watermark() {
        let e = enrollment(b"12345678901234567890", Algorithm::SHA1, 6);
        let now = 1_111_111_111;
        let step = now / 30;
        let c = code(&code_at(&e, now).unwrap(), 6);
        assert_eq!(
            verify(&e, &c, now, 1, step - 1, &[]).unwrap(),
            Check::Accepted { step }
        );
        assert_eq!(verify(&e, &c, now, 1, step, &[]).unwrap(), Check::Replayed);
        assert_eq!(
            verify(&e, &c, now, 1, step + 5, &[]).unwrap(),
            Check::Replayed
        );
        // An older code is refused once a newer one has been used.
        let older = code(&code_at(&e, now - 30).unwrap(), 6);
        assert_eq!(
            verify(&e, &older, now, 1, step, &[]).unwrap(),
            Check::Replayed
        );
        // A step refused in advance is refused like a used one, and only that step.
        assert_eq!(verify(&e, &c, now, 1, 0, &[step]).unwrap(), Check::Replayed);
        assert_eq!(
            verify(&e, &c, now, 1, 0, &[step + 1]).unwrap(),
            Check::Accepted { step }
        );
    }

    #[test]
    fn far_future_clock_does_not_overflow() {
        let e = enrollment(b"12345678901234567890", Algorithm::SHA1, 6);
        let c = code("123456", 6);
        assert!(verify(&e, &c, u64::MAX, 10, 0, &[]).is_ok());
        assert!(verify(&e, &c, 0, 10, 0, &[]).is_ok());
    }

    #[test]
    fn a_code_off_by_minutes_is_reported_never_accepted() {
        let e = enrollment(b"12345678901234567890", Algorithm::SHA1, 6);
        let now = 1_111_111_111;
        let step = now / 30;
        for offset in [-20i64, -11, -4, -2, 2, 3, 10, 20] {
            let s = (step as i64 + offset) as u64;
            let c = code(&code_at(&e, s * 30).unwrap(), 6);
            assert_eq!(
                verify(&e, &c, now, 1, 0, &[]).unwrap(),
                Check::Skewed { step: s, offset },
                "{offset}"
            );
        }
        // Ten minutes is as far as it looks.
        for offset in [-21i64, 21, 40] {
            let s = (step as i64 + offset) as u64;
            let c = code(&code_at(&e, s * 30).unwrap(), 6);
            assert_eq!(verify(&e, &c, now, 1, 0, &[]).unwrap(), Check::Wrong);
        }
    }
}
