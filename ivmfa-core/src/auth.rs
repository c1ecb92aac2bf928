//! One login attempt, from module arguments to a verdict.
//!
//! The PAM module gathers facts (user, service, remote host), provides the conversation and
//! the system look-ups through [`Host`] and [`Conversation`], and turns the [`Verdict`] into a
//! PAM code. Every decision is made here, so it can be read in one place, top to bottom.

use zeroize::Zeroizing;

use crate::config::{printable, Config, Unenrolled};
use crate::error::{Error, Result};
use crate::input::{self, Answer};
use crate::messages;
use crate::store::Store;
use crate::totp::{self, Check};
use crate::username::UserName;

/// How the module should answer libpam.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The code was right (or the user is exempt): PAM_SUCCESS.
    Success,
    /// Not our business (unenrolled user, `unenrolled=allow`): PAM_IGNORE.
    Ignore,
    /// Wrong, replayed or missing code, rate limited, not enrolled: PAM_AUTH_ERR.
    AuthErr,
    /// No such user, or a name that cannot be a user: PAM_USER_UNKNOWN.
    UserUnknown,
    /// The conversation failed: PAM_CONV_ERR.
    ConvErr,
    /// Configuration, store or system failure: PAM_SERVICE_ERR.
    ServiceErr,
}

/// syslog priorities the core uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    Error,
    Warning,
    Notice,
    Info,
    Debug,
}

/// The system around the login: clock, identity, user database, log.
pub trait Host {
    fn euid(&self) -> u32;
    /// Seconds since the Unix epoch.
    fn now(&self) -> u64;
    /// The user's name as the user database spells it (`pw_name`), or `None` if there is no
    /// such user. NSS may resolve `ALICE` or `alice@domain` to alice; the store is keyed by the
    /// canonical name so such spellings cannot miss an enrollment.
    fn canonical_user(&self, user: &str) -> Result<Option<String>>;
    /// `Ok(None)` if the group does not exist.
    fn in_group(&self, user: &str, group: &str) -> Result<Option<bool>>;
    fn log(&self, priority: Priority, message: &str);
}

/// The PAM conversation with the person logging in.
pub trait Conversation {
    /// Asks with echo off.
    fn ask_hidden(&mut self, prompt: &str) -> Result<Zeroizing<String>>;
    fn info(&mut self, text: &str) -> Result<()>;
    fn error(&mut self, text: &str) -> Result<()>;
}

/// Who is logging in, from the PAM items.
#[derive(Clone, Copy, Debug)]
pub struct Login<'a> {
    pub user: &'a str,
    pub service: &'a str,
    pub rhost: Option<&'a str>,
}

impl Login<'_> {
    /// The part of every log line that says whose login it was.
    fn describe(&self) -> String {
        format!(
            "user={} service={} rhost={}",
            printable(self.user),
            printable(self.service),
            printable(self.rhost.unwrap_or("-"))
        )
    }

    /// Failures are counted per source; local logins share the empty source.
    fn source(&self) -> &str {
        self.rhost.unwrap_or("")
    }
}

/// Runs one authentication. Never panics on bad input; every error path denies.
pub fn authenticate(
    args: &[String],
    login: &Login,
    host: &dyn Host,
    conv: &mut dyn Conversation,
) -> Verdict {
    let mut attempt = Attempt { login, host, conv };
    match attempt.run(args) {
        Ok(verdict) => verdict,
        Err(e @ Error::Conversation(_)) => {
            attempt.log(Priority::Error, &format!("denied: {e}"));
            Verdict::ConvErr
        }
        Err(e) => {
            attempt.log(Priority::Error, &format!("denied: {e}"));
            // The user sees only that it is not their fault; syslog has the reason.
            let _ = attempt.conv.error(messages::UNAVAILABLE);
            Verdict::ServiceErr
        }
    }
}

struct Attempt<'a, 'b> {
    login: &'a Login<'a>,
    host: &'a dyn Host,
    conv: &'b mut dyn Conversation,
}

impl Attempt<'_, '_> {
    fn log(&self, priority: Priority, what: &str) {
        self.host
            .log(priority, &format!("{}: {what}", self.login.describe()));
    }

    fn deny(&mut self, priority: Priority, reason: &str, tell: &str) -> Result<Verdict> {
        self.log(priority, &format!("denied: {reason}"));
        self.conv.error(tell)?;
        Ok(Verdict::AuthErr)
    }

