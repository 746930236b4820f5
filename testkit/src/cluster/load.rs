//! Load on a cluster while a test reshards or fails over: cluster clients
//! call THROTTLE (and THROTTLE.ALL) on accounting keys and PERMIT on paced
//! keys in a loop, and count what they were told, per key. Each worker owns
//! its keys, so per-key counts are exact. A reply of an unexpected shape
//! panics the worker, and [`Load::stop`] fails the test with it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redis::Value;
use redis::cluster::{ClusterClient, ClusterConnection};

use super::{Cluster, node_conn, route_to};

/// Accounting keys: a bucket so large and so slow to refill (capacity 10^6,
/// 0.001 token/s, refilled in 1e9 s: the longest refill a limit may have) that `limit - remaining` counts exactly the calls that
/// were admitted, for as long as a test runs.
pub const BIG_BUCKET: [&str; 3] = ["0.001", "1000000", "1000"];
pub const BIG_LIMIT: i64 = 1_000_000;
/// PERMIT spacing under load: one permit per 10 ms, up to 50 waiting.
pub const LOAD_INTERVAL_MS: i64 = 10;

/// What the load generator was told, per key.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    /// Calls that admitted this key's tokens (THROTTLE or THROTTLE.ALL).
    pub allowed: u64,
    /// Of those, how many a later `WAIT 1` on the same connection confirmed
    /// as replicated (before any error that might have reset it).
    pub acked: u64,
    /// `valid_at_ms` of every PERMIT granted.
    pub valid_at: Vec<i64>,
}

#[derive(Debug, Default)]
pub struct LoadReport {
    pub calls: u64,
    pub errors: u64,
    pub first_errors: Vec<String>,
    pub tallies: BTreeMap<String, Tally>,
    /// Longest stretch without a successful call, over all workers (ms).
    pub longest_gap_ms: u128,
}

impl LoadReport {
    fn merge(&mut self, other: LoadReport) {
        self.calls += other.calls;
        self.errors += other.errors;
        let room = 10usize.saturating_sub(self.first_errors.len());
        self.first_errors
            .extend(other.first_errors.into_iter().take(room));
        for (k, t) in other.tallies {
            let e = self.tallies.entry(k).or_default();
            e.allowed += t.allowed;
            e.acked += t.acked;
            e.valid_at.extend(t.valid_at);
        }
        self.longest_gap_ms = self.longest_gap_ms.max(other.longest_gap_ms);
    }

    fn error(&mut self, e: &redis::RedisError) {
        self.errors += 1;
        if self.first_errors.len() < 10 {
            self.first_errors.push(e.to_string());
        }
    }
}

/// The keys one worker calls, each round.
pub struct WorkerKeys {
    /// THROTTLE of one token on each (a [`BIG_BUCKET`]).
    pub buckets: Vec<String>,
    /// Also THROTTLE.ALL of one token on the first two buckets (same slot).
    pub all_pair: bool,
    /// PERMIT `LOAD_INTERVAL_MS` 50 on each.
    pub permits: Vec<String>,
    /// Every 10 rounds, send `WAIT 1 200` to the master of this key's slot
    /// (all `buckets` must share its slot for `acked` to mean anything).
    pub wait_on: Option<String>,
}

/// Running workers; [`Load::stop`] stops them and adds up their reports.
pub struct Load {
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<LoadReport>>,
}

impl Load {
    pub fn start(cluster: &Cluster, workers: Vec<WorkerKeys>, max_run: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let workers = workers
            .into_iter()
            .map(|keys| {
                let client = cluster.client_builder().build().expect("cluster client");
                let stop = stop.clone();
                std::thread::spawn(move || Worker::new(client, keys).run(&stop, max_run))
            })
            .collect();
        Load { stop, workers }
    }

    /// Stops the workers; a worker that panicked fails the caller.
    pub fn stop(self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        let mut report = LoadReport::default();
        for w in self.workers {
            match w.join() {
                Ok(r) => report.merge(r),
                Err(p) => std::panic::resume_unwind(p),
            }
        }
        report
    }
}

struct Worker {
    client: ClusterClient,
    keys: WorkerKeys,
    conn: Option<ClusterConnection>,
    report: LoadReport,
    /// Admissions per key not yet confirmed by a WAIT.
    unacked: BTreeMap<String, u64>,
    last_ok: Instant,
}

impl Worker {
    fn new(client: ClusterClient, keys: WorkerKeys) -> Worker {
        Worker {
            conn: client.get_connection().ok(),
            client,
            keys,
            report: LoadReport::default(),
            unacked: BTreeMap::new(),
            last_ok: Instant::now(),
        }
    }

