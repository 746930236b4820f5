//! No panic ever crosses into Redis.
//!
//! Every entry point Redis calls (commands, type callbacks, timers) runs
//! its body through [`command`] or [`or`]: an unwinding panic is caught,
//! logged to the Redis log with its message, and turned into
//! `ERR internal error` (or a neutral value for callbacks).

use std::cell::RefCell;
use std::ffi::c_int;
use std::panic::{AssertUnwindSafe, catch_unwind};

use redis_module::raw;

use super::error::{Error, Result};
use super::ffi::{self, Ctx};

thread_local! {
    static LAST_PANIC: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Installs a panic hook that keeps the message for the Redis log instead
/// of printing to stderr (which redis-server usually discards).
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let msg = format!("{info}");
        LAST_PANIC.with(|p| *p.borrow_mut() = msg);
    }));
}

fn take_panic_message() -> String {
    LAST_PANIC.with(|p| std::mem::take(&mut *p.borrow_mut()))
}

/// Runs a command body; replies the error if it returns one.
pub fn command(ctx: Ctx, name: &str, body: impl FnOnce() -> Result<()>) -> c_int {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => ffi::reply_error(ctx, &e.to_string()),
        Err(_) => {
            let msg = take_panic_message();
            ffi::log(ctx, c"warning", &format!("panic in {name}: {msg}"));
            ffi::reply_error(ctx, &Error::Internal.to_string());
        }
    }
    raw::REDISMODULE_OK as c_int
}

/// Runs a callback body; a panic yields `fallback` (and a log line).
pub fn or<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(v) => v,
        Err(_) => {
            let msg = take_panic_message();
            ffi::log(
                std::ptr::null_mut(),
                c"warning",
                &format!("panic in callback: {msg}"),
            );
            fallback
        }
    }
}
