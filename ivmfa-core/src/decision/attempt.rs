//! One login attempt as the decision modules ([`crate::auth`], [`crate::inband`]) share it:
//! who is logging in, the system, the conversation, and the two things every path does (log,
//! deny).

use zeroize::Zeroizing;

use crate::config::Config;
use crate::error::Result;
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
