//! `redis-throttle`: a Redis module for rate limiting.
//!
//! This file is the module entry only: OnLoad (through the redis-module
//! crate's macro, which also installs Redis's allocator). The arithmetic
//! lives in the pure `throttle-core` crate; the Redis glue in [`redis`],
//! whose `ffi` module is the only code allowed `unsafe`; the map of both is
//! docs/architecture.md.

// Unit tests build without the module entry (and its Redis allocator).
#![cfg_attr(test, allow(dead_code))]
#![deny(unsafe_code)]

pub mod redis;

fn init(
    ctx: &redis_module::Context,
    load_args: &[redis_module::RedisString],
) -> redis_module::Status {
    let Some(ctx) = redis::ffi::load_context(ctx) else {
        return redis_module::Status::Err;
    };
    redis::ffi::guard::install_panic_hook();
    // OnLoad too: a panic fails the load instead of aborting the server.
    redis::ffi::guard::or(redis_module::Status::Err, "OnLoad", || {
        let args: Vec<&[u8]> = load_args.iter().map(|a| a.as_slice()).collect();
        match redis::setup(ctx, &args) {
            Ok(()) => redis_module::Status::Ok,
            Err(e) => {
                ctx.log(c"warning", &e);
                redis_module::Status::Err
            }
        }
    })
}

#[cfg(not(test))]
redis_module::redis_module! {
    name: "throttle",
    version: 1,
    allocator: (redis_module::alloc::RedisAlloc, redis_module::alloc::RedisAlloc),
    data_types: [],
    init: init,
}
