//! The administrators' API of docs/SCHEMA.md, typed, as `ivmfa-enroll` calls it: each
//! function one statement `SELECT * FROM ivmfa_api.f(...)`, autocommitted, its answer read
//! into the types below. A verdict `error` or one this client does not know is an
//! [`Error::Answer`], as on the host side.
//!
//! Keys go to the database only where an administrator brings one (`admin_enroll_key`,
//! `admin_import`), as a parameter; a key made in the database comes back once, from
//! `admin_enroll`. Recovery codes come back once, where they are made.

use ivmfa_core::fleet_api::NewKey;
use tokio_postgres::types::{ToSql, Type};
use zeroize::Zeroizing;

use crate::error::Error;
use crate::host_api::{get, new_key, seconds, verdict};
use crate::session::Session;

/// `admin_enroll`: the new key, to be shown once, or why none was made.
#[derive(Debug)]
pub enum EnrollBegun {
    Ready(NewKey),
    /// Enrolled already, and no replacing asked for.
    Exists,
    Invalid,
    InvalidUser,
}

/// `admin_enroll_key`: the administrator's key waits for its confirming code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyPending {
    Ready,
    Exists,
    Invalid,
    InvalidUser,
}

/// `admin_enroll_confirm` and `admin_enroll_unconfirmed`.
#[derive(Debug)]
pub enum Confirmed {
    /// The key is installed; the recovery codes, shown once.
    Enrolled(Vec<Zeroizing<String>>),
    /// Not right; `clock_offset`: right for a time that many seconds away (positive: the
    /// phone is ahead).
    Wrong {
        tries_left: u32,
        clock_offset: Option<i64>,
    },
    /// The third wrong code: nothing was saved.
    Failed,
    /// The enrollment waited longer than the fleet's `setup_lifetime_seconds`.
    Expired,
    /// Enrolled meanwhile, and the enrollment was not to replace it.
    Exists,
    /// No enrollment begun by this role is waiting for the user.
    NoEnrollment,
    Invalid,
    InvalidUser,
}

/// `admin_status`: one user as the database knows them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserStatus {
    pub enrolled: bool,
    pub enrolled_at: Option<u64>,
    pub recovery_left: u32,
    pub reset_pending: bool,
    pub ticket_expires: Option<u64>,
    /// Consecutive failures of the user, from every source.
    pub failures: u32,
    /// The back-off in force for the user as a whole.
    pub wait: u64,
    pub last_step: u64,
    /// `totp` or `hotp`, when enrolled.
    pub kind: Option<String>,
    /// The counter a token's next code is expected for (none kept: its codes are refused).
    pub token_counter: Option<u64>,
    /// The host role an approved reset is for: only a login through it sets up a new key.
    pub ticket_host: Option<String>,
    /// The host role a pending request came through.
    pub reset_host: Option<String>,
}

/// One pending lost-device request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingReset {
    pub user: String,
    /// Unix time it was filed.
    pub filed: u64,
    pub service: String,
    pub rhost: String,
    pub tty: String,
    /// The host role that filed it.
    pub host: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removed {
    Removed,
    NotEnrolled,
}

/// `admin_reset_approve`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Approved {
    /// A ticket until `expires` (unix time) for a login through the host role `host`.
    Approved { expires: u64, host: String },
    /// No request was pending, but the user's ticket was: issued again, for `host`, until
    /// `expires`.
    Reissued { expires: u64, host: String },
    /// `host` is no host role that may log in; nothing was changed.
    NotAHost(String),
    /// No request, no ticket.
    NoRequest,
}

/// `admin_reset_deny`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Denied {
    /// The reason waits for a login through the host role the request came through.
    Denied {
        host: String,
    },
    NoRequest,
    /// The reason is empty or longer than 500 characters.
    Invalid,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resynced {
    Resynced {
        before: Option<u64>,
        after: u64,
    },
    /// No two consecutive codes within reach of `counter`.
    NotFound {
        counter: Option<u64>,
    },
    NotToken,
    Malformed,
    NotEnrolled,
    InvalidUser,
}

