//! One login against the fleet database (`backend = "postgres"`): the same flows, messages
//! and verdicts as the file store ([`super::auth`]), with the judging done by the database
//! through the [`FleetApi`] port.
//!
//! The host decides what is the host's: who the user is, `exempt_group` (before this
//! module is reached), the `unenrolled` policy, the prompt and the reset keyword, and what
//! the user is told. The database decides the rest, at its own clock: enrolled or not, the
//! back-off, whether a code or recovery code is right, used or replayed, whether set-up is
//! allowed (a ticket, or its `inband_enroll` setting). The two talk in rounds, each a fresh
//! connection closed before the user is asked anything: before the prompt; after it (submit
//! and verify, or a reset request); and at each step of a set-up.
//!
//! A round that fails (unreachable, TLS, refused, unknown schema, any error) denies with
//! [`messages::UNAVAILABLE`] and the reason in syslog. The one exception is
//! `break_glass_group`, at the console only and only while no server can be reached at all:
//! see [`Fleet::unavailable`].
//!
//! A hardware token (HOTP) needs nothing of its own here: the database finds its code from
//! the counter it keeps and moves the counter under the user's lock; the module only tells
//! a used one apart (as the file store does).
//!
//! `grace_period` is asked of the database under the file store's conditions (see
//! [`Attempt::grace_address`]): `grace` in the round before the prompt, and the answer filed
//! with `submit_grace`, so a right code begins a grace period. The database keeps it per
//! user, address and host role, so a period earned through one host applies only there, and
//! caps its length at the fleet's `grace_period_max`.
//!
//! Not here, on purpose: `forward_pass` (refused by the config with this backend: its answer
//! carries the password), and the host's rate-limit, window and ticket keys (the fleet's own
//! settings rule, so no host can loosen them).

use super::attempt::Attempt;
use super::ceremony::{self, Ceremony};
use super::inband::{self, Grant, MAX_PROMPTS};
use crate::config::{Config, Unenrolled};
use crate::enrollment::Enrollment;
use crate::error::{Error, Result};
use crate::fleet_api::{
    FleetApi, Grace, Judgement, ResetFiled, SetupBegun, SetupFinished, Standing, Status,
};
use crate::grace::{Address, Withheld};
use crate::input::{self, Accepts, Answer};
use crate::logtext::{printable, shown};
use crate::messages;
use crate::ports::{Priority, Verdict};
use crate::recovery;
use crate::reset::{self, ResetRequest};
use crate::username::UserName;

/// The longest recovery code shown as the database sent it (ours are 14 characters).
const SHOWN_CODE_LEN: usize = 32;

/// Runs the login of `user` (resolved, not exempt) against the fleet database.
pub(crate) fn login(att: &mut Attempt, config: &Config, user: &UserName) -> Result<Verdict> {
    let host = att.host;
    let grace = att.grace_address(config);
    let mut fleet = Fleet {
        att,
        config,
        user,
        grace,
    };
    match host.fleet() {
        Some(api) => fleet.run(api),
        None => fleet.unavailable(&Error::Fleet(
            "this build of pam_ivmfa has no database client".into(),
        )),
    }
}

struct Fleet<'x, 'a, 'b> {
    att: &'x mut Attempt<'a, 'b>,
    config: &'x Config,
    user: &'x UserName,
    /// The address this login may have a grace period for, if it may have one at all.
    grace: Option<Address>,
}

/// Where the answer from PAM_AUTHTOK (`try_first_pass`, `use_first_pass`) leaves the login.
enum FirstPass {
    Decided(Verdict),
    /// Ask at the prompt; `judged`: PAM_AUTHTOK was judged (and refused) already.
    Ask {
        judged: bool,
    },
}

