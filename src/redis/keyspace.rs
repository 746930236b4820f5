//! The keyspace layer: the one way commands read and write their keys.
//!
//! [`update`] is the generic update every write command goes through:
//! open the key, load its state (the type checked once: a state of the
//! type asked for, nothing, or WRONGTYPE), take the key's carry (the shift
//! a late release of held clients left for its next write, see
//! `blocking`), decide (the core's `Step`), and carry the write out in one
//! place, [`write_to`]: the value (in place, or created), the absolute
//! expiry when it moves, the effect replicated as `THROTTLE.APPLY key
//! payload [expire_at_ms]` (never the command, which read the clock), the
//! modified-key signal (WATCH) and the keyspace event. [`read`] is the
//! same for read-only commands (nothing written, the carry left in place).
//!
//! Foreign layouts plug into the same path through an adapter that reads
//! them as a state of the module's own: [`update_cell`] reads a key
//! redis-cell left (a string holding its TAT) and its writes go through
//! [`write_to`] like every other. [`update_all`] is [`update`] over
//! several keys at once (THROTTLE.ALL).
//!
//! LimitLion's keys are plain hashes its users read and edit by hand, so
//! they stay hashes: [`hash_get`], [`hash_set`] and [`hash_expire`] do
//! what HMGET, HSET and EXPIRE do (the same writes, replicated as those
//! commands, the same keyspace events).

use std::borrow::Cow;
use std::ffi::CStr;

use throttle_core::cell;
use throttle_core::throttle::ThrottleState;
use throttle_core::{Micros, Step, Timestamp, Write};

use super::blocking;
use super::clock;
use super::error::{Error, Result};
use super::ffi::types::DataType;
use super::ffi::{self, Ctx, EventClass, Holds, Key, RStr};

/// The command replication and the AOF carry.
pub const APPLY_COMMAND: &CStr = c"THROTTLE.APPLY";

/// A state stored under one of the module's data types.
pub trait Stored: DataType {}

impl<T: DataType> Stored for T {}

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

/// Declares a state type of the core as one of the module's data types:
/// its 9-character Redis name and its INFO counter.
#[macro_export]
macro_rules! data_type {
    ($state:ty, $entry:ident, $name:literal, $count:expr) => {
        static $entry: $crate::redis::ffi::types::TypeEntry<$state> =
            $crate::redis::ffi::types::TypeEntry::new($name, &$count);
        impl $crate::redis::ffi::types::DataType for $state {
            fn entry() -> &'static $crate::redis::ffi::types::TypeEntry<$state> {
                &$entry
            }
        }
    };
}

/// The state at an open key (`None`: no key), moved by `carry` when the
/// key has one (then owned).
/// A key that expired while a carry was pending (a late release moved its
/// schedule past the expiry its state had) continues from the state its
/// last command wrote, moved by the carry.
fn load<'k, S: Stored>(
    ctx: Ctx<'_>,
    name: RStr<'_>,
    key: &'k Key<'_>,
    carry: Micros,
) -> Result<Option<Cow<'k, S>>> {
    let stored = key.get::<S>().map_err(|_| Error::WrongType)?;
    if carry == Micros::ZERO {
        return Ok(stored.map(Cow::Borrowed));
    }
    let state = match stored {
        Some(s) => Some(s.paused(carry)),
        None => blocking::remembered::<S>(ctx, name).map(|s| s.paused(carry)),
    };
    Ok(state.map(Cow::Owned))
}

/// The state at a key now (for [`blocking::Hold::state`]).
pub fn snapshot<S: Stored>(ctx: Ctx<'_>, name: RStr<'_>) -> Option<Box<dyn std::any::Any + Send>> {
    let key = ctx.open_key(name, false);
    let state = key.get::<S>().ok().flatten()?.clone();
    Some(Box::new(state))
}

/// Remembers what a command writes to a key with held clients (a delete:
/// nothing to continue from).
fn remember<S: Stored>(ctx: Ctx<'_>, name: RStr<'_>, write: &Write<S>) {
    let value = match write {
        Write::Keep => return,
        Write::Store { value, .. } | Write::Patch { value, .. } => Some(value),
        Write::Delete => None,
    };
    if blocking::is_queued(ctx, name) {
        blocking::remember(ctx, name, value.cloned());
    }
}

