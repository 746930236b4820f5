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
//! Held clients wait on the monotonic clock, whatever this one says. The
//! clock never goes past year 9967 ([`Timestamp::LATEST`]): later times
//! are refused.

use throttle_core::time::clamp_reply;
use throttle_core::{Micros, Timestamp};

use super::args;
use super::clock;
use super::config;
use super::error::{Error, Range, Result};
use super::ffi::command::{Arg, Keys, Spec, handler};
use super::ffi::{Args, Ctx};
use super::replies;

#[rustfmt::skip]
pub const COMMANDS: &[Spec] = &[
    Spec { name: c"throttle.clock", handler: handler(clock_command), flags: c"fast", keys: Keys::NONE, arity: -2, dangerous: false,
        summary: c"The test clock (module loaded with test-clock yes): FREEZE unix_us | ADVANCE us | REAL | GET.",
        args: &[Arg::string(c"subcommand"), Arg::integer(c"us").optional()] },
];

/// Microseconds, at most the latest instant the clock reads.
fn micros(args: &Args<'_>, arg: &'static str) -> Result<u64> {
    let v = args::arg(args, 2, "throttle.clock")?.bytes();
    let latest = i64::try_from(Timestamp::LATEST.0).unwrap_or(i64::MAX);
    match args::integer(v, arg, 0, i64::MAX, Range::Count) {
        Ok(us) if us <= latest => Ok(us.unsigned_abs()),
        Ok(_) | Err(Error::OutOfRange { .. }) => Err(Error::ClockRange { arg }),
        Err(e) => Err(e),
    }
}

pub fn clock_command(ctx: Ctx<'_>, args: Args<'_>) -> Result<()> {
    if !config::test_clock() {
        return Err(Error::NoTestClock);
    }
    let sub = args::arg(&args, 1, "throttle.clock")?.bytes();
    let n = args.len();
    if args::is_option(sub, "FREEZE") && n == 3 {
        clock::freeze(Timestamp(micros(&args, "unix_us")?));
        replies::ok(ctx);
    } else if args::is_option(sub, "ADVANCE") && n == 3 {
        let by = micros(&args, "us")?;
        if clock::now().0.saturating_add(by) > Timestamp::LATEST.0 {
            return Err(Error::ClockRange { arg: "us" });
        }
        let at = clock::advance(Micros(by));
        ctx.reply_i64(clamp_reply(at.0));
    } else if args::is_option(sub, "REAL") && n == 2 {
        clock::unfreeze();
        replies::ok(ctx);
    } else if args::is_option(sub, "GET") && n == 2 {
        ctx.reply_i64(clamp_reply(clock::now().0));
    } else {
        return Err(Error::Syntax);
    }
    Ok(())
}
