//! Held clients: Redis's blocked-client API, and the main-thread hook that
//! decides when they are released.
//!
//! A command blocks its client with [`Ctx::block_client`] (no Redis
//! timeout: the module releases it). Releasing is [`BlockedClient::unblock`]
//! with the reply to send, a [`Held`] value; Redis then runs the reply
//! callback, which only writes that reply. No callback here writes a key
//! or propagates anything: the decisions were made, written and replicated
//! when the command ran.
//!
//! The scheduler (`blocking.rs`) installs three hooks ([`Hooks`]): the
//! client was unblocked by `CLIENT UNBLOCK` (it is answered nil), the
//! client disconnected, and "before sleep": the event loop's
//! `BEFORE_SLEEP` event, on the main thread, where releases are decided.
//! That event fires in every turn of the event loop but not while the
//! server processes events from inside a busy script or while loading, so
//! a release is never decided while the server cannot answer it. A thread
//! may wake the event loop with [`wake_main_thread`] (thread-safe).

use std::convert::Infallible;
use std::ffi::{CStr, c_char, c_int, c_void};
use std::ptr::NonNull;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use redis_module::raw;

use super::command::handler;
use super::guard;
use super::{Args, Ctx, OK, RStr};

/// The reply a held client gets when it is released.
pub trait Held: Send + 'static {
    fn reply(&self, ctx: Ctx<'_>);
}

/// The scheduler's hooks, called on the main thread.
#[derive(Clone, Copy)]
pub struct Hooks {
    /// `CLIENT UNBLOCK` of a held client (it is then answered nil).
    pub unblocked: fn(usize),
    /// A held client disconnected (or was killed).
    pub disconnected: fn(usize),
    /// The event loop is about to sleep (not called from inside a busy
    /// script or while loading).
    pub before_sleep: fn(),
    /// Whether any client is held (a fast check before the others).
    pub has_held: fn() -> bool,
    /// A key was deleted or replaced by Redis itself (DEL, UNLINK,
    /// eviction, RENAME, MOVE, COPY, RESTORE): its db and name.
    pub key_gone: fn(i32, &[u8]),
    /// A database was emptied or swapped (FLUSHDB, FLUSHALL, SWAPDB, a
    /// full sync): its number, `None` for all.
    pub db_gone: fn(Option<i32>),
}

static HOOKS: OnceLock<Hooks> = OnceLock::new();

/// A held client's handle. Unblocking consumes it, so each blocked client
/// is unblocked at most once through it.
#[derive(Debug)]
pub struct BlockedClient(NonNull<raw::RedisModuleBlockedClient>);

// SAFETY: Redis documents RedisModule_UnblockClient as callable from any
// thread; the handle is only used to unblock (once) and as an identity.
unsafe impl Send for BlockedClient {}

impl BlockedClient {
    /// The handle's identity (to find it again from a callback).
    pub fn id(&self) -> usize {
        self.0.as_ptr() as usize
    }

    /// Releases the client: Redis runs the reply callback (on its main
    /// thread), which sends `reply`, then frees it.
    pub fn unblock(self, reply: Box<dyn Held>) {
        let p = Box::into_raw(Box::new(reply)).cast::<c_void>();
        // SAFETY: a handle from BlockClient not unblocked before (`self` is
        // consumed); Redis takes ownership of `p` and frees it through
        // `free_reply`.
        unsafe { api!(RedisModule_UnblockClient)(self.0.as_ptr(), p) };
    }

    /// Releases the client without a reply of ours (Redis has answered it
    /// already: `CLIENT UNBLOCK`, a disconnect).
    pub fn unblock_silently(self) {
        // SAFETY: as in `unblock`, with no private data.
        unsafe { api!(RedisModule_UnblockClient)(self.0.as_ptr(), std::ptr::null_mut()) };
    }
}

impl Ctx<'_> {
    /// Blocks the calling client (no Redis timeout: the module releases it).
    /// `None` if Redis refused; the caller checked `deny_blocking` first.
    pub fn block_client(self) -> Option<BlockedClient> {
        // SAFETY: a valid command context of a client that may block; the
        // callbacks are `extern "C"` functions that live for the whole
        // program.
        let bc = unsafe {
            api!(RedisModule_BlockClient)(
                self.raw(),
                Some(handler(on_reply)),
                Some(handler(on_unblock)),
                Some(free_reply),
                0,
            )
        };
        let bc = NonNull::new(bc)?;
        // SAFETY: `bc` was just returned by BlockClient and is still blocked.
        unsafe { api!(RedisModule_SetDisconnectCallback)(bc.as_ptr(), Some(on_disconnect)) };
        Some(BlockedClient(bc))
    }
}

