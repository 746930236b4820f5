//! The token bucket, kept as the instant it will be full again (GCRA's
//! "theoretical arrival time"): `decide(state, now, limit, cost, max_wait)
//! -> Decision`.
//!
//! Units. A rate of `num/den` tokens per second accrues exactly `num` units
//! per microsecond when one token is `den × 10^6` units; time is measured
//! on a virtual clock `V(t) = t × num` (µs × units per µs). The state is
//! `full`, the virtual instant at which the bucket is full, so at `now`:
//!
//! ```text
//! level(now) = capacity_units − max(0, full − V(now))      (may be < 0)
//! ```
//!
//! `full` never leaves this file: the rest of the crate sees a bucket
//! through its level ([`Bucket::from_level`], [`Bucket::tokens`]), its
//! instants ([`Bucket::full_at`]) and, for the codec, how far `full` lies
//! ahead of the second the state was written ([`Bucket::stored`]).
//!
//! All integers, no rounding anywhere but where a reply asks for whole
//! tokens or whole microseconds: a million calls at 7 tokens per 3 s admit
//! exactly what 7/3 per second allows.
//!
//! Invariants:
//! - a missing bucket is a full one, so an expired key changes nothing;
//! - tokens accrue continuously at the rate, up to the capacity, never
//!   beyond; a denied call changes nothing;
//! - `retry_after` is exact: the same call is denied 1 µs earlier and
//!   allowed at that instant (when nothing else happens in between);
//! - the level goes below zero only when a WAIT caller reserved tokens that
//!   have not accrued yet (at most [`MAX_WAIT`] ahead); later callers queue
//!   behind it;
//! - a clock that steps backwards creates no tokens and freezes nothing:
//!   each state remembers the second it was written (`stamp`), and a state
//!   written "in the future" is moved back by the step, so the bucket
//!   carries on from the new clock at its rate ([`Bucket::rebased`]);
//! - `full` stays below 2^96 and at most `refill time + MAX_WAIT + 1 s`
//!   ahead of its stamp, so the state packs into 32 bytes and every
//!   duration derived from it is bounded.

use crate::rate::{self, Limit, Rate};
use crate::time::{MAX_WAIT, Micros, Timestamp};

/// The latest instant the arithmetic accepts (about year 148,000): later
/// clocks are read as this one. (The module's clock stops at
/// [`Timestamp::LATEST`], well before.)
pub const MAX_INSTANT: Timestamp = Timestamp(1 << 62);
const FULL_BITS: u32 = 96;
const US_PER_S: u64 = 1_000_000;

/// A bucket's stored state: when it is full again, under which limit, and
/// when it was written. 32 bytes, 8-byte aligned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct Bucket {
    /// `full` (virtual units, < 2^96): low 64 bits.
    full_lo: u64,
    /// `full`: high 32 bits.
    full_hi: u32,
    /// The second (since the epoch) in which this state was written.
    stamp_s: u32,
    /// The limit the state is counted in.
    limit: Limit,
}

/// Why a call was allowed or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed; a WAIT caller proceeds after `wait` (zero otherwise).
    Allowed {
        wait: Micros,
    },
    Denied {
        retry: Retry,
    },
}

/// When a denied call would be allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Retry {
    /// After this long, if nothing else happens in between.
    After(Micros),
    /// Never: the cost exceeds the capacity.
    Never,
}

/// The outcome of one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    /// Whole tokens left when the caller proceeds (allowed) or now (denied).
    pub remaining: u64,
    /// Until the bucket is full again, from when the caller proceeds
    /// (allowed) or from now (denied), rounded up to whole µs.
    pub reset_after: Micros,
    /// The limit in force.
    pub limit: Limit,
    /// The state to store, or `None` when nothing changes.
    pub next: Option<Bucket>,
}

impl Decision {
    pub fn allowed(&self) -> bool {
        matches!(self.verdict, Verdict::Allowed { .. })
    }

    /// How long an allowed WAIT caller is held (zero otherwise).
    pub fn wait(&self) -> Micros {
        match self.verdict {
            Verdict::Allowed { wait } => wait,
            Verdict::Denied { .. } => Micros::ZERO,
        }
    }
}

