//! `cloakroom revoke --user ID [--except HASH]` and `cloakroom revoke --session HASH`.

use std::io::Write;

use crate::args::RevokeArgs;
use crate::error::CliError;
use crate::store::Target;

pub async fn run(target: &Target, args: &RevokeArgs, out: &mut impl Write) -> Result<(), CliError> {
    let store = &target.store;
    if let Some(hash) = &args.session {
        let gone = store.delete(hash).await.map_err(|e| target.fail(e))?;
        if gone {
            writeln!(out, "revoked session {}", hash.short())?;
        } else {
            writeln!(
                out,
                "no session {} (already ended or never existed); nothing to revoke",
                hash.short()
            )?;
        }
        return Ok(());
    }
    // clap guarantees --user when there is no --session.
    let Some(user) = &args.user else {
        return Ok(());
    };
    let n = store
        .revoke_user(user, args.except.as_ref())
        .await
        .map_err(|e| target.fail(e))?;
    let noun = if n == 1 { "session" } else { "sessions" };
    write!(out, "revoked {n} {noun} of user {user:?}")?;
    if let Some(kept) = &args.except {
        write!(out, " (kept {})", kept.short())?;
    }
    writeln!(out)?;
    Ok(())
}
