//! THROTTLE and THROTTLE.PEEK: parse → now → update → reply (or hold).
//!
//! ```text
//! THROTTLE      key [rps burst window] [tokens] [WAIT timeout_ms]
//! THROTTLE.PEEK key [rps burst window] [tokens]
//! ```
//! Without `rps burst window` the key's knobs give the limit.
//! Reply: `[allowed, remaining, retry_after_ms, reset_after_ms, limit]`.
//! The key holds an `rl-bucket` (the core's `ThrottleState`).

use throttle_core::rate::Policy;
use throttle_core::throttle::{self as core, ThrottleState};
use throttle_core::{Micros, Timestamp};

use super::args;
use super::blocking::{self, Hold};
use super::clock;
use super::commands::{KEY, LIMIT, ONE_KEY_READ, ONE_KEY_WRITE, READ, TOKENS, WRITE};
use super::config;
use super::error::{Error, Result};
use super::ffi::command::{Arg, Spec, handler};
use super::ffi::{Args, Ctx};
use super::keyspace::{self, Target};
use super::replies::{self, HeldThrottle};
use super::stats;

#[rustfmt::skip]
pub const COMMANDS: &[Spec] = &[
    Spec { name: c"throttle", handler: handler(throttle), flags: WRITE, keys: ONE_KEY_WRITE, arity: -2, dangerous: false,
        summary: c"Token bucket: take tokens if the bucket holds them. Replies [allowed, remaining, retry_after_ms, reset_after_ms, limit].",
        args: &[KEY, LIMIT.optional(), TOKENS, Arg::integer(c"timeout_ms").token(c"WAIT").optional()] },
    Spec { name: c"throttle.peek", handler: handler(peek), flags: READ, keys: ONE_KEY_READ, arity: -2, dangerous: false,
        summary: c"THROTTLE's reply right now, without writing anything.",
        args: &[KEY, LIMIT.optional(), TOKENS] },
];

crate::data_type!(ThrottleState, BUCKETS, "rl-bucket", stats::BUCKET_KEYS);

/// What a THROTTLE call asks.
struct Call {
    /// `None`: the short form, limited by the key's knobs.
    policy: Option<Policy>,
    cost: u64,
    wait: Option<Micros>,
}

fn parse(args: &Args<'_>, command: &'static str, allow_wait: bool) -> Result<Call> {
    let n = args.len();
    if n < 2 {
        return Err(Error::Arity(command));
    }
    // Each argument is read once.
    let third = if n >= 5 { args.bytes(3) } else { &[] };
    let full = n >= 5 && !args::is_option(third, "WAIT");
    let (policy, mut i) = if full {
        (
            Some(args::limitlion(args.bytes(2), third, args.bytes(4))?),
            5,
        )
    } else {
        (None, 2)
    };
    let mut cost = 1;
    let tokens = if i < n { args.bytes(i) } else { &[] };
    if i < n && !args::is_option(tokens, "WAIT") {
        cost = args::count(tokens, "tokens")?;
        i += 1;
    }
    let mut wait = None;
    let mut options = args::Options::new(*args, i);
    while let Some((name, value)) = options.next_pair()? {
        if !(allow_wait && args::is_option(name, "WAIT")) {
            return Err(Error::Syntax);
        }
        args::once(&mut wait, value, |v| args::timeout_ms(v, "timeout_ms"))?;
    }
    Ok(Call { policy, cost, wait })
}

/// THROTTLE key [rps burst window] [tokens] [WAIT timeout_ms]
pub fn throttle(ctx: Ctx<'_>, args: Args<'_>) -> Result<()> {
    let call = parse(&args, "throttle", true)?;
    let now = clock::now();
    let name = args::arg(&args, 1, "throttle")?;
    // Inside MULTI/Lua nobody can be held: WAIT degrades to a plain call
    // whose reply tells the wait.
    let max_wait = match call.wait {
        Some(w) if !ctx.deny_blocking() => w,
        _ => Micros::ZERO,
    };
    let target = Target::new(name, c"throttle");
    let answer = keyspace::update(ctx, target, now, |v| {
        core::throttle(v, now, call.policy.as_ref(), call.cost, max_wait)
    })?;
    stats::throttle(&answer, call.cost);
    match answer.wait() {
        Micros::ZERO => replies::throttle(ctx, &answer),
        wait => {
            let reset_after = match answer {
                core::Answer::Bucket(d) => d.reset_after,
                _ => Micros::ZERO,
            };
            let ints = replies::throttle_ints(&answer);
            let hold = Hold {
                key: blocking::key_id(ctx, name),
                slot: Timestamp::saturating_add(now, wait),
                timeout: max_wait,
                on_time_for: config::wait_tolerance(),
                state_for: wait.saturating_add(reset_after),
                tag: None,
                state: keyspace::snapshot::<ThrottleState>(ctx, name),
            };
            blocking::hold(ctx, hold, Box::new(HeldThrottle { ints }))?;
        }
    }
    Ok(())
}

/// THROTTLE.PEEK key [rps burst window] [tokens]: THROTTLE's reply, no write.
pub fn peek(ctx: Ctx<'_>, args: Args<'_>) -> Result<()> {
    let call = parse(&args, "throttle.peek", false)?;
    let now = clock::now();
    let name = args::arg(&args, 1, "throttle.peek")?;
    let answer = keyspace::read::<ThrottleState, _, _>(ctx, name, |v| {
        core::peek(v, now, call.policy.as_ref(), call.cost)
    })?;
    replies::throttle(ctx, &answer);
    Ok(())
}