/// One user of a file store, as `admin_import` takes it (docs/SCHEMA.md, `db migrate`).
/// Its `Debug` leaves the key and the hashes out.
pub struct Import<'a> {
    pub user: &'a str,
    /// `totp` or `hotp`.
    pub kind: &'a str,
    pub key: &'a [u8],
    pub digits: i32,
    /// An app's seconds per step; `None` for a token.
    pub period: Option<i32>,
    pub algorithm: &'a str,
    pub window: Option<i32>,
    pub enrolled: i64,
    pub recovery_salt: Option<Vec<u8>>,
    /// By index; `None` where the store blanked a used code.
    pub recovery_hashes: Vec<Option<Vec<u8>>>,
    pub recovery_issued: i64,
    pub recovery_used: Vec<i32>,
    pub last_step: i64,
    pub refused: Vec<i64>,
    pub token_next: Option<i64>,
    pub total_failures: i32,
    pub total_last: i64,
    pub sources: Vec<String>,
    pub source_failures: Vec<i32>,
    pub source_last: Vec<i64>,
    pub replace: bool,
}

impl std::fmt::Debug for Import<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Import")
            .field("user", &self.user)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Imported {
    /// Key and recovery codes installed, the state merged.
    Imported {
        recovery_left: u32,
    },
    /// Enrolled in the database already: only the state was merged.
    Exists {
        recovery_left: u32,
    },
    /// The database refused this argument.
    Invalid(String),
    InvalidUser,
}

