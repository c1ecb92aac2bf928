//! `db migrate --from DIR`: every user of a file store into the fleet database, with all
//! that keeps a used code used and a guesser slowed down: the key, the recovery codes (their
//! salt and hashes, the used ones left out), the watermark, the steps refused in advance, a
//! token's counter, the failure counts. The database merges what it gets with what it has,
//! never lowering anything (docs/SCHEMA.md, `admin_import`), so a second run, or the stores
//! of several hosts one after another, lose nothing either.

use std::path::Path;

use ivmfa_core::enrollment::{Algorithm, Enrollment, Kind as EnrollmentKind};
use ivmfa_core::state::State;
use ivmfa_core::store::Store;
use ivmfa_core::username::UserName;
use ivmfa_fleet::admin_api::{Import, Imported};
use ivmfa_fleet::Session;
use ivmfa_sys::Level;

use crate::error::{CliError, Kind, Result};
use crate::fleet::{require_root, Admin, STATEMENT_TIMEOUT};

/// What became of one user.
enum Migrated {
    Imported { kind: &'static str, left: u32 },
    Merged,
    Skipped(String),
    Failed(String),
}

pub fn run(admin: &Admin, from: &Path, replace: bool) -> Result<()> {
    require_root("db migrate")?;
    let store = Store::new(from, ivmfa_sys::euid());
    let users = store.users()?;
    if users.is_empty() {
        println!(
            "No users in the store {}: nothing to migrate.",
            from.display()
        );
        return Ok(());
    }
    let (mut imported, mut merged, mut skipped, mut failed) = (0, 0, 0, 0);
    let mut session: Option<Session> = None;
    for user in &users {
        let outcome = match &mut session {
            Some(s) => migrate_one(admin, &store, s, user, replace),
            None => match admin.connect() {
                Ok(s) => migrate_one(admin, &store, session.insert(s), user, replace),
                Err(e) => Err(e),
            },
        };
        let outcome = outcome.unwrap_or_else(|e| {
            // The connection may be what failed: the next user gets a new one.
            session = None;
            Migrated::Failed(e.what)
        });
        match outcome {
            Migrated::Imported { kind, left } => {
                imported += 1;
                println!("{user}: imported ({kind}, {left} recovery code(s) left)");
            }
            Migrated::Merged => {
                merged += 1;
                println!(
                    "{user}: enrolled in the fleet database already: its key kept, the state \
                     merged (--replace replaces the key)"
                );
            }
            Migrated::Skipped(why) => {
                skipped += 1;
                println!("{user}: skipped: {why}");
            }
            Migrated::Failed(why) => {
                failed += 1;
                println!("{user}: FAILED: {why}");
            }
        }
    }
    if let Some(s) = session {
        s.close();
    }
    admin.audit(
        Level::Notice,
        &format!(
            "migrated the store {}: {imported} imported, {merged} merged, {skipped} skipped, \
             {failed} failed",
            from.display()
        ),
    );
    println!(
        "\n{} user(s): {imported} imported, {merged} merged, {skipped} skipped, {failed} failed.",
        users.len()
    );
    if failed > 0 {
        return Err(CliError::new(
            Kind::Failed,
            format!("{failed} of {} users could not be migrated", users.len()),
            "see the lines above; fix what they name and run db migrate again: what went in \
             already is merged, never doubled",
        ));
    }
    Ok(())
}

/// One user, under the store's lock for them, so that no login here changes what is read
/// before the database has it.
fn migrate_one(
    admin: &Admin,
    store: &Store,
    db: &mut Session,
    user: &UserName,
    replace: bool,
) -> Result<Migrated> {
    // Checked before locking, which would create lock files for a leftover directory.
    if store.load_enrollment(user)?.is_none() {
        return Ok(Migrated::Skipped("not enrolled in the store".into()));
    }
    let lock = store.lock(user)?;
    let Some(e) = store.reload_enrollment(&lock)? else {
        return Ok(Migrated::Skipped("not enrolled in the store".into()));
    };
    // Logins here ignore an enrollment made for someone else who had the name, or for an
    // account that is gone; so does the fleet.
    let account = ivmfa_sys::passwd_by_name(user.as_str()).map_err(|e| {
        CliError::new(
            Kind::Failed,
            format!("cannot read the user database: {e}"),
            "check NSS (getent passwd)",
        )
    })?;
    match (&account, e.uid) {
        (None, _) => {
            return Ok(Migrated::Skipped(
                "no such user on this host (what is left of a deleted account)".into(),
            ))
        }
        (Some(pw), Some(uid)) if pw.uid != uid => {
            return Ok(Migrated::Skipped(format!(
                "enrolled for uid {uid}, but {user} is now uid {} (the name was given to \
                 someone else?)",
                pw.uid
            )))
        }
        _ => {}
    }
    let state = store.load_state(&lock)?.state;
    let args = match import_args(user.as_str(), &e, &state, replace) {
        Ok(args) => args,
        Err(why) => return Ok(Migrated::Failed(why)),
    };
    db.renew_deadline(STATEMENT_TIMEOUT);
    let answer = db.admin_import(&args).map_err(|err| admin.error(err))?;
    drop(lock);
    Ok(match answer {
        Imported::Imported { recovery_left } => Migrated::Imported {
            kind: match e.kind {
                EnrollmentKind::Totp => "an app",
                EnrollmentKind::Hotp => "a hardware token",
            },
            left: recovery_left,
        },
        Imported::Exists { .. } => Migrated::Merged,
        Imported::Invalid(problem) => {
            Migrated::Failed(format!("the fleet database refused its {problem}"))
        }
        Imported::InvalidUser => {
            Migrated::Failed("the fleet database does not take the name".into())
        }
    })
}

/// What `admin_import` takes of a user's enrollment and state. `Err`: a number the database
/// cannot hold (a `bigint`), or a recovery set that is not hex; named.
pub fn import_args<'a>(
    user: &'a str,
    e: &'a Enrollment,
    state: &State,
    replace: bool,
) -> std::result::Result<Import<'a>, String> {
    let big = |what: &str, n: u64| {
        i64::try_from(n).map_err(|_| format!("its {what} ({n}) is more than the database holds"))
    };
    let small = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
    let totp = e.kind == EnrollmentKind::Totp;
    let salt = match e.recovery.salt.as_str() {
        "" => None,
        hex => Some(unhex(hex).ok_or("its recovery salt is not hex")?),
    };
    let hashes = e
        .recovery
        .hashes
        .iter()
        .map(|h| match h.as_str() {
            "" => Ok(None),
            hex => unhex(hex)
                .map(Some)
                .ok_or_else(|| "a recovery hash is not hex".to_owned()),
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    // Used codes the state knows of belong to the set with its salt; a state naming another
    // set knows of none of this one's.
    let used = if salt.is_some() && state.recovery.set == e.recovery.salt {
        state.recovery.used.iter().map(|&i| i32::from(i)).collect()
    } else {
        Vec::new()
    };
    let mut lasts = Vec::with_capacity(state.failures.len());
    for f in &state.failures {
        lasts.push(big("last failure time", f.last)?);
    }
    let mut refused = Vec::with_capacity(state.refused.len());
    for &step in &state.refused {
        refused.push(big("refused step", step)?);
    }
    Ok(Import {
        user,
        kind: if totp { "totp" } else { "hotp" },
        key: e.secret.expose(),
        digits: i32::from(e.digits),
        period: if totp {
            Some(i32::try_from(e.period).map_err(|_| "its period is out of range".to_owned())?)
        } else {
            None
        },
        algorithm: match e.algorithm {
            Algorithm::SHA1 => "SHA1",
            Algorithm::SHA256 => "SHA256",
            Algorithm::SHA512 => "SHA512",
        },
        window: if totp { e.window.map(i32::from) } else { None },
        enrolled: big("enrollment time", e.created)?,
        recovery_salt: salt,
        recovery_hashes: hashes,
        recovery_issued: big("recovery codes' time", e.recovery.issued)?,
        recovery_used: used,
        last_step: big("watermark", state.last_step)?,
        refused,
        token_next: match (totp, state.hotp_next(&e.secret)) {
            (false, Some(next)) => Some(big("token counter", next)?),
            _ => None,
        },
        total_failures: small(state.total.count),
        total_last: big("last failure time", state.total.last)?,
        sources: state.failures.iter().map(|f| f.source.clone()).collect(),
        source_failures: state.failures.iter().map(|f| small(f.count)).collect(),
        source_last: lasts,
        replace,
    })
}

/// Hex digits (either case) as bytes.
fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ivmfa_core::enrollment::Secret;
    use ivmfa_core::state::Failures;

    #[test]
    fn everything_that_keeps_a_code_used_goes_along() {
        let secret = Secret::from_bytes(b"12345678901234567890").unwrap();
        let (_, set) = ivmfa_core::recovery::generate(&[7u8; 16 + 12 * 3], 3, 50).unwrap();
        let mut e = Enrollment::standard(secret, 1_600_000_000);
        e.recovery = set.clone();
        e.recovery.hashes[0].clear();
        let mut state = State {
            last_step: 55_000_000,
            refused: vec![55_000_004],
            ..State::default()
        };
        state.use_recovery(&set, 2);
        state.total.count = 7;
        state.total.last = 1_700_000_000;
        state.failures.push(Failures {
            source: "10.0.0.9".into(),
            count: 4,
            last: 1_700_000_000,
        });
        let args = import_args("alice", &e, &state, false).unwrap();
        assert_eq!(args.kind, "totp");
        assert_eq!(args.period, Some(30));
        assert_eq!(args.recovery_salt.as_deref().map(<[u8]>::len), Some(16));
        assert_eq!(args.recovery_hashes.len(), 3);
        assert!(args.recovery_hashes[0].is_none());
        assert_eq!(args.recovery_hashes[1].as_ref().map(Vec::len), Some(32));
        assert_eq!(args.recovery_used, vec![2]);
        assert_eq!(args.last_step, 55_000_000);
        assert_eq!(args.refused, vec![55_000_004]);
        assert_eq!(args.token_next, None);
        assert_eq!((args.total_failures, args.total_last), (7, 1_700_000_000));
        assert_eq!(args.sources, vec!["10.0.0.9".to_owned()]);
        assert_eq!(args.source_failures, vec![4]);

        // A token's counter, and only for its own key.
        let token = Enrollment::hotp(
            Secret::from_bytes(b"abcdefghijabcdefghij").unwrap(),
            1_600_000_000,
        );
        let mut state = State::default();
        state.set_hotp_next(&token.secret, 42);
        let args = import_args("bob", &token, &state, true).unwrap();
        assert_eq!(
            (args.kind, args.period, args.token_next),
            ("hotp", None, Some(42))
        );
        state.set_hotp_next(&e.secret, 42);
        assert_eq!(
            import_args("bob", &token, &state, true).unwrap().token_next,
            None
        );

        // A number beyond a bigint is refused by name, not wrapped.
        let state = State {
            last_step: u64::MAX,
            ..State::default()
        };
        let err = import_args("alice", &e, &state, false).unwrap_err();
        assert!(err.contains("watermark"), "{err}");
    }
}
