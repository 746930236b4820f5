//! The few raw Redis module API calls the commands use, wrapped once.
//!
//! The hot path talks to Redis through these directly (no argument
//! vectors, no string copies): arguments are borrowed byte slices, replies
//! are written as they are produced, and the key is opened exactly once.

use std::ffi::{CStr, c_int, c_void};
use std::ptr::NonNull;

use redis_module::raw;

pub type Ctx = *mut raw::RedisModuleCtx;

/// Calls a Redis API function pointer that Redis fills in at load time.
/// Every function used here exists on Redis 7.0; `RedisModule_Init` fills
/// them all before any command can run.
macro_rules! api {
    ($name:ident) => {{
        #[allow(unused_unsafe)]
        let f = unsafe { redis_module::raw::$name };
        match f {
            Some(f) => f,
            None => $crate::redis::ffi::unreachable_api(stringify!($name)),
        }
    }};
}
pub(crate) use api;

#[cold]
#[inline(never)]
pub fn unreachable_api(name: &str) -> ! {
    // Only reachable if the server lacks a 7.0 API; the panic guard turns
    // this into an error reply, never a crash.
    panic!("Redis module API {name} is not available on this server")
}

/// A command's arguments (`argv[0]` is the command name).
#[derive(Clone, Copy)]
pub struct Args {
    argv: *mut *mut raw::RedisModuleString,
    argc: usize,
}

impl Args {
    /// # Safety
    /// `argv` must point to `argc` valid strings for the command's duration.
    pub unsafe fn new(argv: *mut *mut raw::RedisModuleString, argc: c_int) -> Args {
        Args {
            argv,
            argc: usize::try_from(argc).unwrap_or(0),
        }
    }

    pub fn len(&self) -> usize {
        self.argc
    }

    pub fn is_empty(&self) -> bool {
        self.argc == 0
    }

    /// The raw string at `i` (caller checks `i < len`).
    pub fn raw(&self, i: usize) -> *mut raw::RedisModuleString {
        assert!(i < self.argc);
        unsafe { *self.argv.add(i) }
    }

    /// The bytes of argument `i`, borrowed from Redis.
    pub fn bytes(&self, i: usize) -> &[u8] {
        string_bytes(self.raw(i))
    }
}

/// The bytes of a Redis string.
pub fn string_bytes<'a>(s: *const raw::RedisModuleString) -> &'a [u8] {
    let mut len = 0usize;
    let ptr = unsafe { api!(RedisModule_StringPtrLen)(s, &mut len) };
    if ptr.is_null() || len == 0 {
        return &[];
    }
    unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) }
}

/// Context flags (MULTI, Lua, replicated, RESP3, …).
pub fn context_flags(ctx: Ctx) -> u32 {
    let f = unsafe { api!(RedisModule_GetContextFlags)(ctx) };
    u32::try_from(f).unwrap_or(0)
}

pub fn is_resp3(ctx: Ctx) -> bool {
    context_flags(ctx) & raw::REDISMODULE_CTX_FLAGS_RESP3 != 0
}

/// True when the caller may not be blocked (MULTI, Lua, replicated).
pub fn deny_blocking(ctx: Ctx) -> bool {
    let f = context_flags(ctx);
    f & (raw::REDISMODULE_CTX_FLAGS_MULTI
        | raw::REDISMODULE_CTX_FLAGS_LUA
        | raw::REDISMODULE_CTX_FLAGS_DENY_BLOCKING
        | raw::REDISMODULE_CTX_FLAGS_REPLICATED
        | raw::REDISMODULE_CTX_FLAGS_LOADING)
        != 0
}

pub fn reply_array(ctx: Ctx, len: usize) {
    unsafe { api!(RedisModule_ReplyWithArray)(ctx, len as _) };
}

pub fn reply_map(ctx: Ctx, pairs: usize) {
    // RESP3 map; Redis writes a flat array of 2×pairs on RESP2.
    unsafe { api!(RedisModule_ReplyWithMap)(ctx, pairs as _) };
}

pub fn reply_i64(ctx: Ctx, v: i64) {
    unsafe { api!(RedisModule_ReplyWithLongLong)(ctx, v) };
}

pub fn reply_i64s(ctx: Ctx, vs: &[i64]) {
    reply_array(ctx, vs.len());
    for &v in vs {
        reply_i64(ctx, v);
    }
}

pub fn reply_null(ctx: Ctx) {
    unsafe { api!(RedisModule_ReplyWithNull)(ctx) };
}

pub fn reply_simple(ctx: Ctx, s: &CStr) {
    unsafe { api!(RedisModule_ReplyWithSimpleString)(ctx, s.as_ptr()) };
}

pub fn reply_bulk(ctx: Ctx, s: &[u8]) {
    unsafe { api!(RedisModule_ReplyWithStringBuffer)(ctx, s.as_ptr().cast(), s.len()) };
}

/// Replies an error; `msg` starts with its code (`ERR …`, `WRONGTYPE …`).
pub fn reply_error(ctx: Ctx, msg: &str) {
    let mut bytes = Vec::with_capacity(msg.len() + 1);
    bytes.extend(msg.bytes().filter(|&b| b != 0 && b != b'\r' && b != b'\n'));
    bytes.push(0);
    unsafe { api!(RedisModule_ReplyWithError)(ctx, bytes.as_ptr().cast()) };
}

