//! The `otpauth://` URI that authenticator apps scan (Google's Key URI format, which
//! Microsoft Authenticator follows for TOTP accounts).

use zeroize::Zeroizing;

use crate::enrollment::{Algorithm, Enrollment};
use crate::error::{Error, Result};

/// `otpauth://totp/<Issuer>:<account>?secret=...&issuer=...&algorithm=...&digits=...&period=...`
/// with every parameter present, so no app falls back to a default of its own.
pub fn uri(enrollment: &Enrollment, issuer: &str, account: &str) -> Result<Zeroizing<String>> {
    check_name("issuer", issuer)?;
    check_name("account", account)?;
    let algorithm = match enrollment.algorithm {
        Algorithm::SHA1 => "SHA1",
        Algorithm::SHA256 => "SHA256",
        Algorithm::SHA512 => "SHA512",
    };
    Ok(Zeroizing::new(format!(
        "otpauth://totp/{issuer_enc}:{account_enc}?secret={secret}&issuer={issuer_enc}\
         &algorithm={algorithm}&digits={digits}&period={period}",
        issuer_enc = encode(issuer),
        account_enc = encode(account),
        secret = enrollment.secret.to_base32().as_str(),
        digits = enrollment.digits,
        period = enrollment.period,
    )))
}

/// Whether `value` can be the issuer or account name of a URI (`what` says which).
pub fn check_name(what: &str, value: &str) -> Result<()> {
    if value.is_empty() || value.contains(':') || value.chars().any(char::is_control) {
        return Err(Error::Invalid(format!(
            "the {what} name {value:?} must be non-empty, without ':' or control characters"
        )));
    }
    Ok(())
}

/// The configured issuer, else the host name (what apps show above the code).
pub fn issuer(configured: Option<&str>) -> String {
    match configured {
        Some(issuer) => issuer.to_owned(),
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .ok()
            .filter(|h| !h.is_empty() && !h.contains(':'))
            .unwrap_or_else(|| "Linux".to_owned()),
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The key for manual entry, in groups of four: `GEZD GNBV GY3T ...`.
pub fn grouped_key(enrollment: &Enrollment) -> Zeroizing<String> {
    let key = enrollment.secret.to_base32();
    let mut out = Zeroizing::new(String::with_capacity(key.len() * 5 / 4));
    for (i, c) in key.chars().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrollment::Secret;

    #[test]
    fn uri_is_complete_and_encoded() {
        let e = Enrollment::standard(Secret::from_bytes(b"12345678901234567890").unwrap(), 0);
        let u = uri(&e, "IV Produkt", "alice@host").unwrap();
        assert_eq!(
            u.as_str(),
            "otpauth://totp/IV%20Produkt:alice%40host?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &issuer=IV%20Produkt&algorithm=SHA1&digits=6&period=30"
        );
        assert!(uri(&e, "a:b", "x").is_err());
        assert!(uri(&e, "a", "x:y").is_err());
        assert!(uri(&e, "", "x").is_err());
        assert_eq!(
            grouped_key(&e).as_str(),
            "GEZD GNBV GY3T QOJQ GEZD GNBV GY3T QOJQ"
        );
    }
}