/// Installs the scheduler's hooks and subscribes to the event loop,
/// flushes and swaps (at load; deletions: [`watch_deletions`]). False if
/// the server refused.
pub fn install(ctx: Ctx<'_>, hooks: Hooks) -> bool {
    if HOOKS.set(hooks).is_err() {
        return true;
    }
    let subscribe = |id: u64, f: unsafe extern "C" fn(_, _, _, _)| {
        let event = raw::RedisModuleEvent { id, dataver: 1 };
        // SAFETY: a valid context during load; the callback lives for ever.
        unsafe { api!(RedisModule_SubscribeToServerEvent)(ctx.raw(), event, Some(f)) == OK }
    };
    subscribe(raw::REDISMODULE_EVENT_EVENTLOOP, on_event_loop)
        && subscribe(raw::REDISMODULE_EVENT_FLUSHDB, on_flush)
        && subscribe(raw::REDISMODULE_EVENT_SWAPDB, on_swapdb)
}

/// Whether the module has subscribed to deletions ([`watch_deletions`]).
static WATCHING: AtomicBool = AtomicBool::new(false);

/// Subscribes to the keyspace events of deletions, once, when the first
/// client is held (from a command): every keyspace event Redis fires
/// walks the list of subscribers (about 30 instructions for one), so a
/// server that never holds a client never pays for it. There is no way
/// to unsubscribe; once subscribed, it stays. False if the server refused.
///
/// The events: deletions and replacements Redis makes itself (the generic
/// class: DEL, UNLINK, RENAME, MOVE, COPY, RESTORE; evictions). Not
/// expiries: a key expires after every turn it holds, so only a stalled
/// server meets one with clients still held, and those are released late
/// as usual. The module's own writes fire module-class events, not
/// subscribed.
pub fn watch_deletions(ctx: Ctx<'_>) -> bool {
    if WATCHING.load(Relaxed) {
        return true;
    }
    let classes = raw::REDISMODULE_NOTIFY_GENERIC | raw::REDISMODULE_NOTIFY_EVICTED;
    // SAFETY: a command's context (it names the module); the callback
    // lives for ever.
    let ok = unsafe {
        api!(RedisModule_SubscribeToKeyspaceEvents)(ctx.raw(), classes as c_int, Some(on_key_event))
    } == OK;
    WATCHING.store(ok, Relaxed);
    ok
}

/// A keyspace event of the generic or evicted class: a key Redis deleted
/// or replaced, unless the event only touched its TTL.
unsafe extern "C" fn on_key_event(
    ctx: *mut raw::RedisModuleCtx,
    _class: c_int,
    event: *const c_char,
    key: *mut raw::RedisModuleString,
) -> c_int {
    guard::or(OK, "keyspace event", || {
        let Some(h) = HOOKS.get() else { return OK };
        if event.is_null() || !(h.has_held)() {
            return OK;
        }
        // SAFETY: Redis passes a NUL-terminated event name, valid for the call.
        let name = unsafe { CStr::from_ptr(event) }.to_bytes();
        if matches!(name, b"expire" | b"persist" | b"new" | b"expired") {
            return OK;
        }
        // SAFETY: the callback's context and key, valid for the call.
        let (db, key) = unsafe {
            let Some(ctx) = Ctx::from_raw(ctx) else {
                return OK;
            };
            let Some(key) = RStr::from_raw(key) else {
                return OK;
            };
            (ctx.selected_db(), key.bytes().to_vec())
        };
        (h.key_gone)(db, &key);
        OK
    })
}

/// FLUSHDB / FLUSHALL (and the flush of a full sync), as it starts.
unsafe extern "C" fn on_flush(
    _ctx: *mut raw::RedisModuleCtx,
    _eid: raw::RedisModuleEvent,
    subevent: u64,
    data: *mut c_void,
) {
    guard::or((), "flush", || {
        let Some(h) = HOOKS.get() else { return };
        if subevent != raw::REDISMODULE_SUBEVENT_FLUSHDB_START || data.is_null() {
            return;
        }
        // SAFETY: for this event Redis passes a RedisModuleFlushInfoV1.
        let dbnum = unsafe { (*data.cast::<FlushInfo>()).dbnum };
        (h.db_gone)((dbnum >= 0).then_some(dbnum));
    })
}

