//! Checking admitted calls against the limit under test.
//!
//! # Token bucket (THROTTLE, or any limiter given `--limit-rps/--limit-capacity`)
//!
//! A bucket of capacity `C` refilled at `rps` tokens per second admits, in any
//! span of real time `[a, b]`, at most `C + rps·(b − a)` tokens: it holds at
//! most `C` at `a` and gains `rps·(b − a)` by `b`.
//!
//! Rush does not know when the server decided a call, only that the decision
//! happened after the client sent it and before the reply arrived. Every call
//! `k` carries two client monotonic timestamps (microseconds since the run
//! started): `send_k`, taken just before the request is handed to the
//! connection, and `recv_k`, taken when the reply has been read. The server
//! decided at some `t_k` with `send_k ≤ t_k ≤ recv_k`.
//!
//! For every pair of admitted calls `(i, j)` the window is
//! `[a, b] = [send_i, recv_j]` (the earlier call's send time to the later
//! call's receive time), and the calls counted in it are those *surely* inside:
//! `send_k ≥ a` and `recv_k ≤ b`. Their decisions all fall in `[a, b]`, so a
//! correct limiter satisfies
//!
//! ```text
//!     tokens(k : a ≤ send_k, recv_k ≤ b)  ≤  C + rps·(b − a + resolution)
//! ```
//!
//! where `resolution` (default 1 ms) covers a server that timestamps with
//! millisecond precision (two truncated timestamps can be up to 1 ms further
//! apart than the true instants). Latency only widens the window, so the test
//! can never fail a correct limiter (assuming the server's clock runs at the
//! real rate during the run, i.e. no clock step); a limiter that admits more
//! than the bound within any stretch shorter than the latency noise is caught.
//! Checking all `O(n²)` windows takes `O(n log n)` per key with a segment tree
//! (sweep `b` over receive times; each window start `a` holds
//! `rps·a + tokens counted so far`).
//!
//! The report's `peak_burst` is the largest `tokens − rps·(b − a + resolution)`
//! over all windows: a correct limiter keeps it ≤ `C`; a fresh, saturated
//! bucket shows it close to `C`.
//!
//! # Permits (PERMIT, or `--limit-interval`)
//!
//! Permits are checked on the server's own times: sorted by `valid_at_ms`, no
//! two granted permits of one key may be closer than the interval. Both are
//! integer milliseconds, and truncating two instants at least `interval` apart
//! (an integer) keeps them at least `interval` apart, so no slack is needed.
//! With `BLOCK`, a granted reply must also not arrive before its `valid_at`
//! (client wall clock, allowed `--clock-tolerance` of skew, which assumes
//! client and server share a clock: the same host or NTP).
//!
//! # Over-admission
//!
//! How far a key went beyond its bound, in whole tokens (permits): for a
//! bucket, the worst window's `tokens − (C + rps·(b − a + resolution))`,
//! rounded up (tokens are whole, so a limiter that never breaks the bound
//! admits at most its floor); for permits, how many granted permits must be
//! dropped for the rest to be `interval` apart (kept greedily in `valid_at`
//! order, which keeps the most). The report gives the total over all keys
//! and the number of keys. A failover may legitimately over-admit (a new
//! master forgets the writes that were not yet replicated), so the user may
//! allow a total (`--allow-excess`): the verdict fails only beyond it. A
//! BLOCK reply that arrives before its `valid_at` is not over-admission and
//! always fails.
//!
//! # Efficiency
//!
//! Admitted over ideal, summed over keys. Bucket: ideal =
//! `min(tokens requested, ⌊C + rps·(last receive − first send)⌋)`, the most
//! a fresh bucket could have admitted while the key was being called. Permits: ideal =
//! `min(requests, 1 + ⌊(last valid_at − first valid_at) / interval⌋)`, i.e.
//! how densely the granted slots are packed.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::classify::Permit;

