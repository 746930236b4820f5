//! A THROTTLE key's whole value: the bucket, the parameters of the last
//! call, and optional knobs (settings kept in Redis that override callers).
//!
//! [`Limiter::throttle`] is the one decision the Redis layer calls for
//! THROTTLE and THROTTLE.PEEK: it picks the effective limit (live knobs win
//! over the caller's arguments), applies LimitLion's two switches, asks the
//! bucket, and says what to store and when the key may expire.

use crate::bucket::{self, Bucket, LEVEL_BOUND};
use crate::quota::{Limit, QuotaError, Rate};
use crate::time::Micros;

/// Limit parameters as given (before the capacity is derived).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    pub rate: Rate,
    pub burst_nano: u64,
    pub window_ns: u64,
}

impl Params {
    pub fn limit(&self) -> Result<Limit, QuotaError> {
        Limit::new(
            self.rate,
            u128::from(self.burst_nano),
            u128::from(self.window_ns),
        )
    }
}

impl Limit {
    pub fn params(&self) -> Params {
        Params {
            rate: self.rate,
            burst_nano: self.burst_nano,
            window_ns: self.window_ns,
        }
    }
}

/// Settings kept in the key that override every caller's arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Knobs {
    pub params: Params,
    /// How long the knobs live after they are set or used.
    pub ttl: Micros,
    /// When they stop applying (absolute).
    pub expires_at: Micros,
}

/// The stored value of a THROTTLE key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limiter {
    /// The bucket. `level` may be [`LEVEL_BOUND`] to mean "full, whatever
    /// the capacity" (a limiter created by knobs alone).
    pub bucket: Bucket,
    /// The parameters of the last call that changed the bucket.
    pub params: Params,
    pub knobs: Option<Box<Knobs>>,
}

/// THROTTLE's reply: `[allowed, remaining, retry_after_ms, reset_after_ms, limit]`.
pub type ThrottleReply = [i64; 5];

/// What one THROTTLE call decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub reply: ThrottleReply,
    /// For WAIT: how long the (allowed) caller must be held before the reply.
    pub wait: Micros,
    /// The value to store, or `None` when nothing changes.
    pub store: Option<Limiter>,
    /// When the stored value may expire (absolute), with `store`.
    pub expires_at: Micros,
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Limiter {
    /// A limiter with a full bucket.
    pub fn full(params: Params, now: Micros) -> Limiter {
        Limiter {
            bucket: Bucket {
                level: LEVEL_BOUND,
                updated_at: now,
            },
            params,
            knobs: None,
        }
    }

    /// The knobs, if they still apply at `now`.
    pub fn live_knobs(&self, now: Micros) -> Option<&Knobs> {
        self.knobs.as_deref().filter(|k| k.expires_at > now)
    }

    /// The key's expiry: when the bucket is full again or the knobs expire,
    /// whichever is later.
    pub fn expires_at(&self, full_at: Micros, now: Micros) -> Micros {
        match self.live_knobs(now) {
            Some(k) => full_at.max(k.expires_at),
            None => full_at,
        }
    }
}

/// Decides a THROTTLE call on `value` (`None`: no key, a full bucket).
///
/// `caller` is the validated limit the caller passed; live knobs override
/// it. `max_wait` is WAIT's timeout (zero without WAIT).
pub fn throttle(
    value: Option<&Limiter>,
    now: Micros,
    caller: &Limit,
    cost: u64,
    max_wait: Micros,
) -> Result<Outcome, QuotaError> {
    let knobs = value.and_then(|v| v.live_knobs(now));
    let limit = match knobs {
        Some(k) => k.params.limit()?,
        None => *caller,
    };
    let quota = match limit.rate {
        Rate::DenyAll => {
            let reply = [0, 0, limit.window().as_millis_ceil_i64(), 0, 0];
            return Ok(refresh_knobs_only(value, now, reply));
        }
        Rate::AllowAll => return Ok(refresh_knobs_only(value, now, [1, -1, 0, 0, -1])),
        Rate::PerSecond(_) => limit.quota().ok_or(QuotaError::Rps)?,
    };
    let d = bucket::decide(value.map(|v| &v.bucket), now, &quota, cost, max_wait);
    let reply = [
        i64::from(d.allowed),
        i64_of(d.remaining),
        match d.retry_after {
            None => -1,
            Some(r) => r.as_millis_ceil_i64(),
        },
        d.reset_after.saturating_sub(d.wait).as_millis_ceil_i64(),
        i64_of(d.limit),
    ];
    let Some(bucket) = d.next else {
        return Ok(refresh_knobs_only(value, now, reply));
    };
    let next = Limiter {
        bucket,
        params: match (knobs, value) {
            (Some(_), Some(v)) => v.params,
            _ => limit.params(),
        },
        knobs: knobs.map(|k| Box::new(k.refreshed(now))),
    };
    let expires_at = next.expires_at(d.full_at(now), now);
    Ok(Outcome {
        reply,
        wait: d.wait,
        store: Some(next),
        expires_at,
    })
}

