//! One module per command; [`run`] dispatches.

mod list;
mod migrate;
mod purge;
mod revoke;
mod show;
mod stats;

use std::process::ExitCode;

use cloakroom::{Clock as _, SystemClock, Timestamp};

use crate::args::{Cli, Command};
use crate::error::CliError;
use crate::store::Target;

/// Runs the command; `Ok` carries the exit code of a command that ran (0, or 130 when `purge`
/// was interrupted).
pub async fn run(cli: Cli) -> Result<ExitCode, CliError> {
    let creating = matches!(cli.command, Command::Migrate);
    let target = Target::open(cli.store.as_deref(), creating).await?;
    let mut out = std::io::stdout().lock();
    match cli.command {
        Command::Stats(args) => stats::run(&target, &args, &mut out).await,
        Command::List(args) => list::run(&target, &args, &mut out).await,
        Command::Revoke(args) => revoke::run(&target, &args, &mut out).await,
        Command::Purge(args) => return purge::run(&target, &args, &mut out).await,
        Command::Show(args) => show::run(&target, &args, &mut out).await,
        Command::Migrate => migrate::run(&target, &mut out).await,
    }?;
    Ok(ExitCode::SUCCESS)
}

/// The time that decides what is live.
fn now() -> Timestamp {
    SystemClock.now()
}
