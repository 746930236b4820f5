//! Module configs (Redis 7 module config API), all in one table.
//!
//! | config | default | meaning |
//! |---|---|---|
//! | `throttle.knobs-ttl` | 604800 | seconds knobs live after THROTTLE.SET or a THROTTLE using them |
//! | `throttle.permit-grace-percent` | 10 | PERMIT's default GRACE, in % of the interval (rounded up to ms) |
//! | `throttle.wait-tolerance-ms` | 10 | how late a held client may be released and still be told "go" |
//! | `throttle.all-max-limits` | 64 | most limits one THROTTLE.ALL may check |
//! | `throttle.apply-from-clients` | no | accept THROTTLE.APPLY from ordinary clients (tools replaying an AOF) |
//! | `throttle.test-clock` | no | accept THROTTLE.CLOCK (load time only) |
//!
//! Settable as `--loadmodule <so> knobs-ttl 3600 test-clock yes`, in
//! redis.conf (`throttle.knobs-ttl 3600`), and (but for test-clock) with
//! CONFIG SET/GET. Unknown load arguments and bad values fail the load
//! with a log line, rather than being ignored. (The redis-module crate has
//! config glue too; it ignores unknown load arguments and reads any bool
//! but "yes" as "no", so the module keeps this small table of its own.)

use std::ffi::{CStr, c_char, c_int, c_longlong, c_void};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering::Relaxed};

use redis_module::raw;
use throttle_core::Micros;
use throttle_core::limiter::{DEFAULT_KNOBS_TTL, MAX_KNOBS_TTL};
use throttle_core::permit::PermitRule;

use super::ffi::{self, Ctx};

static KNOBS_TTL_S: AtomicI64 = AtomicI64::new(secs(DEFAULT_KNOBS_TTL));
static GRACE_PERCENT: AtomicI64 = AtomicI64::new(10);
static WAIT_TOLERANCE_MS: AtomicI64 = AtomicI64::new(10);
static ALL_MAX_LIMITS: AtomicI64 = AtomicI64::new(64);
static APPLY_FROM_CLIENTS: AtomicBool = AtomicBool::new(false);
static TEST_CLOCK: AtomicBool = AtomicBool::new(false);

const fn secs(m: Micros) -> i64 {
    (m.0 / 1_000_000) as i64
}

struct Numeric {
    name: &'static CStr,
    cell: &'static AtomicI64,
    min: i64,
    max: i64,
}

struct Flag {
    name: &'static CStr,
    cell: &'static AtomicBool,
    /// Load time only (CONFIG SET refuses it).
    immutable: bool,
}

const NUMERIC: [Numeric; 4] = [
    Numeric {
        name: c"knobs-ttl",
        cell: &KNOBS_TTL_S,
        min: 1,
        max: secs(MAX_KNOBS_TTL),
    },
    Numeric {
        name: c"permit-grace-percent",
        cell: &GRACE_PERCENT,
        min: 0,
        max: 1000,
    },
    Numeric {
        name: c"wait-tolerance-ms",
        cell: &WAIT_TOLERANCE_MS,
        min: 0,
        max: 60_000,
    },
    Numeric {
        name: c"all-max-limits",
        cell: &ALL_MAX_LIMITS,
        min: 1,
        max: 1024,
    },
];

const FLAGS: [Flag; 2] = [
    Flag {
        name: c"apply-from-clients",
        cell: &APPLY_FROM_CLIENTS,
        immutable: false,
    },
    Flag {
        name: c"test-clock",
        cell: &TEST_CLOCK,
        immutable: true,
    },
];

/// The knobs TTL currently configured.
pub fn knobs_ttl() -> Micros {
    Micros::from_secs(KNOBS_TTL_S.load(Relaxed).unsigned_abs())
}

/// PERMIT's default grace for `interval`.
pub fn default_grace(interval: Micros) -> Micros {
    PermitRule::default_grace(interval, GRACE_PERCENT.load(Relaxed).unsigned_abs())
}

/// How late a held client may be released and still be told "go".
pub fn wait_tolerance() -> std::time::Duration {
    std::time::Duration::from_millis(WAIT_TOLERANCE_MS.load(Relaxed).unsigned_abs())
}

/// Most limits one THROTTLE.ALL may check.
pub fn all_max_limits() -> i64 {
    ALL_MAX_LIMITS.load(Relaxed)
}

/// Whether ordinary clients may call THROTTLE.APPLY.
pub fn apply_from_clients() -> bool {
    APPLY_FROM_CLIENTS.load(Relaxed)
}

