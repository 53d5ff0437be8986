//! docs/benchmarks.md: the headline ratios, the targets, the full tables and how they were
//! measured.

use std::fmt::Write as _;

use crate::model::{Backend, Harness, Library, Measured, Outcome, Workload};
use crate::results::Results;

/// Facts about the run the report states next to every figure.
pub struct RunInfo {
    pub command: String,
    /// The commit measured, and whether cloakroom/ had uncommitted changes.
    pub revision: String,
    pub date: String,
    pub cores: usize,
    pub cpu: String,
    pub load_before: Option<f64>,
    pub load_after: Option<f64>,
    pub users: usize,
    pub measure_s: f64,
    pub rounds: u32,
    pub round_warmup_s: f64,
    pub minutes: f64,
    pub cleanup_problems: Vec<String>,
}

pub fn markdown(results: &Results, info: &RunInfo) -> String {
    let mut md = String::new();
    let load = |l: Option<f64>| l.map_or("?".to_owned(), |l| format!("{l:.2}"));
    let _ = writeln!(
        md,
        "# Benchmarks: cloakroom, tower-sessions and axum_session\n\n\
         Measured on {date} on a {cores}-core machine ({cpu}), cloakroom at {rev}; 1-minute \
         load average {lb} at the start and {la} at the end (the benchmark itself keeps both \
         cores busy). Produced by\n\n```sh\n{cmd}\n```\n\n\
         in {min:.1} minutes. Every figure below comes from that one run: the libraries were \
         measured side by side, cell after cell, so **the ratios are the result**; the absolute \
         numbers depend on the machine. Each cell: {users} virtual users, each with its own \
         cookie, {meas:.1} s measured in {rounds} rounds; in each round every library of the \
         group (and the router without a session layer) takes its turn, with {warm:.1} s \
         warm-up, so that bursts of noise on the machine fall on all of them alike.\n\n\
         ![cloakroom's throughput divided by each peer's](benchmarks.svg)\n",
        date = info.date,
        rev = info.revision,
        cores = info.cores,
        cpu = info.cpu,
        lb = load(info.load_before),
        la = load(info.load_after),
        cmd = info.command,
        min = info.minutes,
        users = info.users,
        warm = info.round_warmup_s,
        rounds = info.rounds,
        meas = info.measure_s,
    );
    headline(&mut md, results);
    targets(&mut md, results);
    correctness(&mut md, results);
    scale(&mut md, results);
    for &harness in &results.harnesses {
        full_table(&mut md, results, harness);
    }
    method(&mut md);
    if !info.cleanup_problems.is_empty() {
        let _ = writeln!(md, "\n## Cleanup problems\n");
        for p in &info.cleanup_problems {
            let _ = writeln!(md, "- {p}");
        }
    }
    md
}

fn headline(md: &mut String, r: &Results) {
    let _ = writeln!(
        md,
        "## Headline: cloakroom's throughput ÷ the peer's\n\n\
         Requests per second of cloakroom divided by those of tower-sessions / axum_session on the \
         same store, workload and harness (above 1× means cloakroom is faster).\n"
    );
    for &h in &r.harnesses {
        let _ = writeln!(md, "**{}**\n", h.name());
        let _ = write!(md, "| workload |");
        for b in &r.backends {
            let _ = write!(md, " {b} |");
        }
        let _ = write!(md, "\n|---|");
        for _ in &r.backends {
            let _ = write!(md, "---|");
        }
        md.push('\n');
        for &w in &r.workloads {
            let _ = write!(md, "| {} |", w.describe());
            for &b in &r.backends {
                let ts = ratio_text(r.ratio(h, w, b, Library::TowerSessions));
                let asx = ratio_text(r.ratio(h, w, b, Library::AxumSession));
                let nc = ratio_text(r.ratio(h, w, b, Library::AxumSessionNoCache));
                let _ = write!(md, " {ts} / {asx} / {nc} |");
            }
            md.push('\n');
        }
        let _ = writeln!(
            md,
            "\nEach cell: vs tower-sessions / vs axum_session / vs axum_session without its \
             in-process cache.\n"
        );
    }
}

fn ratio_text(r: Option<f64>) -> String {
    r.map_or("—".to_owned(), |r| format!("{r:.2}×"))
}

