//! The command table: every command's name, handler, flags, keys, arity
//! and documentation, in one place. Registration (`CreateCommand`), `COMMAND
//! INFO`/`DOCS` (`SetCommandInfo`) and the ACL categories all read it.
//!
//! Names are registered in lower case, as Redis registers its own commands:
//! lookups ignore case, and Redis's own errors (wrong arity) quote the name
//! as registered: `ERR wrong number of arguments for 'throttle' command`.

use std::ffi::{CStr, c_int};
use std::ptr::{null, null_mut};

use redis_module::raw;

#[cfg(feature = "fault-injection")]
use super::error::Result;
use super::ffi::{self, AclSupport, Args, CmdFunc, Ctx};
use super::{all, apply, cell, guard, knobs, permit, testclock, throttle};

/// Declares an `extern "C"` command handler running `body` in the panic guard.
macro_rules! handler {
    ($fn_name:ident, $label:literal, $body:path) => {
        unsafe extern "C" fn $fn_name(
            ctx: *mut raw::RedisModuleCtx,
            argv: *mut *mut raw::RedisModuleString,
            argc: c_int,
        ) -> c_int {
            // SAFETY: Redis calls a command with its own context and argc
            // valid argument strings, all alive until the command returns,
            // which is as long as the guard's body runs.
            let (ctx, args) = unsafe { (Ctx::from_raw(ctx), Args::from_raw(argv, argc)) };
            guard::command(ctx, $label, |ctx| $body(ctx, args))
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
handler!(cmd_cell, "CL.THROTTLE", cell::throttle);
handler!(cmd_clock, "THROTTLE.CLOCK", testclock::clock_command);
#[cfg(feature = "fault-injection")]
handler!(cmd_fault, "THROTTLE.FAULT", fault);

/// Test builds only, to prove that no panic reaches Redis:
/// `THROTTLE.FAULT PANIC` panics inside the command's guard;
/// `THROTTLE.FAULT PANIC-CALLBACK` panics inside the guard that wraps every
/// callback (type callbacks, INFO), which logs and carries on; replies OK.
#[cfg(feature = "fault-injection")]
fn fault(ctx: Ctx<'_>, args: Args<'_>) -> Result<()> {
    let what = args.get(1).map(|a| a.bytes().to_ascii_uppercase());
    match what.as_deref() {
        Some(b"PANIC") => panic!("fault injected by THROTTLE.FAULT PANIC"),
        Some(b"PANIC-CALLBACK") => {
            guard::or((), "callback", || {
                panic!("fault injected by THROTTLE.FAULT PANIC-CALLBACK")
            });
            ctx.reply_simple(c"OK");
            Ok(())
        }
        _ => Err(super::error::Error::Syntax),
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Key,
    Str,
    Int,
    Double,
}

use Kind::*;

/// One argument: name, kind, the token before it (`WAIT`), optional.
struct Arg(&'static CStr, Kind, Option<&'static CStr>, bool);

/// An argument or a group of them.
enum Doc {
    One(Arg),
    /// A named group: optional, repeated.
    Group(&'static CStr, bool, bool, &'static [Arg]),
}

#[derive(Clone, Copy)]
enum Keys {
    None,
    /// One key at position 1.
    One {
        write: bool,
    },
    /// Keys from position 2, every 4 arguments, to the end (THROTTLE.ALL).
    EveryFourth,
}

impl Keys {
    fn positions(self) -> (c_int, c_int, c_int) {
        match self {
            Keys::None => (0, 0, 0),
            Keys::One { .. } => (1, 1, 1),
            Keys::EveryFourth => (2, -1, 4),
        }
    }
}

pub struct Command {
    name: &'static CStr,
    handler: CmdFunc,
    flags: &'static CStr,
    keys: Keys,
    arity: c_int,
    /// In `@dangerous` too (Redis 7.2+), beside `@throttle`.
    dangerous: bool,
    summary: &'static CStr,
    docs: &'static [Doc],
}

const LIMIT: &[Arg] = &[
    Arg(c"rps", Double, None, false),
    Arg(c"burst", Double, None, false),
    Arg(c"window", Double, None, false),
];

const WRITE: &CStr = c"write deny-oom fast";

// The arguments of each command, for COMMAND DOCS (data, kept compact).
#[rustfmt::skip]
mod docs {
    use super::{Arg, Doc, Kind::*};

    const KEY: Doc = Doc::One(Arg(c"key", Key, None, false));
    const TOKENS: Doc = Doc::One(Arg(c"tokens", Int, None, true));
    const LIMIT: Doc = Doc::Group(c"limit", true, false, super::LIMIT);

    pub const THROTTLE: &[Doc] = &[KEY, LIMIT, TOKENS, Doc::One(Arg(c"timeout_ms", Int, Some(c"WAIT"), true))];
    pub const THROTTLE_PEEK: &[Doc] = &[KEY, LIMIT, TOKENS];
    pub const PERMIT: &[Doc] = &[KEY, Doc::One(Arg(c"interval_ms", Double, None, false)), Doc::One(Arg(c"max_waiting", Int, None, false)),
        Doc::One(Arg(c"grace_ms", Int, Some(c"GRACE"), true)), Doc::One(Arg(c"timeout_ms", Int, Some(c"BLOCK"), true))];
    pub const THROTTLE_SET: &[Doc] = &[KEY, Doc::One(Arg(c"rps", Double, Some(c"RPS"), true)), Doc::One(Arg(c"burst", Double, Some(c"BURST"), true)),
        Doc::One(Arg(c"window", Double, Some(c"WINDOW"), true)), Doc::One(Arg(c"seconds", Int, Some(c"TTL"), true))];
    pub const ONE_KEY: &[Doc] = &[KEY];
    pub const THROTTLE_REFUND: &[Doc] = &[KEY, Doc::One(Arg(c"tokens", Int, None, false))];
    pub const THROTTLE_ALL: &[Doc] = &[Doc::One(Arg(c"tokens", Int, None, false)), Doc::Group(c"limit", false, true, &[
        Arg(c"key", Key, None, false), Arg(c"rps", Double, None, false), Arg(c"burst", Double, None, false), Arg(c"window", Double, None, false)])];
    pub const THROTTLE_APPLY: &[Doc] = &[KEY, Doc::One(Arg(c"payload", Str, None, false)), Doc::One(Arg(c"expire_at_ms", Int, None, true))];
    pub const CL_THROTTLE: &[Doc] = &[KEY, Doc::One(Arg(c"max_burst", Int, None, false)), Doc::One(Arg(c"count_per_period", Int, None, false)),
        Doc::One(Arg(c"period", Int, None, false)), Doc::One(Arg(c"quantity", Int, None, true))];
    pub const THROTTLE_CLOCK: &[Doc] = &[Doc::One(Arg(c"subcommand", Str, None, false)), Doc::One(Arg(c"us", Int, None, true))];
    #[cfg(feature = "fault-injection")]
    pub const THROTTLE_FAULT: &[Doc] = &[Doc::One(Arg(c"what", Str, None, false))];
}

// One entry per command, kept compact (the table is data).
#[rustfmt::skip]
pub const COMMANDS: &[Command] = &[
    Command { name: c"throttle", handler: cmd_throttle, flags: WRITE, keys: Keys::One { write: true }, arity: -2, dangerous: false, docs: docs::THROTTLE,
        summary: c"Token bucket: take tokens if the bucket holds them. Replies [allowed, remaining, retry_after_ms, reset_after_ms, limit]." },
    Command { name: c"throttle.peek", handler: cmd_peek, flags: c"readonly fast", keys: Keys::One { write: false }, arity: -2, dangerous: false, docs: docs::THROTTLE_PEEK,
        summary: c"THROTTLE's reply right now, without writing anything." },
    Command { name: c"permit", handler: cmd_permit, flags: WRITE, keys: Keys::One { write: true }, arity: -4, dangerous: false, docs: docs::PERMIT,
        summary: c"Minimum-interval permit. Replies [time_to_wait_ms, valid_at_ms, expires_at_ms] or nil; BLOCK holds the caller until its slot." },
    Command { name: c"throttle.set", handler: cmd_set, flags: WRITE, keys: Keys::One { write: true }, arity: -2, dangerous: false, docs: docs::THROTTLE_SET,
        summary: c"Set knobs: settings that override every caller's rps/burst/window until they expire." },
    Command { name: c"throttle.get", handler: cmd_get, flags: c"readonly fast", keys: Keys::One { write: false }, arity: 2, dangerous: false, docs: docs::ONE_KEY,
        summary: c"A limiter's state now: tokens, limit, rate, knobs and when it is full again." },
    Command { name: c"throttle.reset", handler: cmd_reset, flags: c"write fast", keys: Keys::One { write: true }, arity: 2, dangerous: false, docs: docs::ONE_KEY,
        summary: c"Remove a limiter's knobs, keeping its tokens. Replies 1 if knobs were removed." },
    Command { name: c"throttle.refund", handler: cmd_refund, flags: WRITE, keys: Keys::One { write: true }, arity: 3, dangerous: false, docs: docs::THROTTLE_REFUND,
        summary: c"Give back tokens for work that did not happen, never above the limit. Replies the tokens held." },
    Command { name: c"throttle.all", handler: cmd_all, flags: WRITE, keys: Keys::EveryFourth, arity: -6, dangerous: false, docs: docs::THROTTLE_ALL,
        summary: c"Several limits at once, all or nothing. Replies [allowed, denied_by, retry_after_ms, [remaining...]]." },
    Command { name: c"throttle.apply", handler: cmd_apply, flags: c"write deny-oom", keys: Keys::One { write: true }, arity: -3, dangerous: true, docs: docs::THROTTLE_APPLY,
        summary: c"Store a limiter's absolute state: what replication and the AOF carry (masters and loading only, unless apply-from-clients)." },
    Command { name: c"cl.throttle", handler: cmd_cell, flags: WRITE, keys: Keys::One { write: true }, arity: -5, dangerous: false, docs: docs::CL_THROTTLE,
        summary: c"redis-cell's GCRA limit. Replies [limited, limit, remaining, retry_after_s, reset_after_s]." },
    Command { name: c"throttle.clock", handler: cmd_clock, flags: c"fast", keys: Keys::None, arity: -2, dangerous: false, docs: docs::THROTTLE_CLOCK,
        summary: c"The test clock (module loaded with test-clock yes): FREEZE unix_us | ADVANCE us | REAL | GET." },
    #[cfg(feature = "fault-injection")]
    Command { name: c"throttle.fault", handler: cmd_fault, flags: c"fast", keys: Keys::None, arity: 2, dangerous: true, docs: docs::THROTTLE_FAULT,
        summary: c"Test builds only: THROTTLE.FAULT PANIC panics inside the command's guard." },
];

/// The module's ACL category: `ACL SETUSER app +@throttle` grants every
/// command of the module.
const ACL_CATEGORY: &CStr = c"throttle";

/// Registers every command; the name of the first Redis refused, if any.
pub fn register(ctx: Ctx<'_>) -> std::result::Result<(), String> {
    for c in COMMANDS {
        if !ffi::create_command(ctx, c.name, c.handler, c.flags, c.keys.positions()) {
            return Err(format!("could not register {}", c.name.to_string_lossy()));
        }
    }
    for c in COMMANDS {
        if !ffi::set_command_info(ctx, c.name, Box::leak(Box::new(info(c)))) {
            ctx.log(
                c"warning",
                &format!(
                    "could not set command info for {}",
                    c.name.to_string_lossy()
                ),
            );
        }
    }
    register_acl(ctx);
    Ok(())
}

/// The ACL categories of a command: those its flags imply (`write`/`read`,
/// `fast`/`slow`), `dangerous` where it is, and the module's own
/// (`throttle`) when `own`.
fn acl_categories(c: &Command, own: bool) -> String {
    let flags = c.flags.to_string_lossy();
    let has = |f: &str| flags.split(' ').any(|w| w == f);
    let mut cats = Vec::new();
    if own {
        cats.push(ACL_CATEGORY.to_string_lossy().into_owned());
    }
    if has("write") {
        cats.push("write".into());
    }
    if has("readonly") {
        cats.push("read".into());
    }
    cats.push(if has("fast") { "fast" } else { "slow" }.into());
    if c.dangerous {
        cats.push("dangerous".into());
    }
    cats.join(" ")
}

/// Puts every command in its ACL categories, as far as the server allows:
/// on Redis 7.4+ and Valkey the module's own `@throttle` too; on Redis 7.2
/// the standard ones only (a module cannot add a category there); on Redis
/// 7.0 none (module commands are granted by name). Never fails the load.
fn register_acl(ctx: Ctx<'_>) {
    let support = ffi::acl_support();
    let own = match support {
        AclSupport::Nothing => {
            ctx.log(
                c"notice",
                "this server has no module ACL categories (Redis 7.0): grant the commands by name",
            );
            return;
        }
        AclSupport::Standard => {
            ctx.log(
                c"notice",
                "this server cannot add the @throttle ACL category (Redis 7.2): the commands \
                 are in the standard categories (@write, @fast, ...); grant them by name",
            );
            false
        }
        AclSupport::ModuleCategory => ffi::add_acl_category(ctx, ACL_CATEGORY),
    };
    let refused = COMMANDS
        .iter()
        .filter(|c| {
            !std::ffi::CString::new(acl_categories(c, own))
                .is_ok_and(|cats| ffi::set_command_acl_categories(ctx, c.name, &cats))
        })
        .count();
    if refused > 0 || (support == AclSupport::ModuleCategory && !own) {
        ctx.log(c"warning", "could not set every command's ACL categories");
    }
}

// ---- COMMAND INFO / DOCS -------------------------------------------------------

fn zeroed_arg() -> raw::RedisModuleCommandArg {
    raw::RedisModuleCommandArg {
        name: null(),
        type_: 0,
        key_spec_index: -1,
        token: null(),
        summary: null(),
        since: null(),
        flags: 0,
        deprecated_since: null(),
        subargs: null_mut(),
        display_text: null(),
    }
}

fn raw_arg(a: &Arg) -> raw::RedisModuleCommandArg {
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
    r.token = a.2.map_or(null(), CStr::as_ptr);
    if a.3 {
        r.flags = raw::REDISMODULE_CMD_ARG_OPTIONAL as c_int;
    }
    r
}

fn raw_doc(d: &Doc) -> raw::RedisModuleCommandArg {
    match d {
        Doc::One(a) => raw_arg(a),
        Doc::Group(name, optional, multiple, args) => {
            let mut g = zeroed_arg();
            g.name = name.as_ptr();
            g.type_ = raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_BLOCK;
            let mut flags = 0;
            if *optional {
                flags |= raw::REDISMODULE_CMD_ARG_OPTIONAL;
            }
            if *multiple {
                flags |= raw::REDISMODULE_CMD_ARG_MULTIPLE;
            }
            g.flags = flags as c_int;
            g.subargs = leak(args.iter().map(raw_arg).collect(), zeroed_arg());
            g
        }
    }
}

/// A null-terminated array, leaked for Redis (a few KB, once, at load).
fn leak<T>(mut v: Vec<T>, terminator: T) -> *mut T {
    v.push(terminator);
    Box::leak(v.into_boxed_slice()).as_mut_ptr()
}

fn key_spec(keys: Keys) -> Option<raw::RedisModuleCommandKeySpec> {
    let rw = raw::REDISMODULE_CMD_KEY_RW
        | raw::REDISMODULE_CMD_KEY_ACCESS
        | raw::REDISMODULE_CMD_KEY_UPDATE;
    let (flags, pos, lastkey, keystep) = match keys {
        Keys::None => return None,
        Keys::One { write: true } => (rw, 1, 0, 1),
        Keys::One { write: false } => (
            raw::REDISMODULE_CMD_KEY_RO | raw::REDISMODULE_CMD_KEY_ACCESS,
            1,
            0,
            1,
        ),
        Keys::EveryFourth => (rw, 2, -1, 4),
    };
    Some(raw::RedisModuleCommandKeySpec {
        notes: null(),
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
    })
}

fn zero_key_spec() -> raw::RedisModuleCommandKeySpec {
    raw::RedisModuleCommandKeySpec {
        notes: null(),
        flags: 0,
        begin_search_type: 0,
        bs: raw::RedisModuleCommandKeySpec__bindgen_ty_1 {
            index: raw::RedisModuleCommandKeySpec__bindgen_ty_1__bindgen_ty_1 { pos: 0 },
        },
        find_keys_type: 0,
        fk: raw::RedisModuleCommandKeySpec__bindgen_ty_2 {
            range: raw::RedisModuleCommandKeySpec__bindgen_ty_2__bindgen_ty_1 {
                lastkey: 0,
                keystep: 0,
                limit: 0,
            },
        },
    }
}

static VERSION: raw::RedisModuleCommandInfoVersion = raw::RedisModuleCommandInfoVersion {
    version: 1,
    sizeof_historyentry: std::mem::size_of::<raw::RedisModuleCommandHistoryEntry>(),
    sizeof_keyspec: std::mem::size_of::<raw::RedisModuleCommandKeySpec>(),
    sizeof_arg: std::mem::size_of::<raw::RedisModuleCommandArg>(),
};

fn info(c: &Command) -> raw::RedisModuleCommandInfo {
    raw::RedisModuleCommandInfo {
        version: &VERSION,
        summary: c.summary.as_ptr(),
        complexity: c"O(1) per key".as_ptr(),
        since: c"0.1.0".as_ptr(),
        history: null_mut(),
        tips: null(),
        arity: c.arity,
        key_specs: leak(key_spec(c.keys).into_iter().collect(), zero_key_spec()),
        args: leak(c.docs.iter().map(raw_doc).collect(), zeroed_arg()),
    }
}
