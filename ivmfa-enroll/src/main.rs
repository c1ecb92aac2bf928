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
mod reset;

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
        Command::Reset(ResetAction::List) => reset::list(&context()?)?,
        Command::Reset(ResetAction::Approve { user }) => reset::approve(&context()?, user)?,
        Command::Reset(ResetAction::Deny { user, reason }) => {
            reset::deny(&context()?, user, reason)?
        }
        // The doctor reports a broken config as a finding instead of stopping at it.
        Command::Check { pam_dir, sshd } => {
            context::require_root()?;
            return Ok(check::run(config, store, pam_dir, sshd));
        }
    }
    Ok(true)
}
