//! THROTTLE.APPLY key payload [expire_at_ms]: the effect of a write.
//!
//! Commands that read the clock are never propagated as they were called:
//! a replica, or an AOF replayed later, would decide again with its own
//! later clock. Instead the master propagates this command with the
//! absolute resulting state (the codec's bytes) and, when it moved, the
//! absolute expiry (Unix ms on the server's clock). An absent or 0
//! `expire_at_ms` leaves the key's expiry as it is (an AOF rewrite adds a
//! PEXPIREAT after it); an expiry in the past deletes the key, as
//! PEXPIREAT does. It replaces whatever the key holds, so a replica ends
//! byte-identical to its master.
//!
//! It is accepted from the master link and while loading (the AOF); other
//! clients get an error unless `throttle.apply-from-clients` is `yes`
//! (tools that replay an AOF by hand). The payload is validated as
//! strictly as an RDB load, by the data type whose layout it names (the
//! module's type list, `super::TYPES`).

use throttle_core::codec::CodecError;

use super::args;
use super::commands::{KEY, ONE_KEY_WRITE};
use super::config;
use super::error::{Error, Range, Result};
use super::ffi::command::{Arg, Spec, handler};
use super::ffi::{Args, Ctx};
use super::replies;

#[rustfmt::skip]
pub const COMMANDS: &[Spec] = &[
    Spec { name: c"throttle.apply", handler: handler(apply), flags: c"write deny-oom", keys: ONE_KEY_WRITE, arity: -3, dangerous: true,
        summary: c"Store a limiter's absolute state: what replication and the AOF carry (masters and loading only, unless apply-from-clients).",
        args: &[KEY, Arg::string(c"payload"), Arg::integer(c"expire_at_ms").optional()] },
];

pub fn apply(ctx: Ctx<'_>, args: Args<'_>) -> Result<()> {
    if !(3..=4).contains(&args.len()) {
        return Err(Error::Arity("throttle.apply"));
    }
    if !ctx.from_master_or_loading() && !config::apply_from_clients() {
        return Err(Error::ApplyRefused);
    }
    let name = args::arg(&args, 1, "throttle.apply")?;
    let payload = args::arg(&args, 2, "throttle.apply")?.bytes();
    let expire_at_ms = match args.get(3) {
        Some(a) => args::integer(a.bytes(), "expire_at_ms", 0, i64::MAX, Range::ExpireAt)?,
        None => 0,
    };
    let ty = super::TYPES
        .iter()
        .find(|t| t.claims(payload))
        .ok_or(Error::Payload {
            what: "state",
            why: CodecError::WrongKind,
        })?;
    let mut key = ctx.open_key(name, true);
    ty.apply(&mut key, payload)?;
    if expire_at_ms > 0 {
        super::keyspace::expire_at_ms(&mut key, expire_at_ms);
    }
    drop(key);
    ctx.signal_modified(name);
    ctx.replicate_verbatim();
    replies::ok(ctx);
    Ok(())
}
