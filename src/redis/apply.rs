//! THROTTLE.APPLY key payload [expire_at_ms]: the effect of a write.
//!
//! Commands that read the clock are never propagated as they were called:
//! a replica, or an AOF replayed later, would decide again with its own
//! later clock. Instead the master propagates this command with the
//! absolute resulting state (the codec's bytes) and, when it moved, the
//! absolute expiry (Unix ms on the server's clock; absent or 0 leaves the
//! expiry alone, as in an AOF rewrite, which adds a PEXPIREAT). It replaces
//! whatever the key holds, so a replica ends byte-identical to its master.
//!
//! It is accepted from the master link and while loading (the AOF); other
//! clients get an error unless `throttle.apply-from-clients` is `yes`
//! (tools that replay an AOF by hand). The payload is validated as
//! strictly as an RDB load.

use throttle_core::codec::CodecError;
use throttle_core::limiter::Limiter;
use throttle_core::permit::PermitState;

use super::args;
use super::config;
use super::datatype::Stored;
use super::error::{Error, Range, Result};
use super::ffi::{Args, Ctx, Key};

fn replace<T: Stored>(key: &mut Key<'_>, payload: &[u8]) -> Result<()> {
    let value = T::decode(payload).map_err(|why| Error::Payload { what: T::NAME, why })?;
    match key.value_mut::<T>() {
        Some(slot) => *slot = value,
        None => {
            if key.set_value(Box::new(value)) {
                super::datatype::counted::<T>();
            }
        }
    }
    Ok(())
}

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
    let mut key = ctx.open_key(name, true);
    match payload.get(1) {
        Some(b'B' | b'K' | b'L') => replace::<Limiter>(&mut key, payload)?,
        Some(b'P') => replace::<PermitState>(&mut key, payload)?,
        _ => {
            return Err(Error::Payload {
                what: "state",
                why: CodecError::WrongKind,
            });
        }
    }
    if expire_at_ms > 0 {
        key.set_expire_at_ms(expire_at_ms, super::clock::real().reply_ms_floor());
    }
    drop(key);
    ctx.signal_modified(name);
    ctx.replicate_verbatim();
    ctx.reply_simple(c"OK");
    Ok(())
}
