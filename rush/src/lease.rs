//! The lease scenario: proving a concurrency limit ("at most N at once").
//!
//! It runs when the command is `LEASE key limit ttl_ms [COST n] [BLOCK ms]`
//! (or any command read with `--rule lease`, e.g. a script that acts as
//! LEASE). Each worker loops:
//!
//! 1. **acquire**: sends the command (the per-second lines, counts and
//!    latency are those of the acquires; a nil reply is "throttled");
//! 2. **hold** the lease a random time from `--hold-ms`, renewing it
//!    (`LEASE.RENEW key id ttl_ms`, or `--renew-cmd`) half a ttl after the
//!    reply of the last call that confirmed it (the LEASE or a renewal), so
//!    a hold longer than half the ttl renews, and the lease does not lapse
//!    unless a reply takes half a ttl to arrive. A renewal answered nil
//!    means the lease was lost: the holder stops at once, without
//!    releasing;
//! 3. **release** it (`LEASE.RELEASE key id`, or `--release-cmd`), or, for a
//!    share `--kill-fraction` of the holders, **die**: at the end of the
//!    hold the worker drops its connection without a word (the socket
//!    closes, as when a process crashes), opens a new one and goes on. The
//!    killed lease's place must come back by its expiry.
//!
//! # What is checked (`--verify`)
//!
//! **At most `limit` at once.** The client cannot see when the server
//! decides, but it knows a lease is live on the server during a *sure*
//! interval, a subset of the server's own:
//! - it starts when the LEASE reply is read (the server granted it before
//!   that, or, for a held `BLOCK` caller, admitted it before replying);
//! - it ends when the holder sends its LEASE.RELEASE, if the release
//!   answered 1 (the lease was still live when the server ran it, after the
//!   send);
//! - otherwise (killed, lost at a renewal, a release answered 0 or failed)
//!   it ends at the lease's earliest possible expiry on the client's clock:
//!   the send of the last call that confirmed it (the LEASE or the last
//!   renewal) plus `ttl_ms`, minus `--resolution-ms` (default 1 ms). The
//!   server started (or renewed) the lease after that send, so it lasts at
//!   least that long, provided the server's clock runs at the real rate
//!   during the run (the token-bucket check assumes the same). With a
//!   release that failed or answered 0, it also ends no later than the
//!   release's send.
//!
//! The check does not read the reply's `expires_at_ms`: mapping it onto
//! the client's clock needs the offset between the clocks, and a held
//! caller's `expires_at_ms` is re-derived by the server from its monotonic
//! clock when the caller is admitted, so it may differ from the lease's
//! real expiry by the time the server took to run the commands involved
//! (milliseconds on a loaded machine). The price: a killed holder that
//! waited in `BLOCK` counts for `ttl_ms` from its LEASE's send, so for its
//! ttl less its wait (nothing when it waited longer than the ttl).
//!
//! So the most places held at any instant by the sure intervals, weighted
//! by cost, is a **lower bound** of the server's peak: above `limit`, the
//! limit was broken (FAIL); a correct limiter can never fail it. A killed
//! holder's lease counts until its expiry, so a limiter that hands the
//! place of a dead holder out before the ttl has run out fails too.
//!
//! **Fencing.** Ids must be unique per key, and increase: when a lease's
//! reply was read before another LEASE was sent, the later one's id must
//! be higher (the server issued it later). A repeat or a decrease fails
//! the run, whatever `--allow-excess` allows.
//!
//! # Recovery of killed holders' places
//!
//! For each killed holder: the time from the kill (its connection dropped)
//! until the client could prove that its place was back in use. The proof:
//! at the instant a lease is granted (its reply read), the places surely
//! held by live holders (their sure intervals), plus the killed leases not
//! yet proven gone, would exceed the limit if they were all still live; so
//! enough killed leases must have ended by then. The ones with the earliest
//! expiries are marked recovered at that instant. This is an upper bound of
//! the true recovery (the place may have come back a little earlier and
//! been seen taken a little later: the proof needs every other place to be
//! seen held at one instant), and it needs demand: on a key nobody waits
//! on, nothing is proven (those are "not by the end", as are kills too
//! close to the end of the run). The report gives the time after the kill
//! (expected: at most the rest of the ttl, plus a round trip) and after the
//! lease's latest possible expiry, the reply of its last confirmation plus
//! `ttl_ms` (expected: about a round trip with `BLOCK` waiters; 0 when the
//! proof came before that instant, as it can when the lease really
//! started before its reply was read).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::fmt::Write;
use std::time::{Duration, Instant};

use rand::RngExt;
use redis::Value;
use serde::Serialize;

use crate::classify::{Classified, LeaseGrant, Outcome};
use crate::seed::KeyRng;
use crate::target::redis::RedisConn;
use crate::template::Vars;
use crate::verify::{Limit, Verdict, Verification, VerifyConfig, Violation};

/// How long a holder keeps its lease, drawn uniformly per lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HoldRange {
    pub min_us: u64,
    pub max_us: u64,
}

