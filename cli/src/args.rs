//! The command line, as clap parses it.

use clap::{ArgGroup, Args, Parser, Subcommand};
use cloakroom::SessionHash;

const EXAMPLES: &str = "\
Examples:
  export CLOAKROOM_STORE=sqlite://sessions.db
  cloakroom stats
  cloakroom list --user alice
  cloakroom list --user alice --full          # full hashes, for the commands below
  cloakroom revoke --user alice --except $HASH # log alice out everywhere else
  cloakroom revoke --session $HASH
  cloakroom purge --batch 5000
  cloakroom --store postgres://app@db/app show $HASH

Exit codes: 0 done, 1 store error or session not found, 2 bad usage, 130 interrupted.";

/// Inspect and manage cloakroom sessions in any store.
#[derive(Debug, Parser)]
#[command(name = "cloakroom", version, after_help = EXAMPLES)]
pub struct Cli {
    /// Store URL: file:///dir, sqlite://path, postgres://…, mysql://…, redis://… (the URL your
    /// app uses, with the same ?table= or ?prefix=).
    #[arg(
        long,
        global = true,
        env = "CLOAKROOM_STORE",
        value_name = "URL",
        hide_env_values = true
    )]
    pub store: Option<String>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Live and expired sessions, sessions per user, oldest and newest, data sizes (what the
    /// store can tell).
    Stats(StatsArgs),
    /// A user's live sessions: hash, created, last seen, expiry.
    List(ListArgs),
    /// Ends sessions: all of a user's (optionally but one), or one by its hash.
    Revoke(RevokeArgs),
    /// Deletes expired sessions in batches. Safe to interrupt and run again.
    Purge(PurgeArgs),
    /// One session's metadata and data.
    Show(ShowArgs),
    /// Creates the store's schema if it is missing, or checks it.
    Migrate,
}

/// Output format of the read commands.
#[derive(Debug, Args)]
pub struct Format {
    /// Print JSON (timestamps in Unix milliseconds), for scripts.
    #[arg(long)]
    pub json: bool,
}

/// `cloakroom stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// How many users with the most sessions to show.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub top: usize,
    #[command(flatten)]
    pub format: Format,
}

/// `cloakroom list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// The user whose sessions to list.
    #[arg(long, value_name = "ID")]
    pub user: String,
    /// Show full 64-digit hashes (for `show` and `revoke --session`) instead of 8-digit prefixes.
    #[arg(long)]
    pub full: bool,
    #[command(flatten)]
    pub format: Format,
}

/// `cloakroom revoke`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("target").required(true).args(["user", "session"])))]
pub struct RevokeArgs {
    /// Revoke every session of this user.
    #[arg(long, value_name = "ID")]
    pub user: Option<String>,
    /// With --user: keep this session (e.g. the one the user is using now).
    #[arg(long, value_name = "HASH", requires = "user", conflicts_with = "session",
        value_parser = parse_hash)]
    pub except: Option<SessionHash>,
    /// Revoke the one session with this hash (64 hex digits, as `list --full` shows).
    #[arg(long, value_name = "HASH", value_parser = parse_hash)]
    pub session: Option<SessionHash>,
}

/// `cloakroom purge`.
#[derive(Debug, Args)]
pub struct PurgeArgs {
    /// Sessions deleted per store call.
    #[arg(long, value_name = "N", default_value_t = 1000,
        value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub batch: u32,
}

/// `cloakroom show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The session's hash (64 hex digits, as `list --full` shows).
    #[arg(value_name = "HASH", value_parser = parse_hash)]
    pub hash: SessionHash,
    #[command(flatten)]
    pub format: Format,
}

fn parse_hash(text: &str) -> Result<SessionHash, String> {
    text.parse().map_err(|_| {
        format!(
            "expected the 64 hex digits of a session hash (`cloakroom list --user ID --full` \
             shows them), got {} characters",
            text.chars().count()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn revoke_needs_exactly_one_target() {
        let hash = "ab".repeat(32);
        let parse = |args: &[&str]| Cli::try_parse_from(["cloakroom"].iter().chain(args));
        assert!(parse(&["revoke"]).is_err());
        assert!(parse(&["revoke", "--user", "a", "--session", &hash]).is_err());
        assert!(parse(&["revoke", "--session", &hash, "--except", &hash]).is_err());
        assert!(parse(&["revoke", "--user", "a", "--except", &hash]).is_ok());
        assert!(parse(&["revoke", "--session", "abc"]).is_err());
        assert!(parse(&["purge", "--batch", "0"]).is_err());
    }
}
