//! Reading one user's line of a pam_oath usersfile (`/etc/users.oath`, oath-toolkit's
//! "UsersFile" format), so a user moving from pam_oath keeps the token or app they have.
//!
//! A line is whitespace-separated fields: the token type, the user name, a password (`-` for
//! none, `+` for one checked by another module, else a PIN in plain text), the key in hex, and
//! what pam_oath writes after each login: the counter, the last code accepted and its time.
//! `#` starts a comment line. Errors name a line number, never a line's text: the lines hold
//! keys and PINs.

use zeroize::Zeroizing;

use crate::enrollment::{Enrollment, Kind, Secret};
use crate::error::{Error, Result};

/// The one line of the user, as far as ivmfa can carry it over.
pub struct Entry {
    /// Its line number, to name in messages.
    pub line: usize,
    pub kind: Kind,
    pub digits: u8,
    /// Seconds per step of a time-based line (`HOTP/T30`, `HOTP/T60`).
    pub period: u64,
    pub secret: Secret,
    /// The counter field: for a counter-based line, the counter of the last code accepted
    /// (when a last code follows it) or of the next one (when none does).
    pub counter: Option<u64>,
    /// The last code pam_oath accepted, if it has accepted one.
    pub last_code: Option<Zeroizing<String>>,
}

const TYPES: &str =
    "HOTP, HOTP/E, HOTP/E/6 to HOTP/E/8, and HOTP/T30 or HOTP/T60 with an optional /6 to /8";

fn bad(path: &str, line: usize, why: &str) -> Error {
    Error::Invalid(format!("{path}, line {line}: {why}"))
}

/// (kind, digits, period) of a token type field.
fn token_type(field: &str) -> Option<(Kind, u8, u64)> {
    let (base, digits) = match field.rsplit_once('/') {
        Some((base, d @ ("6" | "7" | "8"))) => (base, d.parse().ok()?),
        _ => (field, 6),
    };
    match (base, field == base) {
        ("HOTP", true) => Some((Kind::Hotp, 6, 30)),
        // `HOTP/E/6`, and `HOTP/E` without digits.
        ("HOTP/E", _) => Some((Kind::Hotp, digits, 30)),
        ("HOTP/T30", _) => Some((Kind::Totp, digits, 30)),
        ("HOTP/T60", _) => Some((Kind::Totp, digits, 60)),
        _ => None,
    }
}

