//! Registering commands: the handler trampoline, the command's docs and
//! key specs (`COMMAND INFO`/`DOCS`), its ACL categories.
//!
//! A command is described by a [`Spec`] with named fields; its handler is
//! a plain safe function `fn(Ctx, Args) -> Result<(), E>` turned into the
//! `extern "C"` callback Redis needs by [`handler`], which runs it behind
//! the panic wall.

use std::ffi::{CStr, CString, c_int};
use std::fmt::Display;
use std::ptr::{null, null_mut};

use redis_module::raw;

use super::guard;
use super::{Args, CmdFunc, Ctx, OK};

/// A command handler: a safe function over the context and the arguments
/// that replies, or returns the error to reply.
pub trait Handler: Copy + 'static {
    type Error: Display;
    fn run(self, ctx: Ctx<'_>, args: Args<'_>) -> Result<(), Self::Error>;
}

impl<F, E> Handler for F
where
    F: for<'a> Fn(Ctx<'a>, Args<'a>) -> Result<(), E> + Copy + 'static,
    E: Display,
{
    type Error = E;
    fn run(self, ctx: Ctx<'_>, args: Args<'_>) -> Result<(), E> {
        self(ctx, args)
    }
}

/// The `extern "C"` callback that runs `f` (a function item, so the
/// callback calls it directly: no table lookup on the hot path).
pub const fn handler<F: Handler>(_f: F) -> CmdFunc {
    const {
        assert!(
            std::mem::size_of::<F>() == 0,
            "a handler is a function item"
        )
    };
    trampoline::<F>
}

unsafe extern "C" fn trampoline<F: Handler>(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
) -> c_int {
    // SAFETY: F is a zero-sized function item type (asserted in `handler`,
    // the only way to name this trampoline), so it has exactly one value,
    // which holds no bytes; `handler` was given one, so the type is inhabited.
    let f: F = unsafe { std::mem::zeroed() };
    // SAFETY: Redis calls a command with its own context and argc valid
    // argument strings, all alive until the command returns, which is as
    // long as the guard's body runs.
    let (ctx, args) = unsafe { (Ctx::from_raw(ctx), Args::from_raw(argv, argc)) };
    guard::command(ctx, args, |ctx, args| f.run(ctx, args))
}

/// How a command touches its keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// Where keys are found, for Redis Cluster, ACLs and `COMMAND GETKEYS`.
#[derive(Clone, Copy, Debug)]
pub struct Keys {
    /// The legacy (first, last, step) triple.
    pub first: c_int,
    pub last: c_int,
    pub step: c_int,
    /// The key specs (Redis 7 `COMMAND INFO`).
    pub specs: &'static [KeySpec],
}

/// One key spec: where it begins and how many keys follow.
#[derive(Clone, Copy, Debug)]
pub struct KeySpec {
    pub begin: Begin,
    /// The last key, relative to the beginning (-1: the last argument).
    pub last: c_int,
    pub step: c_int,
    pub access: Access,
}

/// Where a key spec begins.
#[derive(Clone, Copy, Debug)]
pub enum Begin {
    /// At this argument index.
    Index(c_int),
    /// After this keyword, searched from this index.
    Keyword(&'static CStr, c_int),
}

impl Keys {
    pub const NONE: Keys = Keys {
        first: 0,
        last: 0,
        step: 0,
        specs: &[],
    };
}

/// The kind of an argument, in `COMMAND DOCS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Key,
    String,
    Integer,
    Double,
    Block,
}

/// One argument, or a group of them, in `COMMAND DOCS`.
#[derive(Clone, Copy, Debug)]
pub struct Arg {
    pub name: &'static CStr,
    pub kind: Kind,
    /// The word before it (`WAIT`, `BLOCK`, ...).
    pub token: Option<&'static CStr>,
    pub optional: bool,
    pub multiple: bool,
    /// A key argument: the index of its key spec.
    pub key_spec: c_int,
    /// A group's arguments.
    pub args: &'static [Arg],
}

impl Arg {
    const fn of(name: &'static CStr, kind: Kind) -> Arg {
        Arg {
            name,
            kind,
            token: None,
            optional: false,
            multiple: false,
            key_spec: -1,
            args: &[],
        }
    }
    pub const fn key(name: &'static CStr, spec: c_int) -> Arg {
        Arg {
            key_spec: spec,
            ..Arg::of(name, Kind::Key)
        }
    }
    pub const fn string(name: &'static CStr) -> Arg {
        Arg::of(name, Kind::String)
    }
    pub const fn integer(name: &'static CStr) -> Arg {
        Arg::of(name, Kind::Integer)
    }
    pub const fn double(name: &'static CStr) -> Arg {
        Arg::of(name, Kind::Double)
    }
    pub const fn group(name: &'static CStr, args: &'static [Arg]) -> Arg {
        Arg {
            args,
            ..Arg::of(name, Kind::Block)
        }
    }
    pub const fn optional(self) -> Arg {
        Arg {
            optional: true,
            ..self
        }
    }
    pub const fn multiple(self) -> Arg {
        Arg {
            multiple: true,
            ..self
        }
    }
    pub const fn token(self, token: &'static CStr) -> Arg {
        Arg {
            token: Some(token),
            ..self
        }
    }
}

