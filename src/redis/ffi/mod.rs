//! The FFI wall: the only code that touches the Redis module API, and the
//! only code in the crate allowed `unsafe` (the crate denies `unsafe_code`
//! everywhere else). Every raw call is wrapped once in a safe function
//! whose signature carries what keeps it sound, with a `// SAFETY:` line;
//! every entry point Redis calls (commands, blocked-client callbacks, type
//! callbacks, config and INFO callbacks, event-loop hooks) is an `extern
//! "C"` trampoline here that turns raw pointers into the safe types below
//! and runs the module's safe code behind the panic wall ([`guard`]).
//!
//! Lifetimes: a [`Ctx<'a>`] is the context Redis handed to one callback
//! (a command, a reply callback, a type callback) and lives no longer than
//! it; the arguments ([`Args<'a>`], [`RStr<'a>`]) and the bytes they lend
//! out live as long, and a [`Key<'a>`] cannot outlive its context. So the
//! rest of the module cannot keep a Redis pointer past the call that owns it.
//!
//! - this file: contexts, arguments, replies, replication, notifications;
//! - [`key`]: open keys and the values of the module's data types;
//! - [`types`]: registering a data type and its persistence callbacks;
//! - [`blocked`]: held clients, and the main-thread hook that releases them;
//! - [`command`]: registering commands, their docs and ACL categories;
//! - [`config`], [`info`]: module configs and the INFO section;
//! - [`guard`]: the panic wall.
//!
//! The hot path talks to Redis through these directly: arguments are
//! borrowed byte slices, replies are written as they are produced, the key
//! is opened once.

use std::cell::Cell;
use std::ffi::{CStr, c_int};
use std::marker::PhantomData;
use std::ptr::{NonNull, null};

use redis_module::raw;

/// A Redis API function pointer, to call inside an `unsafe` block (whose
/// SAFETY comment covers the call). Reading the pointer is sound: Redis
/// writes every one once, in `RedisModule_Init`, before any of the
/// module's code runs, and never again. Those used through this macro all
/// exist on Redis 7.0 and later, so `None` would mean a server older than
/// the module supports: the panic guard turns that into an error reply,
/// never a crash.
macro_rules! api {
    ($name:ident) => {{
        let f = raw::$name;
        match f {
            Some(f) => f,
            None => $crate::redis::ffi::missing_api(stringify!($name)),
        }
    }};
}

#[cold]
#[inline(never)]
pub(crate) fn missing_api(name: &str) -> ! {
    panic!("Redis module API {name} is not available on this server")
}

/// Reads an optional API pointer (`None` on servers that lack it).
macro_rules! optional_api {
    ($name:ident) => {{
        // SAFETY: as in `api!`: written once by RedisModule_Init.
        unsafe { raw::$name }
    }};
}

// The submodules come after the macros above, which they use.
pub mod blocked;
pub mod command;
pub mod config;
pub mod guard;
pub mod info;
pub mod key;
pub mod types;

pub use blocked::{BlockedClient, Held};
pub use key::{Holds, Key};

/// The class of a keyspace notification (`notify-keyspace-events`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventClass {
    /// `d`: the module's own types.
    Module,
    /// `g`: generic commands (DEL, EXPIRE, ...).
    Generic,
    /// `h`: hash commands.
    Hash,
    /// `x`: expirations.
    Expired,
}

/// A Redis command callback.
pub type CmdFunc = unsafe extern "C" fn(
    *mut raw::RedisModuleCtx,
    *mut *mut raw::RedisModuleString,
    c_int,
) -> c_int;

const OK: c_int = raw::REDISMODULE_OK as c_int;

// ---- contexts, arguments, strings ------------------------------------------

/// Something Redis lent the module for `'a`: the context of one callback,
/// an argument, the IO of a type callback. It cannot outlive the call.
pub struct Lent<'a, T> {
    ptr: NonNull<T>,
    _life: PhantomData<&'a T>,
}

impl<T> Clone for Lent<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Lent<'_, T> {}

