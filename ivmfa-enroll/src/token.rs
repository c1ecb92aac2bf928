//! Hardware tokens with a counter (HOTP): `enroll --hotp` and `resync`. A token has no screen
//! to scan and no clock; its key comes with it, and the server follows its counter (kept in
//! the state, under the user's lock).

use ivmfa_core::ceremony::{Outcome, TRIES};
use ivmfa_core::enrollment::{Enrollment, Kind as EnrollmentKind, Secret};
use ivmfa_core::hotp::{self, Check, RESYNC_RANGE};
use ivmfa_core::input::{self, Answer, Code};
use ivmfa_core::username::UserName;
use ivmfa_core::{random, recovery};
use ivmfa_sys::Level;
use zeroize::Zeroizing;

use crate::cli::EnrollArgs;
use crate::context::{existing_user, Context};
use crate::enroll::{print_recovery_codes, read_secret_file, save, shown_source, Device};
use crate::error::{CliError, Kind, Result};

/// `enroll --hotp`: the token's key, one code from it unless `--no-confirm`, recovery codes.
pub fn enroll(ctx: &Context, args: &EnrollArgs, user: &UserName, uid: u32) -> Result<()> {
    let enrollment = Enrollment {
        uid: Some(uid),
        ..Enrollment::hotp(key(args)?, ctx.now)
    };
    let next = if args.no_confirm {
        0
    } else {
        confirm(&enrollment, ctx.config.hotp_window)?
    };
    let (codes, set) = recovery::issue(args.recovery_codes, ctx.now, random::fill)?;
    let enrollment = Enrollment {
        recovery: set,
        ..enrollment
    };
    let archived = save(ctx, user, &enrollment, next, args.force)?;
    ctx.audit(
        Level::Notice,
        &format!(
            "enrolled user={user} with a hardware token (HOTP){}",
            if archived {
                ", replacing the previous enrollment"
            } else {
                ""
            }
        ),
    );
    println!(
        "\n{user} is enrolled with a hardware token. From now on, logins ask for a code from it\n\
         (one press of its button)."
    );
    print_recovery_codes(&codes);
    Ok(())
}

/// The token's key, from `--secret-file` or `--secret`, in base32 or (`--hex`) hex.
pub fn key(args: &EnrollArgs) -> Result<Secret> {
    let (text, from) =
        match (&args.secret, &args.secret_file) {
            (Some(text), _) => (Zeroizing::new(text.clone()), "--secret".to_owned()),
            (None, Some(path)) => (read_secret_file(path)?, shown_source(path)),
            (None, None) => return Err(CliError::new(
                Kind::Usage,
                "--hotp needs the token's key: it comes with the token, or was programmed into it",
                "give it with --secret-file FILE (- for standard input), in base32, or in hex \
                 with --hex",
            )),
        };
    let form = if args.hex {
        "hex"
    } else {
        "base32, or in hex with --hex"
    };
    if text.is_empty() {
        return Err(CliError::new(
            Kind::Usage,
            format!("no key in {from}"),
            format!("give the key as its first line, in {form}"),
        ));
    }
    let decoded = if args.hex {
        Secret::from_hex(&text)
    } else {
        Secret::from_base32(&text)
    };
    decoded.map_err(|e| {
        CliError::new(
            Kind::Usage,
            format!("the key in {from} is not usable: {e}"),
            if args.hex {
                "give the token's key in hex (at least 128 bits)"
            } else {
                "give the token's key in base32, or in hex with --hex (at least 128 bits)"
            },
        )
    })
}

/// Asks for one code from the token until one is right, looking `window` presses past its
/// first; returns the counter it expects next. Gives up after three tries, having written
/// nothing, and never says what the right code was.
fn confirm(e: &Enrollment, window: u8) -> Result<u64> {
    let mut wrong = 0;
    let mut next = 0;
    crate::enroll::confirm(Device::Token, e.digits, |typed| {
        if let Some(code) = parse_code(e, typed) {
            if let Check::Accepted { counter } = hotp::verify(e, &code, 0, window)? {
                next = counter.saturating_add(1);
                return Ok(Outcome::Confirmed);
            }
        }
        wrong += 1;
        Ok(match TRIES - wrong {
            0 => Outcome::Failed,
            left => Outcome::Wrong {
                left,
                clock_off: None,
            },
        })
    })?;
    Ok(next)
}

/// A code of the enrollment's length, or `None`.
pub fn parse_code(e: &Enrollment, text: &str) -> Option<Code> {
    let accepts = input::Accepts {
        digits: e.digits,
        reset: None,
        invert: false,
        recovery: false,
    };
    match input::parse(text.trim_end_matches(['\n', '\r']), accepts) {
        Answer::Code(code) => Some(code),
        _ => None,
    }
}

/// `resync USER CODE1 CODE2`: finds where the token stands from two consecutive codes and
/// moves the counter past them, under the user's lock.
pub fn resync(ctx: &Context, name: &str, first: &str, second: &str) -> Result<()> {
    let (user, _) = existing_user(name)?;
    let not_enrolled = || {
        CliError::new(
            Kind::Refused,
            format!("{user} is not enrolled"),
            format!("enroll the token first: ivmfa-enroll enroll {user} --hotp --secret-file -"),
        )
    };
    // Checked before locking, which would create a directory for a mistyped name.
    if ctx.store.load_enrollment(&user)?.is_none() {
        return Err(not_enrolled());
    }
    let lock = ctx.store.lock(&user)?;
    let e = ctx
        .store
        .reload_enrollment(&lock)?
        .ok_or_else(not_enrolled)?;
    if e.kind != EnrollmentKind::Hotp {
        return Err(CliError::new(
            Kind::Refused,
            format!("{user}'s codes are time-based (an app), and have no counter to set"),
            "resync is for hardware tokens (HOTP); an app whose codes are refused needs its \
             phone's clock set to automatic",
        ));
    }
    let code = |text: &str, which: &str| {
        parse_code(&e, text).ok_or_else(|| {
            CliError::new(
                Kind::Usage,
                format!("{which} is not a {}-digit code", e.digits),
                "give the codes of two presses of the token's button, in order",
            )
        })
    };
    let (first, second) = (code(first, "CODE1")?, code(second, "CODE2")?);
    let mut state = ctx.store.load_state(&lock)?.state;
    let before = state.hotp_next(&e.secret);
    let from = before.unwrap_or(0);
    let Some(counter) = hotp::resync(&e, &first, &second, from)? else {
        return Err(CliError::new(
            Kind::Refused,
            format!(
                "the two codes are not consecutive codes of {user}'s token within {RESYNC_RANGE} \
                 presses after counter {from}; nothing was changed"
            ),
            "press the button twice more and give both new codes, in order; a token pressed \
             more often than that, or holding another key, needs enroll --hotp --force",
        ));
    };
    let next = counter.saturating_add(1);
    state.set_hotp_next(&e.secret, next);
    ctx.store.save_state(&lock, &state)?;
    drop(lock);
    let was = before.map_or("none".to_owned(), |n| n.to_string());
    ctx.audit(
        Level::Notice,
        &format!("resynchronised the hardware token of user={user}: counter {was} -> {next}"),
    );
    println!(
        "{user}'s token is in step again: the server now expects counter {next} (it expected \
         {was}). The next press logs in."
    );
    Ok(())
}
