//! Flow 1 of the user guide inside the login: an unenrolled user (with `unenrolled=enroll`,
//! or with a ticket from an approved reset) is shown a QR code in the PAM conversation, scans
//! it, and proves it with a code. Only then is anything saved, and the login goes on.
//!
//! This runs after the password step has succeeded: the shipped PAM snippets make that step
//! `requisite`, so only someone who knows the password ever gets here.

use super::attempt::Attempt;
use crate::config::Config;
use crate::enrollment::{Enrollment, Secret, DEFAULT_SECRET_BYTES};
use crate::error::Result;
use crate::input::{self, Accepts, Answer};
use crate::ports::{Priority, Verdict};
use crate::qr::{Blocks, Qr};
use crate::store::Store;
use crate::totp::{self, Check};
use crate::username::UserName;
use crate::{messages, otpauth, recovery};

const TRIES: usize = 3;
/// Prompts in all, `invert` included, so a client cannot keep the login open forever.
const MAX_PROMPTS: usize = 10;
/// Linux-PAM's PAM_MAX_MSG_SIZE: conversation functions may cut longer messages.
const MAX_MESSAGE: usize = 512;

/// Why an unenrolled user may set up in the login.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grant {
    /// `unenrolled=enroll`.
    Policy,
    /// An administrator approved a reset; it must still hold when the enrollment is saved.
    Ticket,
}

pub(crate) fn enroll(
    att: &mut Attempt,
    config: &Config,
    store: &Store,
    user: &UserName,
    uid: u32,
    grant: Grant,
) -> Result<Verdict> {
    if !att.conv.can_show_text() {
        return att.deny(
            Priority::Notice,
            "in-band enrollment needs a conversation that shows text (PAM_SILENT was set)",
            messages::ENROLL_NEEDS_TEXT,
        );
    }
    let mut bytes = zeroize::Zeroizing::new([0u8; DEFAULT_SECRET_BYTES]);
    att.host.random(&mut *bytes)?;
    let mut enrollment = Enrollment::standard(Secret::from_bytes(&*bytes)?, att.host.now());
    enrollment.uid = Some(uid);
    let issuer = otpauth::issuer(config.issuer.as_deref());
    let uri = otpauth::uri(&enrollment, &issuer, user.as_str())?;
    let qr = Qr::new(&uri)?;
    let key = otpauth::grouped_key(&enrollment);

    let mut light = config.qr_light_background;
    let shown = att
        .conv
        .info(messages::ENROLL_INTRO)
        .and_then(|()| show(att, &qr, light))
        .and_then(|()| {
            att.conv
                .info(&messages::enroll_key(&key, &issuer, user.as_str()))
        });
    if let Err(e) = shown {
        return att.deny(
            Priority::Notice,
            &format!("in-band enrollment needs a conversation that shows text: {e}"),
            messages::ENROLL_NEEDS_TEXT,
        );
    }

    let mut wrong = 0;
    let mut step = None;
    let accepts = Accepts {
        digits: enrollment.digits,
        reset: None,
        invert: true,
        recovery: false,
    };
    for _ in 0..MAX_PROMPTS {
        let answer = att.conv.ask_hidden(messages::ENROLL_PROMPT)?;
        // The phone's clock being off is the likeliest reason a fresh set-up fails.
        let mut off_by = None;
        match input::parse(&answer, accepts) {
            Answer::Invert => {
                light = !light;
                show(att, &qr, light)?;
                continue;
            }
            Answer::Code(code) => {
                let now = att.host.now();
                match totp::verify(&enrollment, &code, now, config.window, 0, &[])? {
                    Check::Accepted { step: s } => {
                        step = Some(s);
                        break;
                    }
                    Check::Skewed { offset, .. } => {
                        off_by = Some(offset.unsigned_abs().saturating_mul(enrollment.period));
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        wrong += 1;
        if wrong == TRIES {
            break;
        }
        let mut tell = messages::enroll_wrong(TRIES - wrong);
        if let Some(seconds) = off_by {
            tell = format!("{tell} {}", messages::clock_hint(seconds));
        }
        let _ = att.conv.error(&tell);
    }
    let Some(step) = step else {
        return att.deny(
            Priority::Notice,
            "in-band enrollment failed: no correct code; nothing was saved",
            messages::ENROLL_FAILED,
        );
    };

    let mut random =
        zeroize::Zeroizing::new(vec![
            0u8;
            recovery::random_bytes_needed(recovery::DEFAULT_COUNT)
        ]);
    att.host.random(&mut random)?;
    let (codes, set) = recovery::generate(&random, recovery::DEFAULT_COUNT, att.host.now())?;
    enrollment.recovery = set;

    let lock = store.lock(user)?;
    match store.reload_enrollment(&lock)? {
        // An enrollment made for an earlier owner of the name is no one's now.
        Some(stale) if !stale.belongs_to(uid) => {
            store.archive_enrollment(&lock, user, att.host.now())?;
        }
        Some(_) => {
            drop(lock);
            return att.deny(
                Priority::Notice,
                "in-band enrollment lost a race: the user was enrolled meanwhile",
                messages::ENROLL_RACED,
            );
        }
        None => {}
    }
    // The prompt may have stayed open for a long time: an approval that has since been
    // withdrawn or has expired no longer lets anyone enroll.
    let ticket = store.ticket(user)?;
    if grant == Grant::Ticket && !ticket.is_some_and(|t| t.is_valid_at(att.host.now())) {
        drop(lock);
        return att.deny(
            Priority::Notice,
            "in-band enrollment refused: the approved reset expired or was withdrawn meanwhile",
            messages::TICKET_EXPIRED,
        );
    }
    store.install_enrollment(&lock, &enrollment, step)?;
    drop(lock);
    att.log(
        Priority::Notice,
        match grant {
            Grant::Ticket => "enrolled in the login, after an approved reset",
            Grant::Policy => "enrolled in the login (unenrolled=enroll)",
        },
    );
    let codes: Vec<&str> = codes.iter().map(|c| c.as_str()).collect();
    let told = att
        .conv
        .info(messages::ENROLLED)
        .and_then(|()| att.conv.info(&messages::recovery_codes(&codes)));
    if let Err(e) = told {
        att.log(
            Priority::Warning,
            &format!("the recovery codes could not be shown: {e}"),
        );
    }
    Ok(Verdict::Success)
}

/// Sends the QR code as plain half blocks (an SSH client prints escape sequences literally),
/// in messages no longer than libpam guarantees to pass on whole.
fn show(att: &mut Attempt, qr: &Qr, light: bool) -> Result<()> {
    let blocks = if light {
        Blocks::ForLightBackground
    } else {
        Blocks::ForDarkBackground
    };
    let text = qr.half_blocks(blocks);
    let mut chunk = String::new();
    for line in text.lines() {
        if !chunk.is_empty() && chunk.len() + line.len() + 1 > MAX_MESSAGE {
            att.conv.info(&chunk)?;
            chunk.clear();
        }
        if !chunk.is_empty() {
            chunk.push('\n');
        }
        chunk.push_str(line);
    }
    att.conv.info(&chunk)
}
