//! The host API of docs/SCHEMA.md, typed: for each function the [`Call`] that makes it and
//! the reading of its one row into ivmfa-core's [`ivmfa_core::fleet_api`] types. A verdict
//! `error`, a verdict this client does not know, or a row of another shape is an
//! [`Error::Answer`]: the login denies.

use ivmfa_core::enrollment::{Algorithm, Secret};
use ivmfa_core::fleet_api::{
    Grace, Judgement, NewKey, ResetFiled, SetupBegun, SetupFinished, Standing, Status,
};
use tokio_postgres::types::FromSql;
use tokio_postgres::Row;
use zeroize::Zeroizing;

use crate::call::{Call, Param};
use crate::error::Error;
use crate::session::describe;

/// What `submit` did with an answer.
#[derive(Debug)]
pub enum Submitted {
    /// Filed (and counted): judge it with [`verify`].
    Pending(i64),
    /// Not filed; this is the answer.
    Done(Judgement),
}

pub(crate) fn before_prompt<'a>(user: &'a str, source: &'a str, take_notice: bool) -> Call<'a> {
    Call::new(
        "before_prompt",
        vec![
            Param::Text(user),
            Param::Text(source),
            Param::Bool(take_notice),
        ],
    )
}

pub(crate) fn standing(row: &Row) -> Result<Standing, Error> {
    const F: &str = "before_prompt";
    let status: String = get(row, F, "status")?;
    let status = match status.as_str() {
        "enrolled" => Status::Enrolled,
        "not_enrolled" => Status::NotEnrolled,
        "ticket" => Status::Ticket,
        "ticket_elsewhere" => Status::TicketElsewhere,
        "ticket_expired" => Status::TicketExpired,
        "invalid_user" => Status::InvalidUser,
        other => return Err(verdict(F, other)),
    };
    let digits: Option<i16> = get(row, F, "digits")?;
    let digits = match (status, digits) {
        (Status::Enrolled, Some(d @ (6 | 8))) => d as u8,
        (Status::Enrolled, _) => {
            return Err(Error::Answer(format!(
                "{F}: an enrolled user's codes have {digits:?} digits"
            )))
        }
        _ => 0,
    };
    Ok(Standing {
        status,
        digits,
        wait: seconds(get(row, F, "wait_seconds")?),
        reset_pending: get::<Option<bool>>(row, F, "reset_pending")?.unwrap_or(false),
        notice: get(row, F, "notice")?,
        inband_enroll: get::<Option<bool>>(row, F, "inband_enroll")?.unwrap_or(false),
        grace: None,
    })
}

/// Whether a login of `user` from `address` through this host role may skip the code, with
/// grace periods of `period` seconds (the database caps it at its `grace_period_max`).
pub(crate) fn grace<'a>(user: &'a str, address: &'a str, period: u64) -> Call<'a> {
    Call::new(
        "grace",
        vec![
            Param::Text(user),
            Param::Text(address),
            Param::Int4(to_int4(period)),
        ],
    )
}

pub(crate) fn granted(row: &Row) -> Result<Grace, Error> {
    const F: &str = "grace";
    let v: String = get(row, F, "verdict")?;
    Ok(match v.as_str() {
        "grace" => Grace::Granted {
            left: seconds(get(row, F, "seconds_left")?),
        },
        "none" => Grace::Lapsed,
        "backing_off" => Grace::BackingOff,
        "reset_pending" => Grace::ResetPending,
        "off" => Grace::Off,
        "not_an_address" => Grace::NotAnAddress,
        "not_enrolled" => Grace::NotEnrolled,
        "invalid_user" => Grace::InvalidUser,
        other => return Err(verdict(F, other)),
    })
}

/// Files an answer; it is counted as a failure once this statement has committed. With a
/// `grace_period` (seconds, at most the fleet's `grace_period_max`), `submit_grace`: a right
/// code then begins a grace period for `source`, if it is an IP address, through this host
/// role.
pub(crate) fn submit<'a>(
    user: &'a str,
    answer: &'a str,
    source: &'a str,
    grace_period: u64,
) -> Call<'a> {
    let mut params = vec![Param::Text(user), Param::Text(answer), Param::Text(source)];
    if grace_period == 0 {
        Call::new("submit", params)
    } else {
        params.push(Param::Int4(to_int4(grace_period)));
        Call::new("submit_grace", params)
    }
}

