//! User names as they may appear in store paths.
//!
//! A user name becomes a directory name under the store, so it is checked before any path is
//! built from it: a name such as `../x` must never reach the file system.

use std::fmt;

/// Longest name accepted; longer than any name `useradd` creates, short enough for a path.
pub(crate) const MAX_LEN: usize = 128;

#[derive(Clone, PartialEq, Eq)]
pub struct UserName(String);

impl UserName {
    /// Accepts letters, digits, `.`, `_`, `-`, `@` and a trailing `$`, not starting with `.`
    /// or `-`; that covers local accounts, directory (`user@domain`) and Samba machine names.
    pub fn parse(name: &str) -> Option<UserName> {
        let bytes = name.as_bytes();
        let first_ok = bytes
            .first()
            .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_');
        let body_ok = bytes.iter().enumerate().all(|(i, b)| {
            b.is_ascii_alphanumeric()
                || matches!(b, b'.' | b'_' | b'-' | b'@')
                || (*b == b'$' && i == bytes.len() - 1)
        });
        (first_ok && body_ok && bytes.len() <= MAX_LEN).then(|| UserName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserName({:?})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for name in [
            "alice",
            "bob.smith",
            "svc_backup",
            "a",
            "j-doe",
            "x@corp.example",
            "host$",
        ] {
            assert!(UserName::parse(name).is_some(), "{name}");
        }
    }

    #[test]
    fn rejects_names_that_could_escape_the_store() {
        let long = "a".repeat(MAX_LEN + 1);
        for name in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            ".hidden",
            "-rf",
            "a b",
            "ä",
            "a\0b",
            "$x",
            "a$b",
            long.as_str(),
        ] {
            assert!(UserName::parse(name).is_none(), "{name:?}");
        }
    }
}
