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
    fn user_exists(&self, user: &str) -> Result<bool>;
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
        Err(Error::Conversation(why)) => {
            attempt.log(
                Priority::Error,
                &format!("denied: conversation failed: {why}"),
            );
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

        let Some(user) = UserName::parse(self.login.user) else {
            self.log(Priority::Notice, "denied: not a valid user name");
            return Ok(Verdict::UserUnknown);
        };
        if !self.host.user_exists(user.as_str())? {
            self.log(Priority::Notice, "denied: no such user");
            return Ok(Verdict::UserUnknown);
        }

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
                    self.log(Priority::Info, "not enrolled; unenrolled=allow, ignoring");
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
        {
            let lock = store.lock(&user)?;
            let state = store.load_state(&lock)?;
            if let Some(wait) = state.wait_for(source, self.host.now(), limit) {
                return self.deny(
                    Priority::Notice,
                    &format!("rate limited for {wait} more seconds"),
                    &messages::locked_out(wait),
                );
            }
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

        // Check and advance the watermark under the lock, re-reading the state: another
        // login may have used this very code, or failed, since we looked.
        let lock = store.lock(&user)?;
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
        let check = totp::verify(&enrollment, &code, now, config.window, state.last_step)?;
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
        state.record_failure(source, now);
        let failures = state.failures_from(source);
        let saved = store.save_state(&lock, &state);
        drop(lock);
        if let Err(e) = saved {
            // The login is denied either way; say why the count did not stick.
            self.log(
                Priority::Error,
                &format!("could not record the failure: {e}"),
            );
        }
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
