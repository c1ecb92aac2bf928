//! One login attempt, from module arguments to a verdict.
//!
//! The PAM module gathers facts (user, service, remote host), provides the conversation and
//! the system look-ups through the [`crate::ports`], and turns the [`Verdict`] into a PAM code. Every decision is made here (and, for set-up inside the login, in
//! `crate::inband`), so it can be read in one place, top to bottom.

use zeroize::Zeroizing;

use super::attempt::Attempt;
use super::inband::{self, Grant};
use crate::combined;
use crate::config::{Backend, Config, Unenrolled, MAX_WINDOW};
use crate::enrollment::{Enrollment, Kind};
use crate::error::{Error, Result};
use crate::grace::{Address, Withheld};
use crate::hotp;
use crate::input::{self, Accepts, Answer, Code};
use crate::logtext::printable;
use crate::messages;
use crate::ports::{Conversation, Host, Login, Priority, Verdict};
use crate::reset::{self, ResetRequest};
use crate::state::{RateLimit, State};
use crate::store::{LoadedState, Store, UserLock};
use crate::totp::{self, Check};
use crate::username::UserName;

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
            attempt.log(Priority::Error, &format!("denied: {}", e.with_hint()));
            Verdict::ConvErr
        }
        Err(e @ Error::Busy { .. }) => {
            attempt.log(Priority::Error, &format!("denied: {}", e.with_hint()));
            let _ = attempt.conv.error(messages::BUSY);
            Verdict::ServiceErr
        }
        Err(e) => {
            attempt.log(Priority::Error, &format!("denied: {}", e.with_hint()));
            // The user sees only that it is not their fault; syslog has the reason.
            let _ = attempt.conv.error(messages::UNAVAILABLE);
            Verdict::ServiceErr
        }
    }
}

impl Attempt<'_, '_> {
    /// Denies a source or user that is backing off, saying how long is left.
    fn held(&mut self, wait: u64) -> Result<Verdict> {
        self.deny(
            Priority::Notice,
            &format!("rate limited for {wait} more seconds"),
            &messages::locked_out(wait),
        )
    }

    fn run(&mut self, args: &[String]) -> Result<Verdict> {
        if UserName::parse(self.login.user).is_none() {
            return self.stranger(args, "denied: not a valid user name");
        }
        let Some(account) = self.host.account(self.login.user)? else {
            return self.stranger(args, "denied: no such user");
        };
        // A process with no privilege that authenticates its own user (a screen locker
        // unlocking its session) gains nothing by passing: it already is that user. It cannot
        // read the store either, so judging it would only fail.
        let euid = self.host.euid();
        if euid != 0 && euid == account.uid && self.host.uid() == account.uid {
            self.log(
                Priority::Info,
                "ignored: an unprivileged process authenticating its own user",
            );
            return Ok(Verdict::Ignore);
        }

        let config = Config::resolve(args, euid)?;
        if config.debug {
            self.log(Priority::Debug, &format!("config: {}", config.summary()));
        }
        if !config.acts_for(self.login.service) {
            self.log(
                Priority::Info,
                "ignored: services= or skip_services= leaves this service out",
            );
            return self.pass_through(&config, Verdict::Ignore);
        }

        let Some(user) = UserName::parse(&account.name) else {
            self.log(
                Priority::Error,
                &format!(
                    "denied: the user database name {} cannot be used in the store",
                    printable(&account.name)
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
                    return self.pass_through(&config, Verdict::Success);
                }
                Some(false) => {}
                None => self.log(
                    Priority::Warning,
                    &format!("exempt_group {group} does not exist; nobody is exempt"),
                ),
            }
        }

        if config.backend == Backend::Postgres {
            return super::fleet::login(self, &config, &user);
        }
        let store = Store::new(&config.store, self.host.euid());
        match store.load_enrollment(&user)? {
            Some(enrollment) if !enrollment.belongs_to(account.uid) => {
                self.log(
                    Priority::Warning,
                    &format!(
                        "the enrollment of {user} was made for uid {}, but {user} is now uid \
                         {} (an account deleted and its name given to someone else?): treated \
                         as not enrolled; run ivmfa-enroll remove {user}",
                        enrollment.uid.unwrap_or_default(),
                        account.uid
                    ),
                );
                self.unenrolled(&config, &store, &user, account.uid)
            }
            Some(enrollment) => self.enrolled(&config, &store, &user, &enrollment),
            None => self.unenrolled(&config, &store, &user, account.uid),
        }
    }

