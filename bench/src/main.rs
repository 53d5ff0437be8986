//! cloakroom-bench: cloakroom side by side with tower-sessions and axum_session.
//!
//! ```sh
//! cargo run --release -p cloakroom-bench -- --quick   # a few minutes
//! cargo run --release -p cloakroom-bench              # the full run
//! ```
//!
//! Needs PostgreSQL, MariaDB/MySQL and Redis on 127.0.0.1 (override with
//! CLOAKROOM_POSTGRES_URL, CLOAKROOM_MYSQL_URL, CLOAKROOM_REDIS_URL); a service that is down
//! shows as "—" with the reason. Writes docs/benchmarks.md and docs/benchmarks.svg.

mod apps;
mod chart;
mod cli;
mod correctness;
mod counting;
mod env;
mod load;
mod model;
mod report;
mod results;
mod scale;
mod serverstats;

use std::time::Instant;

use crate::apps::Subject;
use crate::cli::Options;
use crate::env::{Env, Leftover};
use crate::load::Meters;
use crate::model::{Backend, Harness, Library, Workload};
use crate::results::Results;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the tokio runtime: {e}");
            std::process::exit(2);
        }
    };
    if args.first().map(String::as_str) == Some("--measure-memory") {
        let tag = args.get(1).cloned().unwrap_or_default();
        let count = args.get(2).and_then(|c| c.parse().ok()).unwrap_or(0);
        match runtime.block_on(scale::measure_memory_here(&tag, count.max(1))) {
            Ok(bytes) => println!("{bytes:.1}"),
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(1);
            }
        }
        return;
    }
    let options = match Options::parse(&args) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}\n\n{}", cli::USAGE);
            std::process::exit(2);
        }
    };
    if let Err(e) = runtime.block_on(run(options, &args)) {
        eprintln!("cloakroom-bench: {e}");
        std::process::exit(1);
    }
}

async fn run(options: Options, args: &[String]) -> Result<(), String> {
    let started = Instant::now();
    let load_before = serverstats::load_average();
    let env = Env::from_environment();
    eprintln!(
        "cloakroom-bench: run {}; {} virtual users, {:?} measured per cell in {} rounds of \
         {:?} warm-up + {:?}; load average {}",
        env.run,
        options.plan.users,
        options.plan.measure,
        options.plan.rounds,
        options.plan.round().warmup,
        options.plan.round().measure,
        load_before.map_or("?".into(), |l| format!("{l:.2}"))
    );
    let mut results = Results {
        harnesses: options.harnesses.clone(),
        workloads: options.workloads.clone(),
        backends: options.backends.clone(),
        libraries: options.libraries.clone(),
        ..Results::default()
    };
    let mut leftovers: Vec<Leftover> = Vec::new();
    let subjects = build_all(&env, &options, &mut results, &mut leftovers).await;

    if options.correctness {
        for subject in &subjects {
            let c = correctness::check(subject).await;
            eprintln!(
                "correctness {} {}: keys kept {:?}, resurrected {:?}",
                subject.backend, subject.library, c.keys_kept, c.resurrected
            );
            results
                .correctness
                .insert((subject.backend, subject.library), c);
        }
    }

    measure_grid(&env, &options, &subjects, &mut results).await;
    for subject in &subjects {
        leftovers.extend(subject.all_leftovers());
    }
    drop(subjects);

    if options.scale {
        measure_scale(&env, &options, &mut results, &mut leftovers).await;
    }

    let problems = env::clean(&env, leftovers).await;
    for p in &problems {
        eprintln!("cleanup: {p}");
    }
    let info = report::RunInfo {
        command: if args.is_empty() {
            "cargo run --release -p cloakroom-bench".to_owned()
        } else {
            format!(
                "cargo run --release -p cloakroom-bench -- {}",
                args.join(" ")
            )
        },
        revision: revision(),
        date: time::OffsetDateTime::now_utc().date().to_string(),
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu: cpu_model(),
        load_before,
        load_after: serverstats::load_average(),
        users: options.plan.users,
        measure_s: options.plan.measure.as_secs_f64(),
        rounds: options.plan.rounds,
        round_warmup_s: options.plan.round().warmup.as_secs_f64(),
        minutes: started.elapsed().as_secs_f64() / 60.0,
        cleanup_problems: problems,
    };
    std::fs::create_dir_all(&options.out).map_err(|e| e.to_string())?;
    let md_path = options.out.join("benchmarks.md");
    std::fs::write(&md_path, report::markdown(&results, &info)).map_err(|e| e.to_string())?;
    let svg_path = options.out.join("benchmarks.svg");
    let caption = format!(
        "cloakroom's requests/s ÷ the peer's, same run, {} cores, {} ({})",
        info.cores,
        info.date,
        if options.quick { "--quick" } else { "full run" }
    );
    if let Err(e) = chart::draw(&results, &svg_path, &caption) {
        eprintln!("the chart could not be drawn: {e}");
    }
    eprintln!(
        "wrote {} and {} in {:.1} min",
        md_path.display(),
        svg_path.display(),
        info.minutes
    );
    Ok(())
}

