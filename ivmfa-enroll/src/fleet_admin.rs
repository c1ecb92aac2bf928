//! `status`, `remove`, `recovery-codes`, `resync` and `reset list|approve|deny` on the fleet
//! database: the file store's commands, with the database deciding and auditing.

use ivmfa_core::logtext::printable;
use ivmfa_core::username::UserName;
use ivmfa_fleet::admin_api::{Approved, Denied, Removed, Resynced};
use ivmfa_sys::Level;

use crate::context::{format_time, user_name};
use crate::enroll::print_recovery_codes;
use crate::error::{CliError, Kind, Result};
use crate::fleet::Admin;
use crate::reset::{age, check_reason, from, no_request};

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub fn status(admin: &Admin, user: Option<&str>) -> Result<()> {
    let Some(name) = user else {
        let users = admin.round(|db| db.admin_users())?;
        if users.is_empty() {
            println!("No users are enrolled in the fleet database.");
        }
        for name in users {
            println!("{}", describe(admin, &user_name(&name)?)?.join("; "));
        }
        return Ok(());
    };
    for line in describe(admin, &user_name(name)?)? {
        println!("{line}");
    }
    Ok(())
}

/// What the fleet database has on `user`, a line per fact.
fn describe(admin: &Admin, user: &UserName) -> Result<Vec<String>> {
    let Some(s) = admin.round(|db| db.admin_status(user.as_str()))? else {
        return Ok(vec![format!(
            "{user}: not enrolled (the fleet database has never heard of {user})"
        )]);
    };
    let mut lines = Vec::new();
    match (s.enrolled, s.enrolled_at) {
        (true, Some(at)) => lines.push(format!("{user}: enrolled since {}", format_time(at))),
        (true, None) => lines.push(format!("{user}: enrolled")),
        (false, _) => lines.push(format!("{user}: not enrolled")),
    }
    if s.enrolled {
        lines.push(match (s.kind.as_deref(), s.token_counter) {
            (Some("hotp"), Some(next)) => {
                format!("codes: hardware token (HOTP), next counter {next}")
            }
            (Some("hotp"), None) => format!(
                "codes: hardware token (HOTP); problem: the database keeps no counter for its \
                 key, so its codes are refused: ivmfa-enroll resync {user} CODE1 CODE2"
            ),
            _ => "codes: time-based (an app)".to_owned(),
        });
        lines.push(format!("recovery codes left: {}", s.recovery_left));
    }
    if s.reset_pending {
        lines.push(match &s.reset_host {
            Some(host) => format!(
                "reset request: pending, through {} (ivmfa-enroll reset list)",
                printable(host)
            ),
            None => "reset request: pending (ivmfa-enroll reset list)".to_owned(),
        });
    }
    if let Some(expires) = s.ticket_expires {
        let host = printable(s.ticket_host.as_deref().unwrap_or("?"));
        lines.push(if expires > now() {
            format!(
                "reset approved: sets up a new code at the next login through {host}, before {}",
                format_time(expires)
            )
        } else {
            format!(
                "reset approved for logins through {host}, but the set-up time ran out at {} \
                 (ivmfa-enroll reset approve {user} issues it again)",
                format_time(expires)
            )
        });
    }
    if s.last_step > 0 {
        lines.push(format!(
            "watermark: step {} (codes up to then are used)",
            s.last_step
        ));
    }
    lines.push(match (s.wait, s.failures) {
        (0, 0) => "back-off: none".to_owned(),
        (0, n) => format!("back-off: none ({n} failures since the last right code)"),
        (w, n) => format!(
            "back-off: {} more (after {n} failures)",
            ivmfa_core::messages::duration(w)
        ),
    });
    Ok(lines)
}

pub fn remove(admin: &Admin, name: &str) -> Result<()> {
    let user = user_name(name)?;
    match admin.round(|db| db.admin_remove(user.as_str()))? {
        Removed::Removed => {
            admin.audit(
                Level::Notice,
                &format!("removed the enrollment of user={user}"),
            );
            println!(
                "Removed {user}'s enrollment from the fleet database: the key and recovery codes \
                 are deleted. The watermark stays, so no code used before works again."
            );
            Ok(())
        }
        Removed::NotEnrolled => Err(CliError::new(
            Kind::Refused,
            format!("{user} is not enrolled"),
            format!("ivmfa-enroll status {user} shows what the fleet database has"),
        )),
    }
}

pub fn recovery_codes(admin: &Admin, name: &str, count: usize) -> Result<()> {
    let user = user_name(name)?;
    let count = i32::try_from(count).unwrap_or(i32::MAX);
    let codes = admin.round(|db| db.admin_recovery_codes(user.as_str(), count))?;
    if codes.is_empty() {
        return Err(CliError::new(
            Kind::Refused,
            format!("{user} is not enrolled"),
            format!("enroll first: ivmfa-enroll enroll {user}"),
        ));
    }
    admin.audit(
        Level::Notice,
        &format!("issued {count} new recovery codes for user={user}"),
    );
    println!("New recovery codes for {user}; the previous ones no longer work.");
    print_recovery_codes(&codes);
    Ok(())
}