impl HoldRange {
    /// `N`, `A..B` or `A..=B`, in milliseconds (decimals allowed); both ends included.
    pub fn parse(text: &str) -> Result<HoldRange, String> {
        let bad = |why: &str| format!("bad --hold-ms {text:?}: {why} (write e.g. 20, or 5..50)");
        let ms = |s: &str| -> Result<u64, String> {
            let x: f64 = s.trim().parse().map_err(|_| bad("not a number"))?;
            if !x.is_finite() || !(0.0..=86_400_000.0).contains(&x) {
                return Err(bad("each end must be 0 to 86400000 ms"));
            }
            Ok((x * 1e3).round() as u64)
        };
        let (a, b) = match text.split_once("..") {
            Some((a, b)) => (ms(a)?, ms(b.strip_prefix('=').unwrap_or(b))?),
            None => {
                let x = ms(text)?;
                (x, x)
            }
        };
        if b < a {
            return Err(bad("the range is empty"));
        }
        Ok(HoldRange {
            min_us: a,
            max_us: b,
        })
    }

    fn draw(self, rng: &mut KeyRng) -> Duration {
        Duration::from_micros(rng.random_range(self.min_us..=self.max_us))
    }
}

impl std::fmt::Display for HoldRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |us: u64| us as f64 / 1e3;
        if self.min_us == self.max_us {
            write!(f, "{} ms", ms(self.min_us))
        } else {
            write!(f, "{}..{} ms", ms(self.min_us), ms(self.max_us))
        }
    }
}

/// What the lease scenario needs besides the command.
#[derive(Clone, Debug, PartialEq)]
pub struct LeasePlan {
    pub hold: HoldRange,
    /// The share of holders killed while holding, 0..=1.
    pub kill_fraction: f64,
    /// The release command's words, before `key lease_id`.
    pub release: Vec<String>,
    /// The renewal command's words, before `key lease_id ttl_ms`.
    pub renew: Vec<String>,
    /// Where the key is among the command's words (the lease's arguments follow it).
    pub key_word: usize,
    /// The limit: `--limit-concurrency`, else the command's constant
    /// `limit`; needed to measure the recovery of killed holders' places.
    pub limit: Option<u64>,
}

/// Where the key is in a command: the first key of EVAL, EVALSHA and
/// FCALL (and their `_RO` forms), else the first argument.
pub fn key_word(words: &[String]) -> usize {
    let name = words.first().map(String::as_str).unwrap_or_default();
    let scripted = [
        "EVAL",
        "EVALSHA",
        "EVAL_RO",
        "EVALSHA_RO",
        "FCALL",
        "FCALL_RO",
    ]
    .iter()
    .any(|s| name.eq_ignore_ascii_case(s));
    if scripted { 3 } else { 1 }
}

/// What one acquire asks, read from its words: `key limit ttl_ms [COST n] [BLOCK ms]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseArgs {
    pub key: String,
    pub limit: u64,
    pub ttl_ms: u64,
    pub cost: u64,
}

/// Reads the lease's arguments from the words of a command, the key at `key_word`.
pub fn lease_args(words: &[String], key_word: usize) -> Result<LeaseArgs, String> {
    let shape = "the lease scenario reads `key limit ttl_ms [COST n] [BLOCK timeout_ms]` from the \
                 command (after the script's numkeys for EVAL, EVALSHA and FCALL)";
    let word = |i: usize, what: &str| -> Result<&String, String> {
        words
            .get(i)
            .ok_or_else(|| format!("{shape}: no {what} in {:?}", words.join(" ")))
    };
    let int = |i: usize, what: &str| -> Result<u64, String> {
        let w = word(i, what)?;
        match w.parse::<u64>() {
            Ok(x) if x >= 1 => Ok(x),
            _ => Err(format!("{shape}: {what} {w:?} is not an integer >= 1")),
        }
    };
    let key = word(key_word, "key")?.clone();
    let limit = int(key_word + 1, "limit")?;
    let ttl_ms = int(key_word + 2, "ttl_ms")?;
    let mut cost = 1;
    let mut i = key_word + 3;
    while i < words.len() {
        if words[i].eq_ignore_ascii_case("COST") {
            cost = int(i + 1, "COST")?;
        } else if !words[i].eq_ignore_ascii_case("BLOCK") {
            return Err(format!("{shape}: unexpected {:?}", words[i]));
        }
        i += 2;
    }
    Ok(LeaseArgs {
        key,
        limit,
        ttl_ms,
        cost,
    })
}

/// How a lease ended, as its holder saw it (times: µs since the start).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseEnd {
    /// The release answered 1: the lease was live until it ran.
    Released { send_us: u64 },
    /// The release answered 0: the lease had expired.
    Expired { send_us: u64 },
    /// The release failed (an error): it may or may not have run.
    ReleaseFailed { send_us: u64 },
    /// A renewal answered nil: the lease was gone; no release was sent.
    Lost,
    /// The holder dropped its connection without releasing, at `at_us`.
    Killed { at_us: u64 },
}

/// One lease granted, from its grant to its end.
#[derive(Clone, Debug, PartialEq)]
pub struct LeaseRecord {
    /// The value of `{n}`.
    pub n: u64,
    pub id: i64,
    pub cost: u64,
    pub ttl_us: u64,
    /// The LEASE's send and the reply's receipt.
    pub send_us: u64,
    pub recv_us: u64,
    /// Send of the last call that confirmed the lease: the LEASE, or the last renewal.
    pub confirmed_us: u64,
    /// When that call's reply was read.
    pub confirmed_recv_us: u64,
    /// The LEASE reply's `in_use`: the places in use when it started, its own included.
    pub in_use: Option<i64>,
    pub renewals: u32,
    pub end: LeaseEnd,
    /// Renewal or release errors, as `COMMAND: message`.
    pub errors: Vec<String>,
}