/// Builds every library on every store; a store that is down gives "—" cells with the reason.
async fn build_all(
    env: &Env,
    options: &Options,
    results: &mut Results,
    leftovers: &mut Vec<Leftover>,
) -> Vec<Subject> {
    let mut subjects = Vec::new();
    for &backend in &options.backends {
        for &library in &options.libraries {
            if library == Library::AxumSessionNoCache && backend == Backend::Memory {
                // Without a database, axum_session's cache is its store.
                continue;
            }
            // Names are fixed per run, so whatever a failed build left behind is found too.
            leftovers.extend(standard_leftovers(env, library, backend));
            match apps::build(env, library, backend).await {
                Ok(subject) => subjects.push(subject),
                Err(reason) => {
                    eprintln!("{library} on {backend}: {reason}");
                    for &h in &options.harnesses {
                        for &w in &options.workloads {
                            results
                                .cells
                                .insert((h, w, backend, library), Err(reason.clone()));
                        }
                    }
                    results.correctness.insert(
                        (backend, library),
                        model::Correctness {
                            keys_kept: Err(reason.clone()),
                            resurrected: Err(reason.clone()),
                        },
                    );
                }
            }
        }
    }
    subjects
}

fn standard_leftovers(env: &Env, library: Library, backend: Backend) -> Vec<Leftover> {
    let name = env.name(library, "");
    match (library, backend) {
        (Library::Cloakroom, _) => apps::cloakroom::leftovers(env, backend, ""),
        (_, Backend::Postgres) => vec![Leftover::PostgresTable(name)],
        (_, Backend::MySql) => vec![Leftover::MySqlTable(name)],
        (Library::AxumSession | Library::AxumSessionNoCache, Backend::Redis) => {
            vec![Leftover::RedisPrefix(format!("{name}:"))]
        }
        _ => Vec::new(),
    }
}

/// Every harness × store × workload × library, libraries interleaved round by round so that
/// drift and bursts in the machine's load affect them alike.
async fn measure_grid(env: &Env, options: &Options, subjects: &[Subject], results: &mut Results) {
    let redis = serverstats::redis_connection(&env.redis_url).await.ok();
    let plain = apps::plain();
    let noop = apps::noop_layer();
    let round = options.plan.round();
    for &harness in &options.harnesses {
        for &backend in &options.backends {
            for &workload in &options.workloads {
                // The ceiling takes its turn in each round too, so that drift in the machine's
                // speed over the run does not enter the "share of no session layer" figures.
                let subjects: Vec<_> = subjects.iter().filter(|s| s.backend == backend).collect();
                let mut plain_outcome: Option<model::Outcome> = None;
                let mut noop_outcome: Option<model::Outcome> = None;
                let mut outcomes: Vec<Option<model::Outcome>> = vec![None; subjects.len()];
                for _ in 0..options.plan.rounds.max(1) {
                    if options.ceiling {
                        let outcome =
                            load::measure(&plain, workload, harness, round, Meters::default())
                                .await;
                        accumulate(&mut plain_outcome, outcome);
                        if workload == Workload::W1 {
                            let outcome =
                                load::measure(&noop, workload, harness, round, Meters::default())
                                    .await;
                            accumulate(&mut noop_outcome, outcome);
                        }
                    }
                    for (subject, total) in subjects.iter().zip(&mut outcomes) {
                        let meters = Meters {
                            ops: subject.ops.clone(),
                            redis: redis.clone().filter(|_| backend == Backend::Redis),
                        };
                        let outcome =
                            load::measure(subject, workload, harness, round, meters).await;
                        accumulate(total, outcome);
                    }
                }
                let plain_outcome = plain_outcome.unwrap_or_else(|| Err("not measured".into()));
                progress(
                    harness,
                    workload,
                    backend.name(),
                    Library::Plain,
                    &plain_outcome,
                );
                results
                    .plain
                    .insert((harness, workload, backend), plain_outcome);
                if let Some(noop_outcome) = noop_outcome {
                    if let Ok(m) = &noop_outcome {
                        eprintln!(
                            "{:<18} {workload} {:<10} a no-op layer    {:>9.0} req/s",
                            harness.name(),
                            backend.name(),
                            m.throughput()
                        );
                    }
                    results.noop.insert((harness, backend), noop_outcome);
                }
                for (subject, outcome) in subjects.iter().zip(outcomes) {
                    let outcome = outcome.unwrap_or_else(|| Err("not measured".into()));
                    progress(harness, workload, backend.name(), subject.library, &outcome);
                    results
                        .cells
                        .insert((harness, workload, backend, subject.library), outcome);
                }
            }
        }
    }
}