pub fn log(ctx: Ctx, level: &CStr, msg: &str) {
    let mut bytes = Vec::with_capacity(msg.len() + 1);
    bytes.extend(msg.bytes().filter(|&b| b != 0 && b != b'%'));
    bytes.push(0);
    unsafe { api!(RedisModule_Log)(ctx, level.as_ptr(), c"%s".as_ptr(), bytes.as_ptr()) };
}

/// An open key; closed on drop. Opened for reading only, a missing key
/// has no handle (Redis returns NULL) and holds nothing.
pub struct Key {
    ptr: *mut raw::RedisModuleKey,
}

/// What an open key holds.
pub enum Holds<T> {
    Nothing,
    Ours(NonNull<T>),
    Other,
}

impl Key {
    /// Opens `name` for reading, or for reading and writing.
    pub fn open(ctx: Ctx, name: *mut raw::RedisModuleString, write: bool) -> Key {
        let mode = if write {
            raw::REDISMODULE_READ | raw::REDISMODULE_WRITE
        } else {
            raw::REDISMODULE_READ
        };
        let p = unsafe { api!(RedisModule_OpenKey)(ctx, name, mode as c_int) };
        Key { ptr: p.cast() }
    }

    fn raw(&self) -> *mut raw::RedisModuleKey {
        self.ptr
    }

    /// What the key holds, given our type for `T`.
    pub fn holds<T>(&self, ty: *mut raw::RedisModuleType) -> Holds<T> {
        if self.ptr.is_null() {
            return Holds::Nothing;
        }
        let kt = unsafe { api!(RedisModule_KeyType)(self.raw()) };
        if kt as isize == raw::REDISMODULE_KEYTYPE_EMPTY {
            return Holds::Nothing;
        }
        if kt as isize != raw::REDISMODULE_KEYTYPE_MODULE
            || unsafe { api!(RedisModule_ModuleTypeGetType)(self.raw()) } != ty
        {
            return Holds::Other;
        }
        let v = unsafe { api!(RedisModule_ModuleTypeGetValue)(self.raw()) };
        match NonNull::new(v.cast::<T>()) {
            Some(p) => Holds::Ours(p),
            None => Holds::Other,
        }
    }

    /// Stores a new value (the key must be empty or hold our type).
    /// Returns false (and frees the value) if Redis refused it.
    pub fn set_value<T>(&self, ty: *mut raw::RedisModuleType, value: Box<T>) -> bool {
        let p = Box::into_raw(value).cast::<c_void>();
        let rc = unsafe { api!(RedisModule_ModuleTypeSetValue)(self.raw(), ty, p) };
        if rc != raw::REDISMODULE_OK as c_int {
            // Redis did not take ownership: free it ourselves.
            drop(unsafe { Box::from_raw(p.cast::<T>()) });
            return false;
        }
        true
    }

    /// Sets the absolute expiry in Unix milliseconds.
    pub fn set_expire_at_ms(&self, at_ms: i64) {
        match unsafe { raw::RedisModule_SetAbsExpire } {
            Some(f) => unsafe {
                f(self.raw(), at_ms);
            },
            None => {
                let now = crate::redis::clock::now().as_millis_floor_i64();
                unsafe {
                    api!(RedisModule_SetExpire)(self.raw(), at_ms.saturating_sub(now).max(1))
                };
            }
        }
    }

    /// The absolute expiry in Unix ms, or `None` without one.
    pub fn expire_at_ms(&self) -> Option<i64> {
        let ttl = unsafe { api!(RedisModule_GetExpire)(self.raw()) };
        if ttl < 0 {
            return None;
        }
        Some(
            crate::redis::clock::now()
                .as_millis_floor_i64()
                .saturating_add(ttl),
        )
    }

    pub fn delete(&self) {
        unsafe { api!(RedisModule_DeleteKey)(self.raw()) };
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        if !self.ptr.is_null() {
            unsafe { api!(RedisModule_CloseKey)(self.ptr) };
        }
    }
}

/// Propagates `cmd key payload expire_at_ms` to replicas and the AOF.
pub fn replicate_apply(
    ctx: Ctx,
    cmd: &CStr,
    key: *mut raw::RedisModuleString,
    payload: &[u8],
    expire_at_ms: i64,
) {
    unsafe {
        api!(RedisModule_Replicate)(
            ctx,
            cmd.as_ptr(),
            c"sbl".as_ptr(),
            key,
            payload.as_ptr(),
            payload.len(),
            expire_at_ms as std::ffi::c_longlong,
        )
    };
}

/// Tells Redis the key changed (WATCH, client-side caching). The module
/// sets `NO_IMPLICIT_SIGNAL_MODIFIED`, so only real writes signal: a
/// denied call, which opens its key for writing but changes nothing,
/// leaves a WATCH on that key intact.
pub fn signal_modified(ctx: Ctx, key: *mut raw::RedisModuleString) {
    unsafe { api!(RedisModule_SignalModifiedKey)(ctx, key) };
}

/// Fires a keyspace notification of class "module" (`d` in
/// notify-keyspace-events) for `key`.
pub fn notify(ctx: Ctx, event: &CStr, key: *mut raw::RedisModuleString) {
    unsafe {
        api!(RedisModule_NotifyKeyspaceEvent)(
            ctx,
            raw::REDISMODULE_NOTIFY_MODULE,
            event.as_ptr(),
            key,
        )
    };
}
