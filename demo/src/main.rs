//! `cargo run --release -p cloakroom-demo`, then open http://127.0.0.1:3000.

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::Parser as _;
use cloakroom_demo::options::Options;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let options = Options::parse();
    match cloakroom_demo::server::run(options).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("cloakroom-demo: {error}");
            ExitCode::FAILURE
        }
    }
}