/// The virtual clock: `V(t) = t × units per µs`.
fn v(at: Timestamp, rate: Rate) -> u128 {
    u128::from(at.min(MAX_INSTANT).0).saturating_mul(rate.units_per_us())
}

fn stamp_of(now: Timestamp) -> u32 {
    u32::try_from(now.as_secs_floor()).unwrap_or(u32::MAX)
}

fn signed(u: u128) -> i128 {
    i128::try_from(u).unwrap_or(i128::MAX)
}

/// How far `full` may lie ahead of the state's stamp: a whole capacity,
/// and a year of reservations, and the second the stamp rounds down.
fn max_ahead(limit: &Limit) -> u128 {
    limit.capacity_units().saturating_add(
        u128::from(MAX_WAIT.0.saturating_add(US_PER_S)).saturating_mul(limit.rate().units_per_us()),
    )
}

impl Bucket {
    fn pack(limit: Limit, full: u128, stamp_s: u32) -> Option<Bucket> {
        if full >> FULL_BITS != 0 {
            return None;
        }
        Some(Bucket {
            full_lo: u64::try_from(full & u128::from(u64::MAX)).ok()?,
            full_hi: u32::try_from(full >> 64).ok()?,
            stamp_s,
            limit,
        })
    }

    /// `full`, in virtual units (private: see the module docs).
    fn full(&self) -> u128 {
        (u128::from(self.full_hi) << 64) | u128::from(self.full_lo)
    }

    /// A state as stored: `full` is `ahead` units past the start of second
    /// `stamp_s`. `None` when it breaks an invariant (the codec refuses such
    /// bytes): `full` below 2^96 and no further ahead than a call can put it.
    pub fn from_stored(limit: Limit, stamp_s: u32, ahead: i128) -> Option<Bucket> {
        let base = v(Timestamp::from_secs(u64::from(stamp_s)), limit.rate());
        if ahead > signed(max_ahead(&limit)) {
            return None;
        }
        let full = if ahead >= 0 {
            base.checked_add(u128::try_from(ahead).ok()?)?
        } else {
            base.checked_sub(ahead.unsigned_abs())?
        };
        Bucket::pack(limit, full, stamp_s)
    }

    /// What the codec stores: the limit, the stamp, and how far `full` lies
    /// ahead of the stamp's second.
    pub fn stored(&self) -> (Limit, u32, i128) {
        let base = v(
            Timestamp::from_secs(u64::from(self.stamp_s)),
            self.limit.rate(),
        );
        let full = self.full();
        let ahead = if full >= base {
            signed(full.saturating_sub(base))
        } else {
            signed(base.saturating_sub(full)).saturating_neg()
        };
        (self.limit, self.stamp_s, ahead)
    }

    /// The fixed-width form (`fixed.rs`, version 2): `full`'s low 64 and
    /// high 32 bits, the stamp, the rate's numerator and denominator, the
    /// capacity, little-endian; read back by [`Bucket::from_raw_full`].
    #[inline]
    pub(crate) fn put_fixed<const N: usize>(&self, w: &mut crate::codec::FixedWriter<N>) {
        w.put(&self.full_lo.to_le_bytes())
            .put(&self.full_hi.to_le_bytes())
            .put(&self.stamp_s.to_le_bytes())
            .put(&self.limit.rate().num().to_le_bytes())
            .put(&self.limit.rate().den().to_le_bytes())
            .put(&self.limit.capacity().to_le_bytes());
    }

    /// A state in the fixed-width form of encoding version 2 (`full` as
    /// stored then); `None` when it breaks an invariant.
    pub(crate) fn from_raw_full(limit: Limit, full: u128, stamp_s: u32) -> Option<Bucket> {
        let b = Bucket::pack(limit, full, stamp_s)?;
        let ahead = full.saturating_sub(v(Timestamp::from_secs(u64::from(stamp_s)), limit.rate()));
        (ahead <= max_ahead(&limit)).then_some(b)
    }

    /// A bucket full at `now` under `limit` (what a missing key means).
    pub fn full_at_now(limit: Limit, now: Timestamp) -> Bucket {
        let full = v(now, limit.rate());
        Bucket {
            // V(now) < 2^94: both halves fit.
            full_lo: u64::try_from(full & u128::from(u64::MAX)).unwrap_or(0),
            full_hi: u32::try_from(full >> 64).unwrap_or(0),
            stamp_s: stamp_of(now),
            limit,
        }
    }

