//! One login attempt as the decision modules ([`crate::auth`], [`crate::inband`]) share it:
//! who is logging in, the system, the conversation, and the two things every path does (log,
//! deny).

use zeroize::Zeroizing;

use crate::error::Result;
use crate::ports::{Conversation, Host, Login, Priority, Verdict};

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
}
