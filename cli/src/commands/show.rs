//! `cloakroom show HASH`: one session's metadata and data.

use std::io::Write;

use serde_json::Value;

use crate::args::ShowArgs;
use crate::error::CliError;
use crate::output::{clean, data_bytes, record_meta, relative, time, write_json};
use crate::store::Target;

pub async fn run(target: &Target, args: &ShowArgs, out: &mut impl Write) -> Result<(), CliError> {
    let now = super::now();
    let record = target
        .store
        .load(&args.hash, now)
        .await
        .map_err(|e| target.fail(e))?
        .ok_or_else(|| CliError::NotFound(args.hash.to_string()))?;
    if args.format.json {
        let mut value = record_meta(&args.hash, &record);
        if let Value::Object(map) = &mut value {
            map.insert("data".into(), Value::Object(record.data));
        }
        write_json(out, &value)?;
        return Ok(());
    }
    writeln!(out, "session     {}", args.hash)?;
    writeln!(
        out,
        "user        {}",
        record
            .user_id
            .as_deref()
            .map_or_else(|| "(none)".to_owned(), clean)
    )?;
    writeln!(out, "created     {}", time(record.created_at))?;
    writeln!(
        out,
        "last seen   {} ({})",
        time(record.updated_at),
        relative(record.updated_at, now)
    )?;
    writeln!(
        out,
        "expires     {} ({})",
        time(record.expires_at),
        relative(record.expires_at, now)
    )?;
    writeln!(out, "data        {} bytes", data_bytes(&record))?;
    let data = serde_json::to_string_pretty(&record.data).unwrap_or_else(|e| e.to_string());
    writeln!(out, "{data}")?;
    Ok(())
}
