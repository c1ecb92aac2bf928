//! `enroll`, `import-google-authenticator` and `import-oath` on the fleet database.
//!
//! `enroll` is the terminal ceremony of `enroll.rs` with the database as the judge: the key
//! is made in the database (`admin_enroll`) and shown once, as the QR code and the key; each
//! code typed goes to `admin_enroll_confirm`, which installs the key at the third try at
//! most and returns the recovery codes, shown once. A key the administrator has
//! (`--secret`, `--secret-file`, `--hotp`) goes in with `admin_enroll_key` and is confirmed
//! the same way; `--no-confirm` installs it with `admin_enroll_unconfirmed`. Each step is a
//! database round of its own: nothing stays connected while someone types.
//!
//! The imports hand the database everything the file store would have kept
//! (`admin_import`), the same way `db migrate` does.

use std::path::{Path, PathBuf};

use ivmfa_core::ceremony::{Ceremony, Outcome};
use ivmfa_core::enrollment::{Enrollment, Kind as EnrollmentKind, Secret};
use ivmfa_core::state::State;
use ivmfa_core::username::UserName;
use ivmfa_fleet::admin_api::{Confirmed, EnrollBegun, Imported, KeyPending};
use ivmfa_sys::Level;

use crate::cli::EnrollArgs;
use crate::context::{existing_user, user_name};
use crate::enroll::{confirm, invoking_user, issuer, present, print_recovery_codes, Device};
use crate::error::{CliError, Kind, Result};
use crate::fleet::Admin;
use crate::import::{google_enrollment, google_imported, oath_imported, read_google, read_oath};
use crate::migrate::import_args;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub fn enroll(admin: &Admin, args: &EnrollArgs) -> Result<()> {
    let name = match &args.user {
        Some(name) => name.clone(),
        None => invoking_user()?,
    };
    // The fleet's users need not have an account on this machine: only the name is checked.
    let user = user_name(&name)?;
    let count = i32::try_from(args.recovery_codes).unwrap_or(i32::MAX);
    let provided = args.secret.is_some() || args.secret_file.is_some();

    let (device, digits, mut images) = if args.hotp {
        let key = crate::token::key(args)?;
        begin_with_key(admin, &user, &key, "hotp", args.force)?;
        (Device::Token, 6, None)
    } else if provided {
        let secret = crate::enroll::provided_secret(args)?;
        // The administrator has the key already: only the files asked for are written.
        let ceremony = ceremony(admin, args, &user, Enrollment::standard(secret, now()))?;
        let images = present(&ceremony, args, false)?;
        begin_with_key(
            admin,
            &user,
            &ceremony.enrollment().secret,
            "totp",
            args.force,
        )?;
        (Device::App, 6, Some(images))
    } else {
        let key = match admin.round(|db| db.admin_enroll(user.as_str(), args.force))? {
            EnrollBegun::Ready(key) => key,
            EnrollBegun::Exists => return Err(enrolled_already(&user)),
            EnrollBegun::Invalid | EnrollBegun::InvalidUser => return Err(not_a_user(&user)),
        };
        let digits = key.digits;
        let e = Enrollment {
            digits: key.digits,
            period: key.period,
            algorithm: key.algorithm,
            ..Enrollment::standard(key.secret, now())
        };
        let ceremony = ceremony(admin, args, &user, e)?;
        let images = present(&ceremony, args, true)?;
        (Device::App, digits, Some(images))
    };

    let codes = if args.no_confirm {
        match admin.round(|db| db.admin_enroll_unconfirmed(user.as_str(), count))? {
            Confirmed::Enrolled(codes) => codes,
            other => return Err(unfinished(&user, other)),
        }
    } else {
        let mut codes = Vec::new();
        confirm(device, digits, |typed| {
            match admin.round(|db| db.admin_enroll_confirm(user.as_str(), typed, count))? {
                Confirmed::Enrolled(given) => {
                    codes = given;
                    Ok(Outcome::Confirmed)
                }
                Confirmed::Wrong {
                    tries_left,
                    clock_offset,
                } => Ok(Outcome::Wrong {
                    left: tries_left as usize,
                    clock_off: clock_offset.map(i64::unsigned_abs),
                }),
                Confirmed::Failed => Ok(Outcome::Failed),
                other => Err(unfinished(&user, other)),
            }
        })?;
        codes
    };
    if let Some(images) = &mut images {
        images.keep();
    }
    let token = device == Device::Token;
    admin.audit(
        Level::Notice,
        &format!(
            "enrolled user={user}{}{}",
            if token {
                " with a hardware token (HOTP)"
            } else {
                ""
            },
            if args.force {
                ", replacing any previous enrollment"
            } else {
                ""
            }
        ),
    );
    if token {
        println!(
            "\n{user} is enrolled with a hardware token in the fleet database. From now on,\n\
             logins on every host of the fleet ask for a code from it (one press of its button)."
        );
    } else {
        println!(
            "\n{user} is enrolled in the fleet database. From now on, logins on every host of\n\
             the fleet ask for the code from the app."
        );
    }
    print_recovery_codes(&codes);
    Ok(())
}

