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

use std::ffi::{c_int, c_void};
use std::ptr::NonNull;
use std::sync::OnceLock;

use redis_module::raw;

use super::guard;
use super::{Args, CmdFunc, Ctx, OK};

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
                Some(on_reply as CmdFunc),
                Some(on_unblock as CmdFunc),
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

/// Installs the scheduler's hooks and subscribes to the event loop (at
/// load). False if the server refused.
pub fn install(ctx: Ctx<'_>, hooks: Hooks) -> bool {
    if HOOKS.set(hooks).is_err() {
        return true;
    }
    let event = raw::RedisModuleEvent {
        id: raw::REDISMODULE_EVENT_EVENTLOOP,
        dataver: 1,
    };
    // SAFETY: a valid context during load; the callback lives for ever.
    unsafe { api!(RedisModule_SubscribeToServerEvent)(ctx.raw(), event, Some(on_event_loop)) == OK }
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

/// Reply callback: runs in the released client's context.
unsafe extern "C" fn on_reply(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
) -> c_int {
    // SAFETY: Redis passes this callback's own context and the blocked
    // command's arguments, valid until it returns.
    let (ctx, args) = unsafe { (Ctx::from_raw(ctx), Args::from_raw(argv, argc)) };
    guard::command(ctx, args, |ctx, _| {
        // SAFETY: the private data of every client this module releases is
        // a Box<Box<dyn Held>> (`unblock`), or none; Redis frees it only
        // after this callback returns.
        let held = unsafe {
            api!(RedisModule_GetBlockedClientPrivateData)(ctx.raw())
                .cast::<Box<dyn Held>>()
                .as_ref()
        };
        match held {
            Some(h) => h.reply(ctx),
            None => ctx.reply_null(),
        }
        Ok::<(), std::convert::Infallible>(())
    })
}

/// `CLIENT UNBLOCK` (the module sets no Redis timeout): answer nil.
unsafe extern "C" fn on_unblock(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
) -> c_int {
    // SAFETY: Redis passes this callback's own context and arguments.
    let (ctx, args) = unsafe { (Ctx::from_raw(ctx), Args::from_raw(argv, argc)) };
    guard::command(ctx, args, |ctx, _| {
        // SAFETY: a valid context; Redis returns NULL outside a blocked client.
        let bc = unsafe { api!(RedisModule_GetBlockedClientHandle)(ctx.raw()) };
        if let (false, Some(h)) = (bc.is_null(), HOOKS.get()) {
            (h.unblocked)(bc as usize);
        }
        ctx.reply_null();
        Ok::<(), std::convert::Infallible>(())
    })
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
