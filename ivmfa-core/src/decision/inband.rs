//! Flow 1 of the user guide inside the login: an unenrolled user (with `unenrolled=enroll`,
//! or with a ticket from an approved reset) is shown a QR code in the PAM conversation, scans
//! it, and proves it with a code. Only then is anything saved, and the login goes on. The
//! steps are [`super::ceremony`]'s, shared with the CLI; this is their PAM conversation.
//!
//! This runs after the password step has succeeded: the shipped PAM snippets make that step
//! `requisite`, so only someone who knows the password ever gets here.

use super::attempt::Attempt;
use super::ceremony::{self, Ceremony, Installed, Outcome, Rules};
use crate::config::Config;
use crate::error::Result;
use crate::input::{self, Answer};
use crate::messages;
use crate::ports::{Priority, Verdict};
use crate::qr::{Blocks, Qr};
use crate::recovery;
use crate::store::Store;
use crate::username::UserName;

/// Prompts in all, `invert` included, so a client cannot keep the login open forever.
pub(crate) const MAX_PROMPTS: usize = 10;
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
    let secret = ceremony::new_secret(|b| att.host.random(b))?;
    let enrollment = ceremony::new_enrollment(secret, uid, att.host.now());
    let mut ceremony = Ceremony::new(enrollment, ceremony::issuer(config, None), user, config)?;

    let mut light = config.qr_light_background;
    if let Err(e) = introduce(att, &ceremony, light) {
        return att.deny(
            Priority::Notice,
            &format!("in-band enrollment needs a conversation that shows text: {e}"),
            messages::ENROLL_NEEDS_TEXT,
        );
    }

    let accepts = ceremony.accepts(true);
    let mut confirmed = false;
    for _ in 0..MAX_PROMPTS {
        let answer = input::parse(
            &att.ask_code(messages::ENROLL_PROMPT, config.echo_code)?,
            accepts,
        );
        if matches!(answer, Answer::Invert) {
            light = !light;
            show(att, ceremony.qr(), light)?;
            continue;
        }
        match ceremony.judge(&answer, att.host.now())? {
            Outcome::Confirmed => {
                confirmed = true;
                break;
            }
            Outcome::Failed => break,
            Outcome::Wrong { left, clock_off } => {
                let mut tell = messages::enroll_wrong(left);
                // The phone's clock being off is the likeliest reason a fresh set-up fails.
                if let Some(seconds) = clock_off {
                    tell = format!("{tell} {}", messages::clock_hint(seconds));
                }
                let _ = att.conv.error(&tell);
            }
        }
    }
    if !confirmed {
        return att.deny(
            Priority::Notice,
            "in-band enrollment failed: no correct code; nothing was saved",
            messages::ENROLL_FAILED,
        );
    }

    let (codes, set) = recovery::issue(recovery::DEFAULT_COUNT, att.host.now(), |b| {
        att.host.random(b)
    })?;
    let rules = Rules {
        // A stale enrollment (made for an earlier owner of the name) is replaced; a current
        // one means another login got there first.
        replace: false,
        // The prompt may have stayed open for a long time: an approval that has since been
        // withdrawn or has expired no longer lets anyone enroll.
        needs_ticket: grant == Grant::Ticket,
        now: att.host.now(),
    };
    match ceremony.install(store, user, set, &rules)? {
        Installed::Done { .. } => {}
        Installed::EnrolledMeanwhile => {
            return att.deny(
                Priority::Notice,
                "in-band enrollment lost a race: the user was enrolled meanwhile",
                messages::ENROLL_RACED,
            )
        }
        Installed::TicketGone => {
            return att.deny(
                Priority::Notice,
                "in-band enrollment refused: the approved reset expired or was withdrawn meanwhile",
                messages::TICKET_EXPIRED,
            )
        }
    }
    att.log(
        Priority::Notice,
        match grant {
            Grant::Ticket => "enrolled in the login, after an approved reset",
            Grant::Policy => "enrolled in the login (unenrolled=enroll)",
        },
    );
    let codes: Vec<&str> = codes.iter().map(|c| c.as_str()).collect();
    tell_enrolled(att, &codes);
    Ok(Verdict::Success)
}

/// What the user reads before the first prompt: what to do, the QR code, the key to type in
/// instead.
pub(crate) fn introduce(att: &mut Attempt, ceremony: &Ceremony, light: bool) -> Result<()> {
    att.conv.info(messages::ENROLL_INTRO)?;
    show(att, ceremony.qr(), light)?;
    att.conv.info(&messages::enroll_key(
        &ceremony.key(),
        ceremony.issuer(),
        ceremony.account(),
    ))
}

/// Set up: says so and shows the recovery codes, once. The enrollment stands whether or not
/// they get through.
pub(crate) fn tell_enrolled(att: &mut Attempt, codes: &[&str]) {
    let told = att
        .conv
        .info(messages::ENROLLED)
        .and_then(|()| att.conv.info(&messages::recovery_codes(codes)));
    if let Err(e) = told {
        att.log(
            Priority::Warning,
            &format!("the recovery codes could not be shown: {e}"),
        );
    }
}

/// Sends the QR code as plain half blocks (an SSH client prints escape sequences literally),
/// in messages no longer than libpam guarantees to pass on whole.
pub(crate) fn show(att: &mut Attempt, qr: &Qr, light: bool) -> Result<()> {
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