impl Knobs {
    /// The same knobs, living `ttl` from `now`.
    pub fn refreshed(&self, now: Micros) -> Knobs {
        Knobs {
            expires_at: now.saturating_add(self.ttl),
            ..*self
        }
    }
}

impl Limiter {
    /// When the bucket is full again under the limit in force at `now`
    /// (live knobs, else the last call's); `now` for the two switches.
    pub fn full_at(&self, now: Micros) -> Micros {
        let params = self.live_knobs(now).map_or(self.params, |k| k.params);
        match params.limit().ok().and_then(|l| l.quota()) {
            Some(q) => now.saturating_add(bucket::time_to_full(&self.bucket, now, &q)),
            None => now,
        }
    }
}

/// A call that changes no tokens still keeps knobs in use alive (as
/// LimitLion does on every call), but writes for that at most once per
/// [`KNOB_REFRESH`], so denied calls almost never write.
fn refresh_knobs_only(value: Option<&Limiter>, now: Micros, reply: ThrottleReply) -> Outcome {
    let unchanged = Outcome {
        reply,
        wait: Micros::ZERO,
        store: None,
        expires_at: Micros::ZERO,
    };
    let (Some(v), Some(k)) = (value, value.and_then(|v| v.live_knobs(now))) else {
        return unchanged;
    };
    let fresh = k.refreshed(now);
    if fresh.expires_at.since(k.expires_at) < KNOB_REFRESH {
        return unchanged;
    }
    let next = Limiter {
        knobs: Some(Box::new(fresh)),
        ..v.clone()
    };
    let expires_at = next.expires_at(next.full_at(now), now);
    Outcome {
        store: Some(next),
        expires_at,
        ..unchanged
    }
}

/// A denied call refreshes knobs only when that moves their expiry this much.
pub const KNOB_REFRESH: Micros = Micros(1_000_000);

/// THROTTLE.SET's changes: any subset of the parameters, and the TTL.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KnobChanges {
    pub rate: Option<Rate>,
    pub burst_nano: Option<u64>,
    pub window_ns: Option<u64>,
    pub ttl: Option<Micros>,
}

/// Why THROTTLE.SET was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetError {
    /// The first SET on a limiter must give rps, burst and window.
    Incomplete,
    Quota(QuotaError),
}

/// Tokens (femto) held at `now` under the limit in force; `None` under a
/// switch (the stored level is then kept as it is).
fn level_now(v: &Limiter, now: Micros) -> Option<i128> {
    let params = v.live_knobs(now).map_or(v.params, |k| k.params);
    let quota = params.limit().ok()?.quota()?;
    Some(bucket::level_at(Some(&v.bucket), now, &quota))
}

/// The value after setting knobs at `now`, and its expiry. The bucket
/// keeps the tokens it holds at that moment, capped at the new capacity.
pub fn set_knobs(
    value: Option<&Limiter>,
    now: Micros,
    changes: &KnobChanges,
    default_ttl: Micros,
) -> Result<(Limiter, Micros), SetError> {
    let old = value.and_then(|v| v.live_knobs(now));
    let params = match (old, changes.rate, changes.burst_nano, changes.window_ns) {
        (Some(k), r, b, w) => Params {
            rate: r.unwrap_or(k.params.rate),
            burst_nano: b.unwrap_or(k.params.burst_nano),
            window_ns: w.unwrap_or(k.params.window_ns),
        },
        (None, Some(rate), Some(burst_nano), Some(window_ns)) => Params {
            rate,
            burst_nano,
            window_ns,
        },
        _ => return Err(SetError::Incomplete),
    };
    let limit = params.limit().map_err(SetError::Quota)?;
    let ttl = changes.ttl.or(old.map(|k| k.ttl)).unwrap_or(default_ttl);
    let knobs = Knobs {
        params,
        ttl,
        expires_at: now.saturating_add(ttl),
    };
    let mut next = match value {
        Some(v) => {
            let mut n = v.clone();
            if let Some(level) = level_now(v, now) {
                n.bucket = Bucket {
                    level,
                    updated_at: now,
                };
            }
            n
        }
        None => Limiter::full(params, now),
    };
    if let Some(q) = limit.quota() {
        next.bucket.level = next.bucket.level.min(q.capacity_femto());
    }
    next.knobs = Some(Box::new(knobs));
    let expires_at = next.expires_at(next.full_at(now), now);
    Ok((next, expires_at))
}