fn pct(r: Option<f64>) -> String {
    r.map_or("—".to_owned(), |r| format!("{:.0} %", r * 100.0))
}

fn ops_text(m: Option<&Measured>) -> String {
    m.and_then(|m| m.ops_per_request)
        .map_or("—".to_owned(), |o| format!("{o:.2}"))
}

/// One line of the targets table.
struct Target {
    what: String,
    figure: String,
    met: Option<bool>,
}

fn targets(md: &mut String, r: &Results) {
    let h = Harness::InProcess;
    let mut t: Vec<Target> = Vec::new();
    let cr = |w, b| r.get((h, w, b, Library::Cloakroom));
    let ratio_target = |w: Workload, b: Backend, min: f64| {
        let ratio = r.ratio(h, w, b, Library::TowerSessions);
        let http = r.ratio(Harness::Http, w, b, Library::TowerSessions);
        let share = |l| {
            r.get((h, w, b, l))
                .and_then(Measured::store_share)
                .map_or("—".to_owned(), |p| format!("{p:.0} %"))
        };
        Target {
            what: format!("{w} {b}: ≥ {min}× tower-sessions"),
            figure: format!(
                "{} (HTTP: {}); latency in store: cloakroom {}, tower-sessions {}",
                ratio_text(ratio),
                ratio_text(http),
                share(Library::Cloakroom),
                share(Library::TowerSessions)
            ),
            met: ratio.map(|x| x >= min),
        }
    };
    t.push(ratio_target(Workload::W3, Backend::Memory, 2.0));
    let plain = r.of_plain(h, Workload::W3, Backend::Memory);
    let plain_http = r.of_plain(Harness::Http, Workload::W3, Backend::Memory);
    t.push(Target {
        what: "W3 memory: ≥ 50 % of no session layer".into(),
        figure: format!("{} (HTTP: {})", pct(plain), pct(plain_http)),
        met: plain.map(|x| x >= 0.5),
    });
    for &b in &r.backends {
        let share = r.of_plain(h, Workload::W1, b);
        let ops = cr(Workload::W1, b).and_then(|m| m.ops_per_request);
        t.push(Target {
            what: format!("W1 {b}: within 5 % of no session layer, 0 store ops"),
            figure: format!(
                "{} (HTTP: {}), {} ops/req; a layer that does nothing: {} (HTTP: {})",
                pct(share),
                pct(r.of_plain(Harness::Http, Workload::W1, b)),
                ops_text(cr(Workload::W1, b)),
                pct(r.noop_of_plain(h, b)),
                pct(r.noop_of_plain(Harness::Http, b))
            ),
            met: share.zip(ops).map(|(s, o)| s >= 0.95 && o == 0.0),
        });
    }
    for &b in &r.backends {
        let ops = cr(Workload::W2, b).and_then(|m| m.ops_per_request);
        t.push(Target {
            what: format!("W2 {b}: ≤ 1 store op per request"),
            figure: ops_text(cr(Workload::W2, b)),
            met: ops.map(|o| o <= 1.0),
        });
    }
    for b in [Backend::Redis, Backend::Postgres] {
        t.push(ratio_target(Workload::W2, b, 1.8));
    }
    for &b in &r.backends {
        let ops = cr(Workload::W3, b).and_then(|m| m.ops_per_request);
        t.push(Target {
            what: format!("W3 {b}: 2 store ops per request (load, patch)"),
            figure: ops_text(cr(Workload::W3, b)),
            met: ops.map(|o| (o - 2.0).abs() < 0.05),
        });
    }
    for (b, min) in [
        (Backend::Redis, 1.3),
        (Backend::Postgres, 1.3),
        (Backend::MySql, 1.3),
        (Backend::Sqlite, 1.5),
    ] {
        t.push(ratio_target(Workload::W3, b, min));
    }
    for &b in &r.backends {
        let ops = cr(Workload::W4, b).and_then(|m| m.ops_per_request);
        t.push(Target {
            what: format!("W4 {b}: 1 store op per request (create)"),
            figure: ops_text(cr(Workload::W4, b)),
            met: ops.map(|o| (o - 1.0).abs() < 0.05),
        });
    }
    for &b in &r.backends {
        if let Some(c) = r.correctness.get(&(b, Library::Cloakroom)) {
            let kept = c.keys_kept.as_ref().ok().copied();
            let back = c.resurrected.as_ref().ok().copied();
            t.push(Target {
                what: format!("Correctness {b}: 20 of 20 keys kept, no resurrection"),
                figure: format!(
                    "{} of 20, {}",
                    kept.map_or("—".into(), |k| k.to_string()),
                    back.map_or("—", |b| if b { "resurrected" } else { "stays ended" })
                ),
                met: kept.zip(back).map(|(k, b)| k == 20 && !b),
            });
        }
    }
    for (b, (small, large)) in &r.scale {
        let share = small
            .as_ref()
            .ok()
            .zip(large.as_ref().ok())
            .map(|(s, l)| l.throughput() / s.throughput());
        t.push(Target {
            what: format!(
                "Scale {b}: W3 at {} sessions ≥ 80 % of W3 at {}",
                thousands(r.scale_sizes.1),
                thousands(r.scale_sizes.0)
            ),
            figure: pct(share),
            met: share.map(|s| s >= 0.8),
        });
    }
    let met = t.iter().filter(|x| x.met == Some(true)).count();
    let _ = writeln!(
        md,
        "## The issue's targets\n\n\
         Judged on the in-process harness (the library's own cost); the HTTP figure is shown \
         where the target is a ratio. {met} of {} met.\n\n\
         | target | measured | met |\n|---|---|---|",
        t.len()
    );
    for x in t {
        let met = match x.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "not measured",
        };
        let _ = writeln!(md, "| {} | {} | {met} |", x.what, x.figure);
    }
    md.push_str(
        "\nIn-process, a request without a session layer takes about a microsecond, so the W1 \
         and \"share of no session layer\" figures compare sub-microsecond costs: in W1 the layer \
         does the same work whatever the store, and the spread of its W1 share across stores \
         shows how much such cells move between measurements. A tower layer that does nothing, \
         applied the same way, is the floor for W1 (the figure after each W1 row): axum clones \
         and boxes once more per request for any layer. On top of that floor, an untouched \
         request costs cloakroom one reference-counted slot for the session it might load and \
         that slot's entry in the request's extensions (axum's fourth, so the map grows): three \
         allocations, plus axum's per-request copy of the layer itself, which any layer that \
         holds its configuration pays; no store access. \"latency in store\" is the time \
         inside store calls as a share of the mean latency (see the method below).\n",
    );
    md.push('\n');
}