pub fn resync(admin: &Admin, name: &str, first: &str, second: &str) -> Result<()> {
    let user = user_name(name)?;
    match admin.round(|db| db.admin_resync(user.as_str(), first, second))? {
        Resynced::Resynced { before, after } => {
            let was = before.map_or("none".to_owned(), |n| n.to_string());
            admin.audit(
                Level::Notice,
                &format!(
                    "resynchronised the hardware token of user={user}: counter {was} -> {after}"
                ),
            );
            println!(
                "{user}'s token is in step again: the fleet now expects counter {after} (it \
                 expected {was}). The next press logs in."
            );
            Ok(())
        }
        Resynced::NotFound { counter } => Err(CliError::new(
            Kind::Refused,
            format!(
                "the two codes are not consecutive codes of {user}'s token within 1000 presses \
                 after counter {}; nothing was changed",
                counter.unwrap_or(0)
            ),
            "press the button twice more and give both new codes, in order; a token pressed \
             more often than that, or holding another key, needs enroll --hotp --force",
        )),
        Resynced::NotToken => Err(CliError::new(
            Kind::Refused,
            format!("{user}'s codes are time-based (an app), and have no counter to set"),
            "resync is for hardware tokens (HOTP); an app whose codes are refused needs its \
             phone's clock set to automatic",
        )),
        Resynced::Malformed => Err(CliError::new(
            Kind::Usage,
            "CODE1 and CODE2 must be codes of the token's length",
            "give the codes of two presses of the token's button, in order",
        )),
        Resynced::NotEnrolled | Resynced::InvalidUser => Err(CliError::new(
            Kind::Refused,
            format!("{user} is not enrolled"),
            format!("enroll the token first: ivmfa-enroll enroll {user} --hotp --secret-file -"),
        )),
    }
}

pub fn reset_list(admin: &Admin) -> Result<()> {
    let requests = admin.round(|db| db.admin_reset_list())?;
    if requests.is_empty() {
        println!("No reset requests are pending.");
        return Ok(());
    }
    let now = now();
    println!(
        "{:<20} {:<22} {:<10} {:<16} FROM",
        "USER", "REQUESTED", "AGE", "HOST"
    );
    for r in requests {
        println!(
            "{:<20} {:<22} {:<10} {:<16} {}",
            printable(&r.user),
            format_time(r.filed),
            age(now.saturating_sub(r.filed)),
            printable(&r.host),
            printable(&from(&r.service, &r.rhost, &r.tty))
        );
    }
    Ok(())
}

/// `host`: the host role whose logins may set up the new key (`--host`); by default the
/// one the request came through. Only that host is shown the new key, so only it may.
pub fn reset_approve(admin: &Admin, name: &str, host: Option<&str>) -> Result<()> {
    let user = user_name(name)?;
    match admin.round(|db| db.admin_reset_approve(user.as_str(), host))? {
        Approved::Approved { expires, host } => {
            let host = printable(&host);
            admin.audit(
                Level::Notice,
                &format!(
                    "approved the MFA reset of user={user}; new set-up allowed through host \
                     role {host} until {}",
                    format_time(expires)
                ),
            );
            println!(
                "Approved: {user}'s key and recovery codes are deleted. At {user}'s next login \
                 through {host}, before {}, a new QR code is shown to set up; logins through \
                 other hosts are refused until then. Tell {user} which machine that is (to \
                 name another: ivmfa-enroll reset approve {user} --host ROLE).",
                format_time(expires)
            );
            Ok(())
        }
        Approved::Reissued { expires, host } => {
            let host = printable(&host);
            admin.audit(
                Level::Notice,
                &format!(
                    "issued the approved MFA reset of user={user} again; new set-up allowed \
                     through host role {host} until {}",
                    format_time(expires)
                ),
            );
            println!(
                "Issued again: at {user}'s next login through {host}, before {}, a new QR code \
                 is shown to set up; logins through other hosts are refused until then.",
                format_time(expires)
            );
            Ok(())
        }
        Approved::NotAHost(host) => Err(CliError::new(
            Kind::Refused,
            format!(
                "{} is no host role of the fleet database (a role that may log in, a member of \
                 ivmfa_host); nothing was changed",
                printable(&host)
            ),
            "name the host role of the machine the user will log in on: --host ROLE (its \
             db_user in ivmfa.toml)",
        )),
        Approved::NoRequest => Err(no_request(&user)),
    }
}

pub fn reset_deny(admin: &Admin, name: &str, reason: &str) -> Result<()> {
    let user = user_name(name)?;
    let reason = check_reason(reason)?;
    match admin.round(|db| db.admin_reset_deny(user.as_str(), reason))? {
        Denied::Denied { host } => {
            admin.audit(
                Level::Notice,
                &format!("declined the MFA reset of user={user}"),
            );
            println!(
                "Declined. {user} keeps the current enrollment and sees your reason at the next \
                 login through {} (where the request came from).",
                printable(&host)
            );
            Ok(())
        }
        Denied::NoRequest => Err(no_request(&user)),
        Denied::Invalid => Err(CliError::new(
            Kind::Usage,
            "the fleet database refused the reason (1 to 500 characters)",
            "say briefly why, e.g. --reason \"Call the service desk to confirm who you are\"",
        )),
    }
}
