//! The files a connection needs, read through ivmfa-core's checked opens before any byte
//! goes out: the pinned CA, and the client certificate and key, the password file or the
//! libpq password file. The files' text, and the passwords, are wiped from memory when the
//! round is over; a client key, once parsed into rustls's TLS set-up, lives as long as that
//! (tls.rs: the PAM call) and is not wiped by rustls.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use ivmfa_core::safefile::Policy;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::RootCertStore;
use zeroize::Zeroizing;

use crate::error::{Error, Refusal};
use crate::settings::{Credentials, Owner, Settings};

/// PEM files are small; a larger one is not what it should be.
const MAX_PEM: u64 = 256 * 1024;
const MAX_PASSWORD_FILE: u64 = 64 * 1024;

/// The files of [`Settings`], read and checked.
pub(crate) struct Loaded {
    pub(crate) roots: Arc<RootCertStore>,
    pub(crate) client: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    password: Password,
}

enum Password {
    None,
    /// From a password file: the same for every address.
    Fixed(Zeroizing<String>),
    /// A libpq password file's text: the line depends on the address.
    PgPass {
        text: Zeroizing<String>,
        path: String,
    },
}

impl Loaded {
    pub(crate) fn read(settings: &Settings) -> Result<Loaded, Error> {
        let public = Policy {
            owner: settings.euid,
            max_len: MAX_PEM,
            private: false,
            strict_owner: false,
        };
        let (cred_public, cred_private) = match settings.owner {
            Owner::System => (
                public,
                Policy {
                    private: true,
                    ..public
                },
            ),
            Owner::User(uid) => {
                let mine = Policy {
                    owner: uid,
                    max_len: MAX_PEM,
                    private: false,
                    strict_owner: true,
                };
                (
                    mine,
                    Policy {
                        private: true,
                        ..mine
                    },
                )
            }
        };

        let ca = read(&public, &settings.ca)?;
        let mut roots = RootCertStore::empty();
        let mut any = false;
        for cert in CertificateDer::pem_slice_iter(&ca) {
            let cert = cert.map_err(|e| bad_pem(&settings.ca, &e))?;
            roots.add(cert).map_err(|e| {
                bad_file(&settings.ca, &format!("not a usable CA certificate ({e})"))
            })?;
            any = true;
        }
        if !any {
            return Err(bad_file(&settings.ca, "it holds no PEM certificate"));
        }

        let mut client = None;
        let mut password = Password::None;
        match &settings.credentials {
            Credentials::Certificate { cert, key } => {
                let chain_pem = read(&cred_public, cert)?;
                let chain: Vec<CertificateDer<'static>> =
                    CertificateDer::pem_slice_iter(&chain_pem)
                        .collect::<Result<_, _>>()
                        .map_err(|e| bad_pem(cert, &e))?;
                if chain.is_empty() {
                    return Err(bad_file(cert, "it holds no PEM certificate"));
                }
                let key_pem = read(&cred_private, key)?;
                let key_der =
                    PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| bad_pem(key, &e))?;
                client = Some((chain, key_der));
            }
            Credentials::PasswordFile(path) => {
                let policy = Policy {
                    max_len: MAX_PASSWORD_FILE,
                    ..cred_private
                };
                let text = read_text(&policy, path)?;
                let first = text.lines().next().unwrap_or("");
                if first.is_empty() {
                    return Err(bad_file(path, "its first line, the password, is empty"));
                }
                password = Password::Fixed(Zeroizing::new(first.to_owned()));
            }
            Credentials::PgPass(path) => {
                let policy = Policy {
                    max_len: MAX_PASSWORD_FILE,
                    ..cred_private
                };
                password = Password::PgPass {
                    text: read_text(&policy, path)?,
                    path: path.display().to_string(),
                };
            }
        }
        Ok(Loaded {
            roots: Arc::new(roots),
            client,
            password,
        })
    }

    /// The password to offer `address`, if the credentials are a password.
    pub(crate) fn password_for(
        &self,
        address: SocketAddr,
        settings: &Settings,
    ) -> Result<Option<Zeroizing<String>>, Refusal> {
        match &self.password {
            Password::None => Ok(None),
            Password::Fixed(p) => Ok(Some(p.clone())),
            Password::PgPass { text, path } => {
                pgpass_lookup(text, address, &settings.database, &settings.user)
                    .map(Some)
                    .ok_or_else(|| {
                        Refusal::Credentials(format!(
                            "{path} has no line for host {} port {} database {} user {}",
                            address.ip(),
                            address.port(),
                            settings.database,
                            settings.user
                        ))
                    })
            }
        }
    }
}

