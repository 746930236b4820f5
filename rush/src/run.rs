//! The run: connect every worker, release them together, collect the results.
//!
//! Workers send one [`Event`] per completed call to a single collector, which
//! owns all statistics (counts, latency histograms, the per-key logs the
//! verifier reads), prints the per-second lines and draws the progress bar.
//! Every loop is bounded: a burst by its call count, a sustained run by its
//! duration; each call by the response timeout.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use tokio::sync::{Barrier, mpsc};
use tokio::task::JoinSet;

use crate::classify::{Classified, Outcome};
use crate::report::{Interval, KeyReport, Latency, Report};
use crate::target::{Conn, Connector};
use crate::template::{KeyRange, Vars};
use crate::verify::{Admit, KeyLog, Limit, Verdict, VerifyConfig, verify};

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
}

/// Why a run could not take place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunError {
    /// The target could not be reached.
    Unreachable(String),
    /// Ctrl-C before the workers were released.
    Interrupted,
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Unreachable(e) => f.write_str(e),
            RunError::Interrupted => f.write_str("interrupted before the run started"),
        }
    }
}

impl std::error::Error for RunError {}

/// A future that resolves when the run should stop early (Ctrl-C).
pub type Interrupt = Pin<Box<dyn Future<Output = ()> + Send>>;

struct Event {
    n: u64,
    send_us: u64,
    recv_us: u64,
    result: Classified,
}

struct Shared {
    t0: OnceLock<Instant>,
    sent: AtomicU64,
    ticket: AtomicU64,
    seq: AtomicU64,
    stop: AtomicBool,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Runs the plan. `interrupt` (e.g. Ctrl-C) stops it early with a partial report.
pub async fn run(plan: Plan, ui: Ui, interrupt: Option<Interrupt>) -> Result<Report, RunError> {
    let mut interrupt: Interrupt = interrupt.unwrap_or_else(|| Box::pin(std::future::pending()));
    let workers = plan.workers.max(1);

    // 1. Connect every worker (concurrently), before anything is sent.
    let mut connecting = JoinSet::new();
    for w in 0..workers {
        let c = plan.connector.clone();
        connecting.spawn(async move { (w, c.connect().await) });
    }
    let mut conns: Vec<(u64, Conn)> = Vec::with_capacity(workers as usize);
    loop {
        tokio::select! {
            next = connecting.join_next() => match next {
                None => break,
                Some(Ok((w, Ok(c)))) => conns.push((w, c)),
                Some(Ok((_, Err(e)))) => return Err(RunError::Unreachable(e)),
                Some(Err(e)) => return Err(RunError::Unreachable(format!("connect task failed: {e}"))),
            },
            _ = &mut interrupt => return Err(RunError::Interrupted),
        }
    }

    // 2. Start every worker; they wait at the barrier.
    let shared = Arc::new(Shared {
        t0: OnceLock::new(),
        sent: AtomicU64::new(0),
        ticket: AtomicU64::new(0),
        seq: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let barrier = Arc::new(Barrier::new(workers as usize + 1));
    let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
    let run_id = fastrand::Rng::with_seed(plan.seed).u32(..);
    let mut tasks = JoinSet::new();
    for (w, conn) in conns {
        tasks.spawn(worker(
            w,
            conn,
            shared.clone(),
            barrier.clone(),
            tx.clone(),
            plan.clone(),
            run_id,
        ));
    }
    drop(tx);

    // 3. Optionally wait for the wall-clock edge, then release everyone.
    if let Some(a) = plan.align {
        let wait = until_edge(a);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = &mut interrupt => {
                tasks.abort_all();
                return Err(RunError::Interrupted);
            }
        }
    }
    let wall0_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1e3);
    let t0 = Instant::now();
    let _ = shared.t0.set(t0);
    barrier.wait().await;

    // 4. Collect.
    let mut c = Collector::new(&plan, ui, wall0_ms);
    let mut second =
        tokio::time::interval_at((t0 + Duration::from_secs(1)).into(), Duration::from_secs(1));
    let mut redraw = tokio::time::interval_at(
        (t0 + Duration::from_millis(100)).into(),
        Duration::from_millis(100),
    );
    let mut interrupted = false;
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(ev) => c.record(ev),
                None => break,
            },
            _ = second.tick() => {
                let t = t0.elapsed().as_secs_f64();
                c.second(t, shared.sent.load(Ordering::Relaxed), false);
            }
            _ = redraw.tick(), if ui.progress => c.progress(t0.elapsed(), shared.sent.load(Ordering::Relaxed)),
            _ = &mut interrupt, if !interrupted => {
                interrupted = true;
                shared.stop.store(true, Ordering::Relaxed);
                tasks.abort_all();
            }
        }
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = t0.elapsed();
    c.clear_progress();
    Ok(c.finish(
        &plan,
        elapsed,
        shared.sent.load(Ordering::Relaxed),
        interrupted,
    ))
}

