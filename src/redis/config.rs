//! Module configs (Redis 7 module config API), all in one table.
//!
//! | config | default | meaning |
//! |---|---|---|
//! | `throttle.knobs-ttl` | 604800 | seconds knobs live after THROTTLE.SET or a THROTTLE using them |
//! | `throttle.permit-grace-percent` | 10 | PERMIT's default GRACE, in % of the interval (rounded up to ms) |
//! | `throttle.wait-tolerance-ms` | 10 | how late a held WAIT client may be released and still count as on time |
//! | `throttle.all-max-limits` | 64 | most limits one THROTTLE.ALL may check |
//! | `throttle.apply-from-clients` | no | accept THROTTLE.APPLY from ordinary clients (tools replaying an AOF) |
//! | `throttle.test-clock` | no | accept THROTTLE.CLOCK (load time only) |
//!
//! Settable as `--loadmodule <so> knobs-ttl 3600 test-clock yes`, in
//! redis.conf (`throttle.knobs-ttl 3600`), and (but for test-clock) with
//! CONFIG SET/GET. Unknown load arguments and bad values fail the load
//! with a log line, rather than being ignored. (The redis-module crate has
//! config glue too; it ignores unknown load arguments and reads any bool
//! but "yes" as "no", so the module keeps this small table of its own;
//! the callbacks Redis calls live behind the FFI wall, `ffi/config.rs`.)

use std::ffi::CStr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering::Relaxed};

use throttle_core::Micros;
use throttle_core::throttle::{DEFAULT_KNOBS_TTL, MAX_KNOBS_TTL};

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

/// What a config holds.
enum Cell {
    Numeric {
        cell: &'static AtomicI64,
        range: (i64, i64),
    },
    Flag(&'static AtomicBool),
}

/// One config: its name, load time only or not, and its cell.
struct Entry {
    name: &'static CStr,
    /// Load time only (CONFIG SET refuses it).
    immutable: bool,
    cell: Cell,
}

const fn numeric(name: &'static CStr, cell: &'static AtomicI64, min: i64, max: i64) -> Entry {
    Entry {
        name,
        immutable: false,
        cell: Cell::Numeric {
            cell,
            range: (min, max),
        },
    }
}

const fn flag(name: &'static CStr, cell: &'static AtomicBool, immutable: bool) -> Entry {
    Entry {
        name,
        immutable,
        cell: Cell::Flag(cell),
    }
}

const CONFIGS: [Entry; 6] = [
    numeric(c"knobs-ttl", &KNOBS_TTL_S, 1, secs(MAX_KNOBS_TTL)),
    numeric(c"permit-grace-percent", &GRACE_PERCENT, 0, 1000),
    numeric(c"wait-tolerance-ms", &WAIT_TOLERANCE_MS, 0, 60_000),
    numeric(c"all-max-limits", &ALL_MAX_LIMITS, 1, 1024),
    flag(c"apply-from-clients", &APPLY_FROM_CLIENTS, false),
    flag(c"test-clock", &TEST_CLOCK, true),
];

/// The knobs TTL (and PERMIT settings TTL) currently configured.
pub fn knobs_ttl() -> Micros {
    Micros::from_secs(KNOBS_TTL_S.load(Relaxed).unsigned_abs())
}

/// PERMIT's default grace, in percent of the interval.
pub fn grace_percent() -> u64 {
    GRACE_PERCENT.load(Relaxed).unsigned_abs()
}

/// How late a held WAIT client may be released and still count as on time.
pub fn wait_tolerance() -> Micros {
    Micros::from_millis(WAIT_TOLERANCE_MS.load(Relaxed).unsigned_abs())
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

/// Applies `name value` load arguments to the cells.
fn apply_load_args(load_args: &[&[u8]]) -> Result<(), String> {
    if !load_args.len().is_multiple_of(2) {
        return Err("module arguments must be name/value pairs".into());
    }
    for pair in load_args.chunks(2) {
        let [name, value] = pair else { continue };
        let text = String::from_utf8_lossy(value);
        let entry = CONFIGS
            .iter()
            .find(|c| name.eq_ignore_ascii_case(c.name.to_bytes()))
            .ok_or_else(|| {
                format!(
                    "unknown module argument '{}'",
                    String::from_utf8_lossy(name)
                )
            })?;
        let what = entry.name.to_string_lossy();
        match entry.cell {
            Cell::Numeric { cell, range } => {
                let v: i64 = text
                    .parse()
                    .ok()
                    .filter(|v| (range.0..=range.1).contains(v))
                    .ok_or_else(|| {
                        format!("{what} must be an integer in {}..={}", range.0, range.1)
                    })?;
                cell.store(v, Relaxed);
            }
            Cell::Flag(cell) => match text.to_ascii_lowercase().as_str() {
                "yes" => cell.store(true, Relaxed),
                "no" => cell.store(false, Relaxed),
                _ => return Err(format!("{what} must be yes or no")),
            },
        }
    }
    Ok(())
}

/// Registers the configs, taking defaults from `name value` pairs in the
/// module's load arguments. Returns an error message for bad arguments.
pub fn register(ctx: Ctx<'_>, load_args: &[&[u8]]) -> Result<(), String> {
    apply_load_args(load_args)?;
    for c in &CONFIGS {
        let ok = match c.cell {
            Cell::Numeric { cell, range } => {
                ffi::config::register_numeric(ctx, c.name, cell, range, c.immutable)
            }
            Cell::Flag(cell) => ffi::config::register_flag(ctx, c.name, cell, c.immutable),
        };
        if !ok {
            return Err(format!(
                "could not register config {}",
                c.name.to_string_lossy()
            ));
        }
    }
    if !ffi::config::load_configs(ctx) {
        return Err("could not load module configs".into());
    }
    Ok(())
}
