//! COMMAND INFO / COMMAND DOCS: arity, key specs and argument docs for
//! every command, set through `RedisModule_SetCommandInfo` (Redis 7.0+).
//!
//! The table is plain data; [`register_docs`] turns it into the C structs
//! Redis expects (leaked once at load: a few KB for the server's lifetime).

use std::ffi::{CStr, c_int};
use std::ptr::null_mut;

use redis_module::raw;

use super::ffi::{self, Ctx, api};

#[derive(Clone, Copy)]
enum Kind {
    Key,
    Str,
    Int,
    Double,
}

/// One argument: name, kind, the token before it (`WAIT`), optional.
struct Arg(&'static CStr, Kind, Option<&'static CStr>, bool);

#[derive(Clone, Copy)]
enum Keys {
    /// One key at position 1.
    One { write: bool },
    /// Keys from position 2, every 4 arguments, to the end (THROTTLE.ALL).
    EveryFourth,
}

struct Doc {
    name: &'static CStr,
    summary: &'static CStr,
    arity: c_int,
    keys: Keys,
    /// Repeat the arguments after the first (THROTTLE.ALL's groups).
    repeat_tail: bool,
    args: &'static [Arg],
}

use Kind::*;

const THROTTLE_ARGS: &[Arg] = &[
    Arg(c"key", Key, None, false),
    Arg(c"rps", Double, None, false),
    Arg(c"burst", Double, None, false),
    Arg(c"window", Double, None, false),
    Arg(c"tokens", Int, None, true),
    Arg(c"timeout_ms", Int, Some(c"WAIT"), true),
];

const DOCS: &[Doc] = &[
    Doc {
        name: c"THROTTLE",
        summary: c"Token bucket: take tokens if the bucket holds them. Replies [allowed, remaining, retry_after_ms, reset_after_ms, limit].",
        arity: -5,
        keys: Keys::One { write: true },
        repeat_tail: false,
        args: THROTTLE_ARGS,
    },
    Doc {
        name: c"THROTTLE.PEEK",
        summary: c"THROTTLE's reply right now, without writing anything.",
        arity: -5,
        keys: Keys::One { write: false },
        repeat_tail: false,
        args: THROTTLE_ARGS.split_at(5).0,
    },
    Doc {
        name: c"PERMIT",
        summary: c"Minimum-interval permit. Replies [time_to_wait_ms, valid_at_ms, expires_at_ms] or nil; BLOCK holds the caller until its slot.",
        arity: -4,
        keys: Keys::One { write: true },
        repeat_tail: false,
        args: &[
            Arg(c"key", Key, None, false),
            Arg(c"interval_ms", Double, None, false),
            Arg(c"max_waiting", Int, None, false),
            Arg(c"grace_ms", Int, Some(c"GRACE"), true),
            Arg(c"timeout_ms", Int, Some(c"BLOCK"), true),
        ],
    },
    Doc {
        name: c"THROTTLE.SET",
        summary: c"Set knobs: settings that override every caller's rps/burst/window until they expire.",
        arity: -2,
        keys: Keys::One { write: true },
        repeat_tail: false,
        args: &[
            Arg(c"key", Key, None, false),
            Arg(c"rps", Double, Some(c"RPS"), true),
            Arg(c"burst", Double, Some(c"BURST"), true),
            Arg(c"window", Double, Some(c"WINDOW"), true),
            Arg(c"seconds", Int, Some(c"TTL"), true),
        ],
    },
    Doc {
        name: c"THROTTLE.GET",
        summary: c"A limiter's state now: tokens, limit, effective rps/burst/window and where they come from.",
        arity: 2,
        keys: Keys::One { write: false },
        repeat_tail: false,
        args: &[Arg(c"key", Key, None, false)],
    },
    Doc {
        name: c"THROTTLE.RESET",
        summary: c"Remove a limiter's knobs, keeping its tokens. Replies 1 if knobs were removed.",
        arity: 2,
        keys: Keys::One { write: true },
        repeat_tail: false,
        args: &[Arg(c"key", Key, None, false)],
    },
    Doc {
        name: c"THROTTLE.REFUND",
        summary: c"Give back tokens for work that did not happen, never above the limit. Replies the tokens held.",
        arity: 3,
        keys: Keys::One { write: true },
        repeat_tail: false,
        args: &[Arg(c"key", Key, None, false), Arg(c"tokens", Int, None, false)],
    },
    Doc {
        name: c"THROTTLE.ALL",
        summary: c"Several limits at once, all or nothing. Replies [allowed, denied_by, retry_after_ms, [remaining...]].",
        arity: -6,
        keys: Keys::EveryFourth,
        repeat_tail: true,
        args: &[
            Arg(c"tokens", Int, None, false),
            Arg(c"key", Key, None, false),
            Arg(c"rps", Double, None, false),
            Arg(c"burst", Double, None, false),
            Arg(c"window", Double, None, false),
        ],
    },
    Doc {
        name: c"THROTTLE.APPLY",
        summary: c"Store a limiter's absolute state (what replication and the AOF carry).",
        arity: 4,
        keys: Keys::One { write: true },
        repeat_tail: false,
        args: &[
            Arg(c"key", Key, None, false),
            Arg(c"payload", Str, None, false),
            Arg(c"expire_at_ms", Int, None, false),
        ],
    },
];

fn zeroed_arg() -> raw::RedisModuleCommandArg {
    raw::RedisModuleCommandArg {
        name: std::ptr::null(),
        type_: 0,
        key_spec_index: -1,
        token: std::ptr::null(),
        summary: std::ptr::null(),
        since: std::ptr::null(),
        flags: 0,
        deprecated_since: std::ptr::null(),
        subargs: null_mut(),
        display_text: std::ptr::null(),
    }
}

