//! The module's two data types and their callbacks.
//!
//! - `rl-bucket`: a THROTTLE key ([`Limiter`]: bucket, last parameters, knobs);
//! - `rl-permit`: a PERMIT key ([`PermitState`]: the last slot).
//!
//! Both persist through the versioned codec of the core crate, as one
//! string: RDB save/load (and so DEBUG RELOAD, DUMP/RESTORE, MIGRATE),
//! AOF rewrite (as `THROTTLE.APPLY key payload 0`; Redis adds the
//! PEXPIREAT), digest (DEBUG DIGEST), memory usage, copy and free. A
//! corrupt or truncated payload fails the load with a log line: it never
//! crashes the server.

use std::ffi::{c_int, c_void};
use std::mem::size_of;

use redis_module::native_types::RedisType;
use redis_module::raw;
use throttle_core::codec::{self, MAX_LIMITER_LEN};
use throttle_core::limiter::{Knobs, Limiter};
use throttle_core::permit::PermitState;

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use super::ffi::{Key, api};
use super::guard;
use super::stats::KEYS;

/// Encoding version registered with Redis for both types. Version 1 is the
/// only one written so far; the codec carries its own version byte too.
pub const ENCODING_VERSION: i32 = 1;

/// A value stored under one of our types: how it is encoded, decoded,
/// named, measured and counted.
pub trait Stored: Clone + Sized {
    const NAME: &'static str;
    fn encode(&self) -> ([u8; MAX_LIMITER_LEN], usize);
    fn decode(bytes: &[u8]) -> Result<Self, codec::CodecError>;
    fn heap_size(&self) -> usize {
        size_of::<Self>()
    }
    fn count() -> &'static AtomicU64;
    fn ty() -> *mut raw::RedisModuleType;
}

impl Stored for Limiter {
    const NAME: &'static str = "rl-bucket";
    fn encode(&self) -> ([u8; MAX_LIMITER_LEN], usize) {
        let mut buf = [0u8; MAX_LIMITER_LEN];
        let n = codec::encode_limiter(self, &mut buf);
        (buf, n)
    }
    fn decode(bytes: &[u8]) -> Result<Self, codec::CodecError> {
        codec::decode_limiter(bytes)
    }
    fn heap_size(&self) -> usize {
        size_of::<Self>() + self.knobs.as_ref().map_or(0, |_| size_of::<Knobs>())
    }
    fn count() -> &'static AtomicU64 {
        &KEYS.buckets
    }
    fn ty() -> *mut raw::RedisModuleType {
        bucket_type()
    }
}

impl Stored for PermitState {
    const NAME: &'static str = "rl-permit";
    fn encode(&self) -> ([u8; MAX_LIMITER_LEN], usize) {
        let mut buf = [0u8; MAX_LIMITER_LEN];
        let bytes = codec::encode_permit(self);
        buf[..bytes.len()].copy_from_slice(&bytes);
        (buf, bytes.len())
    }
    fn decode(bytes: &[u8]) -> Result<Self, codec::CodecError> {
        codec::decode_permit(bytes)
    }
    fn count() -> &'static AtomicU64 {
        &KEYS.permits
    }
    fn ty() -> *mut raw::RedisModuleType {
        permit_type()
    }
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

pub static BUCKET_TYPE: RedisType =
    RedisType::new("rl-bucket", ENCODING_VERSION, methods::<Limiter>());
pub static PERMIT_TYPE: RedisType =
    RedisType::new("rl-permit", ENCODING_VERSION, methods::<PermitState>());

/// The registered type pointers (valid after load).
pub fn bucket_type() -> *mut raw::RedisModuleType {
    *BUCKET_TYPE.raw_type.borrow()
}
pub fn permit_type() -> *mut raw::RedisModuleType {
    *PERMIT_TYPE.raw_type.borrow()
}

/// Stores a new value at an empty key (counted in INFO).
pub fn create<T: Stored>(key: &Key, v: T) {
    if key.set_value(T::ty(), Box::new(v)) {
        T::count().fetch_add(1, Relaxed);
    }
}

fn new_raw<T: Stored>(v: T) -> *mut c_void {
    T::count().fetch_add(1, Relaxed);
    Box::into_raw(Box::new(v)).cast()
}

/// The internal command that replication, AOF and AOF rewrite carry.
pub const APPLY_COMMAND: &std::ffi::CStr = c"THROTTLE.APPLY";

// ---- shared helpers -------------------------------------------------------

