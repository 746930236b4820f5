//! The module's two data types and their callbacks.
//!
//! - `rl-bucket`: a THROTTLE key ([`Limiter`]: the bucket and its knobs);
//! - `rl-permit`: a PERMIT key ([`PermitState`]: the last slot).
//!
//! Both persist through the versioned codec of the core crate, as one
//! string: RDB save/load (and so DEBUG RELOAD, DUMP/RESTORE, MIGRATE), AOF
//! rewrite (as `THROTTLE.APPLY key payload`; Redis adds the PEXPIREAT),
//! digest (DEBUG DIGEST), memory usage, copy and free. A corrupt or
//! truncated payload fails the load with a log line: it never crashes the
//! server. RDB encoding version 2 (the current codec) is written; version 1
//! files load (the codec converts them).

use std::ffi::{c_int, c_void};
use std::mem::size_of;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use redis_module::native_types::RedisType;
use redis_module::raw;
use throttle_core::codec::Codec;
use throttle_core::limiter::{Knobbed, Limiter};
use throttle_core::permit::PermitState;

use super::ffi::{self, Io, ModuleType, RStr};
use super::guard;
use super::stats::KEYS;

/// Encoding version registered with Redis for both types; RDB files of
/// every earlier version load.
const ENCODING_VERSION: i32 = 2;

/// The command replication and the AOF carry.
pub const APPLY_COMMAND: &std::ffi::CStr = c"THROTTLE.APPLY";

/// A value stored under one of the module's types: how it is named,
/// encoded (the core's codec), measured and counted.
pub trait Stored: ModuleType + Codec + Clone {
    const NAME: &'static str;
    /// How many live values of this type exist (INFO).
    const COUNT: &'static AtomicU64;
    /// Bytes this value holds on the heap (MEMORY USAGE).
    fn heap_size(&self) -> usize {
        size_of::<Self>()
    }
}

pub static BUCKET_TYPE: RedisType =
    RedisType::new("rl-bucket", ENCODING_VERSION, methods::<Limiter>());
pub static PERMIT_TYPE: RedisType =
    RedisType::new("rl-permit", ENCODING_VERSION, methods::<PermitState>());

// SAFETY: every value stored under rl-bucket is a Box<Limiter> made by
// this module (`Key::set_value`, `rdb_load`, `copy`).
unsafe impl ModuleType for Limiter {
    fn redis_type() -> *mut raw::RedisModuleType {
        *BUCKET_TYPE.raw_type.borrow()
    }
}

// SAFETY: every value stored under rl-permit is a Box<PermitState> made by
// this module.
unsafe impl ModuleType for PermitState {
    fn redis_type() -> *mut raw::RedisModuleType {
        *PERMIT_TYPE.raw_type.borrow()
    }
}

impl Stored for Limiter {
    const NAME: &'static str = "rl-bucket";
    const COUNT: &'static AtomicU64 = &KEYS.buckets;
    fn heap_size(&self) -> usize {
        let knobs = matches!(self, Limiter::Knobbed(_)).then_some(size_of::<Knobbed>());
        size_of::<Self>() + knobs.unwrap_or(0)
    }
}

impl Stored for PermitState {
    const NAME: &'static str = "rl-permit";
    const COUNT: &'static AtomicU64 = &KEYS.permits;
}

const fn methods<T: Stored>() -> raw::RedisModuleTypeMethods {
    raw::RedisModuleTypeMethods {
        // Version 4 is what Redis 7.0 knows; newer servers accept it too.
        version: 4,
        rdb_load: Some(rdb_load::<T>),
        rdb_save: Some(rdb_save::<T>),
        aof_rewrite: Some(aof_rewrite::<T>),
        mem_usage: Some(mem_usage::<T>),
        digest: Some(digest::<T>),
        free: Some(free::<T>),
        aux_load: None,
        aux_save: None,
        aux_save_triggers: 0,
        free_effort: None,
        unlink: None,
        copy: Some(copy::<T>),
        defrag: None,
        mem_usage2: None,
        free_effort2: None,
        unlink2: None,
        copy2: None,
        aux_save2: None,
    }
}

/// A new value as the raw pointer Redis stores (counted in INFO).
fn into_raw<T: Stored>(v: T) -> *mut c_void {
    T::COUNT.fetch_add(1, Relaxed);
    Box::into_raw(Box::new(v)).cast()
}