/// The limit under test.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Limit {
    /// At most `capacity + rps·W` tokens in any window of `W` seconds.
    Bucket { rps: f64, capacity: f64 },
    /// Granted permits at least `interval_ms` apart (by `valid_at`).
    Pacing { interval_ms: f64 },
    /// At most `limit` places held at once (leases, weighted by cost).
    Concurrency { limit: u64 },
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Limit::Bucket { rps, capacity } => {
                write!(f, "token bucket: rps {rps}, capacity {capacity}")
            }
            Limit::Pacing { interval_ms } => write!(f, "permits: one per {interval_ms} ms"),
            Limit::Concurrency { limit } => write!(f, "concurrency: at most {limit} at once"),
        }
    }
}

/// Verification settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VerifyConfig {
    pub limit: Limit,
    /// Server timestamp resolution allowed as slack, microseconds.
    pub resolution_us: u64,
    /// Allowed client/server clock difference for BLOCK replies, milliseconds.
    pub clock_tolerance_ms: f64,
    /// The command blocks until the permit is valid (PERMIT ... BLOCK).
    pub blocking: bool,
    /// Over-admission (tokens or permits, summed over keys) that does not fail the verdict.
    pub allow_excess: u64,
}

/// One admitted call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Admit {
    /// Client monotonic time just before sending, µs since run start.
    pub send_us: u64,
    /// Client monotonic time when the reply was read, µs since run start.
    pub recv_us: u64,
    /// Tokens the call asked for.
    pub tokens: u64,
    /// The grant, for permit replies.
    pub permit: Option<Permit>,
    /// Client wall clock at receive, ms since the Unix epoch.
    pub recv_wall_ms: f64,
}

/// What the verifier needs about one key (one value of `{n}`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KeyLog {
    pub requests: u64,
    pub requested_tokens: u64,
    pub first_send_us: Option<u64>,
    pub last_recv_us: u64,
    pub admits: Vec<Admit>,
}

impl KeyLog {
    /// Records one completed (allowed or throttled) call.
    pub fn record_request(&mut self, send_us: u64, recv_us: u64, tokens: u64) {
        self.requests += 1;
        self.requested_tokens = self.requested_tokens.saturating_add(tokens);
        self.first_send_us = Some(self.first_send_us.map_or(send_us, |f| f.min(send_us)));
        self.last_recv_us = self.last_recv_us.max(recv_us);
    }
}

/// The verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Every window held the bound.
    Pass,
    /// Some window broke it.
    Fail,
    /// No violation seen, but errors or an interruption mean calls may be missing.
    Inconclusive,
}

/// One broken bound, with its witness.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Violation {
    pub key: u64,
    /// Tokens (permits) beyond the bound on this key; 0 for a BLOCK reply that came early.
    pub excess: u64,
    pub detail: String,
}

/// The verification part of a report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verification {
    pub limit: Limit,
    pub verdict: Verdict,
    pub keys: u64,
    /// Tokens (bucket) or permits (pacing) admitted.
    pub admitted: u64,
    pub ideal: u64,
    /// admitted / ideal (0 when ideal is 0).
    pub efficiency: f64,
    /// Bucket: the largest `tokens − rps·(W + resolution)` over all windows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_burst: Option<f64>,
    /// Pacing: the smallest gap between two granted permits of one key, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_gap_ms: Option<i64>,
    /// Concurrency: the most places surely held at once on one key (a lower
    /// bound of the server's peak).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_in_use: Option<u64>,
    /// Concurrency: the places surely held on average (see `lease`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean_in_use: Option<f64>,
    /// Concurrency: lease ids granted twice or out of order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fencing_errors: Option<u64>,
    pub keys_violated: u64,
    /// Tokens (bucket) or permits (pacing) beyond the bound, summed over keys.
    pub over_admission: u64,
    /// Keys with over-admission.
    pub over_admission_keys: u64,
    /// The over-admission allowed (`--allow-excess`).
    pub allow_excess: u64,
    /// Up to 10 violations, the worst first.
    pub violations: Vec<Violation>,
    pub notes: Vec<String>,
    /// Over-admission per key (keys with none are left out).
    #[serde(skip)]
    pub excess_by_key: BTreeMap<u64, u64>,
}

