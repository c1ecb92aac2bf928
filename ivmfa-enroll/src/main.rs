//! ivmfa-enroll: the administrators' and users' tool. See `ivmfa-enroll --help` and the
//! man page ivmfa-enroll(1).
#![forbid(unsafe_code)]

mod add_host;
mod admin;
mod check;
mod check_fleet;
mod cli;
mod context;
mod enroll;
mod error;
mod fleet;
mod fleet_admin;
mod fleet_enroll;
mod import;
mod migrate;
mod picture;
mod reset;
mod schema;
mod token;
mod watch;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command, DbAction, ResetAction};
use context::Target;
use error::CliError;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// An IP address for `check --from`: it goes into sshd's `-C` spec, where a name or a
/// comma would change what is asked.
fn address(text: &str) -> Result<std::net::IpAddr, CliError> {
    text.parse().map_err(|_| {
        CliError::new(
            error::Kind::Usage,
            format!("--from {text:?} is not an IP address"),
            "give an address such as 10.1.2.3 or 2001:db8::1, as sshd sees the client",
        )
    })
}

/// `Ok(false)`: the command ran and found something wrong (check).
fn run(cli: &Cli) -> Result<bool, CliError> {
    let config = cli.config.as_deref();
    let store = cli.store.as_deref();
    let login = fleet::Login {
        user: cli.db_user.as_deref(),
        cert: cli.db_cert.as_deref(),
        key: cli.db_key.as_deref(),
    };
    let target = || Target::resolve(config, store, &login);
    let fleet_only = |command: &str| Target::fleet(config, store, &login, command);
    match &cli.command {
        Command::Enroll(args) => match target()? {
            Target::Files(ctx) => enroll::run(&ctx, args)?,
            Target::Fleet(admin) => fleet_enroll::enroll(&admin, args)?,
        },
        Command::Status { user } => match target()? {
            Target::Files(ctx) => admin::status(&ctx, user.as_deref())?,
            Target::Fleet(admin) => fleet_admin::status(&admin, user.as_deref())?,
        },
        Command::Remove { user } => match target()? {
            Target::Files(ctx) => admin::remove(&ctx, user)?,
            Target::Fleet(admin) => fleet_admin::remove(&admin, user)?,
        },
        Command::RecoveryCodes { user, count } => match target()? {
            Target::Files(ctx) => admin::recovery_codes(&ctx, user, *count)?,
            Target::Fleet(admin) => fleet_admin::recovery_codes(&admin, user, *count)?,
        },
        Command::ImportGoogleAuthenticator { user, file, force } => match target()? {
            Target::Files(ctx) => import::run(&ctx, user, file.as_ref(), *force)?,
            Target::Fleet(admin) => {
                fleet_enroll::import_google(&admin, user, file.as_ref(), *force)?
            }
        },
        Command::Resync {
            user,
            first,
            second,
        } => match target()? {
            Target::Files(ctx) => token::resync(&ctx, user, first, second)?,
            Target::Fleet(admin) => fleet_admin::resync(&admin, user, first, second)?,
        },
        Command::ImportOath { user, file, force } => match target()? {
            Target::Files(ctx) => import::oath(&ctx, user, file, *force)?,
            Target::Fleet(admin) => fleet_enroll::import_oath(&admin, user, file, *force)?,
        },
        Command::Reset(ResetAction::List) => match target()? {
            Target::Files(ctx) => reset::list(&ctx)?,
            Target::Fleet(admin) => fleet_admin::reset_list(&admin)?,
        },
        // A single server's store has no hosts to name.
        Command::Reset(ResetAction::Approve {
            user,
            host: Some(host),
        }) => fleet_admin::reset_approve(
            &fleet_only("reset approve --host")?,
            user,
            Some(host.as_str()),
        )?,
        Command::Reset(ResetAction::Approve { user, host: None }) => match target()? {
            Target::Files(ctx) => reset::approve(&ctx, user)?,
            Target::Fleet(admin) => fleet_admin::reset_approve(&admin, user, None)?,
        },
        Command::Reset(ResetAction::Deny { user, reason }) => match target()? {
            Target::Files(ctx) => reset::deny(&ctx, user, reason)?,
            Target::Fleet(admin) => fleet_admin::reset_deny(&admin, user, reason)?,
        },
        Command::Reset(ResetAction::Watch { exec, poll }) => {
            watch::run(&fleet_only("reset watch")?, exec, *poll)?
        }
        Command::Db(action) => match action {
            DbAction::Install => schema::install(&fleet_only("db install")?)?,
            DbAction::Upgrade => schema::upgrade(&fleet_only("db upgrade")?)?,
            DbAction::AddHost {
                name,
                address,
                password_file,
            } => add_host::run(
                &fleet_only("db add-host")?,
                name,
                address.as_deref(),
                password_file.as_deref(),
            )?,
            DbAction::Migrate { from, replace } => {
                migrate::run(&fleet_only("db migrate")?, from, *replace)?
            }
            DbAction::Fence => fence(&fleet_only("db fence")?)?,
            DbAction::PruneAudit { keep_days } => {
                prune_audit(&fleet_only("db prune-audit")?, *keep_days)?
            }
        },
        // The doctor reports a broken config as a finding instead of stopping at it.
        Command::Check {
            pam_dir,
            sshd,
            users,
            from,
        } => {
            context::require_root()?;
            let logins = check::Logins {
                users: if users.is_empty() {
                    None
                } else {
                    Some(
                        users
                            .iter()
                            .map(|u| context::user_name(u))
                            .collect::<Result<_, _>>()?,
                    )
                },
                from: from.iter().map(|a| address(a)).collect::<Result<_, _>>()?,
            };
            return Ok(check::run(config, store, pam_dir, sshd, &logins));
        }
    }
    Ok(true)
}

/// `db prune-audit`: the audit rows older than `keep_days` days deleted.
fn prune_audit(admin: &fleet::Admin, keep_days: u32) -> Result<(), CliError> {
    let pruned = admin
        .round(|db| db.admin_prune_audit(keep_days))?
        .ok_or_else(|| {
            CliError::new(
                error::Kind::Usage,
                format!("the database refused --keep-days {keep_days}"),
                "give a number of days from 1 to 3650",
            )
        })?;
    admin.audit(
        ivmfa_sys::Level::Notice,
        &format!("pruned {pruned} audit rows older than {keep_days} days"),
    );
    println!("Pruned: deleted {pruned} audit row(s) older than {keep_days} day(s).");
    Ok(())
}

/// `db fence`: every watermark raised past now, after a failover.
fn fence(admin: &fleet::Admin) -> Result<(), CliError> {
    let raised = admin.round(|db| db.admin_fence())?;
    admin.audit(
        ivmfa_sys::Level::Notice,
        &format!("fenced: raised {raised} watermarks"),
    );
    println!(
        "Fenced: raised the watermark of {raised} user(s) to now plus their window; no code \
         used before now works again. Users wait at most a step or two for a fresh code."
    );
    Ok(())
}
