//! `reset watch --exec PROGRAM`: the fleet's `notify_command`, run on the administrators'
//! side. It `LISTEN`s on `ivmfa_reset` and, whenever told (and every `--poll` seconds, for a
//! notification lost or never sent), reads the pending requests and runs PROGRAM once for
//! each one it has not run it for, with the environment the module gives its
//! `notify_command`, through the same supervised spawn (ivmfa-sys).
//!
//! A notification carries nothing and proves nothing: any role that may connect can send
//! one (docs/SCHEMA.md). It only means "look again"; the requests come from
//! `admin_reset_list()`, as the administrator's role sees them.

use std::collections::HashSet;
use std::convert::Infallible;
use std::path::Path;
use std::time::Duration;

use ivmfa_core::logtext::printable;
use ivmfa_core::reset::{notify_env, ResetRequest, FORMAT_VERSION};
use ivmfa_fleet::admin_api::PendingReset;
use ivmfa_sys::Level;

use crate::context::format_time;
use crate::error::{CliError, Kind, Result};
use crate::fleet::{require_root, Admin, STATEMENT_TIMEOUT};

/// The longest wait between two tries to connect again.
const MAX_RETRY: u64 = 60;

pub fn run(admin: &Admin, program: &Path, poll: u64) -> Result<()> {
    require_root("reset watch")?;
    if !program.is_absolute() {
        return Err(CliError::new(
            Kind::Usage,
            format!("--exec {} is not an absolute path", program.display()),
            "give the program's full path, e.g. /usr/local/sbin/mfa-ticket",
        ));
    }
    println!(
        "Watching the fleet database for reset requests; running {} for each new one. \
         Interrupt to stop.",
        program.display()
    );
    let mut seen = HashSet::new();
    // 0 until a connection has worked: a first failure is a setting to fix, not an outage
    // to wait out.
    let mut retry = 0;
    loop {
        let Err(e) = watch(admin, program, poll, &mut seen, &mut retry);
        if retry == 0 {
            return Err(e);
        }
        let line = format!("reset watch: {}; connecting again in {retry} s", e.what);
        eprintln!("{line}");
        ivmfa_sys::syslog_authpriv(c"ivmfa-enroll", Level::Warning, &line);
        std::thread::sleep(Duration::from_secs(retry));
        retry = (retry * 2).min(MAX_RETRY);
    }
}

/// One connection's worth of watching; returns only when the connection is lost.
fn watch(
    admin: &Admin,
    program: &Path,
    poll: u64,
    seen: &mut HashSet<(String, u64)>,
    retry: &mut u64,
) -> std::result::Result<Infallible, CliError> {
    let mut db = admin.connect()?;
    db.batch("LISTEN ivmfa_reset").map_err(|e| admin.error(e))?;
    db.renew_deadline(STATEMENT_TIMEOUT);
    let pending = db.admin_reset_list().map_err(|e| admin.error(e))?;
    // Connected, listening and allowed to read the desk: from here on a failure is waited
    // out, starting again at 1 s.
    *retry = 1;
    let mut first = Some(pending);
    loop {
        let pending = match first.take() {
            Some(p) => p,
            None => {
                db.renew_deadline(STATEMENT_TIMEOUT);
                db.admin_reset_list().map_err(|e| admin.error(e))?
            }
        };
        // A request answered and filed again is new again.
        seen.retain(|(user, filed)| pending.iter().any(|p| p.user == *user && p.filed == *filed));
        for request in &pending {
            if seen.insert((request.user.clone(), request.filed)) {
                run_program(admin, program, request);
            }
        }
        db.wait_notification(Duration::from_secs(poll))
            .map_err(|e| admin.error(e))?;
    }
}

/// The program, once, for `r`; its failure is said and logged, and the watch goes on.
fn run_program(admin: &Admin, program: &Path, r: &PendingReset) {
    let request = ResetRequest {
        version: FORMAT_VERSION,
        user: r.user.clone(),
        time: r.filed,
        service: r.service.clone(),
        rhost: r.rhost.clone(),
        tty: r.tty.clone(),
    };
    let mut env = notify_env(&request);
    env.push(("IVMFA_HOST", printable(&r.host)));
    let what = format!(
        "the reset request of user={} filed {} through {}",
        printable(&r.user),
        format_time(r.filed),
        printable(&r.host)
    );
    match ivmfa_sys::run_with_timeout(program, &env, admin.config.notify_timeout) {
        Ok(()) => {
            println!("{}: ran {} for {what}", now_text(), program.display());
            admin.audit(
                Level::Info,
                &format!("ran {} for {what}", program.display()),
            );
        }
        Err(why) => {
            let line = format!("{} failed for {what}: {why}", program.display());
            eprintln!("{}: {line}", now_text());
            ivmfa_sys::syslog_authpriv(c"ivmfa-enroll", Level::Error, &line);
        }
    }
}

fn now_text() -> String {
    format_time(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    )
}
