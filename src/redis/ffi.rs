//! The FFI wall: every raw Redis module API call the module makes, each
//! wrapped once in a safe function whose signature carries what keeps it
//! sound. Nothing outside this file calls a `RedisModule_*` pointer.
//!
//! Lifetimes: a [`Ctx<'a>`] is the context Redis handed to one callback
//! (a command, a reply callback, a type callback) and lives no longer than
//! it; the arguments ([`Args<'a>`], [`RStr<'a>`]) and the bytes they lend
//! out live as long, and a [`Key<'a>`] cannot outlive its context. So the
//! rest of the module cannot keep a Redis pointer past the call that owns it.
//!
//! The hot path talks to Redis through these directly: arguments are
//! borrowed byte slices, replies are written as they are produced, the key
//! is opened once.

use std::cell::Cell;
use std::ffi::{CStr, c_char, c_int, c_longlong, c_void};
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

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
            None => missing_api(stringify!($name)),
        }
    }};
}

#[cold]
#[inline(never)]
fn missing_api(name: &str) -> ! {
    panic!("Redis module API {name} is not available on this server")
}

/// Reads an optional API pointer (`None` on servers that lack it).
macro_rules! optional_api {
    ($name:ident) => {{
        // SAFETY: as in `api!`: written once by RedisModule_Init.
        unsafe { raw::$name }
    }};
}

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
    pub unsafe fn from_raw(ptr: *mut T) -> Option<Lent<'a, T>> {
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
        let (c, k, p, n) = (cmd.as_ptr(), key.raw(), payload.as_ptr(), payload.len());
        // SAFETY: reading the API pointer (see `api!`).
        let replicate = unsafe { api!(RedisModule_Replicate) };
        // SAFETY: a valid context; `key` is a live Redis string (Redis
        // takes a reference), `payload` is valid for its length (copied),
        // and each format letter matches its argument.
        unsafe {
            match expire_at_ms {
                Some(at) => replicate(
                    self.raw(),
                    c,
                    c"sbl".as_ptr(),
                    k,
                    p,
                    n,
                    c_longlong::from(at),
                ),
                None => replicate(self.raw(), c, c"sb".as_ptr(), k, p, n),
            }
        };
    }

    /// Propagates `DEL key`.
    pub fn replicate_del(self, key: RStr<'_>) {
        // SAFETY: a valid context and a live key name; "s" matches it.
        unsafe {
            api!(RedisModule_Replicate)(self.raw(), c"DEL".as_ptr(), c"s".as_ptr(), key.raw())
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
        // SAFETY: a valid context, a NUL-terminated event and a live key name.
        unsafe {
            api!(RedisModule_NotifyKeyspaceEvent)(
                self.raw(),
                raw::REDISMODULE_NOTIFY_MODULE as c_int,
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

    // ---- blocking ----

    /// Blocks the calling client with Redis's blocked-client API (no Redis
    /// timeout: the module releases it). `None` if Redis refused.
    pub fn block_client(self, callbacks: &BlockCallbacks) -> Option<BlockedClient> {
        // SAFETY: a valid command context of a client that may block (the
        // caller checked `deny_blocking`); the callbacks are `extern "C"`
        // functions that live for the whole program.
        let bc = unsafe {
            api!(RedisModule_BlockClient)(
                self.raw(),
                Some(callbacks.reply),
                Some(callbacks.timeout),
                Some(callbacks.free),
                0,
            )
        };
        let bc = NonNull::new(bc)?;
        // SAFETY: `bc` was just returned by BlockClient and is still blocked.
        unsafe { api!(RedisModule_SetDisconnectCallback)(bc.as_ptr(), Some(callbacks.disconnect)) };
        Some(BlockedClient(bc))
    }

    /// The private data handed to `RedisModule_UnblockClient`, in a reply
    /// callback's context; `None` when there was none.
    ///
    /// # Safety
    /// `self` is the context of a reply callback of a client blocked with
    /// private data of type `T` (or none).
    pub unsafe fn blocked_privdata<T>(self) -> Option<&'a T> {
        // SAFETY: per the contract above; Redis frees it (through the free
        // callback) only after the reply callback returns.
        unsafe {
            api!(RedisModule_GetBlockedClientPrivateData)(self.raw())
                .cast::<T>()
                .as_ref()
        }
    }

    /// The identity of the blocked client whose timeout callback runs in
    /// this context (see [`BlockedClient::id`]).
    pub fn blocked_id(self) -> Option<usize> {
        // SAFETY: a valid context; Redis returns NULL outside a blocked client.
        let bc = unsafe { api!(RedisModule_GetBlockedClientHandle)(self.raw()) };
        (!bc.is_null()).then(|| BlockedClient::id_of(bc))
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
    pub unsafe fn from_raw(argv: *mut *mut raw::RedisModuleString, argc: c_int) -> Args<'a> {
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

// ---- keys --------------------------------------------------------------------

/// A registered module data type whose values are `Self`.
///
/// # Safety
/// Every value Redis stores under [`ModuleType::redis_type`] is a
/// `Box<Self>` created by this module (so it may be read and written as a
/// `Self`).
pub unsafe trait ModuleType: Sized {
    fn redis_type() -> *mut raw::RedisModuleType;
}

/// What an open key holds instead of the module type asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holds {
    /// A string (redis-cell keeps its limiters as strings).
    String,
    /// Anything else: another module type, a list, a hash, ...
    Other,
}

/// An open key; closed on drop. Opened for reading only, a missing key has
/// no handle (Redis returns NULL) and holds nothing.
pub struct Key<'a> {
    ptr: *mut raw::RedisModuleKey,
    /// The module value this handle last found or stored, with its type,
    /// so a command checks the key's type once: the key changes only
    /// through this handle's `&mut self` methods, which keep it current.
    found: Cell<Option<(*mut raw::RedisModuleType, NonNull<c_void>)>>,
    _ctx: PhantomData<Ctx<'a>>,
}

impl Key<'_> {
    /// One type check: the value when the key holds a `T`, else what it
    /// holds instead (`Ok(None)`: nothing). The common case, a key of ours,
    /// takes two API calls (the type, then the value).
    fn value_ptr<T: ModuleType>(&self) -> std::result::Result<Option<NonNull<T>>, Holds> {
        let ty = T::redis_type();
        if let Some((found_ty, value)) = self.found.get()
            && found_ty == ty
        {
            return Ok(Some(value.cast()));
        }
        if self.ptr.is_null() {
            return Ok(None);
        }
        // SAFETY: an open key handle; Redis answers NULL for an empty key
        // or one that holds no module value.
        let got = unsafe { api!(RedisModule_ModuleTypeGetType)(self.ptr) };
        if got == ty {
            // SAFETY: the key holds a value of T's module type (just checked).
            let value = NonNull::new(unsafe { api!(RedisModule_ModuleTypeGetValue)(self.ptr) });
            self.found.set(value.map(|v| (ty, v)));
            return Ok(value.map(NonNull::cast));
        }
        if !got.is_null() {
            return Err(Holds::Other);
        }
        // SAFETY: an open key handle.
        let kt = unsafe { api!(RedisModule_KeyType)(self.ptr) } as isize;
        match kt {
            _ if kt == raw::REDISMODULE_KEYTYPE_EMPTY => Ok(None),
            _ if kt == raw::REDISMODULE_KEYTYPE_STRING => Err(Holds::String),
            _ => Err(Holds::Other),
        }
    }

    /// The value when the key holds one of type `T` (`Ok(None)`: nothing
    /// there), else what it holds instead.
    pub fn get<T: ModuleType>(&self) -> std::result::Result<Option<&T>, Holds> {
        // SAFETY: values of T's type are Box<T> (ModuleType's contract),
        // owned by the keyspace, which nothing else touches while this
        // command runs; the borrow ends with the key handle's.
        self.value_ptr::<T>()
            .map(|p| p.map(|p| unsafe { &*p.as_ptr() }))
    }

    /// The value, mutably, when the key holds one of type `T`.
    pub fn value_mut<T: ModuleType>(&mut self) -> Option<&mut T> {
        // SAFETY: as in `get`; `&mut self` makes this the only borrow.
        self.value_ptr::<T>()
            .ok()
            .flatten()
            .map(|p| unsafe { &mut *p.as_ptr() })
    }

    /// Stores a new value at an empty key, or in place of whatever the key
    /// holds. Returns false (and frees the value) if Redis refused it.
    pub fn set_value<T: ModuleType>(&mut self, value: Box<T>) -> bool {
        if self.ptr.is_null() {
            return false; // opened for reading, and missing: nothing to write through
        }
        let p = Box::into_raw(value).cast::<c_void>();
        // SAFETY: a non-NULL open key (Redis refuses the write, and we free
        // `p`, when it was opened for reading only); on success Redis owns `p` and
        // frees it through T's free callback.
        let rc = unsafe { api!(RedisModule_ModuleTypeSetValue)(self.ptr, T::redis_type(), p) };
        if rc != OK {
            // SAFETY: Redis did not take ownership: `p` is still our Box.
            drop(unsafe { Box::from_raw(p.cast::<T>()) });
            return false;
        }
        self.found
            .set(NonNull::new(p).map(|v| (T::redis_type(), v)));
        true
    }

    /// Sets the absolute expiry in Unix milliseconds (server time);
    /// `server_now_ms` is read only on servers without `SetAbsExpire`.
    pub fn set_expire_at_ms(&mut self, at_ms: i64, server_now_ms: impl FnOnce() -> i64) {
        if self.ptr.is_null() {
            return;
        }
        match optional_api!(RedisModule_SetAbsExpire) {
            // SAFETY: a non-NULL open key (Redis refuses it unless the key
            // was opened for writing and holds a value).
            Some(f) => unsafe {
                f(self.ptr, at_ms);
            },
            // SAFETY: as above (the relative form, for servers without SetAbsExpire).
            None => unsafe {
                api!(RedisModule_SetExpire)(self.ptr, at_ms.saturating_sub(server_now_ms()).max(1));
            },
        }
    }

    /// The bytes of a string value (read access), or `None`.
    pub fn string_bytes(&self) -> Option<&[u8]> {
        if self.ptr.is_null() {
            return None;
        }
        let mut len = 0usize;
        // SAFETY: an open key holding a string (the caller checked
        // `holds`); the DMA pointer stays valid until the key is changed or
        // closed, which the borrow of `self` prevents.
        unsafe {
            let p = api!(RedisModule_StringDMA)(self.ptr, &mut len, raw::REDISMODULE_READ as c_int);
            if p.is_null() {
                return None;
            }
            Some(std::slice::from_raw_parts(p.cast::<u8>().cast_const(), len))
        }
    }

    /// Deletes the key's value.
    pub fn delete(&mut self) {
        if self.ptr.is_null() {
            return;
        }
        // SAFETY: a non-NULL open key (Redis refuses it unless opened for
        // writing; a no-op on an empty key).
        unsafe { api!(RedisModule_DeleteKey)(self.ptr) };
        self.found.set(None);
    }
}

impl Drop for Key<'_> {
    fn drop(&mut self) {
        if !self.ptr.is_null() {
            // SAFETY: a handle this value opened and closes exactly once.
            unsafe { api!(RedisModule_CloseKey)(self.ptr) };
        }
    }
}

