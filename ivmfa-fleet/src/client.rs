//! The login's database client: [`FleetApi`] over [`connect_calling`], one fresh connection
//! per round, closed before the module asks the user anything.

use ivmfa_core::config::FleetDb;
use ivmfa_core::error::Result;
use ivmfa_core::fleet_api::{FleetApi, Judgement, ResetFiled, SetupBegun, SetupFinished, Standing};
use tokio_postgres::Row;

use crate::call::Call;
use crate::host_api::{self, Submitted};
use crate::session::{connect_calling, Session};
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

    /// One round: connect and make `first` (within the deadline), go on with `then`, close.
    fn round<T>(
        &self,
        db: &FleetDb,
        first: &Call,
        then: impl FnOnce(Row, &mut Session) -> std::result::Result<T, crate::Error>,
    ) -> Result<T> {
        let settings = Settings::for_host(db, self.euid)?;
        let (mut session, row) = connect_calling(&settings, &self.tls, first)?;
        let answer = then(row, &mut session)?;
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
        let first = host_api::before_prompt(user, source, take_notice);
        self.round(db, &first, |row, s| {
            let mut standing = host_api::standing(&row)?;
            if grace_period > 0 && standing.asks_for_a_code() {
                let row = s.call(&host_api::grace(user, source, grace_period))?;
                standing.grace = Some(host_api::granted(&row)?);
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
        let first = host_api::submit(user, answer, source, grace_period);
        self.round(db, &first, |row, s| {
            match host_api::submitted(first.function, &row)? {
                // Two statements, each committed: the failure counted by the first stands
                // whatever the second says.
                Submitted::Pending(attempt) => {
                    host_api::judgement(&s.call(&host_api::verify(attempt))?)
                }
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
        let first = host_api::request_reset(user, service, rhost, tty);
        self.round(db, &first, |row, _| host_api::reset_filed(&row))
    }

    fn setup_begin(&self, db: &FleetDb, user: &str) -> Result<SetupBegun> {
        self.round(db, &host_api::setup_begin(user), |row, _| {
            host_api::setup_begun(&row)
        })
    }

    fn setup_finish(&self, db: &FleetDb, user: &str, answer: &str) -> Result<SetupFinished> {
        self.round(db, &host_api::setup_finish(user, answer), |row, _| {
            host_api::setup_finished(&row)
        })
    }
}
