//! THROTTLE.ALL: several limits, all or nothing.
//!
//! ```text
//! THROTTLE.ALL tokens key rps burst window [key rps burst window ...]
//! ```
//! Every limit must have `tokens` for the call to be allowed; then all of
//! them are consumed, otherwise none is. Reply:
//! `[allowed, denied_by, retry_after_ms, [remaining_1, ..., remaining_n]]`
//! where `denied_by` is the 1-based position of the first limit that
//! refused (0 when allowed) and `retry_after_ms` the longest wait among the
//! limits that refused (-1 if one of them can never allow this cost).
//! Keys are at positions 2, 6, 10, … (first 2, last -1, step 4), so Redis
//! Cluster routes the command and answers CROSSSLOT for keys in different
//! slots: co-locate them with a hash tag, e.g. `{user:42}:s` and
//! `{user:42}:h`.

use std::sync::atomic::Ordering::Relaxed;

use throttle_core::Micros;
use throttle_core::limiter::{self, Outcome};
use throttle_core::quota::Limit;

use super::args;
use super::clock;
use super::error::{Error, Result};
use super::ffi::{self, Args, Ctx, Key};
use super::stats::STATS;
use super::throttle::{load, store};

pub fn all(ctx: Ctx, args: Args) -> Result<()> {
    let n = args.len();
    if n < 6 || (n - 2) % 4 != 0 {
        return Err(Error::Arity("throttle.all"));
    }
    let cost = args::count(args.bytes(1), "tokens")?;
    let groups: Vec<usize> = (2..n).step_by(4).collect();
    let limits = groups
        .iter()
        .map(|&i| args::limit(args.bytes(i + 1), args.bytes(i + 2), args.bytes(i + 3)))
        .collect::<Result<Vec<Limit>>>()?;
    for (a, &i) in groups.iter().enumerate() {
        if groups[..a].iter().any(|&j| args.bytes(j) == args.bytes(i)) {
            return Err(Error::Invalid("THROTTLE.ALL got the same key twice"));
        }
    }
    let now = clock::now();
    let keys: Vec<Key> = groups
        .iter()
        .map(|&i| Key::open(ctx, args.raw(i), true))
        .collect();
    let mut values = keys.iter().map(load).collect::<Result<Vec<_>>>()?;
    let decide = |values: &[Option<&mut throttle_core::limiter::Limiter>], cost: u64| {
        values
            .iter()
            .zip(&limits)
            .map(|(v, l)| limiter::throttle(v.as_deref(), now, l, cost, Micros::ZERO))
            .collect::<std::result::Result<Vec<Outcome>, _>>()
            .map_err(args::quota_error)
    };
    let outcomes = decide(&values, cost)?;
    let denied_by = outcomes.iter().position(|o| o.reply[0] == 0);
    STATS.throttle_calls.fetch_add(1, Relaxed);
    let (remaining, retry_after): (Vec<i64>, i64) = match denied_by {
        None => {
            STATS.throttle_allowed.fetch_add(1, Relaxed);
            STATS
                .tokens_consumed
                .fetch_add(cost.saturating_mul(limits.len() as u64), Relaxed);
            let remaining = outcomes.iter().map(|o| o.reply[1]).collect();
            for ((o, v), (key, &i)) in outcomes
                .into_iter()
                .zip(values.iter_mut())
                .zip(keys.iter().zip(&groups))
            {
                if let Some(next) = o.store {
                    store(
                        ctx,
                        key,
                        args.raw(i),
                        v.take(),
                        next,
                        o.expires_at,
                        c"throttle",
                    );
                }
            }
            (remaining, 0)
        }
        Some(_) => {
            STATS.throttle_denied.fetch_add(1, Relaxed);
            let denied = outcomes
                .iter()
                .filter(|o| o.reply[0] == 0)
                .map(|o| o.reply[2]);
            let retry = if denied.clone().any(|r| r < 0) {
                -1
            } else {
                denied.max().unwrap_or(0)
            };
            // Nothing was consumed: report what each limit holds now.
            let now_held = decide(&values, 0)?;
            (now_held.iter().map(|o| o.reply[1]).collect(), retry)
        }
    };
    drop(keys);
    ffi::reply_array(ctx, 4);
    ffi::reply_i64(ctx, i64::from(denied_by.is_none()));
    ffi::reply_i64(ctx, denied_by.map_or(0, |p| p as i64 + 1));
    ffi::reply_i64(ctx, retry_after);
    ffi::reply_i64s(ctx, &remaining);
    Ok(())
}
