//! What the user typed at the code prompt.
//!
//! The answer comes from a remote client, so this is the first parser an attacker reaches: it
//! looks at no more than a bounded prefix and accepts only ASCII digits, optionally split by
//! spaces the way apps display them ("123 456").

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

#[derive(Debug)]
pub enum Answer {
    Code(Code),
    /// Nothing was typed.
    Empty,
    /// Something that is not a code of the expected length.
    Malformed,
}

pub fn parse(raw: &str, digits: u8) -> Answer {
    if raw.len() > MAX_ANSWER_LEN {
        return Answer::Malformed;
    }
    let trimmed = raw.trim_matches(|c| c == ' ' || c == '\t');
    if trimmed.is_empty() {
        return Answer::Empty;
    }
    let mut code = Zeroizing::new(String::with_capacity(usize::from(digits)));
    for c in trimmed.chars() {
        match c {
            '0'..='9' => code.push(c),
            ' ' => {}
            _ => return Answer::Malformed,
        }
    }
    if code.len() != usize::from(digits) {
        return Answer::Malformed;
    }
    Answer::Code(Code(code))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepted(raw: &str) -> Option<String> {
        match parse(raw, 6) {
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
        assert!(matches!(parse("", 6), Answer::Empty));
        assert!(matches!(parse("   ", 6), Answer::Empty));
    }

    #[test]
    fn debug_is_redacted() {
        let Answer::Code(c) = parse("123456", 6) else {
            panic!()
        };
        assert_eq!(format!("{c:?}"), "Code(<redacted>)");
    }
}
