//! The host API of docs/SCHEMA.md, typed: each function one statement
//! `SELECT * FROM ivmfa_api.f(...)` (never `SELECT (f(...)).*`, which runs `f` once per
//! column), its answer read into ivmfa-core's [`ivmfa_core::fleet_api`] types. A verdict
//! `error`, a verdict this client does not know, or a row of another shape is an
//! [`Error::Answer`]: the login denies.

use ivmfa_core::enrollment::{Algorithm, Secret};
use ivmfa_core::fleet_api::{
    Grace, Judgement, NewKey, ResetFiled, SetupBegun, SetupFinished, Standing, Status,
};
use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::Row;
use zeroize::Zeroizing;

use crate::error::Error;
use crate::session::{describe, Session};

/// What `submit` did with an answer.
#[derive(Debug)]
pub enum Submitted {
    /// Filed (and counted): judge it with [`Session::verify`].
    Pending(i64),
    /// Not filed; this is the answer.
    Done(Judgement),
}

impl Session {
    /// The one row a host function answers.
    pub(crate) fn one_row(
        &mut self,
        function: &str,
        sql: &str,
        params: &[(&(dyn tokio_postgres::types::ToSql + Sync), Type)],
    ) -> Result<Row, Error> {
        let mut rows = self.query(sql, params)?;
        if rows.len() != 1 {
            return Err(Error::Answer(format!(
                "{function} answered {} rows instead of one",
                rows.len()
            )));
        }
        Ok(rows.remove(0))
    }