impl<'a, T> Lent<'a, T> {
    /// # Safety
    /// `ptr` is NULL, or something Redis passed to the running callback
    /// that stays valid until it returns, and `'a` ends before that.
    pub(crate) unsafe fn from_raw(ptr: *mut T) -> Option<Lent<'a, T>> {
        NonNull::new(ptr).map(|ptr| Lent {
            ptr,
            _life: PhantomData,
        })
    }

    fn raw(self) -> *mut T {
        self.ptr.as_ptr()
    }
}

/// The context of one call into the module.
pub type Ctx<'a> = Lent<'a, raw::RedisModuleCtx>;

impl<'a> Ctx<'a> {
    fn flags(self) -> u32 {
        // SAFETY: a valid context (see `from_raw`).
        let f = unsafe { api!(RedisModule_GetContextFlags)(self.raw()) };
        u32::try_from(f).unwrap_or(0)
    }

    /// True when the caller may not be held (MULTI, Lua, replicated,
    /// loading): blocking would fail there.
    pub fn deny_blocking(self) -> bool {
        self.flags()
            & (raw::REDISMODULE_CTX_FLAGS_MULTI
                | raw::REDISMODULE_CTX_FLAGS_LUA
                | raw::REDISMODULE_CTX_FLAGS_DENY_BLOCKING
                | raw::REDISMODULE_CTX_FLAGS_REPLICATED
                | raw::REDISMODULE_CTX_FLAGS_LOADING)
            != 0
    }

    /// True when the command came over the replication link from a master,
    /// or from the AOF while the server loads.
    pub fn from_master_or_loading(self) -> bool {
        self.flags() & (raw::REDISMODULE_CTX_FLAGS_REPLICATED | raw::REDISMODULE_CTX_FLAGS_LOADING)
            != 0
    }

    // ---- replies ----

    pub fn reply_array(self, len: usize) {
        // SAFETY: a valid context; Redis copies what it writes.
        unsafe { api!(RedisModule_ReplyWithArray)(self.raw(), c_long(len)) };
    }

    /// A RESP3 map; Redis writes a flat array of 2×pairs on RESP2.
    pub fn reply_map(self, pairs: usize) {
        // SAFETY: a valid context.
        unsafe { api!(RedisModule_ReplyWithMap)(self.raw(), c_long(pairs)) };
    }

    pub fn reply_i64(self, v: i64) {
        // SAFETY: a valid context.
        unsafe { api!(RedisModule_ReplyWithLongLong)(self.raw(), v) };
    }

    pub fn reply_i64s(self, vs: &[i64]) {
        self.reply_array(vs.len());
        for &v in vs {
            self.reply_i64(v);
        }
    }

    pub fn reply_null(self) {
        // SAFETY: a valid context.
        unsafe { api!(RedisModule_ReplyWithNull)(self.raw()) };
    }

    pub fn reply_simple(self, s: &CStr) {
        // SAFETY: a valid context and a NUL-terminated string Redis copies.
        unsafe { api!(RedisModule_ReplyWithSimpleString)(self.raw(), s.as_ptr()) };
    }

    pub fn reply_bulk(self, s: &[u8]) {
        // SAFETY: a valid context; `s` is valid for its length, Redis copies it.
        unsafe { api!(RedisModule_ReplyWithStringBuffer)(self.raw(), s.as_ptr().cast(), s.len()) };
    }

    /// Replies an error; `msg` starts with its code (`ERR …`, `WRONGTYPE …`).
    pub fn reply_error(self, msg: &str) {
        let c = c_text(msg, |b| b != b'\r' && b != b'\n');
        // SAFETY: a valid context and a NUL-terminated string Redis copies.
        unsafe { api!(RedisModule_ReplyWithError)(self.raw(), c.as_ptr().cast()) };
    }

    pub fn log(self, level: &CStr, msg: &str) {
        log_raw(self.raw(), level, msg);
    }

    // ---- writes: replication, notifications ----