const MAX_LISTED: usize = 10;

/// Checks every key's admitted calls against the limit.
pub fn verify(cfg: &VerifyConfig, keys: &BTreeMap<u64, KeyLog>) -> Verification {
    let mut v = Verification {
        limit: cfg.limit,
        verdict: Verdict::Pass,
        keys: keys.len() as u64,
        admitted: 0,
        ideal: 0,
        efficiency: 0.0,
        peak_burst: None,
        min_gap_ms: None,
        peak_in_use: None,
        mean_in_use: None,
        fencing_errors: None,
        keys_violated: 0,
        over_admission: 0,
        over_admission_keys: 0,
        allow_excess: cfg.allow_excess,
        violations: Vec::new(),
        notes: Vec::new(),
        excess_by_key: BTreeMap::new(),
    };
    // A violation that is not over-admission (a BLOCK reply before its slot).
    let mut early_replies = false;
    // (excess, violation) so the worst can be listed first.
    let mut found: Vec<(f64, Violation)> = Vec::new();
    for (&key, log) in keys {
        let before = found.len();
        let mut excess = 0u64;
        match cfg.limit {
            Limit::Bucket { rps, capacity } => {
                let admitted = log
                    .admits
                    .iter()
                    .fold(0u64, |acc, a| acc.saturating_add(a.tokens));
                v.admitted = v.admitted.saturating_add(admitted);
                let span_s = log
                    .first_send_us
                    .map_or(0.0, |f| log.last_recv_us.saturating_sub(f) as f64 / 1e6);
                let ideal = (capacity + rps * span_s + 1e-9).floor().max(0.0) as u64;
                v.ideal = v.ideal.saturating_add(ideal.min(log.requested_tokens));
                let r = check_bucket(rps, capacity, cfg.resolution_us, &log.admits);
                if let Some(p) = r.peak {
                    v.peak_burst = Some(v.peak_burst.map_or(p, |q: f64| q.max(p)));
                }
                if let Some(w) = r.witness {
                    excess = whole_excess(w.excess);
                    found.push((
                        w.excess,
                        Violation {
                            key,
                            excess,
                            detail: w.detail,
                        },
                    ));
                }
            }
            Limit::Pacing { interval_ms } => {
                let mut valid: Vec<i64> = log
                    .admits
                    .iter()
                    .filter_map(|a| a.permit.map(|p| p.valid_at_ms))
                    .collect();
                valid.sort_unstable();
                v.admitted += valid.len() as u64;
                if let (Some(first), Some(last)) = (valid.first(), valid.last()) {
                    let slots = 1
                        + (last.saturating_sub(*first) as f64 / interval_ms + 1e-9).floor() as u64;
                    v.ideal += slots.min(log.requests);
                }
                // Greedy: keep a permit when it is an interval after the last kept one.
                let mut kept: Option<i64> = None;
                for &at in &valid {
                    if kept.is_none_or(|k| (at.saturating_sub(k) as f64) >= interval_ms) {
                        kept = Some(at);
                    } else {
                        excess += 1;
                    }
                }
                let mut worst: Option<(i64, i64)> = None; // (gap, valid_at of the later)
                for w in valid.windows(2) {
                    let gap = w[1].saturating_sub(w[0]);
                    v.min_gap_ms = Some(v.min_gap_ms.map_or(gap, |m| m.min(gap)));
                    if (gap as f64) < interval_ms && worst.is_none_or(|(g, _)| gap < g) {
                        worst = Some((gap, w[1]));
                    }
                }
                if let Some((gap, at)) = worst {
                    found.push((
                        interval_ms - gap as f64,
                        Violation {
                            key,
                            excess,
                            detail: format!(
                                "two permits {gap} ms apart (valid_at {} and {at}), interval is {interval_ms} ms",
                                at.saturating_sub(gap)
                            ),
                        },
                    ));
                }
                if cfg.blocking {
                    let early = log
                        .admits
                        .iter()
                        .filter_map(|a| a.permit.map(|p| (a.recv_wall_ms, p)))
                        .filter(|(recv, p)| *recv + cfg.clock_tolerance_ms < p.valid_at_ms as f64)
                        .max_by(|x, y| {
                            (x.1.valid_at_ms as f64 - x.0)
                                .total_cmp(&(y.1.valid_at_ms as f64 - y.0))
                        });
                    if let Some((recv, p)) = early {
                        let early_ms = p.valid_at_ms as f64 - recv;
                        early_replies = true;
                        found.push((
                            early_ms,
                            Violation {
                                key,
                                excess: 0,
                                detail: format!(
                                    "a BLOCK reply arrived {early_ms:.1} ms before its valid_at {} (client clock)",
                                    p.valid_at_ms
                                ),
                            },
                        ));
                    }
                }
            }
            // Leases are checked on their intervals (`lease::verify`).
            Limit::Concurrency { .. } => {}
        }
        if found.len() > before {
            v.keys_violated += 1;
        }
        if excess > 0 {
            v.over_admission = v.over_admission.saturating_add(excess);
            v.over_admission_keys += 1;
            v.excess_by_key.insert(key, excess);
        }
    }
    found.sort_by(|a, b| b.0.total_cmp(&a.0));
    v.violations = found.into_iter().take(MAX_LISTED).map(|(_, x)| x).collect();
    if early_replies || v.over_admission > cfg.allow_excess {
        v.verdict = Verdict::Fail;
    } else if v.over_admission > 0 {
        v.notes.push(format!(
            "the over-admission is within the allowed {} (--allow-excess)",
            cfg.allow_excess
        ));
    }
    v.efficiency = if v.ideal == 0 {
        0.0
    } else {
        v.admitted as f64 / v.ideal as f64
    };
    v
}

