//! THROTTLE and THROTTLE.PEEK: parse → now → decide → store → propagate → reply.
//!
//! ```text
//! THROTTLE      key rps burst window [tokens] [WAIT timeout_ms]
//! THROTTLE.PEEK key rps burst window [tokens]
//! ```
//! Reply: `[allowed, remaining, retry_after_ms, reset_after_ms, limit]`.

use std::sync::atomic::Ordering::Relaxed;

use throttle_core::Micros;
use throttle_core::limiter::{self, Limiter, Outcome};

use super::args;
use super::blocking::{self, Pending};
use super::clock;
use super::datatype::{APPLY_COMMAND, Stored, bucket_type, create};
use super::error::{Error, Result};
use super::ffi::{self, Args, Ctx, Holds, Key};
use super::stats::STATS;

struct Call {
    limit: throttle_core::quota::Limit,
    cost: u64,
    wait: Option<Micros>,
}

fn parse(args: &Args, name: &'static str, allow_wait: bool) -> Result<Call> {
    let n = args.len();
    if n < 5 {
        return Err(Error::Arity(name));
    }
    let limit = args::limit(args.bytes(2), args.bytes(3), args.bytes(4))?;
    let mut i = 5;
    let mut cost = 1;
    if i < n && !args::is_option(args.bytes(i), "WAIT") {
        cost = args::count(args.bytes(i), "tokens")?;
        i += 1;
    }
    let mut wait = None;
    while i < n {
        if allow_wait && args::is_option(args.bytes(i), "WAIT") && wait.is_none() {
            if i + 1 >= n {
                return Err(Error::Syntax);
            }
            wait = Some(args::timeout_ms(args.bytes(i + 1), "timeout_ms")?);
            i += 2;
        } else {
            return Err(Error::Syntax);
        }
    }
    Ok(Call { limit, cost, wait })
}

/// The limiter stored at an open key, or WRONGTYPE.
// The value lives in Redis's keyspace, not in the handle; each command
// holds one handle per key, so there is never a second borrow.
#[allow(clippy::mut_from_ref)]
pub fn load(key: &Key) -> Result<Option<&mut Limiter>> {
    match key.holds::<Limiter>(bucket_type()) {
        Holds::Nothing => Ok(None),
        Holds::Ours(p) => Ok(Some(unsafe { &mut *p.as_ptr() })),
        Holds::Other => Err(Error::WrongType),
    }
}

/// Stores `next` at `key` (in place when present, so the key is not
/// re-created), sets its absolute expiry, replicates the effect and
/// notifies keyspace listeners.
pub fn store(
    ctx: Ctx,
    key: &Key,
    name: *mut redis_module::raw::RedisModuleString,
    slot: Option<&mut Limiter>,
    next: Limiter,
    expires_at: Micros,
    event: &std::ffi::CStr,
) {
    let (buf, len) = next.encode();
    match slot {
        Some(v) => *v = next,
        None => create(key, next),
    }
    let at_ms = expires_at.as_millis_ceil_i64();
    key.set_expire_at_ms(at_ms);
    ffi::replicate_apply(ctx, APPLY_COMMAND, name, &buf[..len], at_ms);
    ffi::signal_modified(ctx, name);
    ffi::notify(ctx, event, name);
}

/// THROTTLE key rps burst window [tokens] [WAIT timeout_ms]
pub fn throttle(ctx: Ctx, args: Args) -> Result<()> {
    let call = parse(&args, "throttle", true)?;
    let now = clock::now();
    let key = Key::open(ctx, args.raw(1), true);
    let value = load(&key)?;
    // Inside MULTI/Lua nobody can be held: WAIT degrades to a plain call
    // whose reply tells the wait.
    let max_wait = match call.wait {
        Some(w) if !ffi::deny_blocking(ctx) => w,
        _ => Micros::ZERO,
    };
    let Outcome {
        reply,
        wait,
        store: next,
        expires_at,
    } = limiter::throttle(value.as_deref(), now, &call.limit, call.cost, max_wait)
        .map_err(args::quota_error)?;
    STATS.throttle_calls.fetch_add(1, Relaxed);
    if reply[0] == 1 {
        STATS.throttle_allowed.fetch_add(1, Relaxed);
        STATS.tokens_consumed.fetch_add(call.cost, Relaxed);
    } else {
        STATS.throttle_denied.fetch_add(1, Relaxed);
    }
    if let Some(next) = next {
        store(ctx, &key, args.raw(1), value, next, expires_at, c"throttle");
    }
    drop(key);
    if wait > Micros::ZERO {
        blocking::hold(ctx, wait, Pending::Ints(reply.to_vec()));
    } else {
        ffi::reply_i64s(ctx, &reply);
    }
    Ok(())
}

/// THROTTLE.PEEK key rps burst window [tokens]: THROTTLE's reply, no write.
pub fn peek(ctx: Ctx, args: Args) -> Result<()> {
    let call = parse(&args, "throttle.peek", false)?;
    let now = clock::now();
    let key = Key::open(ctx, args.raw(1), false);
    let value = load(&key)?;
    let outcome = limiter::throttle(value.as_deref(), now, &call.limit, call.cost, Micros::ZERO)
        .map_err(args::quota_error)?;
    ffi::reply_i64s(ctx, &outcome.reply);
    Ok(())
}