fn read(policy: &Policy, path: &Path) -> Result<Zeroizing<Vec<u8>>, Error> {
    policy
        .read(path)
        .map_err(Error::File)?
        .ok_or_else(|| Error::Settings(format!("{} does not exist", path.display())))
}

fn read_text(policy: &Policy, path: &Path) -> Result<Zeroizing<String>, Error> {
    policy
        .read_text(path)
        .map_err(Error::File)?
        .ok_or_else(|| Error::Settings(format!("{} does not exist", path.display())))
}

fn bad_file(path: &Path, why: &str) -> Error {
    Error::Settings(format!("{} cannot be used: {why}", path.display()))
}

fn bad_pem(path: &Path, e: &rustls::pki_types::pem::Error) -> Error {
    // The parser's words name the section, never its contents.
    let why = match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            "it holds no PEM section of the expected kind".to_owned()
        }
        other => format!("it is not valid PEM ({other:?})"),
    };
    bad_file(path, &why)
}

/// The password of the first line of a libpq password file that matches, as libpq picks it:
/// `host:port:database:user:password`, `*` matching anything in the first four fields, `\`
/// escaping `:` and `\`, `#` starting a comment line. The host is the address's IP as text
/// (an IPv6 address with its colons escaped in the file).
pub(crate) fn pgpass_lookup(
    text: &str,
    address: SocketAddr,
    database: &str,
    user: &str,
) -> Option<Zeroizing<String>> {
    let host = address.ip().to_string();
    let port = address.port().to_string();
    let wanted = [host.as_str(), port.as_str(), database, user];
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields = split_pgpass(line);
        if fields.len() < 5 {
            continue;
        }
        let matches = fields
            .iter()
            .zip(wanted)
            .all(|(field, want)| field.as_str() == "*" || field.as_str() == want);
        if matches {
            return Some(fields[4].clone());
        }
    }
    None
}

/// A line's fields, split at unescaped colons, escapes removed.
fn split_pgpass(line: &str) -> Vec<Zeroizing<String>> {
    let mut fields = vec![Zeroizing::new(String::new())];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    if let Some(field) = fields.last_mut() {
                        field.push(next);
                    }
                }
            }
            ':' => fields.push(Zeroizing::new(String::new())),
            c => {
                if let Some(field) = fields.last_mut() {
                    field.push(c);
                }
            }
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    fn look(text: &str, addr: &str, db: &str, user: &str) -> Option<String> {
        pgpass_lookup(text, addr.parse().unwrap(), db, user).map(|p| p.to_string())
    }

    #[test]
    fn the_first_matching_line_wins_with_wildcards_and_escapes() {
        let file = "# admins\n\
                    10.0.0.5:5432:ivmfa:alice:first\n\
                    *:*:ivmfa:alice:second\n\
                    2001\\:db8\\:\\:5:5432:*:bob:pa\\:ss\\\\word\n\
                    short:line\n";
        assert_eq!(
            look(file, "10.0.0.5:5432", "ivmfa", "alice").as_deref(),
            Some("first")
        );
        assert_eq!(
            look(file, "10.0.0.6:5432", "ivmfa", "alice").as_deref(),
            Some("second")
        );
        assert_eq!(
            look(file, "10.0.0.5:6432", "ivmfa", "alice").as_deref(),
            Some("second")
        );
        assert_eq!(look(file, "10.0.0.5:5432", "other", "alice"), None);
        assert_eq!(
            look(file, "[2001:db8::5]:5432", "x", "bob").as_deref(),
            Some("pa:ss\\word")
        );
        assert_eq!(look(file, "10.0.0.5:5432", "ivmfa", "carol"), None);
    }
}
