//! Everything the person at the login prompt reads, in one place.
//!
//! Short, plain, and never revealing why in detail: the administrator finds the reason in
//! syslog; the user is told only what to do next.

pub(crate) const UNAVAILABLE: &str =
    "Multi-factor authentication is not available right now. Please contact your administrator.";

/// The user's lock is held by another login for too long (a stopped process).
pub(crate) const BUSY: &str =
    "Multi-factor authentication is busy with another login of this account. Try again in a moment.";

/// The code prompt was answered with the password: the application asks only for one.
pub(crate) const PASSWORD_AT_CODE_PROMPT: &str = "This service asks only for a password, but this \
account needs a verification code as well. Log in with a program that asks for both (ssh in a \
terminal).";

pub(crate) const NOT_ENROLLED: &str =
    "This account requires multi-factor authentication, but it has \
not been set up yet. Please contact your administrator.";

pub(crate) const WRONG_CODE: &str = "That code is not correct.";

pub(crate) const REPLAYED: &str =
    "That code has already been used. Wait for the next code in your app, then try again.";

/// A hardware token's code for a counter already passed.
pub(crate) const TOKEN_CODE_USED: &str =
    "That code has already been used. Press the button on your token for a new code, then try again.";

pub(crate) const ENROLL_INTRO: &str = "Set up multi-factor authentication for this account.\n\
Install an authenticator app on your phone (for example Microsoft Authenticator), add an \
account (\"Other account\" or \"Scan a QR code\") and scan this code:";

pub(crate) fn enroll_key(key: &str, issuer: &str, account: &str) -> String {
    format!(
        "Cannot scan it? Enter this key in the app instead: {key}\n\
         (account {issuer}:{account}, time-based, 6 digits). If the picture does not scan, \
         type invert at the prompt to get it drawn the other way round."
    )
}

pub(crate) const ENROLL_PROMPT: &str = "Code shown in the app: ";

pub(crate) const ENROLL_NEEDS_TEXT: &str = "Multi-factor authentication must be set up, but this \
login cannot show the QR code. Log in with a client that shows messages (ssh in a terminal), \
or ask your administrator to enroll you.";

pub(crate) fn enroll_wrong(left: usize) -> String {
    let tries = if left == 1 { "try" } else { "tries" };
    format!("That code is not correct. Check the app shows this account; {left} {tries} left.")
}

pub(crate) const ENROLL_FAILED: &str =
    "The code was not correct three times, so nothing was set up. Log in again to start over.";

/// The fleet database ended a set-up before its code came (it waited too long, or another
/// login began one).
pub(crate) const SET_UP_ENDED: &str = "The set-up ended before a code from the app was \
confirmed, so nothing was set up. Log in again to start over.";

pub(crate) const ENROLL_RACED: &str =
    "Multi-factor authentication was set up for this account meanwhile. Log in again.";

pub(crate) const ENROLLED: &str = "Multi-factor authentication is set up. From now on, enter the \
code from your app after your password.";

pub fn recovery_codes(codes: &[&str]) -> String {
    format!(
        "Recovery codes: each one can be entered once instead of a code from the app, if your \
         phone is lost. Write them down and keep them safe; they are not shown again.\n    {}",
        codes.join("\n    ")
    )
}

pub(crate) fn recovery_accepted(left: usize) -> String {
    match left {
        0 => "Recovery code accepted. It was your last one: ask your administrator for new \
              recovery codes."
            .to_owned(),
        1 => "Recovery code accepted. You have 1 recovery code left.".to_owned(),
        n => format!("Recovery code accepted. You have {n} recovery codes left."),
    }
}

pub(crate) const TICKET_EXPIRED: &str =
    "Your multi-factor authentication reset was approved, but the \
time to set it up again has run out. Please contact your administrators.";

/// Fleet: the approved reset is for another host than this one.
pub(crate) const TICKET_ELSEWHERE: &str = "Your multi-factor authentication reset was approved \
for another machine: the one where you asked for it, unless your administrators told you \
another. Log in there to set up your new code.";

/// `reason` is an administrator's words from the store or the fleet database: shown escaped
/// and no longer than an administrator may write it.
pub(crate) fn reset_denied(reason: &str) -> String {
    format!(
        "Your request to reset multi-factor authentication was declined: {}",
        crate::logtext::shown(reason, crate::reset::MAX_REASON_LEN)
    )
}

pub(crate) fn malformed(digits: u8) -> String {
    format!("Please enter the {digits}-digit code from your authenticator app.")
}

/// `forward_pass`: the one answer has no code at its end.
pub(crate) fn malformed_combined(digits: u8) -> String {
    format!(
        "Please type your password followed by the {digits}-digit code from your authenticator \
         app, with nothing between them."
    )
}

/// `forward_pass`: set-up inside the login needs a login that asks for the code on its own.
pub(crate) const SET_UP_ELSEWHERE: &str = "Multi-factor authentication must be set up for this \
account first. Log in once with a program that asks for the code separately (ssh in a terminal).";

/// A wrong code that is right for a time `seconds` away: the phone's clock is off.
pub(crate) fn clock_off(seconds: u64) -> String {
    format!("{WRONG_CODE} {}", clock_hint(seconds))
}

/// What to do about a phone clock `seconds` off.
pub fn clock_hint(seconds: u64) -> String {
    let minutes = ((seconds + 30) / 60).max(1);
    let unit = if minutes == 1 { "minute" } else { "minutes" };
    format!(
        "It matches a time about {minutes} {unit} off: check the clock on your phone (set it \
         to automatic)."
    )
}

/// Backing off, with the way out for someone whose phone is gone.
pub(crate) fn held_may_reset(seconds: u64, keyword: &str) -> String {
    format!(
        "{} If you have lost your phone, type {keyword} to ask the administrators for help; \
         no code is checked until then.",
        locked_out(seconds)
    )
}

pub(crate) fn locked_out(seconds: u64) -> String {
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
