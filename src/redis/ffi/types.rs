//! The module's data types: registration, and the callbacks Redis calls to
//! persist, copy, measure and free their values.
//!
//! A type is any state that implements [`DataType`]: its codec (the core
//! crate's `Codec`: one string per value, every layout ever written
//! decodes), its 9-character name, its INFO counter. Persistence is one
//! string per value: RDB save/load (and so DEBUG RELOAD, DUMP/RESTORE,
//! MIGRATE), AOF rewrite (as `<apply command> key payload`; Redis adds the
//! PEXPIREAT), digest (DEBUG DIGEST), memory usage, copy and free. A
//! corrupt or truncated payload fails the load with a log line: it never
//! crashes the server.
//!
//! Soundness: a value stored under a registered type is always a `Box<T>`
//! of the `T` that registered it: each type has its own typed
//! [`TypeEntry<T>`], which holds its Redis type, and a key is read as a
//! `T` only when it holds the Redis type in `T`'s entry.

use std::ffi::{CStr, CString, c_int, c_void};
use std::marker::PhantomData;
use std::sync::OnceLock;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use redis_module::raw;
use throttle_core::State;

use super::guard;
use super::{Ctx, Lent, RStr, log_raw};

/// A state stored under one of the module's data types: the core's
/// `State` (its codec, its size), and where its type is registered.
pub trait DataType: State + Send + 'static {
    fn entry() -> &'static TypeEntry<Self>;
}

/// A registered data type: its name, its INFO counter, and the Redis type
/// once registered. Typed: only a `T` is ever read or written through a
/// `TypeEntry<T>`.
pub struct TypeEntry<T> {
    /// The Redis type name: exactly 9 characters.
    pub name: &'static str,
    /// Live values of this type (INFO).
    pub count: &'static AtomicU64,
    registered: OnceLock<usize>,
    _of: PhantomData<fn() -> T>,
}

impl<T> TypeEntry<T> {
    pub const fn new(name: &'static str, count: &'static AtomicU64) -> TypeEntry<T> {
        TypeEntry {
            name,
            count,
            registered: OnceLock::new(),
            _of: PhantomData,
        }
    }

    /// The Redis type, once registered.
    pub(super) fn redis_type(&self) -> Option<*mut raw::RedisModuleType> {
        self.registered
            .get()
            .map(|&ty| ty as *mut raw::RedisModuleType)
    }
}

/// The command an AOF rewrite emits for each value (set at registration).
static AOF_COMMAND: OnceLock<&'static CStr> = OnceLock::new();

/// The encoding version every type registers; values of every earlier one
/// load (the payload names its own layout).
static ENCODING_VERSION: OnceLock<i32> = OnceLock::new();

/// Registers `T` (during OnLoad). `version` is the RDB encoding version
/// registered with Redis (values of versions `1..=version` load);
/// `aof_command key payload` is what an AOF rewrite emits for a value.
pub fn register<T: DataType>(
    ctx: Ctx<'_>,
    version: i32,
    aof_command: &'static CStr,
) -> Result<(), String> {
    let e = T::entry();
    let name = CString::new(e.name).map_err(|_| format!("bad type name {}", e.name))?;
    if e.name.len() != 9 {
        return Err(format!("type name {} is not 9 characters", e.name));
    }
    let _ = AOF_COMMAND.set(aof_command);
    let _ = ENCODING_VERSION.set(version);
    let mut methods = methods::<T>();
    // SAFETY: a valid context during OnLoad (the only time Redis accepts
    // it); Redis copies the methods struct and the name.
    let ty = unsafe {
        raw::RedisModule_CreateDataType.ok_or("no CreateDataType")?(
            ctx.raw(),
            name.as_ptr(),
            version,
            &mut methods,
        )
    };
    if ty.is_null() {
        return Err(format!("Redis refused the data type {}", e.name));
    }
    e.registered
        .set(ty as usize)
        .map_err(|_| format!("data type {} registered twice", e.name))
}

