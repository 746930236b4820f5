//! Counters since the module was loaded, and what `INFO throttle` shows.
//!
//! Redis prefixes every field with the module's name: the field `calls` of
//! section `stats` prints as `throttle_calls` under `# throttle_stats`.
//! README.md lists the fields; `tests/readme.rs` compares the two.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use redis_module::InfoContext;

use super::clock;

pub struct Stats {
    /// Clients held right now (a gauge the release queue keeps).
    pub held: AtomicU64,
    pub calls: AtomicU64,
    pub allowed: AtomicU64,
    pub denied: AtomicU64,
    pub tokens_consumed: AtomicU64,
    pub permit_calls: AtomicU64,
    pub permit_immediate: AtomicU64,
    pub permit_reserved: AtomicU64,
    pub permit_refused: AtomicU64,
    pub blocked_total: AtomicU64,
    pub blocked_released: AtomicU64,
    pub blocked_late: AtomicU64,
    pub blocked_unblocked: AtomicU64,
    pub blocked_disconnected: AtomicU64,
}

pub static STATS: Stats = Stats {
    held: AtomicU64::new(0),
    calls: AtomicU64::new(0),
    allowed: AtomicU64::new(0),
    denied: AtomicU64::new(0),
    tokens_consumed: AtomicU64::new(0),
    permit_calls: AtomicU64::new(0),
    permit_immediate: AtomicU64::new(0),
    permit_reserved: AtomicU64::new(0),
    permit_refused: AtomicU64::new(0),
    blocked_total: AtomicU64::new(0),
    blocked_released: AtomicU64::new(0),
    blocked_late: AtomicU64::new(0),
    blocked_unblocked: AtomicU64::new(0),
    blocked_disconnected: AtomicU64::new(0),
};

/// Values alive in memory, by type (all databases).
pub struct Keys {
    pub buckets: AtomicU64,
    pub permits: AtomicU64,
}

pub static KEYS: Keys = Keys {
    buckets: AtomicU64::new(0),
    permits: AtomicU64::new(0),
};

/// Counts one THROTTLE-like decision (THROTTLE, THROTTLE.ALL, CL.THROTTLE).
pub fn count_throttle(allowed: bool, tokens: u64) {
    STATS.calls.fetch_add(1, Relaxed);
    if allowed {
        STATS.allowed.fetch_add(1, Relaxed);
        STATS.tokens_consumed.fetch_add(tokens, Relaxed);
    } else {
        STATS.denied.fetch_add(1, Relaxed);
    }
}

/// The counters of `# throttle_stats`, in the order INFO prints them
/// (Redis prefixes each name with `throttle_`).
static COUNTERS: [(&str, &AtomicU64); 14] = [
    ("calls", &STATS.calls),
    ("allowed", &STATS.allowed),
    ("denied", &STATS.denied),
    ("tokens_consumed", &STATS.tokens_consumed),
    ("permit_calls", &STATS.permit_calls),
    ("permit_immediate", &STATS.permit_immediate),
    ("permit_reserved", &STATS.permit_reserved),
    ("permit_refused", &STATS.permit_refused),
    ("blocked_clients", &STATS.held),
    ("blocked_total", &STATS.blocked_total),
    ("blocked_released", &STATS.blocked_released),
    ("blocked_late", &STATS.blocked_late),
    ("blocked_unblocked", &STATS.blocked_unblocked),
    ("blocked_disconnected", &STATS.blocked_disconnected),
];

/// The gauges of `# throttle_keys`.
static KEY_COUNTS: [(&str, &AtomicU64); 2] = [
    ("bucket_keys", &KEYS.buckets),
    ("permit_keys", &KEYS.permits),
];

/// `INFO throttle`: the callback Redis calls.
///
/// # Safety
/// Called by Redis with the INFO context of the running INFO command.
pub unsafe extern "C" fn info_callback(
    ctx: *mut redis_module::raw::RedisModuleInfoCtx,
    _for_crash_report: std::ffi::c_int,
) {
    super::guard::or((), "INFO", || {
        // SAFETY: the context Redis passed to this INFO callback.
        let ctx = unsafe { super::ffi::info_context(ctx) };
        info(&ctx);
    })
}

/// Writes the sections with the redis-module crate's INFO builder.
fn info(ctx: &InfoContext) {
    let n = |c: &AtomicU64| i64::try_from(c.load(Relaxed)).unwrap_or(i64::MAX);
    let built = (|| {
        let mut stats = ctx.builder().add_section("stats");
        for (name, counter) in &COUNTERS {
            stats = stats.field(name, n(counter))?;
        }
        let stats = stats
            .field("clock_source", clock::source().to_string())?
            .field("clock_frozen", i64::from(clock::is_frozen()))?
            .build_section()?;
        let mut keys = stats.add_section("keys");
        for (name, count) in &KEY_COUNTS {
            keys = keys.field(name, n(count))?;
        }
        keys.build_section()?.build_info()
    })();
    if let Err(e) = built {
        super::ffi::log_global(c"warning", &format!("INFO throttle: {e}"));
    }
}