    fn unenrolled(
        &mut self,
        config: &Config,
        store: &Store,
        user: &UserName,
        uid: u32,
    ) -> Result<Verdict> {
        match store.ticket(user)? {
            Some(t) if t.is_valid_at(self.host.now()) => {
                if config.forward_pass {
                    return self.no_set_up_here("an approved reset");
                }
                return inband::enroll(self, config, store, user, uid, Grant::Ticket);
            }
            Some(_) => {
                return self.deny(
                    Priority::Notice,
                    "the approved reset has expired",
                    messages::TICKET_EXPIRED,
                )
            }
            None => {}
        }
        match config.unenrolled {
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
                self.pass_through(config, Verdict::Ignore)
            }
            Unenrolled::Deny => self.deny(
                Priority::Notice,
                "not enrolled (unenrolled=deny)",
                messages::NOT_ENROLLED,
            ),
            Unenrolled::Enroll if config.forward_pass => self.no_set_up_here("unenrolled=enroll"),
            Unenrolled::Enroll => inband::enroll(self, config, store, user, uid, Grant::Policy),
        }
    }

    /// With `forward_pass` the code is judged before any password: set-up inside the login
    /// would let anyone who knows a user name bind their own phone to it.
    fn no_set_up_here(&mut self, why: &str) -> Result<Verdict> {
        self.deny(
            Priority::Notice,
            &format!(
                "not enrolled; {why} allows set-up in the login, but not with forward_pass \
                 (the password is checked after the code)"
            ),
            messages::SET_UP_ELSEWHERE,
        )
    }

    /// A name that is no user. With `forward_pass` this module asks before any password is
    /// checked, so a name that exists must not be the only one to get the prompt: the
    /// stranger is asked the same question and told the same as a wrong code, and the answer
    /// is dropped unread.
    fn stranger(&mut self, args: &[String], why: &str) -> Result<Verdict> {
        self.log(Priority::Notice, why);
        let config = Config::resolve(args, self.host.euid())?;
        if self.asks_for_the_password(&config) {
            drop(self.conv.ask_password_and_code(config.asked_prompt())?);
            let _ = self.conv.error(messages::WRONG_CODE);
        }
        Ok(Verdict::UserUnknown)
    }

    /// `forward_pass` when no code is asked of the user (exempt, not enrolled with
    /// unenrolled=allow, a service left out): the password module after this one still
    /// expects the password from here, so the one prompt is asked all the same and its whole
    /// answer handed on. Everybody sees the same prompt, so it tells nobody who needs a code.
    fn pass_through(&mut self, config: &Config, verdict: Verdict) -> Result<Verdict> {
        if !self.asks_for_the_password(config) {
            return Ok(verdict);
        }
        let answer = self.conv.ask_password_and_code(config.asked_prompt())?;
        self.host.hand_on_password(&answer)?;
        self.log(
            Priority::Info,
            "forward_pass: no code asked of this user; the whole answer handed on as the password",
        );
        Ok(verdict)
    }

    /// Whether this module asks for the password (`forward_pass`), rather than finding it,
    /// with the code, in PAM_AUTHTOK (`try_first_pass`, `use_first_pass`).
    fn asks_for_the_password(&self, config: &Config) -> bool {
        config.forward_pass
            && !(config.use_first_pass || config.try_first_pass && self.login.authtok.is_some())
    }

    fn enrolled(
        &mut self,
        config: &Config,
        store: &Store,
        user: &UserName,
        enrollment: &Enrollment,
    ) -> Result<Verdict> {
        // Refuse early while backing off (a read that changes nothing needs no lock), and take
        // a denied reset's notice. No lock is held across the prompt (a person may take
        // minutes to answer), nor while anything is said (a conversation may block).
        let source = self.login.source();
        let now = self.host.now();
        let mut peeked = store.peek_state(user)?.state;
        if peeked.forget_the_future(now) {
            // The clock went back since a failure: a wait counted from a time still to come
            // would last until the clock catches up. It counts from now instead.
            let lock = store.lock(user)?;
            let mut state = store.load_state(&lock)?.state;
            if state.forget_the_future(now) {
                store.save_state(&lock, &state)?;
            }
            peeked = state;
        }
        let waiting = peeked.wait_for(source, now, &config.rate_limit);
        // A declined reset's reason is kept until a login that can show it comes along, and
        // has checked the password first: with forward_pass nothing is checked yet.
        let shows_notice = self.conv.can_show_text() && !config.forward_pass;
        let notice = if shows_notice && store.has_notice(user) {
            let lock = store.lock(user)?;
            store.take_notice(&lock)?
        } else {
            None
        };
        if let Some(notice) = notice {
            self.log(Priority::Info, "shown the reason its reset was declined");
            let _ = self.conv.info(&messages::reset_denied(&notice.reason));
        }
        if let Some(wait) = waiting {
            return self.held_but_may_ask_for_help(config, store, user, wait);
        }
        if let Some(address) = self.grace_address(config) {
            if peeked.grace.covers(&address, now, config.grace_period) {
                match self.in_grace(config, store, user, &address)? {
                    InGrace::Yes => return Ok(self.grace_given(&address)),
                    InGrace::Withheld(why) => self.grace_withheld(&address, why),
                    InGrace::No => {}
                }
            }
        }

        let mut authtok_judged = false;
        if config.first_pass() {
            match self.first_pass(config, store, user, enrollment)? {
                FirstPass::Decided(verdict) => return Ok(verdict),
                FirstPass::Ask { judged } => authtok_judged = judged,
            }
        }
        self.ask_and_judge(config, store, user, enrollment, authtok_judged)
    }

    /// `try_first_pass` and `use_first_pass`: judges what an earlier module took (PAM_AUTHTOK)
    /// as if it had been typed at the prompt.
    ///
    /// A wrong answer taken this way is counted like a typed one: it is a guess like any
    /// other, as an earlier module that only collects input lets whoever types choose it. With
    /// try_first_pass the prompt that follows takes a second answer, judged and counted on its
    /// own; the same answer typed again there is refused without being judged twice.
    fn first_pass(
        &mut self,
        config: &Config,
        store: &Store,
        user: &UserName,
        enrollment: &Enrollment,
    ) -> Result<FirstPass> {
        let Some(given) = self.login.authtok else {
            if config.use_first_pass {
                self.log(
                    Priority::Error,
                    "denied: use_first_pass, but no earlier module set PAM_AUTHTOK; put the \
                     module that collects it first, or use try_first_pass",
                );
                let _ = self.conv.error(messages::UNAVAILABLE);
                return Ok(FirstPass::Decided(Verdict::ServiceErr));
            }
            self.log(
                Priority::Info,
                "try_first_pass: no earlier module set PAM_AUTHTOK; asking",
            );
            return Ok(FirstPass::Ask { judged: false });
        };
        let Reading::Offer(offered, passwords) = read(given, config, enrollment, false) else {
            if config.use_first_pass {
                let verdict = self.deny(
                    Priority::Notice,
                    "use_first_pass: PAM_AUTHTOK holds no code; not counted",
                    &not_a_code(config, enrollment),
                )?;
                return Ok(FirstPass::Decided(verdict));
            }
            self.log(
                Priority::Info,
                "try_first_pass: PAM_AUTHTOK holds no code; asking",
            );
            return Ok(FirstPass::Ask { judged: false });
        };
        match self.judge(config, store, user, offered)? {
            Judged::Failed { reason, .. } if config.try_first_pass => {
                self.log(
                    Priority::Notice,
                    &format!(
                        "try_first_pass: the answer in PAM_AUTHTOK was refused ({reason}); asking"
                    ),
                );
                // The failure just counted may have started a wait.
                let state = store.peek_state(user)?.state;
                let now = self.host.now();
                if let Some(wait) = state.wait_for(self.login.source(), now, &config.rate_limit) {
                    return self.held(wait).map(FirstPass::Decided);
                }
                Ok(FirstPass::Ask { judged: true })
            }
            judged => self
                .tell(judged, passwords.as_ref())
                .map(FirstPass::Decided),
        }
    }

    /// Asks for the code (with `forward_pass`, the password and the code), then judges it.
    /// `authtok_judged`: PAM_AUTHTOK was judged already (try_first_pass).
    fn ask_and_judge(
        &mut self,
        config: &Config,
        store: &Store,
        user: &UserName,
        enrollment: &Enrollment,
        authtok_judged: bool,
    ) -> Result<Verdict> {
        let answer = if config.forward_pass {
            self.conv.ask_password_and_code(config.asked_prompt())?
        } else {
            self.ask_code(config.asked_prompt(), config.echo_code)?
        };
        let again = self
            .login
            .authtok
            .is_some_and(|earlier| input::same(earlier.as_bytes(), answer.as_bytes()));
        if again && authtok_judged {
            return self.deny(
                Priority::Notice,
                "the answer is the one in PAM_AUTHTOK, judged already; not counted again",
                messages::WRONG_CODE,
            );
        }
        // With forward_pass the answer holds the password by design, so it may well equal one
        // an earlier module took; a password sent alone is caught as having no code at its end.
        if again && !config.forward_pass {
            // An application that answers every prompt with the password (IMAP, SMTP AUTH,
            // PPP) cannot take part: its answer is no guess at a code, so it is not counted,
            // and never holds back the user's logins elsewhere.
            return self.deny(
                Priority::Notice,
                "the answer to the code prompt is the password (the application cannot ask \
                 for a code); not counted",
                messages::PASSWORD_AT_CODE_PROMPT,
            );
        }
        match read(&answer, config, enrollment, true) {
            Reading::Offer(offered, passwords) => {
                let judged = self.judge(config, store, user, offered)?;
                self.tell(judged, passwords.as_ref())
            }
            Reading::Reset => self.file_reset(config, store, user),
            Reading::Empty => self.deny(
                Priority::Notice,
                "no code entered",
                &not_a_code(config, enrollment),
            ),
            Reading::NotACode if config.forward_pass => self.deny(
                Priority::Notice,
                "the answer has no code at its end (the password alone?); not counted",
                &not_a_code(config, enrollment),
            ),
            Reading::NotACode => self.deny(
                Priority::Notice,
                "the answer is not a code",
                &not_a_code(config, enrollment),
            ),
        }
    }

    /// A right code (from the app or a token) begins a grace period for its address.
    fn begin_grace(&self, config: &Config, state: &mut State, now: u64) {
        match self.grace_address(config) {
            Some(address) => state.grace.record(&address, now, config.grace_period),
            // Nothing here to record, but what is over (or everything, with the option
            // turned off) need not be kept.
            None => state.grace.forget_expired(now, config.grace_period),
        }
    }

    /// Decides a grace period under the user's lock, from the state read there, like the
    /// judging of a code: another login may have failed meanwhile (which ends it), or an
    /// administrator replaced the enrollment (which drops it). It changes nothing: the
    /// period runs from the right code that began it, however often it is used.
    fn in_grace(
        &self,
        config: &Config,
        store: &Store,
        user: &UserName,
        address: &Address,
    ) -> Result<InGrace> {
        let lock = store.lock(user)?;
        if store.reload_enrollment(&lock)?.is_none() {
            return Ok(InGrace::No);
        }
        let state = store.load_state(&lock)?.state;
        let now = self.host.now();
        if !state.grace.covers(address, now, config.grace_period) {
            return Ok(InGrace::No);
        }
        if state
            .wait_for(self.login.source(), now, &config.rate_limit)
            .is_some()
        {
            return Ok(InGrace::Withheld(Withheld::BackingOff));
        }
        if store.reset_request(user)?.is_some() {
            return Ok(InGrace::Withheld(Withheld::ResetPending));
        }
        Ok(InGrace::Yes)
    }

    /// A user who is backing off has no code judged, but may still ask for a reset (the lost
    /// phone may be why the codes were wrong): one pending request per user bounds that.
    fn held_but_may_ask_for_help(
        &mut self,
        config: &Config,
        store: &Store,
        user: &UserName,
        wait: u64,
    ) -> Result<Verdict> {
        // Requests need the password checked first, which forward_pass does after the code;
        // use_first_pass never asks.
        if config.reset_keyword.is_empty() || config.forward_pass || config.use_first_pass {
            return self.held(wait);
        }
        let _ = self
            .conv
            .error(&messages::held_may_reset(wait, &config.reset_keyword));
        let answer = self.ask_code(&config.prompt, config.echo_code)?;
        let accepts = Accepts {
            digits: 0,
            reset: Some(config.reset_keyword.as_str()),
            invert: false,
            recovery: false,
        };
        match input::parse(&answer, accepts) {
            Answer::Reset => self.file_reset(config, store, user),
            _ => self.held(wait),
        }
    }

    /// Says what the judging decided, once the lock is released (a conversation may block).
    /// With `forward_pass`, an accepted answer's password goes on to the next module.
    fn tell(&mut self, judged: Judged, passwords: Option<&Passwords>) -> Result<Verdict> {
        match judged {
            Judged::Accepted => {
                self.log(Priority::Notice, "accepted: code verified");
                self.hand_on(passwords.map(|p| &p.after_code))?;
                Ok(Verdict::Success)
            }
            Judged::Recovered { left } => {
                self.log(
                    if left <= 2 {
                        Priority::Warning
                    } else {
                        Priority::Notice
                    },
                    &format!("accepted: recovery code, {left} left"),
                );
                self.hand_on(passwords.map(|p| &p.after_recovery))?;
                let _ = self.conv.info(&messages::recovery_accepted(left));
                Ok(Verdict::Success)
            }
            Judged::Failed { reason, tell } => self.deny(Priority::Notice, &reason, &tell),
            Judged::Held(wait) => self.held(wait),
            Judged::Removed => self.deny(
                Priority::Notice,
                "the enrollment was removed while the code was being entered",
                messages::NOT_ENROLLED,
            ),
        }
    }

    /// `forward_pass`: hands on the password typed before the accepted code. Only after a
    /// right code: a wrong one never lets the password module tell whether the password was
    /// right.
    fn hand_on(&self, password: Option<&Option<Zeroizing<String>>>) -> Result<()> {
        match password {
            None => Ok(()),
            Some(Some(password)) => {
                self.host.hand_on_password(password)?;
                self.log(
                    Priority::Info,
                    "forward_pass: the password typed before the code handed on as PAM_AUTHTOK",
                );
                Ok(())
            }
            Some(None) => Err(Error::System(
                "forward_pass: no password came with the accepted answer".into(),
            )),
        }
    }

    /// Judges a code or recovery code under the user's lock, re-reading everything: another
    /// login may have used this very code or failed meanwhile, and an administrator may have
    /// removed or replaced the enrollment while the prompt was open.
    ///
    /// The attempt is written down as a failure before the code is looked at, and a right code
    /// then replaces that record with its success. Whatever stops the writing (resource
    /// limits, signals, a full disk) stops it before the judging, when right and wrong codes
    /// are denied alike, or after the attempt is counted: no condition a caller controls makes
    /// a wrong code uncounted while a right one would pass.
    fn judge(
        &self,
        config: &Config,
        store: &Store,
        user: &UserName,
        offered: Offered,
    ) -> Result<Judged> {
        let mut notes = Vec::new();
        let judged = {
            let lock = store.lock(user)?;
            self.judge_locked(config, store, &lock, offered, &mut notes)
        };
        // Logged once the lock is released: a syslog socket that anyone can fill must not
        // keep other logins of this user waiting.
        for note in notes {
            self.log(Priority::Warning, note);
        }
        judged
    }

    fn judge_locked(
        &self,
        config: &Config,
        store: &Store,
        lock: &UserLock,
        offered: Offered,
        notes: &mut Vec<&'static str>,
    ) -> Result<Judged> {
        let source = self.login.source();
        let limit = &config.rate_limit;
        let Some(mut enrollment) = store.reload_enrollment(lock)? else {
            return Ok(Judged::Removed);
        };
        let LoadedState {
            mut state,
            damaged_slot,
        } = store.load_state(lock)?;
        let now = self.host.now();
        if let Some(wait) = state.wait_for(source, now, limit) {
            return Ok(Judged::Held(wait));
        }
        if damaged_slot {
            // Said once: every path from here writes the state, into the damaged slot.
            notes.push(
                "the state file has a damaged slot (a write cut short by a crash, or disk \
                 damage); the state before it is used",
            );
        }
        let window = enrollment.window.unwrap_or(config.window);
        let current = now / enrollment.period.max(1);
        state.forget_refused_before(current.saturating_sub(u64::from(MAX_WINDOW)));
        let Offered { mut code, recovery } = offered;
        let typed_recovery = code.is_none();
        // A token's code cannot be judged without its counter. With nothing else to read the
        // answer as, it is refused before it is counted, like any other fault of the store;
        // a recovery code still works.
        let token_next = match (&code, enrollment.kind) {
            (Some(_), Kind::Hotp) => match state.hotp_next(&enrollment.secret) {
                Some(next) => Some(next),
                None if recovery.is_some() => {
                    notes.push(NO_COUNTER);
                    code = None;
                    None
                }
                None => return Err(no_counter(store, lock)),
            },
            _ => None,
        };
        let mut failed = state.clone();
        failed.record_failure(source, now, limit);
        let counted = store.begin_state(lock, &failed)?;

        let recovery = match (code, token_next) {
            (Some(code), Some(next)) => {
                match hotp::verify(&enrollment, &code, next, config.hotp_window)? {
                    hotp::Check::Accepted { counter } => {
                        state.record_hotp_success(&enrollment.secret, counter);
                        self.begin_grace(config, &mut state, now);
                        counted.replace(&state)?;
                        return Ok(Judged::Accepted);
                    }
                    // Written again for the same reason as a replayed time-based code.
                    hotp::Check::Used => {
                        counted.replace(&failed)?;
                        let reason = "token code already used or passed over (replay)";
                        let tell = messages::TOKEN_CODE_USED;
                        return Ok(self.failed(&failed, reason, tell, now, limit));
                    }
                    hotp::Check::Wrong => recovery,
                }
            }
            (Some(code), None) => {
                let check = totp::verify(
                    &enrollment,
                    &code,
                    now,
                    window,
                    state.last_step,
                    &state.refused,
                )?;
                match check {
                    Check::Accepted { step } => {
                        state.record_success(step);
                        self.begin_grace(config, &mut state, now);
                        counted.replace(&state)?;
                        return Ok(Judged::Accepted);
                    }
                    // The failure is written once more, so that a wrong code makes the same
                    // writes as a right one: no fault can tell them apart.
                    Check::Replayed => {
                        counted.replace(&failed)?;
                        let reason = "code already used (replay)";
                        return Ok(self.failed(&failed, reason, messages::REPLAYED, now, limit));
                    }
                    Check::Skewed { step, offset } => {
                        // A code for a step still to come must never work when that step
                        // arrives: telling the user it matched would otherwise have told a
                        // guesser a code to use then. Only a refusal on record is told.
                        let told = offset < 0 || failed.refuse_step(step);
                        counted.replace(&failed)?;
                        if !told {
                            return Ok(self.failed(
                                &failed,
                                "wrong code",
                                messages::WRONG_CODE,
                                now,
                                limit,
                            ));
                        }
                        let seconds = offset.unsigned_abs().saturating_mul(enrollment.period);
                        let way = if offset > 0 { "ahead" } else { "behind" };
                        let reason = format!(
                            "wrong code; it matches a time {seconds} s {way} (the phone's clock?)"
                        );
                        let tell = messages::clock_off(seconds);
                        return Ok(self.failed(&failed, &reason, &tell, now, limit));
                    }
                    // The answer may also be read as a recovery code: an 8-digit
                    // enrollment's code as an imported scratch code, or with forward_pass
                    // the end of the answer. Still one attempt, counted once.
                    Check::Wrong => recovery,
                }
            }
            (None, _) => recovery,
        };
        let found = match &recovery {
            Some(r) => enrollment.recovery.find(r)?,
            None => None,
        };
        let Some(index) = found.filter(|&i| !state.recovery_used(&enrollment.recovery, i)) else {
            counted.replace(&failed)?;
            let reason = match (found, typed_recovery) {
                (Some(_), _) => "recovery code already used",
                (None, true) => "wrong recovery code",
                (None, false) => "wrong code",
            };
            return Ok(self.failed(&failed, reason, messages::WRONG_CODE, now, limit));
        };
        // The state decides, and it is written in place, so a full disk accepts a right
        // recovery code as it would any other. Blanking the code in the enrollment too keeps
        // it used should the state ever be removed; that needs free space, so it is best effort.
        let last = state.last_step;
        state.record_success(last);
        state.use_recovery(&enrollment.recovery, index);
        counted.replace(&state)?;
        // Every code the state knows as used, in case an earlier blanking failed.
        for &i in &state.recovery.used {
            enrollment.recovery.consume(usize::from(i));
        }
        if store.save_enrollment(lock, &enrollment).is_err() {
            notes.push(
                "a used recovery code is recorded in the state only: secret.toml could not \
                 be rewritten (is the disk full?)",
            );
        }
        Ok(Judged::Recovered {
            left: state.recovery_left(&enrollment.recovery),
        })
    }

    /// What a failure already recorded means for the user: the reason for syslog, and the
    /// message, with the wait if this failure started one.
    fn failed(
        &self,
        state: &State,
        reason: &str,
        tell: &str,
        now: u64,
        limit: &RateLimit,
    ) -> Judged {
        let source = self.login.source();
        let failures = state.failures_from(source);
        let mut tell = tell.to_owned();
        if let Some(wait) = state.wait_for(source, now, limit) {
            tell = format!("{tell} {}", messages::locked_out(wait));
        }
        Judged::Failed {
            reason: format!("{reason}, {failures} consecutive failure(s) from this source"),
            tell,
        }
    }

    /// Flow 3: the user lost the device. One request per user, however often asked; the
    /// administrators decide. The login is denied either way.
    fn file_reset(&mut self, config: &Config, store: &Store, user: &UserName) -> Result<Verdict> {
        let request = ResetRequest {
            version: reset::FORMAT_VERSION,
            user: user.to_string(),
            time: self.host.now(),
            service: self.login.service.to_owned(),
            rhost: self.login.rhost.unwrap_or("").to_owned(),
            tty: self.login.tty.unwrap_or("").to_owned(),
        };
        let filed = {
            let lock = store.lock(user)?;
            store.file_reset_request(&lock, user, &request)?
        };
        if filed {
            self.log(
                Priority::Notice,
                "denied: filed a request to reset MFA (lost device)",
            );
            self.notify(config, &request);
        } else {
            self.log(
                Priority::Info,
                "denied: asked again to reset MFA; a request is pending",
            );
        }
        let _ = self.conv.info(&config.reset_message);
        Ok(Verdict::AuthErr)
    }
}