    /// The one conversion from a level to a state: a bucket under `limit`
    /// holding `level` units at instant `at` (clamped between a year of
    /// reservations below zero and the capacity), written at `at`.
    pub fn from_level(limit: Limit, level: i128, at: Timestamp) -> Option<Bucket> {
        let rate = limit.rate();
        let cap = signed(limit.capacity_units());
        let floor =
            signed(u128::from(MAX_WAIT.0).saturating_mul(rate.units_per_us())).saturating_neg();
        let level = level.clamp(floor, cap);
        let behind = u128::try_from(cap.saturating_sub(level)).ok()?;
        let at = at.min(MAX_INSTANT);
        Bucket::from_raw_full(limit, v(at, rate).saturating_add(behind), stamp_of(at))
    }

    /// A bucket under `limit` that is full again at `full_at` (or now, if
    /// that has passed): a state taken over from another limiter.
    /// `None` when that is further ahead than any call can put a bucket.
    pub fn full_again_at(limit: Limit, full_at: Timestamp, now: Timestamp) -> Option<Bucket> {
        let behind = v(full_at, limit.rate()).saturating_sub(v(now, limit.rate()));
        if behind > max_ahead(&limit) {
            return None;
        }
        let level = signed(limit.capacity_units()).saturating_sub(signed(behind));
        Bucket::from_level(limit, level, now)
    }

    /// The limit this state is counted in.
    pub fn limit(&self) -> Limit {
        self.limit
    }

    /// The second this state was written in.
    pub fn stamp_s(&self) -> u32 {
        self.stamp_s
    }

    /// When the bucket is full again (absolute, rounded up to whole µs).
    pub fn full_at(&self) -> Timestamp {
        Timestamp(self.limit().rate().time_for(self.full()).0)
    }

    /// Whether the bucket is full again by `at` (one multiplication).
    pub fn full_by(&self, at: Timestamp) -> bool {
        self.full() <= v(at, self.limit.rate())
    }

    /// The same state moved back by a clock step: when `now` is before the
    /// second it was written in, every time in it moves back by the step
    /// (at least the part of it that crossed a second), so the limiter
    /// carries on from the new clock at its rate. `None` when the clock did
    /// not step back.
    pub fn rebased(&self, now: Timestamp) -> Option<Bucket> {
        let written = Timestamp::from_secs(u64::from(self.stamp_s));
        if now >= written {
            return None;
        }
        let step = written.since(now);
        let limit = self.limit();
        let shift = u128::from(step.0).saturating_mul(limit.rate().units_per_us());
        Bucket::pack(limit, self.full().saturating_sub(shift), stamp_of(now))
    }

    /// The same state with its schedule `by` later (a stall of the server
    /// released its WAIT callers late: the tokens that accrued meanwhile go
    /// to nobody). At most as far ahead as a state may lie.
    pub fn paused(&self, by: Micros) -> Bucket {
        let limit = self.limit();
        let base = v(Timestamp::from_secs(u64::from(self.stamp_s)), limit.rate());
        let most = base.saturating_add(max_ahead(&limit));
        let full = self
            .full()
            .saturating_add(u128::from(by.0).saturating_mul(limit.rate().units_per_us()));
        Bucket::pack(limit, full.min(most).max(self.full()), self.stamp_s).unwrap_or(*self)
    }

    /// Tokens, in units, at `now` (no rebase): negative while reservations
    /// are outstanding.
    fn level(&self, now: Timestamp) -> i128 {
        let limit = self.limit();
        let behind = self.full().saturating_sub(v(now, limit.rate()));
        signed(limit.capacity_units()).saturating_sub(signed(behind))
    }

    /// Whole tokens at `now` (floor, never negative).
    pub fn tokens(&self, now: Timestamp) -> u64 {
        let b = self.rebased(now).unwrap_or(*self);
        whole_tokens(b.level(now), b.limit())
    }

    /// Until full again from `now`, rounded up.
    pub fn reset_after(&self, now: Timestamp) -> Micros {
        let b = self.rebased(now).unwrap_or(*self);
        let rate = b.limit().rate();
        rate.time_for(b.full().saturating_sub(v(now, rate)))
    }