/// Whole tokens beyond a real-valued bound: a positive excess rounded up.
fn whole_excess(excess: f64) -> u64 {
    if excess > 1e-9 {
        (excess - 1e-9).ceil() as u64
    } else {
        0
    }
}

struct BucketWitness {
    excess: f64,
    detail: String,
}

struct BucketCheck {
    /// Largest `tokens − rps·(W + resolution)`.
    peak: Option<f64>,
    /// The worst window, when it broke the bound.
    witness: Option<BucketWitness>,
}

/// Checks one key's admitted calls against `capacity + rps·(W + resolution)`.
fn check_bucket(rps: f64, capacity: f64, resolution_us: u64, admits: &[Admit]) -> BucketCheck {
    let n = admits.len();
    if n == 0 {
        return BucketCheck {
            peak: None,
            witness: None,
        };
    }
    let sec = |us: u64| us as f64 / 1e6;
    let slack = rps * sec(resolution_us);
    let mut starts: Vec<u64> = admits.iter().map(|a| a.send_us).collect();
    starts.sort_unstable();
    let mut by_recv: Vec<&Admit> = admits.iter().collect();
    by_recv.sort_by_key(|a| a.recv_us);
    let mut tree = MaxTree::new(starts.iter().map(|&a| rps * sec(a)).collect());
    let mut peak = f64::NEG_INFINITY;
    let mut worst: Option<(f64, u64, u64, f64)> = None; // (excess, a, b, tokens)
    for k in by_recv {
        // All window starts a ≤ send_k now count this call.
        let last_start = starts.partition_point(|&a| a <= k.send_us);
        tree.add(0, last_start, k.tokens as f64);
        // Windows [a, recv_k] with a ≤ recv_k.
        let upto = starts.partition_point(|&a| a <= k.recv_us);
        if let Some((best, i)) = tree.max(0, upto) {
            let excess = best - rps * sec(k.recv_us) - slack;
            if excess > peak {
                peak = excess;
            }
            if excess > capacity + 1e-9 && worst.is_none_or(|w| excess > w.0) {
                let a = starts[i];
                let tokens = best - rps * sec(a);
                worst = Some((excess, a, k.recv_us, tokens));
            }
        }
    }
    let witness = worst.map(|(excess, a, b, tokens)| {
        let w = sec(b.saturating_sub(a));
        BucketWitness {
            excess: excess - capacity,
            detail: format!(
                "{tokens:.0} tokens admitted within {:.3} ms (from a send at {:.3} ms to a receive at {:.3} ms into the run); \
                 the bound is capacity {capacity} + rps {rps} × ({:.3} ms + {:.3} ms) = {:.2}",
                w * 1e3,
                sec(a) * 1e3,
                sec(b) * 1e3,
                w * 1e3,
                sec(resolution_us) * 1e3,
                capacity + rps * w + slack
            ),
        }
    });
    BucketCheck {
        peak: Some(peak),
        witness,
    }
}

