//! Server-held waits: the caller's connection is parked until its slot.
//!
//! The decision (and its write and replication) happens when the command
//! runs; only the reply is delayed. [`hold`] blocks the client with Redis's
//! blocked-client API and starts a timer for the slot; the timer unblocks
//! it exactly once, whatever happened meanwhile. A client that disconnects
//! (or is released by `CLIENT UNBLOCK`, which answers nil) simply loses
//! its slot: Redis skips the reply and we free the pending reply.
//!
//! Inside MULTI/EXEC, Lua, or while replicating, blocking is not allowed;
//! callers check [`super::ffi::deny_blocking`] first and answer at once.

use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicU64, Ordering};

use redis_module::raw;
use throttle_core::Micros;

use super::ffi::{self, Ctx, api};
use super::guard;
use super::stats::STATS;

/// The reply a held client gets when released.
pub enum Pending {
    Ints(Vec<i64>),
}

struct Held {
    bc: *mut raw::RedisModuleBlockedClient,
    reply: Pending,
}

/// Clients blocked right now.
pub static BLOCKED_NOW: AtomicU64 = AtomicU64::new(0);

/// Parks the calling client for `wait`, then replies `reply`.
pub fn hold(ctx: Ctx, wait: Micros, reply: Pending) {
    let bc = unsafe {
        api!(RedisModule_BlockClient)(
            ctx,
            Some(on_release),
            Some(on_unblock),
            Some(free_pending),
            0,
        )
    };
    BLOCKED_NOW.fetch_add(1, Ordering::Relaxed);
    STATS.blocked_total.fetch_add(1, Ordering::Relaxed);
    let held = Box::new(Held { bc, reply });
    let period_ms = i64::try_from(wait.as_millis_ceil()).unwrap_or(i64::MAX);
    unsafe {
        api!(RedisModule_CreateTimer)(ctx, period_ms, Some(on_timer), Box::into_raw(held).cast());
    }
}

/// Timer: the slot has come; hand the reply to the blocked client.
unsafe extern "C" fn on_timer(_ctx: *mut raw::RedisModuleCtx, data: *mut c_void) {
    let held = unsafe { Box::from_raw(data.cast::<Held>()) };
    let Held { bc, reply } = *held;
    let privdata = Box::into_raw(Box::new(reply)).cast::<c_void>();
    BLOCKED_NOW.fetch_sub(1, Ordering::Relaxed);
    STATS.released.fetch_add(1, Ordering::Relaxed);
    unsafe { api!(RedisModule_UnblockClient)(bc, privdata) };
}

/// Reply callback: runs in the client's context once unblocked.
unsafe extern "C" fn on_release(
    ctx: *mut raw::RedisModuleCtx,
    _argv: *mut *mut raw::RedisModuleString,
    _argc: c_int,
) -> c_int {
    guard::command(ctx, "blocked reply", || {
        let p = unsafe { api!(RedisModule_GetBlockedClientPrivateData)(ctx) };
        match unsafe { p.cast::<Pending>().as_ref() } {
            Some(Pending::Ints(v)) => ffi::reply_i64s(ctx, v),
            None => ffi::reply_null(ctx),
        }
        Ok(())
    })
}

/// CLIENT UNBLOCK (timeout form): answer nil now; the timer still fires
/// later and releases the handle.
unsafe extern "C" fn on_unblock(
    ctx: *mut raw::RedisModuleCtx,
    _argv: *mut *mut raw::RedisModuleString,
    _argc: c_int,
) -> c_int {
    STATS.timed_out.fetch_add(1, Ordering::Relaxed);
    guard::command(ctx, "blocked timeout", || {
        ffi::reply_null(ctx);
        Ok(())
    })
}

unsafe extern "C" fn free_pending(_ctx: *mut raw::RedisModuleCtx, p: *mut c_void) {
    if !p.is_null() {
        drop(unsafe { Box::from_raw(p.cast::<Pending>()) });
    }
}