fn raw_arg(a: &Arg, multiple: bool) -> raw::RedisModuleCommandArg {
    let mut r = zeroed_arg();
    r.name = a.0.as_ptr();
    r.type_ = match a.1 {
        Key => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_KEY,
        Str => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_STRING,
        Int => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_INTEGER,
        Double => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_DOUBLE,
    };
    if matches!(a.1, Key) {
        r.key_spec_index = 0;
    }
    r.token = a.2.map_or(std::ptr::null(), CStr::as_ptr);
    let mut flags = 0;
    if a.3 {
        flags |= raw::REDISMODULE_CMD_ARG_OPTIONAL;
    }
    if multiple {
        flags |= raw::REDISMODULE_CMD_ARG_MULTIPLE;
    }
    r.flags = flags as c_int;
    r
}

/// A null-terminated array, leaked for Redis.
fn leak<T>(mut v: Vec<T>, terminator: T) -> *mut T {
    v.push(terminator);
    Box::leak(v.into_boxed_slice()).as_mut_ptr()
}

fn key_spec(keys: Keys) -> raw::RedisModuleCommandKeySpec {
    let (flags, pos, lastkey, keystep) = match keys {
        Keys::One { write: true } => (
            raw::REDISMODULE_CMD_KEY_RW
                | raw::REDISMODULE_CMD_KEY_ACCESS
                | raw::REDISMODULE_CMD_KEY_UPDATE,
            1,
            0,
            1,
        ),
        Keys::One { write: false } => (
            raw::REDISMODULE_CMD_KEY_RO | raw::REDISMODULE_CMD_KEY_ACCESS,
            1,
            0,
            1,
        ),
        Keys::EveryFourth => (
            raw::REDISMODULE_CMD_KEY_RW
                | raw::REDISMODULE_CMD_KEY_ACCESS
                | raw::REDISMODULE_CMD_KEY_UPDATE,
            2,
            -1,
            4,
        ),
    };
    raw::RedisModuleCommandKeySpec {
        notes: std::ptr::null(),
        flags: u64::from(flags),
        begin_search_type: raw::RedisModuleKeySpecBeginSearchType_REDISMODULE_KSPEC_BS_INDEX,
        bs: raw::RedisModuleCommandKeySpec__bindgen_ty_1 {
            index: raw::RedisModuleCommandKeySpec__bindgen_ty_1__bindgen_ty_1 { pos },
        },
        find_keys_type: raw::RedisModuleKeySpecFindKeysType_REDISMODULE_KSPEC_FK_RANGE,
        fk: raw::RedisModuleCommandKeySpec__bindgen_ty_2 {
            range: raw::RedisModuleCommandKeySpec__bindgen_ty_2__bindgen_ty_1 {
                lastkey,
                keystep,
                limit: 0,
            },
        },
    }
}

fn zero_key_spec() -> raw::RedisModuleCommandKeySpec {
    let mut k = key_spec(Keys::One { write: false });
    k.begin_search_type = 0;
    k.find_keys_type = 0;
    k.flags = 0;
    k
}

static VERSION: raw::RedisModuleCommandInfoVersion = raw::RedisModuleCommandInfoVersion {
    version: 1,
    sizeof_historyentry: std::mem::size_of::<raw::RedisModuleCommandHistoryEntry>(),
    sizeof_keyspec: std::mem::size_of::<raw::RedisModuleCommandKeySpec>(),
    sizeof_arg: std::mem::size_of::<raw::RedisModuleCommandArg>(),
};

/// Sets the docs of every registered command. Failures are logged, not
/// fatal: the commands work without docs.
pub fn register_docs(ctx: Ctx) {
    let Some(set_info) = (unsafe { raw::RedisModule_SetCommandInfo }) else {
        return;
    };
    for d in DOCS {
        let cmd = unsafe { api!(RedisModule_GetCommand)(ctx, d.name.as_ptr()) };
        if cmd.is_null() {
            continue;
        }
        let args: Vec<raw::RedisModuleCommandArg> = if d.repeat_tail {
            // tokens, then a block "limit" of (key rps burst window), repeated.
            let sub = d.args.iter().skip(1).map(|a| raw_arg(a, false)).collect();
            let mut block = zeroed_arg();
            block.name = c"limit".as_ptr();
            block.type_ = raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_BLOCK;
            block.flags = raw::REDISMODULE_CMD_ARG_MULTIPLE as c_int;
            block.subargs = leak(sub, zeroed_arg());
            d.args
                .iter()
                .take(1)
                .map(|a| raw_arg(a, false))
                .chain([block])
                .collect()
        } else {
            d.args.iter().map(|a| raw_arg(a, false)).collect()
        };
        let info = raw::RedisModuleCommandInfo {
            version: &VERSION,
            summary: d.summary.as_ptr(),
            complexity: c"O(1) per key".as_ptr(),
            since: c"0.1.0".as_ptr(),
            history: null_mut(),
            tips: std::ptr::null(),
            arity: d.arity,
            key_specs: leak(vec![key_spec(d.keys)], zero_key_spec()),
            args: leak(args, zeroed_arg()),
        };
        let info = Box::leak(Box::new(info));
        if unsafe { set_info(cmd, info) } != raw::REDISMODULE_OK as c_int {
            ffi::log(
                ctx,
                c"warning",
                &format!("could not set command info for {:?}", d.name),
            );
        }
    }
}
