//! What a run found, as text for people and JSON for machines.

use std::collections::BTreeMap;
use std::fmt::Write;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::lease::{self, LeaseReport};
use crate::verify::{Limit, Verdict, Verification};

/// Latency summary, milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Latency {
    /// From a histogram of microseconds.
    pub fn from_hist(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let ms = |us: u64| us as f64 / 1e3;
        Latency {
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1e3,
        }
    }
}

/// One second of a sustained run (counts are for that second only).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Interval {
    /// End of the interval, seconds since the start.
    pub t_s: f64,
    pub sent: u64,
    pub done: u64,
    pub allowed: u64,
    pub throttled: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// The last, partial interval: up to the end of the run (calls still in flight at the deadline included).
    pub tail: bool,
}

impl Interval {
    /// The one-line form printed every second.
    pub fn line(&self) -> String {
        let t = if self.tail {
            format!("{:>6.1}s", self.t_s)
        } else {
            format!("{:>6.0}s", self.t_s)
        };
        format!(
            "{t}  sent {:>7}  done {:>7}  allowed {:>7}  throttled {:>7}  errors {:>5}  p50 {:>7.2} ms  p99 {:>7.2} ms",
            self.sent,
            self.done,
            self.allowed,
            self.throttled,
            self.errors,
            self.p50_ms,
            self.p99_ms
        )
    }
}

/// One value of `{n}` (`--per-key`). Times are when the reply was read,
/// seconds since the workers were released.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct KeyReport {
    pub n: u64,
    pub allowed: u64,
    pub throttled: u64,
    pub errors: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_allowed_s: Option<f64>,
    /// Tokens (permits) beyond the bound on this key (with `--verify`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub over_admission: Option<u64>,
}

/// The result of a run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// What was called.
    pub target: String,
    /// "burst" or "sustained".
    pub mode: String,
    pub workers: u64,
    /// Burst: calls per worker.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calls_per_worker: Option<u64>,
    /// Sustained: the planned duration, seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<f64>,
    /// Sustained: the target rate, calls per second (None: as fast as possible).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_rate: Option<f64>,
    /// The seed of `{run}` and the random draws of `{n}` (`--seed` repeats them).
    pub seed: u64,
    /// From the release of the workers to the last reply, seconds.
    pub elapsed_s: f64,
    /// Ctrl-C stopped the run; counts cover completed calls only.
    pub interrupted: bool,
    pub sent: u64,
    pub done: u64,
    pub allowed: u64,
    pub throttled: u64,
    pub errors: u64,
    /// Error messages and how often each was seen.
    pub error_kinds: BTreeMap<String, u64>,
    /// Completed calls per second.
    pub rate_per_s: f64,
    pub latency: Latency,
    /// Sustained mode: one entry per second.
    pub intervals: Vec<Interval>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
    /// `--per-key`: one entry per value of `{n}` that was called, by `n`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<KeyReport>,
    /// The lease scenario: leases, renewals, kills and the recovery of their places.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease: Option<LeaseReport>,
}

/// Exit codes.
pub mod exit {
    /// The run completed (and the verification, if asked, passed).
    pub const OK: i32 = 0;
    /// The verification failed, or was inconclusive (errors, interruption).
    pub const VERIFY_FAILED: i32 = 1;
    /// Bad command line or input (bad URL, template, rule, ...).
    pub const USAGE: i32 = 2;
    /// The target could not be reached.
    pub const UNREACHABLE: i32 = 3;
    /// Interrupted by Ctrl-C (the partial report was printed).
    pub const INTERRUPTED: i32 = 130;
}

impl Report {
    /// The process exit code for this report.
    pub fn exit_code(&self) -> i32 {
        if self.interrupted {
            return exit::INTERRUPTED;
        }
        match self.verification.as_ref().map(|v| v.verdict) {
            Some(Verdict::Fail) | Some(Verdict::Inconclusive) => exit::VERIFY_FAILED,
            _ => exit::OK,
        }
    }