impl Fleet<'_, '_, '_> {
    /// The grace period to ask the database about and to file answers with: 0 for none.
    fn grace_period(&self) -> u64 {
        match self.grace {
            Some(_) => self.config.grace_period,
            None => 0,
        }
    }

    fn run(&mut self, api: &dyn FleetApi) -> Result<Verdict> {
        // A declined reset's reason is handed over (and forgotten by the database) only to a
        // login that can show it.
        let take_notice = self.att.conv.can_show_text();
        let standing = match api.before_prompt(
            &self.config.db,
            self.user.as_str(),
            self.att.login.source(),
            take_notice,
            self.grace_period(),
        ) {
            Ok(standing) => standing,
            Err(e) => return self.unavailable(&e),
        };
        if self.config.debug {
            self.att.log(
                Priority::Debug,
                &format!(
                    "fleet database: {:?}, {} digits, wait {} s, reset pending {}, \
                     inband_enroll {}, grace {:?}",
                    standing.status,
                    standing.digits,
                    standing.wait,
                    standing.reset_pending,
                    standing.inband_enroll,
                    standing.grace
                ),
            );
        }
        if let Some(notice) = &standing.notice {
            self.att
                .log(Priority::Info, "shown the reason its reset was declined");
            let _ = self.att.conv.info(&messages::reset_denied(notice));
        }
        match standing.status {
            Status::Enrolled => self.enrolled(api, &standing),
            Status::Ticket => self.set_up(api, Grant::Ticket),
            Status::TicketElsewhere => self.att.deny(
                Priority::Notice,
                "the approved reset is for another host: only a login through the host role \
                 the administrators named sets up the new code (ivmfa-enroll status shows it)",
                messages::TICKET_ELSEWHERE,
            ),
            Status::TicketExpired => self.att.deny(
                Priority::Notice,
                "the approved reset has expired",
                messages::TICKET_EXPIRED,
            ),
            Status::NotEnrolled => self.unenrolled(api, &standing),
            Status::InvalidUser => self.invalid_user(),
        }
    }

    fn unenrolled(&mut self, api: &dyn FleetApi, standing: &Standing) -> Result<Verdict> {
        match self.config.unenrolled {
            Unenrolled::Allow => {
                self.att.log(
                    Priority::Info,
                    "not enrolled in the fleet database; unenrolled=allow, ignoring",
                );
                Ok(Verdict::Ignore)
            }
            Unenrolled::Deny => self.att.deny(
                Priority::Notice,
                "not enrolled (unenrolled=deny)",
                messages::NOT_ENROLLED,
            ),
            // One compromised host must not enroll everybody with keys it chose: the
            // database alone allows set-up without an approved reset.
            Unenrolled::Enroll if standing.inband_enroll => self.set_up(api, Grant::Policy),
            Unenrolled::Enroll => self.att.deny(
                Priority::Notice,
                "not enrolled; unenrolled=enroll, but the fleet database allows set-up in a \
                 login only after an approved reset (its setting inband_enroll is off)",
                messages::NOT_ENROLLED,
            ),
        }
    }

    fn enrolled(&mut self, api: &dyn FleetApi, standing: &Standing) -> Result<Verdict> {
        let digits = standing.digits;
        if standing.wait > 0 {
            return self.held_but_may_ask_for_help(api, standing.wait);
        }
        if let Some(verdict) = self.in_grace(standing.grace)? {
            return Ok(verdict);
        }
        let mut authtok_judged = false;
        if self.config.first_pass() {
            match self.first_pass(api, digits)? {
                FirstPass::Decided(verdict) => return Ok(verdict),
                FirstPass::Ask { judged } => authtok_judged = judged,
            }
        }
        self.ask_and_judge(api, digits, authtok_judged)
    }

    /// `try_first_pass` and `use_first_pass`: what an earlier module took is submitted as if
    /// typed at the prompt, and counted like it (see auth.rs, which does the same).
    fn first_pass(&mut self, api: &dyn FleetApi, digits: u8) -> Result<FirstPass> {
        let Some(given) = self.att.login.authtok else {
            if self.config.use_first_pass {
                self.att.log(
                    Priority::Error,
                    "denied: use_first_pass, but no earlier module set PAM_AUTHTOK; put the \
                     module that collects it first, or use try_first_pass",
                );
                let _ = self.att.conv.error(messages::UNAVAILABLE);
                return Ok(FirstPass::Decided(Verdict::ServiceErr));
            }
            self.att.log(
                Priority::Info,
                "try_first_pass: no earlier module set PAM_AUTHTOK; asking",
            );
            return Ok(FirstPass::Ask { judged: false });
        };
        let Some(answer) = submittable(given, digits) else {
            if self.config.use_first_pass {
                let verdict = self.att.deny(
                    Priority::Notice,
                    "use_first_pass: PAM_AUTHTOK holds no code; not counted",
                    &messages::malformed(digits),
                )?;
                return Ok(FirstPass::Decided(verdict));
            }
            self.att.log(
                Priority::Info,
                "try_first_pass: PAM_AUTHTOK holds no code; asking",
            );
            return Ok(FirstPass::Ask { judged: false });
        };
        let judgement = match api.judge(
            &self.config.db,
            self.user.as_str(),
            &answer,
            self.att.login.source(),
            self.grace_period(),
        ) {
            Ok(j) => j,
            Err(e) => return self.unavailable(&e).map(FirstPass::Decided),
        };
        match judgement {
            Judgement::Wrong { wait, .. }
            | Judgement::Replayed { wait, .. }
            | Judgement::TokenUsed { wait, .. }
            | Judgement::ClockOff { wait, .. }
                if self.config.try_first_pass =>
            {
                self.att.log(
                    Priority::Notice,
                    "try_first_pass: the answer in PAM_AUTHTOK was refused; asking",
                );
                // The failure just counted may have started a wait.
                if wait > 0 {
                    return self.held(wait).map(FirstPass::Decided);
                }
                Ok(FirstPass::Ask { judged: true })
            }
            judgement => self.tell(judgement, digits).map(FirstPass::Decided),
        }
    }

    fn ask_and_judge(
        &mut self,
        api: &dyn FleetApi,
        digits: u8,
        authtok_judged: bool,
    ) -> Result<Verdict> {
        let answer = self
            .att
            .ask_code(self.config.asked_prompt(), self.config.echo_code)?;
        let again = self
            .att
            .login
            .authtok
            .is_some_and(|earlier| input::same(earlier.as_bytes(), answer.as_bytes()));
        if again && authtok_judged {
            return self.att.deny(
                Priority::Notice,
                "the answer is the one in PAM_AUTHTOK, judged already; not counted again",
                messages::WRONG_CODE,
            );
        }
        if again {
            // Never sent to the database: it is the password.
            return self.att.deny(
                Priority::Notice,
                "the answer to the code prompt is the password (the application cannot ask \
                 for a code); not counted",
                messages::PASSWORD_AT_CODE_PROMPT,
            );
        }
        let keyword = self.config.reset_keyword.as_str();
        let accepts = Accepts {
            digits,
            reset: Some(keyword),
            invert: false,
            recovery: true,
        };
        let canonical = match input::parse(&answer, accepts) {
            Answer::Code(code) => zeroize::Zeroizing::new(code.as_str().to_owned()),
            Answer::Recovery(recovery) => recovery,
            Answer::Reset => return self.file_reset(api),
            Answer::Empty => {
                return self.att.deny(
                    Priority::Notice,
                    "no code entered",
                    &messages::malformed(digits),
                )
            }
            // Whatever else was typed stays on this host: it may be a password.
            Answer::Malformed | Answer::Invert => {
                return self.att.deny(
                    Priority::Notice,
                    "the answer is not a code",
                    &messages::malformed(digits),
                )
            }
        };
        match api.judge(
            &self.config.db,
            self.user.as_str(),
            &canonical,
            self.att.login.source(),
            self.grace_period(),
        ) {
            Ok(judgement) => self.tell(judgement, digits),
            Err(e) => self.unavailable(&e),
        }
    }

    /// What the database said of a grace period, logged as the file store logs it: a
    /// verdict if the login ends here, `None` if a code is to be asked.
    fn in_grace(&mut self, grace: Option<Grace>) -> Result<Option<Verdict>> {
        let (Some(address), Some(grace)) = (self.grace.clone(), grace) else {
            return Ok(None);
        };
        match grace {
            Grace::Granted { .. } => return Ok(Some(self.att.grace_given(&address))),
            Grace::BackingOff => self.att.grace_withheld(&address, Withheld::BackingOff),
            Grace::ResetPending => self.att.grace_withheld(&address, Withheld::ResetPending),
            // Nothing to give (an enrollment gone meanwhile is told by the code's round).
            Grace::Lapsed | Grace::NotEnrolled => {}
            // Nothing the user can change, and it would be said at every login.
            Grace::Off | Grace::NotAnAddress if !self.config.debug => {}
            Grace::Off => self.att.log(
                Priority::Debug,
                "no grace period: the fleet database's grace_period_max is 0",
            ),
            Grace::NotAnAddress => self.att.log(
                Priority::Debug,
                &format!(
                    "no grace period: the fleet database does not take {address} for an address"
                ),
            ),
            Grace::InvalidUser => return self.invalid_user().map(Some),
        }
        Ok(None)
    }

    /// Says what the database decided.
    fn tell(&mut self, judgement: Judgement, digits: u8) -> Result<Verdict> {
        match judgement {
            Judgement::Accepted => {
                self.att.log(
                    Priority::Notice,
                    "accepted: code verified by the fleet database",
                );
                Ok(Verdict::Success)
            }
            Judgement::Recovered { left } => {
                let priority = if left <= 2 {
                    Priority::Warning
                } else {
                    Priority::Notice
                };
                self.att
                    .log(priority, &format!("accepted: recovery code, {left} left"));
                let left = usize::try_from(left).unwrap_or(usize::MAX);
                let _ = self.att.conv.info(&messages::recovery_accepted(left));
                Ok(Verdict::Success)
            }
            Judgement::Wrong { failures, wait } => {
                self.failed("wrong code", messages::WRONG_CODE, failures, wait)
            }
            Judgement::Replayed { failures, wait } => self.failed(
                "code already used (replay)",
                messages::REPLAYED,
                failures,
                wait,
            ),
            Judgement::TokenUsed { failures, wait } => self.failed(
                "token code already used or passed over (replay)",
                messages::TOKEN_CODE_USED,
                failures,
                wait,
            ),
            Judgement::ClockOff {
                offset,
                failures,
                wait,
            } => {
                let seconds = offset.unsigned_abs();
                let way = if offset > 0 { "ahead" } else { "behind" };
                let reason =
                    format!("wrong code; it matches a time {seconds} s {way} (the phone's clock?)");
                self.failed(&reason, &messages::clock_off(seconds), failures, wait)
            }
            Judgement::Removed => self.att.deny(
                Priority::Notice,
                "the enrollment was removed while the code was being entered",
                messages::NOT_ENROLLED,
            ),
            Judgement::BackingOff { wait } => self.held(wait),
            Judgement::Malformed => self.att.deny(
                Priority::Notice,
                "the fleet database did not take the answer for a code; not counted",
                &messages::malformed(digits),
            ),
            Judgement::InvalidUser => self.invalid_user(),
        }
    }

    /// A counted failure: the reason with the count, and the wait if this one started it.
    fn failed(&mut self, reason: &str, tell: &str, failures: u32, wait: u64) -> Result<Verdict> {
        let mut tell = tell.to_owned();
        if wait > 0 {
            tell = format!("{tell} {}", messages::locked_out(wait));
        }
        self.att.deny(
            Priority::Notice,
            &format!("{reason}, {failures} consecutive failure(s) from this source"),
            &tell,
        )
    }

    fn held(&mut self, wait: u64) -> Result<Verdict> {
        self.att.deny(
            Priority::Notice,
            &format!("rate limited for {wait} more seconds"),
            &messages::locked_out(wait),
        )
    }

    /// Backing off: no code is judged, but the reset keyword is still taken (the lost phone
    /// may be why the codes were wrong).
    fn held_but_may_ask_for_help(&mut self, api: &dyn FleetApi, wait: u64) -> Result<Verdict> {
        let keyword = self.config.reset_keyword.clone();
        if keyword.is_empty() || self.config.use_first_pass {
            return self.held(wait);
        }
        let _ = self
            .att
            .conv
            .error(&messages::held_may_reset(wait, &keyword));
        let answer = self
            .att
            .ask_code(&self.config.prompt, self.config.echo_code)?;
        let accepts = Accepts {
            digits: 0,
            reset: Some(keyword.as_str()),
            invert: false,
            recovery: false,
        };
        match input::parse(&answer, accepts) {
            Answer::Reset => self.file_reset(api),
            _ => self.held(wait),
        }
    }

    /// Flow 3: one pending request per user, at the database; the login is denied either way.
    fn file_reset(&mut self, api: &dyn FleetApi) -> Result<Verdict> {
        let login = self.att.login;
        let filed = api.request_reset(
            &self.config.db,
            self.user.as_str(),
            login.service,
            login.rhost.unwrap_or(""),
            login.tty.unwrap_or(""),
        );
        match filed {
            Ok(ResetFiled::Filed) => {
                self.att.log(
                    Priority::Notice,
                    "denied: filed a request to reset MFA (lost device) with the fleet database",
                );
                let request = ResetRequest {
                    version: reset::FORMAT_VERSION,
                    user: self.user.to_string(),
                    time: self.att.host.now(),
                    service: login.service.to_owned(),
                    rhost: login.rhost.unwrap_or("").to_owned(),
                    tty: login.tty.unwrap_or("").to_owned(),
                };
                self.att.notify(self.config, &request);
            }
            Ok(ResetFiled::Pending) => self.att.log(
                Priority::Info,
                "denied: asked again to reset MFA; a request is pending",
            ),
            Ok(ResetFiled::NotEnrolled) => {
                return self.att.deny(
                    Priority::Notice,
                    "asked to reset MFA, but the enrollment was removed meanwhile",
                    messages::NOT_ENROLLED,
                )
            }
            Ok(ResetFiled::InvalidUser) => return self.invalid_user(),
            Err(e) => return self.unavailable(&e),
        }
        let _ = self.att.conv.info(&self.config.reset_message);
        Ok(Verdict::AuthErr)
    }

    /// Flow 1 inside the login, with a key the database makes and judges. The host shows the
    /// key (it has to), and so sees it; it never decides that a code was right.
    fn set_up(&mut self, api: &dyn FleetApi, grant: Grant) -> Result<Verdict> {
        if !self.att.conv.can_show_text() {
            return self.att.deny(
                Priority::Notice,
                "in-band enrollment needs a conversation that shows text (PAM_SILENT was set)",
                messages::ENROLL_NEEDS_TEXT,
            );
        }
        let key = match api.setup_begin(&self.config.db, self.user.as_str()) {
            Ok(SetupBegun::Ready(key)) => key,
            Ok(SetupBegun::Enrolled) => {
                return self.att.deny(
                    Priority::Notice,
                    "in-band enrollment lost a race: the user was enrolled meanwhile",
                    messages::ENROLL_RACED,
                )
            }
            Ok(SetupBegun::TicketExpired) => {
                return self.att.deny(
                    Priority::Notice,
                    "the approved reset has expired",
                    messages::TICKET_EXPIRED,
                )
            }
            Ok(SetupBegun::NotAllowed) => {
                return self.att.deny(
                    Priority::Notice,
                    "the fleet database refused set-up (no approved reset for this host and \
                     inband_enroll off, or a set-up under way through another host)",
                    messages::NOT_ENROLLED,
                )
            }
            Ok(SetupBegun::InvalidUser) => return self.invalid_user(),
            Err(e) => return self.unavailable(&e),
        };
        let enrollment = Enrollment {
            digits: key.digits,
            period: key.period,
            algorithm: key.algorithm,
            ..Enrollment::standard(key.secret, self.att.host.now())
        };
        let ceremony = Ceremony::new(
            enrollment,
            ceremony::issuer(self.config, None),
            self.user,
            self.config,
        )?;
        let mut light = self.config.qr_light_background;
        if let Err(e) = inband::introduce(self.att, &ceremony, light) {
            return self.att.deny(
                Priority::Notice,
                &format!("in-band enrollment needs a conversation that shows text: {e}"),
                messages::ENROLL_NEEDS_TEXT,
            );
        }
        let accepts = ceremony.accepts(true);
        for _ in 0..MAX_PROMPTS {
            let typed = self
                .att
                .ask_code(messages::ENROLL_PROMPT, self.config.echo_code)?;
            let code = match input::parse(&typed, accepts) {
                Answer::Invert => {
                    light = !light;
                    inband::show(self.att, ceremony.qr(), light)?;
                    continue;
                }
                Answer::Code(code) => zeroize::Zeroizing::new(code.as_str().to_owned()),
                // Not a code: wrong, as the ceremony counts it, without sending what it was.
                _ => zeroize::Zeroizing::new(String::new()),
            };
            let finished = api.setup_finish(&self.config.db, self.user.as_str(), &code);
            match finished {
                Ok(SetupFinished::Enrolled { recovery_codes }) => {
                    self.att.log(
                        Priority::Notice,
                        match grant {
                            Grant::Ticket => {
                                "enrolled in the login through the fleet database, after an \
                                 approved reset"
                            }
                            Grant::Policy => {
                                "enrolled in the login through the fleet database \
                                 (unenrolled=enroll, inband_enroll on)"
                            }
                        },
                    );
                    // The database's words on the user's terminal: escaped, and no more of
                    // them than a set of recovery codes can be.
                    let shown: Vec<zeroize::Zeroizing<String>> = recovery_codes
                        .iter()
                        .take(recovery::MAX_COUNT)
                        .map(|c| zeroize::Zeroizing::new(shown(c, SHOWN_CODE_LEN)))
                        .collect();
                    let codes: Vec<&str> = shown.iter().map(|c| c.as_str()).collect();
                    inband::tell_enrolled(self.att, &codes);
                    return Ok(Verdict::Success);
                }
                Ok(SetupFinished::Wrong { tries_left }) => {
                    let left = usize::try_from(tries_left).unwrap_or(0);
                    let _ = self.att.conv.error(&messages::enroll_wrong(left));
                }
                Ok(SetupFinished::Failed) => {
                    return self.att.deny(
                        Priority::Notice,
                        "in-band enrollment failed: no correct code; nothing was saved",
                        messages::ENROLL_FAILED,
                    )
                }
                Ok(SetupFinished::Expired) | Ok(SetupFinished::NoSetup) => {
                    return self.att.deny(
                        Priority::Notice,
                        "in-band enrollment ended by the fleet database (it took too long, or \
                         was begun again in another login); nothing was saved",
                        messages::SET_UP_ENDED,
                    )
                }
                Ok(SetupFinished::Raced) => {
                    return self.att.deny(
                        Priority::Notice,
                        "in-band enrollment lost a race: the user was enrolled meanwhile",
                        messages::ENROLL_RACED,
                    )
                }
                Ok(SetupFinished::TicketExpired) => {
                    return self.att.deny(
                        Priority::Notice,
                        "in-band enrollment refused: the approved reset expired or was \
                         withdrawn meanwhile",
                        messages::TICKET_EXPIRED,
                    )
                }
                Ok(SetupFinished::NotAllowed) => {
                    return self.att.deny(
                        Priority::Notice,
                        "in-band enrollment refused: the fleet database no longer allows it",
                        messages::NOT_ENROLLED,
                    )
                }
                Err(e) => return self.unavailable(&e),
            }
        }
        self.att.deny(
            Priority::Notice,
            "in-band enrollment failed: no correct code; nothing was saved",
            messages::ENROLL_FAILED,
        )
    }

    /// The database refused a name the host's rules took (they should agree).
    fn invalid_user(&mut self) -> Result<Verdict> {
        self.att.log(
            Priority::Error,
            &format!(
                "denied: the fleet database does not take {} as a user name",
                printable(self.user.as_str())
            ),
        );
        Ok(Verdict::UserUnknown)
    }

    /// The database could not be asked: deny, unless the break-glass rule applies.
    ///
    /// Break-glass: a member of `break_glass_group` passes with the password alone (this
    /// module comes after the password step), logged at err. Only when no server could be
    /// reached at all ([`Error::FleetUnreachable`]): a database that answers, however badly
    /// (a statement past the deadline because another host holds the user's row, the
    /// verdict `error`, a token without a counter, an unknown schema), is no reason to let
    /// anyone by. Only at the console: no remote host, a local terminal (see
    /// [`crate::ports::Login::on_local_terminal`]), and the login program runs as root
    /// (login, a display manager), not as a setuid program started by another user (su,
    /// sudo), whose caller may be anywhere.
    fn unavailable(&mut self, why: &Error) -> Result<Verdict> {
        let unreachable = matches!(why, Error::FleetUnreachable(_));
        if let (Some(group), true) = (&self.config.break_glass_group, unreachable) {
            let login = self.att.login;
            let at_console =
                login.rhost.is_none() && login.on_local_terminal() && self.att.host.uid() == 0;
            if at_console {
                match self.att.host.in_group(self.user.as_str(), group) {
                    Ok(Some(true)) => {
                        self.att.log(
                            Priority::Error,
                            &format!(
                                "accepted WITHOUT A CODE (break-glass): {why}; the user is a \
                                 member of break_glass_group {} at the console",
                                printable(group)
                            ),
                        );
                        return Ok(Verdict::Success);
                    }
                    Ok(Some(false)) => {}
                    Ok(None) => self.att.log(
                        Priority::Warning,
                        &format!(
                            "break_glass_group {} does not exist; nobody may pass",
                            printable(group)
                        ),
                    ),
                    Err(e) => self.att.log(
                        Priority::Error,
                        &format!("cannot tell who is in break_glass_group: {e}"),
                    ),
                }
            }
        }
        self.att.log(Priority::Error, &format!("denied: {why}"));
        let _ = self.att.conv.error(messages::UNAVAILABLE);
        Ok(Verdict::ServiceErr)
    }
}

/// The canonical form of an answer to send to the database, if it is a code (or, with the
/// enrollment's digits, a recovery code). Anything else is never sent: it may be a password.
fn submittable(answer: &str, digits: u8) -> Option<zeroize::Zeroizing<String>> {
    let accepts = Accepts {
        digits,
        reset: None,
        invert: false,
        recovery: true,
    };
    match input::parse(answer, accepts) {
        Answer::Code(code) => Some(zeroize::Zeroizing::new(code.as_str().to_owned())),
        Answer::Recovery(recovery) => Some(recovery),
        _ => None,
    }
}
