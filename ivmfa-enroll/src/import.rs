//! `import-google-authenticator`: take over a user's `~/.google_authenticator`.

use std::path::PathBuf;

use ivmfa_core::enrollment::Enrollment;
use ivmfa_core::safefile::Policy;
use ivmfa_core::{google, random, recovery};
use ivmfa_sys::Level;

use crate::context::{existing_user, Context};
use crate::enroll::{refuse_if_enrolled, save};
use crate::error::{CliError, Kind, Result};

pub fn run(ctx: &Context, name: &str, file: Option<&PathBuf>, force: bool) -> Result<()> {
    let (user, pw) = existing_user(name)?;
    refuse_if_enrolled(ctx, &user, pw.uid, force)?;
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

    let mut salt = [0u8; 16];
    random::fill(&mut salt)?;
    let codes = recovery::from_plain(&salt, imported.scratch.iter().map(|c| c.as_str()), ctx.now);
    let enrollment = Enrollment {
        period: imported.period,
        window: Some(imported.window),
        recovery: codes,
        uid: Some(pw.uid),
        ..Enrollment::standard(imported.secret, ctx.now)
    };
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
    println!(
        "Imported {user}'s google-authenticator account: the app keeps working as it is.\n\
         Window: {} step(s) either side; {} scratch code(s) kept as recovery codes.\n\
         {shown} was left in place; remove it, and pam_google_authenticator from the PAM\n\
         stack, once logins through pam_ivmfa work.",
        imported.window,
        enrollment.recovery.remaining()
    );
    Ok(())
}