// ---- blocked clients -------------------------------------------------------------

/// A Redis command callback.
pub type CmdFunc = unsafe extern "C" fn(
    *mut raw::RedisModuleCtx,
    *mut *mut raw::RedisModuleString,
    c_int,
) -> c_int;

/// The callbacks of a blocked client.
pub struct BlockCallbacks {
    /// Writes the reply once the client is unblocked.
    pub reply: CmdFunc,
    /// `CLIENT UNBLOCK` (the module sets no Redis timeout).
    pub timeout: CmdFunc,
    /// Frees the private data passed to [`BlockedClient::unblock`].
    pub free: unsafe extern "C" fn(*mut raw::RedisModuleCtx, *mut c_void),
    /// The client disconnected while blocked.
    pub disconnect:
        unsafe extern "C" fn(*mut raw::RedisModuleCtx, *mut raw::RedisModuleBlockedClient),
}

/// A blocked client's handle. Unblocking consumes it, so each blocked
/// client is unblocked at most once through it.
#[derive(Debug)]
pub struct BlockedClient(NonNull<raw::RedisModuleBlockedClient>);

// SAFETY: Redis documents RedisModule_UnblockClient as callable from any
// thread; the handle is only used to unblock (once) and as an identity.
unsafe impl Send for BlockedClient {}

