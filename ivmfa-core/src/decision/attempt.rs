//! One login attempt as the decision modules ([`crate::auth`], [`crate::inband`]) share it:
//! who is logging in, the system, the conversation, and the two things every path does (log,
//! deny).

use zeroize::Zeroizing;

use crate::config::Config;
use crate::error::Result;
use crate::grace::{Address, Withheld};
use crate::ports::{Conversation, Host, Login, Priority, Verdict};
use crate::reset::{self, ResetRequest};

pub struct Attempt<'a, 'b> {
    pub(crate) login: &'a Login<'a>,
    pub(crate) host: &'a dyn Host,
    pub(crate) conv: &'b mut dyn Conversation,
}

impl Attempt<'_, '_> {
    pub(crate) fn log(&self, priority: Priority, what: &str) {
        self.host
            .log(priority, &format!("{}: {what}", self.login.describe()));
    }

    /// Asks for a code, showing what is typed if `echo` (`echo_code`).
    pub(crate) fn ask_code(&mut self, prompt: &str, echo: bool) -> Result<Zeroizing<String>> {
        if echo {
            self.conv.ask_shown(prompt)
        } else {
            self.conv.ask_hidden(prompt)
        }
    }

    /// The address a grace period may be kept for and given to: a remote address (never a
    /// host name, see [`Address`]) reported by an application running with real uid root,
    /// such as sshd. PAM_RHOST is whatever the application says; the caller of a setuid
    /// program (`su`, `sudo`, `pkexec`) is an ordinary user who may have chosen it, and a
    /// login without one is local. Neither gets a grace period. The same rule for the file
    /// store and the fleet database.
    pub(crate) fn grace_address(&self, config: &Config) -> Option<Address> {
        // With forward_pass the one answer carries the password for the next module, and a
        // user cannot know whether to type a code after it: no grace period there.
        if config.grace_period == 0 || config.forward_pass || self.host.uid() != 0 {
            return None;
        }
        Address::parse(self.login.rhost?)
    }

    /// A login that skips the code: logged as both backends log it.
    pub(crate) fn grace_given(&self, address: &Address) -> Verdict {
        self.log(
            Priority::Notice,
            &format!("accepted: grace period from {address}"),
        );
        Verdict::Success
    }

    /// A grace period that covers the login but is held back (`why`: one of
    /// [`crate::grace::Withheld`]); the code is asked for.
    pub(crate) fn grace_withheld(&self, address: &Address, why: Withheld) {
        self.log(
            Priority::Info,
            &format!("no grace period from {address}: {why}; a code is asked"),
        );
    }

    /// Denies with a reason for syslog and a message for the user (best effort: the login is
    /// denied whether or not the message gets through).
    pub(crate) fn deny(&mut self, priority: Priority, reason: &str, tell: &str) -> Result<Verdict> {
        self.log(priority, &format!("denied: {reason}"));
        let _ = self.conv.error(tell);
        Ok(Verdict::AuthErr)
    }

    /// Runs `notify_command`, if set, for a request just filed; its failure is logged and
    /// changes nothing for the login.
    pub(crate) fn notify(&self, config: &Config, request: &ResetRequest) {
        if let Some(program) = &config.notify_command {
            let env = reset::notify_env(request);
            match self.host.notify(program, &env, config.notify_timeout) {
                Ok(()) => self.log(Priority::Info, "notify_command ran"),
                Err(why) => self.log(
                    Priority::Warning,
                    &format!("notify_command {} failed: {why}", program.display()),
                ),
            }
        }
    }
}
