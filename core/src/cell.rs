//! redis-cell's contract on top of the bucket: `CL.THROTTLE key max_burst
//! count_per_period period [quantity]` answers
//! `[limited, limit, remaining, retry_after_s, reset_after_s]`.
//!
//! redis-cell is GCRA with an emission interval `T = period / count` and a
//! tolerance `T × (max_burst + 1)`: exactly a token bucket of capacity
//! `max_burst + 1` refilled at `count / period` tokens per second, which is
//! what [`crate::bucket`] keeps (see [`crate::rate::cell_limit`]). What is
//! redis-cell's own is how it turns durations into whole seconds, kept here:
//! a duration rounds up to the next second unless its fractional part is
//! under a millisecond (redis-cell truncates the fraction to whole
//! milliseconds before it decides to round up).
//!
//! A key redis-cell left is a string holding its theoretical arrival time
//! in nanoseconds since the epoch; [`decide`] takes it over on its first
//! call with a quantity (the same instant, as a bucket of this module's
//! type), and only reads it for a quantity of 0.

use crate::bucket::{Bucket, Decision, Retry, Verdict};
use crate::rate::{Limit, Policy};
use crate::step::{State, Step, Write};
use crate::throttle::{self, Answer, ThrottleState};
use crate::time::{Micros, Timestamp, clamp_reply};

/// CL.THROTTLE's five integers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CellReply {
    pub limited: bool,
    pub limit: u64,
    pub remaining: u64,
    /// Whole seconds until the same call would be allowed; `None` (-1 on
    /// the wire) when it is allowed, or can never be.
    pub retry_after_s: Option<i64>,
    /// Whole seconds until the bucket is full again.
    pub reset_after_s: i64,
}

/// A duration in redis-cell's whole seconds.
pub fn whole_seconds(d: Micros) -> i64 {
    let s = clamp_reply(d.as_secs_floor());
    let sub_ms = (d.0 % 1_000_000) / 1000;
    s.saturating_add(i64::from(sub_ms > 0))
}

/// The reply for a bucket decision.
pub fn reply(d: &Decision) -> CellReply {
    let retry_after_s = match d.verdict {
        Verdict::Allowed { .. }
        | Verdict::Denied {
            retry: Retry::Never,
        } => None,
        Verdict::Denied {
            retry: Retry::After(r),
        } => Some(whole_seconds(r)),
    };
    CellReply {
        limited: !d.allowed(),
        limit: d.limit.capacity(),
        remaining: d.remaining,
        retry_after_s,
        reset_after_s: whole_seconds(d.reset_after),
    }
}

/// What a CL.THROTTLE key holds.
#[derive(Clone, Copy, Debug)]
pub enum Stored<'a> {
    /// Nothing: a full bucket.
    Missing,
    /// A key of this module.
    Ours(&'a ThrottleState),
    /// A key redis-cell left: its TAT in nanoseconds since the epoch.
    Tat(u64),
}

/// A TAT no call can produce (further ahead than a bucket may be).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadTat;

/// A key redis-cell left, taken over as a bucket under `limit`: full again
/// at its TAT (rounded up to the µs: never more tokens than it had); a
/// missing or past TAT is a full bucket.
pub fn from_tat(tat_ns: u64, now: Timestamp, limit: &Limit) -> Result<ThrottleState, BadTat> {
    let full_at = Timestamp(tat_ns.div_ceil(1000)).max(now);
    Bucket::full_again_at(*limit, full_at, now)
        .map(ThrottleState::Plain)
        .ok_or(BadTat)
}