fn load_bytes(rdb: *mut raw::RedisModuleIO) -> Option<Vec<u8>> {
    let mut len = 0usize;
    let p = unsafe { api!(RedisModule_LoadStringBuffer)(rdb, &mut len) };
    if p.is_null() {
        return None;
    }
    if unsafe { api!(RedisModule_IsIOError)(rdb) } != 0 {
        unsafe { api!(RedisModule_Free)(p.cast()) };
        return None;
    }
    let bytes = unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len) }.to_vec();
    unsafe { api!(RedisModule_Free)(p.cast()) };
    Some(bytes)
}

fn save_bytes(rdb: *mut raw::RedisModuleIO, bytes: &[u8]) {
    unsafe { api!(RedisModule_SaveStringBuffer)(rdb, bytes.as_ptr().cast(), bytes.len()) };
}

fn digest_bytes(md: *mut raw::RedisModuleDigest, bytes: &[u8]) {
    unsafe {
        api!(RedisModule_DigestAddStringBuffer)(md, bytes.as_ptr().cast(), bytes.len());
        api!(RedisModule_DigestEndSequence)(md);
    }
}

fn emit_apply(aof: *mut raw::RedisModuleIO, key: *mut raw::RedisModuleString, bytes: &[u8]) {
    unsafe {
        api!(RedisModule_EmitAOF)(
            aof,
            APPLY_COMMAND.as_ptr(),
            c"sbl".as_ptr(),
            key,
            bytes.as_ptr(),
            bytes.len(),
            0 as std::ffi::c_longlong,
        )
    };
}

fn log_io_error(rdb: *mut raw::RedisModuleIO, what: &str) {
    let ctx = unsafe { api!(RedisModule_GetContextFromIO)(rdb) };
    super::ffi::log(ctx, c"warning", &format!("refusing to load {what}"));
}

// ---- callbacks, one set per type ----------------------------------------------

unsafe extern "C" fn rdb_load<T: Stored>(
    rdb: *mut raw::RedisModuleIO,
    encver: c_int,
) -> *mut c_void {
    guard::or(std::ptr::null_mut(), || {
        if encver != ENCODING_VERSION {
            log_io_error(rdb, &format!("{} encoding version {encver}", T::NAME));
            return std::ptr::null_mut();
        }
        let Some(bytes) = load_bytes(rdb) else {
            return std::ptr::null_mut();
        };
        match T::decode(&bytes) {
            Ok(v) => new_raw(v),
            Err(e) => {
                log_io_error(rdb, &format!("a corrupt {} value ({e:?})", T::NAME));
                std::ptr::null_mut()
            }
        }
    })
}

unsafe extern "C" fn rdb_save<T: Stored>(rdb: *mut raw::RedisModuleIO, value: *mut c_void) {
    guard::or((), || {
        if let Some(v) = unsafe { value.cast::<T>().as_ref() } {
            let (buf, n) = v.encode();
            save_bytes(rdb, &buf[..n]);
        }
    })
}

unsafe extern "C" fn aof_rewrite<T: Stored>(
    aof: *mut raw::RedisModuleIO,
    key: *mut raw::RedisModuleString,
    value: *mut c_void,
) {
    guard::or((), || {
        if let Some(v) = unsafe { value.cast::<T>().as_ref() } {
            let (buf, n) = v.encode();
            emit_apply(aof, key, &buf[..n]);
        }
    })
}

unsafe extern "C" fn mem_usage<T: Stored>(value: *const c_void) -> usize {
    unsafe { value.cast::<T>().as_ref() }.map_or(0, T::heap_size)
}

unsafe extern "C" fn digest<T: Stored>(md: *mut raw::RedisModuleDigest, value: *mut c_void) {
    guard::or((), || {
        if let Some(v) = unsafe { value.cast::<T>().as_ref() } {
            let (buf, n) = v.encode();
            digest_bytes(md, &buf[..n]);
        }
    })
}

unsafe extern "C" fn free<T: Stored>(value: *mut c_void) {
    if !value.is_null() {
        T::count().fetch_sub(1, Relaxed);
        drop(unsafe { Box::from_raw(value.cast::<T>()) });
    }
}

unsafe extern "C" fn copy<T: Stored>(
    _from: *mut raw::RedisModuleString,
    _to: *mut raw::RedisModuleString,
    value: *const c_void,
) -> *mut c_void {
    guard::or(std::ptr::null_mut(), || {
        match unsafe { value.cast::<T>().as_ref() } {
            Some(v) => new_raw(v.clone()),
            None => std::ptr::null_mut(),
        }
    })
}