fn methods<T: DataType>() -> raw::RedisModuleTypeMethods {
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
pub(super) fn into_raw<T: DataType>(v: Box<T>) -> *mut c_void {
    T::entry().count.fetch_add(1, Relaxed);
    Box::into_raw(v).cast()
}

/// Borrows the value behind a pointer Redis hands to a type callback.
///
/// # Safety
/// `value` is NULL or a value of `T`'s type (see the module docs), alive
/// for the duration of the callback.
unsafe fn value_ref<'a, T: DataType>(value: *const c_void) -> Option<&'a T> {
    // SAFETY: per the contract above.
    unsafe { value.cast::<T>().as_ref() }
}

/// An RDB or AOF stream handed to a type callback.
type Io<'a> = Lent<'a, raw::RedisModuleIO>;

impl Io<'_> {
    /// Reads one string and hands it to `f` in place (no copy); `None` on
    /// an I/O error (with `HANDLE_IO_ERRORS` set, a short read returns
    /// instead of aborting the server).
    fn load_with<R>(&self, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let mut len = 0usize;
        // SAFETY: a valid IO; Redis returns a buffer we must free.
        let p = unsafe { api!(RedisModule_LoadStringBuffer)(self.raw(), &mut len) };
        if p.is_null() {
            return None;
        }
        // SAFETY: as above.
        let failed = unsafe { api!(RedisModule_IsIOError)(self.raw()) } != 0;
        let out = (!failed).then(|| {
            // SAFETY: `p` is valid for `len` bytes until freed below, and
            // the slice does not outlive this closure.
            f(unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len) })
        });
        // SAFETY: the buffer LoadStringBuffer allocated, freed once.
        unsafe { api!(RedisModule_Free)(p.cast()) };
        out
    }

    fn save_bytes(&self, bytes: &[u8]) {
        // SAFETY: a valid IO; Redis copies the bytes.
        unsafe {
            api!(RedisModule_SaveStringBuffer)(self.raw(), bytes.as_ptr().cast(), bytes.len())
        };
    }

    /// Writes `cmd key payload` to a rewritten AOF (`aof_rewrite`).
    fn emit_aof(&self, cmd: &CStr, key: RStr<'_>, payload: &[u8]) {
        let (c, k, p, n) = (cmd.as_ptr(), key.raw(), payload.as_ptr(), payload.len());
        // SAFETY: a valid AOF IO and the key Redis passed to aof_rewrite;
        // the format matches its arguments.
        unsafe { api!(RedisModule_EmitAOF)(self.raw(), c, c"sb".as_ptr(), k, p, n) };
    }

    fn log(&self, level: &CStr, msg: &str) {
        // SAFETY: a valid IO; the context may be NULL, which Log accepts.
        let ctx = unsafe { api!(RedisModule_GetContextFromIO)(self.raw()) };
        log_raw(ctx, level, msg);
    }
}

unsafe extern "C" fn rdb_load<T: DataType>(
    rdb: *mut raw::RedisModuleIO,
    encver: c_int,
) -> *mut c_void {
    guard::or(std::ptr::null_mut(), "rdb_load", || {
        // SAFETY: the IO Redis passed to this callback.
        let Some(io) = (unsafe { Io::from_raw(rdb) }) else {
            return std::ptr::null_mut();
        };
        let newest = ENCODING_VERSION.get().copied().unwrap_or(1);
        if !(1..=newest).contains(&encver) {
            io.log(
                c"warning",
                &format!(
                    "refusing to load {} encoding version {encver}",
                    T::entry().name
                ),
            );
            return std::ptr::null_mut();
        }
        let Some(decoded) = io.load_with(T::decode) else {
            return std::ptr::null_mut();
        };
        match decoded {
            Ok(v) => into_raw(Box::new(v)),
            Err(e) => {
                io.log(
                    c"warning",
                    &format!("refusing to load a corrupt {} value ({e})", T::entry().name),
                );
                std::ptr::null_mut()
            }
        }
    })
}

unsafe extern "C" fn rdb_save<T: DataType>(rdb: *mut raw::RedisModuleIO, value: *mut c_void) {
    guard::or((), "rdb_save", || {
        // SAFETY: the IO and value Redis passed to this callback.
        if let (Some(io), Some(v)) = unsafe { (Io::from_raw(rdb), value_ref::<T>(value)) } {
            io.save_bytes(v.encode().as_bytes());
        }
    })
}

unsafe extern "C" fn aof_rewrite<T: DataType>(
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
        if let (Some(io), Some(key), Some(v), Some(cmd)) = (io, key, v, AOF_COMMAND.get()) {
            io.emit_aof(cmd, key, v.encode().as_bytes());
        }
    })
}

unsafe extern "C" fn mem_usage<T: DataType>(value: *const c_void) -> usize {
    guard::or(0, "mem_usage", || {
        // SAFETY: the value Redis passed to this callback.
        let v = unsafe { value_ref::<T>(value) };
        v.map_or(0, T::heap_size)
    })
}

unsafe extern "C" fn digest<T: DataType>(md: *mut raw::RedisModuleDigest, value: *mut c_void) {
    guard::or((), "digest", || {
        // SAFETY: the value and digest Redis passed to this callback.
        if let Some(v) = unsafe { value_ref::<T>(value) } {
            let e = v.encode();
            let bytes = e.as_bytes();
            // SAFETY: the digest Redis passed to this callback; Redis
            // copies the bytes.
            unsafe {
                api!(RedisModule_DigestAddStringBuffer)(md, bytes.as_ptr().cast(), bytes.len());
                api!(RedisModule_DigestEndSequence)(md);
            }
        }
    })
}

unsafe extern "C" fn free<T: DataType>(value: *mut c_void) {
    if !value.is_null() {
        T::entry().count.fetch_sub(1, Relaxed);
        // SAFETY: Redis frees each value once, and every value of T's type
        // is a Box<T> (see the module docs).
        drop(unsafe { Box::from_raw(value.cast::<T>()) });
    }
}

unsafe extern "C" fn copy<T: DataType>(
    _from: *mut raw::RedisModuleString,
    _to: *mut raw::RedisModuleString,
    value: *const c_void,
) -> *mut c_void {
    guard::or(std::ptr::null_mut(), "copy", || {
        // SAFETY: the value Redis passed to this callback.
        match unsafe { value_ref::<T>(value) } {
            Some(v) => into_raw(Box::new(v.clone())),
            None => std::ptr::null_mut(),
        }
    })
}
