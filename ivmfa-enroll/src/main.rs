//! ivmfa-enroll: the administrators' and users' tool. See `ivmfa-enroll --help` and the
//! man page ivmfa-enroll(1).
#![forbid(unsafe_code)]

mod admin;
mod check;
mod cli;
mod context;
mod enroll;
mod error;
mod import;
mod picture;
mod reset;
mod token;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command, ResetAction};
use context::Context;
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
    let context = || Context::new(config, store);
    match &cli.command {
        Command::Enroll(args) => enroll::run(&context()?, args)?,
        Command::Status { user } => admin::status(&context()?, user.as_deref())?,
        Command::Remove { user } => admin::remove(&context()?, user)?,
        Command::RecoveryCodes { user, count } => admin::recovery_codes(&context()?, user, *count)?,
        Command::ImportGoogleAuthenticator { user, file, force } => {
            import::run(&context()?, user, file.as_ref(), *force)?
        }
        Command::Resync {
            user,
            first,
            second,
        } => token::resync(&context()?, user, first, second)?,
        Command::ImportOath { user, file, force } => import::oath(&context()?, user, file, *force)?,
        Command::Reset(ResetAction::List) => reset::list(&context()?)?,
        Command::Reset(ResetAction::Approve { user }) => reset::approve(&context()?, user)?,
        Command::Reset(ResetAction::Deny { user, reason }) => {
            reset::deny(&context()?, user, reason)?
        }
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
