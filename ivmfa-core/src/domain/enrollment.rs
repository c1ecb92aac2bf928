//! A user's enrollment: the shared secret and the parameters the app or token was given,
//! time-based (TOTP, an app) or counter-based (HOTP, a hardware token).
//!
//! On disk this is `users/<name>/secret.toml` (see docs/FILEFORMAT.md). It changes only when
//! the user enrolls again, so it is kept apart from the state that changes at every login
//! (which holds an HOTP token's counter, as it holds the TOTP replay watermark).

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::error::{Error, Result};
use crate::recovery::RecoveryCodes;

/// Newest format version of `secret.toml`: 2 added `kind`. A time-based enrollment is
/// still written as version 1, which an older ivmfa reads; a counter-based one needs 2, so an
/// older ivmfa refuses it by its version instead of taking the token's key for a TOTP key.
pub const FORMAT_VERSION: u32 = 2;
const FIRST_VERSION: u32 = 1;
const SECRET_HINT: &str =
    "restore it from a backup, or remove the enrollment (ivmfa-enroll remove) and enroll again";

/// Shortest secret accepted: RFC 4226 asks for at least 128 bits.
pub(crate) const MIN_SECRET_BYTES: usize = 16;
/// Longest secret accepted; enough for any app, small enough to bound the file.
pub(crate) const MAX_SECRET_BYTES: usize = 128;
/// Length of secrets we generate: 160 bits, the size RFC 4226 recommends.
pub const DEFAULT_SECRET_BYTES: usize = 20;

/// The HMAC key. Wiped on drop; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    pub fn from_bytes(bytes: &[u8]) -> Result<Secret> {
        if bytes.len() < MIN_SECRET_BYTES {
            return Err(Error::Invalid(format!(
                "the secret is {} bits long; at least {} bits are required",
                bytes.len() * 8,
                MIN_SECRET_BYTES * 8
            )));
        }
        if bytes.len() > MAX_SECRET_BYTES {
            return Err(Error::Invalid(format!(
                "the secret is longer than {} bits",
                MAX_SECRET_BYTES * 8
            )));
        }
        Ok(Secret(Zeroizing::new(bytes.to_vec())))
    }

    /// Decodes base32 as people type it: any case, spaces or dashes between groups, with or
    /// without `=` padding.
    pub fn from_base32(text: &str) -> Result<Secret> {
        let mut normal: Zeroizing<String> = Zeroizing::new(
            text.chars()
                .filter(|c| !matches!(c, ' ' | '\t' | '-' | '='))
                .map(|c| c.to_ascii_uppercase())
                .collect(),
        );
        let decoded = base32::decode(base32::Alphabet::Rfc4648 { padding: false }, &normal)
            .map(Zeroizing::new)
            .ok_or_else(|| Error::Invalid("the secret is not valid base32 (A-Z, 2-7)".into()));
        normal.zeroize();
        Secret::from_bytes(&decoded?)
    }

    /// Decodes hex as tokens' vendors and pam_oath give keys: any case, spaces between
    /// groups allowed.
    pub fn from_hex(text: &str) -> Result<Secret> {
        let digits: Zeroizing<String> =
            Zeroizing::new(text.chars().filter(|c| !matches!(c, ' ' | '\t')).collect());
        let bytes = crate::recovery::unhex(&digits)
            .map(Zeroizing::new)
            .ok_or_else(|| {
                Error::Invalid("the secret is not valid hex (pairs of 0-9, a-f)".into())
            })?;
        Secret::from_bytes(&bytes)
    }

    /// Base32 without padding, as it goes into the otpauth URI and the store.
    pub fn to_base32(&self) -> Zeroizing<String> {
        Zeroizing::new(base32::encode(
            base32::Alphabet::Rfc4648 { padding: false },
            &self.0,
        ))
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// HMAC hash of the TOTP profile. SHA1 is the default and the only one every app honours.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Algorithm {
    SHA1,
    SHA256,
    SHA512,
}

/// How codes are derived from the secret.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// From the time (RFC 6238): an authenticator app.
    #[default]
    Totp,
    /// From a counter the token advances at every button press (RFC 4226); the server's
    /// counter is in the state.
    Hotp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Enrollment {
    pub kind: Kind,
    pub secret: Secret,
    pub algorithm: Algorithm,
    pub digits: u8,
    /// Seconds per step; unused for [`Kind::Hotp`].
    pub period: u64,
    /// Unix time of enrollment.
    pub created: u64,
    /// Steps accepted on each side of now for this user, overriding the `window` option
    /// (kept from an imported google-authenticator file).
    pub window: Option<u8>,
    pub recovery: RecoveryCodes,
    /// The uid of the account it was made for. A name deleted and then given to someone
    /// else must not meet the old person's enrollment. `None` in files from before it was
    /// recorded.
    pub uid: Option<u32>,
}