/// Everything about one command.
#[derive(Clone, Copy)]
pub struct Spec {
    /// Registered in lower case, as Redis registers its own commands:
    /// lookups ignore case, and Redis's own errors (wrong arity) quote it.
    pub name: &'static CStr,
    pub handler: CmdFunc,
    pub flags: &'static CStr,
    pub keys: Keys,
    pub arity: c_int,
    /// In `@dangerous` too (Redis 7.2+).
    pub dangerous: bool,
    pub summary: &'static CStr,
    pub args: &'static [Arg],
}

/// Registers a command; false if Redis refused.
pub fn create(ctx: Ctx<'_>, c: &Spec) -> bool {
    // SAFETY: a valid context during load; the strings are NUL-terminated
    // and static; the handler lives for the whole program.
    unsafe {
        api!(RedisModule_CreateCommand)(
            ctx.raw(),
            c.name.as_ptr(),
            Some(c.handler),
            c.flags.as_ptr(),
            c.keys.first,
            c.keys.last,
            c.keys.step,
        ) == OK
    }
}

/// Sets a registered command's docs (arity, key specs, arguments); false
/// if the server lacks the API or refused. The structures are leaked: a
/// few KB, once, at load, which Redis keeps pointers into.
pub fn set_info(ctx: Ctx<'_>, c: &Spec) -> bool {
    let Some(set) = optional_api!(RedisModule_SetCommandInfo) else {
        return false;
    };
    let info: &'static raw::RedisModuleCommandInfo = Box::leak(Box::new(info(c)));
    // SAFETY: a valid context during load; `name` is NUL-terminated.
    let cmd = unsafe { api!(RedisModule_GetCommand)(ctx.raw(), c.name.as_ptr()) };
    // SAFETY: a command handle Redis returned, and an info struct whose
    // pointers are all static or leaked.
    !cmd.is_null() && unsafe { set(cmd, std::ptr::from_ref(info).cast_mut()) } == OK
}

/// What a server offers for command ACL categories.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AclSupport {
    /// Redis 7.0: module commands belong to no category.
    Nothing,
    /// Redis 7.2: commands may join the standard categories, but a module
    /// cannot add one of its own (`AddACLCategory` is 7.4+).
    Standard,
    /// Redis 7.4+, Valkey: standard categories and the module's own.
    ModuleCategory,
}

pub fn acl_support() -> AclSupport {
    let commands = optional_api!(RedisModule_GetCommand).is_some()
        && optional_api!(RedisModule_SetCommandACLCategories).is_some();
    match (
        commands,
        optional_api!(RedisModule_AddACLCategory).is_some(),
    ) {
        (false, _) => AclSupport::Nothing,
        (true, false) => AclSupport::Standard,
        (true, true) => AclSupport::ModuleCategory,
    }
}

/// Adds an ACL category of the module's own (during load; needs
/// [`AclSupport::ModuleCategory`]).
pub fn add_acl_category(ctx: Ctx<'_>, category: &CStr) -> bool {
    let Some(add) = optional_api!(RedisModule_AddACLCategory) else {
        return false;
    };
    // SAFETY: a valid context during load; NUL-terminated name.
    unsafe { add(ctx.raw(), category.as_ptr()) == OK }
}

