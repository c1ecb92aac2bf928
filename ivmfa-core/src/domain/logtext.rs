//! Text that came from outside (user names, hosts, services, file contents, the fleet
//! database's answers), made safe for a syslog line or for the user's terminal.

/// Makes untrusted text safe for one log line: escapes control characters, caps the length.
pub fn printable(text: &str) -> String {
    const MAX: usize = 64;
    let mut out: String = text
        .chars()
        .take(MAX)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().count() > MAX {
        out.push_str("...");
    }
    out
}

/// Makes untrusted text safe to show the user in a conversation message: control characters
/// (an escape sequence that retitles or rewrites the terminal, a carriage return, a bell) and
/// the invisible characters that hide or reorder text are shown escaped (`\u{1b}`), the rest
/// as it is, and at most `max` characters of the text are taken.
pub fn shown(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max.saturating_mul(4)));
    for c in text.chars().take(max) {
        if c.is_control() || invisible(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    if text.chars().nth(max).is_some() {
        out.push_str("...");
    }
    out
}

/// Characters that are not control characters but change what the eye reads: zero-width
/// ones, and the bidirectional overrides and isolates.
fn invisible(c: char) -> bool {
    matches!(c,
        '\u{00ad}'
        | '\u{061c}'
        | '\u{180e}'
        | '\u{200b}'..='\u{200f}'
        | '\u{2028}'..='\u{202e}'
        | '\u{2060}'..='\u{2069}'
        | '\u{feff}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_text_escapes_what_a_terminal_would_act_on() {
        assert_eq!(
            shown("Call\x1b]0;owned\x07 us\r\n", 100),
            "Call\\u{1b}]0;owned\\u{7} us\\u{d}\\u{a}"
        );
        assert_eq!(shown("a\u{202e}b\u{200b}c", 100), "a\\u{202e}b\\u{200b}c");
        // Everything else stays as written, quotes and accents included.
        assert_eq!(shown("Don't \"panic\", Zoë", 100), "Don't \"panic\", Zoë");
        assert_eq!(shown("abcdef", 3), "abc...");
        assert_eq!(shown("abc", 3), "abc");
    }
}
