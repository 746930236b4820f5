//! CL.THROTTLE: redis-cell's command, on this module's bucket.
//!
//! ```text
//! CL.THROTTLE key max_burst count_per_period period [quantity]
//! ```
//! Reply: `[limited, limit, remaining, retry_after_s, reset_after_s]`, as
//! redis-cell 0.5.0 answers, with exact arithmetic, effects replication,
//! and a pure peek for quantity 0. A key redis-cell left (a string holding
//! its theoretical arrival time in nanoseconds) is taken over on its first
//! call with a quantity: converted to this module's type, same state.

use throttle_core::Micros;
use throttle_core::limiter::{self, Limiter, Write};
use throttle_core::rate::{self, Policy};

use super::args;
use super::clock;
use super::error::{Error, Range, Result};
use super::ffi::{Args, Ctx, Holds, Key};
use super::keyspace::{self, Target};
use super::replies;
use super::stats;

const COMMAND: &str = "cl.throttle";

struct Call {
    limit: rate::Limit,
    quantity: u64,
}

fn parse(args: &Args<'_>) -> Result<Call> {
    if !(5..=6).contains(&args.len()) {
        return Err(Error::Arity(COMMAND));
    }
    let int = |i: usize, arg: &'static str, range: Range| -> Result<i64> {
        let bytes = args::arg(args, i, COMMAND)?.bytes();
        args::integer(bytes, arg, i64::MIN, i64::MAX, range)
    };
    let max_burst = int(2, "max_burst", Range::MaxBurst)?;
    let count = int(3, "count_per_period", Range::CellCount)?;
    let period = int(4, "period", Range::CellPeriod)?;
    let quantity = match args.get(5) {
        None => 1,
        Some(q) => {
            let q = args::integer(q.bytes(), "quantity", 0, i64::MAX, Range::CellQuantity)?;
            q.unsigned_abs()
        }
    };
    Ok(Call {
        limit: rate::cell_limit(max_burst, count, period)?,
        quantity,
    })
}

/// A redis-cell key: a string holding a decimal TAT in nanoseconds.
fn cell_tat(key: &Key<'_>) -> Result<u64> {
    let bytes = key.string_bytes().ok_or(Error::WrongType)?;
    let digits = !bytes.is_empty() && bytes.len() <= 20 && bytes.iter().all(u8::is_ascii_digit);
    let tat = digits
        .then(|| std::str::from_utf8(bytes).ok()?.parse::<u64>().ok())
        .flatten();
    tat.ok_or(Error::WrongType)
}

/// CL.THROTTLE key max_burst count_per_period period [quantity]
pub fn throttle(ctx: Ctx<'_>, args: Args<'_>) -> Result<()> {
    let call = parse(&args)?;
    let now = clock::now();
    let name = args::arg(&args, 1, COMMAND)?;
    let mut key = ctx.open_key(name, call.quantity > 0);
    let policy = Policy::Bucket(call.limit);
    // One type check. A key redis-cell left is read as a bucket, and stored
    // as one by any call with a quantity (a peek writes nothing, as ever).
    let found = key.get::<Limiter>();
    let migrated = match found {
        Ok(_) => None,
        Err(Holds::String) => Some(
            limiter::from_cell_tat(cell_tat(&key)?, now, &call.limit).ok_or(Error::WrongType)?,
        ),
        Err(_) => return Err(Error::WrongType),
    };
    let value = match found {
        Ok(v) => v,
        Err(_) => migrated.as_ref(),
    };
    if call.quantity == 0 {
        // A peek: reads, never writes (not even a knobs refresh).
        let answer = limiter::peek(value, now, Some(&policy), 0)?;
        stats::count_throttle(answer.allowed(), 0);
        drop(key);
        ctx.reply_i64s(&replies::cell(&answer));
        return Ok(());
    }
    let outcome = limiter::throttle(value, now, Some(&policy), call.quantity, Micros::ZERO)?;
    let write = match migrated {
        // A taken-over key is a new value (the string and its TTL go): it
        // always gets its expiry.
        Some(taken) => {
            let value = match outcome.write {
                Some(Write::Store { value, .. }) => value,
                _ => taken,
            };
            let expire_at = Some(value.expiry());
            Some(Write::Store { value, expire_at })
        }
        None => outcome.write,
    };
    stats::count_throttle(outcome.answer.allowed(), call.quantity);
    keyspace::write(ctx, &mut key, Target::new(name, c"throttle"), write, now);
    drop(key);
    ctx.reply_i64s(&replies::cell(&outcome.answer));
    Ok(())
}
