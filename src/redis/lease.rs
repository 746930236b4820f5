//! Leases, a concurrency limit: parse → now → update → reply (or hold).
//!
//! ```text
//! LEASE         key limit ttl_ms [COST n] [BLOCK timeout_ms]   → [lease_id, expires_at_ms, in_use, limit] or nil
//! LEASE.RELEASE key lease_id                                   → 1 released, 0 not held
//! LEASE.RENEW   key lease_id ttl_ms                            → expires_at_ms, or nil (the lease was lost)
//! LEASE.PEEK    key                                            → [in_use, limit, waiting, next_expiry_ms]
//! ```
//! The key holds an `rl-leases` (the core's `LeaseState`). A held caller
//! (BLOCK) gets a lease reserved when it asks, starting the first instant
//! it fits; every write re-plans the reservations, and the scheduler moves
//! their callers. Callers that leave before their lease starts are
//! cancelled by the key's next command.

use throttle_core::lease::{self as core, Acquire, Granted, LeaseState, MAX_LIMIT, Moved};
use throttle_core::time::MAX_WAIT;
use throttle_core::{Micros, Timestamp};

use super::args;
use super::blocking::{self, Hold, KeyId};
use super::clock;
use super::commands::{KEY, ONE_KEY_WRITE, READ, WRITE, key_only};
use super::error::{Error, Range, Result};
use super::ffi::command::{Arg, Spec, handler};
use super::ffi::{Args, Ctx};
use super::keyspace::{self, Target};
use super::replies::{self, HeldLease};
use super::stats;

#[rustfmt::skip]
pub const COMMANDS: &[Spec] = &[
    Spec { name: c"lease", handler: handler(lease), flags: WRITE, keys: ONE_KEY_WRITE, arity: -4, dangerous: false,
        summary: c"A lease on one of `limit` concurrent places for ttl_ms; BLOCK waits for one, first come first served. Replies [lease_id, expires_at_ms, in_use, limit] or nil.",
        args: &[KEY, Arg::integer(c"limit"), Arg::integer(c"ttl_ms"), Arg::integer(c"cost").token(c"COST").optional(),
            Arg::integer(c"timeout_ms").token(c"BLOCK").optional()] },
    Spec { name: c"lease.release", handler: handler(release), flags: WRITE, keys: ONE_KEY_WRITE, arity: 3, dangerous: false,
        summary: c"End a lease now. Replies 1 if it was live, else 0.",
        args: &[KEY, Arg::integer(c"lease_id")] },
    Spec { name: c"lease.renew", handler: handler(renew), flags: WRITE, keys: ONE_KEY_WRITE, arity: 4, dangerous: false,
        summary: c"Extend a live lease to ttl_ms from now. Replies its new expires_at_ms, or nil if it was lost.",
        args: &[KEY, Arg::integer(c"lease_id"), Arg::integer(c"ttl_ms")] },
    key_only(c"lease.peek", handler(peek), READ, c"A lease key now: [in_use, limit, waiting, next_expiry_ms]; writes nothing."),
];

crate::data_type!(LeaseState, LEASES, "rl-leases", stats::LEASE_KEYS);

/// `1..=max` (an id, a limit, a cost).
fn positive(bytes: &[u8], arg: &'static str, max: u64, range: Range) -> Result<u64> {
    let max = i64::try_from(max).unwrap_or(i64::MAX);
    Ok(args::integer(bytes, arg, 1, max, range)?.unsigned_abs())
}

/// A lease length: whole ms, `1..=` a year.
fn ttl_ms(bytes: &[u8]) -> Result<Micros> {
    let ms = positive(bytes, "ttl_ms", MAX_WAIT.as_millis_floor(), Range::LeaseTtl)?;
    Ok(Micros::from_millis(ms))
}

/// The reservations a write moved or dropped: their callers follow.
fn follow(key: &KeyId, moved: &Moved, now: Timestamp) {
    if !moved.starts.is_empty() || !moved.dropped.is_empty() {
        blocking::retime_tagged(key, &moved.starts, &moved.dropped, now);
    }
}