/// Adds one round to a cell's total; a failed round fails the cell.
fn accumulate(total: &mut Option<model::Outcome>, round: model::Outcome) {
    match (total.as_mut(), round) {
        (None, round) => *total = Some(round),
        (Some(Ok(sum)), Ok(round)) => sum.merge(&round),
        (Some(Ok(_)), Err(e)) => *total = Some(Err(e)),
        (Some(Err(_)), _) => {}
    }
}

fn progress(h: Harness, w: Workload, store: &str, l: Library, outcome: &model::Outcome) {
    match outcome {
        Ok(m) => eprintln!(
            "{:<18} {w} {store:<10} {l:<16} {:>9.0} req/s  p50 {:>7.0} µs  p99 {:>7.0} µs  ops/req {}",
            h.name(),
            m.throughput(),
            m.p50_us,
            m.p99_us,
            m.ops_per_request
                .map_or("n/a".to_owned(), |o| format!("{o:.2}"))
        ),
        Err(e) => eprintln!("{:<18} {w} {store:<10} {l:<16} —: {e}", h.name()),
    }
}

async fn measure_scale(
    env: &Env,
    options: &Options,
    results: &mut Results,
    leftovers: &mut Vec<Leftover>,
) {
    results.memory_sessions = options.memory_sessions;
    for library in Library::PEERS {
        if !options.libraries.contains(&library) {
            continue;
        }
        let count = options.memory_sessions;
        let bytes = tokio::task::spawn_blocking(move || scale::memory_per_session(library, count))
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
        eprintln!("memory {library}: {bytes:?} bytes per session");
        results.memory.insert(library, bytes);
    }
    results.scale_sizes = (options.scale_small, options.scale_large);
    for backend in [Backend::Sqlite, Backend::Postgres] {
        if !options.backends.contains(&backend) {
            continue;
        }
        leftovers.extend(apps::cloakroom::leftovers(env, backend, "_scale"));
        let started = Instant::now();
        let pair = scale::w3_by_size(
            env,
            backend,
            options.scale_small,
            options.scale_large,
            options.scale_plan,
        )
        .await;
        eprintln!(
            "scale {backend}: {:?} / {:?} req/s ({:.0} s)",
            pair.0.as_ref().map(|m| m.throughput() as u64),
            pair.1.as_ref().map(|m| m.throughput() as u64),
            started.elapsed().as_secs_f64()
        );
        results.scale.insert(backend, pair);
    }
}

/// `abc1234` or `abc1234 + uncommitted changes`, from git; "unknown" without it.
fn revision() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let Some(head) = git(&["rev-parse", "--short", "HEAD"]) else {
        return "an unknown revision".to_owned();
    };
    match git(&["status", "--porcelain", "--", "../cloakroom"]) {
        Some(changes) if !changes.is_empty() => format!("{head} + uncommitted changes"),
        _ => head,
    }
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned())
}
