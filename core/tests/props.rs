//! Property tests of the pure core, with a fake clock: time is only ever a
//! number these tests choose (steady, bursty, frozen, stepping back and
//! forward like NTP or a VM migration), so every property is checked
//! exactly, without sleeping.
//!
//! - bucket: the tokens admitted in any window `W` of real time are at most
//!   `capacity + rate·(W + forward clock steps inside it)`, counted when
//!   callers proceed (WAIT callers after their wait), with WAIT, costs and
//!   clock steps in both directions mixed; the only slack is the fraction
//!   of a microsecond a waiter's due instant is rounded up by, and only for
//!   a window that starts at a waiter;
//! - `retry_after` is tight: still denied 1 µs earlier (and at the reply's
//!   millisecond minus one), allowed at it;
//! - a step back never freezes a bucket: a drained one admits again within
//!   one token's time plus one second (the stamp's resolution);
//! - a million calls at random fractional rates admit exactly the tokens
//!   the rate accrues, none lost to rounding;
//! - permit: consecutive slots are never closer than the interval of the
//!   caller that took the later one (mixed intervals), never more than
//!   `max_waiting` permits wait (one interval), no slot lies past the
//!   horizon, and a step back never makes a caller wait longer than the
//!   queue is deep;
//! - late releases (a stalled server): the window bound still holds when
//!   WAIT callers are released late and the schedule behind them moves;
//! - re-spacing (PERMIT.SET): held callers move to the new interval in
//!   order, promises stand, spacing holds across the change;
//! - leases: at any instant the costs of the live leases add up to at
//!   most the limit in force when each started, across random acquires
//!   (held or not), releases, renewals, expiries, waiters leaving and limit
//!   changes, with weights; ids increase; a replica applying the patches
//!   ends equal;
//! - codec: decoding never panics, encoding round-trips;
//! - decimal: parsing never panics and round-trips integers and decimals.

use proptest::prelude::*;
use throttle_core::bucket::{self, Bucket, Decision, Retry, Verdict};
use throttle_core::codec::Codec;
use throttle_core::decimal;
use throttle_core::permit::{self, Permit, PermitRequest, PermitRule, PermitState};
use throttle_core::rate::{Limit, LimitLion, NANO, Policy, Rate, Rps};
use throttle_core::throttle::{self, KnobChanges, ThrottleState};
use throttle_core::time::{HORIZON, MAX_WAIT};
use throttle_core::{Micros, Timestamp, Write};

/// An instant in 2026 (µs since the epoch).
const T0: u64 = 1_790_000_000_000_000;
const SEC: u64 = 1_000_000;

// ---- strategies --------------------------------------------------------------

/// Rates: decimals with up to 9 significant digits (fractional, ordinary,
/// high) and redis-cell ratios (7 per 3 s…).
fn rate() -> impl Strategy<Value = Rate> {
    prop_oneof![
        3 => (1u64..=999_999_999, 0u32..=9).prop_filter_map("rps", |(digits, scale)| {
            Rate::from_nano(digits.checked_mul(10u64.pow(9 - scale))?).ok()
        }),
        2 => (1u64..=1000, 1u64..=3600).prop_filter_map("ratio", |(n, d)| Rate::new(n, d)),
        1 => Just(Rate::new(7, 3).unwrap()),
        1 => Just(Rate::from_nano(100_000).unwrap()), // 0.0001 tokens/s
    ]
}

/// A limit: a rate and a capacity whose refill stays within the horizon.
fn limit() -> impl Strategy<Value = Limit> {
    (rate(), prop_oneof![3 => 1u64..=20, 1 => 21u64..=100_000])
        .prop_filter_map("valid limit", |(r, c)| Limit::new(r, c).ok())
}

/// Microseconds one token takes to accrue (rounded up, at least 1).
fn token_time(l: &Limit) -> u64 {
    l.rate().time_for(l.rate().units_per_token()).0.max(1)
}

/// How the wall clock moves besides real time.
#[derive(Clone, Copy, Debug)]
enum Step {
    None,
    Back(u64),
    Forward(u64),
}

/// One arrival: the real-time gap since the previous one (in thousandths
/// of a token time), the cost, a WAIT timeout (thousandths of a token
/// time), and a clock step just before it.
#[derive(Clone, Copy, Debug)]
struct Arrival {
    gap_per_mille: u64,
    cost_pick: u64,
    wait_per_mille: Option<u64>,
    step: Step,
}

/// Clock steps of up to an hour, back or forward (one arrival in ten), or
/// none at all.
fn clock_steps(on: bool) -> BoxedStrategy<Step> {
    if !on {
        return Just(Step::None).boxed();
    }
    prop_oneof![
        8 => Just(Step::None),
        1 => (1u64..=3_600 * SEC).prop_map(Step::Back),
        1 => (1u64..=3_600 * SEC).prop_map(Step::Forward),
    ]
    .boxed()
}

