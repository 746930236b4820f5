//! The collector: every completed call passes through [`Collector::record`],
//! which keeps all statistics of a run: counts and latency for the whole run
//! and for the current interval, error messages, the per-key logs the
//! verifier reads and, with `--per-key`, a report per key. It prints
//! nothing: the run loop shows what [`Collector::close_interval`] returns,
//! and [`Collector::finish`] turns everything into the [`Report`].

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::classify::{Classified, Outcome};
use crate::lease::{self, LeaseRecord};
use crate::plan::{Mode, Plan};
use crate::report::{Interval, KeyReport, Latency, Report};
use crate::verify::{Admit, KeyLog, Limit, Verdict, Verification, verify};

/// One completed call. Times are client monotonic, µs since the workers were released.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// The value of `{n}`.
    pub n: u64,
    /// Just before the request was handed to the connection.
    pub send_us: u64,
    /// When the reply had been read.
    pub recv_us: u64,
    pub result: Classified,
}

/// What a worker tells the collector.
#[derive(Clone, Debug, PartialEq)]
pub enum Msg {
    /// A call completed.
    Call(Event),
    /// A lease ended (the lease scenario).
    Lease(Box<LeaseRecord>),
}

/// Distinct error messages kept; later ones are counted under [`OTHER_ERRORS`].
pub const MAX_ERROR_KINDS: usize = 20;
/// Where the errors beyond the first [`MAX_ERROR_KINDS`] messages are counted.
pub const OTHER_ERRORS: &str = "(other errors)";
/// Error messages are cut to this many bytes (then `...`).
pub const MAX_ERROR_LEN: usize = 160;

/// Counts and latencies of a set of calls: the whole run, or one interval.
struct Tally {
    done: u64,
    allowed: u64,
    throttled: u64,
    errors: u64,
    /// Send to reply read, µs.
    latency: Histogram<u64>,
}

impl Tally {
    fn new() -> Tally {
        // 1 µs .. 1 hour, 3 significant digits; larger values are clamped.
        // These constant bounds are valid, so creation cannot fail.
        #[allow(clippy::expect_used)]
        let latency = Histogram::new_with_bounds(1, 3_600_000_000, 3)
            .expect("constant histogram bounds are valid");
        Tally {
            done: 0,
            allowed: 0,
            throttled: 0,
            errors: 0,
            latency,
        }
    }

    fn add(&mut self, outcome: Outcome, latency_us: u64) {
        self.latency.saturating_record(latency_us);
        self.done += 1;
        match outcome {
            Outcome::Allowed => self.allowed += 1,
            Outcome::Throttled => self.throttled += 1,
            Outcome::Error => self.errors += 1,
        }
    }

    fn reset(&mut self) {
        self.done = 0;
        self.allowed = 0;
        self.throttled = 0;
        self.errors = 0;
        self.latency.reset();
    }
}

/// Error messages and how often each was seen, bounded in number and length.
#[derive(Default)]
struct ErrorKinds(BTreeMap<String, u64>);

impl ErrorKinds {
    fn add(&mut self, msg: Option<&str>) {
        let msg = truncate(msg.unwrap_or("error"), MAX_ERROR_LEN);
        let key = if self.0.contains_key(&msg) || self.0.len() < MAX_ERROR_KINDS {
            msg
        } else {
            OTHER_ERRORS.to_string()
        };
        *self.0.entry(key).or_default() += 1;
    }
}