/// Time from now until `lead` before the next multiple of `period` (at least 10 ms ahead).
fn until_edge(a: Align) -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let period = micros(a.period).max(1);
    let lead = micros(a.lead);
    let now_us = micros(now);
    let mut edge = (now_us / period + 1) * period;
    while edge.saturating_sub(lead) < now_us + 10_000 {
        edge += period;
    }
    Duration::from_micros(edge - lead - now_us)
}

async fn worker(
    id: u64,
    mut conn: Conn,
    shared: Arc<Shared>,
    barrier: Arc<Barrier>,
    tx: mpsc::UnboundedSender<Event>,
    plan: Plan,
    run_id: u32,
) {
    barrier.wait().await;
    let t0 = shared.t0.get().copied().unwrap_or_else(Instant::now);
    let mut rng = fastrand::Rng::with_seed(plan.seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut call = 0u64;
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        match plan.mode {
            Mode::Burst { calls } => {
                if call >= calls {
                    break;
                }
            }
            Mode::Sustained { duration, rate } => {
                let deadline = t0 + duration;
                match rate {
                    Some(rate) => {
                        let ticket = shared.ticket.fetch_add(1, Ordering::Relaxed);
                        let Ok(offset) = Duration::try_from_secs_f64(ticket as f64 / rate) else {
                            break;
                        };
                        if offset >= duration {
                            break;
                        }
                        let due = t0 + offset;
                        tokio::time::sleep_until(due.into()).await;
                    }
                    None => {
                        if Instant::now() >= deadline {
                            break;
                        }
                    }
                }
            }
        }
        let n = match plan.key_order {
            KeyOrder::Random => plan.keys.random(&mut rng),
            KeyOrder::Sequential => plan
                .keys
                .nth_wrapping(shared.seq.fetch_add(1, Ordering::Relaxed)),
        };
        let vars = Vars {
            n,
            worker: id,
            call,
            run: run_id,
        };
        let send = Instant::now();
        shared.sent.fetch_add(1, Ordering::Relaxed);
        let result = conn.call(vars).await;
        let recv = Instant::now();
        let ev = Event {
            n,
            send_us: micros(send.duration_since(t0)),
            recv_us: micros(recv.duration_since(t0)),
            result,
        };
        if tx.send(ev).is_err() {
            break;
        }
        call += 1;
    }
}

const MAX_ERROR_KINDS: usize = 20;
const OTHER_ERRORS: &str = "(other errors)";

fn new_hist() -> Histogram<u64> {
    // 1 µs .. 1 hour, 3 significant digits; larger values are clamped. These
    // constant bounds are valid, so creation cannot fail.
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant histogram bounds are valid")
}

struct Collector {
    ui: Ui,
    mode: Mode,
    total_calls: u64,
    wall0_ms: f64,
    tokens: u64,
    verifying: bool,
    done: u64,
    allowed: u64,
    throttled: u64,
    errors: u64,
    error_kinds: BTreeMap<String, u64>,
    hist: Histogram<u64>,
    second_hist: Histogram<u64>,
    second_counts: (u64, u64, u64, u64),
    last_sent: u64,
    last_t: f64,
    intervals: Vec<Interval>,
    keys: BTreeMap<u64, KeyLog>,
    /// `--per-key`: counts and times per value of `{n}`.
    per_key: Option<BTreeMap<u64, KeyReport>>,
    limits_seen: BTreeMap<i64, u64>,
    progress_shown: bool,
}