impl BlockedClient {
    /// The handle's identity (to find it again from a disconnect callback).
    pub fn id(&self) -> usize {
        self.0.as_ptr() as usize
    }

    /// Identity of a raw handle Redis passes to a disconnect callback.
    pub fn id_of(bc: *mut raw::RedisModuleBlockedClient) -> usize {
        bc as usize
    }

    /// Unblocks the client; Redis then runs the reply callback (on its main
    /// thread) with `privdata`, and frees it through the free callback.
    /// Callable from any thread.
    pub fn unblock<T>(self, privdata: Option<Box<T>>) {
        let p = privdata.map_or(std::ptr::null_mut(), |b| Box::into_raw(b).cast::<c_void>());
        // SAFETY: a handle from BlockClient not unblocked before (`self` is
        // consumed); Redis takes ownership of `p`.
        unsafe { api!(RedisModule_UnblockClient)(self.0.as_ptr(), p) };
    }
}

// ---- module setup (load time) ------------------------------------------------

/// The INFO callback Redis calls for `INFO throttle`.
pub type InfoFunc = unsafe extern "C" fn(*mut raw::RedisModuleInfoCtx, c_int);

/// Registers the module's INFO callback (replacing any earlier one).
pub fn register_info_func(ctx: Ctx<'_>, f: InfoFunc) {
    // SAFETY: a valid context during load; the callback lives for ever.
    unsafe { api!(RedisModule_RegisterInfoFunc)(ctx.raw(), Some(f)) };
}

