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
//! slots. At most `throttle.all-max-limits` limits (default 64): the work
//! per call is bounded, and the duplicate-key check sorts (O(n log n)).

use throttle_core::Micros;
use throttle_core::limiter::{self, Limiter, Outcome};
use throttle_core::rate::Policy;

use super::args;
use super::clock;
use super::config;
use super::error::{Error, Result};
use super::ffi::{Args, Ctx, Key, RStr};
use super::keyspace::{self, Target};
use super::replies;
use super::stats;

struct Limit<'a> {
    name: RStr<'a>,
    policy: Policy,
}

fn parse<'a>(args: &Args<'a>) -> Result<(u64, Vec<Limit<'a>>)> {
    let n = args.len();
    if n < 6 || !(n - 2).is_multiple_of(4) {
        return Err(Error::Arity("throttle.all"));
    }
    let groups = (n - 2) / 4;
    if i64::try_from(groups).unwrap_or(i64::MAX) > config::all_max_limits() {
        return Err(Error::TooManyLimits(config::all_max_limits()));
    }
    let cost = args::count(args.bytes(1), "tokens")?;
    let limits = (0..groups)
        .map(|g| {
            let i = 2 + 4 * g;
            Ok(Limit {
                name: args::arg(args, i, "throttle.all")?,
                policy: args::limitlion(args.bytes(i + 1), args.bytes(i + 2), args.bytes(i + 3))?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut names: Vec<&[u8]> = limits.iter().map(|l| l.name.bytes()).collect();
    names.sort_unstable();
    if names.windows(2).any(|w| w.first() == w.get(1)) {
        return Err(Error::DuplicateKey);
    }
    Ok((cost, limits))
}

fn decide_all(
    keys: &[Key<'_>],
    limits: &[Limit<'_>],
    now: Micros,
    cost: u64,
) -> Result<Vec<Outcome>> {
    keys.iter()
        .zip(limits)
        .map(|(key, l)| {
            let value = keyspace::load::<Limiter>(key)?;
            Ok(limiter::throttle(
                value,
                now,
                Some(&l.policy),
                cost,
                Micros::ZERO,
            )?)
        })
        .collect()
}

pub fn all(ctx: Ctx<'_>, args: Args<'_>) -> Result<()> {
    let (cost, limits) = parse(&args)?;
    let now = clock::now();
    let mut keys: Vec<Key<'_>> = limits.iter().map(|l| ctx.open_key(l.name, true)).collect();
    let outcomes = decide_all(&keys, &limits, now, cost)?;
    let replies: Vec<[i64; 5]> = outcomes
        .iter()
        .map(|o| replies::throttle(&o.answer))
        .collect();
    let denied_by = outcomes.iter().position(|o| !o.answer.allowed());
    let consumed = outcomes
        .iter()
        .fold(0u64, |sum, o| sum.saturating_add(o.answer.consumed(cost)));
    stats::count_throttle(denied_by.is_none(), consumed);
    let (remaining, retry_after): (Vec<i64>, i64) = match denied_by {
        None => {
            for ((o, key), l) in outcomes.into_iter().zip(keys.iter_mut()).zip(&limits) {
                keyspace::write(ctx, key, Target::new(l.name, c"throttle"), o.write, now);
            }
            (replies.iter().map(|r| r[1]).collect(), 0)
        }
        Some(_) => {
            let refused = replies.iter().filter(|r| r[0] == 0).map(|r| r[2]);
            let retry = if refused.clone().any(|r| r < 0) {
                -1
            } else {
                refused.max().unwrap_or(0)
            };
            // Nothing was consumed: report what each limit holds now.
            let held = decide_all(&keys, &limits, now, 0)?;
            (
                held.iter()
                    .map(|o| replies::throttle(&o.answer)[1])
                    .collect(),
                retry,
            )
        }
    };
    drop(keys);
    ctx.reply_array(4);
    ctx.reply_i64(i64::from(denied_by.is_none()));
    ctx.reply_i64(denied_by.map_or(0, |p| {
        i64::try_from(p).unwrap_or(i64::MAX).saturating_add(1)
    }));
    ctx.reply_i64(retry_after);
    ctx.reply_i64s(&remaining);
    Ok(())
}
