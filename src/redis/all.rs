//! THROTTLE.ALL: several limits, all or nothing.
//!
//! ```text
//! THROTTLE.ALL tokens key rps burst window [key rps burst window ...]
//! ```
//! Every limit must have `tokens` for the call to be allowed; then all of
//! them are consumed, otherwise none is (the core's `throttle::all`).
//! Reply: `[allowed, denied_by, retry_after_ms, [remaining_1, ..., remaining_n]]`.
//! Keys are at positions 2, 6, 10, … (first 2, last -1, step 4), so Redis
//! Cluster routes the command and answers CROSSSLOT for keys in different
//! slots. At most `throttle.all-max-limits` limits (default 64): the work
//! per call is bounded, and the duplicate-key check sorts (O(n log n)).

use throttle_core::rate::Policy;
use throttle_core::throttle::{self as core, ThrottleState};

use super::args;
use super::clock;
use super::commands::WRITE;
use super::config;
use super::error::{Error, Result};
use super::ffi::command::{Access, Arg, Begin, KeySpec, Keys, Spec, handler};
use super::ffi::{Args, Ctx};
use super::keyspace::{self, Target};
use super::replies;
use super::stats;

const KEYS: Keys = Keys {
    first: 2,
    last: -1,
    step: 4,
    specs: &[KeySpec {
        begin: Begin::Index(2),
        last: -1,
        step: 4,
        access: Access::Write,
    }],
};

#[rustfmt::skip]
pub const COMMANDS: &[Spec] = &[
    Spec { name: c"throttle.all", handler: handler(all), flags: WRITE, keys: KEYS, arity: -6, dangerous: false,
        summary: c"Several limits at once, all or nothing. Replies [allowed, denied_by, retry_after_ms, [remaining...]].",
        args: &[Arg::integer(c"tokens"), Arg::group(c"limit", &[Arg::key(c"key", 0), Arg::double(c"rps"),
            Arg::double(c"burst"), Arg::double(c"window")]).multiple()] },
];

fn parse<'a>(args: &Args<'a>) -> Result<(u64, Vec<Target<'a>>, Vec<Policy>)> {
    let n = args.len();
    if n < 6 || !(n - 2).is_multiple_of(4) {
        return Err(Error::Arity("throttle.all"));
    }
    let groups = (n - 2) / 4;
    if i64::try_from(groups).unwrap_or(i64::MAX) > config::all_max_limits() {
        return Err(Error::TooManyLimits(config::all_max_limits()));
    }
    let cost = args::count(args.bytes(1), "tokens")?;
    let mut targets = Vec::with_capacity(groups);
    let mut policies = Vec::with_capacity(groups);
    for g in 0..groups {
        let i = 2 + 4 * g;
        targets.push(Target {
            name: args::arg(args, i, "throttle.all")?,
            event: c"throttle",
        });
        policies.push(args::limitlion(
            args.bytes(i + 1),
            args.bytes(i + 2),
            args.bytes(i + 3),
        )?);
    }
    let mut names: Vec<&[u8]> = targets.iter().map(|t| t.name.bytes()).collect();
    names.sort_unstable();
    if names.windows(2).any(|w| w.first() == w.get(1)) {
        return Err(Error::DuplicateKey);
    }
    Ok((cost, targets, policies))
}

/// THROTTLE.ALL tokens key rps burst window [key rps burst window ...]
pub fn all(ctx: Ctx<'_>, args: Args<'_>) -> Result<()> {
    let (cost, targets, policies) = parse(&args)?;
    let now = clock::now();
    let answer = keyspace::update_all::<ThrottleState, _>(ctx, &targets, now, |values| {
        core::all(values, now, &policies, cost)
    })?;
    stats::all(&answer, cost);
    replies::all(ctx, &answer);
    Ok(())
}
