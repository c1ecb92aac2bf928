//! `import-google-authenticator` and `import-oath`: take over a user's
//! `~/.google_authenticator`, or their line of a pam_oath usersfile.

use std::path::{Path, PathBuf};

use ivmfa_core::enrollment::{Enrollment, Kind as EnrollmentKind};
use ivmfa_core::safefile::Policy;
use ivmfa_core::username::UserName;
use ivmfa_core::{google, oath, random, recovery};
use ivmfa_sys::{Level, Passwd};

use crate::context::{existing_user, Context};
use crate::enroll::{refuse_if_enrolled, save};
use crate::error::{CliError, Kind, Result};

pub fn run(ctx: &Context, name: &str, file: Option<&PathBuf>, force: bool) -> Result<()> {
    let (user, pw) = existing_user(name)?;
    refuse_if_enrolled(ctx, &user, pw.uid, force)?;
    let (imported, shown) = read_google(&pw, file)?;
    let window = imported.window;
    let enrollment = google_enrollment(imported, pw.uid, ctx.now)?;
    let archived = save(ctx, &user, &enrollment, 0, force)?;
    ctx.audit(
        Level::Notice,
        &format!(
            "imported the google-authenticator enrollment of user={user} from {shown}{}",
            if archived {
                ", replacing the previous enrollment"
            } else {
                ""
            }
        ),
    );
    google_imported(&user, window, enrollment.recovery.remaining(), &shown);
    Ok(())
}

/// What an import of a google-authenticator file says when done.
pub fn google_imported(user: &UserName, window: u8, scratch: usize, shown: &str) {
    println!(
        "Imported {user}'s google-authenticator account: the app keeps working as it is.\n\
         Window: {window} step(s) either side; {scratch} scratch code(s) kept as recovery codes.\n\
         {shown} was left in place; remove it, and pam_google_authenticator from the PAM\n\
         stack, once logins through pam_ivmfa work."
    );
}

/// The user's google-authenticator file (`file`, else `~/.google_authenticator`), read and
/// parsed; and how to name it.
pub fn read_google(pw: &Passwd, file: Option<&PathBuf>) -> Result<(google::Imported, String)> {
    // In the user's home the file must be the user's own; a file named with --file is the
    // administrator's choice and may also be root's. Private either way, as
    // google-authenticator itself demands.
    let path = file
        .cloned()
        .unwrap_or_else(|| pw.home.join(".google_authenticator"));
    let policy = Policy {
        owner: pw.uid,
        max_len: 64 * 1024,
        private: true,
        strict_owner: file.is_none(),
    };
    let text = policy.read_text(&path)?.ok_or_else(|| {
        CliError::new(
            Kind::Usage,
            format!("{} does not exist", path.display()),
            "name the file with --file PATH",
        )
    })?;
    let shown = path.display().to_string();
    // Whatever is wrong is in the file, not on the command line.
    let imported = google::parse(&text, &shown).map_err(|e| {
        CliError::new(
            Kind::Usage,
            e.to_string(),
            "fix the file, or enroll the user afresh: ivmfa-enroll enroll USER",
        )
    })?;
    Ok((imported, shown))
}

/// The enrollment a google-authenticator file makes: its key, period and window, its
/// scratch codes as recovery codes (hashed with a new salt).
pub fn google_enrollment(imported: google::Imported, uid: u32, now: u64) -> Result<Enrollment> {
    let mut salt = [0u8; 16];
    random::fill(&mut salt)?;
    let codes = recovery::from_plain(&salt, imported.scratch.iter().map(|c| c.as_str()), now);
    Ok(Enrollment {
        period: imported.period,
        window: Some(imported.window),
        recovery: codes,
        uid: Some(uid),
        ..Enrollment::standard(imported.secret, now)
    })
}

/// `user`'s line of a pam_oath usersfile, as an enrollment and where its watermark (an app)
/// or counter (a token) starts; and how to name the file.
pub fn read_oath(user: &UserName, file: &Path, now: u64) -> Result<(Enrollment, u64, String)> {
    // Whoever can write the file chooses the keys: root only, as for the module's own files.
    // Others may have been allowed to read it (pam_oath does not insist); that is for the
    // administrator to fix, and no reason to refuse.
    let policy = Policy {
        owner: 0,
        max_len: MAX_USERSFILE_LEN,
        private: false,
        strict_owner: false,
    };
    let text = policy.read_text(file)?.ok_or_else(|| {
        CliError::new(
            Kind::Usage,
            format!("{} does not exist", file.display()),
            "give pam_oath's usersfile, as its usersfile= option names it",
        )
    })?;
    let shown = file.display().to_string();
    // Whatever is wrong is in the file, not on the command line.
    let in_file = |e: ivmfa_core::Error| {
        CliError::new(
            Kind::Usage,
            e.to_string(),
            "fix the file (or import from a corrected copy), or enroll the user afresh: \
             ivmfa-enroll enroll USER",
        )
    };
    let entry = oath::parse(&text, &shown, user.as_str()).map_err(in_file)?;
    let (enrollment, start) = entry.enrollment(&shown, now, now).map_err(in_file)?;
    Ok((enrollment, start, shown))
}

/// Usersfiles hold every user's line; a large site's is still far below this.
const MAX_USERSFILE_LEN: u64 = 1024 * 1024;

pub fn oath(ctx: &Context, name: &str, file: &Path, force: bool) -> Result<()> {
    let (user, pw) = existing_user(name)?;
    refuse_if_enrolled(ctx, &user, pw.uid, force)?;
    let (enrollment, start, shown) = read_oath(&user, file, ctx.now)?;
    let enrollment = Enrollment {
        uid: Some(pw.uid),
        ..enrollment
    };
    let archived = save(ctx, &user, &enrollment, start, force)?;
    let token = enrollment.kind == EnrollmentKind::Hotp;
    ctx.audit(
        Level::Notice,
        &format!(
            "imported the pam_oath {} of user={user} from {shown}{}",
            if token {
                "token (HOTP)"
            } else {
                "account (TOTP)"
            },
            if archived {
                ", replacing the previous enrollment"
            } else {
                ""
            }
        ),
    );
    oath_imported(&user, &enrollment, start, &shown);
    Ok(())
}

/// What an import of a pam_oath line says when done.
pub fn oath_imported(user: &UserName, e: &Enrollment, start: u64, shown: &str) {
    let (period, digits) = (e.period, e.digits);
    if e.kind == EnrollmentKind::Hotp {
        println!(
            "Imported {user}'s hardware token from {shown}: it keeps working as it is.\n\
             The next code expected is the one for counter {start} ({digits} digits)."
        );
    } else {
        println!(
            "Imported {user}'s time-based account from {shown}: the app keeps working as it is\n\
             ({digits} digits every {period} seconds)."
        );
    }
    println!(
        "pam_oath has no recovery codes: issue some with ivmfa-enroll recovery-codes {user}.\n\
         {shown} was left in place; remove {user}'s line, and pam_oath from the PAM stack,\n\
         once logins through pam_ivmfa work."
    );
}