    /// The state at `now` counted in `limit`: the tokens it holds, carried
    /// over (rounded down, capped at the new capacity).
    pub fn under(&self, now: Timestamp, limit: &Limit) -> Bucket {
        refund(Some(self), now, limit, 0)
    }
}

fn whole_tokens(level: i128, limit: Limit) -> u64 {
    let per = limit.rate().units_per_token();
    let level = u128::try_from(level).unwrap_or(0);
    u64::try_from(rate::div_floor(level, per)).unwrap_or(u64::MAX)
}

/// The state at `now` under `limit`: the stored one (moved back after a
/// clock step) when it was written under the same limit, else its tokens
/// carried over to the new limit (rounded down, capped at the new
/// capacity). Returns `full` and whether anything had to change.
fn current(state: Option<&Bucket>, now: Timestamp, limit: &Limit) -> (u128, bool) {
    let rate = limit.rate();
    let Some(stored) = state else {
        return (v(now, rate), false);
    };
    let rebased = stored.rebased(now);
    let b = rebased.unwrap_or(*stored);
    let old = b.limit();
    if old == *limit {
        return (b.full(), rebased.is_some());
    }
    // Tokens held now, carried to the new unit: floor(level × U_new / U_old).
    let level = b.level(now);
    let (u_old, u_new) = (
        signed(old.rate().units_per_token()).max(1),
        signed(rate.units_per_token()),
    );
    let whole = level.div_euclid(u_old);
    let part = level.rem_euclid(u_old);
    let carried = whole
        .saturating_mul(u_new)
        .saturating_add(part.saturating_mul(u_new).div_euclid(u_old));
    let carried = Bucket::from_level(*limit, carried, now).map_or(v(now, rate), |c| c.full());
    (carried, true)
}

/// Decides one call of `cost` tokens at `now` under `limit`.
///
/// With `max_wait > 0` (at most [`MAX_WAIT`]) a call whose tokens accrue
/// within `max_wait` is allowed now with a `wait`: the tokens are reserved
/// (the level goes below zero) so later callers queue behind it.
pub fn decide(
    state: Option<&Bucket>,
    now: Timestamp,
    limit: &Limit,
    cost: u64,
    max_wait: Micros,
) -> Decision {
    let now = now.min(MAX_INSTANT);
    let rate = limit.rate();
    let per_us = rate.units_per_us();
    let cap = limit.capacity_units();
    let (full, changed) = current(state, now, limit);
    let vnow = v(now, rate);
    let behind = full.saturating_sub(vnow);
    let persist_rebase = || match (state, changed) {
        (Some(s), true) => s.rebased(now),
        _ => None,
    };
    let denied = |retry| Decision {
        verdict: Verdict::Denied { retry },
        remaining: whole_tokens(signed(cap).saturating_sub(signed(behind)), *limit),
        reset_after: rate.time_for(behind),
        limit: *limit,
        // A denied call writes nothing, except to keep a state that had to
        // be moved back after a clock step (so it stays moved).
        next: persist_rebase(),
    };
    if cost > limit.capacity() {
        return denied(Retry::Never);
    }
    let cost_units = u128::from(cost).saturating_mul(rate.units_per_token());
    // GCRA: the call is "emitted" at max(full, now) and pushes full by its cost.
    let after = full.max(vnow).saturating_add(cost_units);
    let behind_after = after.saturating_sub(vnow);
    let wait = rate.time_for(behind_after.saturating_sub(cap));
    if wait > max_wait.min(MAX_WAIT) {
        return denied(Retry::After(wait));
    }
    // Tokens when the caller proceeds (after its wait): cap − (after − V(now + wait)).
    let at_proceed = cap
        .saturating_add(u128::from(wait.0).saturating_mul(per_us))
        .saturating_sub(behind_after);
    let next = if cost > 0 {
        Bucket::pack(*limit, after, stamp_of(now))
    } else {
        persist_rebase()
    };
    Decision {
        verdict: Verdict::Allowed { wait },
        remaining: u64::try_from(rate::div_floor(at_proceed.min(cap), rate.units_per_token()))
            .unwrap_or(u64::MAX),
        reset_after: rate.time_for(behind_after).saturating_sub(wait),
        limit: *limit,
        next,
    }
}

