//! CL.THROTTLE: redis-cell's command, on this module's bucket.
//!
//! ```text
//! CL.THROTTLE key max_burst count_per_period period [quantity]
//! ```
//! Reply: `[limited, limit, remaining, retry_after_s, reset_after_s]`, as
//! redis-cell 0.5.0 answers, with exact arithmetic, effects replication,
//! and a pure read for quantity 0. A key redis-cell left (a string holding
//! its theoretical arrival time in nanoseconds) is read through the
//! keyspace's redis-cell adapter and taken over on its first call with a
//! quantity (the core's `cell::decide`).

use throttle_core::cell;
use throttle_core::rate;

use super::args;
use super::clock;
use super::commands::{KEY, ONE_KEY_WRITE, WRITE};
use super::error::{Error, Range, Result};
use super::ffi::command::{Arg, Spec, handler};
use super::ffi::{Args, Ctx};
use super::keyspace::{self, Target};
use super::replies;
use super::stats;

const COMMAND: &str = "cl.throttle";

#[rustfmt::skip]
pub const COMMANDS: &[Spec] = &[
    Spec { name: c"cl.throttle", handler: handler(throttle), flags: WRITE, keys: ONE_KEY_WRITE, arity: -5, dangerous: false,
        summary: c"redis-cell's GCRA limit. Replies [limited, limit, remaining, retry_after_s, reset_after_s].",
        args: &[KEY, Arg::integer(c"max_burst"), Arg::integer(c"count_per_period"), Arg::integer(c"period"),
            Arg::integer(c"quantity").optional()] },
];

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

/// CL.THROTTLE key max_burst count_per_period period [quantity]
pub fn throttle(ctx: Ctx<'_>, args: Args<'_>) -> Result<()> {
    let call = parse(&args)?;
    let now = clock::now();
    let target = Target::new(args::arg(&args, 1, COMMAND)?, c"throttle");
    let writes = call.quantity > 0;
    let answer = keyspace::update_cell(ctx, target, now, writes, |stored| {
        cell::decide(stored, now, &call.limit, call.quantity)
    })?;
    if writes {
        stats::throttle(&answer, call.quantity);
    }
    replies::cell(ctx, &answer);
    Ok(())
}
