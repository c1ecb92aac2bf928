//! Recovery codes: one-time codes for when the phone is gone.
//!
//! Generated codes are 12 characters from a 32-letter alphabet without look-alikes (60 bits),
//! shown as `abcd-efgh-jkmn`; codes imported from google-authenticator are its 8-digit scratch
//! codes. Either form is told apart from a 6-digit TOTP code by its shape alone. Only salted
//! SHA-256 hashes are stored; a code is consumed under the user's lock.
//!
//! A used code is recorded twice. First in the user's state ([`crate::state::State`]), which is
//! rewritten in place and so needs no free space: that record decides, and it is on disk before
//! the login is answered, so a full disk cannot make a right code look different from a wrong
//! one. Then its hash in the enrollment is blanked (best effort), so the code stays used even if
//! the state file is later removed. Blanking instead of removing keeps every code's index, which
//! is how the state names it.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// No `l`, `o`, `0` or `1`: nothing to mix up when reading a code off paper.
const ALPHABET: &[u8; 32] = b"abcdefghijkmnpqrstuvwxyz23456789";
const LETTERS: usize = 12;
const SALT_BYTES: usize = 16;
pub const DEFAULT_COUNT: usize = 10;
pub const MAX_COUNT: usize = 100;

/// Random bytes [`generate`] needs for `count` codes.
pub fn random_bytes_needed(count: usize) -> usize {
    SALT_BYTES + count * LETTERS
}

/// The stored, hashed set. Its `Debug` shows only the count: an 8-digit scratch code could be
/// found from its hash and the salt by trying them all.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoveryCodes {
    /// Hex; shared by the set.
    pub salt: String,
    /// Hex SHA-256 of salt ‖ code, one per code; empty once the code has been used.
    pub hashes: Vec<String>,
    /// Unix time the set was issued.
    pub issued: u64,
}

impl fmt::Debug for RecoveryCodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecoveryCodes({} left, <redacted>)", self.remaining())
    }
}

/// Makes `count` codes from `random` (see [`random_bytes_needed`]); returns them for showing
/// once, and the hashed set for storing.
pub fn generate(
    random: &[u8],
    count: usize,
    now: u64,
) -> Result<(Vec<Zeroizing<String>>, RecoveryCodes)> {
    if count == 0 || count > MAX_COUNT {
        return Err(Error::Invalid(format!(
            "the number of recovery codes must be 1 to {MAX_COUNT}"
        )));
    }
    if random.len() < random_bytes_needed(count) {
        return Err(Error::Invalid("not enough random bytes".into()));
    }
    let (salt, rest) = random.split_at(SALT_BYTES);
    let codes: Vec<Zeroizing<String>> = rest
        .chunks(LETTERS)
        .take(count)
        // 256 is a multiple of 32, so taking the low five bits keeps every letter equally likely.
        .map(|chunk| {
            Zeroizing::new(
                chunk
                    .iter()
                    .map(|b| char::from(ALPHABET[usize::from(b & 31)]))
                    .collect(),
            )
        })
        .collect();
    let set = from_plain(salt, codes.iter().map(|c| c.as_str()), now);
    let shown = codes.into_iter().map(|c| display(&c)).collect();
    Ok((shown, set))
}

/// A new set of `count` codes, with randomness drawn from `random` (the OS for the CLI, the
/// host for the login): what enrollment and `recovery-codes` both hand out.
pub fn issue(
    count: usize,
    now: u64,
    random: impl FnOnce(&mut [u8]) -> Result<()>,
) -> Result<(Vec<Zeroizing<String>>, RecoveryCodes)> {
    let mut bytes = Zeroizing::new(vec![0u8; random_bytes_needed(count.min(MAX_COUNT))]);
    random(&mut bytes)?;
    generate(&bytes, count, now)
}

/// Hashes codes given in the clear (google-authenticator scratch codes).
pub fn from_plain<'a>(
    salt: &[u8],
    codes: impl Iterator<Item = &'a str>,
    now: u64,
) -> RecoveryCodes {
    RecoveryCodes {
        salt: hex(salt),
        hashes: codes.map(|c| hash(salt, c)).collect(),
        issued: now,
    }
}

/// `abcdefghjkmn` → `abcd-efgh-jkmn`.
fn display(code: &str) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(code.len() + 2));
    for (i, c) in code.chars().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        out.push(c);
    }
    out
}

/// The canonical form of typed input, if it has the shape of a recovery code: 12 letters of
/// the alphabet (any case, dashes and spaces ignored), or 8 digits.
pub fn normalize(input: &str) -> Option<Zeroizing<String>> {
    if input.len() > 64 {
        return None;
    }
    let canonical: Zeroizing<String> = Zeroizing::new(
        input
            .chars()
            .filter(|c| !matches!(c, '-' | ' ' | '\t'))
            .map(|c| c.to_ascii_lowercase())
            .collect(),
    );
    let letters = canonical.len() == LETTERS && canonical.bytes().all(|b| ALPHABET.contains(&b));
    let digits = canonical.len() == 8 && canonical.bytes().all(|b| b.is_ascii_digit());
    (letters || digits).then_some(canonical)
}