impl Collector {
    fn new(plan: &Plan, ui: Ui, wall0_ms: f64) -> Collector {
        let total_calls = match plan.mode {
            Mode::Burst { calls } => calls.saturating_mul(plan.workers),
            Mode::Sustained { .. } => 0,
        };
        Collector {
            ui,
            mode: plan.mode,
            total_calls,
            wall0_ms,
            tokens: plan.tokens,
            verifying: plan.verify.is_some(),
            done: 0,
            allowed: 0,
            throttled: 0,
            errors: 0,
            error_kinds: BTreeMap::new(),
            hist: new_hist(),
            second_hist: new_hist(),
            second_counts: (0, 0, 0, 0),
            last_sent: 0,
            last_t: 0.0,
            intervals: Vec::new(),
            keys: BTreeMap::new(),
            per_key: plan.per_key.then(BTreeMap::new),
            limits_seen: BTreeMap::new(),
            progress_shown: false,
        }
    }

    fn record(&mut self, ev: Event) {
        if let Some(keys) = self.per_key.as_mut() {
            let k = keys.entry(ev.n).or_insert_with(|| KeyReport {
                n: ev.n,
                ..KeyReport::default()
            });
            let t = Some(ev.recv_us as f64 / 1e6);
            match ev.result.outcome {
                Outcome::Allowed => {
                    k.allowed += 1;
                    k.last_allowed_s = t;
                }
                Outcome::Throttled => k.throttled += 1,
                Outcome::Error => {
                    k.errors += 1;
                    k.first_error_s = k.first_error_s.or(t);
                    k.last_error_s = t;
                }
            }
        }
        let lat = ev.recv_us.saturating_sub(ev.send_us).max(1);
        self.hist.saturating_record(lat);
        self.second_hist.saturating_record(lat);
        self.done += 1;
        self.second_counts.0 += 1;
        match ev.result.outcome {
            Outcome::Allowed => {
                self.allowed += 1;
                self.second_counts.1 += 1;
            }
            Outcome::Throttled => {
                self.throttled += 1;
                self.second_counts.2 += 1;
            }
            Outcome::Error => {
                self.errors += 1;
                self.second_counts.3 += 1;
                let msg = ev.result.error.unwrap_or_else(|| "error".into());
                let msg = truncate(&msg, 160);
                if self.error_kinds.contains_key(&msg) || self.error_kinds.len() < MAX_ERROR_KINDS {
                    *self.error_kinds.entry(msg).or_default() += 1;
                } else {
                    *self
                        .error_kinds
                        .entry(OTHER_ERRORS.to_string())
                        .or_default() += 1;
                }
            }
        }
        if let Some(l) = ev.result.limit {
            *self.limits_seen.entry(l).or_default() += 1;
        }
        if self.verifying && ev.result.outcome != Outcome::Error {
            let log = self.keys.entry(ev.n).or_default();
            log.record_request(ev.send_us, ev.recv_us, self.tokens);
            if ev.result.outcome == Outcome::Allowed {
                log.admits.push(Admit {
                    send_us: ev.send_us,
                    recv_us: ev.recv_us,
                    tokens: self.tokens,
                    permit: ev.result.permit,
                    recv_wall_ms: self.wall0_ms + ev.recv_us as f64 / 1e3,
                });
            }
        }
    }

    fn second(&mut self, t: f64, sent: u64, tail: bool) {
        let (done, allowed, throttled, errors) = self.second_counts;
        let l = Latency::from_hist(&self.second_hist);
        let iv = Interval {
            t_s: (t * 1e3).round() / 1e3,
            sent: sent.saturating_sub(self.last_sent),
            done,
            allowed,
            throttled,
            errors,
            p50_ms: l.p50_ms,
            p99_ms: l.p99_ms,
            tail,
        };
        self.last_sent = sent;
        self.last_t = t;
        self.second_counts = (0, 0, 0, 0);
        self.second_hist.reset();
        if self.ui.lines && matches!(self.mode, Mode::Sustained { .. }) {
            self.clear_progress();
            println!("{}", iv.line());
        }
        if matches!(self.mode, Mode::Sustained { .. }) {
            self.intervals.push(iv);
        }
    }

