//! Operating a limiter: knobs kept in Redis (LimitLion's
//! throttle_set/get/reset), and refunds.
//!
//! ```text
//! THROTTLE.SET    key [RPS r] [BURST b] [WINDOW w] [TTL seconds]   → OK
//! THROTTLE.GET    key                                              → map, or nil
//! THROTTLE.RESET  key                                              → 1 removed, 0 none
//! THROTTLE.REFUND key tokens                                       → tokens now, or nil
//! ```

use throttle_core::throttle::{self as core, KnobChanges, ThrottleState};

use super::args;
use super::clock;
use super::commands::{KEY, ONE_KEY_WRITE, READ, WRITE, key_only};
use super::config;
use super::error::{Error, Result};
use super::ffi::command::{Arg, Spec, handler};
use super::ffi::{Args, Ctx};
use super::keyspace::{self, Target};
use super::replies;

#[rustfmt::skip]
pub const COMMANDS: &[Spec] = &[
    Spec { name: c"throttle.set", handler: handler(set), flags: WRITE, keys: ONE_KEY_WRITE, arity: -2, dangerous: false,
        summary: c"Set knobs: settings that override every caller's rps/burst/window until they expire.",
        args: &[KEY, Arg::double(c"rps").token(c"RPS").optional(), Arg::double(c"burst").token(c"BURST").optional(),
            Arg::double(c"window").token(c"WINDOW").optional(), Arg::integer(c"seconds").token(c"TTL").optional()] },
    key_only(c"throttle.get", handler(get), READ, c"A limiter's state now: tokens, limit, rate, knobs and when it is full again."),
    key_only(c"throttle.reset", handler(reset), c"write fast", c"Remove a limiter's knobs, keeping its tokens. Replies 1 if knobs were removed."),
    Spec { name: c"throttle.refund", handler: handler(refund), flags: WRITE, keys: ONE_KEY_WRITE, arity: 3, dangerous: false,
        summary: c"Give back tokens for work that did not happen, never above the limit. Replies the tokens held.",
        args: &[KEY, Arg::integer(c"tokens")] },
];

fn parse_set(args: &Args<'_>) -> Result<KnobChanges> {
    let (mut rps, mut burst_nano, mut window_ns, mut ttl) = (None, None, None, None);
    args::settings(
        args,
        "throttle.set",
        &mut [
            ("RPS", &mut |v| args::once(&mut rps, v, args::rps)),
            ("BURST", &mut |v| {
                args::once(&mut burst_nano, v, args::burst)
            }),
            ("WINDOW", &mut |v| {
                args::once(&mut window_ns, v, args::window)
            }),
            ("TTL", &mut |v| args::once(&mut ttl, v, args::settings_ttl)),
        ],
    )?;
    Ok(KnobChanges {
        rps,
        burst_nano,
        window_ns,
        ttl,
    })
}

/// THROTTLE.SET key [RPS r] [BURST b] [WINDOW w] [TTL seconds]
pub fn set(ctx: Ctx<'_>, args: Args<'_>) -> Result<()> {
    let changes = parse_set(&args)?;
    let now = clock::now();
    let name = args::arg(&args, 1, "throttle.set")?;
    let target = Target::new(name, c"throttle.set");
    keyspace::update(ctx, target, now, |v| {
        core::set_knobs(v, now, &changes, config::knobs_ttl())
    })?;
    replies::ok(ctx);
    Ok(())
}

/// THROTTLE.RESET key
pub fn reset(ctx: Ctx<'_>, args: Args<'_>) -> Result<()> {
    let name = args::only_key(&args, "throttle.reset")?;
    let now = clock::now();
    let target = Target::new(name, c"throttle.reset");
    let removed = keyspace::update(ctx, target, now, |v| {
        Ok::<_, Error>(core::reset_knobs(v, now))
    })?;
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
    let target = Target::new(name, c"throttle.refund");
    let held = keyspace::update(ctx, target, now, |v| {
        Ok::<_, Error>(core::refund(v, now, tokens))
    })?;
    replies::refund(ctx, held);
    Ok(())
}

/// THROTTLE.GET key: the limiter's state now; read-only.
pub fn get(ctx: Ctx<'_>, args: Args<'_>) -> Result<()> {
    let name = args::only_key(&args, "throttle.get")?;
    let now = clock::now();
    let snapshot = keyspace::read::<ThrottleState, _, Error>(ctx, name, |v| Ok(core::get(v, now)))?;
    replies::knobs(ctx, snapshot.as_ref());
    Ok(())
}