/// SWAPDB: both databases now hold other keys.
unsafe extern "C" fn on_swapdb(
    _ctx: *mut raw::RedisModuleCtx,
    _eid: raw::RedisModuleEvent,
    _subevent: u64,
    data: *mut c_void,
) {
    guard::or((), "swapdb", || {
        let Some(h) = HOOKS.get() else { return };
        if data.is_null() {
            return;
        }
        // SAFETY: for this event Redis passes a RedisModuleSwapDbInfoV1.
        let info = unsafe { &*data.cast::<SwapDbInfo>() };
        (h.db_gone)(Some(info.dbnum_first));
        (h.db_gone)(Some(info.dbnum_second));
    })
}

/// `RedisModuleFlushInfoV1`.
#[repr(C)]
struct FlushInfo {
    version: u64,
    sync: i32,
    dbnum: i32,
}

/// `RedisModuleSwapDbInfoV1`.
#[repr(C)]
struct SwapDbInfo {
    version: u64,
    dbnum_first: i32,
    dbnum_second: i32,
}

/// Wakes the main thread's event loop (it then runs its before-sleep
/// hook). Callable from any thread.
pub fn wake_main_thread() {
    // SAFETY: a function Redis documents as callable from any thread; the
    // callback lives for ever and ignores its (NULL) data.
    unsafe { api!(RedisModule_EventLoopAddOneShot)(Some(wake_noop), std::ptr::null_mut()) };
}

extern "C" fn wake_noop(_data: *mut c_void) {}

unsafe extern "C" fn on_event_loop(
    _ctx: *mut raw::RedisModuleCtx,
    _eid: raw::RedisModuleEvent,
    subevent: u64,
    _data: *mut c_void,
) {
    if subevent == raw::REDISMODULE_SUBEVENT_EVENTLOOP_BEFORE_SLEEP
        && let Some(h) = HOOKS.get()
    {
        guard::or((), "before sleep", h.before_sleep);
    }
}

/// Reply callback (through the command trampoline, so behind the panic
/// wall): runs in the released client's context and sends the reply it was
/// released with.
fn on_reply(ctx: Ctx<'_>, _args: Args<'_>) -> Result<(), Infallible> {
    // SAFETY: the private data of every client this module releases is a
    // Box<Box<dyn Held>> (`unblock`), or none; Redis frees it only after
    // this callback returns.
    let held = unsafe {
        api!(RedisModule_GetBlockedClientPrivateData)(ctx.raw())
            .cast::<Box<dyn Held>>()
            .as_ref()
    };
    match held {
        Some(h) => h.reply(ctx),
        None => ctx.reply_null(),
    }
    Ok(())
}

/// `CLIENT UNBLOCK` (the module sets no Redis timeout): answer nil.
fn on_unblock(ctx: Ctx<'_>, _args: Args<'_>) -> Result<(), Infallible> {
    // SAFETY: a valid context; Redis returns NULL outside a blocked client.
    let bc = unsafe { api!(RedisModule_GetBlockedClientHandle)(ctx.raw()) };
    if let (false, Some(h)) = (bc.is_null(), HOOKS.get()) {
        (h.unblocked)(bc as usize);
    }
    ctx.reply_null();
    Ok(())
}

/// The client disconnected (or was killed) while held.
unsafe extern "C" fn on_disconnect(
    _ctx: *mut raw::RedisModuleCtx,
    bc: *mut raw::RedisModuleBlockedClient,
) {
    guard::or((), "held client disconnect", || {
        if let Some(h) = HOOKS.get() {
            (h.disconnected)(bc as usize);
        }
    })
}

unsafe extern "C" fn free_reply(_ctx: *mut raw::RedisModuleCtx, p: *mut c_void) {
    if !p.is_null() {
        // SAFETY: the private data `unblock` passed: a Box<Box<dyn Held>>,
        // freed by Redis through this callback exactly once.
        drop(unsafe { Box::from_raw(p.cast::<Box<dyn Held>>()) });
    }
}