    fn run(mut self, stop: &AtomicBool, max_run: Duration) -> LoadReport {
        let started = Instant::now();
        let mut round: u64 = 0;
        while !stop.load(Ordering::Relaxed) && started.elapsed() < max_run {
            round += 1;
            if self.conn.is_none() {
                std::thread::sleep(Duration::from_millis(100));
                self.conn = self.client.get_connection().ok();
                continue;
            }
            if !self.round() {
                // A write whose connection failed can never be confirmed by a
                // WAIT on a new connection: it stays unacknowledged. A new
                // client learns the current topology (the synchronous client
                // does not refresh it on connection errors).
                self.unacked.clear();
                self.conn = None;
                std::thread::sleep(Duration::from_millis(50));
            } else if self.keys.wait_on.is_some() && round.is_multiple_of(10) {
                self.wait_acks();
            }
            let gap = self.last_ok.elapsed().as_millis();
            self.report.longest_gap_ms = self.report.longest_gap_ms.max(gap);
        }
        self.report
    }

    /// Runs `cmd`; counts the call, and the error if it fails.
    fn call(&mut self, cmd: &redis::Cmd) -> Option<Value> {
        let conn = self.conn.as_mut()?;
        self.report.calls += 1;
        match cmd.query::<Value>(conn) {
            Ok(v) => {
                self.last_ok = Instant::now();
                Some(v)
            }
            Err(e) => {
                self.report.error(&e);
                None
            }
        }
    }

    fn admitted(&mut self, key: &str) {
        self.report
            .tallies
            .entry(key.to_string())
            .or_default()
            .allowed += 1;
        *self.unacked.entry(key.to_string()).or_default() += 1;
    }

    /// One call per key; false when any failed.
    fn round(&mut self) -> bool {
        let mut ok = true;
        for k in self.keys.buckets.clone() {
            let mut cmd = redis::cmd("THROTTLE");
            cmd.arg(&k).arg(&BIG_BUCKET[..]);
            match self.call(&cmd) {
                Some(Value::Array(r)) if r.len() == 5 => {
                    if r[0] == Value::Int(1) {
                        self.admitted(&k);
                    }
                }
                Some(other) => panic!("THROTTLE {k} replied {other:?}"),
                None => ok = false,
            }
        }
        if self.keys.all_pair {
            let pair = self.keys.buckets[..2].to_vec();
            let mut cmd = redis::cmd("THROTTLE.ALL");
            cmd.arg(1);
            for k in &pair {
                cmd.arg(k).arg(&BIG_BUCKET[..]);
            }
            match self.call(&cmd) {
                Some(Value::Array(r)) if r.len() == 4 => {
                    if r[0] == Value::Int(1) {
                        pair.iter().for_each(|k| self.admitted(k));
                    }
                }
                Some(other) => panic!("THROTTLE.ALL {pair:?} replied {other:?}"),
                None => ok = false,
            }
        }
        for k in self.keys.permits.clone() {
            let mut cmd = redis::cmd("PERMIT");
            cmd.arg(&k).arg(LOAD_INTERVAL_MS).arg(50);
            match self.call(&cmd) {
                Some(Value::Nil) => {}
                Some(Value::Array(r)) if r.len() == 3 => {
                    let Value::Int(valid_at) = r[1] else {
                        panic!("PERMIT {k} replied {r:?}");
                    };
                    let t = self.report.tallies.entry(k.clone()).or_default();
                    t.valid_at.push(valid_at);
                }
                Some(other) => panic!("PERMIT {k} replied {other:?}"),
                None => ok = false,
            }
        }
        ok
    }

    /// `WAIT 1 200` on the master of `wait_on`: what it confirms is acked.
    fn wait_acks(&mut self) {
        let (Some(tag), Some(conn)) = (self.keys.wait_on.as_deref(), self.conn.as_mut()) else {
            return;
        };
        let w: redis::RedisResult<i64> = conn
            .route_command(redis::cmd("WAIT").arg(1).arg(200), route_to(tag, false))
            .and_then(|v| Ok(redis::from_redis_value(v)?));
        match w {
            Ok(n) if n >= 1 => {
                for (k, n) in std::mem::take(&mut self.unacked) {
                    self.report.tallies.entry(k).or_default().acked += n;
                }
            }
            Ok(_) => {}
            Err(e) => {
                self.report.error(&e);
                self.unacked.clear();
                self.conn = None;
            }
        }
    }
}

/// Tokens consumed from an accounting key, read on `port` (THROTTLE.PEEK).
pub fn consumed(port: u16, key: &str) -> i64 {
    let reply: Vec<i64> = redis::cmd("THROTTLE.PEEK")
        .arg(key)
        .arg(&BIG_BUCKET[..])
        .arg(0) // cost 0: `remaining` is what the bucket holds now
        .query(&mut node_conn(port))
        .expect("THROTTLE.PEEK");
    assert_eq!(reply[4], BIG_LIMIT, "accounting bucket limit");
    BIG_LIMIT - reply[1]
}

/// Checks PERMIT's spacing rule over granted `valid_at`s (ms; reserved
/// slots are rounded up and immediate ones down, hence the 1 ms slack).
pub fn assert_spacing(key: &str, valid_at: &[i64]) {
    let mut v = valid_at.to_vec();
    v.sort_unstable();
    for w in v.windows(2) {
        assert!(
            w[1] - w[0] >= LOAD_INTERVAL_MS - 1,
            "{key}: permits {} and {} closer than {LOAD_INTERVAL_MS} ms",
            w[0],
            w[1]
        );
    }
}