/// Borrows the value behind a pointer Redis hands to a type callback.
///
/// # Safety
/// `value` is NULL or a value of `T`'s type (ModuleType's contract), alive
/// for the duration of the callback.
unsafe fn value_ref<'a, T: Stored>(value: *const c_void) -> Option<&'a T> {
    // SAFETY: per the contract above.
    unsafe { value.cast::<T>().as_ref() }
}

unsafe extern "C" fn rdb_load<T: Stored>(
    rdb: *mut raw::RedisModuleIO,
    encver: c_int,
) -> *mut c_void {
    guard::or(std::ptr::null_mut(), "rdb_load", || {
        // SAFETY: the IO Redis passed to this callback.
        let Some(io) = (unsafe { Io::from_raw(rdb) }) else {
            return std::ptr::null_mut();
        };
        if !(1..=ENCODING_VERSION).contains(&encver) {
            io.log(
                c"warning",
                &format!("refusing to load {} encoding version {encver}", T::NAME),
            );
            return std::ptr::null_mut();
        }
        let Some(bytes) = io.load_bytes() else {
            return std::ptr::null_mut();
        };
        match T::decode(&bytes) {
            Ok(v) => into_raw(v),
            Err(e) => {
                io.log(
                    c"warning",
                    &format!("refusing to load a corrupt {} value ({e})", T::NAME),
                );
                std::ptr::null_mut()
            }
        }
    })
}

unsafe extern "C" fn rdb_save<T: Stored>(rdb: *mut raw::RedisModuleIO, value: *mut c_void) {
    guard::or((), "rdb_save", || {
        // SAFETY: the IO and value Redis passed to this callback.
        if let (Some(io), Some(v)) = unsafe { (Io::from_raw(rdb), value_ref::<T>(value)) } {
            io.save_bytes(v.encode().as_bytes());
        }
    })
}

unsafe extern "C" fn aof_rewrite<T: Stored>(
    aof: *mut raw::RedisModuleIO,
    key: *mut raw::RedisModuleString,
    value: *mut c_void,
) {
    guard::or((), "aof_rewrite", || {
        // SAFETY: the IO, key and value Redis passed to this callback.
        let (io, key, v) = unsafe {
            (
                Io::from_raw(aof),
                RStr::from_raw(key),
                value_ref::<T>(value),
            )
        };
        if let (Some(io), Some(key), Some(v)) = (io, key, v) {
            io.emit_aof(APPLY_COMMAND, key, v.encode().as_bytes());
        }
    })
}

unsafe extern "C" fn mem_usage<T: Stored>(value: *const c_void) -> usize {
    guard::or(0, "mem_usage", || {
        // SAFETY: the value Redis passed to this callback.
        let v = unsafe { value_ref::<T>(value) };
        v.map_or(0, T::heap_size)
    })
}

unsafe extern "C" fn digest<T: Stored>(md: *mut raw::RedisModuleDigest, value: *mut c_void) {
    guard::or((), "digest", || {
        // SAFETY: the value and digest Redis passed to this callback.
        if let Some(v) = unsafe { value_ref::<T>(value) } {
            // SAFETY: the digest Redis passed to this callback.
            unsafe { ffi::digest_bytes(md, v.encode().as_bytes()) };
        }
    })
}

unsafe extern "C" fn free<T: Stored>(value: *mut c_void) {
    if !value.is_null() {
        T::COUNT.fetch_sub(1, Relaxed);
        // SAFETY: Redis frees each value once, and every value of T's type
        // is a Box<T> (ModuleType's contract).
        drop(unsafe { Box::from_raw(value.cast::<T>()) });
    }
}

unsafe extern "C" fn copy<T: Stored>(
    _from: *mut raw::RedisModuleString,
    _to: *mut raw::RedisModuleString,
    value: *const c_void,
) -> *mut c_void {
    guard::or(std::ptr::null_mut(), "copy", || {
        // SAFETY: the value Redis passed to this callback.
        match unsafe { value_ref::<T>(value) } {
            Some(v) => into_raw(v.clone()),
            None => std::ptr::null_mut(),
        }
    })
}

/// Counts a value Redis now owns (created through `Key::set_value`).
pub fn counted<T: Stored>() {
    T::COUNT.fetch_add(1, Relaxed);
}
