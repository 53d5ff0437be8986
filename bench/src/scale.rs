//! Scale: memory per session in the memory stores, and W3 on SQL stores holding 1,000 versus
//! 1,000,000 sessions.
//!
//! Memory is measured in a child process per library (this binary, run with
//! `--measure-memory LIBRARY COUNT`), so that one library's freed memory cannot be reused by the
//! next: the child reads its resident set size (VmRSS), creates COUNT sessions through the
//! library's layer (W4 requests, in-process), reads it again and prints the difference per
//! session. That includes whatever the library keeps per session (the record, its map entry,
//! indexes, expiry bookkeeping) and allocator overhead.

use std::process::Command;
use std::time::Duration;

use sqlx::Connection as _;

use crate::apps::{self, Subject};
use crate::env::Env;
use crate::load::{self, Meters, Plan, Target};
use crate::model::{Backend, Harness, Library, Outcome, Workload};

/// Bytes per session measured by a child process, or why not.
pub fn memory_per_session(library: Library, count: u64) -> Result<f64, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let output = Command::new(exe)
        .args(["--measure-memory", library.tag(), &count.to_string()])
        .output()
        .map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!(
            "the measuring process failed ({}): {}",
            output.status,
            stderr.lines().last().unwrap_or("")
        ));
    }
    stdout
        .trim()
        .parse()
        .map_err(|_| format!("the measuring process printed {stdout:?}"))
}

/// The child's side: prints bytes per session.
pub async fn measure_memory_here(tag: &str, count: u64) -> Result<f64, String> {
    let library = Library::PEERS
        .into_iter()
        .find(|l| l.tag() == tag)
        .ok_or_else(|| format!("unknown library {tag:?}"))?;
    let env = Env::from_environment();
    let subject = apps::build(&env, library, Backend::Memory).await?;
    let target = Target::InProcess(subject.router.clone());
    // One session first, so lazily built structures are not counted per session.
    target.get("/w4", None).await?;
    let before = resident_bytes()?;
    let workers = 4;
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let target = target.clone();
            tokio::spawn(async move {
                for _ in (w..count).step_by(workers as usize) {
                    let reply = target.get("/w4", None).await?;
                    if !reply.status.is_success() {
                        return Err(format!("/w4 answered {}", reply.status));
                    }
                }
                Ok::<_, String>(())
            })
        })
        .collect();
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    let after = resident_bytes()?;
    drop(subject);
    Ok(after.saturating_sub(before) as f64 / count as f64)
}

fn resident_bytes() -> Result<u64, String> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or("no VmRSS in /proc/self/status")?;
    Ok(kib * 1024)
}

/// W3 on cloakroom's `backend` store with `small` and then `large` sessions stored.
pub async fn w3_by_size(
    env: &Env,
    backend: Backend,
    small: u64,
    large: u64,
    plan: Plan,
) -> (Outcome, Outcome) {
    let purpose = "_scale";
    let store = match apps::cloakroom::open_store(env, backend, purpose).await {
        Ok(store) => store,
        Err(e) => return (Err(e.clone()), Err(e)),
    };
    let subject = apps::cloakroom::subject(store, backend, Vec::new());
    let table = env.name(Library::Cloakroom, purpose);
    let small_result = match fill(env, backend, &table, 0, small).await {
        Ok(()) => w3(&subject, plan).await,
        Err(e) => Err(e),
    };
    let large_result = match fill(env, backend, &table, small, large).await {
        Ok(()) => w3(&subject, plan).await,
        Err(e) => Err(e),
    };
    (small_result, large_result)
}

async fn w3(subject: &Subject, plan: Plan) -> Outcome {
    let meters = Meters {
        ops: subject.ops.clone(),
        redis: None,
    };
    load::measure(subject, Workload::W3, Harness::InProcess, plan, meters).await
}

/// Inserts sessions numbered `from..to` straight into cloakroom's table (documented schema:
/// `id` = 64 hex digits, `data` JSON, times in Unix milliseconds), live for a day.
async fn fill(env: &Env, backend: Backend, table: &str, from: u64, to: u64) -> Result<(), String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_millis() as i64;
    let expires = now + Duration::from_secs(24 * 3600).as_millis() as i64;
    let e = |e: sqlx::Error| format!("filling {table}: {e}");
    const CHUNK: u64 = 200_000;
    let chunks = (from..to)
        .step_by(CHUNK as usize)
        .map(|s| (s + 1, (s + CHUNK).min(to)));
    match backend {
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&env.postgres_url)
                .await
                .map_err(e)?;
            for (first, last) in chunks {
                let sql = format!(
                    "INSERT INTO \"{table}\" (id, user_id, data, created_at, updated_at, expires_at) \
                     SELECT md5('cb' || g) || md5('bc' || g), NULL, '{{\"n\": 0}}'::jsonb, \
                     {now}, {now}, {expires} FROM generate_series({first}::bigint, {last}::bigint) g"
                );
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                    .execute(&mut conn)
                    .await
                    .map_err(e)?;
            }
            let sql = format!("ANALYZE \"{table}\"");
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await
                .map_err(e)?;
        }
        Backend::Sqlite => {
            let path = env.sqlite_path(Library::Cloakroom, "_scale");
            let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                .await
                .map_err(e)?;
            for (first, last) in chunks {
                let sql = format!(
                    "WITH RECURSIVE c(g) AS (SELECT {first} UNION ALL SELECT g + 1 FROM c WHERE g < {last}) \
                     INSERT INTO \"{table}\" (id, user_id, data, created_at, updated_at, expires_at) \
                     SELECT printf('%064x', g), NULL, '{{\"n\":0}}', {now}, {now}, {expires} FROM c"
                );
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                    .execute(&mut conn)
                    .await
                    .map_err(e)?;
            }
            // Fold the fill's write-ahead log into the database now, so that the measured
            // requests do not pay for copying it (the store's connections keep the log open).
            sqlx::raw_sql("ANALYZE; PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&mut conn)
                .await
                .map_err(e)?;
        }
        other => return Err(format!("no bulk fill for {other}")),
    }
    Ok(())
}
