//! THROTTLE.LIMITLION: LimitLion 1.1's `throttle.lua`, compiled.
//!
//! ```text
//! THROTTLE.LIMITLION bucket_key knobs_key rps burst window requested_tokens knobs_ttl
//!                    [CLOCK second_key microsecond_key]
//! ```
//! Reply: `[allowed, tokens, sleep]` (`sleep` the script's `"%.6f"` text),
//! what LimitLion's script answers for the same keys, arguments and time,
//! with the same writes: its two hashes (`tokens`/`refreshed` in the
//! bucket, the hand-editable knobs) stay hashes, written, expired,
//! replicated and announced as the script's HMSET and EXPIRE are. The core's
//! `limitlion::throttle` reproduces the script's floating-point arithmetic;
//! this file reads what the script reads, and writes what it wrote, in its
//! order (writes before an error stay, as a script's do). `CLOCK` is
//! LimitLion's testing mode: the time comes from the two string keys when
//! the first exists.

use throttle_core::Timestamp;
use throttle_core::limitlion::{self as core, Bucket, Call, Clock, Knobs, NumberText, Ttl};

use super::args;
use super::clock;
use super::commands::WRITE;
use super::error::{Error, Result};
use super::ffi::command::{Access, Arg, Begin, KeySpec, Keys, Spec, handler};
use super::ffi::{self, Args, Ctx, RStr};
use super::keyspace;
use super::replies;
use super::stats;

const COMMAND: &str = "throttle.limitlion";

const KEYS: Keys = Keys {
    first: 1,
    last: 2,
    step: 1,
    specs: &[
        KeySpec {
            begin: Begin::Index(1),
            last: 1,
            step: 1,
            access: Access::Write,
        },
        KeySpec {
            begin: Begin::Keyword(c"CLOCK", 8),
            last: 1,
            step: 1,
            access: Access::Read,
        },
    ],
};

#[rustfmt::skip]
pub const COMMANDS: &[Spec] = &[
    Spec { name: c"throttle.limitlion", handler: handler(limitlion), flags: WRITE, keys: KEYS, arity: -8, dangerous: false,
        summary: c"LimitLion's throttle script, compiled: its hashes, arithmetic and reply. Replies [allowed, tokens, sleep].",
        args: &[Arg::key(c"bucket_key", 0), Arg::key(c"knobs_key", 0), Arg::string(c"rps"), Arg::string(c"burst"),
            Arg::string(c"window"), Arg::string(c"requested_tokens"), Arg::string(c"knobs_ttl"),
            Arg::group(c"clock", &[Arg::key(c"second_key", 1), Arg::key(c"microsecond_key", 1)])
                .token(c"CLOCK").optional()] },
];

/// The arguments: the keys and the script's `ARGV` strings, as given.
struct Parsed<'a> {
    bucket: RStr<'a>,
    knobs: RStr<'a>,
    clock: Option<(RStr<'a>, RStr<'a>)>,
}

fn parse<'a>(args: &Args<'a>) -> Result<Parsed<'a>> {
    let clock = match args.len() {
        8 => None,
        11 if args.bytes(8).eq_ignore_ascii_case(b"CLOCK") => {
            Some((args::arg(args, 9, COMMAND)?, args::arg(args, 10, COMMAND)?))
        }
        n if n < 8 => return Err(Error::Arity(COMMAND)),
        _ => return Err(Error::Syntax),
    };
    let parsed = Parsed {
        bucket: args::arg(args, 1, COMMAND)?,
        knobs: args::arg(args, 2, COMMAND)?,
        clock,
    };
    if parsed.bucket.bytes() == parsed.knobs.bytes() {
        return Err(Error::SameKnobsKey);
    }
    Ok(parsed)
}

/// How this server's Lua turns a number into a command argument.
fn number_text() -> NumberText {
    let v = ffi::server_version();
    let (major, minor) = ((v >> 16) & 0xff, (v >> 8) & 0xff);
    NumberText::for_server(ffi::is_valkey(), major.unsigned_abs(), minor.unsigned_abs())
}

/// EXPIRE's absolute time, from the server clock at the call.
fn expire_at_ms(ttl: Ttl, server_now: Timestamp) -> Option<i64> {
    ttl.expire_at_ms(server_now)
}

/// THROTTLE.LIMITLION bucket_key knobs_key rps burst window requested_tokens knobs_ttl [CLOCK s us]
pub fn limitlion(ctx: Ctx<'_>, args: Args<'_>) -> Result<()> {
    let keys = parse(&args)?;
    let now = clock::now();
    // HMGET knobs_key rps burst window: a knobs key of another type fails
    // the script before anything is written.
    let [rps, burst, window] = keyspace::hash_get(ctx, keys.knobs, [c"rps", c"burst", c"window"])?;
    let clock_values = keys.clock.and_then(|(second, microsecond)| {
        keyspace::exists(ctx, second).then(|| {
            (
                keyspace::string(ctx, second),
                keyspace::string(ctx, microsecond),
            )
        })
    });
    let bucket = keyspace::hash_get(ctx, keys.bucket, [c"tokens", c"refreshed"]);
    let call = Call {
        knobs: Knobs {
            rps: rps.as_deref(),
            burst: burst.as_deref(),
            window: window.as_deref(),
        },
        args: core::Args {
            rps: args.bytes(3),
            burst: args.bytes(4),
            window: args.bytes(5),
            requested_tokens: args.bytes(6),
            knobs_ttl: args.bytes(7),
        },
        bucket: match &bucket {
            Ok([tokens, refreshed]) => Bucket::Hash {
                tokens: tokens.as_deref(),
                refreshed: refreshed.as_deref(),
            },
            Err(_) => Bucket::WrongType,
        },
        clock: match &clock_values {
            None => Clock::Server,
            Some((second, microsecond)) => Clock::Keys {
                second: second.as_deref(),
                microsecond: microsecond.as_deref(),
            },
        },
        now,
        number_text: number_text(),
    };
    let outcome = core::throttle(&call);
    // Expiries count from the server's clock (the test clock aside).
    let server_now = clock::to_server(now, now);
    if let Some(ttl) = outcome.knobs_ttl {
        keyspace::hash_expire(ctx, keys.knobs, expire_at_ms(ttl, server_now));
    }
    if let Some(write) = &outcome.bucket {
        keyspace::hash_set(
            ctx,
            keys.bucket,
            [
                (c"tokens", write.tokens.as_bytes()),
                (c"refreshed", write.refreshed.as_bytes()),
            ],
        )?;
        if let Some(ttl) = write.ttl {
            keyspace::hash_expire(ctx, keys.bucket, expire_at_ms(ttl, server_now));
        }
    }
    stats::limitlion(&outcome.reply);
    match outcome.reply {
        Ok(reply) => {
            replies::limitlion(ctx, &reply);
            Ok(())
        }
        Err(e) => Err(Error::Script(e.message())),
    }
}