/// `submit`'s or `submit_grace`'s answer.
pub(crate) fn submitted(function: &str, row: &Row) -> Result<Submitted, Error> {
    let v: String = get(row, function, "verdict")?;
    Ok(Submitted::Done(match v.as_str() {
        "pending" => {
            let attempt: Option<i64> = get(row, function, "attempt")?;
            return attempt
                .map(Submitted::Pending)
                .ok_or_else(|| Error::Answer(format!("{function}: pending without an attempt")));
        }
        "backing_off" => Judgement::BackingOff {
            wait: seconds(get(row, function, "wait_seconds")?),
        },
        "malformed" => Judgement::Malformed,
        // As the file store: a store fault, not a wrong code, so not counted, and
        // denied as unavailable until an administrator resyncs the token.
        "no_counter" => {
            return Err(Error::Answer(format!(
                "{function}: the database keeps no counter for the user's hardware token (its \
                 codes are refused until an administrator resyncs it: admin_resync)"
            )))
        }
        "not_enrolled" => Judgement::Removed,
        "invalid_user" => Judgement::InvalidUser,
        other => return Err(verdict(function, other)),
    }))
}

/// Judges an attempt [`submit`] filed (and that has committed).
pub(crate) fn verify(attempt: i64) -> Call<'static> {
    Call::new("verify", vec![Param::Int8(attempt)])
}

pub(crate) fn judgement(row: &Row) -> Result<Judgement, Error> {
    const F: &str = "verify";
    let v: String = get(row, F, "verdict")?;
    let failures = || -> Result<u32, Error> {
        Ok(get::<Option<i32>>(row, F, "failures")?.unwrap_or(0).max(0) as u32)
    };
    let wait = || -> Result<u64, Error> { Ok(seconds(get(row, F, "wait_seconds")?)) };
    Ok(match v.as_str() {
        "accepted" => Judgement::Accepted,
        "recovered" => Judgement::Recovered {
            left: get::<Option<i32>>(row, F, "recovery_left")?
                .unwrap_or(0)
                .max(0) as u32,
        },
        "wrong" => Judgement::Wrong {
            failures: failures()?,
            wait: wait()?,
        },
        "replayed" => Judgement::Replayed {
            failures: failures()?,
            wait: wait()?,
        },
        "token_used" => Judgement::TokenUsed {
            failures: failures()?,
            wait: wait()?,
        },
        "clock_off" => Judgement::ClockOff {
            offset: get::<Option<i64>>(row, F, "clock_offset_seconds")?.unwrap_or(0),
            failures: failures()?,
            wait: wait()?,
        },
        "removed" => Judgement::Removed,
        // Answers a host inside the deadline never causes: the attempt outlived its
        // lifetime, vanished, or was judged inside its own transaction.
        other => return Err(verdict(F, other)),
    })
}

pub(crate) fn request_reset<'a>(
    user: &'a str,
    service: &'a str,
    rhost: &'a str,
    tty: &'a str,
) -> Call<'a> {
    Call::new(
        "request_reset",
        vec![
            Param::Text(user),
            Param::Text(service),
            Param::Text(rhost),
            Param::Text(tty),
        ],
    )
}

pub(crate) fn reset_filed(row: &Row) -> Result<ResetFiled, Error> {
    const F: &str = "request_reset";
    let v: String = get(row, F, "verdict")?;
    Ok(match v.as_str() {
        "filed" => ResetFiled::Filed,
        "pending" => ResetFiled::Pending,
        "not_enrolled" => ResetFiled::NotEnrolled,
        "invalid_user" => ResetFiled::InvalidUser,
        other => return Err(verdict(F, other)),
    })
}

pub(crate) fn setup_begin(user: &str) -> Call<'_> {
    Call::new("setup_begin", vec![Param::Text(user)])
}