/// CL.THROTTLE's decision: `quantity` 0 reads and writes nothing (not even
/// a knobs refresh); a key redis-cell left is stored as this module's type
/// by any call with a quantity, with its expiry (the string and its TTL
/// go).
pub fn decide(
    stored: Stored<'_>,
    now: Timestamp,
    limit: &Limit,
    quantity: u64,
) -> Result<Step<ThrottleState, Answer>, BadTat> {
    let policy = Policy::Bucket(*limit);
    let taken = match stored {
        Stored::Tat(tat) => Some(from_tat(tat, now, limit)?),
        _ => None,
    };
    let value = match stored {
        Stored::Ours(v) => Some(v),
        _ => taken.as_ref(),
    };
    let peek = |value| throttle::peek(value, now, Some(&policy), 0).unwrap_or(Answer::AllowAll);
    if quantity == 0 {
        return Ok(Step::keep(peek(value)));
    }
    let step = match throttle::throttle(value, now, Some(&policy), quantity, Micros::ZERO) {
        Ok(step) => step,
        Err(_) => Step::keep(peek(value)),
    };
    let Some(taken) = taken else {
        return Ok(step);
    };
    let value = match step.write {
        Write::Store { value, .. } => value,
        _ => taken,
    };
    let expire_at = Some(value.expiry());
    Ok(Step {
        write: Write::Store { value, expire_at },
        answer: step.answer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bucket::decide;
    use crate::rate::cell_limit;

    const SEC: u64 = 1_000_000;
    const T0: u64 = 1_790_000_000 * SEC;

    #[test]
    fn seconds_round_up_from_one_millisecond() {
        assert_eq!(whole_seconds(Micros(0)), 0);
        assert_eq!(whole_seconds(Micros(999)), 0);
        assert_eq!(whole_seconds(Micros(1000)), 1);
        assert_eq!(whole_seconds(Micros(2 * SEC)), 2);
        assert_eq!(whole_seconds(Micros(2 * SEC + 999)), 2);
        assert_eq!(whole_seconds(Micros(2 * SEC + 1000)), 3);
    }

    #[test]
    fn readme_example_of_redis_cell() {
        // CL.THROTTLE user123 15 30 60 1 → [0, 16, 15, -1, 2]
        let l = cell_limit(15, 30, 60).unwrap();
        let d = decide(None, Timestamp(T0), &l, 1, Micros::ZERO);
        assert_eq!(
            reply(&d),
            CellReply {
                limited: false,
                limit: 16,
                remaining: 15,
                retry_after_s: None,
                reset_after_s: 2
            }
        );
        // Drained: the 17th call waits 2 s for its token.
        let mut s = d.next;
        for _ in 0..15 {
            s = decide(s.as_ref(), Timestamp(T0), &l, 1, Micros::ZERO).next;
        }
        let d = decide(s.as_ref(), Timestamp(T0), &l, 1, Micros::ZERO);
        let r = reply(&d);
        assert_eq!(
            (r.limited, r.remaining, r.retry_after_s, r.reset_after_s),
            (true, 0, Some(2), 32)
        );
        // A quantity above the limit can never succeed: -1.
        let d = decide(None, Timestamp(T0), &l, 17, Micros::ZERO);
        assert_eq!(reply(&d).retry_after_s, None);
        assert!(reply(&d).limited);
    }
}

#[cfg(test)]
mod takeover {
    use super::*;
    use crate::rate::cell_limit;

    const SEC: u64 = 1_000_000;
    const T0: u64 = 1_790_000_000 * SEC;

    #[test]
    fn cell_keys_are_taken_over_with_their_state() {
        let limit = cell_limit(15, 30, 60).unwrap();
        // A TAT 4 s ahead: 2 tokens used of 16.
        let tat_ns = (T0 + 4 * SEC) * 1000;
        let v = from_tat(tat_ns, Timestamp(T0), &limit).unwrap();
        let s = throttle::get(Some(&v), Timestamp(T0)).unwrap();
        assert_eq!(
            (s.tokens, s.limit, s.reset_after),
            (Some(14), 16, Micros(4 * SEC))
        );
        // A TAT in the past is a full bucket.
        let v = from_tat(1, Timestamp(T0), &limit).unwrap();
        assert_eq!(
            throttle::get(Some(&v), Timestamp(T0)).unwrap().tokens,
            Some(16)
        );
        // A TAT no call can produce is refused.
        assert_eq!(from_tat(u64::MAX, Timestamp(T0), &limit), Err(BadTat));
        // A peek reads it and writes nothing; a call stores it with its expiry.
        let peek = decide(Stored::Tat(tat_ns), Timestamp(T0), &limit, 0).unwrap();
        assert!(peek.write.is_keep());
        let call = decide(Stored::Tat(tat_ns), Timestamp(T0), &limit, 1).unwrap();
        assert!(matches!(
            call.write,
            Write::Store {
                expire_at: Some(_),
                ..
            }
        ));
        // A denied call on a taken-over key still stores it.
        let drained = decide(Stored::Tat(tat_ns), Timestamp(T0), &limit, 16).unwrap();
        assert!(!drained.answer.allowed());
        assert!(matches!(
            drained.write,
            Write::Store {
                expire_at: Some(_),
                ..
            }
        ));
    }
}
