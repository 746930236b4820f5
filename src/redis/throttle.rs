//! THROTTLE and THROTTLE.PEEK: parse → now → load → decide → store → reply.
//!
//! ```text
//! THROTTLE      key [rps burst window] [tokens] [WAIT timeout_ms]
//! THROTTLE.PEEK key [rps burst window] [tokens]
//! ```
//! Without `rps burst window` the key's knobs give the limit.
//! Reply: `[allowed, remaining, retry_after_ms, reset_after_ms, limit]`.

use throttle_core::Micros;
use throttle_core::limiter::{self, Limiter};
use throttle_core::rate::Policy;

use super::args;
use super::blocking::{self, Pending};
use super::clock;
use super::error::{Error, Result};
use super::ffi::{Args, Ctx};
use super::keyspace::{self, Target};
use super::replies;
use super::stats;

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
    let mut key = ctx.open_key(name, true);
    // Inside MULTI/Lua nobody can be held: WAIT degrades to a plain call
    // whose reply tells the wait.
    let max_wait = match call.wait {
        Some(w) if !ctx.deny_blocking() => w,
        _ => Micros::ZERO,
    };
    let value = keyspace::load::<Limiter>(&key)?;
    let outcome = limiter::throttle(value, now, call.policy.as_ref(), call.cost, max_wait)?;
    stats::count_throttle(outcome.answer.allowed(), outcome.answer.consumed(call.cost));
    let target = Target::new(name, c"throttle");
    keyspace::write(ctx, &mut key, target, outcome.write, now);
    drop(key);
    let reply = replies::throttle(&outcome.answer);
    match outcome.answer.wait() {
        Micros::ZERO => ctx.reply_i64s(&reply),
        wait => blocking::hold(
            ctx,
            wait,
            Pending::Throttle {
                reply,
                cost: call.cost,
            },
        )?,
    }
    Ok(())
}

/// THROTTLE.PEEK key [rps burst window] [tokens]: THROTTLE's reply, no write.
pub fn peek(ctx: Ctx<'_>, args: Args<'_>) -> Result<()> {
    let call = parse(&args, "throttle.peek", false)?;
    let now = clock::now();
    let key = ctx.open_key(args::arg(&args, 1, "throttle.peek")?, false);
    let answer = limiter::peek(
        keyspace::load::<Limiter>(&key)?,
        now,
        call.policy.as_ref(),
        call.cost,
    )?;
    drop(key);
    ctx.reply_i64s(&replies::throttle(&answer));
    Ok(())
}
