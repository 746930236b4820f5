//! How decisions become replies: the integers each command answers, from
//! the core's typed outcomes. The core returns durations and verdicts (and,
//! for CL.THROTTLE, redis-cell's whole-second rounding in `core::cell`);
//! the reply arrays are laid out here.

use throttle_core::bucket::{Decision, Retry, Verdict};
use throttle_core::cell;
use throttle_core::limiter::Answer;
use throttle_core::time::clamp_reply;

/// THROTTLE's `[allowed, remaining, retry_after_ms, reset_after_ms, limit]`
/// (also THROTTLE.PEEK's, and each limit of THROTTLE.ALL). `retry_after_ms`
/// is rounded up (never early) and -1 when the cost exceeds the limit; the
/// switches answer `[0, 0, window_ms, 0, 0]` (deny) and `[1, -1, 0, 0, -1]`
/// (allow).
pub fn throttle(a: &Answer) -> [i64; 5] {
    match a {
        Answer::Bucket(d) => {
            let retry = match d.verdict {
                Verdict::Allowed { .. } => 0,
                Verdict::Denied {
                    retry: Retry::After(r),
                } => r.reply_ms_ceil(),
                Verdict::Denied {
                    retry: Retry::Never,
                } => -1,
            };
            let (remaining, limit) = (clamp_reply(d.remaining), clamp_reply(d.limit.capacity()));
            [
                i64::from(d.allowed()),
                remaining,
                retry,
                d.reset_after.reply_ms_ceil(),
                limit,
            ]
        }
        Answer::DenyAll { window } => [0, 0, window.reply_ms_ceil(), 0, 0],
        Answer::AllowAll => [1, -1, 0, 0, -1],
    }
}

/// CL.THROTTLE's `[limited, limit, remaining, retry_after_s, reset_after_s]`,
/// as redis-cell answers; the switches (knobs with RPS 0 or -1) answer as
/// THROTTLE does, in seconds.
pub fn cell(a: &Answer) -> [i64; 5] {
    let bucket = |d: &Decision| {
        let r = cell::reply(d);
        let retry = r.retry_after_s.unwrap_or(-1);
        [
            i64::from(r.limited),
            clamp_reply(r.limit),
            clamp_reply(r.remaining),
            retry,
            r.reset_after_s,
        ]
    };
    match a {
        Answer::Bucket(d) => bucket(d),
        Answer::DenyAll { window } => [1, 0, 0, cell::whole_seconds(*window), 0],
        Answer::AllowAll => [0, -1, -1, -1, 0],
    }
}
