//! The store files' TOML: parsing that never quotes a line (a secret file's line is the
//! secret), and the format-version check every store file makes.

use std::ops::RangeInclusive;
use std::path::Path;

use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// Parses TOML, reporting errors by position only: the parser's own text can quote the
/// offending line, and in a secret file that line is the secret.
pub(crate) fn parse_toml<T: DeserializeOwned>(
    text: &str,
    path: &Path,
    hint: &'static str,
) -> Result<T> {
    toml::from_str(text).map_err(|e| {
        let at = e
            .span()
            .map(|span| {
                let upto = &text.as_bytes()[..span.start.min(text.len())];
                let line = upto.iter().filter(|b| **b == b'\n').count() + 1;
                format!("line {line}: ")
            })
            .unwrap_or_default();
        let msg: String = e.message().lines().next().unwrap_or("").to_owned();
        let msg = if msg.contains(['"', '\'', '`']) {
            // Unknown variants and keys are quoted by serde; keep the kind, drop the value.
            "a key or value is not valid here".to_owned()
        } else {
            msg
        };
        Error::corrupt(path, format!("{at}{msg}"), hint)
    })
}

/// Parses a store file's TOML and refuses any format version but `expected`: a file from a
/// newer ivmfa is not guessed at.
pub(crate) fn parse_versioned<T: DeserializeOwned>(
    text: &str,
    path: &Path,
    hint: &'static str,
    expected: u32,
    version_of: impl Fn(&T) -> u32,
) -> Result<T> {
    parse_versions(text, path, hint, expected..=expected, version_of)
}

/// Like [`parse_versioned`], for a file whose writer picks the oldest version that can say
/// what it holds (so that an older ivmfa still reads what it understands).
pub(crate) fn parse_versions<T: DeserializeOwned>(
    text: &str,
    path: &Path,
    hint: &'static str,
    supported: RangeInclusive<u32>,
    version_of: impl Fn(&T) -> u32,
) -> Result<T> {
    let parsed: T = parse_toml(text, path, hint)?;
    let version = version_of(&parsed);
    if !supported.contains(&version) {
        return Err(Error::corrupt(
            path,
            format!("format version {version} is not supported"),
            hint,
        ));
    }
    Ok(parsed)
}