impl LeaseRecord {
    /// The lease's earliest possible expiry on the client's clock: the send
    /// of its last confirmation plus `ttl`, minus `--resolution-ms`.
    pub fn expiry_lower_us(&self, resolution_us: u64) -> u64 {
        self.confirmed_us
            .saturating_add(self.ttl_us)
            .saturating_sub(resolution_us)
    }

    /// The lease's latest possible expiry (without renewal after its last
    /// confirmation): that confirmation's reply plus `ttl`.
    pub fn expiry_upper_us(&self) -> u64 {
        self.confirmed_recv_us.saturating_add(self.ttl_us)
    }

    /// The end of the sure interval (see the module doc).
    pub fn held_until_us(&self, resolution_us: u64) -> u64 {
        let expiry = self.expiry_lower_us(resolution_us);
        match self.end {
            LeaseEnd::Released { send_us } => send_us,
            LeaseEnd::Expired { send_us } | LeaseEnd::ReleaseFailed { send_us } => {
                send_us.min(expiry)
            }
            LeaseEnd::Lost | LeaseEnd::Killed { .. } => expiry,
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Sends one acquire; on a grant, also returns what the hold needs.
pub async fn acquire(
    conn: &mut RedisConn,
    vars: Vars,
    plan: &LeasePlan,
) -> (Classified, Option<(LeaseArgs, LeaseGrant)>) {
    let words = conn.render(vars);
    let args = match lease_args(&words, plan.key_word) {
        Ok(a) => a,
        Err(e) => return (Classified::error(e), None),
    };
    let c = match conn.query(&words).await {
        Ok(v) => conn.rule().classify(&v),
        Err(e) => Classified::error(e),
    };
    match (c.outcome, c.lease) {
        (Outcome::Allowed, Some(grant)) => (c, Some((args, grant))),
        _ => (c, None),
    }
}

/// Holds a granted lease (renewing it), then releases it or dies; returns its record.
#[allow(clippy::too_many_arguments)]
pub async fn hold(
    conn: &mut RedisConn,
    plan: &LeasePlan,
    n: u64,
    args: LeaseArgs,
    grant: LeaseGrant,
    send: Instant,
    recv: Instant,
    t0: Instant,
    rng: &mut KeyRng,
) -> LeaseRecord {
    let since = |at: Instant| micros(at.saturating_duration_since(t0));
    let hold = plan.hold.draw(rng);
    let killed = rng.random::<f64>() < plan.kill_fraction;
    let ttl = Duration::from_millis(args.ttl_ms);
    let hold_end = recv + hold;
    // Renewals are due half a ttl after the last confirmation's reply.
    let mut confirmed = recv;
    let mut rec = LeaseRecord {
        n,
        id: grant.id,
        cost: args.cost,
        ttl_us: micros(ttl),
        send_us: since(send),
        recv_us: since(recv),
        confirmed_us: since(send),
        confirmed_recv_us: since(recv),
        in_use: grant.in_use,
        renewals: 0,
        end: LeaseEnd::Lost,
        errors: Vec::new(),
    };
    let id = grant.id.to_string();
    loop {
        let renew_at = confirmed + ttl / 2;
        if renew_at >= hold_end {
            tokio::time::sleep_until(hold_end.into()).await;
            break;
        }
        tokio::time::sleep_until(renew_at.into()).await;
        let mut words = plan.renew.clone();
        words.extend([args.key.clone(), id.clone(), args.ttl_ms.to_string()]);
        let s = Instant::now();
        let reply = conn.query(&words).await;
        let r = Instant::now();
        match reply {
            Ok(Value::Nil) => {
                // Lost: its holder must stop, and has nothing to release.
                rec.end = LeaseEnd::Lost;
                return rec;
            }
            Ok(_) => {
                // LEASE.RENEW answers the new expires_at_ms; a script may
                // answer anything but nil.
                confirmed = r;
                rec.confirmed_us = since(s);
                rec.confirmed_recv_us = since(r);
                rec.renewals += 1;
            }
            Err(e) => {
                // Not known to be renewed: stop holding and release it.
                rec.errors.push(format!("{}: {e}", plan.renew[0]));
                break;
            }
        }
    }
    if killed {
        conn.disconnect();
        rec.end = LeaseEnd::Killed {
            at_us: since(Instant::now()),
        };
        // Reconnect now, off the clock of the next acquire; a failure shows there.
        let _ = conn.ensure_connected().await;
        return rec;
    }
    let mut words = plan.release.clone();
    words.extend([args.key, id]);
    let s = Instant::now();
    let send_us = since(s);
    rec.end = match conn.query(&words).await {
        Ok(Value::Int(1)) => LeaseEnd::Released { send_us },
        Ok(Value::Int(0)) => LeaseEnd::Expired { send_us },
        Ok(v) => {
            rec.errors.push(format!(
                "{}: unexpected reply (want 1 or 0): {}",
                plan.release[0],
                crate::classify::short(&v)
            ));
            LeaseEnd::ReleaseFailed { send_us }
        }
        Err(e) => {
            rec.errors.push(format!("{}: {e}", plan.release[0]));
            LeaseEnd::ReleaseFailed { send_us }
        }
    };
    rec
}

/// p50 and max of a set of durations, ms.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Spread {
    pub p50_ms: f64,
    pub max_ms: f64,
}

impl Spread {
    fn of(mut xs: Vec<f64>) -> Option<Spread> {
        if xs.is_empty() {
            return None;
        }
        xs.sort_by(f64::total_cmp);
        // Nearest rank.
        let p50 = xs[(xs.len() - 1) / 2];
        Some(Spread {
            p50_ms: p50,
            max_ms: xs[xs.len() - 1],
        })
    }
}

/// How the places of killed holders came back (see the module doc).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Recovery {
    /// Killed leases whose place was proven back in use.
    pub proven: u64,
    /// Killed leases with no proof by the end of the run.
    pub not_proven: u64,
    /// From the kill to the proof.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_kill: Option<Spread>,
    /// From the lease's latest possible expiry (the reply of its last
    /// confirmation plus its ttl) to the proof; 0 when the proof came
    /// before that instant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_expiry: Option<Spread>,
    /// The longest ttl of a killed lease, ms (the bound on `after_kill`).
    pub ttl_ms: f64,
}

/// The lease scenario's part of the report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LeaseReport {
    pub hold: String,
    pub kill_fraction: f64,
    /// Leases granted and ended (a lease still held when the run was interrupted is not counted).
    pub leases: u64,
    /// Their costs summed.
    pub places: u64,
    /// Releases answered 1.
    pub released: u64,
    /// Releases answered 0 (the lease had expired).
    pub expired_before_release: u64,
    /// Renewals answered with an expiry.
    pub renewals: u64,
    /// Renewals answered nil (the lease was gone).
    pub lost_at_renewal: u64,
    pub killed: u64,
    /// Renewal and release errors.
    pub errors: BTreeMap<String, u64>,
    /// The most places surely held at once on one key (lower bound of the server's peak).
    pub peak_in_use: u64,
    /// Places surely held on average over each key's busy span, averaged over keys.
    pub mean_in_use: f64,
    /// None when the limit is unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery: Option<Recovery>,
    /// The most places in use the LEASE replies reported (`in_use`), when they did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_in_use_max: Option<i64>,
}