fn correctness(md: &mut String, r: &Results) {
    let _ = writeln!(
        md,
        "## Correctness\n\n\
         **Keys kept**: one session; 20 requests at once each load it, wait 100 ms and set their \
         own key; then the session is read back. **Logged-out session back?**: one session; a \
         request loads it and waits 100 ms before writing, and 25 ms in another request logs \
         out; then the old cookie is sent again: does it lead to a session with data? Both run \
         in-process against the same apps as the throughput cells.\n"
    );
    let libraries: Vec<Library> = r
        .libraries
        .iter()
        .copied()
        .filter(|l| *l != Library::Plain)
        .collect();
    let _ = write!(md, "| store |");
    for &l in &libraries {
        let _ = write!(md, " {l}: keys kept | {l}: back after logout? |");
    }
    md.push_str("\n|---|");
    for _ in &libraries {
        md.push_str("---|---|");
    }
    md.push('\n');
    for &b in &r.backends {
        let _ = write!(md, "| {b} |");
        for &l in &libraries {
            match r.correctness.get(&(b, l)) {
                Some(c) => {
                    let kept = match &c.keys_kept {
                        Ok(k) => format!("{k} of 20"),
                        Err(e) => format!("— ({})", short(e)),
                    };
                    let back = match &c.resurrected {
                        Ok(true) => "**yes**".to_owned(),
                        Ok(false) => "no".to_owned(),
                        Err(e) => format!("— ({})", short(e)),
                    };
                    let _ = write!(md, " {kept} | {back} |");
                }
                None => md.push_str(" — | — |"),
            }
        }
        md.push('\n');
    }
    md.push('\n');
}

