//! Everything the person at the login prompt reads, in one place.
//!
//! Short, plain, and never revealing why in detail: the administrator finds the reason in
//! syslog; the user is told only what to do next.

pub const UNAVAILABLE: &str =
    "Multi-factor authentication is not available right now. Please contact your administrator.";

pub const NOT_ENROLLED: &str = "This account requires multi-factor authentication, but it has \
not been set up yet. Please contact your administrator.";

pub const WRONG_CODE: &str = "That code is not correct.";

pub const REPLAYED: &str =
    "That code has already been used. Wait for the next code in your app, then try again.";

pub fn malformed(digits: u8) -> String {
    format!("Please enter the {digits}-digit code from your authenticator app.")
}

pub fn locked_out(seconds: u64) -> String {
    format!(
        "Too many wrong codes. Please wait {} before trying again.",
        duration(seconds)
    )
}

/// "45 seconds", "2 minutes", "1 minute 30 seconds".
pub fn duration(seconds: u64) -> String {
    let plural = |n: u64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    let (m, s) = (seconds / 60, seconds % 60);
    match (m, s) {
        (0, s) => plural(s, "second"),
        (m, 0) => plural(m, "minute"),
        (m, s) => format!("{} {}", plural(m, "minute"), plural(s, "second")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(1), "1 second");
        assert_eq!(duration(45), "45 seconds");
        assert_eq!(duration(60), "1 minute");
        assert_eq!(duration(90), "1 minute 30 seconds");
        assert_eq!(duration(900), "15 minutes");
    }
}