/// A segment tree over `f64` with range add and range max (with the index of the max).
struct MaxTree {
    size: usize,
    max: Vec<f64>,
    arg: Vec<usize>,
    lazy: Vec<f64>,
}

impl MaxTree {
    fn new(values: Vec<f64>) -> MaxTree {
        let size = values.len().max(1);
        let mut t = MaxTree {
            size,
            max: vec![f64::NEG_INFINITY; 4 * size],
            arg: vec![0; 4 * size],
            lazy: vec![0.0; 4 * size],
        };
        t.build(1, 0, size, &values);
        t
    }

    fn build(&mut self, node: usize, lo: usize, hi: usize, values: &[f64]) {
        if hi - lo == 1 {
            self.max[node] = values.get(lo).copied().unwrap_or(f64::NEG_INFINITY);
            self.arg[node] = lo;
            return;
        }
        let mid = (lo + hi) / 2;
        self.build(2 * node, lo, mid, values);
        self.build(2 * node + 1, mid, hi, values);
        self.pull(node);
    }

    fn pull(&mut self, node: usize) {
        let (l, r) = (2 * node, 2 * node + 1);
        let (m, a) = if self.max[l] >= self.max[r] {
            (self.max[l], self.arg[l])
        } else {
            (self.max[r], self.arg[r])
        };
        self.max[node] = m + self.lazy[node];
        self.arg[node] = a;
    }

    /// Adds `x` to every position in `[from, to)`.
    fn add(&mut self, from: usize, to: usize, x: f64) {
        if from < to {
            self.add_rec(1, 0, self.size, from, to, x);
        }
    }

    fn add_rec(&mut self, node: usize, lo: usize, hi: usize, from: usize, to: usize, x: f64) {
        if to <= lo || hi <= from {
            return;
        }
        if from <= lo && hi <= to {
            self.max[node] += x;
            self.lazy[node] += x;
            return;
        }
        let mid = (lo + hi) / 2;
        self.add_rec(2 * node, lo, mid, from, to, x);
        self.add_rec(2 * node + 1, mid, hi, from, to, x);
        self.pull(node);
    }

    /// The max over `[from, to)` and where it is, or None for an empty range.
    fn max(&self, from: usize, to: usize) -> Option<(f64, usize)> {
        if from >= to {
            return None;
        }
        self.max_rec(1, 0, self.size, from, to)
    }

