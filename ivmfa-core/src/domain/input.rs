//! What the user typed at the code prompt.
//!
//! The answer comes from a remote client, so this is the first parser an attacker reaches: it
//! refuses anything longer than a bounded length unread, and accepts only ASCII digits
//! (optionally split by spaces the way apps display them, "123 456"), a recovery code, or one
//! of the keywords the prompt offers. The shapes cannot be confused: a code is digits only, a
//! recovery code has letters or a different length, a keyword is a word.

use std::fmt;

use zeroize::Zeroizing;

/// Longest answer looked at; anything longer is refused unread.
pub const MAX_ANSWER_LEN: usize = 64;

/// A code in canonical form (digits only). Wiped on drop; `Debug` never shows it.
pub struct Code(Zeroizing<String>);

impl Code {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Code(<redacted>)")
    }
}

pub enum Answer {
    /// A code of the expected length.
    Code(Code),
    /// Something shaped like a recovery code, in canonical form.
    Recovery(Zeroizing<String>),
    /// The reset keyword: the user has lost the device.
    Reset,
    /// `invert`: draw the QR code for the other terminal background.
    Invert,
    /// Nothing was typed.
    Empty,
    /// Anything else.
    Malformed,
}

impl fmt::Debug for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Answer::Code(c) => write!(f, "Code({c:?})"),
            Answer::Recovery(_) => f.write_str("Recovery(<redacted>)"),
            Answer::Reset => f.write_str("Reset"),
            Answer::Invert => f.write_str("Invert"),
            Answer::Empty => f.write_str("Empty"),
            Answer::Malformed => f.write_str("Malformed"),
        }
    }
}

/// What the prompt being answered accepts besides a code.
#[derive(Clone, Copy, Debug)]
pub struct Accepts<'a> {
    pub digits: u8,
    /// The reset keyword, if requests are enabled at this prompt.
    pub reset: Option<&'a str>,
    pub invert: bool,
    pub recovery: bool,
}

/// `text` as a code of `digits` digits, for unit tests elsewhere in the crate.
#[cfg(test)]
#[allow(clippy::panic)]
pub(crate) fn code_for_tests(text: &str, digits: u8) -> Code {
    let accepts = Accepts {
        digits,
        reset: None,
        invert: false,
        recovery: false,
    };
    match parse(text, accepts) {
        Answer::Code(c) => c,
        other => panic!("{text} did not parse: {other:?}"),
    }
}

pub fn parse(raw: &str, accepts: Accepts) -> Answer {
    if raw.len() > MAX_ANSWER_LEN {
        return Answer::Malformed;
    }
    let trimmed = raw.trim_matches(|c| c == ' ' || c == '\t');
    if trimmed.is_empty() {
        return Answer::Empty;
    }
    if accepts
        .reset
        .is_some_and(|k| !k.is_empty() && trimmed.eq_ignore_ascii_case(k))
    {
        return Answer::Reset;
    }
    if accepts.invert && trimmed.eq_ignore_ascii_case("invert") {
        return Answer::Invert;
    }
    if let Some(code) = digits_only(trimmed).filter(|c| c.len() == usize::from(accepts.digits)) {
        return Answer::Code(Code(code));
    }
    if accepts.recovery {
        if let Some(canonical) = crate::recovery::normalize(trimmed) {
            return Answer::Recovery(canonical);
        }
    }
    Answer::Malformed
}

/// The digits of `text` if it has nothing but ASCII digits and spaces.
fn digits_only(text: &str) -> Option<Zeroizing<String>> {
    let mut code = Zeroizing::new(String::with_capacity(text.len()));
    for c in text.chars() {
        match c {
            '0'..='9' => code.push(c),
            ' ' => {}
            _ => return None,
        }
    }
    Some(code)
}

impl Code {
    /// An 8-digit code may also be a google-authenticator scratch code (imported as a
    /// recovery code) when the enrollment itself uses 8 digits.
    pub(crate) fn as_recovery(&self) -> Option<Zeroizing<String>> {
        crate::recovery::normalize(self.as_str())
    }
}

/// Compares two byte strings in time that depends on their lengths only: what was typed is
/// never compared with a secret byte by byte with an early exit.
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const CODE_ONLY: Accepts = Accepts {
        digits: 6,
        reset: None,
        invert: false,
        recovery: false,
    };
    const LOGIN: Accepts = Accepts {
        digits: 6,
        reset: Some("reset"),
        invert: false,
        recovery: true,
    };

    fn accepted(raw: &str) -> Option<String> {
        match parse(raw, CODE_ONLY) {
            Answer::Code(c) => Some(c.as_str().to_owned()),
            _ => None,
        }
    }

    #[test]
    fn accepts_codes_as_apps_show_them() {
        assert_eq!(accepted("123456").as_deref(), Some("123456"));
        assert_eq!(accepted("123 456").as_deref(), Some("123456"));
        assert_eq!(accepted(" 123456 ").as_deref(), Some("123456"));
        assert_eq!(accepted("\t012345").as_deref(), Some("012345"));
    }

    #[test]
    fn refuses_everything_else() {
        let ten_mb = "1".repeat(10 << 20);
        for raw in [
            "12345",
            "1234567",
            "12345a",
            "+12345",
            "-12345",
            "123456\0",
            "１２３４５６",
            "١٢٣٤٥٦",
            "123456x",
            "12 34 5",
            "0x1234",
            "123_456",
            &ten_mb,
        ] {
            assert!(accepted(raw).is_none(), "{:?}", &raw[..raw.len().min(20)]);
        }
        assert!(matches!(parse("", CODE_ONLY), Answer::Empty));
        assert!(matches!(parse("   ", CODE_ONLY), Answer::Empty));
    }

    #[test]
    fn keywords_and_recovery_codes_only_where_offered() {
        assert!(matches!(parse("reset", LOGIN), Answer::Reset));
        assert!(matches!(parse(" RESET ", LOGIN), Answer::Reset));
        assert!(matches!(parse("reset", CODE_ONLY), Answer::Malformed));
        let no_reset = Accepts {
            reset: Some(""),
            ..LOGIN
        };
        assert!(matches!(parse("", no_reset), Answer::Empty));
        assert!(matches!(parse("invert", LOGIN), Answer::Malformed));
        let enrolling = Accepts {
            invert: true,
            ..CODE_ONLY
        };
        assert!(matches!(parse("Invert", enrolling), Answer::Invert));
        assert!(matches!(
            parse("abcd-efgh-jkmn", LOGIN),
            Answer::Recovery(_)
        ));
        assert!(matches!(
            parse("ABCD EFGH JKMN", LOGIN),
            Answer::Recovery(_)
        ));
        assert!(matches!(parse("12345678", LOGIN), Answer::Recovery(_)));
        assert!(matches!(
            parse("abcd-efgh-jkmn", CODE_ONLY),
            Answer::Malformed
        ));
        assert!(matches!(parse("123456", LOGIN), Answer::Code(_)));
    }

    #[test]
    fn debug_is_redacted() {
        let Answer::Code(c) = parse("123456", CODE_ONLY) else {
            panic!()
        };
        assert_eq!(format!("{c:?}"), "Code(<redacted>)");
        let r = parse("abcd-efgh-jkmn", LOGIN);
        assert_eq!(format!("{r:?}"), "Recovery(<redacted>)");
    }
}
