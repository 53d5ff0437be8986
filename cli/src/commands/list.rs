//! `cloakroom list --user ID`: a user's live sessions.

use std::io::Write;

use serde_json::Value;

use crate::args::ListArgs;
use crate::error::CliError;
use crate::output::{record_meta, relative, time, write_json};
use crate::store::Target;

pub async fn run(target: &Target, args: &ListArgs, out: &mut impl Write) -> Result<(), CliError> {
    let now = super::now();
    let sessions = target
        .store
        .list_user(&args.user, now)
        .await
        .map_err(|e| target.fail(e))?;
    if args.format.json {
        let list = sessions
            .iter()
            .map(|(hash, record)| record_meta(hash, record))
            .collect();
        write_json(out, &Value::Array(list))?;
        return Ok(());
    }
    if sessions.is_empty() {
        writeln!(out, "user {:?} has no live sessions", args.user)?;
        return Ok(());
    }
    let width = if args.full { 64 } else { 8 };
    writeln!(
        out,
        "{:<width$}  {:<20}  {:<20}  {:<20}",
        "SESSION", "CREATED", "LAST SEEN", "EXPIRES"
    )?;
    for (hash, record) in &sessions {
        let shown = if args.full {
            hash.to_string()
        } else {
            hash.short()
        };
        writeln!(
            out,
            "{shown:<width$}  {:<20}  {:<20}  {} ({})",
            time(record.created_at),
            time(record.updated_at),
            time(record.expires_at),
            relative(record.expires_at, now),
        )?;
    }
    let n = sessions.len();
    let noun = if n == 1 { "session" } else { "sessions" };
    write!(out, "{n} live {noun} of user {:?}", args.user)?;
    if !args.full {
        write!(
            out,
            "; --full shows whole hashes for `show` and `revoke --session`"
        )?;
    }
    writeln!(out)?;
    Ok(())
}
