//! No panic ever crosses into Redis.
//!
//! Every entry point Redis calls (commands, blocked-client callbacks, type
//! callbacks, config and INFO callbacks, the event-loop hook) runs its body
//! through [`command`] or [`or`]: an unwinding panic is caught, logged to
//! the Redis log with its message, and turned into `ERR internal error`
//! (or a neutral value for callbacks).

use std::cell::RefCell;
use std::ffi::c_int;
use std::fmt::Display;
use std::panic::{AssertUnwindSafe, catch_unwind};

use redis_module::raw;

use super::{Args, Ctx, log_global};

/// The reply to a command that panicked.
pub const INTERNAL_ERROR: &str = "ERR internal error";

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

/// Runs a command body; replies its error if it returns one. The log line
/// of a panic names the command (`argv[0]`).
pub fn command<E: Display>(
    ctx: Option<Ctx<'_>>,
    args: Args<'_>,
    body: impl for<'a> FnOnce(Ctx<'a>, Args<'a>) -> Result<(), E>,
) -> c_int {
    let Some(ctx) = ctx else {
        return raw::REDISMODULE_ERR as c_int;
    };
    match catch_unwind(AssertUnwindSafe(|| body(ctx, args))) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => ctx.reply_error(&e.to_string()),
        Err(_) => {
            let msg = take_panic_message();
            let name = String::from_utf8_lossy(args.bytes(0)).to_uppercase();
            ctx.log(c"warning", &format!("panic in {name}: {msg}"));
            ctx.reply_error(INTERNAL_ERROR);
        }
    }
    raw::REDISMODULE_OK as c_int
}

/// Runs a callback body; a panic yields `fallback` (and a log line).
pub fn or<T>(fallback: T, what: &str, body: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(v) => v,
        Err(_) => {
            let msg = take_panic_message();
            log_global(c"warning", &format!("panic in {what}: {msg}"));
            fallback
        }
    }
}