/// LEASE key limit ttl_ms [COST n] [BLOCK timeout_ms]
pub fn lease(ctx: Ctx<'_>, args: Args<'_>) -> Result<()> {
    if args.len() < 4 {
        return Err(Error::Arity("lease"));
    }
    let limit = positive(args.bytes(2), "limit", MAX_LIMIT, Range::LeaseLimit)?;
    let ttl = ttl_ms(args.bytes(3))?;
    let (mut cost, mut block) = (None, None);
    args::settings_from(
        &args,
        4,
        &mut [
            ("COST", &mut |v| {
                args::once(&mut cost, v, |v| {
                    positive(v, "COST", MAX_LIMIT, Range::LeaseLimit)
                })
            }),
            ("BLOCK", &mut |v| {
                args::once(&mut block, v, |v| args::timeout_ms(v, "BLOCK"))
            }),
        ],
    )?;
    let now = clock::now();
    let name = args::arg(&args, 1, "lease")?;
    let key = blocking::key_id(ctx, name);
    let held = block.is_some() && !ctx.deny_blocking();
    let timeout = block.map_or(
        Micros::ZERO,
        |t| if t == Micros::ZERO { MAX_WAIT } else { t },
    );
    let call = Acquire {
        limit,
        ttl,
        cost: cost.unwrap_or(1),
        held,
        max_wait: timeout,
    };
    let cancelled = blocking::take_gone(&key);
    let out = keyspace::update(ctx, Target::new(name, c"lease"), now, |s| {
        Ok::<_, Error>(core::acquire(s, now, cancelled, &call))
    })?;
    follow(&key, &out.moved, now);
    stats::lease(&out.answer);
    match out.answer {
        Granted::Lease {
            lease,
            wait,
            in_use,
            limit,
        } if wait > Micros::ZERO => {
            let hold = Hold {
                key,
                slot: lease.start,
                timeout,
                // A lease is never "late": its holder just has less of it.
                on_time_for: Micros::MAX,
                state_for: wait.saturating_add(ttl),
                tag: Some(lease.id),
                state: None,
            };
            let reply = HeldLease {
                id: lease.id,
                ttl: lease.ttl,
                in_use,
                limit,
            };
            blocking::hold(ctx, hold, Box::new(reply))?;
        }
        answer => replies::lease(ctx, &answer),
    }
    Ok(())
}

/// LEASE.RELEASE key lease_id
pub fn release(ctx: Ctx<'_>, args: Args<'_>) -> Result<()> {
    if args.len() != 3 {
        return Err(Error::Arity("lease.release"));
    }
    let id = args::count(args.bytes(2), "lease_id")?;
    let now = clock::now();
    let name = args::arg(&args, 1, "lease.release")?;
    let key = blocking::key_id(ctx, name);
    let cancelled = blocking::take_gone(&key);
    let out = keyspace::update(ctx, Target::new(name, c"lease.release"), now, |s| {
        Ok::<_, Error>(core::release(s, now, cancelled, id))
    })?;
    follow(&key, &out.moved, now);
    stats::lease_end(out.answer);
    replies::flag(ctx, out.answer);
    Ok(())
}

/// LEASE.RENEW key lease_id ttl_ms
pub fn renew(ctx: Ctx<'_>, args: Args<'_>) -> Result<()> {
    if args.len() != 4 {
        return Err(Error::Arity("lease.renew"));
    }
    let id = args::count(args.bytes(2), "lease_id")?;
    let ttl = ttl_ms(args.bytes(3))?;
    let now = clock::now();
    let name = args::arg(&args, 1, "lease.renew")?;
    let key = blocking::key_id(ctx, name);
    let cancelled = blocking::take_gone(&key);
    let out = keyspace::update(ctx, Target::new(name, c"lease.renew"), now, |s| {
        Ok::<_, Error>(core::renew(s, now, cancelled, id, ttl))
    })?;
    follow(&key, &out.moved, now);
    stats::lease_renewed(out.answer.is_some());
    replies::renewed(ctx, out.answer);
    Ok(())
}

/// LEASE.PEEK key: the key now; read-only.
pub fn peek(ctx: Ctx<'_>, args: Args<'_>) -> Result<()> {
    let name = args::only_key(&args, "lease.peek")?;
    let now = clock::now();
    let snapshot = keyspace::read::<LeaseState, _, Error>(ctx, name, |s| Ok(core::peek(s, now)))?;
    replies::lease_peek(ctx, snapshot.as_ref());
    Ok(())
}