    fn progress(&mut self, elapsed: Duration, sent: u64) {
        const WIDTH: usize = 30;
        let (frac, label) = match self.mode {
            Mode::Burst { .. } => {
                let total = self.total_calls.max(1);
                (
                    self.done as f64 / total as f64,
                    format!("{}/{} calls", self.done, self.total_calls),
                )
            }
            Mode::Sustained { duration, .. } => (
                elapsed.as_secs_f64() / duration.as_secs_f64().max(1e-9),
                format!(
                    "{:.1}/{:.1} s, {} sent",
                    elapsed.as_secs_f64(),
                    duration.as_secs_f64(),
                    sent
                ),
            ),
        };
        let filled = ((frac.clamp(0.0, 1.0)) * WIDTH as f64) as usize;
        let bar: String = "#".repeat(filled) + &"-".repeat(WIDTH - filled);
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[2K[{bar}] {label}  allowed {} throttled {} errors {}",
            self.allowed, self.throttled, self.errors
        );
        let _ = err.flush();
        self.progress_shown = true;
    }

    fn clear_progress(&mut self) {
        if self.progress_shown {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
            self.progress_shown = false;
        }
    }

    fn finish(mut self, plan: &Plan, elapsed: Duration, sent: u64, interrupted: bool) -> Report {
        let elapsed_s = elapsed.as_secs_f64();
        // The last partial second of a sustained run, if it saw anything.
        if matches!(self.mode, Mode::Sustained { .. }) && self.second_counts.0 > 0 {
            self.second(elapsed_s, sent, true);
        }
        let mut verification = plan.verify.as_ref().map(|cfg| verify(cfg, &self.keys));
        if let Some(v) = verification.as_mut() {
            v.notes.extend(plan.notes.iter().cloned());
            if let Limit::Bucket { capacity, .. } = v.limit {
                let others: Vec<String> = self
                    .limits_seen
                    .keys()
                    .filter(|l| (**l as f64 - capacity).abs() > 1e-9)
                    .map(|l| l.to_string())
                    .collect();
                if !others.is_empty() {
                    v.notes.push(format!(
                        "the replies reported limit {} but the bound checked uses capacity {capacity}",
                        others.join(", ")
                    ));
                }
            }
            if v.verdict == Verdict::Pass && (self.errors > 0 || interrupted) {
                v.verdict = Verdict::Inconclusive;
                v.notes.push(if interrupted {
                    "interrupted: calls still in flight are not counted, so the check may miss admitted calls".into()
                } else {
                    format!(
                        "{} call(s) failed: an error (e.g. a timeout) may hide an admitted call, so the check is incomplete",
                        self.errors
                    )
                });
            }
        }
        let keys: Vec<KeyReport> = self
            .per_key
            .take()
            .map(|m| {
                m.into_values()
                    .map(|mut k| {
                        k.over_admission = verification
                            .as_ref()
                            .map(|v| v.excess_by_key.get(&k.n).copied().unwrap_or(0));
                        k
                    })
                    .collect()
            })
            .unwrap_or_default();
        let (calls_per_worker, duration_s, target_rate, mode) = match plan.mode {
            Mode::Burst { calls } => (Some(calls), None, None, "burst"),
            Mode::Sustained { duration, rate } => {
                (None, Some(duration.as_secs_f64()), rate, "sustained")
            }
        };
        Report {
            target: plan.connector.describe(),
            mode: mode.to_string(),
            workers: plan.workers,
            calls_per_worker,
            duration_s,
            target_rate,
            elapsed_s,
            interrupted,
            sent,
            done: self.done,
            allowed: self.allowed,
            throttled: self.throttled,
            errors: self.errors,
            error_kinds: self.error_kinds,
            rate_per_s: if elapsed_s > 0.0 {
                self.done as f64 / elapsed_s
            } else {
                0.0
            },
            latency: Latency::from_hist(&self.hist),
            intervals: self.intervals,
            verification,
            keys,
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}...", &s[..cut])
}