fn hash(salt: &[u8], canonical: &str) -> String {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(canonical.as_bytes());
    hex(&h.finalize())
}

/// Lower-case hex, as the store writes digests.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of hex digits (either case), or `None`. Sized up front, so a secret decoded
/// here leaves no copy behind in a grown buffer.
pub(crate) fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut bytes = Vec::with_capacity(text.len() / 2);
    for i in (0..text.len()).step_by(2) {
        bytes.push(u8::from_str_radix(text.get(i..i + 2)?, 16).ok()?);
    }
    Some(bytes)
}

impl RecoveryCodes {
    /// Codes not yet used, as far as the enrollment knows (the state may know of more; see
    /// [`crate::state::State::recovery_left`]).
    pub fn remaining(&self) -> usize {
        self.hashes.iter().filter(|h| !h.is_empty()).count()
    }

    /// Index of the stored hash matching `canonical` (from [`normalize`]). Compares every
    /// hash in full, in constant time per hash; a used (blank) one never matches.
    pub fn find(&self, canonical: &str) -> Result<Option<usize>> {
        let salt =
            unhex(&self.salt).ok_or_else(|| Error::Invalid("recovery salt is not hex".into()))?;
        let wanted = hash(&salt, canonical);
        let mut found = None;
        for (i, stored) in self.hashes.iter().enumerate() {
            if crate::input::same(stored.as_bytes(), wanted.as_bytes()) && found.is_none() {
                found = Some(i);
            }
        }
        Ok(found)
    }

    /// Blanks a used code's hash, keeping the others at their indices.
    pub(crate) fn consume(&mut self, index: usize) {
        if let Some(hash) = self.hashes.get_mut(index) {
            hash.clear();
        }
    }

    pub(crate) fn validate(&self) -> std::result::Result<(), String> {
        let hexy = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
        if !self.salt.is_empty() && !hexy(&self.salt, SALT_BYTES * 2) {
            return Err("recovery salt is malformed".into());
        }
        if self.hashes.len() > MAX_COUNT || !self.hashes.iter().all(|h| h.is_empty() || hexy(h, 64))
        {
            return Err("recovery code hashes are malformed".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> (Vec<Zeroizing<String>>, RecoveryCodes) {
        let random: Vec<u8> = (0..random_bytes_needed(10))
            .map(|i| (i * 37 + 11) as u8)
            .collect();
        generate(&random, 10, 5).unwrap()
    }

    #[test]
    fn codes_have_their_own_shape() {
        let (shown, stored) = set();
        assert_eq!(shown.len(), 10);
        assert_eq!(stored.remaining(), 10);
        for code in &shown {
            assert_eq!(code.len(), 14, "{}", code.as_str());
            assert_eq!(code.matches('-').count(), 2);
            assert!(normalize(code).is_some());
            // Never mistaken for a TOTP code, never stored in the clear.
            assert!(code.chars().filter(|c| c.is_ascii_alphanumeric()).count() > 8);
            let c = normalize(code).unwrap();
            assert!(!stored.hashes.iter().any(|h| h.contains(c.as_str())));
        }
        assert!(normalize("123456").is_none());
        assert!(normalize("12345678").is_some());
        assert!(
            normalize("abcd-efgh-ijkl").is_none(),
            "l is not in the alphabet"
        );
    }

    #[test]
    fn a_code_is_found_once_in_any_spelling() {
        let (shown, mut stored) = set();
        let typed = shown[3].to_uppercase().replace('-', " ");
        let canonical = normalize(&typed).unwrap();
        let i = stored.find(&canonical).unwrap().unwrap();
        stored.consume(i);
        assert_eq!(stored.find(&canonical).unwrap(), None);
        assert_eq!(stored.remaining(), 9);
        assert_eq!(stored.hashes.len(), 10, "the others keep their indices");
        assert!(stored.validate().is_ok());
        let next = normalize(&shown[4]).unwrap();
        assert_eq!(stored.find(&next).unwrap(), Some(4));
        let wrong = normalize("abcd-efgh-jkmn").unwrap();
        assert_eq!(stored.find(&wrong).unwrap(), None);
    }

    #[test]
    fn scratch_codes_import() {
        let stored = from_plain(&[7; 16], ["12345678", "87654321"].into_iter(), 1);
        assert_eq!(stored.find("87654321").unwrap(), Some(1));
        assert!(stored.validate().is_ok());
    }

    #[test]
    fn bounds() {
        assert!(generate(&[0; 4000], 0, 0).is_err());
        assert!(generate(&[0; 4000], MAX_COUNT + 1, 0).is_err());
        assert!(generate(&[0; 10], 10, 0).is_err());
    }
}
