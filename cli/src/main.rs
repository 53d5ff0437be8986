//! `cloakroom`: the admin CLI for cloakroom session stores.
//!
//! See `cli/README.md` (or `cloakroom --help`) for every command with an example. Exit codes:
//! 0 done, 1 the store failed or the session was not found, 2 bad usage (arguments, store URL, a
//! command the store cannot do), 130 interrupted.

mod args;
mod commands;
mod error;
mod output;
mod store;

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::Parser as _;

use crate::args::Cli;
use crate::error::CliError;

fn main() -> ExitCode {
    // Usage errors exit with 2, `--help` and `--version` with 0 (clap's convention).
    let cli = Cli::parse();
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return report(&CliError::Runtime(error)),
    };
    let outcome = runtime.block_on(commands::run(cli));
    // A purge stopped by a second Ctrl-C may leave a statement running on a blocking thread;
    // don't wait for it (the store keeps each batch atomic either way).
    runtime.shutdown_background();
    match outcome {
        Ok(code) => code,
        Err(error) => report(&error),
    }
}

/// Prints the error and picks the exit code.
fn report(error: &CliError) -> ExitCode {
    if !error.is_silent() {
        eprintln!("error: {error}");
    }
    ExitCode::from(error.exit_code())
}

/// Store drivers' warnings go to stderr; `RUST_LOG=debug` shows more.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}