impl Enrollment {
    /// The profile of DESIGN.md §2: SHA1, 6 digits, 30 seconds.
    pub fn standard(secret: Secret, created: u64) -> Enrollment {
        Enrollment {
            kind: Kind::Totp,
            secret,
            algorithm: Algorithm::SHA1,
            digits: 6,
            period: 30,
            created,
            window: None,
            recovery: RecoveryCodes::default(),
            uid: None,
        }
    }

    /// A counter-based token (RFC 4226: SHA1, 6 digits).
    pub fn hotp(secret: Secret, created: u64) -> Enrollment {
        Enrollment {
            kind: Kind::Hotp,
            ..Enrollment::standard(secret, created)
        }
    }

    /// Whether the enrollment was made for the account with `uid` (or cannot tell).
    pub fn belongs_to(&self, uid: u32) -> bool {
        self.uid.is_none_or(|u| u == uid)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        if !(6..=8).contains(&self.digits) {
            return Err(format!("digits = {} (must be 6 to 8)", self.digits));
        }
        if !(1..=300).contains(&self.period) {
            return Err(format!("period = {} (must be 1 to 300)", self.period));
        }
        if self.kind == Kind::Hotp && self.window.is_some() {
            return Err("a window is for time-based codes (hotp_window sets a token's)".into());
        }
        if let Some(w) = self.window.filter(|w| *w > crate::config::MAX_WINDOW) {
            return Err(format!(
                "window = {w} (must be 0 to {})",
                crate::config::MAX_WINDOW
            ));
        }
        self.recovery.validate()
    }

    pub fn to_toml(&self) -> Result<Zeroizing<String>> {
        self.validate().map_err(Error::Invalid)?;
        let hotp = self.kind == Kind::Hotp;
        let file = File {
            version: if hotp { FORMAT_VERSION } else { FIRST_VERSION },
            kind: hotp.then_some(self.kind),
            created: self.created,
            algorithm: self.algorithm,
            digits: self.digits,
            period: (!hotp).then_some(self.period),
            secret: self.secret.to_base32(),
            window: self.window,
            recovery: self.recovery.clone(),
            uid: self.uid,
        };
        toml::to_string(&file)
            .map(Zeroizing::new)
            .map_err(|e| Error::Invalid(format!("cannot encode the enrollment: {e}")))
    }

    pub fn from_toml(text: &str, path: &Path) -> Result<Enrollment> {
        let file: File = crate::domain::format::parse_versions(
            text,
            path,
            SECRET_HINT,
            FIRST_VERSION..=FORMAT_VERSION,
            |f: &File| f.version,
        )?;
        let corrupt = |why: &str| Error::corrupt(path, why, SECRET_HINT);
        if file.version == FIRST_VERSION && file.kind.is_some() {
            return Err(corrupt("kind needs format version 2"));
        }
        let kind = file.kind.unwrap_or_default();
        // A period in a token's file would suggest it is used; a TOTP file needs one.
        let period = match (kind, file.period) {
            (Kind::Totp, Some(p)) => p,
            (Kind::Totp, None) => return Err(corrupt("period is missing")),
            (Kind::Hotp, None) => 30,
            (Kind::Hotp, Some(_)) => return Err(corrupt("a counter-based token has no period")),
        };
        let secret = Secret::from_base32(&file.secret)
            .map_err(|e| Error::corrupt(path, e.to_string(), SECRET_HINT))?;
        let enrollment = Enrollment {
            kind,
            secret,
            algorithm: file.algorithm,
            digits: file.digits,
            period,
            created: file.created,
            window: file.window,
            recovery: file.recovery.clone(),
            uid: file.uid,
        };
        enrollment
            .validate()
            .map_err(|why| Error::corrupt(path, why, SECRET_HINT))?;
        Ok(enrollment)
    }
}

