//! The token bucket: `decide(state, now, quota, cost, max_wait) -> Decision`.
//!
//! State is the number of tokens at one instant, in femto-tokens
//! (10^-15 token): a rate of `r` nano-tokens per second is exactly `r`
//! femto-tokens per microsecond, so accrual over any whole number of
//! microseconds is an exact integer and no rounding ever accumulates.
//!
//! Invariants:
//! - tokens accrue continuously at `rps` up to the capacity, never beyond;
//! - a missing bucket is a full one, so an expired key changes nothing;
//! - a clock that steps backwards accrues nothing (elapsed time is clamped
//!   to zero), so it never creates tokens;
//! - a denied call changes nothing;
//! - `retry_after` is exact: the same call is denied 1 µs earlier and
//!   allowed at that instant (when nothing else happens in between);
//! - the level goes below zero only when a WAIT caller reserved tokens that
//!   have not accrued yet; later callers then queue behind it.

use crate::quota::Quota;
use crate::time::Micros;

/// Femto-tokens per token.
pub const FEMTO: i128 = 1_000_000_000_000_000;

/// Bound on |level| accepted from storage: far beyond any reachable state
/// (capacity ≤ 10^30 femto, reservations ≤ 10^19 × 3.2·10^13), far below
/// the i128 limit.
pub const LEVEL_BOUND: i128 = FEMTO * FEMTO * 1_000_000;

/// A bucket's state: `level` femto-tokens at instant `updated_at`.
///
/// Packed to 8-byte alignment: an `i128` would otherwise align the whole
/// stored value to 16 bytes and cost 16 bytes per key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, packed(8))]
pub struct Bucket {
    pub level: i128,
    pub updated_at: Micros,
}

/// The outcome of one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// How long an allowed caller must wait for the tokens it reserved
    /// (only with `max_wait > 0`; zero otherwise).
    pub wait: Micros,
    /// Whole tokens left once the caller proceeds (floor, never negative).
    pub remaining: u64,
    /// For a denied call, when the same call would be allowed; `None` when
    /// it never can be (cost above capacity). Zero for an allowed call.
    pub retry_after: Option<Micros>,
    /// Until the bucket is full again, from now, rounded up to whole µs.
    pub reset_after: Micros,
    /// The capacity.
    pub limit: u64,
    /// The state to store, or `None` when nothing changes.
    pub next: Option<Bucket>,
}

impl Quota {
    /// Capacity in femto-tokens (≤ 10^30).
    pub fn capacity_femto(&self) -> i128 {
        i128::from(self.capacity).saturating_mul(FEMTO)
    }
}

/// Tokens (femto) in the bucket at `now`.
pub fn level_at(state: Option<&Bucket>, now: Micros, quota: &Quota) -> i128 {
    let cap = quota.capacity_femto();
    let Some(b) = state else { return cap };
    let level = b.level.min(cap);
    let elapsed = u128::from(now.since(b.updated_at).0);
    let accrued = elapsed.saturating_mul(u128::from(quota.rps_nano));
    let room = cap.saturating_sub(level).unsigned_abs();
    if accrued >= room {
        cap
    } else {
        // accrued < room ≤ 2·LEVEL_BOUND: fits in i128.
        level.saturating_add(i128::try_from(accrued).unwrap_or(i128::MAX))
    }
}

/// Until `b` is full again (from `now`, rounded up to whole µs).
pub fn time_to_full(b: &Bucket, now: Micros, quota: &Quota) -> Micros {
    let level = level_at(Some(b), now, quota);
    time_to_accrue(quota.capacity_femto().saturating_sub(level), quota)
}

/// Microseconds until `deficit` femto-tokens accrue, rounded up.
fn time_to_accrue(deficit: i128, quota: &Quota) -> Micros {
    if deficit <= 0 {
        return Micros::ZERO;
    }
    let rate = u128::from(quota.rps_nano.max(1));
    let us = deficit.unsigned_abs().div_ceil(rate);
    Micros(u64::try_from(us).unwrap_or(u64::MAX))
}

fn whole_tokens(level: i128) -> u64 {
    u64::try_from(level.max(0) / FEMTO).unwrap_or(u64::MAX)
}