impl Session {
    /// A statement's one row, or `None` when it answered none.
    fn admin_row(
        &mut self,
        function: &str,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Option<tokio_postgres::Row>, Error> {
        let mut rows = self.query(sql, params)?;
        match rows.len() {
            0 => Ok(None),
            1 => Ok(Some(rows.remove(0))),
            n => Err(Error::Answer(format!(
                "{function} answered {n} rows instead of one"
            ))),
        }
    }

    pub fn admin_enroll(&mut self, user: &str, replace: bool) -> Result<EnrollBegun, Error> {
        const F: &str = "admin_enroll";
        let row = self.one_row(
            F,
            "SELECT * FROM ivmfa_api.admin_enroll($1, 6, 'SHA1', $2)",
            &[(&user, Type::TEXT), (&replace, Type::BOOL)],
        )?;
        let v: String = get(&row, F, "verdict")?;
        Ok(match v.as_str() {
            "ok" => EnrollBegun::Ready(new_key(&row, F)?),
            "exists" => EnrollBegun::Exists,
            "invalid" => EnrollBegun::Invalid,
            "invalid_user" => EnrollBegun::InvalidUser,
            other => return Err(verdict(F, other)),
        })
    }

    /// `kind`: `totp` (an app's key the administrator has) or `hotp` (a hardware token's).
    pub fn admin_enroll_key(
        &mut self,
        user: &str,
        key: &[u8],
        kind: &str,
        replace: bool,
    ) -> Result<KeyPending, Error> {
        const F: &str = "admin_enroll_key";
        let row = self.one_row(
            F,
            "SELECT * FROM ivmfa_api.admin_enroll_key($1, $2, $3, 6, 'SHA1', $4)",
            &[
                (&user, Type::TEXT),
                (&key, Type::BYTEA),
                (&kind, Type::TEXT),
                (&replace, Type::BOOL),
            ],
        )?;
        let v: String = get(&row, F, "verdict")?;
        Ok(match v.as_str() {
            "ok" => KeyPending::Ready,
            "exists" => KeyPending::Exists,
            "invalid" => KeyPending::Invalid,
            "invalid_user" => KeyPending::InvalidUser,
            other => return Err(verdict(F, other)),
        })
    }

    pub fn admin_enroll_confirm(
        &mut self,
        user: &str,
        code: &str,
        recovery_count: i32,
    ) -> Result<Confirmed, Error> {
        const F: &str = "admin_enroll_confirm";
        let row = self.one_row(
            F,
            "SELECT * FROM ivmfa_api.admin_enroll_confirm($1, $2, $3)",
            &[
                (&user, Type::TEXT),
                (&code, Type::TEXT),
                (&recovery_count, Type::INT4),
            ],
        )?;
        let v: String = get(&row, F, "verdict")?;
        if v == "wrong" {
            return Ok(Confirmed::Wrong {
                tries_left: get::<Option<i32>>(&row, F, "tries_left")?
                    .unwrap_or(0)
                    .max(0) as u32,
                clock_offset: get(&row, F, "clock_offset_seconds")?,
            });
        }
        confirmed(F, &v, || get(&row, F, "recovery_codes"))
    }

    pub fn admin_enroll_unconfirmed(
        &mut self,
        user: &str,
        recovery_count: i32,
    ) -> Result<Confirmed, Error> {
        const F: &str = "admin_enroll_unconfirmed";
        let row = self.one_row(
            F,
            "SELECT * FROM ivmfa_api.admin_enroll_unconfirmed($1, $2)",
            &[(&user, Type::TEXT), (&recovery_count, Type::INT4)],
        )?;
        let v: String = get(&row, F, "verdict")?;
        confirmed(F, &v, || get(&row, F, "recovery_codes"))
    }

    /// `None`: the database has never heard of the user.
    pub fn admin_status(&mut self, user: &str) -> Result<Option<UserStatus>, Error> {
        const F: &str = "admin_status";
        let Some(row) = self.admin_row(
            F,
            "SELECT * FROM ivmfa_api.admin_status($1)",
            &[(&user, Type::TEXT)],
        )?
        else {
            return Ok(None);
        };
        let count = |c: &str| -> Result<u32, Error> {
            Ok(get::<Option<i32>>(&row, F, c)?.unwrap_or(0).max(0) as u32)
        };
        let time = |c: &str| -> Result<Option<u64>, Error> {
            Ok(get::<Option<i64>>(&row, F, c)?.map(|t| t.max(0) as u64))
        };
        Ok(Some(UserStatus {
            enrolled: get::<Option<bool>>(&row, F, "enrolled")?.unwrap_or(false),
            enrolled_at: time("enrolled_at")?,
            recovery_left: count("recovery_left")?,
            reset_pending: get::<Option<bool>>(&row, F, "reset_pending")?.unwrap_or(false),
            ticket_expires: time("ticket_expires")?,
            failures: count("failures")?,
            wait: seconds(get(&row, F, "wait_seconds")?),
            last_step: time("last_step")?.unwrap_or(0),
            kind: get(&row, F, "kind")?,
            token_counter: time("token_counter")?,
            ticket_host: get(&row, F, "ticket_host")?,
            reset_host: get(&row, F, "reset_host")?,
        }))
    }

    pub fn admin_remove(&mut self, user: &str) -> Result<Removed, Error> {
        const F: &str = "admin_remove";
        let row = self.one_row(
            F,
            "SELECT * FROM ivmfa_api.admin_remove($1)",
            &[(&user, Type::TEXT)],
        )?;
        let v: String = get(&row, F, "verdict")?;
        Ok(match v.as_str() {
            "removed" => Removed::Removed,
            "not_enrolled" => Removed::NotEnrolled,
            other => return Err(verdict(F, other)),
        })
    }

    /// A new set, shown once; empty when the user is not enrolled (or `count` is not 1 to
    /// 100, or anything failed: the database's audit says which).
    pub fn admin_recovery_codes(
        &mut self,
        user: &str,
        count: i32,
    ) -> Result<Vec<Zeroizing<String>>, Error> {
        const F: &str = "admin_recovery_codes";
        let rows = self.query(
            "SELECT * FROM ivmfa_api.admin_recovery_codes($1, $2)",
            &[(&user, Type::TEXT), (&count, Type::INT4)],
        )?;
        rows.iter()
            .map(|row| get::<String>(row, F, "code").map(Zeroizing::new))
            .collect()
    }

    /// Every user with a key, an approved reset or a pending request, by name.
    pub fn admin_users(&mut self) -> Result<Vec<String>, Error> {
        const F: &str = "admin_users";
        let rows = self.query("SELECT * FROM ivmfa_api.admin_users()", &[])?;
        rows.iter()
            .map(|row| Ok(get::<Option<String>>(row, F, "user_name")?.unwrap_or_default()))
            .collect()
    }

    pub fn admin_reset_list(&mut self) -> Result<Vec<PendingReset>, Error> {
        const F: &str = "admin_reset_list";
        let rows = self.query("SELECT * FROM ivmfa_api.admin_reset_list()", &[])?;
        rows.iter()
            .map(|row| {
                let text = |c: &str| -> Result<String, Error> {
                    Ok(get::<Option<String>>(row, F, c)?.unwrap_or_default())
                };
                Ok(PendingReset {
                    user: text("user_name")?,
                    filed: seconds(get(row, F, "filed")?),
                    service: text("service")?,
                    rhost: text("rhost")?,
                    tty: text("tty")?,
                    host: text("host")?,
                })
            })
            .collect()
    }

    /// `host`: the host role whose logins may set up the new key; `None`, the one the
    /// request came through (or, for a ticket issued again, the one it was for).
    pub fn admin_reset_approve(
        &mut self,
        user: &str,
        host: Option<&str>,
    ) -> Result<Approved, Error> {
        const F: &str = "admin_reset_approve";
        let row = self.one_row(
            F,
            "SELECT * FROM ivmfa_api.admin_reset_approve($1, $2)",
            &[(&user, Type::TEXT), (&host, Type::TEXT)],
        )?;
        let v: String = get(&row, F, "verdict")?;
        let host = || -> Result<String, Error> {
            Ok(get::<Option<String>>(&row, F, "host")?.unwrap_or_default())
        };
        let expires = || -> Result<u64, Error> { Ok(seconds(get(&row, F, "ticket_expires")?)) };
        Ok(match v.as_str() {
            "approved" => Approved::Approved {
                expires: expires()?,
                host: host()?,
            },
            "reissued" => Approved::Reissued {
                expires: expires()?,
                host: host()?,
            },
            "not_a_host" => Approved::NotAHost(host()?),
            "no_request" => Approved::NoRequest,
            other => return Err(verdict(F, other)),
        })
    }

    pub fn admin_reset_deny(&mut self, user: &str, reason: &str) -> Result<Denied, Error> {
        const F: &str = "admin_reset_deny";
        let row = self.one_row(
            F,
            "SELECT * FROM ivmfa_api.admin_reset_deny($1, $2)",
            &[(&user, Type::TEXT), (&reason, Type::TEXT)],
        )?;
        let v: String = get(&row, F, "verdict")?;
        Ok(match v.as_str() {
            "denied" => Denied::Denied {
                host: get::<Option<String>>(&row, F, "host")?.unwrap_or_default(),
            },
            "no_request" => Denied::NoRequest,
            "invalid" => Denied::Invalid,
            other => return Err(verdict(F, other)),
        })
    }

    pub fn admin_resync(
        &mut self,
        user: &str,
        first: &str,
        second: &str,
    ) -> Result<Resynced, Error> {
        const F: &str = "admin_resync";
        let row = self.one_row(
            F,
            "SELECT * FROM ivmfa_api.admin_resync($1, $2, $3)",
            &[
                (&user, Type::TEXT),
                (&first, Type::TEXT),
                (&second, Type::TEXT),
            ],
        )?;
        let v: String = get(&row, F, "verdict")?;
        let counter = |c: &str| -> Result<Option<u64>, Error> {
            Ok(get::<Option<i64>>(&row, F, c)?.map(|n| n.max(0) as u64))
        };
        Ok(match v.as_str() {
            "resynced" => Resynced::Resynced {
                before: counter("counter_before")?,
                after: counter("counter_after")?.unwrap_or(0),
            },
            "not_found" => Resynced::NotFound {
                counter: counter("counter_before")?,
            },
            "not_token" => Resynced::NotToken,
            "malformed" => Resynced::Malformed,
            "not_enrolled" => Resynced::NotEnrolled,
            "invalid_user" => Resynced::InvalidUser,
            other => return Err(verdict(F, other)),
        })
    }

    /// `db fence`: how many watermarks were raised.
    pub fn admin_fence(&mut self) -> Result<u32, Error> {
        const F: &str = "admin_fence";
        let row = self.one_row(F, "SELECT * FROM ivmfa_api.admin_fence()", &[])?;
        let v: String = get(&row, F, "verdict")?;
        match v.as_str() {
            "fenced" => Ok(get::<Option<i32>>(&row, F, "accounts")?.unwrap_or(0).max(0) as u32),
            other => Err(verdict(F, other)),
        }
    }

    /// Forgets the audit rows older than `keep_days` days; how many went. `None` when the
    /// database refuses the number of days (1 to 3650).
    pub fn admin_prune_audit(&mut self, keep_days: u32) -> Result<Option<u64>, Error> {
        const F: &str = "admin_prune_audit";
        let days = i32::try_from(keep_days).unwrap_or(i32::MAX);
        let row = self.one_row(
            F,
            "SELECT * FROM ivmfa_api.admin_prune_audit($1)",
            &[(&days, Type::INT4)],
        )?;
        let v: String = get(&row, F, "verdict")?;
        match v.as_str() {
            "pruned" => Ok(Some(
                get::<Option<i64>>(&row, F, "rows")?.unwrap_or(0).max(0) as u64,
            )),
            "invalid" => Ok(None),
            other => Err(verdict(F, other)),
        }
    }

    pub fn admin_import(&mut self, i: &Import<'_>) -> Result<Imported, Error> {
        const F: &str = "admin_import";
        let row = self.one_row(
            F,
            "SELECT * FROM ivmfa_api.admin_import($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
             $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)",
            &[
                (&i.user, Type::TEXT),
                (&i.kind, Type::TEXT),
                (&i.key, Type::BYTEA),
                (&i.digits, Type::INT4),
                (&i.period, Type::INT4),
                (&i.algorithm, Type::TEXT),
                (&i.window, Type::INT4),
                (&i.enrolled, Type::INT8),
                (&i.recovery_salt, Type::BYTEA),
                (&i.recovery_hashes, Type::BYTEA_ARRAY),
                (&i.recovery_issued, Type::INT8),
                (&i.recovery_used, Type::INT4_ARRAY),
                (&i.last_step, Type::INT8),
                (&i.refused, Type::INT8_ARRAY),
                (&i.token_next, Type::INT8),
                (&i.total_failures, Type::INT4),
                (&i.total_last, Type::INT8),
                (&i.sources, Type::TEXT_ARRAY),
                (&i.source_failures, Type::INT4_ARRAY),
                (&i.source_last, Type::INT8_ARRAY),
                (&i.replace, Type::BOOL),
            ],
        )?;
        let v: String = get(&row, F, "verdict")?;
        let left = || -> Result<u32, Error> {
            Ok(get::<Option<i32>>(&row, F, "recovery_left")?
                .unwrap_or(0)
                .max(0) as u32)
        };
        Ok(match v.as_str() {
            "imported" => Imported::Imported {
                recovery_left: left()?,
            },
            "exists" => Imported::Exists {
                recovery_left: left()?,
            },
            "invalid" => {
                Imported::Invalid(get::<Option<String>>(&row, F, "problem")?.unwrap_or_default())
            }
            "invalid_user" => Imported::InvalidUser,
            other => return Err(verdict(F, other)),
        })
    }
}

/// The verdicts `admin_enroll_confirm` and `admin_enroll_unconfirmed` share.
fn confirmed(
    function: &str,
    v: &str,
    codes: impl FnOnce() -> Result<Option<Vec<String>>, Error>,
) -> Result<Confirmed, Error> {
    Ok(match v {
        "enrolled" => Confirmed::Enrolled(
            codes()?
                .unwrap_or_default()
                .into_iter()
                .map(Zeroizing::new)
                .collect(),
        ),
        "failed" => Confirmed::Failed,
        "expired" => Confirmed::Expired,
        "exists" => Confirmed::Exists,
        "no_enrollment" => Confirmed::NoEnrollment,
        "invalid" => Confirmed::Invalid,
        "invalid_user" => Confirmed::InvalidUser,
        other => return Err(verdict(function, other)),
    })
}
