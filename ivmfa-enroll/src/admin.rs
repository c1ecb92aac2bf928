//! `status`, `remove` and `recovery-codes`: the administrator's view of the store.

use ivmfa_core::enrollment::{Enrollment, Kind as EnrollmentKind};
use ivmfa_core::logtext::printable;
use ivmfa_core::state::State;
use ivmfa_core::username::UserName;
use ivmfa_sys::Level;

use crate::context::{existing_user, format_time, user_name, Context};
use crate::enroll::print_recovery_codes;
use crate::error::{CliError, Kind, Result};

pub fn status(ctx: &Context, user: Option<&str>) -> Result<()> {
    match user {
        Some(name) => {
            let user = user_name(name)?;
            for line in describe(ctx, &user)? {
                println!("{line}");
            }
            // A typo must not pass for "not enrolled"; a deleted account's leftovers are
            // shown above, and worth the same attention.
            if lookup(&user)?.is_none() {
                return Err(CliError::new(
                    Kind::Failed,
                    format!("there is no user {user} in the user database"),
                    "check the spelling (getent passwd NAME); for a deleted account, \
                     ivmfa-enroll remove NAME clears what is left in the store",
                ));
            }
        }
        None => {
            let users = ctx.store.users()?;
            if users.is_empty() {
                println!(
                    "No users are enrolled (store {}).",
                    ctx.store.root().display()
                );
            }
            // One damaged user must not hide the others.
            let mut broken = 0;
            for user in users {
                match describe(ctx, &user) {
                    Ok(lines) => println!("{}", lines.join("; ")),
                    Err(e) => {
                        broken += 1;
                        println!("{user}: cannot be read: {}", e.what);
                    }
                }
            }
            if broken > 0 {
                return Err(CliError::new(
                    Kind::Failed,
                    if broken == 1 {
                        "1 user could not be read".to_owned()
                    } else {
                        format!("{broken} users could not be read")
                    },
                    "ivmfa-enroll check says what to fix",
                ));
            }
        }
    }
    Ok(())
}

/// The user database's entry for `user`, if any.
fn lookup(user: &UserName) -> Result<Option<ivmfa_sys::Passwd>> {
    ivmfa_sys::passwd_by_name(user.as_str()).map_err(|e| {
        CliError::new(
            Kind::Failed,
            format!("cannot read the user database: {e}"),
            "check NSS (getent passwd)",
        )
    })
}

/// One user's status, one fact per line.
fn describe(ctx: &Context, user: &UserName) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    let enrollment = ctx.store.load_enrollment(user)?;
    let account = lookup(user)?;
    match &enrollment {
        Some(e) => lines.push(format!("{user}: enrolled since {}", format_time(e.created))),
        None => lines.push(format!("{user}: not enrolled")),
    }
    match (&enrollment, &account) {
        (_, None) => lines.push("account: no such user in the user database".into()),
        (Some(e), Some(pw)) if !e.belongs_to(pw.uid) => lines.push(format!(
            "problem: enrolled for uid {}, but {user} is now uid {} (the name was given to \
             someone else?); logins treat it as not enrolled: ivmfa-enroll remove {user}, \
             then enroll the new person",
            e.uid.unwrap_or_default(),
            pw.uid
        )),
        (Some(e), Some(pw)) if e.uid.is_none() => lines.push(format!(
            "uid: {} (not recorded in the enrollment, which is older than this check)",
            pw.uid
        )),
        (_, Some(pw)) => lines.push(format!("uid: {}", pw.uid)),
    }
    if let Some(r) = ctx.store.reset_request(user)? {
        lines.push(format!(
            "reset request: pending since {} (ivmfa-enroll reset list)",
            format_time(r.time)
        ));
    }
    if let Some(t) = ctx.store.ticket(user)? {
        lines.push(if t.is_valid_at(ctx.now) {
            format!(
                "reset approved: sets up a new code at the next login, before {}",
                format_time(t.expires)
            )
        } else {
            format!(
                "reset approved, but the set-up time ran out at {}",
                format_time(t.expires)
            )
        });
    }
    let Some(enrollment) = enrollment else {
        return Ok(lines);
    };
    // Read without the lock: status changes nothing, so it need not wait for logins.
    let loaded = ctx.store.peek_state(user)?;
    let state = loaded.state;
    // The state knows of codes used while the enrollment could not be rewritten.
    lines.insert(
        1,
        format!(
            "recovery codes left: {}",
            state.recovery_left(&enrollment.recovery)
        ),
    );
    lines.insert(1, codes(&enrollment, &state, user));
    if loaded.damaged_slot {
        lines.push(
            "state: one slot of the state file is damaged (a write cut short by a crash, or \
             disk damage); the other is in use, and the next code checked rewrites it"
                .into(),
        );
    }
    let limit = &ctx.config.rate_limit;
    let mut held = false;
    for f in &state.failures {
        let source = if f.source.is_empty() {
            "local logins"
        } else {
            &f.source
        };
        let wait = state.wait_for(&f.source, ctx.now, limit);
        held |= wait.is_some();
        lines.push(match wait {
            Some(w) => format!(
                "back-off: {} for {} more (after {} failures)",
                printable(source),
                ivmfa_core::messages::duration(w),
                f.count
            ),
            None => format!("failures: {} from {}", f.count, printable(source)),
        });
    }
    if !held {
        lines.push("back-off: none".into());
    }
    Ok(lines)
}