/// The crate's INFO builder over the context Redis passed to the INFO callback.
///
/// # Safety
/// `ptr` is the context Redis passed to the running INFO callback.
pub unsafe fn info_context(ptr: *mut raw::RedisModuleInfoCtx) -> redis_module::InfoContext {
    redis_module::InfoContext::new(ptr)
}

/// Sets module options (a bit set of `REDISMODULE_OPTIONS_*`).
pub fn set_module_options(ctx: Ctx<'_>, options: u32) {
    // SAFETY: a valid context during load.
    unsafe { api!(RedisModule_SetModuleOptions)(ctx.raw(), options as c_int) };
}

/// Registers a command; false if Redis refused.
pub fn create_command(
    ctx: Ctx<'_>,
    name: &CStr,
    handler: CmdFunc,
    flags: &CStr,
    keys: (c_int, c_int, c_int),
) -> bool {
    // SAFETY: a valid context during load; the strings are NUL-terminated
    // and static; the handler lives for the whole program.
    unsafe {
        api!(RedisModule_CreateCommand)(
            ctx.raw(),
            name.as_ptr(),
            Some(handler),
            flags.as_ptr(),
            keys.0,
            keys.1,
            keys.2,
        ) == OK
    }
}

/// Sets a registered command's docs (arity, key specs, arguments); false
/// if the server lacks the API or refused. `info` must live for ever.
pub fn set_command_info(
    ctx: Ctx<'_>,
    name: &CStr,
    info: &'static raw::RedisModuleCommandInfo,
) -> bool {
    let Some(set) = optional_api!(RedisModule_SetCommandInfo) else {
        return false;
    };
    // SAFETY: a valid context during load; `name` is NUL-terminated.
    let cmd = unsafe { api!(RedisModule_GetCommand)(ctx.raw(), name.as_ptr()) };
    // SAFETY: a command handle Redis returned, and a static info struct
    // whose pointers are static too.
    !cmd.is_null() && unsafe { set(cmd, std::ptr::from_ref(info).cast_mut()) } == OK
}

/// What a server offers for command ACL categories.
#[derive(Clone, Copy, PartialEq, Eq)]
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

/// Puts a registered command in `categories` (space-separated); false when
/// the server refused or lacks the API.
pub fn set_command_acl_categories(ctx: Ctx<'_>, name: &CStr, categories: &CStr) -> bool {
    let (Some(get), Some(set)) = (
        optional_api!(RedisModule_GetCommand),
        optional_api!(RedisModule_SetCommandACLCategories),
    ) else {
        return false;
    };
    // SAFETY: a valid context during load; NUL-terminated name.
    let cmd = unsafe { get(ctx.raw(), name.as_ptr()) };
    // SAFETY: a command handle from GetCommand and a NUL-terminated list.
    !cmd.is_null() && unsafe { set(cmd, categories.as_ptr()) } == OK
}

/// A module config, as registered: a numeric or a bool one, backed by a
/// static cell that Redis hands back to the getter and setter as their
/// private data.
pub enum Config {
    Numeric {
        cell: &'static AtomicI64,
        range: (i64, i64),
        get: unsafe extern "C" fn(*const c_char, *mut c_void) -> c_longlong,
        set: unsafe extern "C" fn(
            *const c_char,
            c_longlong,
            *mut c_void,
            *mut *mut raw::RedisModuleString,
        ) -> c_int,
    },
    Flag {
        cell: &'static AtomicBool,
        get: unsafe extern "C" fn(*const c_char, *mut c_void) -> c_int,
        set: unsafe extern "C" fn(
            *const c_char,
            c_int,
            *mut c_void,
            *mut *mut raw::RedisModuleString,
        ) -> c_int,
    },
}