/// The write a decision asked for, or, when it asked for none but the
/// state was moved by a carry, the moved state (its expiry moved if it
/// needs more time).
fn with_carry<S: Stored>(write: Write<S>, loaded: Option<Cow<'_, S>>) -> Write<S> {
    match (write, loaded) {
        (Write::Keep, Some(Cow::Owned(moved))) => {
            let expire_at = Some(moved.expiry());
            Write::Store {
                value: moved,
                expire_at,
            }
        }
        (w, _) => w,
    }
}

/// Load → decide → write, for a key of the module's own type `S`.
///
/// The decision's error converts to the module's (`E`: the core's own
/// error types, or [`Error`]); its step is used where it was built, never
/// copied into another `Result`.
pub fn update<S: Stored, A, E>(
    ctx: Ctx<'_>,
    target: Target<'_>,
    now: Timestamp,
    decide: impl FnOnce(Option<&S>) -> std::result::Result<Step<S, A>, E>,
) -> Result<A>
where
    Error: From<E>,
{
    blocking::release_due(ctx, target.name);
    let mut key = ctx.open_key(target.name, true);
    let carry = blocking::peek_carry(ctx, target.name);
    if carry == Micros::ZERO && !blocking::is_queued(ctx, target.name) {
        // The common case: no held clients, nothing carried (nothing to
        // move, nothing to remember), so the step's write goes straight out.
        let stored = key.get::<S>().map_err(|_| Error::WrongType)?;
        let step = decide(stored)?;
        write_to(ctx, &mut key, target, step.write, now);
        return Ok(step.answer);
    }
    let loaded = load::<S>(ctx, target.name, &key, carry)?;
    let step = decide(loaded.as_deref())?;
    let write = with_carry(step.write, loaded);
    if carry > Micros::ZERO {
        blocking::take_carry(ctx, target.name);
    }
    remember(ctx, target.name, &write);
    write_to(ctx, &mut key, target, write, now);
    Ok(step.answer)
}

/// Load → look, for a read-only command: nothing is written.
pub fn read<S: Stored, T, E>(
    ctx: Ctx<'_>,
    name: RStr<'_>,
    look: impl FnOnce(Option<&S>) -> std::result::Result<T, E>,
) -> Result<T>
where
    Error: From<E>,
{
    let key = ctx.open_key(name, false);
    let carry = blocking::peek_carry(ctx, name);
    if carry == Micros::ZERO {
        return Ok(look(key.get::<S>().map_err(|_| Error::WrongType)?)?);
    }
    let loaded = load::<S>(ctx, name, &key, carry)?;
    Ok(look(loaded.as_deref())?)
}