    /// Propagates `cmd key payload [expire_at_ms]` to replicas and the AOF.
    pub fn replicate(self, cmd: &CStr, key: RStr<'_>, payload: &[u8], expire_at_ms: Option<i64>) {
        // The expiry goes as decimal text written here, not as Redis's `l`
        // format: Redis turns an `l` into a string object through
        // `sdsfromlonglong` (a conversion and two allocations), about 600
        // instructions a PERMIT write (BENCHMARKS.md) against 106 here.
        // The replicas and the AOF see the same argument either way.
        let mut text = itoa::Buffer::new();
        match expire_at_ms {
            Some(at) => self.replicate_args(cmd, key, &[payload, text.format(at).as_bytes()]),
            None => self.replicate_args(cmd, key, &[payload]),
        }
    }

    /// Propagates `DEL key`.
    pub fn replicate_del(self, key: RStr<'_>) {
        // SAFETY: a valid context and a live key name; "s" matches it.
        unsafe {
            api!(RedisModule_Replicate)(self.raw(), c"DEL".as_ptr(), c"s".as_ptr(), key.raw())
        };
    }

    /// Propagates `cmd key arg...` (at most four arguments; more are a bug
    /// and propagate nothing).
    pub fn replicate_args(self, cmd: &CStr, key: RStr<'_>, args: &[&[u8]]) {
        let (c, k) = (cmd.as_ptr(), key.raw());
        // SAFETY: reading the API pointer (see `api!`).
        let replicate = unsafe { api!(RedisModule_Replicate) };
        let b = |i: usize| args.get(i).map_or((null(), 0), |a| (a.as_ptr(), a.len()));
        let ((p0, n0), (p1, n1), (p2, n2), (p3, n3)) = (b(0), b(1), b(2), b(3));
        // SAFETY: a valid context; `key` is a live Redis string (Redis
        // takes a reference), each buffer is valid for its length (copied),
        // and the format has one `b` (pointer, length) per argument given.
        unsafe {
            match args.len() {
                0 => replicate(self.raw(), c, c"s".as_ptr(), k),
                1 => replicate(self.raw(), c, c"sb".as_ptr(), k, p0, n0),
                2 => replicate(self.raw(), c, c"sbb".as_ptr(), k, p0, n0, p1, n1),
                3 => replicate(self.raw(), c, c"sbbb".as_ptr(), k, p0, n0, p1, n1, p2, n2),
                4 => replicate(
                    self.raw(),
                    c,
                    c"sbbbb".as_ptr(),
                    k,
                    p0,
                    n0,
                    p1,
                    n1,
                    p2,
                    n2,
                    p3,
                    n3,
                ),
                _ => 0,
            }
        };
    }

    /// Propagates the command as the client sent it.
    pub fn replicate_verbatim(self) {
        // SAFETY: a valid command context.
        unsafe { api!(RedisModule_ReplicateVerbatim)(self.raw()) };
    }

    /// Tells Redis the key changed (WATCH, client-side caching). The module
    /// sets `NO_IMPLICIT_SIGNAL_MODIFIED`, so only real writes signal.
    pub fn signal_modified(self, key: RStr<'_>) {
        // SAFETY: a valid context and a live key name.
        unsafe { api!(RedisModule_SignalModifiedKey)(self.raw(), key.raw()) };
    }

    /// A keyspace notification of class "module" (`d`).
    pub fn notify(self, event: &CStr, key: RStr<'_>) {
        self.notify_as(EventClass::Module, event, key);
    }

    /// A keyspace notification of the class Redis's own command would fire.
    pub fn notify_as(self, class: EventClass, event: &CStr, key: RStr<'_>) {
        let class = match class {
            EventClass::Module => raw::REDISMODULE_NOTIFY_MODULE,
            EventClass::Generic => raw::REDISMODULE_NOTIFY_GENERIC,
            EventClass::Hash => raw::REDISMODULE_NOTIFY_HASH,
            EventClass::Expired => raw::REDISMODULE_NOTIFY_EXPIRED,
        };
        // SAFETY: a valid context, a NUL-terminated event and a live key name.
        unsafe {
            api!(RedisModule_NotifyKeyspaceEvent)(
                self.raw(),
                class as c_int,
                event.as_ptr(),
                key.raw(),
            )
        };
    }