fn scale(md: &mut String, r: &Results) {
    let _ = writeln!(
        md,
        "## Scale\n\n\
         **Memory per session** in each library's memory store after creating {} sessions \
         (one key each) through the layer, measured as the growth of the resident set size of a \
         separate process per library:\n\n| library | bytes per session |\n|---|---|",
        thousands(r.memory_sessions)
    );
    for (l, m) in &r.memory {
        let v = match m {
            Ok(b) => format!("{b:.0}"),
            Err(e) => format!("— ({})", short(e)),
        };
        let _ = writeln!(md, "| {l} | {v} |");
    }
    let (small, large) = r.scale_sizes;
    let _ = writeln!(
        md,
        "\n**W3 with many sessions stored** (cloakroom, in-process): the table is filled with \
         {} and then {} live sessions by direct SQL inserts, then analysed (and, for SQLite, its \
         write-ahead log folded into the database, so the requests do not pay for the fill).\n\n\
         | store | req/s at {} | req/s at {} | ratio | p99 µs at {} | p99 µs at {} |\n\
         |---|---|---|---|---|---|",
        thousands(small),
        thousands(large),
        thousands(small),
        thousands(large),
        thousands(small),
        thousands(large),
    );
    for (b, (s, l)) in &r.scale {
        let rps = |o: &Outcome| {
            o.as_ref().map_or_else(
                |e| format!("— ({})", short(e)),
                |m| format!("{:.0}", m.throughput()),
            )
        };
        let p99 = |o: &Outcome| {
            o.as_ref()
                .map_or("—".to_owned(), |m| format!("{:.0}", m.p99_us))
        };
        let ratio = s
            .as_ref()
            .ok()
            .zip(l.as_ref().ok())
            .map(|(s, l)| l.throughput() / s.throughput());
        let _ = writeln!(
            md,
            "| {b} | {} | {} | {} | {} | {} |",
            rps(s),
            rps(l),
            pct(ratio),
            p99(s),
            p99(l)
        );
    }
    md.push('\n');
}

fn full_table(md: &mut String, r: &Results, h: Harness) {
    let _ = writeln!(
        md,
        "## All cells, {}\n\n\
         | workload | store | library | req/s | p50 µs | p99 µs | store ops/req | in store | Redis cmds/req | cloakroom ÷ this |\n\
         |---|---|---|---|---|---|---|---|---|---|",
        h.name()
    );
    for &w in &r.workloads {
        for &b in &r.backends {
            if let Some(p) = r.plain.get(&(h, w, b)) {
                let _ = writeln!(
                    md,
                    "| {w} | ({b}) | no session layer | {} | |",
                    row(p, None)
                );
            }
            for &l in &r.libraries {
                let Some(o) = r.cells.get(&(h, w, b, l)) else {
                    continue;
                };
                let ratio = if l == Library::Cloakroom {
                    String::new()
                } else {
                    ratio_text(r.ratio(h, w, b, l))
                };
                let _ = writeln!(md, "| {w} | {b} | {l} | {} | {ratio} |", row(o, Some(b)));
            }
        }
    }
    md.push('\n');
}

fn row(o: &Outcome, backend: Option<Backend>) -> String {
    match o {
        Ok(m) => {
            let ops = m
                .ops_per_request
                .map_or("n/a".to_owned(), |o| format!("{o:.2}"));
            let server = match (backend, m.server_ops_per_request) {
                (Some(Backend::Redis), Some(s)) => format!("{s:.2}"),
                _ => String::new(),
            };
            let errors = if m.errors > 0 {
                format!(" ({} errors)", m.errors)
            } else {
                String::new()
            };
            format!(
                "{:.0}{errors} | {:.0} | {:.0} | {ops} | {} | {server}",
                m.throughput(),
                m.p50_us,
                m.p99_us,
                in_store(m)
            )
        }
        Err(e) => format!("— ({}) | | | | |", short(e)),
    }
}

/// Time inside store operations per request, and its share of the mean latency.
fn in_store(m: &Measured) -> String {
    match (m.store_us_per_request, m.store_share()) {
        (Some(us), Some(share)) => format!("{us:.0} µs ({share:.0} %)"),
        _ => "n/a".to_owned(),
    }
}

