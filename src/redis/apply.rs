//! THROTTLE.APPLY key payload expire_at_ms — the effect of a write.
//!
//! Commands that read the clock are never propagated as they were called:
//! a replica, or an AOF replayed later, would decide again with its own
//! later clock. Instead the master propagates this command with the
//! absolute resulting state (the codec's bytes) and absolute expiry (Unix
//! ms; 0 leaves the expiry alone, as in an AOF rewrite, which adds a
//! PEXPIREAT). It replaces whatever value of the same kind the key holds,
//! so a replica ends byte-identical to its master.
//!
//! It is an ordinary command: an operator may use it to restore state, and
//! the payload is validated as strictly as an RDB load.

use throttle_core::codec::CodecError;

use super::datatype::{Stored, create};
use super::error::{Error, Result};
use super::ffi::{self, Args, Ctx, Holds, Key};
use throttle_core::limiter::Limiter;
use throttle_core::permit::PermitState;

fn decode<T: Stored>(payload: &[u8]) -> Result<T> {
    T::decode(payload).map_err(|why| Error::Payload { what: T::NAME, why })
}

fn replace<T: Stored>(key: &Key, value: T) -> Result<()> {
    match key.holds::<T>(T::ty()) {
        Holds::Ours(p) => unsafe { *p.as_ptr() = value },
        Holds::Nothing => create(key, value),
        Holds::Other => return Err(Error::WrongType),
    }
    Ok(())
}

pub fn apply(ctx: Ctx, args: Args) -> Result<()> {
    if args.len() != 4 {
        return Err(Error::Arity("throttle.apply"));
    }
    let payload = args.bytes(2);
    let expire_at_ms = args::integer(
        args.bytes(3),
        "expire_at_ms",
        0,
        i64::MAX,
        "an integer >= 0",
    )?;
    let key = Key::open(ctx, args.raw(1), true);
    match payload.get(1) {
        Some(b'L') => replace(&key, decode::<Limiter>(payload)?)?,
        Some(b'P') => replace(&key, decode::<PermitState>(payload)?)?,
        _ => {
            return Err(Error::Payload {
                what: "state",
                why: CodecError::WrongKind,
            });
        }
    }
    if expire_at_ms > 0 {
        key.set_expire_at_ms(expire_at_ms);
    }
    drop(key);
    ffi::signal_modified(ctx, args.raw(1));
    unsafe { ffi::api!(RedisModule_ReplicateVerbatim)(ctx) };
    ffi::reply_simple(ctx, c"OK");
    Ok(())
}

use super::args;
