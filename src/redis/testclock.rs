//! THROTTLE.CLOCK: the test clock, for testing limits deterministically.
//!
//! ```text
//! THROTTLE.CLOCK FREEZE unix_us   → OK          every command of the module reads unix_us
//! THROTTLE.CLOCK ADVANCE us       → now_us      moves it ahead (freezing a running clock first)
//! THROTTLE.CLOCK REAL             → OK          back to the server's clock
//! THROTTLE.CLOCK GET              → now_us      the module's time now
//! ```
//! Accepted only when the module is loaded with `test-clock yes`. Not
//! replicated: replicas receive effects (absolute state), never times.
//! Held clients wait on the monotonic clock, whatever this one says.

use throttle_core::Micros;
use throttle_core::time::clamp_reply;

use super::args;
use super::clock;
use super::config;
use super::error::{Error, Range, Result};
use super::ffi::{Args, Ctx};

fn micros(args: &Args<'_>, arg: &'static str) -> Result<Micros> {
    let v = args::arg(args, 2, "throttle.clock")?.bytes();
    let us = args::integer(v, arg, 0, i64::MAX, Range::ClockMicros)?;
    Ok(Micros(us.unsigned_abs()))
}

pub fn clock_command(ctx: Ctx<'_>, args: Args<'_>) -> Result<()> {
    if !config::test_clock() {
        return Err(Error::NoTestClock);
    }
    let sub = args::arg(&args, 1, "throttle.clock")?.bytes();
    let n = args.len();
    if args::is_option(sub, "FREEZE") && n == 3 {
        clock::freeze(micros(&args, "unix_us")?);
        ctx.reply_simple(c"OK");
    } else if args::is_option(sub, "ADVANCE") && n == 3 {
        let at = clock::advance(micros(&args, "us")?);
        ctx.reply_i64(clamp_reply(at.0));
    } else if args::is_option(sub, "REAL") && n == 2 {
        clock::unfreeze();
        ctx.reply_simple(c"OK");
    } else if args::is_option(sub, "GET") && n == 2 {
        ctx.reply_i64(clamp_reply(clock::now().0));
    } else {
        return Err(Error::Syntax);
    }
    Ok(())
}