const NO_COUNTER: &str = "the state keeps no counter for the user's hardware token (removed, or \
                          from another token): its codes are refused until ivmfa-enroll resync";

/// The state has no counter for the user's token (removed, or written for another key).
fn no_counter(store: &Store, lock: &UserLock) -> Error {
    Error::corrupt(
        store.state_path(lock),
        "it keeps no counter for the user's hardware token (removed, or from another token)",
        "set the counter from two codes of the token: ivmfa-enroll resync USER CODE1 CODE2",
    )
}

/// What the judging under the lock decided; said to the user after the lock is released.
enum Judged {
    Accepted,
    Recovered { left: usize },
    Failed { reason: String, tell: String },
    Held(u64),
    Removed,
}

/// What one answer offers, once recognised: a code, a recovery code, or both readings of one
/// answer (eight digits; with forward_pass, the end of the answer). Judged as one attempt: the
/// code first, then the recovery code.
struct Offered {
    code: Option<Code>,
    recovery: Option<Zeroizing<String>>,
}

/// `forward_pass`: the password before each reading of the answer, handed on with the one
/// accepted.
struct Passwords {
    after_code: Option<Zeroizing<String>>,
    after_recovery: Option<Zeroizing<String>>,
}

/// What an answer is, in the shape the configuration asks for.
enum Reading {
    Offer(Offered, Option<Passwords>),
    Reset,
    Empty,
    NotACode,
}

