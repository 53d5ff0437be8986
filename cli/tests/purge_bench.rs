//! Benchmark, not a test: how long `cloakroom purge` takes to delete 100,000 expired sessions
//! among 1,000,000 in SQLite. Ignored by default; run it with
//!
//! ```text
//! cargo test -p cloakroom-cli --release --test purge_bench -- --ignored --nocapture
//! ```
//!
//! Knobs (environment): CLOAKROOM_BENCH_SESSIONS (default 1000000), CLOAKROOM_BENCH_EXPIRED
//! (default 100000), CLOAKROOM_BENCH_BATCHES (comma-separated `--batch` values, default 1000;
//! each purges its own copy of the filled database). Everything is written to a temporary
//! directory and removed afterwards.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cloakroom::{Clock as _, Record, SessionHash, Store, SystemClock, Timestamp};
use serde_json::json;
use sha2::{Digest as _, Sha256};

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Sessions shaped like the demo's: a user on every other one, a small cart, deadlines 30
/// minutes after the last activity. Every `stride`-th session expired an hour ago, so the
/// expired ones are spread through the table as they would be in production.
fn session(n: u64, stride: u64, now: Timestamp) -> (SessionHash, Record) {
    let hash = SessionHash::from_bytes(Sha256::digest(n.to_le_bytes()).into());
    let expired = n % stride == 0;
    let hour = Duration::from_secs(3_600);
    let created_at = Timestamp::from_unix_millis(now.as_unix_millis() - 2 * 3_600_000);
    let expires_at = if expired {
        Timestamp::from_unix_millis(now.as_unix_millis() - 3_600_000)
    } else {
        now.saturating_add(hour)
    };
    let record = Record {
        data: json!({"cart": {"items": ["coat", "hat"], "n": n}, "theme": "dark"})
            .as_object()
            .cloned()
            .unwrap_or_default(),
        user_id: (n % 2 == 0).then(|| format!("user{}", n % 50_000)),
        created_at,
        updated_at: created_at,
        expires_at,
    };
    (hash, record)
}

/// Runs the binary; returns its wall-clock time (process start included) and stdout.
async fn purge(args: &[&str]) -> (Duration, String) {
    let started = Instant::now();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_cloakroom"))
        .args(args)
        .output()
        .await
        .expect("run cloakroom");
    let elapsed = started.elapsed();
    assert!(output.status.success(), "{output:?}");
    (
        elapsed,
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --release -- --ignored --nocapture"]
async fn purge_100k_expired_among_1m_in_sqlite() {
    let total = knob("CLOAKROOM_BENCH_SESSIONS", 1_000_000);
    let expired = knob("CLOAKROOM_BENCH_EXPIRED", 100_000).clamp(1, total);
    let stride = total / expired;
    let dir = std::env::temp_dir().join(format!("cloakroom_purge_bench_{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    let url = format!("sqlite://{}", dir.join("sessions.db").display());

    // Fill through the store's own `create`, so the rows and indexes are exactly what an app
    // writes; 16 writers in parallel keep SQLite's single write lock busy.
    let store = cloakroom::stores::connect(&url).await.expect("open SQLite");
    let now = SystemClock.now();
    let started = Instant::now();
    let writers = 16;
    let mut tasks = tokio::task::JoinSet::new();
    for writer in 0..writers {
        let store: Arc<dyn Store> = Arc::clone(&store);
        tasks.spawn(async move {
            for n in (writer..total).step_by(writers as usize) {
                let (hash, record) = session(n, stride, now);
                store.create(&hash, &record).await.expect("create");
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("writer");
    }
    let expired_rows = total.div_ceil(stride);
    eprintln!(
        "filled {total} sessions ({expired_rows} expired) in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    drop(store);

    // Each batch size purges its own copy of the filled database.
    let batches = std::env::var("CLOAKROOM_BENCH_BATCHES").unwrap_or_else(|_| "1000".to_owned());
    for batch in batches.split(',').map(str::trim).filter(|b| !b.is_empty()) {
        let copy = dir.join(format!("purge-{batch}.db"));
        std::fs::copy(dir.join("sessions.db"), &copy).expect("copy the database");
        let copy_url = format!("sqlite://{}", copy.display());
        let args = ["--store", &copy_url, "purge", "--batch", batch];
        let (first, stdout) = purge(&args).await;
        eprintln!(
            "cloakroom {}: {:.2}s wall clock, process included\n  {}",
            args.join(" "),
            first.as_secs_f64(),
            stdout.lines().last().unwrap_or_default()
        );
        assert!(
            stdout.contains(&format!("purged {expired_rows} expired sessions")),
            "{stdout}"
        );
        let (second, stdout) = purge(&args).await;
        eprintln!(
            "  again, with nothing expired: {:.2}s: {}",
            second.as_secs_f64(),
            stdout.trim()
        );
        let store = cloakroom::stores::connect(&copy_url).await.expect("reopen");
        let stats = store.stats(SystemClock.now(), 0).await.expect("stats");
        assert_eq!(stats.live, total - expired_rows);
        assert_eq!(stats.expired.unwrap_or(0), 0);
        drop(store);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", copy.display()));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
