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
use throttle_core::decimal;
use throttle_core::limiter::{self, KnobChanges, Limiter, MAX_KNOBS_TTL};
use throttle_core::time::clamp_reply;

use super::args;
use super::clock;
use super::config;
use super::error::{Error, Range, Result};
use super::ffi::{Args, Ctx};
use super::keyspace::{self, Target};

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
    let mut key = ctx.open_key(name, true);
    let value = keyspace::load::<Limiter>(&key)?;
    let write = limiter::set_knobs(value, now, &changes, config::knobs_ttl())?;
    let target = Target::new(name, c"throttle.set");
    keyspace::write(ctx, &mut key, target, Some(write), now);
    drop(key);
    ctx.reply_simple(c"OK");
    Ok(())
}

fn one_key<'a>(args: &Args<'a>, command: &'static str) -> Result<super::ffi::RStr<'a>> {
    if args.len() != 2 {
        return Err(Error::Arity(command));
    }
    args::arg(args, 1, command)
}

/// THROTTLE.RESET key
pub fn reset(ctx: Ctx<'_>, args: Args<'_>) -> Result<()> {
    let name = one_key(&args, "throttle.reset")?;
    let now = clock::now();
    let mut key = ctx.open_key(name, true);
    let write = keyspace::load::<Limiter>(&key)?.and_then(|v| limiter::reset_knobs(v, now));
    let removed = write.is_some();
    let target = Target::new(name, c"throttle.reset");
    keyspace::write(ctx, &mut key, target, write, now);
    drop(key);
    ctx.reply_i64(i64::from(removed));
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
    let mut key = ctx.open_key(name, true);
    // A missing key is a full bucket: there is nothing to give back.
    let Some((write, held)) =
        keyspace::load::<Limiter>(&key)?.and_then(|v| limiter::refund(v, now, tokens))
    else {
        drop(key);
        ctx.reply_null();
        return Ok(());
    };
    let target = Target::new(name, c"throttle.refund");
    keyspace::write(ctx, &mut key, target, write, now);
    drop(key);
    ctx.reply_i64(clamp_reply(held));
    Ok(())
}

/// THROTTLE.GET key: the limiter's state now; read-only.
pub fn get(ctx: Ctx<'_>, args: Args<'_>) -> Result<()> {
    let name = one_key(&args, "throttle.get")?;
    let now = clock::now();
    let key = ctx.open_key(name, false);
    let value = keyspace::load::<Limiter>(&key)?.filter(|v| limiter::is_live(v, now));
    let Some(s) = value.map(|v| limiter::snapshot(v, now)) else {
        drop(key);
        ctx.reply_null();
        return Ok(());
    };
    drop(key);
    let nano = |n: u64| decimal::format(false, u128::from(n), 9);
    ctx.reply_map(8);
    ctx.reply_bulk(b"tokens");
    ctx.reply_i64(s.tokens.map_or(-1, clamp_reply));
    ctx.reply_bulk(b"limit");
    ctx.reply_i64(clamp_reply(s.limit));
    ctx.reply_bulk(b"rps");
    ctx.reply_bulk(s.rps.as_bytes());
    for (field, v) in [
        ("burst", s.burst_window.map(|b| b.0)),
        ("window", s.burst_window.map(|b| b.1)),
    ] {
        ctx.reply_bulk(field.as_bytes());
        match v {
            Some(n) => ctx.reply_bulk(nano(n).as_bytes()),
            None => ctx.reply_null(),
        }
    }
    ctx.reply_bulk(b"source");
    ctx.reply_bulk(if s.knobs_ttl.is_some() {
        b"knobs"
    } else {
        b"last-call"
    });
    ctx.reply_bulk(b"knobs_ttl_ms");
    ctx.reply_i64(s.knobs_ttl.map_or(-1, |t| t.reply_ms_ceil()));
    ctx.reply_bulk(b"reset_after_ms");
    ctx.reply_i64(s.reset_after.reply_ms_ceil());
    Ok(())
}