/// Registers a module config (its default: the cell's value now); false
/// if the server lacks module configs or refused.
#[rustfmt::skip]
pub fn register_config(ctx: Ctx<'_>, name: &CStr, flags: u32, config: &Config) -> bool {
    let data = |cell: *const ()| cell.cast_mut().cast::<c_void>();
    match *config {
        Config::Numeric { cell, range, get, set } => {
            let Some(register) = optional_api!(RedisModule_RegisterNumericConfig) else { return false };
            let default = cell.load(Ordering::Relaxed);
            // SAFETY: a valid context during load; a static name, cell and callbacks.
            unsafe { register(ctx.raw(), name.as_ptr(), default, flags, range.0, range.1, Some(get), Some(set), None, data(std::ptr::from_ref(cell).cast())) == OK }
        }
        Config::Flag { cell, get, set } => {
            let Some(register) = optional_api!(RedisModule_RegisterBoolConfig) else { return false };
            let default = c_int::from(cell.load(Ordering::Relaxed));
            // SAFETY: a valid context during load; a static name, cell and callbacks.
            unsafe { register(ctx.raw(), name.as_ptr(), default, flags, Some(get), Some(set), None, data(std::ptr::from_ref(cell).cast())) == OK }
        }
    }
}

/// Applies config values from redis.conf and the command line.
pub fn load_configs(ctx: Ctx<'_>) -> bool {
    match optional_api!(RedisModule_LoadConfigs) {
        // SAFETY: a valid context during load, after the configs are registered.
        Some(load) => unsafe { load(ctx.raw()) == OK },
        None => true,
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

// ---- persistence callbacks -----------------------------------------------------------

/// An RDB or AOF stream handed to a type callback.
pub type Io<'a> = Lent<'a, raw::RedisModuleIO>;

impl Io<'_> {
    /// Reads one string; `None` on an I/O error (with `HANDLE_IO_ERRORS`
    /// set, a short read returns instead of aborting the server).
    pub fn load_bytes(&self) -> Option<Vec<u8>> {
        let mut len = 0usize;
        // SAFETY: a valid IO; Redis returns a buffer we must free.
        let p = unsafe { api!(RedisModule_LoadStringBuffer)(self.raw(), &mut len) };
        if p.is_null() {
            return None;
        }
        // SAFETY: as above.
        let failed = unsafe { api!(RedisModule_IsIOError)(self.raw()) } != 0;
        let bytes = (!failed).then(|| {
            // SAFETY: `p` is valid for `len` bytes until freed below.
            unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len) }.to_vec()
        });
        // SAFETY: the buffer LoadStringBuffer allocated, freed once.
        unsafe { api!(RedisModule_Free)(p.cast()) };
        bytes
    }

    pub fn save_bytes(&self, bytes: &[u8]) {
        // SAFETY: a valid IO; Redis copies the bytes.
        unsafe {
            api!(RedisModule_SaveStringBuffer)(self.raw(), bytes.as_ptr().cast(), bytes.len())
        };
    }

    /// Writes `cmd key payload` to a rewritten AOF (`aof_rewrite`).
    pub fn emit_aof(&self, cmd: &CStr, key: RStr<'_>, payload: &[u8]) {
        let (c, k, p, n) = (cmd.as_ptr(), key.raw(), payload.as_ptr(), payload.len());
        // SAFETY: a valid AOF IO and the key Redis passed to aof_rewrite;
        // the format matches its arguments.
        unsafe { api!(RedisModule_EmitAOF)(self.raw(), c, c"sb".as_ptr(), k, p, n) };
    }

    pub fn log(&self, level: &CStr, msg: &str) {
        // SAFETY: a valid IO; the context may be NULL, which Log accepts.
        let ctx = unsafe { api!(RedisModule_GetContextFromIO)(self.raw()) };
        log_raw(ctx, level, msg);
    }
}

/// Feeds `bytes` to `DEBUG DIGEST` as one element.
///
/// # Safety
/// `md` is the digest Redis passed to the running `digest` callback.
pub unsafe fn digest_bytes(md: *mut raw::RedisModuleDigest, bytes: &[u8]) {
    // SAFETY: per the contract; Redis copies the bytes.
    unsafe {
        api!(RedisModule_DigestAddStringBuffer)(md, bytes.as_ptr().cast(), bytes.len());
        api!(RedisModule_DigestEndSequence)(md);
    }
}
