//! Command-line options.

use std::path::PathBuf;
use std::time::Duration;

use crate::load::Plan;
use crate::model::{Backend, Harness, Library, Workload};

pub const USAGE: &str = "\
usage: cargo run --release -p cloakroom-bench -- [--quick] [options]

  --quick               a few minutes: short cells (default: the full run)
  --out DIR             where benchmarks.md and benchmarks.svg go (default: docs/)
  --users N             virtual users per cell
  --seconds S           measured seconds per cell
  --rounds N            split each cell into N rounds, libraries taking turns (default 5, quick 2)
  --stores LIST         e.g. memory,redis (default: memory,sqlite,postgres,mysql,redis)
  --workloads LIST      e.g. W1,W3 (default: all)
  --harness NAME        in-process or http (default: both)
  --libs LIST           e.g. cloakroom,tower-sessions (default: all, with axum_session-nocache)
  --no-correctness      skip the correctness checks
  --no-scale            skip the scale measurements
  --no-ceiling          skip the router without a session layer (e.g. to profile one cell)
  --scale-sessions N    sessions for the scale measurements (default 1000000)

Services: CLOAKROOM_POSTGRES_URL (postgres://postgres@127.0.0.1:5432/test),
CLOAKROOM_MYSQL_URL (mysql://root@127.0.0.1:3306/test), CLOAKROOM_REDIS_URL
(redis://127.0.0.1:6379).";

#[derive(Clone, Debug)]
pub struct Options {
    pub quick: bool,
    pub out: PathBuf,
    pub plan: Plan,
    pub harnesses: Vec<Harness>,
    pub workloads: Vec<Workload>,
    pub backends: Vec<Backend>,
    pub libraries: Vec<Library>,
    pub correctness: bool,
    pub scale: bool,
    /// Measure the router without a session layer next to each store's cells.
    pub ceiling: bool,
    pub memory_sessions: u64,
    pub scale_small: u64,
    pub scale_large: u64,
    pub scale_plan: Plan,
}

impl Options {
    pub fn parse(args: &[String]) -> Result<Self, String> {
        let quick = args.iter().any(|a| a == "--quick");
        let mut options = Self::defaults(quick);
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = || {
                args.next()
                    .cloned()
                    .ok_or_else(|| format!("{arg} needs a value"))
            };
            match arg.as_str() {
                "--quick" => {}
                "--out" => options.out = PathBuf::from(value()?),
                "--users" => options.plan.users = number(&value()?, arg)?.max(1) as usize,
                "--seconds" => {
                    let s: f64 = value()?
                        .parse()
                        .map_err(|_| format!("{arg} needs a number of seconds"))?;
                    options.plan.measure = Duration::from_secs_f64(s.clamp(0.1, 600.0));
                }
                "--rounds" => {
                    options.plan.rounds = number(&value()?, arg)?.clamp(1, 100) as u32;
                }
                "--stores" => {
                    options.backends = list(&value()?, Backend::parse, "store")?;
                }
                "--workloads" => {
                    options.workloads = list(&value()?, Workload::parse, "workload")?;
                }
                "--harness" => {
                    options.harnesses = match value()?.as_str() {
                        "in-process" => vec![Harness::InProcess],
                        "http" => vec![Harness::Http],
                        other => return Err(format!("unknown harness {other:?}")),
                    }
                }
                "--libs" => {
                    options.libraries = list(&value()?, Library::parse, "library")?;
                }
                "--no-correctness" => options.correctness = false,
                "--no-scale" => options.scale = false,
                "--no-ceiling" => options.ceiling = false,
                "--scale-sessions" => {
                    let n = number(&value()?, arg)?.max(2 * options.scale_small);
                    options.memory_sessions = n;
                    options.scale_large = n;
                }
                other => return Err(format!("unknown option {other:?}")),
            }
        }
        Ok(options)
    }

    fn defaults(quick: bool) -> Self {
        let plan = if quick {
            Plan {
                users: 32,
                warmup: Duration::from_millis(200),
                measure: Duration::from_millis(800),
                max_requests: 2_000_000,
                rounds: 2,
            }
        } else {
            Plan {
                users: 32,
                warmup: Duration::from_secs(1),
                measure: Duration::from_secs(5),
                max_requests: 20_000_000,
                rounds: 5,
            }
        };
        Self {
            quick,
            out: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs")),
            plan,
            harnesses: Harness::ALL.to_vec(),
            workloads: Workload::ALL.to_vec(),
            backends: Backend::ALL.to_vec(),
            libraries: Library::MEASURED.to_vec(),
            correctness: true,
            scale: true,
            ceiling: true,
            memory_sessions: 1_000_000,
            scale_small: 1_000,
            scale_large: 1_000_000,
            // At least five seconds even in quick mode: the two scale cells cannot take turns
            // (the fill only grows), and next to a fill of a million rows this costs little.
            scale_plan: Plan {
                warmup: plan.warmup.max(Duration::from_secs(1)),
                measure: (plan.measure * 2).max(Duration::from_secs(5)),
                rounds: 1,
                ..plan
            },
        }
    }
}

fn number(s: &str, arg: &str) -> Result<u64, String> {
    s.replace(['_', ','], "")
        .parse()
        .map_err(|_| format!("{arg} needs a whole number, not {s:?}"))
}

fn list<T>(s: &str, parse: fn(&str) -> Option<T>, what: &str) -> Result<Vec<T>, String> {
    s.split(',')
        .filter(|x| !x.is_empty())
        .map(|x| parse(x.trim()).ok_or_else(|| format!("unknown {what} {x:?}")))
        .collect()
}