/// [`update`] over several keys at once: the decision sees every state and
/// answers a write per key. The names are distinct (the caller checked):
/// one handle per key name at a time.
pub fn update_all<S: Stored, A>(
    ctx: Ctx<'_>,
    targets: &[Target<'_>],
    now: Timestamp,
    decide: impl FnOnce(&[Option<&S>]) -> (Vec<Write<S>>, A),
) -> Result<A> {
    for t in targets {
        blocking::release_due(ctx, t.name);
    }
    let mut keys: Vec<Key<'_>> = targets.iter().map(|t| ctx.open_key(t.name, true)).collect();
    let carries: Vec<Micros> = targets
        .iter()
        .map(|t| blocking::peek_carry(ctx, t.name))
        .collect();
    let (writes, answer) = {
        let loaded = keys
            .iter()
            .zip(targets.iter().zip(&carries))
            .map(|(k, (t, c))| load::<S>(ctx, t.name, k, *c))
            .collect::<Result<Vec<_>>>()?;
        let views: Vec<Option<&S>> = loaded.iter().map(|l| l.as_deref()).collect();
        let (writes, answer) = decide(&views);
        let writes: Vec<Write<S>> = writes
            .into_iter()
            .zip(loaded)
            .map(|(w, l)| with_carry(w, l))
            .collect();
        (writes, answer)
    };
    for (((key, target), write), carry) in keys.iter_mut().zip(targets).zip(writes).zip(carries) {
        if carry > Micros::ZERO {
            blocking::take_carry(ctx, target.name);
        }
        remember(ctx, target.name, &write);
        write_to(ctx, key, *target, write, now);
    }
    Ok(answer)
}

/// The adapter for keys redis-cell left: a string holding a decimal TAT in
/// nanoseconds is read as such (without changing the string), any other
/// key as for [`update`]; every write stores the module's own type.
/// `write` is false for a call that only reads (CL.THROTTLE quantity 0).
pub fn update_cell<A, E>(
    ctx: Ctx<'_>,
    target: Target<'_>,
    now: Timestamp,
    write: bool,
    decide: impl FnOnce(cell::Stored<'_>) -> std::result::Result<Step<ThrottleState, A>, E>,
) -> Result<A>
where
    Error: From<E>,
{
    let mut key = ctx.open_key(target.name, write);
    let carry = blocking::peek_carry(ctx, target.name);
    match key.get::<ThrottleState>() {
        Err(Holds::Other) => return Err(Error::WrongType),
        Err(Holds::String) => {
            // Read through GET with no handle open on the key (reading it
            // in place would change the string's encoding).
            drop(key);
            let step = decide(cell::Stored::Tat(cell_tat(ctx, target.name)?))?;
            if write {
                write_to(
                    ctx,
                    &mut ctx.open_key(target.name, true),
                    target,
                    step.write,
                    now,
                );
            }
            return Ok(step.answer);
        }
        Ok(stored) if carry == Micros::ZERO => {
            // The common case: nothing carried, the stored state as it is.
            let step = decide(stored.map_or(cell::Stored::Missing, cell::Stored::Ours))?;
            if write {
                write_to(ctx, &mut key, target, step.write, now);
            }
            return Ok(step.answer);
        }
        Ok(_) => {}
    }
    let loaded = load::<ThrottleState>(ctx, target.name, &key, carry)?;
    let stored = match loaded.as_deref() {
        Some(s) => cell::Stored::Ours(s),
        None => cell::Stored::Missing,
    };
    let step = decide(stored)?;
    if write {
        let w = with_carry(step.write, loaded);
        if carry > Micros::ZERO {
            blocking::take_carry(ctx, target.name);
        }
        write_to(ctx, &mut key, target, w, now);
    }
    Ok(step.answer)
}

/// A redis-cell key: a string holding a decimal TAT in nanoseconds.
fn cell_tat(ctx: Ctx<'_>, name: RStr<'_>) -> Result<u64> {
    let bytes = ctx.get_string(name).ok_or(Error::WrongType)?;
    let digits = !bytes.is_empty() && bytes.len() <= 20 && bytes.iter().all(u8::is_ascii_digit);
    let tat = digits
        .then(|| std::str::from_utf8(&bytes).ok()?.parse::<u64>().ok())
        .flatten();
    tat.ok_or(Error::WrongType)
}

/// HMGET: the hash's fields (`None`: no such field, or no key);
/// WRONGTYPE for a key of another type.
pub fn hash_get<const N: usize>(
    ctx: Ctx<'_>,
    name: RStr<'_>,
    fields: [&CStr; N],
) -> Result<[Option<Vec<u8>>; N]> {
    ctx.open_key(name, false)
        .hash_get(fields)
        .map_err(|_| Error::WrongType)
}

/// EXISTS, and the value of a string key (`None` for another type), as
/// `EXISTS` and `GET` see them.
pub fn exists(ctx: Ctx<'_>, name: RStr<'_>) -> bool {
    ctx.open_key(name, false).exists()
}

/// A string key's value, as MGET answers (`None`: no key, or another type).
pub fn string(ctx: Ctx<'_>, name: RStr<'_>) -> Option<Vec<u8>> {
    ctx.get_string(name)
}

/// HSET key field value [field value]: creates the hash at an empty key;
/// replicated as HSET, fires `hset`. WRONGTYPE for a key of another type.
pub fn hash_set(ctx: Ctx<'_>, name: RStr<'_>, pairs: [(&CStr, &[u8]); 2]) -> Result<()> {
    if !ctx.open_key(name, true).hash_set(&pairs) {
        return Err(Error::WrongType);
    }
    let [(f0, v0), (f1, v1)] = pairs;
    ctx.replicate_args(c"HSET", name, &[f0.to_bytes(), v0, f1.to_bytes(), v1]);
    ctx.signal_modified(name);
    ctx.notify_as(EventClass::Hash, c"hset", name);
    Ok(())
}

/// EXPIRE on an existing key: `Some(at_ms)` sets its absolute expiry
/// (replicated as PEXPIREAT, fires `expire`), `None` (a ttl ≤ 0) deletes
/// it (replicated as DEL; fires `del`, or `expired` on Valkey 8.1 and
/// later, as their EXPIRE does). Nothing for a missing key.
pub fn hash_expire(ctx: Ctx<'_>, name: RStr<'_>, at_ms: Option<i64>) {
    let mut key = ctx.open_key(name, true);
    if !key.exists() {
        return;
    }
    match at_ms {
        Some(at) => {
            expire_at_ms(&mut key, at);
            ctx.replicate_args(c"PEXPIREAT", name, &[at.to_string().as_bytes()]);
            ctx.signal_modified(name);
            ctx.notify_as(EventClass::Generic, c"expire", name);
        }
        None => {
            key.delete();
            ctx.replicate_del(name);
            ctx.signal_modified(name);
            if ffi::is_valkey() && ffi::server_version() >= 0x0008_0100 {
                ctx.notify_as(EventClass::Expired, c"expired", name);
            } else {
                ctx.notify_as(EventClass::Generic, c"del", name);
            }
        }
    }
}

/// Carries out a write, the one way every write reaches Redis.
#[inline(always)] // into each update: the step's value moves once
pub fn write_to<S: Stored>(
    ctx: Ctx<'_>,
    key: &mut Key<'_>,
    target: Target<'_>,
    write: Write<S>,
    now: Timestamp,
) {
    match write {
        Write::Keep => {}
        Write::Store { value, expire_at } => {
            let payload = value.encode_replicated();
            store(ctx, key, target, value, payload.as_bytes(), expire_at, now);
        }
        Write::Patch {
            value,
            patch,
            expire_at,
        } => store(ctx, key, target, value, &patch, expire_at, now),
        Write::Delete => {
            key.delete();
            ctx.replicate_del(target.name);
            ctx.signal_modified(target.name);
            ctx.notify(target.event, target.name);
        }
    }
}

/// Stores `value` at `key` (in place when the key holds an `S`, so it is
/// not re-created), moves its expiry to `expire_at` (module time) when
/// given, replicates the effect (`payload`: the value, or the patch that
/// makes it), signals the key and fires the event.
#[inline(always)]
fn store<S: Stored>(
    ctx: Ctx<'_>,
    key: &mut Key<'_>,
    target: Target<'_>,
    value: S,
    payload: &[u8],
    expire_at: Option<Timestamp>,
    now: Timestamp,
) {
    put(key, value);
    let expire_ms = expire_at.map(|at| {
        let at_ms = clock::to_server(at, now).reply_ms_ceil();
        expire_at_ms(key, at_ms);
        at_ms
    });
    ctx.replicate(APPLY_COMMAND, target.name, payload, expire_ms);
    ctx.signal_modified(target.name);
    ctx.notify(target.event, target.name);
}

/// Puts `value` at `key`: in place when it holds an `S` (not re-created,
/// so its expiry stays), else as a new value replacing whatever was there.
pub fn put<S: Stored>(key: &mut Key<'_>, value: S) {
    match key.value_mut::<S>() {
        Some(slot) => *slot = value,
        None => {
            key.set_value(Box::new(value));
        }
    }
}

/// Sets the key's absolute expiry, in server milliseconds.
pub fn expire_at_ms(key: &mut Key<'_>, at_ms: i64) {
    key.set_expire_at_ms(at_ms, || clock::real().reply_ms_floor());
}