    fn run(&mut self, args: &[String]) -> Result<Verdict> {
        let config = Config::resolve(args, self.host.euid())?;
        if config.debug {
            self.log(Priority::Debug, &format!("config: {}", config.summary()));
        }

        if UserName::parse(self.login.user).is_none() {
            self.log(Priority::Notice, "denied: not a valid user name");
            return Ok(Verdict::UserUnknown);
        }
        let Some(canonical) = self.host.canonical_user(self.login.user)? else {
            self.log(Priority::Notice, "denied: no such user");
            return Ok(Verdict::UserUnknown);
        };
        let Some(user) = UserName::parse(&canonical) else {
            self.log(
                Priority::Error,
                &format!(
                    "denied: the user database name {} cannot be used in the store",
                    printable(&canonical)
                ),
            );
            return Ok(Verdict::UserUnknown);
        };

        if let Some(group) = &config.exempt_group {
            match self.host.in_group(user.as_str(), group)? {
                Some(true) => {
                    self.log(
                        Priority::Notice,
                        &format!("accepted without a code: member of exempt group {group}"),
                    );
                    return Ok(Verdict::Success);
                }
                Some(false) => {}
                None => self.log(
                    Priority::Warning,
                    &format!("exempt_group {group} does not exist; nobody is exempt"),
                ),
            }
        }

        let store = Store::new(&config.store, self.host.euid());
        let Some(enrollment) = store.load_enrollment(&user)? else {
            return match config.unenrolled {
                Unenrolled::Allow => {
                    if store.root().exists() {
                        self.log(Priority::Info, "not enrolled; unenrolled=allow, ignoring");
                    } else {
                        // A typo in store= would wave everybody through: make it loud.
                        self.log(
                            Priority::Warning,
                            &format!(
                                "the store {} does not exist, so nobody counts as enrolled; \
                                 unenrolled=allow, ignoring",
                                store.root().display()
                            ),
                        );
                    }
                    Ok(Verdict::Ignore)
                }
                Unenrolled::Deny => self.deny(
                    Priority::Notice,
                    "not enrolled (unenrolled=deny)",
                    messages::NOT_ENROLLED,
                ),
                Unenrolled::Enroll => self.deny(
                    Priority::Error,
                    "not enrolled, and in-band enrollment (unenrolled=enroll) is not \
                     available in this version; enroll the user with ivmfa-enroll",
                    messages::NOT_ENROLLED,
                ),
            };
        };

        // Refuse early while backing off, without holding the lock across the prompt: a
        // person may take minutes to answer and other logins must not wait for them.
        let source = self.login.source();
        let limit = &config.rate_limit;
        let waiting = {
            let lock = store.lock(&user)?;
            store
                .load_state(&lock)?
                .wait_for(source, self.host.now(), limit)
        };
        // The lock is released before anything is said: a conversation may block.
        if let Some(wait) = waiting {
            return self.deny(
                Priority::Notice,
                &format!("rate limited for {wait} more seconds"),
                &messages::locked_out(wait),
            );
        }

        let answer = self.conv.ask_hidden(&config.prompt)?;
        let code = match input::parse(&answer, enrollment.digits) {
            Answer::Code(code) => code,
            Answer::Empty => {
                return self.deny(
                    Priority::Notice,
                    "no code entered",
                    &messages::malformed(enrollment.digits),
                )
            }
            Answer::Malformed => {
                return self.deny(
                    Priority::Notice,
                    "the answer is not a code",
                    &messages::malformed(enrollment.digits),
                )
            }
        };
        drop(answer);

        // Check and advance the watermark under the lock, re-reading everything: another login
        // may have used this very code or failed meanwhile, and an administrator may have
        // removed or replaced the enrollment while the prompt was open.
        let lock = store.lock(&user)?;
        let Some(enrollment) = store.reload_enrollment(&lock)? else {
            drop(lock);
            return self.deny(
                Priority::Notice,
                "the enrollment was removed while the code was being entered",
                messages::NOT_ENROLLED,
            );
        };
        let mut state = store.load_state(&lock)?;
        let now = self.host.now();
        if let Some(wait) = state.wait_for(source, now, limit) {
            drop(lock);
            return self.deny(
                Priority::Notice,
                &format!("rate limited for {wait} more seconds"),
                &messages::locked_out(wait),
            );
        }
        let window = enrollment.window.unwrap_or(config.window);
        let check = totp::verify(&enrollment, &code, now, window, state.last_step)?;
        let (reason, tell) = match check {
            Check::Accepted { step } => {
                state.record_success(step);
                store.save_state(&lock, &state)?;
                drop(lock);
                self.log(Priority::Notice, "accepted: code verified");
                return Ok(Verdict::Success);
            }
            Check::Replayed => ("code already used (replay)", messages::REPLAYED),
            Check::Wrong => ("wrong code", messages::WRONG_CODE),
        };
        state.record_failure(source, now, limit);
        let failures = state.failures_from(source);
        // A failure that cannot be counted is a fault like any other: answering "wrong code"
        // here would tell right from wrong codes (a right one fails to save too) and leave
        // the guesses unlimited.
        store.save_state(&lock, &state)?;
        drop(lock);
        let mut tell = tell.to_owned();
        if let Some(wait) = state.wait_for(source, now, limit) {
            tell = format!("{tell} {}", messages::locked_out(wait));
        }
        self.deny(
            Priority::Notice,
            &format!("{reason}, {failures} consecutive failure(s) from this source"),
            &tell,
        )
    }
}