/// The picture and URI of `e` for `user`, as the app will show the account.
fn ceremony(admin: &Admin, args: &EnrollArgs, user: &UserName, e: Enrollment) -> Result<Ceremony> {
    let issuer = issuer(&admin.config, args.issuer.as_deref())?;
    Ok(Ceremony::new(e, issuer, user, &admin.config)?)
}

/// `admin_enroll_key`: the administrator's key waits for its confirming code.
fn begin_with_key(
    admin: &Admin,
    user: &UserName,
    key: &Secret,
    kind: &str,
    force: bool,
) -> Result<()> {
    match admin.round(|db| db.admin_enroll_key(user.as_str(), key.expose(), kind, force))? {
        KeyPending::Ready => Ok(()),
        KeyPending::Exists => Err(enrolled_already(user)),
        KeyPending::Invalid => Err(CliError::new(
            Kind::Usage,
            "the fleet database refused the key",
            "give a key of 128 to 1024 bits",
        )),
        KeyPending::InvalidUser => Err(not_a_user(user)),
    }
}

fn enrolled_already(user: &UserName) -> CliError {
    CliError::new(
        Kind::Refused,
        format!("{user} is already enrolled in the fleet database"),
        "add --force to replace the enrollment (the old key stops working once the new one \
         is confirmed)",
    )
}

fn not_a_user(user: &UserName) -> CliError {
    CliError::new(
        Kind::Usage,
        format!("the fleet database does not take {user} as a user name"),
        "use the login name as the hosts know it",
    )
}

/// Why an enrollment ended without a key installed.
fn unfinished(user: &UserName, answer: Confirmed) -> CliError {
    let (kind, what, hint) = match answer {
        Confirmed::Expired => (
            Kind::Refused,
            "the enrollment waited longer than the fleet allows (setup_lifetime_seconds); \
             nothing was saved"
                .to_owned(),
            "run enroll again, and type the code when asked".to_owned(),
        ),
        Confirmed::Exists => (
            Kind::Refused,
            format!("{user} was enrolled by someone else meanwhile; nothing was saved"),
            format!("check with ivmfa-enroll status {user}, and add --force to replace it"),
        ),
        Confirmed::NoEnrollment => (
            Kind::Refused,
            "the enrollment begun is gone (another enroll of the same user as your role \
             replaced it, or it was removed); nothing was saved"
                .to_owned(),
            "run enroll again".to_owned(),
        ),
        Confirmed::Invalid => (
            Kind::Usage,
            "the fleet database refused the number of recovery codes".to_owned(),
            "give --recovery-codes 1 to 100".to_owned(),
        ),
        Confirmed::InvalidUser => return not_a_user(user),
        // The caller handles these; anything else of the kind means nothing was saved.
        Confirmed::Enrolled(_) | Confirmed::Wrong { .. } | Confirmed::Failed => (
            Kind::Failed,
            "the fleet database answered out of turn; nothing was saved".to_owned(),
            "run enroll again".to_owned(),
        ),
    };
    CliError::new(kind, what, hint)
}

pub fn import_google(admin: &Admin, name: &str, file: Option<&PathBuf>, force: bool) -> Result<()> {
    // The file is the local account's, in its home.
    let (user, pw) = existing_user(name)?;
    let (imported, shown) = read_google(&pw, file)?;
    let window = imported.window;
    let e = google_enrollment(imported, pw.uid, now())?;
    let left = import(admin, &user, &e, &State::default(), force)?;
    admin.audit(
        Level::Notice,
        &format!("imported the google-authenticator enrollment of user={user} from {shown}"),
    );
    google_imported(&user, window, left as usize, &shown);
    Ok(())
}

pub fn import_oath(admin: &Admin, name: &str, file: &Path, force: bool) -> Result<()> {
    let user = user_name(name)?;
    let (e, start, shown) = read_oath(&user, file, now())?;
    let mut state = State::default();
    match e.kind {
        EnrollmentKind::Totp => state.last_step = start,
        EnrollmentKind::Hotp => state.set_hotp_next(&e.secret, start),
    }
    import(admin, &user, &e, &state, force)?;
    admin.audit(
        Level::Notice,
        &format!("imported the pam_oath line of user={user} from {shown}"),
    );
    oath_imported(&user, &e, start, &shown);
    Ok(())
}

/// Installs `e` with `state` for `user`; the recovery codes left.
fn import(
    admin: &Admin,
    user: &UserName,
    e: &Enrollment,
    state: &State,
    force: bool,
) -> Result<u32> {
    let args = import_args(user.as_str(), e, state, force).map_err(|why| {
        CliError::new(
            Kind::Usage,
            format!("cannot import it: {why}"),
            "check the file",
        )
    })?;
    match admin.round(|db| db.admin_import(&args))? {
        Imported::Imported { recovery_left } => Ok(recovery_left),
        Imported::Exists { .. } => Err(enrolled_already(user)),
        Imported::Invalid(problem) => Err(CliError::new(
            Kind::Usage,
            format!("the fleet database refused the enrollment's {problem}"),
            "fix the file, or enroll the user afresh: ivmfa-enroll enroll USER",
        )),
        Imported::InvalidUser => Err(not_a_user(user)),
    }
}