/// `--per-key`: the call's counts and times on its key's report.
fn record_per_key(keys: &mut BTreeMap<u64, KeyReport>, ev: &Event) {
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

/// Every statistic of a run; see the module doc.
pub struct Collector {
    mode: Mode,
    /// Client wall clock when the workers were released, ms since the Unix epoch.
    wall0_ms: f64,
    /// Tokens each call asks for.
    tokens: u64,
    verifying: bool,
    total: Tally,
    /// Since the last [`Collector::close_interval`].
    interval: Tally,
    error_kinds: ErrorKinds,
    /// Calls sent when the last interval closed.
    last_sent: u64,
    /// Sustained mode: the closed intervals.
    intervals: Vec<Interval>,
    /// With `--verify`: what the verifier needs, per value of `{n}`.
    logs: BTreeMap<u64, KeyLog>,
    /// `--per-key`: counts and times per value of `{n}`.
    per_key: Option<BTreeMap<u64, KeyReport>>,
    /// The `limit` fields of THROTTLE and LEASE replies, with how often each came.
    limits_seen: BTreeMap<i64, u64>,
    /// The lease scenario: every lease that ended, per value of `{n}`.
    leases: BTreeMap<u64, Vec<LeaseRecord>>,
}

impl Collector {
    /// An empty collector for `plan`; `wall0_ms` is the client wall clock at the release.
    pub fn new(plan: &Plan, wall0_ms: f64) -> Collector {
        Collector {
            mode: plan.mode,
            wall0_ms,
            tokens: plan.tokens,
            // Leases are checked on their records, not on the calls.
            verifying: plan.verify.is_some() && plan.lease.is_none(),
            total: Tally::new(),
            interval: Tally::new(),
            error_kinds: ErrorKinds::default(),
            last_sent: 0,
            intervals: Vec::new(),
            logs: BTreeMap::new(),
            per_key: plan.per_key.then(BTreeMap::new),
            limits_seen: BTreeMap::new(),
            leases: BTreeMap::new(),
        }
    }

    /// Keeps one ended lease for the lease report and its check.
    pub fn record_lease(&mut self, rec: LeaseRecord) {
        self.leases.entry(rec.n).or_default().push(rec);
    }

    /// Counts one completed call.
    pub fn record(&mut self, ev: Event) {
        if let Some(keys) = self.per_key.as_mut() {
            record_per_key(keys, &ev);
        }
        let latency_us = ev.recv_us.saturating_sub(ev.send_us).max(1);
        self.total.add(ev.result.outcome, latency_us);
        self.interval.add(ev.result.outcome, latency_us);
        if ev.result.outcome == Outcome::Error {
            self.error_kinds.add(ev.result.error.as_deref());
        }
        if let Some(l) = ev.result.limit {
            *self.limits_seen.entry(l).or_default() += 1;
        }
        // An error says nothing about the limiter: it is not a request it saw.
        if self.verifying && ev.result.outcome != Outcome::Error {
            let log = self.logs.entry(ev.n).or_default();
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

    /// Calls completed so far: (done, allowed, throttled, errors).
    pub fn counts(&self) -> (u64, u64, u64, u64) {
        let t = &self.total;
        (t.done, t.allowed, t.throttled, t.errors)
    }

    /// Closes the interval that ends `t` seconds into the run, when `sent`
    /// calls had been sent in all, and starts the next. A sustained run keeps
    /// it for the report and returns it (to print); a burst returns None.
    pub fn close_interval(&mut self, t: f64, sent: u64, tail: bool) -> Option<Interval> {
        let i = &self.interval;
        let l = Latency::from_hist(&i.latency);
        let iv = Interval {
            t_s: (t * 1e3).round() / 1e3,
            sent: sent.saturating_sub(self.last_sent),
            done: i.done,
            allowed: i.allowed,
            throttled: i.throttled,
            errors: i.errors,
            p50_ms: l.p50_ms,
            p99_ms: l.p99_ms,
            tail,
        };
        self.last_sent = sent;
        self.interval.reset();
        match self.mode {
            Mode::Sustained { .. } => {
                self.intervals.push(iv.clone());
                Some(iv)
            }
            Mode::Burst { .. } => None,
        }
    }

    /// The last, partial interval of a sustained run (up to `t`, the end),
    /// when it saw any reply.
    pub fn close_tail(&mut self, t: f64, sent: u64) -> Option<Interval> {
        if self.interval.done == 0 {
            return None;
        }
        self.close_interval(t, sent, true)
    }

    /// The report: counts, latency, intervals, the verification of every
    /// key's calls, and the per-key table.
    pub fn finish(self, plan: &Plan, elapsed: Duration, sent: u64, interrupted: bool) -> Report {
        let elapsed_s = elapsed.as_secs_f64();
        let resolution_us = plan.verify.as_ref().map_or(1000, |cfg| cfg.resolution_us);
        let lease = plan
            .lease
            .as_ref()
            .map(|lp| lease::analyze(&self.leases, lp, resolution_us));
        let verification = plan.verify.as_ref().map(|cfg| {
            let mut v = match &lease {
                Some((report, findings)) => lease::verify(cfg, &self.leases, findings, report),
                None => verify(cfg, &self.logs),
            };
            v.notes.extend(plan.notes.iter().cloned());
            v.notes.extend(limit_note(&self.limits_seen, v.limit));
            if v.verdict == Verdict::Pass
                && let Some(why) = incomplete_note(self.total.errors, interrupted)
            {
                v.verdict = Verdict::Inconclusive;
                v.notes.push(why);
            }
            v
        });
        let keys = self
            .per_key
            .map(|m| per_key_reports(m, verification.as_ref()))
            .unwrap_or_default();
        let (calls_per_worker, duration_s, target_rate, mode) = match plan.mode {
            Mode::Burst { calls } => (Some(calls), None, None, "burst"),
            Mode::Sustained { duration, rate } => {
                (None, Some(duration.as_secs_f64()), rate, "sustained")
            }
        };
        let t = &self.total;
        Report {
            target: plan.connector.describe(),
            mode: mode.to_string(),
            workers: plan.workers,
            calls_per_worker,
            duration_s,
            target_rate,
            seed: plan.seed,
            elapsed_s,
            interrupted,
            sent,
            done: t.done,
            allowed: t.allowed,
            throttled: t.throttled,
            errors: t.errors,
            error_kinds: self.error_kinds.0,
            rate_per_s: if elapsed_s > 0.0 {
                t.done as f64 / elapsed_s
            } else {
                0.0
            },
            latency: Latency::from_hist(&t.latency),
            intervals: self.intervals,
            verification,
            keys,
            lease: lease.map(|(report, _)| report),
        }
    }
}

/// A note when THROTTLE replies reported a limit other than the capacity checked.
fn limit_note(limits_seen: &BTreeMap<i64, u64>, limit: Limit) -> Option<String> {
    let capacity = match limit {
        Limit::Bucket { capacity, .. } => capacity,
        Limit::Concurrency { limit } => limit as f64,
        Limit::Pacing { .. } => return None,
    };
    let others: Vec<String> = limits_seen
        .keys()
        .filter(|l| (**l as f64 - capacity).abs() > 1e-9)
        .map(|l| l.to_string())
        .collect();
    (!others.is_empty()).then(|| {
        format!(
            "the replies reported limit {} but the bound checked uses capacity {capacity}",
            others.join(", ")
        )
    })
}

/// Why a check that found no violation may still have missed one.
fn incomplete_note(errors: u64, interrupted: bool) -> Option<String> {
    if interrupted {
        Some("interrupted: calls still in flight are not counted, so the check may miss admitted calls".into())
    } else if errors > 0 {
        Some(format!(
            "{errors} call(s) failed: an error (e.g. a timeout) may hide an admitted call, so the check is incomplete"
        ))
    } else {
        None
    }
}

/// The per-key table, by `n`, with each key's over-admission when verified.
fn per_key_reports(
    keys: BTreeMap<u64, KeyReport>,
    verification: Option<&Verification>,
) -> Vec<KeyReport> {
    keys.into_values()
        .map(|mut k| {
            k.over_admission =
                verification.map(|v| v.excess_by_key.get(&k.n).copied().unwrap_or(0));
            k
        })
        .collect()
}

/// `s`, cut to at most `max` bytes (on a character boundary) plus `...`.
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::classify::Permit;
    use crate::cli::{Cli, plan};

    /// The plan `rush redis <args>` would run (nothing is connected).
    fn plan_of(args: &[&str]) -> Plan {
        let mut all = vec!["rush", "redis"];
        all.extend_from_slice(args);
        plan(&Cli::try_parse_from(all).unwrap(), false).unwrap().0
    }

    fn ev(n: u64, send_ms: f64, recv_ms: f64, result: Classified) -> Event {
        Event {
            n,
            send_us: (send_ms * 1e3) as u64,
            recv_us: (recv_ms * 1e3) as u64,
            result,
        }
    }

    fn allowed(n: u64, send_ms: f64, recv_ms: f64) -> Event {
        ev(n, send_ms, recv_ms, Classified::allowed())
    }

    fn throttled(n: u64, send_ms: f64, recv_ms: f64) -> Event {
        ev(n, send_ms, recv_ms, Classified::throttled())
    }

    fn failed(n: u64, at_ms: f64, msg: &str) -> Event {
        ev(n, at_ms, at_ms + 1.0, Classified::error(msg))
    }

    const SUSTAINED: &[&str] = &["-d", "3s", "--", "PING"];
    const BURST: &[&str] = &["-c", "2", "-n", "3", "--", "PING"];

    #[test]
    fn each_interval_counts_its_own_calls() {
        let p = plan_of(SUSTAINED);
        let mut c = Collector::new(&p, 0.0);
        c.record(allowed(0, 10.0, 12.0));
        c.record(throttled(0, 20.0, 21.0));
        c.record(failed(0, 30.0, "ERR x"));
        let iv = c
            .close_interval(1.0004, 5, false)
            .expect("sustained keeps intervals");
        assert_eq!(
            (
                iv.t_s,
                iv.sent,
                iv.done,
                iv.allowed,
                iv.throttled,
                iv.errors,
                iv.tail
            ),
            (1.0, 5, 3, 1, 1, 1, false)
        );
        // The next interval starts from zero; `sent` is the difference.
        c.record(allowed(0, 1100.0, 1101.0));
        let iv = c.close_interval(2.0, 9, false).unwrap();
        assert_eq!((iv.sent, iv.done, iv.allowed, iv.errors), (4, 1, 1, 0));
        // An interval with no reply is still a line.
        let iv = c.close_interval(3.0, 9, false).unwrap();
        assert_eq!((iv.sent, iv.done, iv.p50_ms), (0, 0, 0.0));
        assert_eq!(c.counts(), (4, 2, 1, 1));
        let r = c.finish(&p, Duration::from_secs(3), 9, false);
        assert_eq!(r.intervals.len(), 3);
        assert_eq!(r.intervals.iter().map(|i| i.done).sum::<u64>(), r.done);
        assert_eq!(
            (r.sent, r.done, r.allowed, r.throttled, r.errors),
            (9, 4, 2, 1, 1)
        );
        assert_eq!(r.mode, "sustained");
        assert_eq!(r.duration_s, Some(3.0));
    }

    #[test]
    fn the_final_partial_interval_is_a_tail_when_it_saw_a_reply() {
        let p = plan_of(SUSTAINED);
        let mut c = Collector::new(&p, 0.0);
        c.record(allowed(0, 10.0, 11.0));
        c.close_interval(1.0, 1, false);
        assert_eq!(c.close_tail(1.2, 1), None, "nothing since the last line");
        c.record(allowed(0, 2990.0, 3010.0));
        let tail = c
            .close_tail(3.0104, 2)
            .expect("a reply after the last line");
        assert!(tail.tail);
        assert_eq!((tail.t_s, tail.sent, tail.done), (3.01, 1, 1));
        assert!(tail.line().starts_with("   3.0s  sent"), "{}", tail.line());
        let r = c.finish(&p, Duration::from_millis(3010), 2, false);
        assert_eq!(r.intervals.iter().filter(|i| i.tail).count(), 1);
        assert_eq!(r.intervals.len(), 2);
    }

    #[test]
    fn a_burst_keeps_no_intervals() {
        let p = plan_of(BURST);
        let mut c = Collector::new(&p, 0.0);
        c.record(allowed(0, 0.1, 0.5));
        assert_eq!(c.close_interval(1.0, 1, false), None);
        assert_eq!(c.close_tail(1.5, 1), None);
        let r = c.finish(&p, Duration::from_millis(1500), 1, false);
        assert!(r.intervals.is_empty());
        assert_eq!((r.mode.as_str(), r.calls_per_worker), ("burst", Some(3)));
        assert_eq!(r.done, 1);
    }

    #[test]
    fn latency_is_send_to_reply_per_interval_and_overall() {
        let p = plan_of(SUSTAINED);
        let mut c = Collector::new(&p, 0.0);
        for i in 0..99 {
            c.record(allowed(0, i as f64, i as f64 + 2.0)); // 2 ms
        }
        c.record(allowed(0, 100.0, 140.0)); // 40 ms
        let iv = c.close_interval(1.0, 100, false).unwrap();
        assert_eq!(iv.p50_ms, 2.0);
        assert!((iv.p99_ms - 2.0).abs() < 0.01, "{iv:?}");
        // A reply read "before" its send (never, but clamped) counts as 1 µs.
        c.record(allowed(0, 1500.0, 1400.0));
        let iv = c.close_interval(2.0, 101, false).unwrap();
        assert_eq!(iv.p50_ms, 0.001);
        let r = c.finish(&p, Duration::from_secs(2), 101, false);
        assert!((r.latency.max_ms - 40.0).abs() < 0.05, "{:?}", r.latency);
        assert_eq!(r.latency.p50_ms, 2.0);
        assert!((r.rate_per_s - 50.5).abs() < 1e-9);
    }

    #[test]
    fn errors_are_counted_by_message_within_bounds() {
        let p = plan_of(BURST);
        let mut c = Collector::new(&p, 0.0);
        c.record(failed(0, 1.0, "ERR unknown command"));
        c.record(failed(0, 2.0, "ERR unknown command"));
        c.record(ev(
            0,
            3.0,
            4.0,
            Classified {
                error: None,
                ..Classified::error("")
            },
        ));
        let long = "x".repeat(MAX_ERROR_LEN) + "é and more";
        c.record(failed(0, 5.0, &long));
        for i in 0..MAX_ERROR_KINDS {
            c.record(failed(0, 6.0, &format!("kind {i}")));
        }
        // A message seen before still has its own line once the table is full.
        c.record(failed(0, 7.0, "ERR unknown command"));
        let r = c.finish(&p, Duration::from_secs(1), 30, false);
        let kinds = &r.error_kinds;
        assert_eq!(kinds.get("ERR unknown command"), Some(&3));
        assert_eq!(kinds.get("error"), Some(&1), "{kinds:?}");
        assert_eq!(
            kinds.get(&format!("{}...", "x".repeat(MAX_ERROR_LEN))),
            Some(&1)
        );
        // 3 kinds above, then 17 of the 20 new ones; 3 more go under one line.
        assert_eq!(kinds.len(), MAX_ERROR_KINDS + 1);
        assert_eq!(kinds.get(OTHER_ERRORS), Some(&3));
        assert_eq!(r.errors, 25);
        assert_eq!(kinds.values().sum::<u64>(), r.errors);
        assert_eq!(truncate("aé", 2), "a...");
    }

    #[test]
    fn per_key_reports_follow_each_key() {
        let p = plan_of(&["--per-key", "--keys", "1..=3", "--", "GET", "k{n}"]);
        let mut c = Collector::new(&p, 0.0);
        c.record(allowed(2, 0.0, 100.0));
        c.record(failed(2, 200.0, "ERR a"));
        c.record(allowed(2, 300.0, 400.0));
        c.record(failed(2, 500.0, "ERR b"));
        c.record(throttled(1, 0.0, 50.0));
        let r = c.finish(&p, Duration::from_secs(1), 5, false);
        assert_eq!(
            r.keys,
            vec![
                KeyReport {
                    n: 1,
                    throttled: 1,
                    ..KeyReport::default()
                },
                KeyReport {
                    n: 2,
                    allowed: 2,
                    errors: 2,
                    first_error_s: Some(0.201),
                    last_error_s: Some(0.501),
                    last_allowed_s: Some(0.4),
                    ..KeyReport::default()
                },
            ]
        );
        assert!(r.to_text().contains("per key"), "{}", r.to_text());
        // Without --per-key there is no table.
        let p = plan_of(&["--keys", "1..=3", "--", "GET", "k{n}"]);
        let mut c = Collector::new(&p, 0.0);
        c.record(allowed(2, 0.0, 100.0));
        assert!(
            c.finish(&p, Duration::from_secs(1), 1, false)
                .keys
                .is_empty()
        );
    }

    #[test]
    fn the_verifier_sees_every_answered_call_and_no_error() {
        let p = plan_of(&[
            "--verify",
            "--per-key",
            "--keys",
            "1..=2",
            "--",
            "THROTTLE",
            "k{n}",
            "1",
            "2",
            "1",
            "3",
        ]);
        assert_eq!(p.tokens, 3);
        let mut c = Collector::new(&p, 1_000_000.0);
        let mut reply = Classified::allowed();
        reply.limit = Some(6);
        c.record(ev(1, 0.0, 1.0, reply.clone()));
        c.record(ev(1, 0.5, 1.5, reply));
        c.record(throttled(1, 2.0, 3.0));
        c.record(failed(2, 4.0, "ERR timeout"));
        let log = &c.logs[&1];
        assert_eq!((log.requests, log.requested_tokens), (3, 9));
        assert_eq!((log.first_send_us, log.last_recv_us), (Some(0), 3000));
        assert_eq!(log.admits.len(), 2);
        assert_eq!(log.admits[1].tokens, 3);
        assert_eq!(log.admits[1].recv_wall_ms, 1_000_001.5);
        assert!(
            !c.logs.contains_key(&2),
            "an error is not a request the limiter saw"
        );
        let r = c.finish(&p, Duration::from_secs(1), 4, false);
        let v = r.verification.as_ref().unwrap();
        // Two calls of 3 tokens within 1.5 ms against capacity 2: over the bound.
        assert_eq!(
            (v.verdict, v.admitted, v.over_admission),
            (Verdict::Fail, 6, 4)
        );
        assert_eq!(r.keys[0].over_admission, Some(4));
        assert_eq!(r.keys[1].over_admission, Some(0));
        assert!(
            v.notes.contains(
                &"the replies reported limit 6 but the bound checked uses capacity 2".into()
            ),
            "{:?}",
            v.notes
        );
    }

    #[test]
    fn a_pass_with_errors_or_an_interruption_is_inconclusive() {
        let p = plan_of(&["--verify", "--", "PERMIT", "k", "100"]);
        let grant = |valid_at_ms| Classified {
            permit: Some(Permit {
                time_to_wait_ms: 0,
                valid_at_ms,
                expires_at_ms: 9_007_199_254_740_991,
            }),
            ..Classified::allowed()
        };
        let run = |errors: bool, interrupted: bool| {
            let mut c = Collector::new(&p, 0.0);
            c.record(ev(0, 0.0, 1.0, grant(1000)));
            c.record(ev(0, 2.0, 3.0, grant(1100)));
            if errors {
                c.record(failed(0, 4.0, "ERR x"));
            }
            c.finish(&p, Duration::from_secs(1), 3, interrupted)
        };
        let v = run(false, false).verification.unwrap();
        assert_eq!((v.verdict, v.min_gap_ms), (Verdict::Pass, Some(100)));
        let v = run(true, false).verification.unwrap();
        assert_eq!(v.verdict, Verdict::Inconclusive);
        assert!(
            v.notes.iter().any(|n| n.starts_with("1 call(s) failed")),
            "{:?}",
            v.notes
        );
        let r = run(true, true);
        assert!(r.interrupted && r.exit_code() == 130);
        let v = r.verification.unwrap();
        assert_eq!(v.verdict, Verdict::Inconclusive);
        assert!(
            v.notes.iter().any(|n| n.starts_with("interrupted")),
            "{:?}",
            v.notes
        );
        assert!(!v.notes.iter().any(|n| n.contains("call(s) failed")));
        assert_eq!(
            v.notes[0],
            "limit taken from the command's arguments: permits: one per 100 ms"
        );
    }
}
