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

use std::sync::atomic::Ordering::Relaxed;

use super::ffi::{Key, api};
use super::guard;
use super::stats::KEYS;

/// Encoding version registered with Redis for both types. Version 1 is the
/// only one written so far; the codec carries its own version byte too.
pub const ENCODING_VERSION: i32 = 1;

const fn methods(
    rdb_load: raw::RedisModuleTypeLoadFunc,
    rdb_save: raw::RedisModuleTypeSaveFunc,
    aof_rewrite: raw::RedisModuleTypeRewriteFunc,
    mem_usage: raw::RedisModuleTypeMemUsageFunc,
    digest: raw::RedisModuleTypeDigestFunc,
    free: raw::RedisModuleTypeFreeFunc,
    copy: raw::RedisModuleTypeCopyFunc,
) -> raw::RedisModuleTypeMethods {
    raw::RedisModuleTypeMethods {
        // Version 4 is what Redis 7.0 knows; newer servers accept it too.
        version: 4,
        rdb_load,
        rdb_save,
        aof_rewrite,
        mem_usage,
        digest,
        free,
        aux_load: None,
        aux_save: None,
        aux_save_triggers: 0,
        free_effort: None,
        unlink: None,
        copy,
        defrag: None,
        mem_usage2: None,
        free_effort2: None,
        unlink2: None,
        copy2: None,
        aux_save2: None,
    }
}

pub static BUCKET_TYPE: RedisType = RedisType::new(
    "rl-bucket",
    ENCODING_VERSION,
    methods(
        Some(bucket_rdb_load),
        Some(bucket_rdb_save),
        Some(bucket_aof_rewrite),
        Some(bucket_mem_usage),
        Some(bucket_digest),
        Some(bucket_free),
        Some(bucket_copy),
    ),
);

pub static PERMIT_TYPE: RedisType = RedisType::new(
    "rl-permit",
    ENCODING_VERSION,
    methods(
        Some(permit_rdb_load),
        Some(permit_rdb_save),
        Some(permit_aof_rewrite),
        Some(permit_mem_usage),
        Some(permit_digest),
        Some(permit_free),
        Some(permit_copy),
    ),
);

/// The registered type pointers (valid after load).
pub fn bucket_type() -> *mut raw::RedisModuleType {
    *BUCKET_TYPE.raw_type.borrow()
}
pub fn permit_type() -> *mut raw::RedisModuleType {
    *PERMIT_TYPE.raw_type.borrow()
}

/// Stores a new limiter at an empty key (counted in INFO).
pub fn set_bucket(key: &Key, v: Limiter) {
    if key.set_value(bucket_type(), Box::new(v)) {
        KEYS.buckets.fetch_add(1, Relaxed);
    }
}

/// Stores a new permit state at an empty key (counted in INFO).
pub fn set_permit(key: &Key, v: PermitState) {
    if key.set_value(permit_type(), Box::new(v)) {
        KEYS.permits.fetch_add(1, Relaxed);
    }
}

fn new_bucket(v: Limiter) -> *mut c_void {
    KEYS.buckets.fetch_add(1, Relaxed);
    Box::into_raw(Box::new(v)).cast()
}