/// THROTTLE.RESET: drops the knobs, keeping the tokens held now. `None`
/// when there were no knobs to remove.
pub fn reset_knobs(value: &Limiter, now: Micros) -> Option<(Limiter, Micros)> {
    value.knobs.as_ref()?;
    let mut next = value.clone();
    if let Some(level) = level_now(value, now) {
        next.bucket = Bucket {
            level,
            updated_at: now,
        };
    }
    next.knobs = None;
    let expires_at = next.full_at(now);
    Some((next, expires_at))
}

/// THROTTLE.REFUND: gives back `tokens`, never above the capacity of the
/// limit in force. Returns the new value, its expiry and the whole tokens
/// now held; `None` under a switch (nothing to give back).
pub fn refund(value: &Limiter, now: Micros, tokens: u64) -> Option<(Limiter, Micros, u64)> {
    let params = value.live_knobs(now).map_or(value.params, |k| k.params);
    let quota = params.limit().ok()?.quota()?;
    let mut next = value.clone();
    next.bucket = bucket::refund(Some(&value.bucket), now, &quota, tokens);
    let remaining = u64::try_from(next.bucket.level.max(0) / bucket::FEMTO).unwrap_or(u64::MAX);
    let expires_at = next.expires_at(next.full_at(now), now);
    Some((next, expires_at, remaining))
}

/// What THROTTLE.GET shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Whole tokens now (floor, ≥ 0); -1 under the allow-all switch.
    pub tokens: i64,
    pub limit: u64,
    pub params: Params,
    /// True when the parameters come from knobs, false from the last call.
    pub from_knobs: bool,
    /// Knobs' remaining life, if any.
    pub knobs_ttl: Option<Micros>,
    pub reset_after: Micros,
}