    /// Opens `name` for reading, or for reading and writing.
    ///
    /// One handle per key name at a time: a value borrowed through one
    /// handle must not outlive a write through another on the same name
    /// (THROTTLE.ALL, the one command that opens several keys, refuses a
    /// repeated key before it opens any).
    pub fn open_key(self, name: RStr<'a>, write: bool) -> Key<'a> {
        let mode = if write {
            raw::REDISMODULE_READ | raw::REDISMODULE_WRITE
        } else {
            raw::REDISMODULE_READ
        };
        // SAFETY: a valid context and key name; the handle is closed on drop.
        let ptr = unsafe { api!(RedisModule_OpenKey)(self.raw(), name.raw(), mode as c_int) };
        Key {
            ptr: ptr.cast(),
            found: Cell::new(None),
            _ctx: PhantomData,
        }
    }

    /// The database the calling client has selected.
    pub fn selected_db(self) -> i32 {
        // SAFETY: a valid context.
        unsafe { api!(RedisModule_GetSelectedDb)(self.raw()) }
    }

    /// The value of a string key, read through `GET` (so the string keeps
    /// its encoding: reading it in place would decode an integer string).
    /// `None` when the key holds no string.
    pub fn get_string(self, key: RStr<'_>) -> Option<Vec<u8>> {
        // SAFETY: a valid command context and a live key name; the reply is
        // read, then freed once below.
        let reply = unsafe {
            api!(RedisModule_Call)(self.raw(), c"GET".as_ptr(), c"s".as_ptr(), key.raw())
        };
        if reply.is_null() {
            return None;
        }
        let mut len = 0usize;
        // SAFETY: a reply RedisModule_Call returned, not yet freed.
        let kind = unsafe { api!(RedisModule_CallReplyType)(reply) };
        let bytes = (kind == raw::REDISMODULE_REPLY_STRING as c_int).then(|| {
            // SAFETY: a string reply; the pointer is valid for `len` bytes
            // until the reply is freed.
            unsafe {
                let p = api!(RedisModule_CallReplyStringPtr)(reply, &mut len);
                if p.is_null() {
                    Vec::new()
                } else {
                    std::slice::from_raw_parts(p.cast::<u8>(), len).to_vec()
                }
            }
        });
        // SAFETY: the reply from RedisModule_Call, freed once.
        unsafe { api!(RedisModule_FreeCallReply)(reply) };
        bytes
    }
}

fn c_long(n: usize) -> std::ffi::c_long {
    std::ffi::c_long::try_from(n).unwrap_or(std::ffi::c_long::MAX)
}

/// `msg` as NUL-terminated bytes, keeping only the bytes `keep` accepts
/// (NUL is never kept).
fn c_text(msg: &str, keep: impl Fn(u8) -> bool) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(msg.len().saturating_add(1));
    bytes.extend(msg.bytes().filter(|&b| b != 0 && keep(b)));
    bytes.push(0);
    bytes
}

fn log_raw(ctx: *mut raw::RedisModuleCtx, level: &CStr, msg: &str) {
    let c = c_text(msg, |_| true);
    // SAFETY: Redis accepts a NULL or valid context; the format is "%s"
    // with one NUL-terminated argument.
    unsafe { api!(RedisModule_Log)(ctx, level.as_ptr(), c"%s".as_ptr(), c.as_ptr()) };
}

/// Logs without a context (type callbacks, the release thread's errors).
pub fn log_global(level: &CStr, msg: &str) {
    log_raw(std::ptr::null_mut(), level, msg);
}

/// A Redis string borrowed for `'a` (a command argument, a key name).
pub type RStr<'a> = Lent<'a, raw::RedisModuleString>;

impl<'a> RStr<'a> {
    /// The bytes, borrowed for as long as the string is.
    pub fn bytes(self) -> &'a [u8] {
        let mut len = 0usize;
        // SAFETY: a live Redis string; the pointer Redis returns is valid
        // for `len` bytes while the string lives, which is `'a`.
        unsafe {
            let p = api!(RedisModule_StringPtrLen)(self.raw(), &mut len);
            if p.is_null() || len == 0 {
                return &[];
            }
            std::slice::from_raw_parts(p.cast::<u8>(), len)
        }
    }
}