fn new_permit(v: PermitState) -> *mut c_void {
    KEYS.permits.fetch_add(1, Relaxed);
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

/// Encodes a limiter into a stack buffer.
pub fn encode_limiter(v: &Limiter) -> ([u8; MAX_LIMITER_LEN], usize) {
    let mut buf = [0u8; MAX_LIMITER_LEN];
    let n = codec::encode_limiter(v, &mut buf);
    (buf, n)
}

// ---- rl-bucket ---------------------------------------------------------------

unsafe extern "C" fn bucket_rdb_load(rdb: *mut raw::RedisModuleIO, encver: c_int) -> *mut c_void {
    guard::or(std::ptr::null_mut(), || {
        if encver != ENCODING_VERSION {
            log_io_error(rdb, &format!("rl-bucket encoding version {encver}"));
            return std::ptr::null_mut();
        }
        let Some(bytes) = load_bytes(rdb) else {
            return std::ptr::null_mut();
        };
        match codec::decode_limiter(&bytes) {
            Ok(v) => new_bucket(v),
            Err(e) => {
                log_io_error(rdb, &format!("a corrupt rl-bucket value ({e:?})"));
                std::ptr::null_mut()
            }
        }
    })
}

unsafe extern "C" fn bucket_rdb_save(rdb: *mut raw::RedisModuleIO, value: *mut c_void) {
    guard::or((), || {
        if let Some(v) = unsafe { value.cast::<Limiter>().as_ref() } {
            let (buf, n) = encode_limiter(v);
            save_bytes(rdb, &buf[..n]);
        }
    })
}

unsafe extern "C" fn bucket_aof_rewrite(
    aof: *mut raw::RedisModuleIO,
    key: *mut raw::RedisModuleString,
    value: *mut c_void,
) {
    guard::or((), || {
        if let Some(v) = unsafe { value.cast::<Limiter>().as_ref() } {
            let (buf, n) = encode_limiter(v);
            emit_apply(aof, key, &buf[..n]);
        }
    })
}

unsafe extern "C" fn bucket_mem_usage(value: *const c_void) -> usize {
    let knobs = unsafe { value.cast::<Limiter>().as_ref() }
        .and_then(|v| v.knobs.as_ref())
        .map_or(0, |_| size_of::<Knobs>());
    size_of::<Limiter>() + knobs
}

unsafe extern "C" fn bucket_digest(md: *mut raw::RedisModuleDigest, value: *mut c_void) {
    guard::or((), || {
        if let Some(v) = unsafe { value.cast::<Limiter>().as_ref() } {
            let (buf, n) = encode_limiter(v);
            digest_bytes(md, &buf[..n]);
        }
    })
}

unsafe extern "C" fn bucket_free(value: *mut c_void) {
    if !value.is_null() {
        KEYS.buckets.fetch_sub(1, Relaxed);
        drop(unsafe { Box::from_raw(value.cast::<Limiter>()) });
    }
}

unsafe extern "C" fn bucket_copy(
    _from: *mut raw::RedisModuleString,
    _to: *mut raw::RedisModuleString,
    value: *const c_void,
) -> *mut c_void {
    guard::or(std::ptr::null_mut(), || {
        match unsafe { value.cast::<Limiter>().as_ref() } {
            Some(v) => new_bucket(v.clone()),
            None => std::ptr::null_mut(),
        }
    })
}

// ---- rl-permit ---------------------------------------------------------------

unsafe extern "C" fn permit_rdb_load(rdb: *mut raw::RedisModuleIO, encver: c_int) -> *mut c_void {
    guard::or(std::ptr::null_mut(), || {
        if encver != ENCODING_VERSION {
            log_io_error(rdb, &format!("rl-permit encoding version {encver}"));
            return std::ptr::null_mut();
        }
        let Some(bytes) = load_bytes(rdb) else {
            return std::ptr::null_mut();
        };
        match codec::decode_permit(&bytes) {
            Ok(v) => new_permit(v),
            Err(e) => {
                log_io_error(rdb, &format!("a corrupt rl-permit value ({e:?})"));
                std::ptr::null_mut()
            }
        }
    })
}

unsafe extern "C" fn permit_rdb_save(rdb: *mut raw::RedisModuleIO, value: *mut c_void) {
    guard::or((), || {
        if let Some(v) = unsafe { value.cast::<PermitState>().as_ref() } {
            save_bytes(rdb, &codec::encode_permit(v));
        }
    })
}

unsafe extern "C" fn permit_aof_rewrite(
    aof: *mut raw::RedisModuleIO,
    key: *mut raw::RedisModuleString,
    value: *mut c_void,
) {
    guard::or((), || {
        if let Some(v) = unsafe { value.cast::<PermitState>().as_ref() } {
            emit_apply(aof, key, &codec::encode_permit(v));
        }
    })
}

unsafe extern "C" fn permit_mem_usage(_value: *const c_void) -> usize {
    size_of::<PermitState>()
}

unsafe extern "C" fn permit_digest(md: *mut raw::RedisModuleDigest, value: *mut c_void) {
    guard::or((), || {
        if let Some(v) = unsafe { value.cast::<PermitState>().as_ref() } {
            digest_bytes(md, &codec::encode_permit(v));
        }
    })
}

unsafe extern "C" fn permit_free(value: *mut c_void) {
    if !value.is_null() {
        KEYS.permits.fetch_sub(1, Relaxed);
        drop(unsafe { Box::from_raw(value.cast::<PermitState>()) });
    }
}

unsafe extern "C" fn permit_copy(
    _from: *mut raw::RedisModuleString,
    _to: *mut raw::RedisModuleString,
    value: *const c_void,
) -> *mut c_void {
    guard::or(std::ptr::null_mut(), || {
        match unsafe { value.cast::<PermitState>().as_ref() } {
            Some(v) => new_permit(*v),
            None => std::ptr::null_mut(),
        }
    })
}