/// Decides one call of `cost` tokens at `now`.
///
/// With `max_wait > 0` a call whose tokens accrue within `max_wait` is
/// allowed now with a `wait`: the tokens are reserved (the level may go
/// negative) so later callers queue behind it.
pub fn decide(
    state: Option<&Bucket>,
    now: Micros,
    quota: &Quota,
    cost: u64,
    max_wait: Micros,
) -> Decision {
    let cap = quota.capacity_femto();
    let level = level_at(state, now, quota);
    let cost_f = i128::from(cost).saturating_mul(FEMTO);
    let denied = |retry_after| Decision {
        allowed: false,
        wait: Micros::ZERO,
        remaining: whole_tokens(level),
        retry_after,
        reset_after: time_to_accrue(cap.saturating_sub(level), quota),
        limit: quota.capacity,
        next: None,
    };
    if cost_f > cap {
        return denied(None);
    }
    let deficit = cost_f.saturating_sub(level);
    let wait = time_to_accrue(deficit, quota);
    if wait > max_wait {
        return denied(Some(wait));
    }
    let after = level.saturating_sub(cost_f);
    // What the caller sees when it proceeds (after its wait, if any).
    let at_proceed =
        after.saturating_add(i128::from(wait.0).saturating_mul(i128::from(quota.rps_nano)));
    let reset_after = time_to_accrue(cap.saturating_sub(after), quota);
    Decision {
        allowed: true,
        wait,
        remaining: whole_tokens(at_proceed.min(cap)),
        retry_after: Some(Micros::ZERO),
        reset_after,
        limit: quota.capacity,
        next: (cost > 0).then_some(Bucket {
            level: after,
            updated_at: now,
        }),
    }
}

/// Gives back `tokens` (work that did not happen), never above capacity.
/// Returns the new state.
pub fn refund(state: Option<&Bucket>, now: Micros, quota: &Quota, tokens: u64) -> Bucket {
    let level = level_at(state, now, quota);
    let back = i128::from(tokens).saturating_mul(FEMTO);
    Bucket {
        level: level.saturating_add(back).min(quota.capacity_femto()),
        updated_at: now,
    }
}