/// A command's arguments (`argv[0]` is the command name).
#[derive(Clone, Copy)]
pub struct Args<'a> {
    argv: &'a [*mut raw::RedisModuleString],
}

impl<'a> Args<'a> {
    /// # Safety
    /// `argv` points to `argc` valid strings that outlive `'a`.
    pub(crate) unsafe fn from_raw(argv: *mut *mut raw::RedisModuleString, argc: c_int) -> Args<'a> {
        let len = usize::try_from(argc).unwrap_or(0);
        let argv = if argv.is_null() || len == 0 {
            &[][..]
        } else {
            // SAFETY: per the contract above.
            unsafe { std::slice::from_raw_parts(argv, len) }
        };
        Args { argv }
    }

    pub fn len(&self) -> usize {
        self.argv.len()
    }

    pub fn is_empty(&self) -> bool {
        self.argv.is_empty()
    }

    /// Argument `i`, if there is one.
    pub fn get(&self, i: usize) -> Option<RStr<'a>> {
        // SAFETY: `argv` holds strings alive for `'a` (see `from_raw`).
        unsafe { RStr::from_raw(*self.argv.get(i)?) }
    }

    /// The bytes of argument `i` (empty past the end: the parsers then
    /// name the missing argument).
    pub fn bytes(&self, i: usize) -> &'a [u8] {
        self.get(i).map_or(&[][..], |a| a.bytes())
    }
}

/// The server's own microsecond wall clock (`ustime()`), on servers that
/// export it (Redis 7.2+, Valkey).
pub fn server_micros() -> Option<i64> {
    // SAFETY: a function Redis exports for modules; it only reads the clock.
    optional_api!(RedisModule_Microseconds).map(|f| unsafe { f() })
}

/// Whether the server exports its microsecond clock.
pub fn has_server_micros() -> bool {
    optional_api!(RedisModule_Microseconds).is_some()
}

static VALKEY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Reads, once at load, whether the server is Valkey (`INFO server`'s
/// `server_name`, which Redis does not have).
pub fn detect_valkey(ctx: Ctx<'_>) {
    // SAFETY: a valid context during load; the info data is read, then
    // freed once; the field pointer is used before the data is freed.
    let valkey = unsafe {
        let data = api!(RedisModule_GetServerInfo)(ctx.raw(), c"server".as_ptr());
        if data.is_null() {
            false
        } else {
            let name = api!(RedisModule_ServerInfoGetFieldC)(data, c"server_name".as_ptr());
            let valkey = !name.is_null() && CStr::from_ptr(name).to_bytes() == b"valkey";
            api!(RedisModule_FreeServerInfo)(ctx.raw(), data);
            valkey
        }
    };
    VALKEY.store(valkey, std::sync::atomic::Ordering::Relaxed);
}

/// Whether the server is Valkey (read at load by [`detect_valkey`]).
pub fn is_valkey() -> bool {
    VALKEY.load(std::sync::atomic::Ordering::Relaxed)
}

/// The server's version as `0x00MMmmpp` (7.2.6 is `0x00070206`).
pub fn server_version() -> i32 {
    match optional_api!(RedisModule_GetServerVersion) {
        // SAFETY: a function Redis exports; it only reads a constant.
        Some(f) => unsafe { f() },
        None => 0,
    }
}

/// Sets module options (a bit set of `REDISMODULE_OPTIONS_*`).
pub fn set_module_options(ctx: Ctx<'_>, options: u32) {
    // SAFETY: a valid context during load.
    unsafe { api!(RedisModule_SetModuleOptions)(ctx.raw(), options as c_int) };
}

/// The context Redis passed to OnLoad (through the redis-module crate).
pub fn load_context(ctx: &redis_module::Context) -> Option<Ctx<'_>> {
    // SAFETY: the crate's Context wraps the context Redis passed to
    // OnLoad, valid while the crate's init function runs, which the
    // borrow of `ctx` bounds.
    unsafe { Ctx::from_raw(ctx.ctx) }
}
