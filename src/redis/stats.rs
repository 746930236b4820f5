//! Counters since the module was loaded, and what `INFO throttle` shows.
//!
//! Redis prefixes every field with the module's name: the field `calls` of
//! section `stats` prints as `throttle_calls` under `# throttle_stats`.
//! [`INFO_FIELDS`] is the list README.md documents (a test compares them).

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

/// Every INFO field, as the server prints it (section, then fields).
pub const INFO_FIELDS: [(&str, &[&str]); 2] = [
    (
        "throttle_stats",
        &[
            "throttle_calls",
            "throttle_allowed",
            "throttle_denied",
            "throttle_tokens_consumed",
            "throttle_permit_calls",
            "throttle_permit_immediate",
            "throttle_permit_reserved",
            "throttle_permit_refused",
            "throttle_blocked_clients",
            "throttle_blocked_total",
            "throttle_blocked_released",
            "throttle_blocked_late",
            "throttle_blocked_unblocked",
            "throttle_blocked_disconnected",
            "throttle_clock_source",
            "throttle_clock_frozen",
        ],
    ),
    (
        "throttle_keys",
        &["throttle_bucket_keys", "throttle_permit_keys"],
    ),
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
    let s = &STATS;
    let n = |c: &AtomicU64| i64::try_from(c.load(Relaxed)).unwrap_or(i64::MAX);
    let built = ctx
        .builder()
        .add_section("stats")
        .field("calls", n(&s.calls))
        .and_then(|b| b.field("allowed", n(&s.allowed)))
        .and_then(|b| b.field("denied", n(&s.denied)))
        .and_then(|b| b.field("tokens_consumed", n(&s.tokens_consumed)))
        .and_then(|b| b.field("permit_calls", n(&s.permit_calls)))
        .and_then(|b| b.field("permit_immediate", n(&s.permit_immediate)))
        .and_then(|b| b.field("permit_reserved", n(&s.permit_reserved)))
        .and_then(|b| b.field("permit_refused", n(&s.permit_refused)))
        .and_then(|b| b.field("blocked_clients", n(&s.held)))
        .and_then(|b| b.field("blocked_total", n(&s.blocked_total)))
        .and_then(|b| b.field("blocked_released", n(&s.blocked_released)))
        .and_then(|b| b.field("blocked_late", n(&s.blocked_late)))
        .and_then(|b| b.field("blocked_unblocked", n(&s.blocked_unblocked)))
        .and_then(|b| b.field("blocked_disconnected", n(&s.blocked_disconnected)))
        .and_then(|b| b.field("clock_source", clock::source().to_string()))
        .and_then(|b| b.field("clock_frozen", i64::from(clock::is_frozen())))
        .and_then(|b| b.build_section())
        .and_then(|b| {
            b.add_section("keys")
                .field("bucket_keys", n(&KEYS.buckets))
                .and_then(|b| b.field("permit_keys", n(&KEYS.permits)))
        })
        .and_then(|b| b.build_section())
        .and_then(|b| b.build_info());
    if let Err(e) = built {
        super::ffi::log_global(c"warning", &format!("INFO throttle: {e}"));
    }
}