/// Finds `user`'s line in the text of usersfile `path` and reads it. Lines of other users
/// are skipped unread, as pam_oath skips them.
pub fn parse(text: &str, path: &str, user: &str) -> Result<Entry> {
    let mut found: Vec<usize> = Vec::new();
    let mut entry = None;
    for (n, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l)) {
        let mut fields = line.split_whitespace();
        let (Some(kind), Some(name)) = (fields.next(), fields.next()) else {
            continue;
        };
        if kind.starts_with('#') || name != user {
            continue;
        }
        found.push(n);
        if found.len() == 1 {
            entry = Some(read_line(kind, fields, path, n)?);
        }
    }
    match (entry, found.as_slice()) {
        (Some(entry), [_]) => Ok(entry),
        (_, []) => Err(Error::Invalid(format!("{path} has no line for {user}"))),
        (_, lines) => Err(Error::Invalid(format!(
            "{path} has {} lines for {user} (lines {}), and ivmfa keeps one token per user; \
             import from a copy of the file that keeps only the token to take over",
            lines.len(),
            lines
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

fn read_line<'a>(
    kind: &str,
    mut fields: impl Iterator<Item = &'a str>,
    path: &str,
    n: usize,
) -> Result<Entry> {
    let Some((kind, digits, period)) = token_type(kind) else {
        return Err(bad(
            path,
            n,
            &format!("the token type is not one ivmfa can take over ({TYPES})"),
        ));
    };
    match fields.next() {
        Some("-" | "+") => {}
        Some(_) => {
            return Err(bad(
                path,
                n,
                "the line has a PIN in its password field, which ivmfa cannot carry over (it \
                 relies on the account's password, asked before the code); import from a copy \
                 of the file with - in its place",
            ))
        }
        None => return Err(bad(path, n, "the line has no password field and no key")),
    }
    let key = fields
        .next()
        .ok_or_else(|| bad(path, n, "the line has no key"))?;
    let secret =
        Secret::from_hex(key).map_err(|e| bad(path, n, &format!("the key cannot be used: {e}")))?;
    let counter = match fields.next() {
        Some(c) if c.bytes().all(|b| b.is_ascii_digit()) => Some(
            c.parse::<u64>()
                .map_err(|_| bad(path, n, "the counter is too large"))?,
        ),
        Some(_) => return Err(bad(path, n, "the counter is not a whole number")),
        None => None,
    };
    let last_code = match fields.next() {
        Some(c) if c.len() == usize::from(digits) && c.bytes().all(|b| b.is_ascii_digit()) => {
            Some(Zeroizing::new(c.to_owned()))
        }
        Some(_) => {
            return Err(bad(
                path,
                n,
                &format!("the last code is not {digits} digits"),
            ))
        }
        None => None,
    };
    // The time of the last login, and anything after it, tell ivmfa nothing it needs.
    Ok(Entry {
        line: n,
        kind,
        digits,
        period,
        secret,
        counter,
        last_code,
    })
}

impl Entry {
    /// The enrollment and where its state starts (see
    /// [`crate::store::Store::install_enrollment`]): for a token the counter it should show
    /// next, for an app the time step of the last code pam_oath accepted, if that step is
    /// recent enough that a window could still take its code (else 0).
    pub fn enrollment(self, path: &str, created: u64, now: u64) -> Result<(Enrollment, u64)> {
        let base = match self.kind {
            Kind::Hotp => Enrollment::hotp(self.secret, created),
            Kind::Totp => Enrollment {
                period: self.period,
                ..Enrollment::standard(self.secret, created)
            },
        };
        let e = Enrollment {
            digits: self.digits,
            ..base
        };
        let start = match (self.kind, self.counter, &self.last_code) {
            // pam_oath writes the counter of the code it accepted next to that code. A code
            // that does not match it means the key (or the line) is not what the token holds.
            (Kind::Hotp, Some(counter), Some(last)) => {
                let expected = crate::hotp::code_at(&e, counter)?;
                if !crate::input::same(expected.as_bytes(), last.as_bytes()) {
                    return Err(bad(
                        path,
                        self.line,
                        "the last code does not belong to the key at the counter next to it: \
                         the line is damaged, or not the token's",
                    ));
                }
                counter.checked_add(1).ok_or_else(|| {
                    bad(
                        path,
                        self.line,
                        "the counter is at its end; enroll a new token",
                    )
                })?
            }
            (Kind::Hotp, counter, _) => counter.unwrap_or(0),
            (Kind::Totp, _, Some(last)) => last_step(&e, last, now)?,
            (Kind::Totp, _, None) => 0,
        };
        Ok((e, start))
    }
}

/// The latest step, among those any window could still accept at `now`, whose code is
/// `last`: its code and every earlier one stay used. 0 when none is.
fn last_step(e: &Enrollment, last: &str, now: u64) -> Result<u64> {
    let current = now / e.period.max(1);
    let reach = u64::from(crate::config::MAX_WINDOW);
    let mut latest = 0;
    for step in current.saturating_sub(reach)..=current.saturating_add(reach) {
        let code = crate::totp::code_at(e, step.saturating_mul(e.period))?;
        if crate::input::same(code.as_bytes(), last.as_bytes()) {
            latest = step;
        }
    }
    Ok(latest)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "3132333435363738393031323334353637383930";

    #[test]
    fn reads_the_types_pam_oath_knows() {
        for (field, want) in [
            ("HOTP", Some((Kind::Hotp, 6, 30))),
            ("HOTP/E", Some((Kind::Hotp, 6, 30))),
            ("HOTP/E/8", Some((Kind::Hotp, 8, 30))),
            ("HOTP/T30", Some((Kind::Totp, 6, 30))),
            ("HOTP/T30/6", Some((Kind::Totp, 6, 30))),
            ("HOTP/T60/8", Some((Kind::Totp, 8, 60))),
            ("HOTP/6", None),
            ("HOTP/T30/9", None),
            ("HOTP/T15", None),
            ("TOTP", None),
            ("hotp", None),
        ] {
            assert_eq!(token_type(field), want, "{field}");
        }
    }

    #[test]
    fn finds_the_users_line_among_others() {
        let text = format!(
            "# tokens\n\nHOTP/T30 bob - {KEY}\nHOTP alice\t+ {KEY} 4 338314 2024-01-01T10:00:00L\n\
             MOTP carol 1234 zz\n"
        );
        let e = parse(&text, "f", "alice").unwrap();
        assert_eq!(
            (e.line, e.kind, e.digits, e.counter),
            (4, Kind::Hotp, 6, Some(4))
        );
        // Counter 4 was used (its code is RFC 4226's for 4): the token goes on at 5.
        let (enrollment, next) = e.enrollment("f", 1, 1).unwrap();
        assert_eq!((enrollment.kind, next), (Kind::Hotp, 5));
        let (_, next) = parse(&format!("HOTP alice - {KEY} 4\n"), "f", "alice")
            .unwrap()
            .enrollment("f", 1, 1)
            .unwrap();
        assert_eq!(next, 4, "no code accepted at 4 yet");
        let (e, step) = parse(&text, "f", "bob")
            .unwrap()
            .enrollment("f", 1, 1)
            .unwrap();
        assert_eq!((e.kind, e.period, step), (Kind::Totp, 30, 0));
    }

    #[test]
    fn a_time_based_line_keeps_its_last_code_used() {
        let now = 1_111_111_111;
        let e = Enrollment::standard(Secret::from_hex(KEY).unwrap(), 1);
        let last = crate::totp::code_at(&e, now - 30).unwrap();
        let text = format!(
            "HOTP/T30 alice - {KEY} 0 {} 2024-01-01T10:00:00L\n",
            last.as_str()
        );
        let (_, step) = parse(&text, "f", "alice")
            .unwrap()
            .enrollment("f", 1, now)
            .unwrap();
        assert_eq!(step, now / 30 - 1);
        // A code from long ago is outside every window: nothing to keep.
        let (_, step) = parse(&text, "f", "alice")
            .unwrap()
            .enrollment("f", 1, now + 86_400)
            .unwrap();
        assert_eq!(step, 0);
    }

    #[test]
    fn refuses_what_ivmfa_cannot_carry_without_quoting_it() {
        let cases = [
            (format!("HOTP/T90 alice - {KEY}\n"), "token type"),
            (format!("HOTP alice 4711 {KEY}\n"), "PIN"),
            ("HOTP alice -\n".to_owned(), "no key"),
            ("HOTP alice - 31323334\n".to_owned(), "at least 128 bits"),
            ("HOTP alice - 31323x\n".to_owned(), "hex"),
            (format!("HOTP alice - {KEY} -1\n"), "whole number"),
            (
                format!("HOTP alice - {KEY} 99999999999999999999\n"),
                "too large",
            ),
            (format!("HOTP alice - {KEY} 4 12345\n"), "6 digits"),
            (format!("HOTP alice - {KEY} 4 755224\n"), "damaged"),
            (
                format!("HOTP alice - {KEY}\nHOTP/T30 alice - {KEY}\n"),
                "lines 1, 2",
            ),
            (format!("HOTP bob - {KEY}\n"), "no line for alice"),
        ];
        for (text, why) in cases {
            let err = parse(&text, "f", "alice")
                .and_then(|e| e.enrollment("f", 1, 1))
                .expect_err("refused")
                .to_string();
            assert!(err.contains(why), "{why}: {err}");
            assert!(!err.contains("3132") && !err.contains("4711") && !err.contains("755224"));
        }
    }
}
