//! `cloakroom stats`: what the store can tell about its sessions.

use std::io::Write;

use cloakroom::StoreStats;
use serde_json::Value;

use crate::args::StatsArgs;
use crate::error::CliError;
use crate::output::{clean, relative, time, write_json};
use crate::store::Target;

pub async fn run(target: &Target, args: &StatsArgs, out: &mut impl Write) -> Result<(), CliError> {
    let now = super::now();
    let stats = target
        .store
        .stats(now, args.top)
        .await
        .map_err(|e| target.fail(e))?;
    let name = target.store.name();
    if args.format.json {
        // Every field the library reports, including ones added after this CLI was written.
        let mut value = serde_json::to_value(&stats).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut value {
            map.insert("store".into(), Value::from(name));
        }
        write_json(out, &value)?;
        return Ok(());
    }
    print_text(out, name, &stats, now)?;
    Ok(())
}

fn print_text(
    out: &mut impl Write,
    name: &str,
    stats: &StoreStats,
    now: cloakroom::Timestamp,
) -> std::io::Result<()> {
    writeln!(out, "store                       {name}")?;
    writeln!(out, "live sessions               {}", stats.live)?;
    let mut more = false;
    if let Some(expired) = stats.expired {
        more = true;
        writeln!(out, "expired, not yet purged     {expired}")?;
    }
    if let Some(oldest) = stats.oldest {
        more = true;
        writeln!(
            out,
            "oldest live session         {} ({})",
            time(oldest),
            relative(oldest, now)
        )?;
    }
    if let Some(newest) = stats.newest {
        more = true;
        writeln!(
            out,
            "newest live session         {} ({})",
            time(newest),
            relative(newest, now)
        )?;
    }
    if let Some(p) = stats.data_bytes {
        more = true;
        writeln!(
            out,
            "data bytes per session      p50 {}  p90 {}  p99 {}  max {}",
            p.p50, p.p90, p.p99, p.max
        )?;
    }
    if !stats.top_users.is_empty() {
        more = true;
        writeln!(out, "users with the most sessions:")?;
        let width = stats
            .top_users
            .iter()
            .map(|(user, _)| clean(user).chars().count())
            .max()
            .unwrap_or(0);
        for (user, n) in &stats.top_users {
            writeln!(out, "  {:<width$}  {n}", clean(user))?;
        }
    }
    if !more {
        writeln!(out, "(the {name} store reports only the live count)")?;
    }
    Ok(())
}