impl Decision {
    /// The moment the bucket is full again (when its key may expire).
    pub fn full_at(&self, now: Micros) -> Micros {
        now.saturating_add(self.reset_after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::NANO;

    const SEC: u64 = 1_000_000;

    fn quota(rps: u64, capacity: u64) -> Quota {
        Quota {
            rps_nano: rps * NANO,
            capacity,
        }
    }

    fn run(state: &mut Option<Bucket>, now: u64, q: &Quota, cost: u64) -> Decision {
        let d = decide(state.as_ref(), Micros(now), q, cost, Micros::ZERO);
        if let Some(n) = d.next {
            *state = Some(n);
        }
        d
    }

    #[test]
    fn stored_values_stay_small() {
        assert_eq!(std::mem::size_of::<Bucket>(), 24);
        assert_eq!(std::mem::align_of::<Bucket>(), 8);
        assert!(std::mem::size_of::<crate::limiter::Limiter>() <= 64);
    }

    #[test]
    fn limitlion_example_first_call() {
        // THROTTLE user:1 5 2 8 → [1, 79, 0, 200, 80]
        let q = quota(5, 80);
        let d = decide(None, Micros(1_000 * SEC), &q, 1, Micros::ZERO);
        assert!(d.allowed);
        assert_eq!(d.remaining, 79);
        assert_eq!(d.retry_after, Some(Micros::ZERO));
        assert_eq!(d.reset_after, Micros(200_000));
        assert_eq!(d.limit, 80);
    }

    #[test]
    fn drains_then_denies_with_exact_retry_after() {
        let q = quota(5, 3);
        let mut s = None;
        for i in 0..3 {
            assert!(run(&mut s, 0, &q, 1).allowed, "call {i}");
        }
        let d = run(&mut s, 0, &q, 1);
        assert!(!d.allowed);
        assert_eq!(d.retry_after, Some(Micros(200_000)));
        assert_eq!(d.next, None);
        // 1 µs early: still denied; exactly on time: allowed.
        assert!(!run(&mut s, 199_999, &q, 1).allowed);
        assert!(run(&mut s, 200_000, &q, 1).allowed);
    }

    #[test]
    fn no_extra_token_after_a_long_idle() {
        let q = quota(5, 10);
        let mut s = None;
        run(&mut s, 0, &q, 10);
        let after_year = 365 * 24 * 3600 * SEC;
        assert_eq!(level_at(s.as_ref(), Micros(after_year), &q), 10 * FEMTO);
        assert!(run(&mut s, after_year, &q, 10).allowed);
        assert!(!run(&mut s, after_year, &q, 1).allowed);
    }

    #[test]
    fn clock_going_backwards_creates_no_tokens() {
        let q = quota(1, 2);
        let mut s = None;
        run(&mut s, 10 * SEC, &q, 2);
        let d = run(&mut s, 5 * SEC, &q, 1);
        assert!(!d.allowed);
        assert_eq!(d.retry_after, Some(Micros(SEC)));
        // And stepping forward again accrues from the last update only.
        assert!(!run(&mut s, 10 * SEC + SEC - 1, &q, 1).allowed);
        assert!(run(&mut s, 11 * SEC, &q, 1).allowed);
    }

    #[test]
    fn cost_above_capacity_can_never_succeed() {
        let q = quota(5, 80);
        let d = decide(None, Micros(0), &q, 81, Micros::ZERO);
        assert!(!d.allowed);
        assert_eq!(d.retry_after, None);
        assert_eq!(d.remaining, 80);
    }

    #[test]
    fn cost_zero_is_allowed_and_writes_nothing() {
        let q = quota(5, 1);
        let mut s = None;
        run(&mut s, 0, &q, 1);
        let d = run(&mut s, 0, &q, 0);
        assert!(d.allowed);
        assert_eq!(d.next, None);
        assert_eq!(d.remaining, 0);
    }

    #[test]
    fn fractional_rate_accrues_exactly() {
        // 0.0001 tokens/s: one token every 10 000 s.
        let q = Quota {
            rps_nano: 100_000,
            capacity: 1,
        };
        let mut s = None;
        assert!(run(&mut s, 0, &q, 1).allowed);
        let d = run(&mut s, 0, &q, 1);
        assert_eq!(d.retry_after, Some(Micros(10_000 * SEC)));
        assert!(!run(&mut s, 10_000 * SEC - 1, &q, 1).allowed);
        assert!(run(&mut s, 10_000 * SEC, &q, 1).allowed);
    }

    #[test]
    fn wait_reserves_and_queues_later_callers() {
        let q = quota(10, 1); // one token per 100 ms
        let mut s = None;
        assert!(run(&mut s, 0, &q, 1).allowed);
        let w1 = decide(s.as_ref(), Micros(0), &q, 1, Micros(1_000_000));
        assert!(w1.allowed);
        assert_eq!(w1.wait, Micros(100_000));
        s = w1.next;
        let w2 = decide(s.as_ref(), Micros(0), &q, 1, Micros(1_000_000));
        assert_eq!(w2.wait, Micros(200_000));
        s = w2.next;
        // A plain caller queues behind both reservations.
        let d = decide(s.as_ref(), Micros(0), &q, 1, Micros::ZERO);
        assert_eq!(d.retry_after, Some(Micros(300_000)));
        // A waiter whose turn is beyond its timeout reserves nothing.
        let w3 = decide(s.as_ref(), Micros(0), &q, 1, Micros(299_999));
        assert!(!w3.allowed);
        assert_eq!(w3.next, None);
    }

    #[test]
    fn refund_never_exceeds_capacity() {
        let q = quota(1, 5);
        let mut s = None;
        run(&mut s, 0, &q, 3);
        let r = refund(s.as_ref(), Micros(0), &q, 2);
        assert_eq!({ r.level }, 4 * FEMTO);
        let r = refund(Some(&r), Micros(0), &q, 100);
        assert_eq!({ r.level }, 5 * FEMTO);
    }

    #[test]
    fn extreme_parameters_do_not_overflow() {
        let q = Quota {
            rps_nano: crate::quota::MAX_RPS_NANO,
            capacity: crate::quota::MAX_CAPACITY,
        };
        let s = Bucket {
            level: -LEVEL_BOUND,
            updated_at: Micros(0),
        };
        let d = decide(Some(&s), Micros::MAX, &q, u64::MAX, Micros::MAX);
        assert!(!d.allowed);
        let d = decide(Some(&s), Micros(1), &q, 1, Micros::MAX);
        assert!(d.allowed);
        let tiny = Quota {
            rps_nano: 1,
            capacity: 1,
        };
        let d = decide(Some(&s), Micros(0), &tiny, 1, Micros::ZERO);
        assert_eq!(d.retry_after, Some(Micros::MAX));
    }
}