/// Where [`Attempt::first_pass`] leaves the login.
enum FirstPass {
    Decided(Verdict),
    /// Ask at the prompt; `judged`: PAM_AUTHTOK was judged (and refused) already.
    Ask {
        judged: bool,
    },
}

/// Reads `answer` as a code or recovery code (with `forward_pass`, as the password and one
/// of those after it). `typed`: it was typed at this module's prompt, where the reset keyword
/// is offered; an answer an earlier module took never files a request.
fn read(answer: &str, config: &Config, enrollment: &Enrollment, typed: bool) -> Reading {
    if config.forward_pass {
        if answer.is_empty() {
            return Reading::Empty;
        }
        let split = combined::split(answer, enrollment.digits);
        if split.is_empty() {
            return Reading::NotACode;
        }
        let (code, after_code) = split.code.map_or((None, None), |(c, p)| (Some(c), Some(p)));
        let (recovery, after_recovery) = split
            .recovery
            .map_or((None, None), |(r, p)| (Some(r), Some(p)));
        return Reading::Offer(
            Offered { code, recovery },
            Some(Passwords {
                after_code,
                after_recovery,
            }),
        );
    }
    let accepts = Accepts {
        digits: enrollment.digits,
        reset: typed.then_some(config.reset_keyword.as_str()),
        invert: false,
        recovery: true,
    };
    match input::parse(answer, accepts) {
        Answer::Code(code) => Reading::Offer(
            Offered {
                recovery: code.as_recovery(),
                code: Some(code),
            },
            None,
        ),
        Answer::Recovery(r) => Reading::Offer(
            Offered {
                code: None,
                recovery: Some(r),
            },
            None,
        ),
        Answer::Reset => Reading::Reset,
        Answer::Empty => Reading::Empty,
        Answer::Malformed | Answer::Invert => Reading::NotACode,
    }
}

/// What to tell someone whose answer holds no code.
fn not_a_code(config: &Config, enrollment: &Enrollment) -> String {
    if config.forward_pass {
        messages::malformed_combined(enrollment.digits)
    } else {
        messages::malformed(enrollment.digits)
    }
}

/// Whether a login is in a grace period, as decided under the lock.
enum InGrace {
    Yes,
    No,
    /// It would be, but something that denies before a code is asked for holds it back.
    Withheld(Withheld),
}
