//! `redis-throttle`: a Redis module for rate limiting.
//!
//! This file is the module entry only: OnLoad, the data types, the command
//! table, configs and INFO. The arithmetic lives in the pure
//! `throttle-core` crate; the Redis glue in [`redis`].

// Unit tests build without the module entry (and its Redis allocator).
#![cfg_attr(test, allow(dead_code))]

use std::ffi::{CStr, c_int};

use redis_module::raw;

pub mod redis;

use redis::ffi::{self, Args, Ctx};
use redis::{all, apply, guard, knobs, permit, throttle};

/// Declares an `extern "C"` command handler wrapped in the panic guard.
macro_rules! handler {
    ($fn_name:ident, $label:literal, $body:path) => {
        unsafe extern "C" fn $fn_name(
            ctx: *mut raw::RedisModuleCtx,
            argv: *mut *mut raw::RedisModuleString,
            argc: c_int,
        ) -> c_int {
            guard::command(ctx, $label, || $body(ctx, unsafe { Args::new(argv, argc) }))
        }
    };
}

handler!(cmd_throttle, "THROTTLE", throttle::throttle);
handler!(cmd_peek, "THROTTLE.PEEK", throttle::peek);
handler!(cmd_permit, "PERMIT", permit::permit);
handler!(cmd_apply, "THROTTLE.APPLY", apply::apply);
handler!(cmd_set, "THROTTLE.SET", knobs::set);
handler!(cmd_get, "THROTTLE.GET", knobs::get);
handler!(cmd_reset, "THROTTLE.RESET", knobs::reset);
handler!(cmd_refund, "THROTTLE.REFUND", knobs::refund);
handler!(cmd_all, "THROTTLE.ALL", all::all);

type Handler = unsafe extern "C" fn(
    *mut raw::RedisModuleCtx,
    *mut *mut raw::RedisModuleString,
    c_int,
) -> c_int;

/// The command table: name, handler, flags, first/last/step key positions.
///
/// Names are registered in lower case, as Redis registers its own commands:
/// lookups ignore case, and Redis's own errors (wrong arity) quote the name
/// as registered: `ERR wrong number of arguments for 'throttle' command`.
const COMMANDS: &[(&CStr, Handler, &CStr, c_int, c_int, c_int)] = &[
    (c"throttle", cmd_throttle, c"write deny-oom fast", 1, 1, 1),
    (c"throttle.peek", cmd_peek, c"readonly fast", 1, 1, 1),
    (c"permit", cmd_permit, c"write deny-oom fast", 1, 1, 1),
    (c"throttle.apply", cmd_apply, c"write deny-oom", 1, 1, 1),
    (c"throttle.set", cmd_set, c"write deny-oom fast", 1, 1, 1),
    (c"throttle.get", cmd_get, c"readonly fast", 1, 1, 1),
    (c"throttle.reset", cmd_reset, c"write fast", 1, 1, 1),
    (
        c"throttle.refund",
        cmd_refund,
        c"write deny-oom fast",
        1,
        1,
        1,
    ),
    (c"throttle.all", cmd_all, c"write deny-oom fast", 2, -1, 4),
];

/// The module's ACL category: `ACL SETUSER app +@throttle` grants every
/// command of the module.
const ACL_CATEGORY: &CStr = c"throttle";

/// Where the server supports module ACL categories (Redis 7.2+, Valkey),
/// adds the `throttle` category and puts every command in it, with the
/// standard categories its flags imply (`write`/`read`, `fast`). Redis 7.0
/// lacks the API (the function pointers are `None`): there module commands
/// belong to no category and are granted by name. Never fails the load.
fn register_acl_category(ctx: Ctx) {
    let (Some(add), Some(get), Some(set)) = (unsafe {
        (
            raw::RedisModule_AddACLCategory,
            raw::RedisModule_GetCommand,
            raw::RedisModule_SetCommandACLCategories,
        )
    }) else {
        ffi::log(
            ctx,
            c"notice",
            "this server has no module ACL categories (Redis < 7.2): grant the commands by name",
        );
        return;
    };
    if unsafe { add(ctx, ACL_CATEGORY.as_ptr()) } != raw::REDISMODULE_OK as c_int {
        ffi::log(ctx, c"warning", "could not add the ACL category 'throttle'");
        return;
    }
    for (name, _, flags, ..) in COMMANDS {
        let flags = flags.to_string_lossy();
        let has = |f: &str| flags.split(' ').any(|w| w == f);
        let mut categories = vec![ACL_CATEGORY.to_string_lossy().into_owned()];
        if has("write") {
            categories.push("write".into());
        }
        if has("readonly") {
            categories.push("read".into());
        }
        categories.push(if has("fast") { "fast" } else { "slow" }.into());
        let Ok(categories) = std::ffi::CString::new(categories.join(" ")) else {
            continue;
        };
        let cmd = unsafe { get(ctx, name.as_ptr()) };
        if cmd.is_null() || unsafe { set(cmd, categories.as_ptr()) } != raw::REDISMODULE_OK as c_int
        {
            ffi::log(
                ctx,
                c"warning",
                &format!("could not set ACL categories of {name:?}"),
            );
        }
    }
}

fn init(
    ctx: &redis_module::Context,
    load_args: &[redis_module::RedisString],
) -> redis_module::Status {
    let raw_ctx: Ctx = ctx.ctx;
    guard::install_panic_hook();
    // HANDLE_IO_ERRORS: without it, a short read or a wrong opcode while
    // loading one of our values (RESTORE of a crafted payload) makes Redis
    // panic; with it the load call fails and `rdb_load` refuses the value.
    // NO_IMPLICIT_SIGNAL_MODIFIED: closing a key opened for writing would
    // otherwise invalidate WATCH even when nothing was written (a denied
    // THROTTLE); the write paths signal explicitly instead.
    unsafe {
        ffi::api!(RedisModule_SetModuleOptions)(
            raw_ctx,
            (raw::REDISMODULE_OPTIONS_HANDLE_IO_ERRORS
                | raw::REDISMODULE_OPTION_NO_IMPLICIT_SIGNAL_MODIFIED) as c_int,
        )
    };
    for (name, handler, flags, first, last, step) in COMMANDS {
        let rc = unsafe {
            ffi::api!(RedisModule_CreateCommand)(
                raw_ctx,
                name.as_ptr(),
                Some(*handler),
                flags.as_ptr(),
                *first,
                *last,
                *step,
            )
        };
        if rc != raw::REDISMODULE_OK as c_int {
            ffi::log(raw_ctx, c"warning", &format!("could not register {name:?}"));
            return redis_module::Status::Err;
        }
    }
    redis::commands::register_docs(raw_ctx);
    register_acl_category(raw_ctx);
    let args: Vec<&[u8]> = load_args.iter().map(|a| a.as_slice()).collect();
    if let Err(e) = redis::config::register(raw_ctx, &args) {
        ffi::log(raw_ctx, c"warning", &e);
        return redis_module::Status::Err;
    }
    unsafe { ffi::api!(RedisModule_RegisterInfoFunc)(raw_ctx, Some(redis::info::info)) };
    redis_module::Status::Ok
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
