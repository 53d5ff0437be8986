//! What is measured: libraries, stores, workloads, harnesses, and the figures of one cell.

use std::fmt;

use hdrhistogram::Histogram;

/// A session library under test, or none (the same router without a session layer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Library {
    Cloakroom,
    TowerSessions,
    AxumSession,
    /// axum_session with its in-process session cache turned off (memory lifetime zero), so that
    /// every request reads the database, as the other two libraries do.
    AxumSessionNoCache,
    /// The same routes with no session layer: the ceiling.
    Plain,
}

impl Library {
    pub const PEERS: [Library; 3] = [
        Library::Cloakroom,
        Library::TowerSessions,
        Library::AxumSession,
    ];

    /// Everything the grid measures: the three libraries and axum_session without its cache.
    pub const MEASURED: [Library; 4] = [
        Library::Cloakroom,
        Library::TowerSessions,
        Library::AxumSession,
        Library::AxumSessionNoCache,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Library::Cloakroom => "cloakroom",
            Library::TowerSessions => "tower-sessions",
            Library::AxumSession => "axum_session",
            Library::AxumSessionNoCache => "axum_session, no cache",
            Library::Plain => "no session layer",
        }
    }

    /// A library by name (`axum_session-nocache` for the cacheless variant) or tag.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.replace('_', "-").to_ascii_lowercase();
        Self::MEASURED.into_iter().find(|l| {
            let name = match l {
                Library::AxumSessionNoCache => "axum-session-nocache".to_owned(),
                other => other.name().replace('_', "-"),
            };
            name == s || l.tag() == s
        })
    }

    /// A short tag for table names and key prefixes.
    pub fn tag(self) -> &'static str {
        match self {
            Library::Cloakroom => "cr",
            Library::TowerSessions => "ts",
            Library::AxumSession => "as",
            Library::AxumSessionNoCache => "an",
            Library::Plain => "none",
        }
    }
}

impl fmt::Display for Library {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where sessions are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Backend {
    Memory,
    Sqlite,
    Postgres,
    MySql,
    Redis,
}

impl Backend {
    pub const ALL: [Backend; 5] = [
        Backend::Memory,
        Backend::Sqlite,
        Backend::Postgres,
        Backend::MySql,
        Backend::Redis,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Backend::Memory => "memory",
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
            Backend::MySql => "MariaDB",
            Backend::Redis => "Redis",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|b| b.name().eq_ignore_ascii_case(s) || b.short() == s)
    }

    fn short(self) -> &'static str {
        match self {
            Backend::Memory => "memory",
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
            Backend::MySql => "mysql",
            Backend::Redis => "redis",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What each virtual user's requests do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Workload {
    /// The handler never touches the session (the visitor has one).
    W1,
    /// Reads one key; reads keep the session alive (sliding idle timeout).
    W2,
    /// Reads a counter and writes it back plus one.
    W3,
    /// No cookie: every request makes a new session with one key.
    W4,
}

impl Workload {
    pub const ALL: [Workload; 4] = [Workload::W1, Workload::W2, Workload::W3, Workload::W4];

    pub fn path(self) -> &'static str {
        match self {
            Workload::W1 => "/w1",
            Workload::W2 => "/w2",
            Workload::W3 => "/w3",
            Workload::W4 => "/w4",
        }
    }

    /// Whether virtual users log in first and send their cookie.
    pub fn has_cookie(self) -> bool {
        self != Workload::W4
    }

    pub fn describe(self) -> &'static str {
        match self {
            Workload::W1 => "W1 untouched",
            Workload::W2 => "W2 read, sliding expiry",
            Workload::W3 => "W3 read-modify-write",
            Workload::W4 => "W4 new session",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|w| format!("{w:?}").eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

/// How requests reach the router.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Harness {
    /// `tower::ServiceExt::oneshot` on the router: the library's own cost.
    InProcess,
    /// A real axum server on 127.0.0.1 and a keep-alive HTTP/1 client in the same process.
    Http,
}

impl Harness {
    pub const ALL: [Harness; 2] = [Harness::InProcess, Harness::Http];

    pub fn name(self) -> &'static str {
        match self {
            Harness::InProcess => "in-process",
            Harness::Http => "HTTP over loopback",
        }
    }
}

/// The figures of one measured cell.
#[derive(Clone, Debug)]
pub struct Measured {
    /// Latencies of the measured requests, kept so that rounds of one cell merge exactly.
    pub histogram: Histogram<u64>,
    /// Every request sent, warm-up included: the weight of the per-request figures below.
    pub sent: u64,
    pub requests: u64,
    pub errors: u64,
    pub seconds: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// Mean latency over every request sent (warm-up included, like the store counters).
    pub mean_us: f64,
    /// Store operations per request, counted at the library's store trait.
    pub ops_per_request: Option<f64>,
    /// Time spent inside store operations per request, in µs.
    pub store_us_per_request: Option<f64>,
    /// Commands per request seen by the Redis server (`INFO commandstats`).
    pub server_ops_per_request: Option<f64>,
}

impl Measured {
    /// The share of the mean latency spent inside store calls, in percent. The time in store
    /// is estimated from one call in eight, so it is capped at the whole.
    pub fn store_share(&self) -> Option<f64> {
        let us = self.store_us_per_request?;
        (self.mean_us > 0.0).then(|| (100.0 * us / self.mean_us).min(100.0))
    }

    /// Folds another round of the same cell into this one: requests and seconds add up,
    /// latencies merge, and per-request figures are weighted by the requests each round sent.
    pub fn merge(&mut self, other: &Measured) {
        // Both come from `new_histogram`, so their bounds agree and adding cannot fail.
        let _ = self.histogram.add(&other.histogram);
        let sent = (self.sent + other.sent).max(1) as f64;
        let weigh = |a: Option<f64>, b: Option<f64>| {
            Some((a? * self.sent as f64 + b? * other.sent as f64) / sent)
        };
        self.mean_us = weigh(Some(self.mean_us), Some(other.mean_us)).unwrap_or_default();
        self.ops_per_request = weigh(self.ops_per_request, other.ops_per_request);
        self.store_us_per_request = weigh(self.store_us_per_request, other.store_us_per_request);
        self.server_ops_per_request =
            weigh(self.server_ops_per_request, other.server_ops_per_request);
        self.sent += other.sent;
        self.requests += other.requests;
        self.errors += other.errors;
        self.seconds += other.seconds;
        self.p50_us = self.histogram.value_at_quantile(0.50) as f64 / 1000.0;
        self.p99_us = self.histogram.value_at_quantile(0.99) as f64 / 1000.0;
    }

    pub fn throughput(&self) -> f64 {
        if self.seconds > 0.0 {
            self.requests as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// A measured cell, or why it could not be measured.
pub type Outcome = Result<Measured, String>;

/// The two correctness checks for one library and store.
#[derive(Clone, Debug)]
pub struct Correctness {
    /// Keys still there after 20 concurrent requests each set a different key.
    pub keys_kept: Result<u32, String>,
    /// Whether a session came back after logout through a write that was in flight.
    pub resurrected: Result<bool, String>,
}
