//! `reset list|approve|deny`: the administrators' side of flow 3 (lost device).

use ivmfa_core::logtext::printable;
use ivmfa_core::reset::{Notice, Ticket, FORMAT_VERSION, MAX_REASON_LEN};
use ivmfa_core::username::UserName;
use ivmfa_sys::Level;

use crate::context::{format_time, user_name, Context};
use crate::error::{CliError, Kind, Result};

pub fn list(ctx: &Context) -> Result<()> {
    let requests = ctx.store.reset_requests()?;
    if requests.is_empty() {
        println!("No reset requests are pending.");
        return Ok(());
    }
    println!("{:<20} {:<22} {:<10} FROM", "USER", "REQUESTED", "AGE");
    for r in requests {
        println!(
            "{:<20} {:<22} {:<10} {}",
            printable(&r.user),
            format_time(r.time),
            age(ctx.now.saturating_sub(r.time)),
            printable(&from(&r.service, &r.rhost, &r.tty))
        );
    }
    Ok(())
}

/// Where a request came from: `sshd from 10.1.2.3`, `login on tty1`.
pub fn from(service: &str, rhost: &str, tty: &str) -> String {
    match (rhost, tty) {
        ("", "") => service.to_owned(),
        ("", tty) => format!("{service} on {tty}"),
        (host, _) => format!("{service} from {host}"),
    }
}

/// "3 h", "2 d": how long a request has waited.
pub fn age(seconds: u64) -> String {
    match seconds {
        s if s < 3600 => format!("{} min", s / 60),
        s if s < 2 * 86_400 => format!("{} h", s / 3600),
        s => format!("{} d", s / 86_400),
    }
}

pub fn no_request(user: &UserName) -> CliError {
    CliError::new(
        Kind::Refused,
        format!("no reset request from {user} is pending"),
        "see the pending requests with: ivmfa-enroll reset list",
    )
}

pub fn approve(ctx: &Context, name: &str) -> Result<()> {
    let user = user_name(name)?;
    // Checked before locking (which would create a directory for a mistyped name) and again
    // under the lock.
    if ctx.store.reset_request(&user)?.is_none() {
        return Err(no_request(&user));
    }
    let lock = ctx.store.lock(&user)?;
    if ctx.store.reset_request(&user)?.is_none() {
        return Err(no_request(&user));
    }
    let archived = ctx.store.archive_enrollment(&lock, &user, ctx.now)?;
    let ticket = Ticket {
        version: FORMAT_VERSION,
        issued: ctx.now,
        expires: ctx.now + ctx.config.ticket_lifetime,
    };
    ctx.store.save_ticket(&lock, &ticket)?;
    ctx.store.close_reset_request(&lock, &user)?;
    drop(lock);
    ctx.audit(
        Level::Notice,
        &format!(
            "approved the MFA reset of user={user}; new set-up allowed until {}",
            format_time(ticket.expires)
        ),
    );
    if let Some(path) = archived {
        println!("{user}'s old enrollment is archived as {}.", path.display());
    }
    println!(
        "Approved. At {user}'s next login, before {}, a new QR code is shown to set up.",
        format_time(ticket.expires)
    );
    Ok(())
}

/// The reason of a denial, trimmed: one line the user will read at the next login.
pub fn check_reason(reason: &str) -> Result<&str> {
    let reason = reason.trim();
    if reason.is_empty() || reason.len() > MAX_REASON_LEN || reason.chars().any(char::is_control) {
        return Err(CliError::new(
            Kind::Usage,
            format!("the reason must be one line of 1 to {MAX_REASON_LEN} characters"),
            "say briefly why, e.g. --reason \"Call the service desk to confirm who you are\"",
        ));
    }
    Ok(reason)
}

pub fn deny(ctx: &Context, name: &str, reason: &str) -> Result<()> {
    let user = user_name(name)?;
    let reason = check_reason(reason)?;
    if ctx.store.reset_request(&user)?.is_none() {
        return Err(no_request(&user));
    }
    let lock = ctx.store.lock(&user)?;
    if !ctx.store.close_reset_request(&lock, &user)? {
        return Err(no_request(&user));
    }
    ctx.store.save_notice(
        &lock,
        &Notice {
            version: FORMAT_VERSION,
            time: ctx.now,
            reason: reason.to_owned(),
        },
    )?;
    drop(lock);
    ctx.audit(
        Level::Notice,
        &format!("declined the MFA reset of user={user}"),
    );
    println!(
        "Declined. {user} keeps the current enrollment and sees your reason at the next login."
    );
    Ok(())
}