    /// The JSON form (`--json`).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The human form.
    pub fn to_text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "rush: {} against {}", self.mode, self.target);
        let stop = if self.interrupted {
            " (interrupted)"
        } else {
            ""
        };
        match self.calls_per_worker {
            Some(m) => {
                let _ = writeln!(
                    o,
                    "{} workers completed in {:.6} s{stop}, {} calls each, results:",
                    self.workers, self.elapsed_s, m
                );
            }
            None => {
                let rate = self
                    .target_rate
                    .map_or("as fast as possible".to_string(), |r| {
                        format!("at {r} calls/s")
                    });
                let _ = writeln!(
                    o,
                    "{} workers ran {:.3} s {rate}{stop}, results:",
                    self.workers, self.elapsed_s
                );
            }
        }
        let _ = writeln!(o, "    allowed: {}", self.allowed);
        let _ = writeln!(o, "    throttled: {}", self.throttled);
        let _ = writeln!(o, "    errors: {}", self.errors);
        for (msg, n) in &self.error_kinds {
            let _ = writeln!(o, "        {n} × {msg}");
        }
        if self.sent > self.done {
            let _ = writeln!(o, "    unfinished: {}", self.sent - self.done);
        }
        let l = &self.latency;
        let _ = writeln!(
            o,
            "latency: p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms ({} calls, {:.0} calls/s)",
            l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms, self.done, self.rate_per_s
        );
        if let Some(l) = &self.lease {
            lease::text(l, &mut o);
        }
        if let Some(v) = &self.verification {
            let verdict = match v.verdict {
                Verdict::Pass => "PASS",
                Verdict::Fail => "FAIL",
                Verdict::Inconclusive => "INCONCLUSIVE",
            };
            let _ = writeln!(o, "verification ({}): {verdict}", v.limit);
            let unit = match v.limit {
                Limit::Bucket { .. } => "tokens",
                Limit::Pacing { .. } => "permits",
                Limit::Concurrency { .. } => "places",
            };
            let keys = format!("{} key{}", v.keys, if v.keys == 1 { "" } else { "s" });
            if let (Some(peak), Limit::Concurrency { limit }) = (v.peak_in_use, v.limit) {
                let server = self
                    .lease
                    .as_ref()
                    .and_then(|l| l.server_in_use_max)
                    .map_or(String::new(), |m| {
                        format!("; the LEASE replies said at most {m} in use")
                    });
                let _ = writeln!(
                    o,
                    "    peak {peak} places held at once, mean {:.2} (lower bounds: each lease from its reply to its release, or to its expiry if not released; over {keys}; bound: limit {limit}{server})",
                    v.mean_in_use.unwrap_or(0.0)
                );
                let fencing = match v.fencing_errors {
                    Some(0) | None => "increasing on every key, none granted twice".to_string(),
                    Some(n) => format!("{n} granted twice or out of order"),
                };
                let _ = writeln!(o, "    lease ids: {fencing}");
            } else {
                let _ = writeln!(
                    o,
                    "    admitted {} {unit} of an ideal {} (efficiency {:.1}%) over {keys}",
                    v.admitted,
                    v.ideal,
                    v.efficiency * 100.0,
                );
            }
            if let (Some(p), Limit::Bucket { capacity, .. }) = (v.peak_burst, v.limit) {
                let _ = writeln!(
                    o,
                    "    peak burst {p:.2} tokens (admitted minus rps × window, over every window; bound: capacity {capacity})"
                );
            }
            if let Some(g) = v.min_gap_ms {
                let _ = writeln!(o, "    closest permits {g} ms apart");
            }
            if v.over_admission > 0 || v.allow_excess > 0 || self.errors > 0 {
                let allowed = if v.allow_excess > 0 {
                    format!(" (allowed: {} {unit})", v.allow_excess)
                } else {
                    String::new()
                };
                let _ = writeln!(
                    o,
                    "    over-admission: {} {unit} beyond the bound on {} key{}{allowed}",
                    v.over_admission,
                    v.over_admission_keys,
                    if v.over_admission_keys == 1 { "" } else { "s" }
                );
            }
            if v.keys_violated > 0 {
                let _ = writeln!(o, "    {} key(s) broke the bound:", v.keys_violated);
                for x in &v.violations {
                    if x.excess > 0 {
                        let _ = writeln!(
                            o,
                            "      key n={} (+{} {unit}): {}",
                            x.key, x.excess, x.detail
                        );
                    } else {
                        let _ = writeln!(o, "      key n={}: {}", x.key, x.detail);
                    }
                }
            }
            for note in &v.notes {
                let _ = writeln!(o, "    note: {note}");
            }
        }
        if !self.keys.is_empty() {
            let secs = |t: Option<f64>| t.map_or("-".to_string(), |t| format!("{t:.3}"));
            let _ = writeln!(
                o,
                "per key (times: s since the start):\n{:>10} {:>9} {:>9} {:>7} {:>11} {:>10} {:>12} {:>6}",
                "n",
                "allowed",
                "throttled",
                "errors",
                "first error",
                "last error",
                "last allowed",
                "over"
            );
            for k in &self.keys {
                let _ = writeln!(
                    o,
                    "{:>10} {:>9} {:>9} {:>7} {:>11} {:>10} {:>12} {:>6}",
                    k.n,
                    k.allowed,
                    k.throttled,
                    k.errors,
                    secs(k.first_error_s),
                    secs(k.last_error_s),
                    secs(k.last_allowed_s),
                    k.over_admission.map_or("-".to_string(), |x| x.to_string())
                );
            }
        }
        o
    }
}