    pub fn before_prompt(
        &mut self,
        user: &str,
        source: &str,
        take_notice: bool,
    ) -> Result<Standing, Error> {
        const F: &str = "before_prompt";
        let row = self.one_row(
            F,
            "SELECT * FROM ivmfa_api.before_prompt($1, $2, $3)",
            &[
                (&user, Type::TEXT),
                (&source, Type::TEXT),
                (&take_notice, Type::BOOL),
            ],
        )?;
        let status: String = get(&row, F, "status")?;
        let status = match status.as_str() {
            "enrolled" => Status::Enrolled,
            "not_enrolled" => Status::NotEnrolled,
            "ticket" => Status::Ticket,
            "ticket_elsewhere" => Status::TicketElsewhere,
            "ticket_expired" => Status::TicketExpired,
            "invalid_user" => Status::InvalidUser,
            other => return Err(verdict(F, other)),
        };
        let digits: Option<i16> = get(&row, F, "digits")?;
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
            wait: seconds(get(&row, F, "wait_seconds")?),
            reset_pending: get::<Option<bool>>(&row, F, "reset_pending")?.unwrap_or(false),
            notice: get(&row, F, "notice")?,
            inband_enroll: get::<Option<bool>>(&row, F, "inband_enroll")?.unwrap_or(false),
            grace: None,
        })
    }

    /// Whether a login of `user` from `address` through this host role may skip the code,
    /// with grace periods of `period` seconds (the database caps it at its
    /// `grace_period_max`).
    pub fn grace(&mut self, user: &str, address: &str, period: u64) -> Result<Grace, Error> {
        const F: &str = "grace";
        let period = to_int4(period);
        let row = self.one_row(
            F,
            "SELECT * FROM ivmfa_api.grace($1, $2, $3)",
            &[
                (&user, Type::TEXT),
                (&address, Type::TEXT),
                (&period, Type::INT4),
            ],
        )?;
        let v: String = get(&row, F, "verdict")?;
        Ok(match v.as_str() {
            "grace" => Grace::Granted {
                left: seconds(get(&row, F, "seconds_left")?),
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

    /// Files an answer; it is counted as a failure once this statement has committed.
    pub fn submit(&mut self, user: &str, answer: &str, source: &str) -> Result<Submitted, Error> {
        const F: &str = "submit";
        let row = self.one_row(
            F,
            "SELECT * FROM ivmfa_api.submit($1, $2, $3)",
            &[
                (&user, Type::TEXT),
                (&answer, Type::TEXT),
                (&source, Type::TEXT),
            ],
        )?;
        submitted(F, &row)
    }

    /// [`Session::submit`], for a login that may earn a grace period: a right code then
    /// begins one of `period` seconds (at most the fleet's `grace_period_max`) for `source`,
    /// if it is an IP address, through this host role.
    pub fn submit_grace(
        &mut self,
        user: &str,
        answer: &str,
        source: &str,
        period: u64,
    ) -> Result<Submitted, Error> {
        const F: &str = "submit_grace";
        let period = to_int4(period);
        let row = self.one_row(
            F,
            "SELECT * FROM ivmfa_api.submit_grace($1, $2, $3, $4)",
            &[
                (&user, Type::TEXT),
                (&answer, Type::TEXT),
                (&source, Type::TEXT),
                (&period, Type::INT4),
            ],
        )?;
        submitted(F, &row)
    }

    /// Judges an attempt [`Session::submit`] filed (and that has committed).
    pub fn verify(&mut self, attempt: i64) -> Result<Judgement, Error> {
        const F: &str = "verify";
        let row = self.one_row(
            F,
            "SELECT * FROM ivmfa_api.verify($1)",
            &[(&attempt, Type::INT8)],
        )?;
        let v: String = get(&row, F, "verdict")?;
        let failures = || -> Result<u32, Error> {
            Ok(get::<Option<i32>>(&row, F, "failures")?.unwrap_or(0).max(0) as u32)
        };
        let wait = || -> Result<u64, Error> { Ok(seconds(get(&row, F, "wait_seconds")?)) };
        Ok(match v.as_str() {
            "accepted" => Judgement::Accepted,
            "recovered" => Judgement::Recovered {
                left: get::<Option<i32>>(&row, F, "recovery_left")?
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
                offset: get::<Option<i64>>(&row, F, "clock_offset_seconds")?.unwrap_or(0),
                failures: failures()?,
                wait: wait()?,
            },
            "removed" => Judgement::Removed,
            // Answers a host inside the deadline never causes: the attempt outlived its
            // lifetime, vanished, or was judged inside its own transaction.
            other => return Err(verdict(F, other)),
        })
    }

    pub fn request_reset(
        &mut self,
        user: &str,
        service: &str,
        rhost: &str,
        tty: &str,
    ) -> Result<ResetFiled, Error> {
        const F: &str = "request_reset";
        let row = self.one_row(
            F,
            "SELECT * FROM ivmfa_api.request_reset($1, $2, $3, $4)",
            &[
                (&user, Type::TEXT),
                (&service, Type::TEXT),
                (&rhost, Type::TEXT),
                (&tty, Type::TEXT),
            ],
        )?;
        let v: String = get(&row, F, "verdict")?;
        Ok(match v.as_str() {
            "filed" => ResetFiled::Filed,
            "pending" => ResetFiled::Pending,
            "not_enrolled" => ResetFiled::NotEnrolled,
            "invalid_user" => ResetFiled::InvalidUser,
            other => return Err(verdict(F, other)),
        })
    }

    pub fn setup_begin(&mut self, user: &str) -> Result<SetupBegun, Error> {
        const F: &str = "setup_begin";
        let row = self.one_row(
            F,
            "SELECT * FROM ivmfa_api.setup_begin($1)",
            &[(&user, Type::TEXT)],
        )?;
        let v: String = get(&row, F, "verdict")?;
        Ok(match v.as_str() {
            "ok" => SetupBegun::Ready(new_key(&row, F)?),
            "enrolled" => SetupBegun::Enrolled,
            "ticket_expired" => SetupBegun::TicketExpired,
            "not_allowed" => SetupBegun::NotAllowed,
            "invalid_user" => SetupBegun::InvalidUser,
            other => return Err(verdict(F, other)),
        })
    }

    pub fn setup_finish(&mut self, user: &str, answer: &str) -> Result<SetupFinished, Error> {
        const F: &str = "setup_finish";
        let row = self.one_row(
            F,
            "SELECT * FROM ivmfa_api.setup_finish($1, $2)",
            &[(&user, Type::TEXT), (&answer, Type::TEXT)],
        )?;
        let v: String = get(&row, F, "verdict")?;
        Ok(match v.as_str() {
            "enrolled" => {
                let codes: Option<Vec<String>> = get(&row, F, "recovery_codes")?;
                SetupFinished::Enrolled {
                    recovery_codes: codes
                        .unwrap_or_default()
                        .into_iter()
                        .map(Zeroizing::new)
                        .collect(),
                }
            }
            "wrong" => SetupFinished::Wrong {
                tries_left: get::<Option<i32>>(&row, F, "tries_left")?
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

/// `submit`'s or `submit_grace`'s answer.
fn submitted(function: &str, row: &Row) -> Result<Submitted, Error> {
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