/// What the analysis found on one key, for [`verify`].
pub struct KeyFindings {
    key: u64,
    /// The most places surely held at once, and the first instant they were.
    peak: u64,
    peak_at_us: u64,
    /// Fencing errors: how many, and the first.
    fencing: (u64, Option<String>),
}

/// The sweep over one key's sure intervals: the peak, its instant, the mean.
fn peak(records: &[LeaseRecord], resolution_us: u64) -> (u64, u64, f64) {
    let mut ev: Vec<(u64, i8, u64)> = Vec::with_capacity(records.len() * 2);
    for r in records {
        let (from, until) = (r.recv_us, r.held_until_us(resolution_us));
        if until > from {
            ev.push((from, 1, r.cost));
            ev.push((until, -1, r.cost));
        }
    }
    // Ends before starts at one instant: the intervals are half-open.
    ev.sort_unstable_by_key(|&(t, d, _)| (t, d));
    let (mut cur, mut top, mut at) = (0u64, 0u64, 0u64);
    let (mut area, mut last) = (0f64, ev.first().map_or(0, |e| e.0));
    let first = last;
    for (t, d, cost) in ev.iter().copied() {
        area += cur as f64 * (t - last) as f64;
        last = t;
        if d > 0 {
            cur = cur.saturating_add(cost);
            if cur > top {
                (top, at) = (cur, t);
            }
        } else {
            cur = cur.saturating_sub(cost);
        }
    }
    let span = last.saturating_sub(first);
    let mean = if span > 0 { area / span as f64 } else { 0.0 };
    (top, at, mean)
}

/// Fencing on one key: ids unique, and higher when issued after another's
/// reply was read. Returns how many errors, and the first.
fn fencing(records: &[LeaseRecord]) -> (u64, Option<String>) {
    let mut count = 0u64;
    let mut first: Option<String> = None;
    let mut out = |msg: String| {
        count += 1;
        first.get_or_insert(msg);
    };
    let mut seen: HashMap<i64, u32> = HashMap::new();
    for r in records {
        *seen.entry(r.id).or_default() += 1;
    }
    let mut twice: Vec<(i64, u32)> = seen.into_iter().filter(|(_, c)| *c > 1).collect();
    twice.sort_unstable();
    for (id, c) in twice {
        out(format!("lease id {id} was granted {c} times"));
    }
    let mut by_send: Vec<&LeaseRecord> = records.iter().collect();
    by_send.sort_by_key(|r| r.send_us);
    let mut by_recv: Vec<&LeaseRecord> = records.iter().collect();
    by_recv.sort_by_key(|r| r.recv_us);
    let mut j = 0;
    let mut top: Option<&LeaseRecord> = None;
    for b in by_send {
        while j < by_recv.len() && by_recv[j].recv_us < b.send_us {
            if top.is_none_or(|t| by_recv[j].id > t.id) {
                top = Some(by_recv[j]);
            }
            j += 1;
        }
        if let Some(a) = top
            && a.id > b.id
        {
            out(format!(
                "lease id {} was issued after id {} (its LEASE was sent at {:.6} s, after that reply was read at {:.6} s): ids must increase",
                b.id,
                a.id,
                b.send_us as f64 / 1e6,
                a.recv_us as f64 / 1e6
            ));
        }
    }
    (count, first)
}