fn arrivals(max_len: usize, steps: bool) -> impl Strategy<Value = Vec<Arrival>> {
    let gap = prop_oneof![
        3 => Just(0u64),
        4 => 0u64..=1_000,
        2 => 1_000u64..=10_000,
        1 => 10_000u64..=1_000_000,
    ];
    let cost = prop_oneof![6 => Just(1u64), 3 => any::<u64>(), 1 => Just(0u64)];
    let wait = prop_oneof![3 => Just(None), 2 => (0u64..=20_000).prop_map(Some)];
    let step = clock_steps(steps);
    prop::collection::vec(
        (gap, cost, wait, step).prop_map(|(gap_per_mille, cost_pick, wait_per_mille, step)| {
            Arrival {
                gap_per_mille,
                cost_pick,
                wait_per_mille,
                step,
            }
        }),
        1..max_len,
    )
}

impl Arrival {
    fn gap(&self, token_us: u64) -> u64 {
        token_us.saturating_mul(self.gap_per_mille) / 1000
    }
    /// A cost in `0..=capacity + 1` (1 most often).
    fn cost(&self, capacity: u64) -> u64 {
        match self.cost_pick {
            0 | 1 => self.cost_pick,
            n => n % (capacity + 2),
        }
    }
    fn max_wait(&self, token_us: u64) -> Micros {
        Micros(
            self.wait_per_mille
                .map_or(0, |w| token_us.saturating_mul(w) / 1000),
        )
        .min(MAX_WAIT)
    }
}

/// Real time (monotonic, what held clients wait on) and the wall clock the
/// module reads (real time plus an offset that steps).
#[derive(Clone, Copy, Debug)]
struct Clocks {
    real: u64,
    offset: i128,
}

impl Clocks {
    fn wall(&self) -> Timestamp {
        Timestamp(u64::try_from(i128::from(self.real) + self.offset).unwrap_or(0))
    }
}

/// One admission: when it proceeds (real µs), its cost, whether it was a
/// WAIT caller, and the forward clock steps before its decision
/// (cumulative µs).
#[derive(Clone, Copy, Debug)]
struct Admitted {
    at: u64,
    cost: u64,
    waiter: bool,
    forward: u64,
}

/// Checks every window `[t_i, t_j]` of admissions sorted by real time:
/// `Σ cost ≤ capacity + rate·(t_j − t_i + F)`, exactly, in bucket units,
/// where `F` is the forward clock steps between the earliest and the
/// latest decision of the admissions in the window (the bucket counts on
/// the wall clock, and a step forward is time passing for it; steps back
/// get no credit). A window that starts at a waiter gets one µs of accrual
/// more (its due instant was rounded up to the µs).
fn assert_window_bound(l: &Limit, admitted: &mut [Admitted]) -> Result<(), TestCaseError> {
    admitted.sort_by_key(|a| a.at);
    let per_token = l.rate().units_per_token();
    let per_us = l.rate().units_per_us();
    let cap = l.capacity_units();
    for i in 0..admitted.len() {
        let mut sum: u128 = 0;
        let (mut lo, mut hi) = (u64::MAX, 0u64);
        for j in i..admitted.len() {
            sum += u128::from(admitted[j].cost) * per_token;
            lo = lo.min(admitted[j].forward);
            hi = hi.max(admitted[j].forward);
            let forward = hi - lo;
            let span = admitted[j].at - admitted[i].at + forward + u64::from(admitted[i].waiter);
            let bound = cap + u128::from(span) * per_us;
            prop_assert!(
                sum <= bound,
                "window {i}..={j} [{}, {}] admitted {} units > bound {} ({:?})",
                admitted[i].at,
                admitted[j].at,
                sum,
                bound,
                &admitted[i..=j]
            );
        }
    }
    Ok(())
}

/// Runs `arr` against one bucket; returns the admissions.
fn simulate(l: &Limit, arr: &[Arrival], start: u64) -> Vec<Admitted> {
    let token_us = token_time(l);
    let mut clocks = Clocks {
        real: start,
        offset: 0,
    };
    let mut state: Option<Bucket> = None;
    let mut forward = 0u64;
    let mut out = Vec::new();
    for a in arr {
        clocks.real += a.gap(token_us);
        match a.step {
            Step::None => {}
            Step::Back(d) => clocks.offset -= i128::from(d),
            Step::Forward(d) => {
                clocks.offset += i128::from(d);
                forward += d;
            }
        }
        let cost = a.cost(l.capacity());
        let d = bucket::decide(state.as_ref(), clocks.wall(), l, cost, a.max_wait(token_us));
        if let Verdict::Allowed { wait } = d.verdict {
            out.push(Admitted {
                at: clocks.real + wait.0,
                cost,
                waiter: wait > Micros::ZERO,
                forward,
            });
        }
        if let Some(n) = d.next {
            state = Some(n);
        }
    }
    out
}