/// The on-disk shape of `secret.toml`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    version: u32,
    /// Absent: time-based (every version 1 file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kind: Option<Kind>,
    created: u64,
    algorithm: Algorithm,
    digits: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    period: Option<u64>,
    secret: Zeroizing<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    window: Option<u8>,
    #[serde(default)]
    recovery: RecoveryCodes,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    uid: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"12345678901234567890";

    #[test]
    fn base32_is_read_as_people_type_it() {
        let s = Secret::from_bytes(KEY).unwrap();
        let b32 = s.to_base32();
        assert_eq!(b32.as_str(), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        let typed = "gezd gnbv-gy3t qojq gezd gnbv gy3t qojq====";
        assert_eq!(Secret::from_base32(typed).unwrap(), s);
    }

    #[test]
    fn bad_or_short_secrets_are_refused() {
        assert!(Secret::from_base32("not base32!").is_err());
        assert!(Secret::from_base32("GEZDGNBV").is_err()); // 40 bits
        assert!(Secret::from_bytes(&[0; 15]).is_err());
        assert!(Secret::from_bytes(&[0; 16]).is_ok());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let mut e = Enrollment::standard(Secret::from_bytes(KEY).unwrap(), 1);
        e.recovery = crate::recovery::from_plain(&[1; 16], ["12345678"].into_iter(), 9);
        let shown = format!("{e:?}");
        assert!(!shown.contains("GEZDG"), "{shown}");
        assert!(!shown.contains("49, 50"), "{shown}");
        assert!(!shown.contains("0101"), "the salt is not shown: {shown}");
        assert!(shown.contains("RecoveryCodes(1 left"), "{shown}");
    }

    #[test]
    fn file_round_trip() {
        let mut e = Enrollment::standard(Secret::from_bytes(KEY).unwrap(), 1_700_000_000);
        e.window = Some(2);
        e.recovery = crate::recovery::from_plain(&[1; 16], ["12345678"].into_iter(), 9);
        let text = e.to_toml().unwrap();
        assert!(text.contains("version = 1"), "{}", text.as_str());
        let back = Enrollment::from_toml(&text, Path::new("secret.toml")).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn hex_keys_are_read_as_vendors_give_them() {
        let s = Secret::from_bytes(KEY).unwrap();
        let hex = "3132333435363738393031323334353637383930";
        assert_eq!(Secret::from_hex(hex).unwrap(), s);
        assert_eq!(Secret::from_hex(&hex.to_uppercase()).unwrap(), s);
        assert_eq!(
            Secret::from_hex("31323334 35363738 39303132 33343536 37383930").unwrap(),
            s
        );
        for bad in [
            "313",
            "zz32333435363738393031323334353637383930",
            "3132",
            "",
        ] {
            assert!(Secret::from_hex(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_token_is_written_as_version_2_and_an_app_as_version_1() {
        let p = Path::new("secret.toml");
        let totp = Enrollment::standard(Secret::from_bytes(KEY).unwrap(), 1);
        let text = totp.to_toml().unwrap();
        assert!(
            text.contains("version = 1") && !text.contains("kind"),
            "{}",
            text.as_str()
        );
        let hotp = Enrollment::hotp(Secret::from_bytes(KEY).unwrap(), 1);
        let text = hotp.to_toml().unwrap();
        assert!(text.contains("version = 2"), "{}", text.as_str());
        assert!(text.contains("kind = \"hotp\"") && !text.contains("period"));
        assert_eq!(Enrollment::from_toml(&text, p).unwrap(), hotp);
        // What no writer produces is refused.
        let cases = [
            text.replace("version = 2", "version = 1"),
            text.replace("kind = \"hotp\"", "kind = \"hotp\"\nperiod = 30"),
            text.replace("hotp", "motp"),
            totp.to_toml().unwrap().replace("period = 30\n", ""),
        ];
        for text in cases {
            assert!(Enrollment::from_toml(&text, p).is_err(), "{text}");
        }
        let mut windowed = hotp;
        windowed.window = Some(1);
        assert!(windowed.to_toml().is_err());
    }

    #[test]
    fn corrupt_files_are_refused_without_quoting_them() {
        let p = Path::new("secret.toml");
        let good = Enrollment::standard(Secret::from_bytes(KEY).unwrap(), 1)
            .to_toml()
            .unwrap();
        let cases = [
            good.replace("version = 1", "version = 3"),
            good.replace("digits = 6", "digits = 12"),
            good.replace("period = 30", "period = 0"),
            good.replace("SHA1", "MD5"),
            format!("{}\nextra = 1\n", good.as_str()),
            good.replace("secret = \"", "secret = \"!"),
            good[..good.len() / 2].to_string(),
            "secret = ".into(),
        ];
        for text in cases {
            let err = Enrollment::from_toml(&text, p).unwrap_err().to_string();
            assert!(!err.contains("GEZDG"), "error quotes the secret: {err}");
        }
    }
}