    fn max_rec(
        &self,
        node: usize,
        lo: usize,
        hi: usize,
        from: usize,
        to: usize,
    ) -> Option<(f64, usize)> {
        if to <= lo || hi <= from {
            return None;
        }
        if from <= lo && hi <= to {
            return Some((self.max[node], self.arg[node]));
        }
        let mid = (lo + hi) / 2;
        let l = self.max_rec(2 * node, lo, mid, from, to);
        let r = self.max_rec(2 * node + 1, mid, hi, from, to);
        let best = match (l, r) {
            (Some(l), Some(r)) => Some(if l.0 >= r.0 { l } else { r }),
            (l, r) => l.or(r),
        };
        best.map(|(m, a)| (m + self.lazy[node], a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admit(send_ms: f64, recv_ms: f64) -> Admit {
        Admit {
            send_us: (send_ms * 1e3) as u64,
            recv_us: (recv_ms * 1e3) as u64,
            tokens: 1,
            permit: None,
            recv_wall_ms: 0.0,
        }
    }

    fn bucket(rps: f64, capacity: f64) -> VerifyConfig {
        VerifyConfig {
            limit: Limit::Bucket { rps, capacity },
            resolution_us: 1000,
            clock_tolerance_ms: 2.0,
            blocking: false,
            allow_excess: 0,
        }
    }

    /// PERMIT ... BLOCK with this interval, 2 ms of clock tolerance.
    fn blocking_permits(interval_ms: f64) -> VerifyConfig {
        VerifyConfig {
            limit: Limit::Pacing { interval_ms },
            blocking: true,
            ..bucket(1.0, 1.0)
        }
    }

    fn one_key(admits: Vec<Admit>) -> BTreeMap<u64, KeyLog> {
        let mut log = KeyLog::default();
        for a in &admits {
            log.record_request(a.send_us, a.recv_us, 1);
        }
        log.admits = admits;
        BTreeMap::from([(0, log)])
    }

    /// Brute force over all windows, to cross-check the tree.
    fn brute_peak(rps: f64, res_s: f64, admits: &[Admit]) -> f64 {
        let mut peak = f64::NEG_INFINITY;
        for i in admits {
            for j in admits {
                let (a, b) = (i.send_us, j.recv_us);
                if a > b {
                    continue;
                }
                let n = admits
                    .iter()
                    .filter(|k| k.send_us >= a && k.recv_us <= b)
                    .count() as f64;
                let w = (b - a) as f64 / 1e6;
                peak = peak.max(n - rps * (w + res_s));
            }
        }
        peak
    }

    #[test]
    fn a_burst_of_capacity_passes_and_one_more_fails() {
        // 10 calls within 2 ms against capacity 10, rps 1.
        let admits: Vec<Admit> = (0..10).map(|i| admit(i as f64 * 0.1, 2.0)).collect();
        let v = verify(&bucket(1.0, 10.0), &one_key(admits.clone()));
        assert_eq!(v.verdict, Verdict::Pass, "{v:?}");
        assert!(v.peak_burst.unwrap() > 9.9);
        let mut more = admits;
        more.push(admit(1.5, 2.5));
        let v = verify(&bucket(1.0, 10.0), &one_key(more));
        assert_eq!(v.verdict, Verdict::Fail);
        assert_eq!(v.violations.len(), 1);
        assert!(
            v.violations[0].detail.contains("11 tokens"),
            "{}",
            v.violations[0].detail
        );
    }

    #[test]
    fn over_admission_is_counted_in_whole_tokens_and_may_be_allowed() {
        // 13 calls within 2 ms against capacity 10: 3 tokens beyond the bound.
        let admits: Vec<Admit> = (0..13).map(|i| admit(i as f64 * 0.1, 2.0)).collect();
        let mut keys = one_key(admits.clone());
        keys.insert(5, one_key(admits[..11].to_vec()).remove(&0).unwrap());
        keys.insert(9, one_key(admits[..10].to_vec()).remove(&0).unwrap());
        let v = verify(&bucket(1.0, 10.0), &keys);
        assert_eq!(v.verdict, Verdict::Fail);
        assert_eq!((v.over_admission, v.over_admission_keys), (4, 2));
        assert_eq!(v.excess_by_key, BTreeMap::from([(0, 3), (5, 1)]));
        assert_eq!(v.violations[0].excess, 3);
        let allow = |n| VerifyConfig {
            allow_excess: n,
            ..bucket(1.0, 10.0)
        };
        assert_eq!(verify(&allow(3), &keys).verdict, Verdict::Fail);
        let v = verify(&allow(4), &keys);
        assert_eq!((v.verdict, v.over_admission), (Verdict::Pass, 4));
        assert!(v.notes.iter().any(|n| n.contains("--allow-excess")));
    }

    #[test]
    fn latency_widens_the_window_in_the_limiters_favour() {
        // 10 rps, capacity 1: calls 100 ms apart pass.
        let paced: Vec<Admit> = (0..20)
            .map(|i| admit(i as f64 * 100.0, i as f64 * 100.0 + 0.5))
            .collect();
        assert_eq!(
            verify(&bucket(10.0, 1.0), &one_key(paced)).verdict,
            Verdict::Pass
        );
        let slow: Vec<Admit> = (0..20)
            .map(|i| admit(i as f64 * 50.0, i as f64 * 50.0 + 60.0))
            .collect();
        // Twice the rate with 60 ms latency: each adjacent pair is explained by
        // latency (2 ≤ 1 + 10 × 0.111), but 20 within 1.01 s is not.
        assert_eq!(
            verify(&bucket(10.0, 1.0), &one_key(slow.clone())).verdict,
            Verdict::Fail
        );
        // The same calls with capacity 11 are within the bound.
        assert_eq!(
            verify(&bucket(10.0, 11.0), &one_key(slow)).verdict,
            Verdict::Pass
        );
    }

    #[test]
    fn twice_the_rate_fails_over_long_windows() {
        // 20 per second evenly, against rps 10 capacity 5: fails once 10·W > 5.
        let admits: Vec<Admit> = (0..40)
            .map(|i| admit(i as f64 * 50.0, i as f64 * 50.0 + 0.3))
            .collect();
        let v = verify(&bucket(10.0, 5.0), &one_key(admits));
        assert_eq!(v.verdict, Verdict::Fail);
    }

    #[test]
    fn tree_matches_brute_force() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand::rngs::ChaCha8Rng::seed_from_u64(7);
        for round in 0..40 {
            let n = rng.random_range(1..=40);
            let admits: Vec<Admit> = (0..n)
                .map(|_| {
                    let s = rng.random::<f64>() * 2000.0;
                    admit(s, s + rng.random::<f64>() * 30.0)
                })
                .collect();
            let rps = 1.0 + rng.random::<f64>() * 20.0;
            let got = check_bucket(rps, 3.0, 1000, &admits).peak.unwrap();
            let want = brute_peak(rps, 0.001, &admits);
            assert!(
                (got - want).abs() < 1e-6,
                "round {round}: tree {got} brute {want}"
            );
        }
    }

    #[test]
    fn efficiency_of_a_saturated_bucket() {
        // rps 10, capacity 10, requests over 1 s: ideal is 20.
        let mut log = KeyLog::default();
        for i in 0..=100 {
            log.record_request(i * 10_000, i * 10_000 + 200, 1);
        }
        // The full bucket at once, then one token per 100 ms.
        log.admits = (0..10).map(|i| admit(i as f64 * 0.01, 0.2)).collect();
        log.admits
            .extend((1..=10).map(|i| admit(i as f64 * 100.0, i as f64 * 100.0 + 0.2)));
        let v = verify(&bucket(10.0, 10.0), &BTreeMap::from([(1, log)]));
        assert_eq!(v.ideal, 20);
        assert_eq!(v.admitted, 20);
        assert!((v.efficiency - 1.0).abs() < 1e-9);
        assert_eq!(v.verdict, Verdict::Pass);
    }

    fn permit_admit(valid_at_ms: i64, recv_wall_ms: f64) -> Admit {
        Admit {
            permit: Some(Permit {
                time_to_wait_ms: 0,
                valid_at_ms,
                expires_at_ms: valid_at_ms + 1000,
            }),
            recv_wall_ms,
            ..admit(0.0, 0.1)
        }
    }

    /// Far-future times, up to 2^53-1, stay exact in the checks (f64
    /// holds every integer up to 2^53), expiries that never come included.
    #[test]
    fn permits_that_never_expire_are_checked_exactly() {
        const NEVER: i64 = 9_007_199_254_740_991;
        let cfg = VerifyConfig {
            clock_tolerance_ms: 0.0,
            ..blocking_permits(1.0)
        };
        let never = |valid_at_ms: i64, recv_wall_ms: f64| Admit {
            permit: Some(Permit {
                time_to_wait_ms: 0,
                valid_at_ms,
                expires_at_ms: NEVER,
            }),
            ..permit_admit(valid_at_ms, recv_wall_ms)
        };
        // Two permits 1 ms apart at the very end of the range: exactly the interval.
        let late = [
            never(NEVER - 1, (NEVER - 1) as f64),
            never(NEVER, NEVER as f64),
        ];
        let v = verify(&cfg, &one_key(late.to_vec()));
        assert_eq!((v.verdict, v.min_gap_ms), (Verdict::Pass, Some(1)), "{v:?}");
        // The same pair granted together breaks the interval by exactly one permit.
        let same = [never(NEVER, NEVER as f64), never(NEVER, NEVER as f64)];
        let v = verify(&cfg, &one_key(same.to_vec()));
        assert_eq!(
            (v.verdict, v.over_admission, v.min_gap_ms),
            (Verdict::Fail, 1, Some(0))
        );
        // A reply 1 ms before a valid_at of 2^53-1 is seen as early.
        let early = [never(NEVER, (NEVER - 1) as f64)];
        let v = verify(&cfg, &one_key(early.to_vec()));
        assert_eq!(v.verdict, Verdict::Fail, "{v:?}");
        assert!(
            v.violations[0]
                .detail
                .contains("1.0 ms before its valid_at 9007199254740991")
        );
    }

    #[test]
    fn permits_closer_than_the_interval_fail() {
        let cfg = blocking_permits(100.0);
        let ok: Vec<Admit> = (0..5)
            .map(|i| permit_admit(1000 + 100 * i, (1000 + 100 * i) as f64 + 0.3))
            .collect();
        let v = verify(&cfg, &one_key(ok.clone()));
        assert_eq!(v.verdict, Verdict::Pass);
        assert_eq!(v.min_gap_ms, Some(100));
        assert!((v.efficiency - 1.0).abs() < 1e-9);
        let mut close = ok.clone();
        close.push(permit_admit(1450, 1450.5));
        let v = verify(&cfg, &one_key(close));
        assert_eq!(v.verdict, Verdict::Fail);
        assert!(v.violations[0].detail.contains("50 ms apart"));
        let mut early = ok.clone();
        early.push(permit_admit(1500, 1490.0));
        let v = verify(&cfg, &one_key(early.clone()));
        assert_eq!(v.verdict, Verdict::Fail);
        assert!(v.violations[0].detail.contains("before its valid_at"));
        // An early reply is not over-admission: no allowance excuses it.
        assert_eq!(v.over_admission, 0);
        let lenient = VerifyConfig {
            allow_excess: 100,
            ..cfg
        };
        assert_eq!(verify(&lenient, &one_key(early)).verdict, Verdict::Fail);
        // Permits every 50 ms against an interval of 100 ms: keeping 1000,
        // 1100, ... leaves out every other one.
        let dense: Vec<Admit> = (0..9)
            .map(|i| permit_admit(1000 + 50 * i, (1000 + 50 * i) as f64 + 0.3))
            .collect();
        let v = verify(&cfg, &one_key(dense.clone()));
        assert_eq!((v.verdict, v.over_admission), (Verdict::Fail, 4));
        let v = verify(
            &VerifyConfig {
                allow_excess: 4,
                ..cfg
            },
            &one_key(dense),
        );
        assert_eq!((v.verdict, v.over_admission), (Verdict::Pass, 4));
    }
}
