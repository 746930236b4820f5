//! Server-held waits: the caller's connection is parked until its slot.
//!
//! The decision (and its write and replication) happens when the command
//! runs; only the reply is delayed. [`hold`] blocks the client with Redis's
//! blocked-client API and queues it by its due time on the **monotonic**
//! clock; one release thread sleeps until the earliest due time and
//! unblocks it (`RedisModule_UnblockClient` is thread-safe). So a step of
//! the wall clock neither releases anyone early nor holds anyone past its
//! timeout (Redis's own module timers run on the wall clock), and no timer
//! period ever reaches Redis.
//!
//! Every blocked client is unblocked exactly once: whoever takes its entry
//! out of the queue (under the queue's lock: the release thread when it is
//! due, the disconnect callback, or `CLIENT UNBLOCK`'s callback, which
//! answers nil) is the one that unblocks it, after letting the lock go. A client that disconnects or is unblocked
//! leaves the queue at once, so `INFO`'s `blocked_clients` counts exactly
//! the clients still held, and nothing of theirs stays behind.
//!
//! A client released later than its due time plus `wait-tolerance-ms`
//! (the server stalled: a fork, a slow disk, `DEBUG SLEEP`) is not told
//! "go" as if on time: a `THROTTLE … WAIT` caller gets a denial with
//! `retry_after_ms` 0 (its tokens go back when nobody queues behind it),
//! a `PERMIT … BLOCK` caller released after its permit expired gets nil.
//!
//! Inside MULTI/EXEC, Lua, or while replicating, blocking is not allowed;
//! callers check `Ctx::deny_blocking` first and answer at once.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{c_int, c_void};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use redis_module::raw;
use throttle_core::Micros;
use throttle_core::limiter::{self, Limiter};
use throttle_core::time::clamp_reply;

use super::error::{Error, Result};
use super::ffi::{Args, BlockCallbacks, BlockedClient, Ctx, RStr};
use super::keyspace::{self, Target};
use super::stats::STATS;
use super::{clock, config, guard};

/// The reply a held client gets when released on time.
pub enum Pending {
    /// THROTTLE … WAIT: its reply, and the tokens it reserved.
    Throttle { reply: [i64; 5], cost: u64 },
    /// PERMIT … BLOCK: its reply; `usable_until` is when the permit expires
    /// (on the monotonic clock).
    Permit {
        reply: [i64; 3],
        usable_until: Instant,
    },
}

/// What the reply callback receives.
struct Release {
    pending: Pending,
    due: Instant,
}

struct Entry {
    bc: BlockedClient,
    release: Box<Release>,
}

#[derive(Default)]
struct Queue {
    by_due: BTreeMap<(Instant, u64), Entry>,
    /// Blocked-client id → its place in `by_due`.
    place: HashMap<usize, (Instant, u64)>,
    seq: u64,
}

struct Scheduler {
    queue: Mutex<Queue>,
    wake: Condvar,
}

static SCHEDULER: OnceLock<Scheduler> = OnceLock::new();

const CALLBACKS: BlockCallbacks = BlockCallbacks {
    reply: on_release,
    timeout: on_unblock,
    free: free_release,
    disconnect: on_disconnect,
};

fn lock(s: &Scheduler) -> MutexGuard<'_, Queue> {
    // A panic while holding the lock cannot leave the queue inconsistent
    // (every change is one insert or one remove): keep using it.
    s.queue.lock().unwrap_or_else(|p| p.into_inner())
}

/// Starts the release thread (once, at module load).
pub fn start() -> std::io::Result<()> {
    if SCHEDULER.get().is_some() {
        return Ok(());
    }
    let _ = SCHEDULER.set(Scheduler {
        queue: Mutex::new(Queue::default()),
        wake: Condvar::new(),
    });
    std::thread::Builder::new()
        .name("throttle-release".into())
        // A panic (none is known) is logged and the loop starts again, so
        // held clients are never left parked.
        .spawn(|| {
            while super::guard::or(true, "the release thread", || {
                release_loop();
                false
            }) {}
        })
        .map(|_| ())
}

/// Parks the calling client for `wait` (measured on the monotonic clock),
/// then replies `pending`.
pub fn hold(ctx: Ctx<'_>, wait: Micros, pending: Pending) -> Result<()> {
    let s = SCHEDULER.get().ok_or(Error::CannotBlock)?;
    let bc = ctx.block_client(&CALLBACKS).ok_or(Error::CannotBlock)?;
    let due = Instant::now() + Duration::from_micros(wait.0);
    let mut q = lock(s);
    q.seq = q.seq.wrapping_add(1);
    let place = (due, q.seq);
    q.place.insert(bc.id(), place);
    let release = Box::new(Release { pending, due });
    q.by_due.insert(place, Entry { bc, release });
    STATS.held.store(q.by_due.len() as u64, Relaxed);
    STATS.blocked_total.fetch_add(1, Relaxed);
    drop(q);
    s.wake.notify_one();
    Ok(())
}

/// Takes the entry of blocked client `id` out of the queue, if still there.
fn take(id: usize) -> Option<Entry> {
    let mut q = lock(SCHEDULER.get()?);
    let place = q.place.remove(&id)?;
    let entry = q.by_due.remove(&place);
    STATS.held.store(q.by_due.len() as u64, Relaxed);
    entry
}

