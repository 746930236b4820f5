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

use crate::bucket::{Decision, Retry, Verdict};
use crate::time::{Micros, clamp_reply};

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
        let d = decide(None, Micros(T0), &l, 1, Micros::ZERO);
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
            s = decide(s.as_ref(), Micros(T0), &l, 1, Micros::ZERO).next;
        }
        let d = decide(s.as_ref(), Micros(T0), &l, 1, Micros::ZERO);
        let r = reply(&d);
        assert_eq!(
            (r.limited, r.remaining, r.retry_after_s, r.reset_after_s),
            (true, 0, Some(2), 32)
        );
        // A quantity above the limit can never succeed: -1.
        let d = decide(None, Micros(T0), &l, 17, Micros::ZERO);
        assert_eq!(reply(&d).retry_after_s, None);
        assert!(reply(&d).limited);
    }
}
