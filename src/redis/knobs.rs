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
use throttle_core::limiter::{self, KnobChanges, Limiter, SetError};
use throttle_core::quota::Rate;

use super::args;
use super::clock;
use super::config;
use super::error::{Error, Result};
use super::ffi::{self, Args, Ctx, Key};
use super::throttle::{load, store};

/// Longest knobs TTL: ten years, in seconds.
const MAX_TTL_S: i64 = 10 * 365 * 24 * 3600;

fn parse_set(args: &Args) -> Result<KnobChanges> {
    let n = args.len();
    if n < 2 || n % 2 != 0 {
        return Err(if n < 2 {
            Error::Arity("throttle.set")
        } else {
            Error::Syntax
        });
    }
    let mut c = KnobChanges::default();
    let mut i = 2;
    while i + 1 < n {
        let (opt, v) = (args.bytes(i), args.bytes(i + 1));
        if args::is_option(opt, "RPS") && c.rate.is_none() {
            c.rate = Some(args::rate(v)?);
        } else if args::is_option(opt, "BURST") && c.burst_nano.is_none() {
            let b = args::positive_nano(v, "burst", "> 0 and <= 1e9")?;
            c.burst_nano = Some(
                u64::try_from(b)
                    .map_err(|_| args::quota_error(throttle_core::quota::QuotaError::Burst))?,
            );
        } else if args::is_option(opt, "WINDOW") && c.window_ns.is_none() {
            let w = args::positive_nano(v, "window", "> 0 and <= 1e9 seconds")?;
            c.window_ns = Some(
                u64::try_from(w)
                    .map_err(|_| args::quota_error(throttle_core::quota::QuotaError::Window))?,
            );
        } else if args::is_option(opt, "TTL") && c.ttl.is_none() {
            let s = args::integer(
                v,
                "TTL",
                1,
                MAX_TTL_S,
                "an integer >= 1 and <= 315360000 (ten years)",
            )?;
            c.ttl = Some(Micros(s.unsigned_abs() * 1_000_000));
        } else {
            return Err(Error::Syntax);
        }
        i += 2;
    }
    Ok(c)
}

/// THROTTLE.SET key [RPS r] [BURST b] [WINDOW w] [TTL seconds]
pub fn set(ctx: Ctx, args: Args) -> Result<()> {
    let changes = parse_set(&args)?;
    let now = clock::now();
    let key = Key::open(ctx, args.raw(1), true);
    let mut value = load(&key)?;
    let (next, expires_at) =
        limiter::set_knobs(value.as_deref(), now, &changes, config::knobs_ttl()).map_err(|e| {
            match e {
                SetError::Incomplete => Error::Invalid(
                    "the first THROTTLE.SET on a limiter must give RPS, BURST and WINDOW",
                ),
                SetError::Quota(q) => args::quota_error(q),
            }
        })?;
    store(
        ctx,
        &key,
        args.raw(1),
        value.take(),
        next,
        expires_at,
        c"throttle.set",
    );
    drop(key);
    ffi::reply_simple(ctx, c"OK");
    Ok(())
}

/// THROTTLE.RESET key
pub fn reset(ctx: Ctx, args: Args) -> Result<()> {
    if args.len() != 2 {
        return Err(Error::Arity("throttle.reset"));
    }
    let now = clock::now();
    let key = Key::open(ctx, args.raw(1), true);
    let value = load(&key)?;
    let Some((next, expires_at)) = value.as_deref().and_then(|v| limiter::reset_knobs(v, now))
    else {
        drop(key);
        ffi::reply_i64(ctx, 0);
        return Ok(());
    };
    store(
        ctx,
        &key,
        args.raw(1),
        value,
        next,
        expires_at,
        c"throttle.reset",
    );
    drop(key);
    ffi::reply_i64(ctx, 1);
    Ok(())
}

/// THROTTLE.REFUND key tokens
pub fn refund(ctx: Ctx, args: Args) -> Result<()> {
    if args.len() != 3 {
        return Err(Error::Arity("throttle.refund"));
    }
    let tokens = args::count(args.bytes(2), "tokens")?;
    let now = clock::now();
    let key = Key::open(ctx, args.raw(1), true);
    let value = load(&key)?;
    // A missing key is a full bucket: there is nothing to give back.
    let Some((next, expires_at, remaining)) = value
        .as_deref()
        .and_then(|v| limiter::refund(v, now, tokens))
    else {
        drop(key);
        ffi::reply_null(ctx);
        return Ok(());
    };
    if tokens > 0 {
        store(
            ctx,
            &key,
            args.raw(1),
            value,
            next,
            expires_at,
            c"throttle.refund",
        );
    }
    drop(key);
    ffi::reply_i64(ctx, i64::try_from(remaining).unwrap_or(i64::MAX));
    Ok(())
}

fn rate_text(r: Rate) -> String {
    match r {
        Rate::DenyAll => "0".into(),
        Rate::AllowAll => "-1".into(),
        Rate::PerSecond(n) => decimal::format(false, u128::from(n), 9),
    }
}

/// THROTTLE.GET key: the limiter's state now; read-only.
pub fn get(ctx: Ctx, args: Args) -> Result<()> {
    if args.len() != 2 {
        return Err(Error::Arity("throttle.get"));
    }
    let now = clock::now();
    let key = Key::open(ctx, args.raw(1), false);
    let Some(v): Option<&mut Limiter> = load(&key)? else {
        drop(key);
        ffi::reply_null(ctx);
        return Ok(());
    };
    let s = limiter::snapshot(v, now);
    drop(key);
    ffi::reply_map(ctx, 8);
    ffi::reply_bulk(ctx, b"tokens");
    ffi::reply_i64(ctx, s.tokens);
    ffi::reply_bulk(ctx, b"limit");
    ffi::reply_i64(ctx, i64::try_from(s.limit).unwrap_or(i64::MAX));
    ffi::reply_bulk(ctx, b"rps");
    ffi::reply_bulk(ctx, rate_text(s.params.rate).as_bytes());
    ffi::reply_bulk(ctx, b"burst");
    ffi::reply_bulk(
        ctx,
        decimal::format(false, u128::from(s.params.burst_nano), 9).as_bytes(),
    );
    ffi::reply_bulk(ctx, b"window");
    ffi::reply_bulk(
        ctx,
        decimal::format(false, u128::from(s.params.window_ns), 9).as_bytes(),
    );
    ffi::reply_bulk(ctx, b"source");
    ffi::reply_bulk(ctx, if s.from_knobs { b"knobs" } else { b"last-call" });
    ffi::reply_bulk(ctx, b"knobs_ttl_ms");
    ffi::reply_i64(ctx, s.knobs_ttl.map_or(-1, |t| t.as_millis_ceil_i64()));
    ffi::reply_bulk(ctx, b"reset_after_ms");
    ffi::reply_i64(ctx, s.reset_after.as_millis_ceil_i64());
    Ok(())
}