pub(crate) fn setup_begun(row: &Row) -> Result<SetupBegun, Error> {
    const F: &str = "setup_begin";
    let v: String = get(row, F, "verdict")?;
    Ok(match v.as_str() {
        "ok" => SetupBegun::Ready(new_key(row, F)?),
        "enrolled" => SetupBegun::Enrolled,
        "ticket_expired" => SetupBegun::TicketExpired,
        "not_allowed" => SetupBegun::NotAllowed,
        "invalid_user" => SetupBegun::InvalidUser,
        other => return Err(verdict(F, other)),
    })
}

pub(crate) fn setup_finish<'a>(user: &'a str, answer: &'a str) -> Call<'a> {
    Call::new("setup_finish", vec![Param::Text(user), Param::Text(answer)])
}

pub(crate) fn setup_finished(row: &Row) -> Result<SetupFinished, Error> {
    const F: &str = "setup_finish";
    let v: String = get(row, F, "verdict")?;
    Ok(match v.as_str() {
        "enrolled" => {
            let codes: Option<Vec<String>> = get(row, F, "recovery_codes")?;
            SetupFinished::Enrolled {
                recovery_codes: codes
                    .unwrap_or_default()
                    .into_iter()
                    .map(Zeroizing::new)
                    .collect(),
            }
        }
        "wrong" => SetupFinished::Wrong {
            tries_left: get::<Option<i32>>(row, F, "tries_left")?
                .unwrap_or(0)
                .max(0) as u32,
        },
        "failed" => SetupFinished::Failed,
        "expired" => SetupFinished::Expired,
        "no_setup" => SetupFinished::NoSetup,
        "raced" => SetupFinished::Raced,
        "ticket_expired" => SetupFinished::TicketExpired,
        "not_allowed" => SetupFinished::NotAllowed,
        other => return Err(verdict(F, other)),
    })
}

/// A key made in the database and returned once (`setup_begin`, `admin_enroll`): its
/// base32, digits, period and algorithm.
pub(crate) fn new_key(row: &Row, function: &str) -> Result<NewKey, Error> {
    let key: Option<&str> = get(row, function, "secret_base32")?;
    let key = Zeroizing::new(key.unwrap_or("").to_owned());
    let secret = Secret::from_base32(&key)
        .map_err(|_| Error::Answer(format!("{function}: the new key is not usable")))?;
    let digits: Option<i16> = get(row, function, "digits")?;
    let period: Option<i32> = get(row, function, "period")?;
    let algorithm: Option<String> = get(row, function, "algorithm")?;
    let algorithm = match algorithm.as_deref() {
        Some("SHA1") => Algorithm::SHA1,
        Some("SHA256") => Algorithm::SHA256,
        Some("SHA512") => Algorithm::SHA512,
        other => {
            return Err(Error::Answer(format!(
                "{function}: unknown algorithm {other:?}"
            )))
        }
    };
    match (digits, period) {
        (Some(d @ (6 | 8)), Some(p @ 1..=300)) => Ok(NewKey {
            secret,
            digits: d as u8,
            period: p as u64,
            algorithm,
        }),
        _ => Err(Error::Answer(format!(
            "{function}: a key of {digits:?} digits and period {period:?}"
        ))),
    }
}

/// A column by name, as type `T`, or why not.
pub(crate) fn get<'a, T: FromSql<'a>>(
    row: &'a Row,
    function: &str,
    column: &str,
) -> Result<T, Error> {
    row.try_get(column)
        .map_err(|e| Error::Answer(format!("{function}: column {column}: {}", describe(&e))))
}

/// A length in seconds as the functions take it; the database caps it far below.
fn to_int4(seconds: u64) -> i32 {
    i32::try_from(seconds).unwrap_or(i32::MAX)
}

pub(crate) fn seconds(value: Option<i64>) -> u64 {
    value.unwrap_or(0).max(0) as u64
}

pub(crate) fn verdict(function: &str, verdict: &str) -> Error {
    let shown: String = verdict.chars().take(40).collect();
    if verdict == "error" {
        Error::Answer(format!(
            "{function} answered error (its SQLSTATE is in the database's audit table)"
        ))
    } else {
        Error::Answer(format!("{function} answered the unknown verdict {shown:?}"))
    }
}
