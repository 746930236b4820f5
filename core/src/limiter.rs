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
    let unchanged = |reply| Outcome {
        reply,
        wait: Micros::ZERO,
        store: None,
        expires_at: Micros::ZERO,
    };
    let quota = match limit.rate {
        Rate::DenyAll => {
            return Ok(unchanged([0, 0, limit.window().as_millis_ceil_i64(), 0, 0]));
        }
        Rate::AllowAll => return Ok(unchanged([1, -1, 0, 0, -1])),
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
        return Ok(unchanged(reply));
    };
    let next = Limiter {
        bucket,
        params: if knobs.is_some() {
            value.map_or(limit.params(), |v| v.params)
        } else {
            limit.params()
        },
        knobs: value.and_then(|v| v.knobs.clone()),
    };
    let expires_at = next.expires_at(d.full_at(now), now);
    Ok(Outcome {
        reply,
        wait: d.wait,
        store: Some(next),
        expires_at,
    })
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
