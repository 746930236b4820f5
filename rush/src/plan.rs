//! What a run is: the shape of the load, the keys, the checks. `cli`
//! builds a [`Plan`] from the flags; `run` carries it out; `collect`
//! reads it to label the report.

use std::time::Duration;

use crate::lease::LeasePlan;
use crate::target::Connector;
use crate::template::KeyRange;
use crate::verify::VerifyConfig;

/// How the load is shaped.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    /// Every worker makes `calls` calls as fast as it can, all released at once.
    Burst { calls: u64 },
    /// Workers call for `duration`, as fast as possible or at `rate` calls/s in total.
    Sustained {
        duration: Duration,
        rate: Option<f64>,
    },
}

/// How `{n}` is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyOrder {
    Random,
    Sequential,
}

/// Release the workers `lead` before the next multiple of `period` on the wall clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Align {
    pub period: Duration,
    pub lead: Duration,
}

/// Where the report's live parts go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Ui {
    /// Print one line per second to stdout (sustained mode).
    pub lines: bool,
    /// Draw a progress bar on stderr.
    pub progress: bool,
}

/// Everything a run needs.
#[derive(Clone, Debug)]
pub struct Plan {
    pub connector: Connector,
    pub mode: Mode,
    pub workers: u64,
    pub keys: KeyRange,
    pub key_order: KeyOrder,
    /// Tokens each call asks for (what the verifier counts).
    pub tokens: u64,
    pub verify: Option<VerifyConfig>,
    pub align: Option<Align>,
    pub seed: u64,
    pub notes: Vec<String>,
    /// Report each value of `{n}` on its own (`--per-key`).
    pub per_key: bool,
    /// The lease scenario (LEASE, or `--rule lease`): acquire, hold, release.
    pub lease: Option<LeasePlan>,
}