/// The recovery of killed holders' places on one key: (after the kill,
/// after the latest possible expiry) per proven lease, in ms, and how many
/// were not proven.
fn recover(records: &[LeaseRecord], limit: u64, resolution_us: u64) -> (Vec<(f64, f64)>, u64) {
    // (instant, order, index): order 0 = a held interval ends, 1 = a kill, 2 = a grant.
    let mut ev: Vec<(u64, u8, usize)> = Vec::with_capacity(records.len() * 2);
    for (i, r) in records.iter().enumerate() {
        let until = match r.end {
            LeaseEnd::Killed { at_us } => {
                ev.push((at_us, 1, i));
                at_us
            }
            _ => r.held_until_us(resolution_us),
        };
        let from = r.recv_us;
        ev.push((from, 2, i));
        ev.push((until.max(from), 0, i));
    }
    ev.sort_unstable();
    let mut held = 0u64;
    // Killed leases not yet proven gone, earliest expiry first.
    let mut pending: BinaryHeap<Reverse<(u64, usize)>> = BinaryHeap::new();
    let mut pending_cost = 0u64;
    let mut out = Vec::new();
    for (t, order, i) in ev {
        let r = &records[i];
        match order {
            0 => held = held.saturating_sub(r.cost),
            1 => {
                pending.push(Reverse((r.expiry_upper_us(), i)));
                pending_cost = pending_cost.saturating_add(r.cost);
            }
            _ => {
                held = held.saturating_add(r.cost);
                while held.saturating_add(pending_cost) > limit {
                    let Some(Reverse((expiry, k))) = pending.pop() else {
                        break;
                    };
                    let gone = &records[k];
                    pending_cost = pending_cost.saturating_sub(gone.cost);
                    let LeaseEnd::Killed { at_us } = gone.end else {
                        continue;
                    };
                    out.push((
                        t.saturating_sub(at_us) as f64 / 1e3,
                        t.saturating_sub(expiry) as f64 / 1e3,
                    ));
                }
            }
        }
    }
    (out, pending.len() as u64)
}

/// Counts, the peak and the recovery of every key's leases.
pub fn analyze(
    keys: &BTreeMap<u64, Vec<LeaseRecord>>,
    plan: &LeasePlan,
    resolution_us: u64,
) -> (LeaseReport, Vec<KeyFindings>) {
    let mut rep = LeaseReport {
        hold: plan.hold.to_string(),
        kill_fraction: plan.kill_fraction,
        leases: 0,
        places: 0,
        released: 0,
        expired_before_release: 0,
        renewals: 0,
        lost_at_renewal: 0,
        killed: 0,
        errors: BTreeMap::new(),
        peak_in_use: 0,
        mean_in_use: 0.0,
        recovery: None,
        server_in_use_max: None,
    };
    let mut after_kill = Vec::new();
    let mut after_expiry = Vec::new();
    let mut not_proven = 0;
    let mut ttl_ms = 0f64;
    let mut findings = Vec::new();
    for (&key, records) in keys {
        for r in records {
            rep.leases += 1;
            rep.places = rep.places.saturating_add(r.cost);
            rep.renewals += u64::from(r.renewals);
            if let Some(u) = r.in_use {
                rep.server_in_use_max = Some(rep.server_in_use_max.map_or(u, |m: i64| m.max(u)));
            }
            match r.end {
                LeaseEnd::Released { .. } => rep.released += 1,
                LeaseEnd::Expired { .. } => rep.expired_before_release += 1,
                LeaseEnd::ReleaseFailed { .. } => {}
                LeaseEnd::Lost => rep.lost_at_renewal += 1,
                LeaseEnd::Killed { .. } => {
                    rep.killed += 1;
                    ttl_ms = ttl_ms.max(r.ttl_us as f64 / 1e3);
                }
            }
            for e in &r.errors {
                let n = rep.errors.len();
                let e = if rep.errors.contains_key(e) || n < crate::collect::MAX_ERROR_KINDS {
                    e.clone()
                } else {
                    crate::collect::OTHER_ERRORS.to_string()
                };
                *rep.errors.entry(e).or_default() += 1;
            }
        }
        let (top, at, mean) = peak(records, resolution_us);
        rep.peak_in_use = rep.peak_in_use.max(top);
        rep.mean_in_use += mean;
        if let Some(limit) = plan.limit {
            let (rec, left) = recover(records, limit, resolution_us);
            for (k, e) in rec {
                after_kill.push(k);
                after_expiry.push(e);
            }
            not_proven += left;
        }
        findings.push(KeyFindings {
            key,
            peak: top,
            peak_at_us: at,
            fencing: fencing(records),
        });
    }
    if !keys.is_empty() {
        rep.mean_in_use /= keys.len() as f64;
    }
    if plan.limit.is_some() {
        rep.recovery = Some(Recovery {
            proven: after_kill.len() as u64,
            not_proven,
            after_kill: Spread::of(after_kill),
            after_expiry: Spread::of(after_expiry),
            ttl_ms,
        });
    }
    (rep, findings)
}

/// The leases of one key live at `at_us` (sure intervals), for a witness.
fn live_at(records: &[LeaseRecord], at_us: u64, resolution_us: u64) -> Vec<&LeaseRecord> {
    let mut live: Vec<&LeaseRecord> = records
        .iter()
        .filter(|r| r.recv_us <= at_us && at_us < r.held_until_us(resolution_us))
        .collect();
    live.sort_by_key(|r| r.recv_us);
    live
}

