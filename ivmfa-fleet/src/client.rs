//! The login's database client: [`FleetApi`] over [`connect`], one fresh connection per
//! round, closed before the module asks the user anything.

use ivmfa_core::config::FleetDb;
use ivmfa_core::error::Result;
use ivmfa_core::fleet_api::{FleetApi, Judgement, ResetFiled, SetupBegun, SetupFinished, Standing};

use crate::host_api::Submitted;
use crate::session::{connect, Session};
use crate::settings::Settings;
use crate::tls::TlsSessions;

/// What `pam_ivmfa` hands the decision, for one PAM transaction. `euid`: the module's
/// effective uid, trusted beside root to own the host's CA, certificate, key and password
/// files. Its rounds share TLS sessions: the second resumes the first's where the server
/// (PgBouncer) allows it.
pub struct Client {
    euid: u32,
    tls: TlsSessions,
}

impl Client {
    pub fn new(euid: u32) -> Client {
        Client {
            euid,
            tls: TlsSessions::default(),
        }
    }

    /// One round: connect (within the deadline), run `calls`, close.
    fn round<T>(
        &self,
        db: &FleetDb,
        calls: impl FnOnce(&mut Session) -> std::result::Result<T, crate::Error>,
    ) -> Result<T> {
        let mut session = connect(&Settings::for_host(db, self.euid)?, &self.tls)?;
        let answer = calls(&mut session)?;
        session.close();
        Ok(answer)
    }
}

impl FleetApi for Client {
    fn before_prompt(
        &self,
        db: &FleetDb,
        user: &str,
        source: &str,
        take_notice: bool,
        grace_period: u64,
    ) -> Result<Standing> {
        self.round(db, |s| {
            let mut standing = s.before_prompt(user, source, take_notice)?;
            if grace_period > 0 && standing.asks_for_a_code() {
                standing.grace = Some(s.grace(user, source, grace_period)?);
            }
            Ok(standing)
        })
    }

    fn judge(
        &self,
        db: &FleetDb,
        user: &str,
        answer: &str,
        source: &str,
        grace_period: u64,
    ) -> Result<Judgement> {
        self.round(db, |s| {
            let submitted = if grace_period > 0 {
                s.submit_grace(user, answer, source, grace_period)?
            } else {
                s.submit(user, answer, source)?
            };
            match submitted {
                // Two statements, each committed: the failure counted by the first stands
                // whatever the second says.
                Submitted::Pending(attempt) => s.verify(attempt),
                Submitted::Done(judgement) => Ok(judgement),
            }
        })
    }

    fn request_reset(
        &self,
        db: &FleetDb,
        user: &str,
        service: &str,
        rhost: &str,
        tty: &str,
    ) -> Result<ResetFiled> {
        self.round(db, |s| s.request_reset(user, service, rhost, tty))
    }

    fn setup_begin(&self, db: &FleetDb, user: &str) -> Result<SetupBegun> {
        self.round(db, |s| s.setup_begin(user))
    }

    fn setup_finish(&self, db: &FleetDb, user: &str, answer: &str) -> Result<SetupFinished> {
        self.round(db, |s| s.setup_finish(user, answer))
    }
}
