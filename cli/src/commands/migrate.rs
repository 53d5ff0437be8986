//! `cloakroom migrate`: creates the schema if it is missing, or checks it.

use std::io::Write;

use crate::error::CliError;
use crate::store::Target;

pub async fn run(target: &Target, out: &mut impl Write) -> Result<(), CliError> {
    target.store.migrate().await.map_err(|e| target.fail(e))?;
    writeln!(
        out,
        "the {} store at {} is ready",
        target.store.name(),
        target.url
    )?;
    Ok(())
}
