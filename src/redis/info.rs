//! `INFO throttle`: counters since load and the number of limiter keys.

use std::sync::atomic::Ordering::Relaxed;

use redis_module::raw;

use super::blocking::BLOCKED_NOW;
use super::ffi::api;
use super::stats::{KEYS, STATS};

fn field(ctx: *mut raw::RedisModuleInfoCtx, name: &std::ffi::CStr, v: u64) {
    unsafe { api!(RedisModule_InfoAddFieldULongLong)(ctx, name.as_ptr(), v) };
}

/// # Safety
/// Called by Redis with a valid info context.
pub unsafe extern "C" fn info(
    ctx: *mut raw::RedisModuleInfoCtx,
    _for_crash_report: std::ffi::c_int,
) {
    super::guard::or((), || {
        let s = &STATS;
        unsafe { api!(RedisModule_InfoAddSection)(ctx, c"stats".as_ptr()) };
        field(ctx, c"throttle_calls", s.throttle_calls.load(Relaxed));
        field(ctx, c"throttle_allowed", s.throttle_allowed.load(Relaxed));
        field(ctx, c"throttle_denied", s.throttle_denied.load(Relaxed));
        field(ctx, c"tokens_consumed", s.tokens_consumed.load(Relaxed));
        field(ctx, c"permit_calls", s.permit_calls.load(Relaxed));
        field(ctx, c"permit_immediate", s.permit_immediate.load(Relaxed));
        field(ctx, c"permit_reserved", s.permit_reserved.load(Relaxed));
        field(ctx, c"permit_refused", s.permit_refused.load(Relaxed));
        field(ctx, c"blocked_clients", BLOCKED_NOW.load(Relaxed));
        field(ctx, c"blocked_total", s.blocked_total.load(Relaxed));
        field(ctx, c"blocked_released", s.released.load(Relaxed));
        field(ctx, c"blocked_timed_out", s.timed_out.load(Relaxed));
        unsafe { api!(RedisModule_InfoAddSection)(ctx, c"keys".as_ptr()) };
        field(ctx, c"bucket_keys", KEYS.buckets.load(Relaxed));
        field(ctx, c"permit_keys", KEYS.permits.load(Relaxed));
    })
}
