//! Module configs (the Redis 7 module config API): each config is a
//! static cell Redis reads and writes through the callbacks here (load
//! arguments, redis.conf, CONFIG SET/GET/REWRITE).

use std::ffi::{CStr, c_char, c_int, c_longlong, c_void};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering::Relaxed};

use redis_module::raw;

use super::{Ctx, OK};

/// A config's name, and where Redis puts a setter's error (both unused).
type Name = *const c_char;
type ErrOut = *mut *mut raw::RedisModuleString;

fn flags(immutable: bool) -> u32 {
    if immutable {
        raw::REDISMODULE_CONFIG_IMMUTABLE
    } else {
        raw::REDISMODULE_CONFIG_DEFAULT
    }
}

fn data<T>(cell: &'static T) -> *mut c_void {
    std::ptr::from_ref(cell).cast_mut().cast()
}

/// Registers a numeric config in `min..=max` backed by `cell` (its default:
/// the cell's value now); false if the server lacks module configs or
/// refused.
pub fn register_numeric(
    ctx: Ctx<'_>,
    name: &'static CStr,
    cell: &'static AtomicI64,
    (min, max): (i64, i64),
    immutable: bool,
) -> bool {
    let Some(register) = optional_api!(RedisModule_RegisterNumericConfig) else {
        return false;
    };
    let default = cell.load(Relaxed);
    // SAFETY: a valid context during load; a static name, cell and
    // callbacks; Redis hands `data(cell)` back to them.
    unsafe {
        register(
            ctx.raw(),
            name.as_ptr(),
            default,
            flags(immutable),
            min,
            max,
            Some(get_numeric),
            Some(set_numeric),
            None,
            data(cell),
        ) == OK
    }
}

/// Registers a yes/no config backed by `cell`.
pub fn register_flag(
    ctx: Ctx<'_>,
    name: &'static CStr,
    cell: &'static AtomicBool,
    immutable: bool,
) -> bool {
    let Some(register) = optional_api!(RedisModule_RegisterBoolConfig) else {
        return false;
    };
    let default = c_int::from(cell.load(Relaxed));
    // SAFETY: as in `register_numeric`.
    unsafe {
        register(
            ctx.raw(),
            name.as_ptr(),
            default,
            flags(immutable),
            Some(get_flag),
            Some(set_flag),
            None,
            data(cell),
        ) == OK
    }
}

/// Applies config values from redis.conf and the command line.
pub fn load_configs(ctx: Ctx<'_>) -> bool {
    match optional_api!(RedisModule_LoadConfigs) {
        // SAFETY: a valid context during load, after the configs are registered.
        Some(load) => unsafe { load(ctx.raw()) == OK },
        None => true,
    }
}

/// The static cell a config callback's private data points to.
///
/// # Safety
/// `privdata` is NULL or the pointer registered with the config: one of
/// the static cells above, of type `T`.
unsafe fn cell<T>(privdata: *mut c_void) -> Option<&'static T> {
    // SAFETY: per the contract above.
    unsafe { privdata.cast::<T>().as_ref() }
}

unsafe extern "C" fn get_numeric(_: Name, privdata: *mut c_void) -> c_longlong {
    // SAFETY: Redis passes back the AtomicI64 registered with this config.
    unsafe { cell::<AtomicI64>(privdata) }.map_or(0, |c| c.load(Relaxed))
}

unsafe extern "C" fn set_numeric(
    _: Name,
    v: c_longlong,
    privdata: *mut c_void,
    _: ErrOut,
) -> c_int {
    // SAFETY: as in `get_numeric`; Redis checked the value's range.
    if let Some(c) = unsafe { cell::<AtomicI64>(privdata) } {
        c.store(v, Relaxed);
    }
    OK
}

unsafe extern "C" fn get_flag(_: Name, privdata: *mut c_void) -> c_int {
    // SAFETY: Redis passes back the AtomicBool registered with this config.
    c_int::from(unsafe { cell::<AtomicBool>(privdata) }.is_some_and(|c| c.load(Relaxed)))
}

unsafe extern "C" fn set_flag(_: Name, v: c_int, privdata: *mut c_void, _: ErrOut) -> c_int {
    // SAFETY: as in `get_flag`.
    if let Some(c) = unsafe { cell::<AtomicBool>(privdata) } {
        c.store(v != 0, Relaxed);
    }
    OK
}
