//! `cloakroom purge [--batch N]`: deletes expired sessions, batch after batch.
//!
//! Each batch is one atomic store call, so stopping at any point leaves a consistent store and
//! running again carries on. The first Ctrl-C lets the current batch finish and stops; a second
//! one stops at once.

use std::io::{IsTerminal as _, Write};
use std::pin::pin;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressState, ProgressStyle};

use crate::args::PurgeArgs;
use crate::error::CliError;
use crate::store::Target;

/// The exit code after Ctrl-C, as shells report a process ended by SIGINT.
const INTERRUPTED: u8 = 130;
/// How often plain progress lines are printed when stderr is not a terminal.
const LINE_EVERY: Duration = Duration::from_secs(1);

pub async fn run(
    target: &Target,
    args: &PurgeArgs,
    out: &mut impl Write,
) -> Result<ExitCode, CliError> {
    // Sessions that expire while this runs are left for the next run: the work is bounded.
    let now = super::now();
    let batch = usize::try_from(args.batch).unwrap_or(usize::MAX);
    let started = Instant::now();
    let mut progress = Progress::new();
    let mut purged: u64 = 0;
    let mut ctrl_c = pin!(interrupt());
    let mut interrupted = false;
    loop {
        let mut call = pin!(target.store.purge_expired(now, batch));
        let result = if interrupted {
            call.await
        } else {
            tokio::select! {
                result = &mut call => result,
                () = &mut ctrl_c => {
                    interrupted = true;
                    progress.note("interrupted: finishing the current batch (Ctrl-C again stops at once)");
                    tokio::select! {
                        result = &mut call => result,
                        () = interrupt() => {
                            progress.finish();
                            eprintln!("stopped after purging {purged} expired sessions; run `cloakroom purge` again to continue");
                            return Ok(ExitCode::from(INTERRUPTED));
                        }
                    }
                }
            }
        };
        let n = match result {
            Ok(n) => n,
            Err(error) => {
                progress.finish();
                if purged > 0 {
                    eprintln!("purged {purged} expired sessions before the error");
                }
                return Err(target.fail(error));
            }
        };
        purged = purged.saturating_add(n);
        progress.update(purged, out)?;
        if n < u64::from(args.batch) || interrupted {
            break;
        }
    }
    progress.finish();
    let elapsed = started.elapsed().as_secs_f64();
    let noun = if purged == 1 { "session" } else { "sessions" };
    if interrupted {
        writeln!(
            out,
            "interrupted after purging {purged} expired {noun} in {elapsed:.2}s; run \
             `cloakroom purge` again to continue"
        )?;
        return Ok(ExitCode::from(INTERRUPTED));
    }
    writeln!(
        out,
        "purged {purged} expired {noun} from the {} store in {elapsed:.2}s",
        target.store.name()
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Resolves on Ctrl-C; never, if the signal cannot be listened for.
async fn interrupt() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// A spinner with a count on a terminal, plain lines at most once a second otherwise.
enum Progress {
    Bar(ProgressBar),
    Lines { last: Instant },
}

impl Progress {
    fn new() -> Self {
        if !std::io::stderr().is_terminal() {
            return Self::Lines {
                last: Instant::now(),
            };
        }
        let bar = ProgressBar::new_spinner();
        let style = ProgressStyle::with_template(
            "{spinner} purged {human_pos} expired sessions ({rate}) {elapsed}",
        )
        .map(|style| {
            style.with_key(
                "rate",
                |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:.0}/s", state.per_sec());
                },
            )
        })
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(120));
        Self::Bar(bar)
    }

    fn update(&mut self, purged: u64, out: &mut impl Write) -> std::io::Result<()> {
        match self {
            Self::Bar(bar) => bar.set_position(purged),
            Self::Lines { last } => {
                if last.elapsed() >= LINE_EVERY {
                    *last = Instant::now();
                    writeln!(out, "purged {purged} expired sessions so far")?;
                }
            }
        }
        Ok(())
    }

    fn note(&self, message: &str) {
        match self {
            Self::Bar(bar) => bar.println(message),
            Self::Lines { .. } => eprintln!("{message}"),
        }
    }

    fn finish(&self) {
        if let Self::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}