/// The limiter as it stands at `now`.
pub fn snapshot(v: &Limiter, now: Micros) -> Snapshot {
    let knobs = v.live_knobs(now);
    let params = knobs.map_or(v.params, |k| k.params);
    let limit = params.limit().ok();
    let level = level_now(v, now);
    Snapshot {
        tokens: match (params.rate, level) {
            (Rate::AllowAll, _) => -1,
            (_, Some(l)) => i64::try_from(l.max(0) / bucket::FEMTO).unwrap_or(i64::MAX),
            (_, None) => 0,
        },
        limit: limit.map_or(0, |l| l.capacity),
        params,
        from_knobs: knobs.is_some(),
        knobs_ttl: knobs.map(|k| k.expires_at.since(now)),
        reset_after: v.full_at(now).since(now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::NANO;

    fn limit(rps: u64, burst: u64, window: u64) -> Limit {
        Limit::new(
            Rate::PerSecond(rps * NANO),
            u128::from(burst * NANO),
            u128::from(window * NANO),
        )
        .unwrap()
    }

    #[test]
    fn first_call_matches_the_issue_example() {
        let o = throttle(None, Micros(1), &limit(5, 2, 8), 1, Micros::ZERO).unwrap();
        assert_eq!(o.reply, [1, 79, 0, 200, 80]);
        assert_eq!(o.expires_at, Micros(200_001));
        assert!(o.store.is_some());
    }

    #[test]
    fn switches_store_nothing() {
        let deny = Limit::new(Rate::DenyAll, u128::from(NANO), u128::from(8 * NANO)).unwrap();
        let o = throttle(None, Micros(1), &deny, 1, Micros::ZERO).unwrap();
        assert_eq!(o.reply, [0, 0, 8000, 0, 0]);
        assert_eq!(o.store, None);
        let allow = Limit::new(Rate::AllowAll, u128::from(NANO), u128::from(NANO)).unwrap();
        let o = throttle(None, Micros(1), &allow, 1, Micros::ZERO).unwrap();
        assert_eq!(o.reply, [1, -1, 0, 0, -1]);
        assert_eq!(o.store, None);
    }

    #[test]
    fn a_full_sentinel_bucket_is_full_under_any_capacity() {
        let v = Limiter::full(limit(1, 1, 1).params(), Micros(0));
        let o = throttle(Some(&v), Micros(0), &limit(5, 2, 8), 1, Micros::ZERO).unwrap();
        assert_eq!(o.reply, [1, 79, 0, 200, 80]);
    }

    #[test]
    fn live_knobs_override_the_caller_and_expired_ones_do_not() {
        let mut v = Limiter::full(limit(5, 2, 8).params(), Micros(0));
        v.knobs = Some(Box::new(Knobs {
            params: limit(1, 1, 2).params(),
            ttl: Micros(10),
            expires_at: Micros(10),
        }));
        let o = throttle(Some(&v), Micros(5), &limit(5, 2, 8), 1, Micros::ZERO).unwrap();
        assert_eq!(o.reply[4], 2);
        let o = throttle(Some(&v), Micros(10), &limit(5, 2, 8), 1, Micros::ZERO).unwrap();
        assert_eq!(o.reply[4], 80);
    }
}

#[cfg(test)]
mod knob_tests {
    use super::*;
    use crate::quota::NANO;

    fn p(rps: u64, burst: u64, window: u64) -> Params {
        Params {
            rate: Rate::PerSecond(rps * NANO),
            burst_nano: burst * NANO,
            window_ns: window * NANO,
        }
    }

    fn limit(rps: u64, burst: u64, window: u64) -> Limit {
        p(rps, burst, window).limit().unwrap()
    }

    const TTL: Micros = Micros(604_800_000_000);

    #[test]
    fn first_set_needs_all_three() {
        let only_rps = KnobChanges {
            rate: Some(Rate::PerSecond(NANO)),
            ..Default::default()
        };
        assert_eq!(
            set_knobs(None, Micros(0), &only_rps, TTL),
            Err(SetError::Incomplete)
        );
    }

    #[test]
    fn a_knob_change_keeps_the_tokens_held_capped_at_the_new_capacity() {
        // 10 tokens, 4 used → 6 held.
        let o = throttle(None, Micros(0), &limit(1, 1, 10), 4, Micros::ZERO).unwrap();
        let v = o.store.unwrap();
        let all = KnobChanges {
            rate: Some(Rate::PerSecond(NANO)),
            burst_nano: Some(NANO),
            window_ns: Some(100 * NANO),
            ttl: None,
        };
        let (v2, _) = set_knobs(Some(&v), Micros(0), &all, TTL).unwrap();
        assert_eq!(snapshot(&v2, Micros(0)).tokens, 6); // no free burst
        let shrink = KnobChanges {
            window_ns: Some(3 * NANO),
            ..Default::default()
        };
        let (v3, _) = set_knobs(Some(&v2), Micros(0), &shrink, TTL).unwrap();
        let s = snapshot(&v3, Micros(0));
        assert_eq!((s.tokens, s.limit, s.from_knobs), (3, 3, true));
        // Callers' arguments no longer matter while the knobs live.
        let o = throttle(Some(&v3), Micros(0), &limit(100, 100, 100), 1, Micros::ZERO).unwrap();
        assert_eq!(o.reply, [1, 2, 0, 1000, 3]);
        // RESET keeps the tokens and returns to the callers' parameters.
        let (v4, _) = reset_knobs(&o.store.unwrap(), Micros(0)).unwrap();
        let s = snapshot(&v4, Micros(0));
        assert_eq!((s.tokens, s.from_knobs), (2, false));
    }

    #[test]
    fn refund_is_capped() {
        let o = throttle(None, Micros(0), &limit(1, 1, 5), 3, Micros::ZERO).unwrap();
        let v = o.store.unwrap();
        assert_eq!(refund(&v, Micros(0), 1).unwrap().2, 3);
        assert_eq!(refund(&v, Micros(0), 100).unwrap().2, 5);
    }

    #[test]
    fn denied_calls_refresh_knobs_at_most_once_a_second() {
        let all = KnobChanges {
            rate: Some(Rate::DenyAll),
            burst_nano: Some(NANO),
            window_ns: Some(NANO),
            ttl: Some(Micros(10_000_000)),
        };
        let (v, _) = set_knobs(None, Micros(0), &all, TTL).unwrap();
        let o = throttle(Some(&v), Micros(999_999), &limit(1, 1, 1), 1, Micros::ZERO).unwrap();
        assert_eq!(o.store, None);
        let o = throttle(
            Some(&v),
            Micros(1_000_000),
            &limit(1, 1, 1),
            1,
            Micros::ZERO,
        )
        .unwrap();
        assert_eq!(o.reply, [0, 0, 1000, 0, 0]);
        assert_eq!(
            o.store.unwrap().knobs.unwrap().expires_at,
            Micros(11_000_000)
        );
    }
}
