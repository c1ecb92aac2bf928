//! Text for syslog that came from outside (user names, hosts, services, file contents).

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
