//! `redis-throttle`: a Redis module for rate limiting.
//!
//! This file is the module entry only: the data types, OnLoad (commands,
//! configs, the release thread), INFO. The arithmetic lives in the pure
//! `throttle-core` crate; the Redis glue in [`redis`]; the map of both is
//! docs/architecture.md.

// Unit tests build without the module entry (and its Redis allocator).
#![cfg_attr(test, allow(dead_code))]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod redis;

use redis::ffi::{self, Ctx};

fn init(
    ctx: &redis_module::Context,
    load_args: &[redis_module::RedisString],
) -> redis_module::Status {
    // SAFETY: the context Redis passed to OnLoad, used only during it.
    let Some(ctx) = (unsafe { Ctx::from_raw(ctx.ctx) }) else {
        return redis_module::Status::Err;
    };
    redis::guard::install_panic_hook();
    // OnLoad too: a panic fails the load instead of aborting the server.
    redis::guard::or(redis_module::Status::Err, "OnLoad", || {
        setup(ctx, load_args)
    })
}

fn setup(ctx: Ctx<'_>, load_args: &[redis_module::RedisString]) -> redis_module::Status {
    // HANDLE_IO_ERRORS: without it, a short read or a wrong opcode while
    // loading one of our values (RESTORE of a crafted payload) makes Redis
    // panic; with it the load call fails and `rdb_load` refuses the value.
    // NO_IMPLICIT_SIGNAL_MODIFIED: closing a key opened for writing would
    // otherwise invalidate WATCH even when nothing was written (a denied
    // THROTTLE); the write paths signal explicitly instead.
    ffi::set_module_options(
        ctx,
        redis_module::raw::REDISMODULE_OPTIONS_HANDLE_IO_ERRORS
            | redis_module::raw::REDISMODULE_OPTION_NO_IMPLICIT_SIGNAL_MODIFIED,
    );
    let args: Vec<&[u8]> = load_args.iter().map(|a| a.as_slice()).collect();
    let setup = redis::config::register(ctx, &args)
        .and_then(|()| redis::commands::register(ctx))
        .and_then(|()| {
            redis::blocking::start().map_err(|e| format!("could not start the release thread: {e}"))
        });
    match setup {
        Ok(()) => {
            ffi::register_info_func(ctx, redis::stats::info_callback);
            redis_module::Status::Ok
        }
        Err(e) => {
            ctx.log(c"warning", &e);
            redis_module::Status::Err
        }
    }
}

#[cfg(not(test))]
redis_module::redis_module! {
    name: "throttle",
    version: 1,
    allocator: (redis_module::alloc::RedisAlloc, redis_module::alloc::RedisAlloc),
    data_types: [BUCKET_TYPE, PERMIT_TYPE],
    init: init,
}

#[cfg(not(test))]
use redis::datatype::{BUCKET_TYPE, PERMIT_TYPE};
