//! PERMIT: parse → now → load → decide → store → reply (or hold).
//!
//! ```text
//! PERMIT key interval_ms max_waiting [GRACE ms] [BLOCK timeout_ms]
//! ```
//! Reply: `[time_to_wait_ms, valid_at_ms, expires_at_ms]`, or nil.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use throttle_core::Micros;
use throttle_core::permit::{self, Permit, PermitRule, PermitState};
use throttle_core::time::{MAX_WAIT, NEVER_MS};

use super::args;
use super::blocking::{self, Pending};
use super::clock;
use super::config;
use super::error::{Error, Result};
use super::ffi::{Args, Ctx};
use super::keyspace::{self, Target};
use super::stats::STATS;

struct Call {
    rule: PermitRule,
    block: Option<Micros>,
}

fn parse(args: &Args<'_>) -> Result<Call> {
    if args.len() < 4 {
        return Err(Error::Arity("permit"));
    }
    let interval = args::interval_ms(args.bytes(2))?;
    let max_waiting = args::count(args.bytes(3), "max_waiting")?;
    let (mut grace, mut block) = (None, None);
    let mut options = args::Options::new(*args, 4);
    while let Some((name, value)) = options.next_pair()? {
        if args::is_option(name, "GRACE") {
            args::once(&mut grace, value, |v| args::timeout_ms(v, "GRACE"))?;
        } else if args::is_option(name, "BLOCK") {
            args::once(&mut block, value, |v| args::timeout_ms(v, "BLOCK"))?;
        } else {
            return Err(Error::Syntax);
        }
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

/// PERMIT key interval_ms max_waiting [GRACE ms] [BLOCK timeout_ms]
pub fn permit(ctx: Ctx<'_>, args: Args<'_>) -> Result<()> {
    let call = parse(&args)?;
    let now = clock::now();
    let name = args::arg(&args, 1, "permit")?;
    let mut key = ctx.open_key(name, true);
    // BLOCK 0 waits as long as the slot needs (at most a year); inside
    // MULTI/Lua BLOCK behaves as the plain form (the reply tells the wait).
    let held = call.block.is_some() && !ctx.deny_blocking();
    let max_wait = call
        .block
        .filter(|_| held)
        .map(|t| if t == Micros::ZERO { MAX_WAIT } else { t });
    let state = keyspace::load::<PermitState>(&key)?;
    let decision = permit::decide(state, now, &call.rule, max_wait);
    STATS.permit_calls.fetch_add(1, Relaxed);
    if let Some(next) = decision.next {
        let expire_at = Some(next.expires_at(call.rule.interval));
        keyspace::store(
            ctx,
            &mut key,
            Target::new(name, c"permit"),
            next,
            expire_at,
            now,
        );
    }
    drop(key);
    match decision.permit {
        Permit::Immediate { valid_at } => {
            STATS.permit_immediate.fetch_add(1, Relaxed);
            ctx.reply_i64s(&[0, valid_at.reply_ms_floor(), NEVER_MS]);
        }
        Permit::Reserved {
            valid_at,
            wait,
            expires_at,
        } => {
            STATS.permit_reserved.fetch_add(1, Relaxed);
            let (valid_ms, expires_ms) = (valid_at.reply_ms_ceil(), expires_at.reply_ms_ceil());
            if held {
                let usable_until = Instant::now() + Duration::from_micros(expires_at.since(now).0);
                let reply = [0, valid_ms, expires_ms];
                blocking::hold(
                    ctx,
                    wait,
                    Pending::Permit {
                        reply,
                        usable_until,
                    },
                )?;
            } else {
                ctx.reply_i64s(&[wait.reply_ms_ceil(), valid_ms, expires_ms]);
            }
        }
        Permit::Refused => {
            STATS.permit_refused.fetch_add(1, Relaxed);
            ctx.reply_null();
        }
    }
    Ok(())
}