/// Gives back `tokens` (work that did not happen) at `now` under `limit`,
/// never above its capacity. Returns the new state.
pub fn refund(state: Option<&Bucket>, now: Timestamp, limit: &Limit, tokens: u64) -> Bucket {
    let now = now.min(MAX_INSTANT);
    let rate = limit.rate();
    let (full, _) = current(state, now, limit);
    let back = u128::from(tokens).saturating_mul(rate.units_per_token());
    let vnow = v(now, rate);
    let full = full.saturating_sub(back).max(vnow);
    Bucket::pack(*limit, full, stamp_of(now)).unwrap_or_else(|| Bucket::full_at_now(*limit, now))
}

/// Whether `next` changes anything `old` holds: its full-again instant,
/// its limit, or a clock step it had to be moved back for.
pub fn differs(old: &Bucket, next: &Bucket, now: Timestamp) -> bool {
    next.full() != old.full() || old.limit() != next.limit() || old.rebased(now).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rate::NANO;

    const SEC: u64 = 1_000_000;
    /// An instant in 2026.
    const T0: u64 = 1_790_000_000 * SEC;

    fn limit(rps: u64, capacity: u64) -> Limit {
        Limit::new(Rate::from_nano(rps * NANO).unwrap(), capacity).unwrap()
    }

    const NEVER: Verdict = Verdict::Denied {
        retry: Retry::Never,
    };

    /// Denied; the same call is allowed after `us`.
    fn denied_for(us: u64) -> Verdict {
        Verdict::Denied {
            retry: Retry::After(Micros(us)),
        }
    }

    fn run(state: &mut Option<Bucket>, now: u64, l: &Limit, cost: u64) -> Decision {
        let d = decide(state.as_ref(), Timestamp(now), l, cost, Micros::ZERO);
        if let Some(n) = d.next {
            *state = Some(n);
        }
        d
    }

    #[test]
    fn stored_values_stay_small() {
        assert_eq!(std::mem::size_of::<Bucket>(), 32);
        assert_eq!(std::mem::align_of::<Bucket>(), 8);
        assert_eq!(std::mem::size_of::<Option<Bucket>>(), 32);
        assert_eq!(std::mem::size_of::<Limit>(), 16);
    }

    #[test]
    fn limitlion_example_first_call() {
        // THROTTLE user:1 5 2 8 → [1, 79, 0, 200, 80]
        let l = limit(5, 80);
        let d = decide(None, Timestamp(T0), &l, 1, Micros::ZERO);
        assert_eq!(d.verdict, Verdict::Allowed { wait: Micros::ZERO });
        assert_eq!(d.remaining, 79);
        assert_eq!(d.reset_after, Micros(200_000));
        assert_eq!(d.limit.capacity(), 80);
        assert_eq!(d.next.unwrap().full_at(), Timestamp(T0 + 200_000));
    }

    #[test]
    fn drains_then_denies_with_exact_retry_after() {
        let l = limit(5, 3);
        let mut s = None;
        for i in 0..3 {
            assert!(run(&mut s, T0, &l, 1).allowed(), "call {i}");
        }
        let d = run(&mut s, T0, &l, 1);
        assert_eq!(d.verdict, denied_for(200_000));
        assert_eq!(d.next, None);
        // 1 µs early: still denied; exactly on time: allowed.
        assert!(!run(&mut s, T0 + 199_999, &l, 1).allowed());
        assert!(run(&mut s, T0 + 200_000, &l, 1).allowed());
    }

    #[test]
    fn no_extra_token_after_a_long_idle() {
        let l = limit(5, 10);
        let mut s = None;
        run(&mut s, T0, &l, 10);
        let later = T0 + 365 * 24 * 3600 * SEC;
        assert_eq!(s.unwrap().tokens(Timestamp(later)), 10);
        assert!(run(&mut s, later, &l, 10).allowed());
        assert!(!run(&mut s, later, &l, 1).allowed());
    }

    #[test]
    fn a_step_back_creates_no_tokens_and_freezes_nothing() {
        // Drain a bucket of 5 at 1 token/s, then step the clock back 1 h.
        let l = limit(1, 5);
        let mut s = None;
        run(&mut s, T0, &l, 5);
        let back = T0 - 3600 * SEC;
        let d = run(&mut s, back, &l, 1);
        // Not frozen for an hour: the next token is 1 s away, as before the step.
        assert_eq!(d.verdict, denied_for(SEC));
        // The moved-back state is kept, though the call was denied.
        assert_eq!(s.unwrap().stamp_s(), u32::try_from(back / SEC).unwrap());
        assert!(!run(&mut s, back + SEC - 1, &l, 1).allowed());
        assert!(run(&mut s, back + SEC, &l, 1).allowed());
        // And no tokens were created: only one per second from the new clock.
        assert!(!run(&mut s, back + SEC, &l, 1).allowed());
        assert_eq!(
            s.unwrap().reset_after(Timestamp(back + SEC)),
            Micros(5 * SEC)
        );
    }

    #[test]
    fn a_step_forward_refills_at_most_the_capacity() {
        let l = limit(1, 5);
        let mut s = None;
        run(&mut s, T0, &l, 5);
        let ahead = T0 + 3600 * SEC;
        for _ in 0..5 {
            assert!(run(&mut s, ahead, &l, 1).allowed());
        }
        assert!(!run(&mut s, ahead, &l, 1).allowed());
    }

    #[test]
    fn cost_above_capacity_can_never_succeed() {
        let d = decide(None, Timestamp(T0), &limit(5, 80), 81, Micros::MAX);
        assert_eq!((d.verdict, d.remaining, d.next), (NEVER, 80, None));
    }

    #[test]
    fn cost_zero_is_allowed_and_writes_nothing() {
        let l = limit(5, 1);
        let mut s = None;
        run(&mut s, T0, &l, 1);
        let d = run(&mut s, T0, &l, 0);
        assert!(d.allowed());
        assert_eq!(d.next, None);
        assert_eq!(d.remaining, 0);
    }

    #[test]
    fn fractional_rates_accrue_exactly() {
        // 7 tokens per 3 s into a capacity of 10, polled every millisecond
        // for 300 s: exactly 10 + 7/3 × 300 = 710 tokens, none lost to rounding.
        let l = Limit::new(Rate::new(7, 3).unwrap(), 10).unwrap();
        let mut s = None;
        let admitted = (0..=300_000u64)
            .filter(|ms| run(&mut s, T0 + ms * 1000, &l, 1).allowed())
            .count();
        assert_eq!(admitted, 710);
        // And the retry time of a drained bucket is the exact next token,
        // rounded up to the µs: 3/7 s.
        let d = run(&mut s, T0 + 300 * SEC, &l, 1);
        assert_eq!(d.verdict, denied_for((3 * SEC).div_ceil(7)));
    }

    #[test]
    fn wait_reserves_and_queues_later_callers() {
        let l = limit(10, 1); // one token per 100 ms
        let mut s = None;
        assert!(run(&mut s, T0, &l, 1).allowed());
        let w1 = decide(s.as_ref(), Timestamp(T0), &l, 1, Micros(SEC));
        assert_eq!(
            w1.verdict,
            Verdict::Allowed {
                wait: Micros(100_000)
            }
        );
        assert_eq!(w1.remaining, 0);
        s = w1.next;
        let w2 = decide(s.as_ref(), Timestamp(T0), &l, 1, Micros(SEC));
        assert_eq!(w2.wait(), Micros(200_000));
        s = w2.next;
        // A plain caller queues behind both reservations.
        let d = decide(s.as_ref(), Timestamp(T0), &l, 1, Micros::ZERO);
        assert_eq!(d.verdict, denied_for(300_000));
        // A waiter whose turn is beyond its timeout reserves nothing.
        let w3 = decide(s.as_ref(), Timestamp(T0), &l, 1, Micros(299_999));
        assert!(!w3.allowed());
        assert_eq!(w3.next, None);
    }

    #[test]
    fn a_new_limit_keeps_the_tokens_held() {
        let mut s = None;
        run(&mut s, T0, &limit(1, 10), 4); // 6 left
        let d = decide(s.as_ref(), Timestamp(T0), &limit(2, 100), 0, Micros::ZERO);
        assert_eq!(d.remaining, 6);
        let d = decide(s.as_ref(), Timestamp(T0), &limit(2, 3), 0, Micros::ZERO);
        assert_eq!(d.remaining, 3);
        // Fractional tokens are carried exactly (1/3 + 2/3 = 1).
        let l3 = Limit::new(Rate::new(1, 3).unwrap(), 2).unwrap();
        let mut s = None;
        run(&mut s, T0, &l3, 2);
        let held = decide(
            s.as_ref(),
            Timestamp(T0 + SEC),
            &limit(1, 2),
            0,
            Micros::ZERO,
        );
        assert_eq!(held.remaining, 0);
        let held = decide(
            s.as_ref(),
            Timestamp(T0 + 3 * SEC),
            &limit(1, 2),
            0,
            Micros::ZERO,
        );
        assert_eq!(held.remaining, 1);
    }

    #[test]
    fn refund_never_exceeds_capacity() {
        let l = limit(1, 5);
        let mut s = None;
        run(&mut s, T0, &l, 3);
        let r = refund(s.as_ref(), Timestamp(T0), &l, 2);
        assert_eq!(r.tokens(Timestamp(T0)), 4);
        let r = refund(Some(&r), Timestamp(T0), &l, 100);
        assert_eq!(r.tokens(Timestamp(T0)), 5);
        assert_eq!(r.reset_after(Timestamp(T0)), Micros::ZERO);
    }

    #[test]
    fn extreme_parameters_do_not_overflow() {
        let fast = limit(1_000_000_000, crate::rate::MAX_CAPACITY);
        let d = decide(None, Timestamp(u64::MAX), &fast, u64::MAX, Micros::MAX);
        assert!(!d.allowed());
        let d = decide(None, Timestamp(u64::MAX), &fast, 1, Micros::MAX);
        assert!(d.allowed());
        assert!(d.next.is_some());
        // A year of reservations at the top rate still packs.
        let mut s = None;
        for _ in 0..3 {
            let d = decide(s.as_ref(), Timestamp(T0), &fast, fast.capacity(), MAX_WAIT);
            assert!(d.allowed());
            s = d.next;
        }
        let slow = Limit::new(Rate::new(1, 1_000_000_000).unwrap(), 1).unwrap();
        let d = decide(None, Timestamp(T0), &slow, 1, Micros::ZERO);
        let d2 = decide(d.next.as_ref(), Timestamp(T0), &slow, 1, Micros::ZERO);
        assert_eq!(d2.verdict, denied_for(1_000_000_000 * SEC));
    }

    #[test]
    fn stored_states_round_trip_and_refuse_what_no_call_can_produce() {
        let l = limit(1, 5);
        let stamp = u32::try_from(T0 / SEC).unwrap();
        let mut s = None;
        run(&mut s, T0 + 300_000, &l, 3);
        let b = s.unwrap();
        let (limit, st, ahead) = b.stored();
        assert_eq!((limit, st), (l, stamp));
        assert_eq!(Bucket::from_stored(limit, st, ahead), Some(b));
        let year = i128::from(MAX_WAIT.0);
        assert!(Bucket::from_stored(l, stamp, 6 * SEC as i128 + year).is_some());
        assert!(Bucket::from_stored(l, stamp, 7 * SEC as i128 + year).is_none());
        assert!(Bucket::from_stored(l, stamp, -(1 << 100)).is_none());
        let base = v(Timestamp(T0), l.rate());
        assert!(Bucket::from_raw_full(l, base, stamp).is_some());
        assert!(Bucket::from_raw_full(l, 1 << 96, stamp).is_none());
    }

    #[test]
    fn a_paused_bucket_is_the_same_schedule_later() {
        let l = limit(10, 1); // one token per 100 ms
        let mut s = None;
        run(&mut s, T0, &l, 1);
        let paused = s.unwrap().paused(Micros(250_000));
        // Full again 250 ms later than it would have been.
        assert_eq!(paused.full_at(), Timestamp(T0 + 350_000));
        assert!(!decide(Some(&paused), Timestamp(T0 + 349_999), &l, 1, Micros::ZERO).allowed());
        assert!(decide(Some(&paused), Timestamp(T0 + 350_000), &l, 1, Micros::ZERO).allowed());
        // Never further ahead than a state may lie.
        let far = s.unwrap().paused(Micros::MAX);
        assert!(Bucket::from_stored(far.limit(), far.stamp_s(), far.stored().2).is_some());
    }
}