/// The verdict on a concurrency limit: every key's peak within `limit`
/// (plus `--allow-excess` in all), and fencing ids in order on every key.
pub fn verify(
    cfg: &VerifyConfig,
    keys: &BTreeMap<u64, Vec<LeaseRecord>>,
    findings: &[KeyFindings],
    report: &LeaseReport,
) -> Verification {
    let limit = match cfg.limit {
        Limit::Concurrency { limit } => limit,
        _ => 0,
    };
    let mut v = Verification {
        limit: cfg.limit,
        verdict: Verdict::Pass,
        keys: keys.len() as u64,
        admitted: report.places,
        ideal: 0,
        efficiency: 0.0,
        peak_burst: None,
        min_gap_ms: None,
        peak_in_use: Some(report.peak_in_use),
        mean_in_use: Some(report.mean_in_use),
        fencing_errors: Some(0),
        keys_violated: 0,
        over_admission: 0,
        over_admission_keys: 0,
        allow_excess: cfg.allow_excess,
        violations: Vec::new(),
        notes: Vec::new(),
        excess_by_key: BTreeMap::new(),
    };
    let mut found: Vec<(u64, Violation)> = Vec::new();
    let mut fencing_errors = 0u64;
    for f in findings {
        let records = keys.get(&f.key).map_or(&[][..], Vec::as_slice);
        let mut broke = false;
        if f.peak > limit {
            broke = true;
            let excess = f.peak - limit;
            v.over_admission = v.over_admission.saturating_add(excess);
            v.over_admission_keys += 1;
            v.excess_by_key.insert(f.key, excess);
            let live = live_at(records, f.peak_at_us, cfg.resolution_us);
            let mut detail = format!(
                "{} places held at once at {:.6} s into the run, by {} leases (each from its reply to its release, or to its expiry if not released), e.g.",
                f.peak,
                f.peak_at_us as f64 / 1e6,
                live.len()
            );
            for r in live.iter().take(3) {
                let _ = write!(
                    detail,
                    " id {} ({:.6}–{:.6} s)",
                    r.id,
                    r.recv_us as f64 / 1e6,
                    r.held_until_us(cfg.resolution_us) as f64 / 1e6
                );
            }
            found.push((
                excess,
                Violation {
                    key: f.key,
                    excess,
                    detail,
                },
            ));
        }
        if let (count, Some(first)) = &f.fencing {
            broke = true;
            fencing_errors += count;
            let more = if *count > 1 {
                format!(" (and {} more)", count - 1)
            } else {
                String::new()
            };
            found.push((
                u64::MAX,
                Violation {
                    key: f.key,
                    excess: 0,
                    detail: format!("{first}{more}"),
                },
            ));
        }
        if broke {
            v.keys_violated += 1;
        }
    }
    v.fencing_errors = Some(fencing_errors);
    found.sort_by_key(|f| Reverse(f.0));
    v.violations = found.into_iter().take(10).map(|(_, x)| x).collect();
    if fencing_errors > 0 || v.over_admission > cfg.allow_excess {
        v.verdict = Verdict::Fail;
    } else if v.over_admission > 0 {
        v.notes.push(format!(
            "the over-admission is within the allowed {} (--allow-excess)",
            cfg.allow_excess
        ));
    }
    if limit > 0 {
        v.efficiency = report.mean_in_use / limit as f64;
        v.ideal = limit;
    }
    v
}