/// The ACL categories of a command: those its flags imply (`write`/`read`,
/// `fast`/`slow`), `dangerous` where it is, and `own` when given.
pub fn acl_categories(c: &Spec, own: Option<&CStr>) -> String {
    let flags = c.flags.to_string_lossy();
    let has = |f: &str| flags.split(' ').any(|w| w == f);
    let mut cats = Vec::new();
    if let Some(own) = own {
        cats.push(own.to_string_lossy().into_owned());
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

/// Puts a registered command in its categories; false when the server
/// refused or lacks the API.
pub fn set_acl_categories(ctx: Ctx<'_>, c: &Spec, own: Option<&CStr>) -> bool {
    let (Some(get), Some(set)) = (
        optional_api!(RedisModule_GetCommand),
        optional_api!(RedisModule_SetCommandACLCategories),
    ) else {
        return false;
    };
    let Ok(cats) = CString::new(acl_categories(c, own)) else {
        return false;
    };
    // SAFETY: a valid context during load; NUL-terminated name.
    let cmd = unsafe { get(ctx.raw(), c.name.as_ptr()) };
    // SAFETY: a command handle from GetCommand and a NUL-terminated list.
    !cmd.is_null() && unsafe { set(cmd, cats.as_ptr()) } == OK
}

// ---- COMMAND INFO / DOCS -----------------------------------------------------

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
    r.name = a.name.as_ptr();
    r.type_ = match a.kind {
        Kind::Key => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_KEY,
        Kind::String => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_STRING,
        Kind::Integer => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_INTEGER,
        Kind::Double => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_DOUBLE,
        Kind::Block => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_BLOCK,
    };
    r.key_spec_index = a.key_spec;
    r.token = a.token.map_or(null(), CStr::as_ptr);
    let mut flags = 0;
    if a.optional {
        flags |= raw::REDISMODULE_CMD_ARG_OPTIONAL;
    }
    if a.multiple {
        flags |= raw::REDISMODULE_CMD_ARG_MULTIPLE;
    }
    r.flags = flags as c_int;
    if !a.args.is_empty() {
        r.subargs = leak(a.args.iter().map(raw_arg).collect(), zeroed_arg());
    }
    r
}

/// A null-terminated array, leaked for Redis.
fn leak<T>(mut v: Vec<T>, terminator: T) -> *mut T {
    v.push(terminator);
    Box::leak(v.into_boxed_slice()).as_mut_ptr()
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

fn raw_key_spec(k: &KeySpec) -> raw::RedisModuleCommandKeySpec {
    let flags = match k.access {
        Access::Write => {
            raw::REDISMODULE_CMD_KEY_RW
                | raw::REDISMODULE_CMD_KEY_ACCESS
                | raw::REDISMODULE_CMD_KEY_UPDATE
        }
        Access::Read => raw::REDISMODULE_CMD_KEY_RO | raw::REDISMODULE_CMD_KEY_ACCESS,
    };
    let mut s = zero_key_spec();
    s.flags = u64::from(flags);
    match k.begin {
        Begin::Index(pos) => {
            s.begin_search_type = raw::RedisModuleKeySpecBeginSearchType_REDISMODULE_KSPEC_BS_INDEX;
            s.bs = raw::RedisModuleCommandKeySpec__bindgen_ty_1 {
                index: raw::RedisModuleCommandKeySpec__bindgen_ty_1__bindgen_ty_1 { pos },
            };
        }
        Begin::Keyword(keyword, startfrom) => {
            s.begin_search_type =
                raw::RedisModuleKeySpecBeginSearchType_REDISMODULE_KSPEC_BS_KEYWORD;
            s.bs = raw::RedisModuleCommandKeySpec__bindgen_ty_1 {
                keyword: raw::RedisModuleCommandKeySpec__bindgen_ty_1__bindgen_ty_2 {
                    keyword: keyword.as_ptr(),
                    startfrom,
                },
            };
        }
    }
    s.find_keys_type = raw::RedisModuleKeySpecFindKeysType_REDISMODULE_KSPEC_FK_RANGE;
    s.fk = raw::RedisModuleCommandKeySpec__bindgen_ty_2 {
        range: raw::RedisModuleCommandKeySpec__bindgen_ty_2__bindgen_ty_1 {
            lastkey: k.last,
            keystep: k.step,
            limit: 0,
        },
    };
    s
}

static VERSION: raw::RedisModuleCommandInfoVersion = raw::RedisModuleCommandInfoVersion {
    version: 1,
    sizeof_historyentry: std::mem::size_of::<raw::RedisModuleCommandHistoryEntry>(),
    sizeof_keyspec: std::mem::size_of::<raw::RedisModuleCommandKeySpec>(),
    sizeof_arg: std::mem::size_of::<raw::RedisModuleCommandArg>(),
};

fn info(c: &Spec) -> raw::RedisModuleCommandInfo {
    raw::RedisModuleCommandInfo {
        version: &VERSION,
        summary: c.summary.as_ptr(),
        complexity: c"O(1) per key".as_ptr(),
        since: c"0.1.0".as_ptr(),
        history: null_mut(),
        tips: null(),
        arity: c.arity,
        key_specs: leak(
            c.keys.specs.iter().map(raw_key_spec).collect(),
            zero_key_spec(),
        ),
        args: leak(c.args.iter().map(raw_arg).collect(), zeroed_arg()),
    }
}