/// Whether THROTTLE.CLOCK is enabled.
pub fn test_clock() -> bool {
    TEST_CLOCK.load(Relaxed)
}

unsafe extern "C" fn get_numeric(_name: *const c_char, privdata: *mut c_void) -> c_longlong {
    // SAFETY: Redis passes back the privdata registered with this config:
    // a pointer to one of the static AtomicI64 cells above.
    unsafe { privdata.cast::<AtomicI64>().as_ref() }.map_or(0, |c| c.load(Relaxed))
}

unsafe extern "C" fn set_numeric(
    _name: *const c_char,
    val: c_longlong,
    privdata: *mut c_void,
    _err: *mut *mut raw::RedisModuleString,
) -> c_int {
    // SAFETY: as in `get_numeric`; Redis checked the value's range.
    if let Some(cell) = unsafe { privdata.cast::<AtomicI64>().as_ref() } {
        cell.store(val, Relaxed);
    }
    raw::REDISMODULE_OK as c_int
}

unsafe extern "C" fn get_flag(_name: *const c_char, privdata: *mut c_void) -> c_int {
    // SAFETY: Redis passes back the privdata registered with this config:
    // a pointer to one of the static AtomicBool cells above.
    c_int::from(unsafe { privdata.cast::<AtomicBool>().as_ref() }.is_some_and(|c| c.load(Relaxed)))
}

unsafe extern "C" fn set_flag(
    _name: *const c_char,
    val: c_int,
    privdata: *mut c_void,
    _err: *mut *mut raw::RedisModuleString,
) -> c_int {
    // SAFETY: as in `get_flag`.
    if let Some(cell) = unsafe { privdata.cast::<AtomicBool>().as_ref() } {
        cell.store(val != 0, Relaxed);
    }
    raw::REDISMODULE_OK as c_int
}

/// Applies `name value` load arguments to the cells.
fn apply_load_args(load_args: &[&[u8]]) -> Result<(), String> {
    if load_args.len() % 2 != 0 {
        return Err("module arguments must be name/value pairs".into());
    }
    for pair in load_args.chunks(2) {
        let [name, value] = pair else { continue };
        let named = |c: &CStr| name.eq_ignore_ascii_case(c.to_bytes());
        let text = String::from_utf8_lossy(value);
        if let Some(cfg) = NUMERIC.iter().find(|c| named(c.name)) {
            let v: i64 = text
                .parse()
                .ok()
                .filter(|v| (cfg.min..=cfg.max).contains(v))
                .ok_or_else(|| {
                    format!(
                        "{} must be an integer in {}..={}",
                        cfg.name.to_string_lossy(),
                        cfg.min,
                        cfg.max
                    )
                })?;
            cfg.cell.store(v, Relaxed);
        } else if let Some(flag) = FLAGS.iter().find(|c| named(c.name)) {
            let v = match text.to_ascii_lowercase().as_str() {
                "yes" => true,
                "no" => false,
                _ => return Err(format!("{} must be yes or no", flag.name.to_string_lossy())),
            };
            flag.cell.store(v, Relaxed);
        } else {
            return Err(format!(
                "unknown module argument '{}'",
                String::from_utf8_lossy(name)
            ));
        }
    }
    Ok(())
}

/// Registers the configs, taking defaults from `name value` pairs in the
/// module's load arguments. Returns an error message for bad arguments.
pub fn register(ctx: Ctx<'_>, load_args: &[&[u8]]) -> Result<(), String> {
    apply_load_args(load_args)?;
    for c in &NUMERIC {
        let ok = ffi::register_numeric_config(
            ctx,
            c.name,
            c.cell.load(Relaxed),
            raw::REDISMODULE_CONFIG_DEFAULT,
            (c.min, c.max),
            (get_numeric, set_numeric),
            c.cell,
        );
        if !ok {
            return Err(format!(
                "could not register config {}",
                c.name.to_string_lossy()
            ));
        }
    }
    for f in &FLAGS {
        let flags = if f.immutable {
            raw::REDISMODULE_CONFIG_IMMUTABLE
        } else {
            raw::REDISMODULE_CONFIG_DEFAULT
        };
        let ok = ffi::register_bool_config(
            ctx,
            f.name,
            f.cell.load(Relaxed),
            flags,
            (get_flag, set_flag),
            f.cell,
        );
        if !ok {
            return Err(format!(
                "could not register config {}",
                f.name.to_string_lossy()
            ));
        }
    }
    if !ffi::load_configs(ctx) {
        return Err("could not load module configs".into());
    }
    Ok(())
}