/// A reason short enough for a table cell, without characters that break the table.
fn short(e: &str) -> String {
    let e: String = e.replace(['|', '\n'], " ");
    if e.chars().count() > 120 {
        format!("{}…", e.chars().take(120).collect::<String>())
    } else {
        e
    }
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn method(md: &mut String) {
    md.push_str(
        "## How it is measured\n\n\
         - **The app** is the same axum router for every library (`bench/src/apps/`): W1's \
         handler does not take the session; W2 reads key `n`; W3 reads `n` and writes `n + 1`; \
         W4 gets no cookie and sets `n`. Every library has a 30-minute sliding idle timeout. \
         tower-sessions uses `Expiry::OnInactivity`, and for W2 `with_always_save(true)` (without \
         it a read does not extend its expiry). axum_session slides the expiry itself and writes \
         the database when the session changed or its database update interval passed, set to \
         cloakroom's touch interval (60 s). \
         axum_session keeps every active session in an in-process map in front of its database \
         and reads from that map, not the database, while the session is cached (60 minutes by \
         default): fast, but another app instance does not see a change or a logout until its \
         own copy expires. **axum_session, no cache** is the same library with \
         `with_memory_lifetime(Duration::ZERO)`, so that every request reads the shared store as \
         cloakroom and tower-sessions do. Peers keep their default cookie handling (tower-sessions \
         and axum_session send the id unsigned; cloakroom signs with HMAC-SHA256).\n\
         - **Stores**: cloakroom opens each store with `cloakroom::stores::connect(url)`. \
         tower-sessions uses tower-sessions-memory-store, tower-sessions-sqlx-store 0.15 \
         (sqlx 0.8) and tower-sessions-redis-store 0.16 (fred); axum_session uses its own memory \
         map alone for \"memory\", axum_session_sqlx 0.12 (sqlx 0.9) and axum_session_redispool \
         0.13. Every library gets its own table, file or key prefix, made for the run and removed \
         after it. Pool sizes are each library's defaults. The peers' SQLite pools are opened \
         with the settings cloakroom's SQLite store uses (WAL, `synchronous=NORMAL`): with \
         sqlx's defaults (rollback journal, `synchronous=FULL`) they manage under 100 requests \
         per second here, which would say nothing about the libraries.\n\
         - **In-process** sends each request through `tower::ServiceExt::oneshot` on the router \
         and reads the whole body: the cost of the library and its store, without sockets. \
         **HTTP over loopback** serves the router with `axum::serve` on 127.0.0.1 and drives it \
         with a keep-alive hyper client in the same process (both share the machine's cores).\n\
         - **req/s** counts successful requests started in the measured window; **p50 / p99** come \
         from an HdrHistogram of each request's latency as the virtual user saw it.\n\
         - **store ops/req** is counted by a wrapper around each library's store trait \
         (`bench/src/counting.rs`): cloakroom's `Store`, tower-sessions' `SessionStore`, \
         axum_session's `DatabasePool`; every call that reaches the store counts one. It is \
         \"n/a\" for axum_session's memory store, which is the layer's own map with no store \
         boundary. **in store** is the time spent inside those calls per request, and its share of \
         the mean latency: where it is near 100 %, the store's round trips decide the throughput \
         and the library's own code cannot. The wrappers cost every library the same: one boxed \
         future per store call, a count in a per-thread slot, and two clock reads for one call \
         in eight (whose time stands for the eight). **Redis cmds/req** is the change in \
         `INFO commandstats` (all commands but `INFO`) over the window, divided by requests: what Redis actually executed, including \
         any other client's traffic at the time. Redis counts the commands a Lua script runs as \
         well as the `EVALSHA` that started it, so one cloakroom store call (one round trip, one \
         script) shows as several commands.\n\
         - **no session layer** is the same router without any session layer, measured right \
         before each store's cells (its store column only says where it was measured); cloakroom's \
         W1 and W3 shares are taken against the measurement next to them.\n\
         - **a layer that does nothing** (W1 only) is that router behind a tower layer that \
         returns its inner service, applied with `Router::layer` as the session layers are: \
         axum then boxes each route's service and future once more, which is the floor of any \
         layer's W1 cost.\n\
         - A cell shown as \"—\" could not be measured; the reason follows it.\n",
    );
}
