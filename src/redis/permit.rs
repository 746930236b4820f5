//! PERMIT: parse → now → decide → store → propagate → reply (or hold).
//!
//! ```text
//! PERMIT key interval_ms max_waiting [GRACE ms] [BLOCK timeout_ms]
//! ```
//! Reply: `[time_to_wait_ms, valid_at_ms, expires_at_ms]`, or nil.

use std::sync::atomic::Ordering::Relaxed;

use throttle_core::Micros;
use throttle_core::codec;
use throttle_core::permit::{self, Permit, PermitRule, PermitState};

use super::args;
use super::blocking::{self, Pending};
use super::clock;
use super::config;
use super::datatype::{APPLY_COMMAND, create, permit_type};
use super::error::{Error, Result};
use super::ffi::{self, Args, Ctx, Holds, Key};
use super::stats::STATS;

/// `expires_at` of an immediate permit: it never expires.
const NEVER: i64 = i64::MAX;

struct Call {
    rule: PermitRule,
    block: Option<Micros>,
}

fn parse(args: &Args) -> Result<Call> {
    let n = args.len();
    if n < 4 {
        return Err(Error::Arity("permit"));
    }
    let interval = args::interval_ms(args.bytes(2))?;
    let max_waiting = args::count(args.bytes(3), "max_waiting")?;
    let mut grace = None;
    let mut block = None;
    let mut i = 4;
    while i < n {
        let opt = args.bytes(i);
        let value = if i + 1 < n {
            Some(args.bytes(i + 1))
        } else {
            None
        };
        match value {
            Some(v) if args::is_option(opt, "GRACE") && grace.is_none() => {
                grace = Some(args::timeout_ms(v, "GRACE")?);
            }
            Some(v) if args::is_option(opt, "BLOCK") && block.is_none() => {
                block = Some(args::timeout_ms(v, "BLOCK")?);
            }
            _ => return Err(Error::Syntax),
        }
        i += 2;
    }
    let grace = grace.unwrap_or_else(|| config::default_grace(interval));
    Ok(Call {
        rule: PermitRule {
            interval,
            max_waiting,
            grace,
        },
        block,
    })
}

// The value lives in Redis's keyspace, not in the handle; each command
// holds one handle per key, so there is never a second borrow.
#[allow(clippy::mut_from_ref)]
fn load(key: &Key) -> Result<Option<&mut PermitState>> {
    match key.holds::<PermitState>(permit_type()) {
        Holds::Nothing => Ok(None),
        Holds::Ours(p) => Ok(Some(unsafe { &mut *p.as_ptr() })),
        Holds::Other => Err(Error::WrongType),
    }
}

/// PERMIT key interval_ms max_waiting [GRACE ms] [BLOCK timeout_ms]
pub fn permit(ctx: Ctx, args: Args) -> Result<()> {
    let call = parse(&args)?;
    let now = clock::now();
    let key = Key::open(ctx, args.raw(1), true);
    let state = load(&key)?;
    // BLOCK 0 waits as long as the slot needs; inside MULTI/Lua BLOCK
    // behaves as the plain form (the reply tells the wait).
    let can_block = call.block.is_some() && !ffi::deny_blocking(ctx);
    let max_wait = match call.block {
        Some(Micros::ZERO) | None => None,
        Some(t) if can_block => Some(t),
        Some(_) => None,
    };
    let decision = permit::decide(state.as_deref(), now, &call.rule, max_wait);
    STATS.permit_calls.fetch_add(1, Relaxed);
    let Some(next) = decision.next() else {
        STATS.permit_refused.fetch_add(1, Relaxed);
        drop(key);
        ffi::reply_null(ctx);
        return Ok(());
    };
    match state {
        Some(s) => *s = next,
        None => create(&key, next),
    }
    let at_ms = permit::expires_at(&next, call.rule.interval).as_millis_ceil_i64();
    key.set_expire_at_ms(at_ms);
    ffi::replicate_apply(
        ctx,
        APPLY_COMMAND,
        args.raw(1),
        &codec::encode_permit(&next),
        at_ms,
    );
    ffi::signal_modified(ctx, args.raw(1));
    ffi::notify(ctx, c"permit", args.raw(1));
    drop(key);
    match decision {
        Permit::Immediate { valid_at } => {
            STATS.permit_immediate.fetch_add(1, Relaxed);
            ffi::reply_i64s(ctx, &[0, valid_at.as_millis_floor_i64(), NEVER]);
        }
        Permit::Reserved {
            valid_at,
            wait,
            expires_at,
        } => {
            STATS.permit_reserved.fetch_add(1, Relaxed);
            let valid_ms = valid_at.as_millis_ceil_i64();
            let expires_ms = expires_at.as_millis_ceil_i64();
            if can_block {
                blocking::hold(ctx, wait, Pending::Ints(vec![0, valid_ms, expires_ms]));
            } else {
                ffi::reply_i64s(ctx, &[wait.as_millis_ceil_i64(), valid_ms, expires_ms]);
            }
        }
        Permit::Refused => ffi::reply_null(ctx),
    }
    Ok(())
}
