//! One answer that holds the password and, typed straight after it, the code (`forward_pass`),
//! for services that ask a single question (OpenVPN's PAM plugin, IMAP and SMTP AUTH, RADIUS
//! front ends).
//!
//! Only the shapes a user is told to type are split off the end, nothing else: the
//! enrollment's number of digits (a code), a recovery code as it was shown (`abcd-efgh-jkmn`,
//! any case), or eight digits (a google-authenticator scratch code, imported as a recovery
//! code). The password is whatever comes before, byte for byte (spaces included), so a
//! password that itself ends in digits still works: the code is always the last digits.
//!
//! A code split and a recovery split of one answer are two readings of one guess, judged in one
//! attempt under the user's lock and counted once (see `decision/auth.rs`). A dashed recovery
//! code can never also be read as a code (its fifth character from the end is a dash); only
//! eight trailing digits have both readings, as an 8-digit answer at the code prompt has.

use zeroize::Zeroizing;

use crate::input::{self, Accepts, Answer, Code};

/// Longest answer looked at: Linux-PAM's PAM_MAX_RESP_SIZE, the most a conversation is
/// expected to return. Anything longer is refused unread.
pub const MAX_COMBINED_LEN: usize = 512;

/// The length of a recovery code as shown: three groups of four, joined by dashes.
const SHOWN_RECOVERY_LEN: usize = 14;
/// The length of a google-authenticator scratch code.
const SCRATCH_LEN: usize = 8;

/// The readings of one answer; either may be missing, both may be.
#[derive(Default)]
pub struct Split {
    /// The last `digits` characters as a code, and the password before them.
    pub code: Option<(Code, Zeroizing<String>)>,
    /// A recovery code at the end (canonical form), and the password before it.
    pub recovery: Option<(Zeroizing<String>, Zeroizing<String>)>,
}

impl std::fmt::Debug for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Split(code: {}, recovery: {}, <redacted>)",
            self.code.is_some(),
            self.recovery.is_some()
        )
    }
}

impl Split {
    /// Neither a code nor a recovery code at the end: the password alone, or a typo.
    pub fn is_empty(&self) -> bool {
        self.code.is_none() && self.recovery.is_none()
    }
}

/// Splits `raw` into the readings above, for an enrollment whose codes have `digits` digits.
pub fn split(raw: &str, digits: u8) -> Split {
    let mut out = Split::default();
    if raw.len() > MAX_COMBINED_LEN {
        return out;
    }
    let code_only = Accepts {
        digits,
        reset: None,
        invert: false,
        recovery: false,
    };
    out.code = tail(raw, usize::from(digits))
        .filter(|(_, t)| all_digits(t))
        .and_then(|(password, t)| match input::parse(t, code_only) {
            Answer::Code(code) => Some((code, Zeroizing::new(password.to_owned()))),
            _ => None,
        });
    let shown = tail(raw, SHOWN_RECOVERY_LEN).filter(|(_, t)| dashed(t));
    let scratch = tail(raw, SCRATCH_LEN).filter(|(_, t)| all_digits(t));
    out.recovery = shown.or(scratch).and_then(|(password, t)| {
        crate::recovery::normalize(t).map(|r| (r, Zeroizing::new(password.to_owned())))
    });
    out
}

/// `raw` cut `len` bytes before its end, if that falls between characters.
fn tail(raw: &str, len: usize) -> Option<(&str, &str)> {
    let at = raw.len().checked_sub(len)?;
    raw.is_char_boundary(at).then(|| raw.split_at(at))
}

fn all_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

/// `xxxx-xxxx-xxxx` with letters and digits for the x (the alphabet is checked later).
fn dashed(text: &str) -> bool {
    text.len() == SHOWN_RECOVERY_LEN
        && text.bytes().enumerate().all(|(i, b)| match i {
            4 | 9 => b == b'-',
            _ => b.is_ascii_alphanumeric(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_reading(raw: &str, digits: u8) -> Option<(String, String)> {
        split(raw, digits)
            .code
            .map(|(c, p)| (p.as_str().to_owned(), c.as_str().to_owned()))
    }

    fn recovery_reading(raw: &str) -> Option<(String, String)> {
        split(raw, 6)
            .recovery
            .map(|(r, p)| (p.as_str().to_owned(), r.as_str().to_owned()))
    }

    #[test]
    fn the_code_is_the_last_digits_whatever_the_password_ends_in() {
        let reading = |p: &str, c: &str| Some((p.to_owned(), c.to_owned()));
        assert_eq!(
            code_reading("hunter2123456", 6),
            reading("hunter2", "123456")
        );
        assert_eq!(
            code_reading("summer2024654321", 6),
            reading("summer2024", "654321")
        );
        assert_eq!(
            code_reading(" spaced pass 012345", 6),
            reading(" spaced pass ", "012345")
        );
        assert_eq!(code_reading("123456", 6), reading("", "123456"));
        assert_eq!(
            code_reading("pässwörd123456", 6),
            reading("pässwörd", "123456")
        );
        assert_eq!(code_reading("pw12345678", 8), reading("pw", "12345678"));
    }

    #[test]
    fn nothing_but_the_configured_shapes_is_split_off() {
        for raw in [
            "password",
            "password12345",
            "password 123 456",
            "password123456 ",
            "password１２３４５６",
            "",
            "12345",
        ] {
            assert!(code_reading(raw, 6).is_none(), "{raw:?}");
            assert!(recovery_reading(raw).is_none(), "{raw:?}");
        }
        // A recovery code only as it was shown, with its dashes: a password that happens to
        // end in twelve letters of the alphabet is not read as one.
        assert!(recovery_reading("passabcdefghjkmn").is_none());
        assert!(recovery_reading("pass-bcd-efgh-jkmn").is_none());
        assert!(
            recovery_reading("passabcd-efgh-ijkl").is_none(),
            "l is not in the alphabet"
        );
        let long = format!("{}123456", "x".repeat(MAX_COMBINED_LEN));
        assert!(split(&long, 6).is_empty());
    }

    #[test]
    fn recovery_codes_as_shown_and_scratch_codes() {
        assert_eq!(
            recovery_reading("pw-1ABCD-EFGH-JKMN"),
            Some(("pw-1".to_owned(), "abcdefghjkmn".to_owned()))
        );
        let dashed = split("pwabcd-efgh-2345", 6);
        assert!(dashed.code.is_none(), "a dashed code is never a code too");
        // Eight digits at the end have both readings, each with its own password.
        assert_eq!(
            recovery_reading("pw12345678"),
            Some(("pw".to_owned(), "12345678".to_owned()))
        );
        assert_eq!(
            code_reading("pw12345678", 6),
            Some(("pw12".to_owned(), "345678".to_owned()))
        );
    }

    #[test]
    fn debug_shows_no_password_or_code() {
        let text = format!("{:?}", split("secretpw123456", 6));
        assert!(
            !text.contains("secretpw") && !text.contains("123456"),
            "{text}"
        );
    }
}
