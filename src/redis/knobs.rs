//! Operating a limiter: knobs kept in Redis (LimitLion's
//! throttle_set/get/reset), and refunds.
//!
//! ```text
//! THROTTLE.SET    key [RPS r] [BURST b] [WINDOW w] [TTL seconds]   → OK
//! THROTTLE.GET    key                                              → map, or nil
//! THROTTLE.RESET  key                                              → 1 removed, 0 none
//! THROTTLE.REFUND key tokens                                       → tokens now, or nil
//! ```

use throttle_core::Micros;
use throttle_core::throttle::{self as core, KnobChanges, MAX_KNOBS_TTL, ThrottleState};

use super::args;
use super::clock;
use super::commands::{KEY, ONE_KEY_READ, ONE_KEY_WRITE, READ, WRITE};
use super::config;
use super::error::{Error, Range, Result};
use super::ffi::command::{Arg, Spec, handler};
use super::ffi::{Args, Ctx, RStr};
use super::keyspace::{self, Target};
use super::replies;

#[rustfmt::skip]
pub const COMMANDS: &[Spec] = &[
    Spec { name: c"throttle.set", handler: handler(set), flags: WRITE, keys: ONE_KEY_WRITE, arity: -2, dangerous: false,
        summary: c"Set knobs: settings that override every caller's rps/burst/window until they expire.",
        args: &[KEY, Arg::double(c"rps").token(c"RPS").optional(), Arg::double(c"burst").token(c"BURST").optional(),
            Arg::double(c"window").token(c"WINDOW").optional(), Arg::integer(c"seconds").token(c"TTL").optional()] },
    Spec { name: c"throttle.get", handler: handler(get), flags: READ, keys: ONE_KEY_READ, arity: 2, dangerous: false,
        summary: c"A limiter's state now: tokens, limit, rate, knobs and when it is full again.",
        args: &[KEY] },
    Spec { name: c"throttle.reset", handler: handler(reset), flags: c"write fast", keys: ONE_KEY_WRITE, arity: 2, dangerous: false,
        summary: c"Remove a limiter's knobs, keeping its tokens. Replies 1 if knobs were removed.",
        args: &[KEY] },
    Spec { name: c"throttle.refund", handler: handler(refund), flags: WRITE, keys: ONE_KEY_WRITE, arity: 3, dangerous: false,
        summary: c"Give back tokens for work that did not happen, never above the limit. Replies the tokens held.",
        args: &[KEY, Arg::integer(c"tokens")] },
];

fn parse_set(args: &Args<'_>) -> Result<KnobChanges> {
    if args.len() < 2 {
        return Err(Error::Arity("throttle.set"));
    }
    let mut c = KnobChanges::default();
    let max_ttl = i64::try_from(MAX_KNOBS_TTL.as_secs_floor()).unwrap_or(i64::MAX);
    let mut options = args::Options::new(*args, 2);
    while let Some((name, value)) = options.next_pair()? {
        if args::is_option(name, "RPS") {
            args::once(&mut c.rps, value, args::rps)?;
        } else if args::is_option(name, "BURST") {
            args::once(&mut c.burst_nano, value, args::burst)?;
        } else if args::is_option(name, "WINDOW") {
            args::once(&mut c.window_ns, value, args::window)?;
        } else if args::is_option(name, "TTL") {
            args::once(&mut c.ttl, value, |v| {
                let s = args::integer(v, "TTL", 1, max_ttl, Range::KnobsTtl)?;
                Ok(Micros::from_secs(s.unsigned_abs()))
            })?;
        } else {
            return Err(Error::Syntax);
        }
    }
    Ok(c)
}

/// THROTTLE.SET key [RPS r] [BURST b] [WINDOW w] [TTL seconds]
pub fn set(ctx: Ctx<'_>, args: Args<'_>) -> Result<()> {
    let changes = parse_set(&args)?;
    let now = clock::now();
    let name = args::arg(&args, 1, "throttle.set")?;
    let target = Target {
        name,
        event: c"throttle.set",
    };
    keyspace::update(ctx, target, now, |v| {
        Ok(core::set_knobs(v, now, &changes, config::knobs_ttl())?)
    })?;
    replies::ok(ctx);
    Ok(())
}

fn one_key<'a>(args: &Args<'a>, command: &'static str) -> Result<RStr<'a>> {
    if args.len() != 2 {
        return Err(Error::Arity(command));
    }
    args::arg(args, 1, command)
}

/// THROTTLE.RESET key
pub fn reset(ctx: Ctx<'_>, args: Args<'_>) -> Result<()> {
    let name = one_key(&args, "throttle.reset")?;
    let now = clock::now();
    let target = Target {
        name,
        event: c"throttle.reset",
    };
    let removed = keyspace::update(ctx, target, now, |v| Ok(core::reset_knobs(v, now)))?;
    replies::flag(ctx, removed);
    Ok(())
}

/// THROTTLE.REFUND key tokens
pub fn refund(ctx: Ctx<'_>, args: Args<'_>) -> Result<()> {
    if args.len() != 3 {
        return Err(Error::Arity("throttle.refund"));
    }
    let tokens = args::count(args::arg(&args, 2, "throttle.refund")?.bytes(), "tokens")?;
    let now = clock::now();
    let name = args::arg(&args, 1, "throttle.refund")?;
    let target = Target {
        name,
        event: c"throttle.refund",
    };
    let held = keyspace::update(ctx, target, now, |v| Ok(core::refund(v, now, tokens)))?;
    replies::refund(ctx, held);
    Ok(())
}

/// THROTTLE.GET key: the limiter's state now; read-only.
pub fn get(ctx: Ctx<'_>, args: Args<'_>) -> Result<()> {
    let name = one_key(&args, "throttle.get")?;
    let now = clock::now();
    let snapshot = keyspace::read::<ThrottleState, _>(ctx, name, |v| Ok(core::get(v, now)))?;
    replies::knobs(ctx, snapshot.as_ref());
    Ok(())
}
