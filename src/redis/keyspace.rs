//! The keyspace layer: the one way commands read and write their keys.
//!
//! [`load`] answers "is this key ours?" once for every command: a value of
//! the type asked for, nothing, or WRONGTYPE. [`store`] does everything a
//! write needs, in one place: the value (in place, or created), the
//! absolute expiry when it moves, the effect replicated as
//! `THROTTLE.APPLY key payload [expire_at_ms]` (never the command, which
//! read the clock), the modified-key signal (WATCH) and the keyspace event.

use std::ffi::CStr;

use throttle_core::Micros;
use throttle_core::limiter::{Limiter, Write};

use super::clock;
use super::datatype::{APPLY_COMMAND, Stored, counted};
use super::error::{Error, Result};
use super::ffi::{Ctx, Holds, Key, RStr};

/// The value of type `T` at an open key; `None` for a missing key.
pub fn load<'k, T: Stored>(key: &'k Key<'_>) -> Result<Option<&'k T>> {
    match key.holds::<T>() {
        Holds::Nothing => Ok(None),
        Holds::Ours => Ok(key.value::<T>()),
        Holds::String | Holds::Other => Err(Error::WrongType),
    }
}

/// A write's identity: the key's name and the event it fires.
#[derive(Clone, Copy)]
pub struct Target<'a> {
    pub name: RStr<'a>,
    pub event: &'static CStr,
}

impl<'a> Target<'a> {
    pub fn new(name: RStr<'a>, event: &'static CStr) -> Target<'a> {
        Target { name, event }
    }
}

/// Stores `value` at `key` (in place when the key holds a `T`, so it is not
/// re-created), moves its expiry to `expire_at` (module time) when given,
/// replicates the effect, signals the key and fires the event.
pub fn store<T: Stored>(
    ctx: Ctx<'_>,
    key: &mut Key<'_>,
    target: Target<'_>,
    value: T,
    expire_at: Option<Micros>,
    now: Micros,
) {
    let payload = value.encode();
    match key.value_mut::<T>() {
        Some(slot) => *slot = value,
        None => {
            if key.set_value(Box::new(value)) {
                counted::<T>();
            }
        }
    }
    let expire_ms = expire_at.map(|at| {
        let at_ms = clock::to_server(at, now).reply_ms_ceil();
        key.set_expire_at_ms(at_ms, clock::real().reply_ms_floor());
        at_ms
    });
    ctx.replicate(APPLY_COMMAND, target.name, payload.as_bytes(), expire_ms);
    ctx.signal_modified(target.name);
    ctx.notify(target.event, target.name);
}

/// Deletes the key (replicated as `DEL`).
pub fn delete(ctx: Ctx<'_>, key: &mut Key<'_>, target: Target<'_>) {
    key.delete();
    ctx.replicate_del(target.name);
    ctx.signal_modified(target.name);
    ctx.notify(target.event, target.name);
}

/// Carries out a limiter write from the core, if there is one.
pub fn write(
    ctx: Ctx<'_>,
    key: &mut Key<'_>,
    target: Target<'_>,
    write: Option<Write>,
    now: Micros,
) {
    match write {
        Some(Write::Store { value, expire_at }) => {
            store::<Limiter>(ctx, key, target, value, expire_at, now)
        }
        Some(Write::Delete) => delete(ctx, key, target),
        None => {}
    }
}
