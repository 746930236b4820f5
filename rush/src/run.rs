//! The run: connect every worker, release them together, collect the results.
//!
//! Workers send one [`Event`] per completed call (and, in the lease
//! scenario, one [`crate::lease::LeaseRecord`] per lease ended: see
//! [`crate::lease`]) to a single [`Collector`], which owns all statistics
//! (counts, latency histograms, the per-key logs the verifier reads); the
//! loop that feeds it also closes an interval every second, prints its line
//! and draws the progress bar.
//! Every loop is bounded: a burst by its call count, a sustained run by its
//! duration; each call by the response timeout; a lease's hold by
//! `--hold-ms`.

use std::future::Future;
use std::io::Write;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{Barrier, mpsc};
use tokio::task::JoinSet;

use crate::collect::{Collector, Event, Msg};
use crate::lease;
pub use crate::plan::{Align, KeyOrder, Mode, Plan, Ui};
use crate::report::{Interval, Report};
use crate::seed;
use crate::target::Conn;
use crate::template::Vars;

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
    let (tx, mut rx) = mpsc::unbounded_channel::<Msg>();
    let run_id = seed::run_id(plan.seed);
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
    let mut c = Collector::new(&plan, wall0_ms);
    let mut live = Live::new(&plan, ui);
    let mut second =
        tokio::time::interval_at((t0 + Duration::from_secs(1)).into(), Duration::from_secs(1));
    let mut redraw = tokio::time::interval_at(
        (t0 + Duration::from_millis(100)).into(),
        Duration::from_millis(100),
    );
    let mut interrupted = false;
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(Msg::Call(ev)) => c.record(ev),
                Some(Msg::Lease(rec)) => c.record_lease(*rec),
                None => break,
            },
            _ = second.tick() => {
                let t = t0.elapsed().as_secs_f64();
                if let Some(iv) = c.close_interval(t, shared.sent.load(Ordering::Relaxed), false) {
                    live.line(&iv);
                }
            }
            _ = redraw.tick(), if ui.progress => {
                live.progress(t0.elapsed(), shared.sent.load(Ordering::Relaxed), c.counts());
            }
            _ = &mut interrupt, if !interrupted => {
                interrupted = true;
                shared.stop.store(true, Ordering::Relaxed);
                tasks.abort_all();
            }
        }
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = t0.elapsed();
    let sent = shared.sent.load(Ordering::Relaxed);
    live.clear();
    if let Some(iv) = c.close_tail(elapsed.as_secs_f64(), sent) {
        live.line(&iv);
    }
    Ok(c.finish(&plan, elapsed, sent, interrupted))
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
    tx: mpsc::UnboundedSender<Msg>,
    plan: Plan,
    run_id: u32,
) {
    barrier.wait().await;
    let t0 = shared.t0.get().copied().unwrap_or_else(Instant::now);
    let mut rng = seed::worker_rng(plan.seed, id);
    let mut lease_rng = seed::lease_rng(plan.seed, id);
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
        let (result, granted) = match (&plan.lease, conn.redis()) {
            (Some(lp), Some(rc)) => lease::acquire(rc, vars, lp).await,
            _ => (conn.call(vars).await, None),
        };
        let recv = Instant::now();
        let ev = Event {
            n,
            send_us: micros(send.duration_since(t0)),
            recv_us: micros(recv.duration_since(t0)),
            result,
        };
        if tx.send(Msg::Call(ev)).is_err() {
            break;
        }
        call += 1;
        // The lease scenario: hold what was granted, then release it or die.
        if let (Some(lp), Some(rc), Some((args, grant))) = (&plan.lease, conn.redis(), granted) {
            let rec = lease::hold(rc, lp, n, args, grant, send, recv, t0, &mut lease_rng).await;
            if tx.send(Msg::Lease(Box::new(rec))).is_err() {
                break;
            }
        }
    }
}

/// What the user sees during a run: one line per interval (sustained
/// mode) on stdout, and a progress bar on stderr.
struct Live {
    ui: Ui,
    mode: Mode,
    /// Burst: calls in all.
    total_calls: u64,
    /// The bar is on screen (and must be cleared before a line is printed).
    bar_shown: bool,
}

impl Live {
    fn new(plan: &Plan, ui: Ui) -> Live {
        let total_calls = match plan.mode {
            Mode::Burst { calls } => calls.saturating_mul(plan.workers),
            Mode::Sustained { .. } => 0,
        };
        Live {
            ui,
            mode: plan.mode,
            total_calls,
            bar_shown: false,
        }
    }

    /// Prints an interval's line (unless `--quiet` or `--json`).
    fn line(&mut self, iv: &Interval) {
        if self.ui.lines {
            self.clear();
            println!("{}", iv.line());
        }
    }

    /// Redraws the progress bar.
    fn progress(&mut self, elapsed: Duration, sent: u64, counts: (u64, u64, u64, u64)) {
        let text = progress_bar(self.mode, self.total_calls, elapsed, sent, counts);
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{text}");
        let _ = err.flush();
        self.bar_shown = true;
    }

    /// Erases the progress bar, if it is shown.
    fn clear(&mut self) {
        if self.bar_shown {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
            self.bar_shown = false;
        }
    }
}

/// The progress bar's text: how far the run is (calls of a burst, time of a
/// sustained run) and the counts so far, `counts` = (done, allowed, throttled, errors).
fn progress_bar(
    mode: Mode,
    total_calls: u64,
    elapsed: Duration,
    sent: u64,
    counts: (u64, u64, u64, u64),
) -> String {
    const WIDTH: usize = 30;
    let (done, allowed, throttled, errors) = counts;
    let (frac, label) = match mode {
        Mode::Burst { .. } => (
            done as f64 / total_calls.max(1) as f64,
            format!("{done}/{total_calls} calls"),
        ),
        Mode::Sustained { duration, .. } => (
            elapsed.as_secs_f64() / duration.as_secs_f64().max(1e-9),
            format!(
                "{:.1}/{:.1} s, {sent} sent",
                elapsed.as_secs_f64(),
                duration.as_secs_f64(),
            ),
        ),
    };
    let filled = (frac.clamp(0.0, 1.0) * WIDTH as f64) as usize;
    let bar = "#".repeat(filled) + &"-".repeat(WIDTH - filled);
    format!("[{bar}] {label}  allowed {allowed} throttled {throttled} errors {errors}")
}