/// The release thread: unblocks each client when it is due.
fn release_loop() {
    let Some(s) = SCHEDULER.get() else { return };
    let mut q = lock(s);
    loop {
        let now = Instant::now();
        let mut due = Vec::new();
        while let Some(entry) = q.by_due.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let e = entry.remove();
            q.place.remove(&e.bc.id());
            due.push(e);
        }
        STATS.held.store(q.by_due.len() as u64, Relaxed);
        if !due.is_empty() {
            drop(q);
            for Entry { bc, release } in due {
                bc.unblock(Some(release));
            }
            q = lock(s);
            continue;
        }
        q = match q.by_due.keys().next().map(|(at, _)| *at) {
            None => s.wake.wait(q).unwrap_or_else(|p| p.into_inner()),
            Some(at) => {
                let nap = at.saturating_duration_since(now);
                s.wake
                    .wait_timeout(q, nap)
                    .map(|(q, _)| q)
                    .unwrap_or_else(|p| p.into_inner().0)
            }
        };
    }
}

/// Reply callback: runs in the client's context once unblocked.
unsafe extern "C" fn on_release(
    ctx: *mut raw::RedisModuleCtx,
    argv: *mut *mut raw::RedisModuleString,
    argc: c_int,
) -> c_int {
    // SAFETY: Redis passes this callback's own context and the blocked
    // command's arguments, valid until it returns.
    let (ctx, args) = unsafe { (Ctx::from_raw(ctx), Args::from_raw(argv, argc)) };
    guard::command(ctx, "blocked reply", |ctx| {
        // SAFETY: every client this module blocks gets a Release (or none).
        let Some(release) = (unsafe { ctx.blocked_privdata::<Release>() }) else {
            ctx.reply_null();
            return Ok(());
        };
        let now = Instant::now();
        let late = now > release.due + config::wait_tolerance();
        match &release.pending {
            Pending::Throttle { reply, .. } if !late => ctx.reply_i64s(reply),
            Pending::Throttle { reply, cost } => late_throttle(ctx, args.get(1), reply, *cost),
            Pending::Permit {
                reply,
                usable_until,
            } if !late || now <= *usable_until => ctx.reply_i64s(reply),
            Pending::Permit { .. } => {
                STATS.blocked_late.fetch_add(1, Relaxed);
                ctx.reply_null();
                return Ok(());
            }
        }
        if !late || matches!(release.pending, Pending::Permit { .. }) {
            STATS.blocked_released.fetch_add(1, Relaxed);
        }
        Ok(())
    })
}

/// A THROTTLE … WAIT caller released too late: deny it (retry now), and
/// give its tokens back when nobody queues behind it.
fn late_throttle(ctx: Ctx<'_>, name: Option<RStr<'_>>, reply: &[i64; 5], cost: u64) {
    STATS.blocked_late.fetch_add(1, Relaxed);
    let now = clock::now();
    let denial = name.and_then(|name| {
        let mut key = ctx.open_key(name, true);
        let v = keyspace::load::<Limiter>(&key).ok()??;
        let write = limiter::refund_late(v, now, cost);
        let after = match &write {
            Some(limiter::Write::Store { value, .. }) => limiter::snapshot(value, now),
            _ => limiter::snapshot(v, now),
        };
        let target = Target::new(name, c"throttle.refund");
        keyspace::write(ctx, &mut key, target, write, now);
        let held = after.tokens.map_or(0, clamp_reply);
        Some([0, held, 0, after.reset_after.reply_ms_ceil(), reply[4]])
    });
    ctx.reply_i64s(&denial.unwrap_or([0, 0, 0, 0, reply[4]]));
}

/// `CLIENT UNBLOCK` (the module sets no Redis timeout): answer nil now,
/// and unblock the handle if the release thread has not already.
unsafe extern "C" fn on_unblock(
    ctx: *mut raw::RedisModuleCtx,
    _argv: *mut *mut raw::RedisModuleString,
    _argc: c_int,
) -> c_int {
    // SAFETY: Redis passes this callback's own context.
    let ctx = unsafe { Ctx::from_raw(ctx) };
    guard::command(ctx, "blocked timeout", |ctx| {
        STATS.blocked_unblocked.fetch_add(1, Relaxed);
        if let Some(e) = ctx.blocked_id().and_then(take) {
            e.bc.unblock::<Release>(None);
        }
        ctx.reply_null();
        Ok(())
    })
}

/// The client disconnected (or was killed) while held: unblock its handle
/// now rather than at its slot.
unsafe extern "C" fn on_disconnect(
    _ctx: *mut raw::RedisModuleCtx,
    bc: *mut raw::RedisModuleBlockedClient,
) {
    guard::or((), "blocked disconnect", || {
        STATS.blocked_disconnected.fetch_add(1, Relaxed);
        if let Some(e) = take(BlockedClient::id_of(bc)) {
            e.bc.unblock::<Release>(None);
        }
    })
}

unsafe extern "C" fn free_release(_ctx: *mut raw::RedisModuleCtx, p: *mut c_void) {
    if !p.is_null() {
        // SAFETY: the private data this module passed to UnblockClient: a
        // Box<Release>, freed by Redis through this callback exactly once.
        drop(unsafe { Box::from_raw(p.cast::<Release>()) });
    }
}