/// Runs `arr` against one bucket while the server stalls before some
/// arrivals (`stalls`: arrival index → stall length, µs). As the module
/// does with WAIT callers released late: the first waiter due during the
/// stall is released when it ends, late by `lateness`; every waiter not yet
/// released moves `lateness` later; the next decision sees the state paused
/// by `lateness` (the carry). Returns the admissions, waiters at their
/// actual release.
fn simulate_stalls(
    l: &Limit,
    arr: &[Arrival],
    stalls: &[(usize, u64)],
    start: u64,
) -> Vec<Admitted> {
    let token_us = token_time(l);
    let mut real = start;
    let mut state: Option<Bucket> = None;
    let mut out: Vec<Admitted> = Vec::new();
    for (i, a) in arr.iter().enumerate() {
        real += a.gap(token_us);
        if let Some(&(_, stall)) = stalls.iter().find(|(at, _)| *at == i) {
            let end = real + stall;
            let head = out
                .iter()
                .filter(|o| o.waiter && o.at >= real)
                .map(|o| o.at)
                .min();
            if let Some(h) = head.filter(|&h| h <= end) {
                let lateness = end - h;
                for o in out.iter_mut().filter(|o| o.waiter && o.at >= h) {
                    o.at += lateness;
                }
                state = state.map(|b| b.paused(Micros(lateness)));
            }
            real = end;
        }
        let cost = a.cost(l.capacity());
        let d = bucket::decide(
            state.as_ref(),
            Timestamp(real),
            l,
            cost,
            a.max_wait(token_us),
        );
        if let Verdict::Allowed { wait } = d.verdict {
            out.push(Admitted {
                at: real + wait.0,
                cost,
                waiter: wait > Micros::ZERO,
                forward: 0,
            });
        }
        if let Some(n) = d.next {
            state = Some(n);
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// The window bound when the server stalls and releases WAIT callers
    /// late: the late one goes when the stall ends, those behind it move
    /// back as much, and the state is paused by the same amount.
    #[test]
    fn late_releases_keep_the_window_bound(
        l in limit(),
        arr in arrivals(120, false),
        stalls in prop::collection::vec((0usize..120, 1u64..=20 * SEC), 0..6),
        start in T0..T0 + SEC,
    ) {
        assert_window_bound(&l, &mut simulate_stalls(&l, &arr, &stalls, start))?;
    }

    /// The window bound, steady clock.
    #[test]
    fn admitted_tokens_in_any_window_are_bounded(l in limit(), arr in arrivals(120, false), start in T0..T0 + SEC) {
        assert_window_bound(&l, &mut simulate(&l, &arr, start))?;
    }

    /// The window bound in real time while the wall clock steps back and
    /// forward, WAIT reservations included: a step back creates nothing,
    /// a step forward at most its own accrual.
    #[test]
    fn clock_steps_with_waiters_keep_the_bound(l in limit(), arr in arrivals(120, true), start in T0..T0 + SEC) {
        assert_window_bound(&l, &mut simulate(&l, &arr, start))?;
    }

    /// `retry_after` is exact: denied 1 µs before it (and at the reply's
    /// millisecond minus one), allowed at it.
    #[test]
    fn retry_after_is_tight(l in limit(), arr in arrivals(40, false), cost in 1u64..=20) {
        let token_us = token_time(&l);
        let mut state = None;
        let mut now = T0;
        for a in &arr {
            now += a.gap(token_us);
            if let Some(n) = bucket::decide(state.as_ref(), Timestamp(now), &l, a.cost(l.capacity()), Micros::ZERO).next {
                state = Some(n);
            }
        }
        let cost = cost.min(l.capacity());
        let d = bucket::decide(state.as_ref(), Timestamp(now), &l, cost, Micros::ZERO);
        if let Verdict::Denied { retry: Retry::After(r) } = d.verdict {
            prop_assert!(r > Micros::ZERO);
            let at = |t: u64| bucket::decide(state.as_ref(), Timestamp(t), &l, cost, Micros::ZERO).allowed();
            prop_assert!(!at(now + r.0 - 1), "allowed 1 µs before retry_after {r:?}");
            prop_assert!(at(now + r.0), "denied at retry_after {r:?}");
            let ms = r.as_millis_ceil();
            prop_assert!(!at(now + (ms - 1) * 1000), "allowed at retry_after_ms - 1");
            prop_assert!(at(now + ms * 1000));
        }
    }

    /// A step back never freezes a drained bucket: it admits again within
    /// one token's time plus one second (the stamp's resolution).
    #[test]
    fn a_step_back_never_freezes(l in limit(), back in 1u64..=30 * 24 * 3600 * SEC, into_second in 0u64..SEC) {
        let now = T0 + into_second;
        let d = bucket::decide(None, Timestamp(now), &l, l.capacity(), Micros::ZERO);
        let state = d.next.unwrap();
        let after = Timestamp(now - back);
        let d = bucket::decide(Some(&state), after, &l, 1, Micros::ZERO);
        let Verdict::Denied { retry: Retry::After(r) } = d.verdict else {
            return Err(TestCaseError::fail(format!("{:?}", d.verdict)));
        };
        prop_assert!(r.0 <= token_time(&l) + SEC, "frozen for {r:?}");
        // The moved-back state is kept, and the bucket accrues from there.
        let kept = d.next.unwrap();
        prop_assert!(bucket::decide(Some(&kept), Timestamp(after.0 + r.0), &l, 1, Micros::ZERO).allowed());
    }

    /// Polled every `period` µs, each poll taking every whole token there
    /// is, a bucket admits exactly `capacity + ⌊rate·T⌋` over a long run
    /// (a million calls across the cases): no token is lost or gained to
    /// rounding, at any rate.
    #[test]
    fn polled_buckets_admit_exactly_what_the_rate_accrues(r in rate(), period in 1u64..=50_000, polls in 1_000u64..=20_000) {
        let per_poll = u128::from(period) * r.units_per_us() / r.units_per_token();
        let Ok(capacity) = u64::try_from(per_poll + 2) else { return Ok(()) };
        let Ok(l) = Limit::new(r, capacity) else { return Ok(()) };
        let mut state = None;
        let mut admitted = 0u128;
        for p in 0..=polls {
            let now = Timestamp(T0 + p * period);
            let held = bucket::decide(state.as_ref(), now, &l, 0, Micros::ZERO).remaining;
            if held > 0 {
                let d = bucket::decide(state.as_ref(), now, &l, held, Micros::ZERO);
                prop_assert!(d.allowed());
                admitted += u128::from(held);
                state = d.next;
            }
        }
        let accrued = u128::from(polls * period) * r.units_per_us() / r.units_per_token();
        prop_assert_eq!(admitted, u128::from(capacity) + accrued);
    }

    /// Tokens are carried exactly (rounded down) when the limit changes,
    /// and never beyond the new capacity. (A missing key is a full bucket
    /// under whatever limit is asked: that is not a carry.)
    #[test]
    fn a_new_limit_never_adds_tokens(a in limit(), b in limit(), used in 0u64..=20, gap in 0u64..=10 * SEC) {
        let used = used.clamp(1, a.capacity());
        let s = bucket::decide(None, Timestamp(T0), &a, used, Micros::ZERO).next;
        prop_assert!(s.is_some());
        let held_a = s.map_or(0, |s| s.tokens(Timestamp(T0 + gap)));
        let d = bucket::decide(s.as_ref(), Timestamp(T0 + gap), &b, 0, Micros::ZERO);
        prop_assert!(d.remaining <= held_a.min(b.capacity()));
        prop_assert!(d.remaining + 1 >= held_a.min(b.capacity()));
    }
}

// ---- permits --------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
struct Request {
    gap_us: u64,
    interval_pick: usize,
    max_waiting: u64,
    block: Option<u64>,
    step: Step,
}

fn requests(steps: bool) -> impl Strategy<Value = Vec<Request>> {
    let step = clock_steps(steps);
    prop::collection::vec(
        (
            prop_oneof![3 => Just(0u64), 3 => 0u64..=500_000, 1 => 0u64..=20 * SEC],
            0usize..3,
            0u64..=6,
            prop_oneof![3 => Just(None), 1 => (0u64..=10 * SEC).prop_map(Some)],
            step,
        )
            .prop_map(
                |(gap_us, interval_pick, max_waiting, block, step)| Request {
                    gap_us,
                    interval_pick,
                    max_waiting,
                    block,
                    step,
                },
            ),
        1..100,
    )
}

/// A caller's PERMIT request: `interval` µs, at most `max_waiting`
/// waiting, BLOCK's timeout, not held.
fn request(interval: u64, max_waiting: Option<u64>, block: Option<Micros>) -> PermitRequest {
    PermitRequest {
        rule: Some(PermitRule {
            interval: Micros(interval),
            max_waiting,
        }),
        grace: Some(Micros::ZERO),
        grace_percent: 0,
        max_wait: block,
        held: false,
    }
}

/// A granted slot: its valid_at in real time, and the forward clock steps
/// before it was granted (cumulative µs).
#[derive(Clone, Copy, Debug)]
struct Slot {
    real: i128,
    forward: i128,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// Mixed intervals on one key, the clock stepping both ways: each slot
    /// is at least its taker's interval after the previous one in real
    /// time, less any forward step in between (a step forward is time
    /// passing, for the schedule); a step back never shortens it; no slot
    /// lies past the horizon; a wait never exceeds the queue's depth.
    #[test]
    fn permits_keep_their_spacing(
        intervals in prop::array::uniform3(1u64..=2 * SEC),
        reqs in requests(true),
        single in any::<bool>(),
    ) {
        let mut clocks = Clocks { real: T0, offset: 0 };
        let mut state: Option<PermitState> = None;
        let mut slots: Vec<Slot> = Vec::new();
        let mut forward = 0i128;
        for r in &reqs {
            clocks.real += r.gap_us;
            match r.step {
                Step::None => {}
                Step::Back(d) => clocks.offset -= i128::from(d),
                Step::Forward(d) => {
                    clocks.offset += i128::from(d);
                    forward += i128::from(d);
                }
            }
            let interval = if single { intervals[0] } else { intervals[r.interval_pick] };
            let rule = request(interval, Some(r.max_waiting), r.block.map(Micros));
            let now = clocks.wall();
            let d = permit::decide(state.as_ref(), now, &rule).unwrap();
            let valid_at = match d.answer.permit {
                Permit::Immediate { valid_at } => Some(valid_at),
                Permit::Reserved { valid_at, wait, .. } => {
                    prop_assert!(valid_at.since(now) <= HORIZON);
                    prop_assert_eq!(wait, valid_at.since(now));
                    if let Some(b) = r.block { prop_assert!(wait.0 <= b); }
                    // A wait never exceeds the queue's depth.
                    prop_assert!(wait.0 <= r.max_waiting * interval, "{wait:?} for {} × {interval}", r.max_waiting);
                    Some(valid_at)
                }
                Permit::Refused => None,
            };
            if let Some(v) = valid_at {
                let real = i128::from(v.0) - clocks.offset;
                if let Some(prev) = slots.last() {
                    prop_assert!(
                        real - prev.real >= i128::from(interval) - (forward - prev.forward),
                        "slot {real} only {} after {prev:?} (interval {interval})",
                        real - prev.real
                    );
                }
                slots.push(Slot { real, forward });
            }
            if let Write::Store { value, .. } = d.write { state = Some(value); }
        }
    }

    /// PERMIT.SET re-spaces the held callers: their new slots are exactly
    /// the new interval apart, the first one new interval after the slot
    /// before it (and after the last promise to a caller not held, and not
    /// before now), promises stand, and the next caller comes one new
    /// interval after the last.
    #[test]
    fn respacing_keeps_the_spacing(
        old in 1u64..=2 * SEC,
        new in 1u64..=2 * SEC,
        held_flags in prop::collection::vec(any::<bool>(), 1..20),
        later in 0u64..=5 * SEC,
    ) {
        let mut state = None;
        let (mut held, mut promised) = (Vec::new(), None);
        for &is_held in &held_flags {
            let mut r = request(old, None, None);
            r.held = is_held;
            let d = permit::decide(state.as_ref(), Timestamp(T0), &r).unwrap();
            if let Permit::Reserved { valid_at, .. } = d.answer.permit {
                if is_held { held.push(valid_at) } else { promised = Some(valid_at) }
            }
            if let Write::Store { value, .. } = d.write { state = Some(value); }
        }
        let now = Timestamp(T0 + later);
        let changes = permit::SettingsChanges { interval: Some(Micros(new)), ..Default::default() };
        let st = permit::set(state.as_ref(), now, &changes, Micros(60 * SEC), &held).unwrap();
        let slots = st.answer;
        prop_assert_eq!(slots.len(), held.len());
        let fixed = held.iter().take_while(|&&h| promised.is_some_and(|p| h <= p)).count();
        prop_assert_eq!(&slots[..fixed], &held[..fixed]);
        let moved = &slots[fixed..];
        for w in moved.windows(2) {
            prop_assert_eq!(w[1].since(w[0]), Micros(new));
        }
        if let Some(&first) = moved.first() {
            prop_assert!(first >= now);
            prop_assert!(first >= held[fixed].saturating_sub(Micros(old)).saturating_add(Micros(new)));
            if let Some(p) = promised { prop_assert!(first >= p.saturating_add(Micros(new))); }
        }
        let next = st.write.stored().cloned();
        let d = permit::decide(next.as_ref(), now, &PermitRequest { rule: None, ..request(1, None, None) }).unwrap();
        if let (Permit::Reserved { valid_at, .. }, Some(&last)) = (d.answer.permit, slots.last()) {
            prop_assert!(valid_at >= last.saturating_add(Micros(new)));
        }
    }

    /// With a steady clock and one interval, at most `max_waiting` granted
    /// permits are ever waiting.
    #[test]
    fn at_most_max_waiting_wait(interval in 1u64..=SEC, max_waiting in 0u64..=8, gaps in prop::collection::vec(0u64..=SEC, 1..200)) {
        let rule = request(interval, Some(max_waiting), None);
        let mut state = None;
        let mut waiting: Vec<u64> = Vec::new();
        let mut now = T0;
        for g in gaps {
            now += g;
            waiting.retain(|&t| t > now);
            let d = permit::decide(state.as_ref(), Timestamp(now), &rule).unwrap();
            if let Permit::Reserved { valid_at, .. } = d.answer.permit {
                waiting.push(valid_at.0);
            }
            prop_assert!(waiting.len() as u64 <= max_waiting, "{} waiting > {max_waiting}", waiting.len());
            if let Write::Store { value, .. } = d.write { state = Some(value); }
        }
    }
}

// ---- codec and decimals -----------------------------------------------------------

fn throttle_value() -> impl Strategy<Value = ThrottleState> {
    (limit(), 0u64..=20, 0u64..=10 * SEC, any::<bool>(), 0u8..3).prop_map(
        |(l, used, at, knobs, rps_kind)| {
            let policy = Policy::Bucket(l);
            let o = throttle::throttle(
                None,
                Timestamp(T0 + at),
                Some(&policy),
                used.min(l.capacity()).max(1),
                Micros::ZERO,
            )
            .unwrap();
            let Write::Store { value, .. } = o.write else {
                unreachable!()
            };
            if !knobs {
                return value;
            }
            let rps = match rps_kind {
                0 => Rps::Deny,
                1 => Rps::Allow,
                _ => Rps::Rate(l.rate()),
            };
            let ch = KnobChanges {
                rps: Some(rps),
                burst_nano: Some(NANO),
                window_ns: Some(NANO),
                ttl: Some(Micros(60 * SEC)),
            };
            match throttle::set_knobs(Some(&value), Timestamp(T0 + at), &ch, Micros(SEC)) {
                Ok(step) => step.write.stored().cloned().unwrap_or(value),
                _ => value,
            }
        },
    )
}

/// `bytes` with the byte at `at` replaced by `byte` never panics the
/// decoder; when it still decodes, the value re-encodes (both layouts) to
/// itself.
fn damaged_decodes_or_refuses<S: Codec + Clone + PartialEq + std::fmt::Debug>(
    bytes: &[u8],
    at: prop::sample::Index,
    byte: u8,
) -> Result<(), TestCaseError> {
    let mut bytes = bytes.to_vec();
    let i = at.index(bytes.len());
    bytes[i] = byte;
    if let Ok(d) = S::decode(&bytes) {
        prop_assert_eq!(S::decode(d.encode_replicated().as_bytes()), Ok(d.clone()));
        prop_assert_eq!(S::decode(d.encode().as_bytes()), Ok(d));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn decoding_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..120)) {
        let _ = ThrottleState::decode(&bytes);
        let _ = PermitState::decode(&bytes);
    }

    /// Mutated encodings never panic, and whatever decodes re-encodes to a
    /// value that decodes to itself.
    #[test]
    fn mutated_encodings_decode_or_refuse(v in throttle_value(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        damaged_decodes_or_refuses::<ThrottleState>(v.encode().as_bytes(), at, byte)?;
    }

    #[test]
    fn buckets_round_trip(v in throttle_value()) {
        prop_assert_eq!(ThrottleState::decode(v.encode().as_bytes()), Ok(v.clone()));
        // What a write replicates (fixed-width for a plain bucket) decodes
        // to the same value.
        prop_assert_eq!(ThrottleState::decode(v.encode_replicated().as_bytes()), Ok(v));
    }

    /// The replicated layouts, damaged, decode or refuse, and whatever
    /// decodes re-encodes to itself.
    #[test]
    fn mutated_replicated_layouts_decode_or_refuse(v in throttle_value(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        damaged_decodes_or_refuses::<ThrottleState>(v.encode_replicated().as_bytes(), at, byte)?;
        let mut s = None;
        for (k, interval) in [(0u64, 100u64), (3, 100), (5, 1_000)] {
            let req = PermitRequest {
                rule: Some(PermitRule { interval: Micros(interval * 1_000), max_waiting: None }),
                grace: None,
                grace_percent: 0,
                max_wait: None,
                held: k == 3,
            };
            s = permit::decide(s.as_ref(), Timestamp(T0 + k), &req).unwrap().write.stored().cloned();
        }
        let s = s.unwrap();
        prop_assert_eq!(PermitState::decode(s.encode_replicated().as_bytes()), Ok(s.clone()));
        damaged_decodes_or_refuses::<PermitState>(s.encode_replicated().as_bytes(), at, byte)?;
    }

    #[test]
    fn permits_round_trip(last in T0..T0 + HORIZON.0, back in 0u64..HORIZON.0) {
        let s = PermitState::new(Timestamp(last), Timestamp(last - back));
        prop_assert_eq!(PermitState::decode(s.encode().as_bytes()), Ok(s.clone()));
        prop_assert_eq!(PermitState::decode(s.encode_replicated().as_bytes()), Ok(s));
    }

    #[test]
    fn decimal_parsing_never_panics(text in "[-+0-9.eE]{0,40}") {
        let _ = decimal::parse(text.as_bytes(), 9);
        let _ = decimal::parse(text.as_bytes(), 0);
    }

    #[test]
    fn decimals_round_trip(units in any::<u64>(), scale in 0u32..=9) {
        let text = decimal::format(false, u128::from(units), scale);
        let f = decimal::parse(text.as_bytes(), scale).unwrap();
        prop_assert_eq!(f.units, u128::from(units));
        prop_assert!(!f.negative);
    }

    /// LimitLion arguments given as text reach the same limit as built directly.
    #[test]
    fn limitlion_capacity_is_the_exact_ceiling(rps in 1u64..=1_000_000, burst in 1u64..=1000, window in 1u64..=1000) {
        // rps in thousandths, burst in tenths, window in whole seconds.
        let args = LimitLion {
            rps: Rps::Rate(Rate::from_nano(rps * 1_000_000).unwrap()),
            burst_nano: burst * NANO / 10,
            window_ns: window * NANO,
        };
        if let Ok(Policy::Bucket(l)) = args.policy() {
            // capacity = ceil(rps/1000 × burst/10 × window)
            let exact = (u128::from(rps) * u128::from(burst) * u128::from(window)).div_ceil(10_000).max(1);
            prop_assert_eq!(u128::from(l.capacity()), exact);
        }
    }
}

/// The decisions `simulate` sees are the ones a stored THROTTLE key sees: the
/// property tests above drive the bucket; this pins that `throttle::throttle`
/// passes its decision through unchanged.
#[test]
fn throttle_passes_bucket_decisions_through() {
    let l = Limit::new(Rate::new(5, 1).unwrap(), 80).unwrap();
    let d: Decision = bucket::decide(None, Timestamp(T0), &l, 1, Micros::ZERO);
    let o = throttle::throttle(
        None,
        Timestamp(T0),
        Some(&Policy::Bucket(l)),
        1,
        Micros::ZERO,
    )
    .unwrap();
    assert_eq!(o.answer, throttle::Answer::Bucket(d));
}

// ---- leases -----------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum LeaseOp {
    Acquire {
        limit: u64,
        cost: u64,
        ttl_ms: u64,
        held: bool,
    },
    Release(usize),
    Renew(usize, u64),
    Leave(usize),
}

fn lease_ops(vary_limit: bool) -> impl Strategy<Value = Vec<(u64, LeaseOp)>> {
    let limit = if vary_limit {
        (1u64..=6).boxed()
    } else {
        Just(4u64).boxed()
    };
    let op = prop_oneof![
        5 => (limit, 1u64..=3, 1u64..=3000, any::<bool>()).prop_map(|(limit, cost, ttl_ms, held)| LeaseOp::Acquire { limit, cost, ttl_ms, held }),
        2 => any::<usize>().prop_map(LeaseOp::Release),
        1 => (any::<usize>(), 1u64..=3000).prop_map(|(i, t)| LeaseOp::Renew(i, t)),
        1 => any::<usize>().prop_map(LeaseOp::Leave),
    ];
    prop::collection::vec((prop_oneof![2 => Just(0u64), 3 => 0u64..=1500], op), 1..80)
}

/// One lease as it ran: start, end, cost, the limit in force at its start.
type Ran = (u64, u64, u64, u64);

/// Runs `ops` (each after a gap: ms, plus the µs a command takes) on one
/// key, as the master and as a replica applying its patches; returns every
/// lease as it really ran.
fn run_leases(ops: &[(u64, LeaseOp)]) -> Result<Vec<Ran>, TestCaseError> {
    use std::collections::BTreeMap;
    use throttle_core::State;
    use throttle_core::lease::{self, Acquire, Granted, LeaseState};
    let mut state: Option<LeaseState> = None;
    let mut replica: Option<LeaseState> = None;
    let mut now = T0;
    let mut ids: Vec<u64> = Vec::new();
    let mut last_id = 0u64;
    // id -> (start, end, cost, limit at start if known yet).
    let mut ran: BTreeMap<u64, (u64, u64, u64, Option<u64>)> = BTreeMap::new();
    for &(gap_ms, op) in ops {
        now += gap_ms * 1000 + 1;
        let t = Timestamp(now);
        let pick = |i: usize| ids.get(i % ids.len().max(1)).copied().unwrap_or(0);
        let mut released = None;
        let write = match op {
            LeaseOp::Acquire {
                limit,
                cost,
                ttl_ms,
                held,
            } => {
                let a = Acquire {
                    limit,
                    ttl: Micros(ttl_ms * 1000),
                    cost,
                    held,
                    max_wait: Micros(10 * SEC),
                };
                let step = lease::acquire(state.as_ref(), t, vec![], &a);
                if let Granted::Lease { lease, wait, .. } = step.answer.answer {
                    prop_assert!(lease.id > last_id, "ids increase");
                    last_id = lease.id;
                    ids.push(lease.id);
                    let at_once = (wait == Micros::ZERO).then_some(limit);
                    ran.insert(lease.id, (lease.start.0, lease.expires_at.0, cost, at_once));
                }
                step.write
            }
            LeaseOp::Release(i) => {
                let id = pick(i);
                let step = lease::release(state.as_ref(), t, vec![], id);
                if step.answer.answer {
                    released = Some(id);
                }
                step.write
            }
            LeaseOp::Renew(i, ttl_ms) => {
                lease::renew(state.as_ref(), t, vec![], pick(i), Micros(ttl_ms * 1000)).write
            }
            LeaseOp::Leave(i) => {
                // A waiter (a reservation not started) leaves: cancelled.
                let id = pick(i);
                let waiting = state
                    .as_ref()
                    .is_some_and(|s| s.leases().iter().any(|l| l.id == id && l.start > t));
                if waiting {
                    ran.remove(&id);
                }
                let cancel = if waiting { vec![id] } else { vec![] };
                lease::renew(state.as_ref(), t, cancel, 0, Micros(SEC)).write
            }
        };
        if let Some(r) = released.and_then(|id| ran.get_mut(&id)) {
            r.1 = r.1.min(now);
        }
        match write {
            Write::Patch { value, patch, .. } => {
                replica = Some(LeaseState::apply(replica.as_ref(), &patch).unwrap());
                state = Some(value);
            }
            Write::Delete => {
                state = None;
                replica = None;
            }
            Write::Keep => {}
            Write::Store { .. } => return Err(TestCaseError::fail("leases replicate patches")),
        }
        prop_assert_eq!(&replica, &state);
        // Where each lease stands now (a reservation may have moved; a
        // renewal moved an expiry). A lease starting now or later was just
        // planned under this op's limit.
        let limit_now = state.as_ref().map_or(0, LeaseState::limit);
        // A reservation dropped (it can no longer fit) never ran.
        let present: Vec<u64> = state
            .iter()
            .flat_map(|s| s.leases())
            .map(|l| l.id)
            .collect();
        ran.retain(|id, r| r.0 <= now || present.contains(id));
        for l in state.iter().flat_map(|s| s.leases()) {
            // A reservation not placed (its turn by expiries lies past its
            // caller's deadline) takes no place: it has not run (yet).
            if !l.placed() {
                ran.remove(&l.id);
                continue;
            }
            let r = ran
                .entry(l.id)
                .or_insert((l.start.0, l.expires_at.0, l.cost, None));
            r.0 = l.start.0;
            r.1 = l.expires_at.0;
            if l.start.0 >= now {
                r.3 = Some(limit_now);
            }
        }
    }
    Ok(ran
        .into_values()
        .map(|(s, e, c, limit)| (s, e, c, limit.unwrap_or(0)))
        .collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// A fixed limit of 4: at every instant (every start), the costs live
    /// add up to at most 4, whatever the sequence.
    #[test]
    fn leases_never_exceed_the_limit(ops in lease_ops(false)) {
        let ran = run_leases(&ops)?;
        for &(s, ..) in &ran {
            let live: u64 = ran.iter().filter(|(a, b, ..)| *a <= s && s < *b).map(|r| r.2).sum();
            prop_assert!(live <= 4, "{live} live at {s}: {ran:?}");
        }
    }

    /// Limits change with every call: each lease, when it starts, fits the
    /// limit in force then (existing leases stand when it falls).
    #[test]
    fn each_lease_fits_the_limit_in_force_when_it_starts(ops in lease_ops(true)) {
        let ran = run_leases(&ops)?;
        for &(s, _, _, limit) in &ran {
            // The leases live at its start that started before it, and it.
            let live: u64 = ran.iter().filter(|(a, b, ..)| *a <= s && s < *b).map(|r| r.2).sum();
            prop_assert!(live <= limit, "{live} live at {s} under {limit}: {ran:?}");
        }
    }
}
