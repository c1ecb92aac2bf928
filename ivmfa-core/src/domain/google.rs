//! Reading a google-authenticator-libpam file (`~/.google_authenticator`), so users switching
//! to ivmfa keep the account already in their phone.
//!
//! The format: the base32 secret on the first line, option lines starting with `" `, then
//! 8-digit scratch codes one per line. Errors name a line number, never a line: every line of
//! this file is a secret.

use zeroize::Zeroizing;

use crate::enrollment::Secret;
use crate::error::{Error, Result};

pub struct Imported {
    pub secret: Secret,
    /// Seconds per step (`STEP_SIZE`, default 30).
    pub period: u64,
    /// Steps on each side of now, from `WINDOW_SIZE` (codes in total, default 3).
    pub window: u8,
    /// Scratch codes, 8 digits each.
    pub scratch: Vec<Zeroizing<String>>,
}

fn bad(path: &str, line: usize, why: &str) -> Error {
    Error::Invalid(format!("{path}, line {line}: {why}"))
}

pub fn parse(text: &str, path: &str) -> Result<Imported> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r')));
    let (_, first) = lines
        .next()
        .ok_or_else(|| Error::Invalid(format!("{path} is empty")))?;
    let secret = Secret::from_base32(first).map_err(|e| {
        Error::Invalid(format!(
            "{path}, line 1: the secret cannot be used: {e}; enroll the user afresh instead"
        ))
    })?;
    let mut imported = Imported {
        secret,
        period: 30,
        window: 1,
        scratch: Vec::new(),
    };
    let mut totp = false;
    for (n, line) in lines {
        if let Some(option) = line.strip_prefix("\" ") {
            let mut words = option.split_whitespace();
            let number = |w: Option<&str>| w.and_then(|v| v.parse::<u64>().ok());
            match words.next() {
                Some("TOTP_AUTH") => totp = true,
                Some("HOTP_COUNTER") => {
                    return Err(bad(
                        path,
                        n,
                        "this is a counter-based (HOTP) account, which this import does not \
                         take over; give its key (line 1) to enroll --hotp --no-confirm and \
                         resync the token, or enroll the user afresh",
                    ))
                }
                Some("STEP_SIZE") => match number(words.next()) {
                    Some(s) if (1..=300).contains(&s) => imported.period = s,
                    _ => return Err(bad(path, n, "STEP_SIZE must be 1 to 300")),
                },
                Some("WINDOW_SIZE") => match number(words.next()) {
                    // WINDOW_SIZE counts codes in total: 3 is now and one on each side.
                    Some(w) if (1..=21).contains(&w) => imported.window = ((w - 1) / 2) as u8,
                    _ => return Err(bad(path, n, "WINDOW_SIZE must be 1 to 21")),
                },
                // Rate limits and reuse lists are policy of the old module; ivmfa has its own.
                Some("RATE_LIMIT" | "DISALLOW_REUSE") => {}
                _ => return Err(bad(path, n, "unknown option line")),
            }
        } else if line.len() == 8 && line.bytes().all(|b| b.is_ascii_digit()) {
            if imported.scratch.len() >= crate::recovery::MAX_COUNT {
                return Err(bad(path, n, "too many scratch codes"));
            }
            imported.scratch.push(Zeroizing::new(line.to_owned()));
        } else if !line.trim().is_empty() {
            return Err(bad(
                path,
                n,
                "neither an option nor an 8-digit scratch code",
            ));
        }
    }
    if !totp {
        return Err(Error::Invalid(format!(
            "{path} has no TOTP_AUTH line, so it is not a time-based account; \
             enroll the user afresh instead"
        )));
    }
    Ok(imported)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "BLC5PC4KQZOQNADH4OQSUSBEUA\n\" RATE_LIMIT 3 30\n\" WINDOW_SIZE 17\n\
                        \" DISALLOW_REUSE 57977663\n\" TOTP_AUTH\n74104668\n51161878\n";

    #[test]
    fn reads_a_totp_file() {
        let g = parse(FILE, "f").unwrap();
        assert_eq!(g.window, 8);
        assert_eq!(g.period, 30);
        assert_eq!(g.scratch.len(), 2);
        assert_eq!(g.secret.expose().len(), 16);
    }

    #[test]
    fn refuses_hotp_short_keys_and_junk_without_quoting() {
        let hotp = FILE.replace("\" TOTP_AUTH", "\" HOTP_COUNTER 4");
        let short = FILE.replace("BLC5PC4KQZOQNADH4OQSUSBEUA", "JBSWY3DPEHPK3PXP");
        let junk = format!("{FILE}hello 74104668x\n");
        for text in [
            hotp.as_str(),
            short.as_str(),
            junk.as_str(),
            "",
            "\" TOTP_AUTH\n",
        ] {
            let err = parse(text, "f").err().expect("refused").to_string();
            assert!(
                !err.contains("BLC5PC4K") && !err.contains("7410466"),
                "{err}"
            );
        }
        assert!(parse(&hotp, "f")
            .err()
            .unwrap()
            .to_string()
            .contains("HOTP"));
    }
}