/// The lease section of the text report.
pub fn text(r: &LeaseReport, o: &mut String) {
    let _ = writeln!(
        o,
        "leases: {} granted ({} places), {} released, {} expired before their release, {} renewals, {} lost at a renewal",
        r.leases, r.places, r.released, r.expired_before_release, r.renewals, r.lost_at_renewal
    );
    for (msg, n) in &r.errors {
        let _ = writeln!(o, "        {n} × {msg}");
    }
    let _ = writeln!(
        o,
        "    held {} each; killed while holding: {} (connection dropped, no release; kill fraction {})",
        r.hold, r.killed, r.kill_fraction
    );
    match &r.recovery {
        None => {
            let _ = writeln!(
                o,
                "    places back from killed holders: not measured (the limit is unknown: give --limit-concurrency)"
            );
        }
        Some(rc) => match (rc.after_kill, rc.after_expiry) {
            (Some(k), Some(e)) => {
                let _ = writeln!(
                    o,
                    "    places back from killed holders: {} proven, {} not by the end; after the kill p50 {:.1} ms, max {:.1} ms (ttl {} ms); past the latest expiry p50 {:.1} ms, max {:.1} ms",
                    rc.proven, rc.not_proven, k.p50_ms, k.max_ms, rc.ttl_ms, e.p50_ms, e.max_ms
                );
            }
            _ => {
                let _ = writeln!(
                    o,
                    "    places back from killed holders: {} proven, {} not by the end",
                    rc.proven, rc.not_proven
                );
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn words(w: &str) -> Vec<String> {
        w.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn hold_ranges() {
        let r = |t: &str| HoldRange::parse(t);
        assert_eq!(
            r("5..50"),
            Ok(HoldRange {
                min_us: 5_000,
                max_us: 50_000
            })
        );
        assert_eq!(r("5..=50"), r("5..50"));
        assert_eq!(
            r("0.5"),
            Ok(HoldRange {
                min_us: 500,
                max_us: 500
            })
        );
        assert_eq!(r("5..50").unwrap().to_string(), "5..50 ms");
        assert_eq!(r("20").unwrap().to_string(), "20 ms");
        for bad in ["", "x", "50..5", "-1", "1..1e12", "..5"] {
            let e = r(bad).unwrap_err();
            assert!(e.starts_with("bad --hold-ms"), "{bad}: {e}");
        }
        let mut rng = KeyRng::seed_from_u64(1);
        let h = r("5..7").unwrap();
        for _ in 0..200 {
            let d = h.draw(&mut rng);
            assert!((5_000..=7_000).contains(&(d.as_micros() as u64)), "{d:?}");
        }
    }

    #[test]
    fn lease_arguments_follow_the_key() {
        assert_eq!(key_word(&words("LEASE k 1 2")), 1);
        assert_eq!(key_word(&words("fcall f 1 k 1 2")), 3);
        assert_eq!(key_word(&words("EVALSHA abc 1 k 1 2")), 3);
        assert_eq!(
            lease_args(&words("LEASE pool 10 2000 BLOCK 5000 COST 3"), 1),
            Ok(LeaseArgs {
                key: "pool".into(),
                limit: 10,
                ttl_ms: 2000,
                cost: 3
            })
        );
        assert_eq!(
            lease_args(&words("FCALL zsem_acquire 1 k 5 100"), 3).map(|a| (a.key, a.cost)),
            Ok(("k".into(), 1))
        );
        for (bad, why) in [
            ("LEASE k 10", "no ttl_ms"),
            ("LEASE k ten 100", "limit \"ten\""),
            ("LEASE k 10 0", "ttl_ms \"0\""),
            ("LEASE k 10 100 COST", "no COST"),
            ("LEASE k 10 100 WAIT 5", "unexpected \"WAIT\""),
            ("FCALL f 0", "no key"),
        ] {
            let e = lease_args(&words(bad), key_word(&words(bad))).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    fn rec(id: i64, send: u64, recv: u64, end: LeaseEnd) -> LeaseRecord {
        LeaseRecord {
            n: 0,
            id,
            cost: 1,
            ttl_us: 100_000,
            send_us: send,
            recv_us: recv,
            confirmed_us: send,
            confirmed_recv_us: recv,
            in_use: None,
            renewals: 0,
            end,
            errors: Vec::new(),
        }
    }

    #[test]
    fn a_lease_is_surely_held_from_its_reply_to_its_release_or_its_earliest_expiry() {
        let res = 1_000;
        let at = |end| rec(1, 10_000, 12_000, end).held_until_us(res);
        // Released: until the release was sent.
        assert_eq!(at(LeaseEnd::Released { send_us: 500_000 }), 500_000);
        // Killed or lost: a ttl after the LEASE was sent, less the resolution.
        assert_eq!(at(LeaseEnd::Killed { at_us: 40_000 }), 109_000);
        assert_eq!(at(LeaseEnd::Lost), 109_000);
        // Release answered 0 or failed: whichever came first.
        assert_eq!(at(LeaseEnd::Expired { send_us: 500_000 }), 109_000);
        assert_eq!(at(LeaseEnd::ReleaseFailed { send_us: 50_000 }), 50_000);
        // A renewal moves the expiry: from the renewal's send.
        let mut r = rec(1, 10_000, 12_000, LeaseEnd::Lost);
        (r.confirmed_us, r.confirmed_recv_us) = (60_000, 61_000);
        assert_eq!(r.held_until_us(res), 159_000);
        assert_eq!(r.expiry_upper_us(), 161_000);
    }

    /// The peak of the sweep equals a brute force over every instant.
    #[test]
    fn the_peak_is_the_most_places_surely_held_at_one_instant() {
        let mut rng = KeyRng::seed_from_u64(7);
        for _ in 0..50 {
            let records: Vec<LeaseRecord> = (0..30)
                .map(|i| {
                    let send = rng.random_range(0..1_000_000u64);
                    let recv = send + rng.random_range(0..50_000u64);
                    let end = match rng.random_range(0..3) {
                        0 => LeaseEnd::Released {
                            send_us: recv + rng.random_range(0..200_000u64),
                        },
                        1 => LeaseEnd::Killed { at_us: recv },
                        _ => LeaseEnd::Expired {
                            send_us: recv + rng.random_range(0..200_000u64),
                        },
                    };
                    let mut r = rec(i, send, recv, end);
                    r.cost = rng.random_range(1..4);
                    r
                })
                .collect();
            let res = 1_000;
            let brute = records
                .iter()
                .map(|r| r.recv_us)
                .map(|t| {
                    records
                        .iter()
                        .filter(|r| r.recv_us <= t && t < r.held_until_us(res))
                        .map(|r| r.cost)
                        .sum::<u64>()
                })
                .max()
                .unwrap();
            let (top, at, mean) = peak(&records, res);
            assert_eq!(top, brute);
            let live: u64 = live_at(&records, at, res).iter().map(|r| r.cost).sum();
            assert_eq!(live, top, "the witness instant holds the peak");
            assert!(mean > 0.0 && mean <= top as f64);
        }
    }

    #[test]
    fn fencing_ids_must_increase_and_never_repeat() {
        let rel = |s| LeaseEnd::Released { send_us: s };
        // In order; two concurrent calls may get their ids in either order.
        let ok = [
            rec(10, 0, 10, rel(50)),
            rec(30, 20, 40, rel(60)),
            rec(20, 25, 45, rel(70)),
            rec(40, 50, 60, rel(80)),
        ];
        assert_eq!(fencing(&ok), (0, None));
        // Id 20 issued after id 30's reply was read: out of order.
        let late = [rec(30, 0, 10, rel(50)), rec(20, 20, 40, rel(60))];
        let (n, first) = fencing(&late);
        assert_eq!(n, 1);
        assert!(
            first
                .unwrap()
                .contains("lease id 20 was issued after id 30")
        );
        let twice = [rec(7, 0, 10, rel(50)), rec(7, 5, 15, rel(60))];
        let (n, first) = fencing(&twice);
        assert_eq!(
            (n, first.as_deref()),
            (1, Some("lease id 7 was granted 2 times"))
        );
    }

    /// Limit 2: one holder keeps a place; another is killed at 30 ms (its
    /// lease lasts until 110 ms); a waiter gets a place at 115 ms, while the
    /// first is still held: the killed place is proven back then.
    #[test]
    fn a_killed_place_is_proven_back_when_the_limit_leaves_no_room_for_it() {
        let res = 1_000;
        let mut records = vec![
            rec(1, 0, 1_000, LeaseEnd::Released { send_us: 500_000 }),
            rec(2, 10_000, 11_000, LeaseEnd::Killed { at_us: 30_000 }),
            rec(3, 20_000, 115_000, LeaseEnd::Released { send_us: 130_000 }),
        ];
        let (proofs, left) = recover(&records, 2, res);
        assert_eq!(left, 0);
        assert_eq!(proofs.len(), 1);
        let (after_kill, after_latest_expiry) = proofs[0];
        assert_eq!(after_kill, 85.0);
        // Latest expiry: its reply (11 ms) plus the ttl (100 ms).
        assert_eq!(after_latest_expiry, 4.0);
        // Nothing proves it with room to spare (limit 3), nor with no one waiting.
        assert_eq!(recover(&records, 3, res), (vec![], 1));
        records.truncate(2);
        assert_eq!(recover(&records, 2, res), (vec![], 1));
    }

    fn plan(limit: Option<u64>) -> LeasePlan {
        LeasePlan {
            hold: HoldRange::parse("5..50").unwrap(),
            kill_fraction: 0.1,
            release: words("LEASE.RELEASE"),
            renew: words("LEASE.RENEW"),
            key_word: 1,
            limit,
        }
    }

    fn cfg(limit: u64, allow_excess: u64) -> VerifyConfig {
        VerifyConfig {
            limit: Limit::Concurrency { limit },
            resolution_us: 1_000,
            clock_tolerance_ms: 2.0,
            blocking: false,
            allow_excess,
        }
    }

    #[test]
    fn more_places_held_than_the_limit_fail_with_a_witness() {
        // Three leases surely held together from 30 ms to 40 ms; the killed
        // one counts until a ttl after its send (109 ms).
        let keys = BTreeMap::from([(
            0,
            vec![
                rec(1, 0, 10_000, LeaseEnd::Released { send_us: 40_000 }),
                rec(2, 9_000, 20_000, LeaseEnd::Killed { at_us: 25_000 }),
                rec(3, 25_000, 30_000, LeaseEnd::Released { send_us: 50_000 }),
            ],
        )]);
        let (report, findings) = analyze(&keys, &plan(Some(2)), 1_000);
        assert_eq!((report.leases, report.killed, report.released), (3, 1, 2));
        assert_eq!(report.peak_in_use, 3);
        let v = verify(&cfg(2, 0), &keys, &findings, &report);
        assert_eq!(
            (v.verdict, v.over_admission, v.keys_violated),
            (Verdict::Fail, 1, 1)
        );
        let w = &v.violations[0].detail;
        assert!(w.starts_with("3 places held at once at 0.030000 s"), "{w}");
        assert!(w.contains("id 2 (0.020000–0.108000 s)"), "{w}");
        // Claimed as 3, or with an allowance of 1, it passes.
        assert_eq!(
            verify(&cfg(3, 0), &keys, &findings, &report).verdict,
            Verdict::Pass
        );
        let v = verify(&cfg(2, 1), &keys, &findings, &report);
        assert_eq!(v.verdict, Verdict::Pass);
        assert!(v.notes[0].contains("within the allowed 1"), "{:?}", v.notes);
    }

    #[test]
    fn a_fencing_error_fails_whatever_the_allowance() {
        let keys = BTreeMap::from([(
            4,
            vec![
                rec(9, 0, 10, LeaseEnd::Released { send_us: 20 }),
                rec(8, 30, 40, LeaseEnd::Released { send_us: 50 }),
            ],
        )]);
        let (report, findings) = analyze(&keys, &plan(None), 1_000);
        assert_eq!(report.recovery, None, "no limit, no recovery");
        let v = verify(&cfg(5, 100), &keys, &findings, &report);
        assert_eq!((v.verdict, v.fencing_errors), (Verdict::Fail, Some(1)));
        assert_eq!(v.violations[0].key, 4);
    }

    #[test]
    fn the_report_counts_each_ending() {
        let mut r = rec(1, 0, 10, LeaseEnd::ReleaseFailed { send_us: 20 });
        r.errors.push("LEASE.RELEASE: timeout".into());
        r.in_use = Some(3);
        let keys = BTreeMap::from([(
            0,
            vec![
                r,
                rec(2, 0, 10, LeaseEnd::Expired { send_us: 20 }),
                rec(3, 0, 10, LeaseEnd::Lost),
            ],
        )]);
        let (report, _) = analyze(&keys, &plan(Some(1)), 1_000);
        assert_eq!(
            (
                report.leases,
                report.released,
                report.expired_before_release,
                report.lost_at_renewal
            ),
            (3, 0, 1, 1)
        );
        assert_eq!(
            report.errors,
            BTreeMap::from([("LEASE.RELEASE: timeout".to_string(), 1)])
        );
        assert_eq!(report.server_in_use_max, Some(3));
        let mut text = String::new();
        super::text(&report, &mut text);
        assert!(text.contains("1 × LEASE.RELEASE: timeout"), "{text}");
        assert!(text.contains("killed while holding: 0"), "{text}");
    }
}
