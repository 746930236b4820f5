//! Module configs (Redis 7 module config API).
//!
//! | config                           | default | meaning |
//! |----------------------------------|---------|---------|
//! | `throttle.knobs-ttl`             | 604800  | seconds knobs live after THROTTLE.SET or a THROTTLE using them |
//! | `throttle.permit-grace-percent`  | 10      | PERMIT's default GRACE, in % of the interval (rounded up to ms) |
//!
//! Settable as `--loadmodule <so> knobs-ttl 3600 permit-grace-percent 20`,
//! in redis.conf (`throttle.knobs-ttl 3600`), and with CONFIG SET/GET.

use std::ffi::{CStr, c_int, c_longlong, c_void};
use std::sync::atomic::{AtomicI64, Ordering};

use redis_module::raw;
use throttle_core::Micros;

use super::ffi::{self, Ctx, api};

pub static KNOBS_TTL_S: AtomicI64 = AtomicI64::new(604_800);
pub static GRACE_PERCENT: AtomicI64 = AtomicI64::new(10);

struct Numeric {
    name: &'static CStr,
    short: &'static str,
    cell: &'static AtomicI64,
    min: i64,
    max: i64,
}

const CONFIGS: [Numeric; 2] = [
    Numeric {
        name: c"knobs-ttl",
        short: "knobs-ttl",
        cell: &KNOBS_TTL_S,
        min: 1,
        max: 10 * 365 * 24 * 3600,
    },
    Numeric {
        name: c"permit-grace-percent",
        short: "permit-grace-percent",
        cell: &GRACE_PERCENT,
        min: 0,
        max: 1000,
    },
];

/// The knobs TTL currently configured.
pub fn knobs_ttl() -> Micros {
    Micros(
        KNOBS_TTL_S
            .load(Ordering::Relaxed)
            .unsigned_abs()
            .saturating_mul(1_000_000),
    )
}

/// PERMIT's default grace for `interval`: the configured percentage,
/// rounded up to whole milliseconds.
pub fn default_grace(interval: Micros) -> Micros {
    let pct = GRACE_PERCENT.load(Ordering::Relaxed).unsigned_abs();
    let us = interval.0.saturating_mul(pct).div_ceil(100);
    Micros::from_millis(us.div_ceil(1000))
}

unsafe extern "C" fn get(_name: *const std::ffi::c_char, privdata: *mut c_void) -> c_longlong {
    match unsafe { privdata.cast::<AtomicI64>().as_ref() } {
        Some(cell) => cell.load(Ordering::Relaxed),
        None => 0,
    }
}

unsafe extern "C" fn set(
    _name: *const std::ffi::c_char,
    val: c_longlong,
    privdata: *mut c_void,
    _err: *mut *mut raw::RedisModuleString,
) -> c_int {
    if let Some(cell) = unsafe { privdata.cast::<AtomicI64>().as_ref() } {
        cell.store(val, Ordering::Relaxed);
    }
    raw::REDISMODULE_OK as c_int
}

/// Registers the configs, taking defaults from `name value` pairs in the
/// module's load arguments. Returns an error message for bad arguments.
pub fn register(ctx: Ctx, load_args: &[&[u8]]) -> Result<(), String> {
    if load_args.len() % 2 != 0 {
        return Err("module arguments must be name/value pairs".into());
    }
    for pair in load_args.chunks(2) {
        let (name, value) = (pair[0], pair[1]);
        let cfg = CONFIGS
            .iter()
            .find(|c| name.eq_ignore_ascii_case(c.short.as_bytes()))
            .ok_or_else(|| {
                format!(
                    "unknown module argument '{}'",
                    String::from_utf8_lossy(name)
                )
            })?;
        let v: i64 = std::str::from_utf8(value)
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|v| (cfg.min..=cfg.max).contains(v))
            .ok_or_else(|| {
                format!(
                    "{} must be an integer in {}..={}",
                    cfg.short, cfg.min, cfg.max
                )
            })?;
        cfg.cell.store(v, Ordering::Relaxed);
    }
    let Some(register) = (unsafe { raw::RedisModule_RegisterNumericConfig }) else {
        ffi::log(
            ctx,
            c"notice",
            "module configs need Redis 7.0+; using load arguments only",
        );
        return Ok(());
    };
    for c in &CONFIGS {
        let rc = unsafe {
            register(
                ctx,
                c.name.as_ptr(),
                c.cell.load(Ordering::Relaxed),
                0,
                c.min,
                c.max,
                Some(get),
                Some(set),
                None,
                std::ptr::from_ref(c.cell).cast_mut().cast(),
            )
        };
        if rc != raw::REDISMODULE_OK as c_int {
            return Err(format!("could not register config {}", c.short));
        }
    }
    if unsafe { api!(RedisModule_LoadConfigs)(ctx) } != raw::REDISMODULE_OK as c_int {
        return Err("could not load module configs".into());
    }
    Ok(())
}