/// What kind of codes the user has; for a token, the counter it is expected to show next.
fn codes(e: &Enrollment, state: &State, user: &UserName) -> String {
    match (e.kind, state.hotp_next(&e.secret)) {
        (EnrollmentKind::Totp, _) => format!(
            "codes: time-based (an app), {} digits every {} seconds",
            e.digits, e.period
        ),
        (EnrollmentKind::Hotp, Some(next)) => format!(
            "codes: hardware token (HOTP), {} digits, next counter {next}",
            e.digits
        ),
        (EnrollmentKind::Hotp, None) => format!(
            "codes: hardware token (HOTP), {} digits; problem: the state keeps no counter for \
             it, so its codes are refused: ivmfa-enroll resync {user} CODE1 CODE2",
            e.digits
        ),
    }
}

pub fn remove(ctx: &Context, name: &str) -> Result<()> {
    // A user deleted from passwd may still have an enrollment: only the name must be valid.
    let user = user_name(name)?;
    let not_enrolled = || {
        CliError::new(
            Kind::Refused,
            format!("{user} is not enrolled"),
            "ivmfa-enroll status lists who is enrolled",
        )
    };
    // Checked before locking, which would create a directory for a mistyped name.
    if ctx.store.load_enrollment(&user)?.is_none() {
        return Err(not_enrolled());
    }
    let lock = ctx.store.lock(&user)?;
    let Some(archived) = ctx.store.archive_enrollment(&lock, &user, ctx.now)? else {
        return Err(not_enrolled());
    };
    // A leftover approval must not let the next login enroll a device.
    ctx.store.remove_ticket(&lock)?;
    drop(lock);
    ctx.audit(
        Level::Notice,
        &format!("removed the enrollment of user={user}"),
    );
    println!(
        "Removed {user}'s enrollment; it is archived as {}.",
        archived.display()
    );
    Ok(())
}

pub fn recovery_codes(ctx: &Context, name: &str, count: usize) -> Result<()> {
    let (user, _) = existing_user(name)?;
    let (codes, set) = ivmfa_core::recovery::issue(count, ctx.now, ivmfa_core::random::fill)?;
    let lock = ctx.store.lock(&user)?;
    let Some(mut e) = ctx.store.reload_enrollment(&lock)? else {
        return Err(CliError::new(
            Kind::Refused,
            format!("{user} is not enrolled"),
            format!("enroll first: ivmfa-enroll enroll {user}"),
        ));
    };
    e.recovery = set;
    ctx.store.save_enrollment(&lock, &e)?;
    drop(lock);
    ctx.audit(
        Level::Notice,
        &format!("issued {count} new recovery codes for user={user}"),
    );
    println!("New recovery codes for {user}; the previous ones no longer work.");
    print_recovery_codes(&codes);
    Ok(())
}
