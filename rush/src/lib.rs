//! `rush`: a load tool that rushes a Redis command or an HTTP endpoint with
//! many connections and proves that a rate limit holds.
//!
//! - [`template`]: `{n}`, `{worker}`, `{call}`, `{run}` in keys, URLs, headers, bodies;
//! - [`classify`]: reply → allowed / throttled / error;
//! - [`target`]: Redis (single or cluster) and HTTP(S) connections, one per worker;
//! - [`run`]: burst and sustained modes, per-second lines, progress bar;
//! - [`collect`]: counts, latency, intervals and per-key logs of the calls, and the report;
//! - [`seed`]: `{run}` and the random draws of `{n}`, reproducible from `--seed`;
//! - [`verify`]: the bound check on admitted calls (token bucket, permits);
//! - [`lease`]: the lease scenario (acquire, hold, release or die) and its
//!   check of a concurrency limit;
//! - [`report`]: text and JSON reports, exit codes;
//! - [`cli`]: flags → a checked [`plan::Plan`] (what a run is);
//!
//! The binary is a thin wrapper around [`main_with_args`]; tests drive
//! [`execute`] in-process.

pub mod classify;
pub mod cli;
pub mod collect;
pub mod lease;
pub mod plan;
pub mod report;
pub mod run;
pub mod seed;
pub mod target;
pub mod template;
pub mod verify;

use std::io::IsTerminal;

use clap::Parser;

use crate::report::{Report, exit};
use crate::run::RunError;

/// Why [`execute`] produced no report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Bad flags or input (exit 2); clap's own message for parse errors.
    Usage(String),
    /// Could not run (exit 3, or 130 when interrupted before the start).
    Run(RunError),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Usage(e) => f.write_str(e),
            Error::Run(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Error {}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => exit::USAGE,
            Error::Run(RunError::Unreachable(_)) => exit::UNREACHABLE,
            Error::Run(RunError::Interrupted) => exit::INTERRUPTED,
        }
    }
}

/// Parses `args` (including the program name) and runs, with no live output.
pub async fn execute<I, S>(args: I) -> Result<Report, Error>
where
    I: IntoIterator<Item = S>,
    S: Into<std::ffi::OsString> + Clone,
{
    let cli = cli::Cli::try_parse_from(args).map_err(|e| Error::Usage(cli::clap_text(&e)))?;
    let (plan, _) = cli::plan(&cli, false).map_err(Error::Usage)?;
    run::run(plan, run::Ui::default(), None)
        .await
        .map_err(Error::Run)
}

/// The whole program: parse, run (Ctrl-C prints the partial report), print; returns the exit code.
pub async fn main_with_args(args: Vec<std::ffi::OsString>) -> i32 {
    let cli = match cli::Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let text = cli::clap_text(&e);
            if e.use_stderr() {
                eprint!("{text}");
                return exit::USAGE;
            }
            print!("{text}");
            return exit::OK;
        }
    };
    let (plan, out) = match cli::plan(&cli, std::io::stderr().is_terminal()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("rush: {e}");
            return exit::USAGE;
        }
    };
    if let (true, run::Mode::Sustained { duration, rate }) = (out.ui.lines, plan.mode) {
        let rate = rate.map_or("as fast as possible".to_string(), |r| {
            format!("at {r} calls/s")
        });
        println!(
            "rush: {} workers for {:.1} s {rate} against {} (Ctrl-C stops early)",
            plan.workers,
            duration.as_secs_f64(),
            plan.connector.describe()
        );
    }
    let interrupt: run::Interrupt = Box::pin(async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    });
    match run::run(plan, out.ui, Some(interrupt)).await {
        Ok(report) => {
            if out.json {
                println!("{}", report.to_json());
            } else {
                print!("{}", report.to_text());
            }
            report.exit_code()
        }
        Err(e) => {
            eprintln!("rush: {e}");
            Error::Run(e).exit_code()
        }
    }
}
