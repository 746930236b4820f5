//! The scheduler of held clients: who is released when. It knows nothing
//! of tokens or permits, and it never writes a key.
//!
//! A command that decided to hold its caller (THROTTLE … WAIT, PERMIT …
//! BLOCK) has already written and replicated its decision; [`hold`] parks
//! the client with its reply ([`Release`]) under its key, due after
//! `wait`, at most `timeout` from now. Time here is the monotonic clock,
//! so a step of the wall clock neither releases anyone early nor holds
//! anyone past its timeout; all `Instant` arithmetic lives in this file.
//!
//! Releases are decided on the main thread, in the event loop's
//! before-sleep hook (never from inside a busy script, never while
//! loading), and sent by Redis's reply callback, which only replies.
//! A thread sleeps until the next due time and wakes the event loop.
//!
//! Late releases. When the server could not answer in time (a fork, a slow
//! command or script, `DEBUG SLEEP`, a saturated machine), a client whose
//! turn came more than its on-time allowance (`on_time_for`: PERMIT's
//! grace, WAIT's `wait-tolerance-ms`) ago is not refused: it is released
//! now, re-slotted to this moment, and every client queued behind it on
//! the same key moves as much later (its key's `offset`), so the spacing
//! between releases is what the schedule promised. The key's next write
//! takes the same shift into the stored state ([`take_carry`], the
//! "carry"): callers arriving later queue behind the moved ones. A client
//! is refused only when its turn, moved, lies beyond its own timeout; its
//! tokens or slot then stay taken (a gap). Nothing here writes a key:
//! the carry waits in memory for the key's next write, a command.
//!
//! Every blocked client is unblocked exactly once: by its release or
//! refusal here, or on `CLIENT UNBLOCK` or a disconnect (Redis calls the
//! hooks; the client leaves its queue at once).

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use throttle_core::{Micros, Timestamp};

use super::clock;
use super::error::{Error, Result};
use super::ffi::{self, BlockedClient, Ctx, Held, RStr};
use super::stats;

/// What a held client gets when it is released or refused.
pub trait Release: Send {
    /// Released; `slot` is its turn on the module's clock as it finally
    /// stands: the command's, moved by re-spacing or a re-plan, and later
    /// by late releases (its own, or those ahead of it on the key).
    fn release(self: Box<Self>, slot: Timestamp) -> Box<dyn Held>;
    /// Refused: its moved turn lies beyond its own timeout.
    fn refuse(self: Box<Self>) -> Box<dyn Held>;
}

/// A key: its database and name.
pub type KeyId = (i32, Vec<u8>);

/// The key `name` in the caller's database.
pub fn key_id(ctx: Ctx<'_>, name: RStr<'_>) -> KeyId {
    (ctx.selected_db(), name.bytes().to_vec())
}

/// A command's request to hold its caller.
pub struct Hold {
    pub key: KeyId,
    /// The turn, on the module's clock: the client is due when the module's
    /// clock, read as it is parked, reaches it (a command that read the
    /// clock a while before parking does not make it late).
    pub slot: Timestamp,
    /// The longest the caller may be held, from now.
    pub timeout: Micros,
    /// How late after its turn a release still counts as on time.
    pub on_time_for: Micros,
    /// How long the key's stored state matters from now (its expiry): a
    /// carry is kept at most that long after the schedule moved.
    pub state_for: Micros,
    /// A name for the hold in the key's state (a lease reserved for the
    /// caller): when the caller leaves without its reply (a disconnect,
    /// `CLIENT UNBLOCK`, its timeout), the tag waits for the key's next
    /// command ([`take_gone`]) to cancel what the state holds for it.
    pub tag: Option<u64>,
    /// The key's state as the command left it (see [`remembered`]).
    pub state: Option<Box<dyn Any + Send>>,
}

struct Client {
    bc: BlockedClient,
    key: u64,
    /// Due at `base + offset of its key`.
    base: Instant,
    seq: u64,
    deadline: Instant,
    /// Its turn on the module's clock, less its key's `offset`: the turn
    /// is `slot + offset`, as its due time is `base + offset`.
    slot: Timestamp,
    on_time_for: Duration,
    tag: Option<u64>,
    release: Box<dyn Release>,
}

#[derive(Default)]
struct KeyQueue {
    name: KeyId,
    /// Its clients by base due time.
    by_due: BTreeMap<(Instant, u64), usize>,
    by_deadline: BTreeSet<(Instant, u64, usize)>,
    /// How much later than planned its schedule runs (late releases).
    offset: Duration,
    /// The shift its stored state has not taken yet (µs).
    carry: u64,
    /// Until when a carry (or a gone tag) matters.
    relevant_until: Option<Instant>,
    /// Tags of held clients that left without their reply.
    gone: Vec<u64>,
    /// The key's state as its last command left it: when the key expires
    /// before its next command (a late release moved the schedule past
    /// the expiry the state had), that command continues from this state,
    /// moved by the carry, instead of from nothing.
    state: Option<Box<dyn Any + Send>>,
    /// Its entry in `wakes`.
    wake: Option<Instant>,
}

#[derive(Default)]
struct Queues {
    serial_of: HashMap<KeyId, u64>,
    keys: HashMap<u64, KeyQueue>,
    clients: HashMap<usize, Client>,
    /// When each key next needs attention.
    wakes: BTreeSet<(Instant, u64)>,
    next_serial: u64,
    seq: u64,
}

struct Scheduler {
    queues: Mutex<Queues>,
    /// The release thread sleeps on this.
    changed: Condvar,
    /// The origin of `NEXT_WAKE_NS`.
    origin: Instant,
}

static SCHEDULER: OnceLock<Scheduler> = OnceLock::new();
/// The next wake, in ns since `origin` (`u64::MAX`: none): the
/// before-sleep hook's fast path.
static NEXT_WAKE_NS: AtomicU64 = AtomicU64::new(u64::MAX);
/// A wake of the event loop is on its way.
static WAKE_PENDING: AtomicBool = AtomicBool::new(false);
/// Keys with a carry: commands look one up only when there are any.
static CARRIES: AtomicUsize = AtomicUsize::new(0);

fn lock(s: &Scheduler) -> MutexGuard<'_, Queues> {
    // A panic while holding the lock (none is known) cannot leave a half
    // change that matters more than a lost client: keep using it.
    s.queues.lock().unwrap_or_else(|p| p.into_inner())
}

fn duration(d: Micros) -> Duration {
    Duration::from_micros(d.0)
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Starts the scheduler (once, at load): the hooks and the release thread.
pub fn start(ctx: Ctx<'_>) -> std::result::Result<(), String> {
    if SCHEDULER.get().is_some() {
        return Ok(());
    }
    let _ = SCHEDULER.set(Scheduler {
        queues: Mutex::new(Queues::default()),
        changed: Condvar::new(),
        origin: Instant::now(),
    });
    let hooks = ffi::blocked::Hooks {
        unblocked: on_unblocked,
        disconnected: on_disconnected,
        before_sleep,
        has_held: || stats::HELD.load(Relaxed) > 0,
        key_gone: |db, name| keys_gone(|(d, n)| *d == db && n.as_slice() == name),
        db_gone: |db| keys_gone(|(d, _)| db.is_none_or(|db| *d == db)),
    };
    if !ffi::blocked::install(ctx, hooks) {
        return Err("could not subscribe to the event loop".into());
    }
    std::thread::Builder::new()
        .name("throttle-release".into())
        // A panic (none is known) is logged and the loop starts again, so
        // held clients are never left parked.
        .spawn(|| {
            while ffi::guard::or(true, "the release thread", || {
                wake_loop();
                false
            }) {}
        })
        .map(|_| ())
        .map_err(|e| format!("could not start the release thread: {e}"))
}

/// Parks the calling client (the caller checked `deny_blocking`).
pub fn hold(ctx: Ctx<'_>, h: Hold, release: Box<dyn Release>) -> Result<()> {
    let s = SCHEDULER.get().ok_or(Error::CannotBlock)?;
    if !ffi::blocked::watch_deletions(ctx) {
        return Err(Error::CannotBlock);
    }
    let bc = ctx.block_client().ok_or(Error::CannotBlock)?;
    let now = Instant::now();
    let mut q = lock(s);
    let serial = q.serial(h.key);
    q.seq = q.seq.wrapping_add(1);
    let seq = q.seq;
    let id = bc.id();
    let key = q.keys.entry(serial).or_default();
    if h.state.is_some() {
        key.state = h.state;
    }
    let offset = key.offset;
    let planned = now + duration(h.slot.since(clock::now()));
    let base = planned.checked_sub(offset).unwrap_or(planned);
    let deadline = now + duration(h.timeout);
    key.by_due.insert((base, seq), id);
    key.by_deadline.insert((deadline, seq, id));
    let horizon = now + duration(h.state_for) + key.offset;
    key.relevant_until = Some(key.relevant_until.map_or(horizon, |r| r.max(horizon)));
    q.clients.insert(
        id,
        Client {
            bc,
            key: serial,
            base,
            seq,
            deadline,
            slot: h.slot.saturating_sub(Micros(micros(offset))),
            on_time_for: duration(h.on_time_for),
            tag: h.tag,
            release,
        },
    );
    q.rewake(serial, s.origin);
    stats::HELD.store(q.clients.len() as u64, Relaxed);
    drop(q);
    stats::held(stats::Held::Parked);
    s.changed.notify_one();
    Ok(())
}

/// Takes the shift the key's stored state has not taken yet (µs; zero
/// almost always, and then without a lookup). The caller writes the state
/// moved by it.
pub fn take_carry(ctx: Ctx<'_>, name: RStr<'_>) -> Micros {
    carry(ctx, name, true)
}

/// The same, for a read: the carry stays for the next write.
pub fn peek_carry(ctx: Ctx<'_>, name: RStr<'_>) -> Micros {
    carry(ctx, name, false)
}

#[inline] // the fast path, in every write
fn carry(ctx: Ctx<'_>, name: RStr<'_>, take: bool) -> Micros {
    if CARRIES.load(Relaxed) == 0 {
        return Micros::ZERO;
    }
    carry_of(ctx, name, take)
}

#[inline(never)] // only while something is held or carried
fn carry_of(ctx: Ctx<'_>, name: RStr<'_>, take: bool) -> Micros {
    let Some(s) = SCHEDULER.get() else {
        return Micros::ZERO;
    };
    let mut q = lock(s);
    let Some(&serial) = q.serial_of.get(&key_id(ctx, name)) else {
        return Micros::ZERO;
    };
    let Some(key) = q.keys.get_mut(&serial) else {
        return Micros::ZERO;
    };
    let c = key.carry;
    if take && c > 0 {
        key.carry = 0;
        CARRIES.fetch_sub(1, Relaxed);
        q.rewake(serial, s.origin);
    }
    Micros(c)
}

/// Whether the key has held clients or a carry (its state is remembered).
#[inline] // the fast path, in every write
pub fn is_queued(ctx: Ctx<'_>, name: RStr<'_>) -> bool {
    if stats::HELD.load(Relaxed) == 0 && CARRIES.load(Relaxed) == 0 {
        return false;
    }
    has_queue(ctx, name)
}

#[inline(never)] // only while something is held or carried
fn has_queue(ctx: Ctx<'_>, name: RStr<'_>) -> bool {
    let Some(s) = SCHEDULER.get() else {
        return false;
    };
    lock(s).serial_of.contains_key(&key_id(ctx, name))
}

/// Remembers the state a command wrote to a key that has held clients
/// (`None`: it deleted the key).
pub fn remember<S: Any + Send>(ctx: Ctx<'_>, name: RStr<'_>, state: Option<S>) {
    let Some(s) = SCHEDULER.get() else { return };
    let mut q = lock(s);
    if let Some(&serial) = q.serial_of.get(&key_id(ctx, name))
        && let Some(k) = q.keys.get_mut(&serial)
    {
        k.state = state.map(|v| Box::new(v) as Box<dyn Any + Send>);
    }
}

/// The state last written to a key that has expired since, while a carry
/// was pending (a late release moved its schedule past the state's
/// expiry): the command continues from it, moved by the carry.
pub fn remembered<S: Any + Clone>(ctx: Ctx<'_>, name: RStr<'_>) -> Option<S> {
    let s = SCHEDULER.get()?;
    let q = lock(s);
    let serial = q.serial_of.get(&key_id(ctx, name))?;
    q.keys
        .get(serial)?
        .state
        .as_ref()?
        .downcast_ref::<S>()
        .cloned()
}

/// The tags of the key's held clients that left without their reply since
/// the last call (the command cancels what its state holds for them).
pub fn take_gone(key: &KeyId) -> Vec<u64> {
    let Some(s) = SCHEDULER.get() else {
        return Vec::new();
    };
    let mut q = lock(s);
    let Some(&serial) = q.serial_of.get(key) else {
        return Vec::new();
    };
    let gone = q
        .keys
        .get_mut(&serial)
        .map(|k| std::mem::take(&mut k.gone))
        .unwrap_or_default();
    q.rewake(serial, s.origin);
    gone
}

/// Moves held clients by tag: `(tag, new turn)` on the module's clock read
/// at `now`; `refused` tags are answered their refusal now.
pub fn retime_tagged(key: &KeyId, moved: &[(u64, Timestamp)], refused: &[u64], now: Timestamp) {
    let Some(s) = SCHEDULER.get() else { return };
    let mono = Instant::now();
    let mut out = Vec::new();
    let mut q = lock(s);
    let Some(&serial) = q.serial_of.get(key) else {
        return;
    };
    let ids: Vec<(usize, u64)> = q
        .keys
        .get(&serial)
        .map(|k| {
            k.by_due
                .values()
                .filter_map(|id| q.clients.get(id).and_then(|c| c.tag.map(|t| (*id, t))))
                .collect()
        })
        .unwrap_or_default();
    let refused: std::collections::HashSet<u64> = refused.iter().copied().collect();
    let moved: HashMap<u64, Timestamp> = moved.iter().copied().collect();
    for (id, tag) in ids {
        if refused.contains(&tag) {
            if let Some(c) = q.remove(id) {
                out.push((c.bc, c.release.refuse()));
                stats::held(stats::Held::TimedOut);
            }
        } else if let Some(&slot) = moved.get(&tag) {
            let offset = q.keys.get(&serial).map_or(Duration::ZERO, |k| k.offset);
            if let Some(mut c) = q.remove(id) {
                let due = mono + duration(slot.since(now));
                c.base = due.checked_sub(offset).unwrap_or(due);
                c.slot = slot.saturating_sub(Micros(micros(offset)));
                if let Some(k) = q.keys.get_mut(&serial) {
                    k.by_due.insert((c.base, c.seq), id);
                    k.by_deadline.insert((c.deadline, c.seq, id));
                }
                q.clients.insert(id, c);
            }
        }
    }
    q.rewake(serial, s.origin);
    unblock_all(s, q, out);
}

/// The turns of the clients held on a key, in order, where they are now
/// (moved by late releases ahead of them): for re-spacing.
pub fn held_slots(key: &KeyId) -> Vec<Timestamp> {
    let Some(s) = SCHEDULER.get() else {
        return Vec::new();
    };
    let q = lock(s);
    q.serial_of
        .get(key)
        .and_then(|serial| q.keys.get(serial))
        .map(|k| {
            let offset = Micros(micros(k.offset));
            k.by_due
                .values()
                .filter_map(|id| q.clients.get(id).map(|c| c.slot.saturating_add(offset)))
                .collect()
        })
        .unwrap_or_default()
}

/// Gives the clients held on a key new turns (`slots`, in their order, on
/// the module's clock read at `now`), as re-spacing decided.
pub fn retime(key: &KeyId, slots: &[Timestamp], now: Timestamp) {
    let Some(s) = SCHEDULER.get() else { return };
    let mono = Instant::now();
    let mut q = lock(s);
    let Some(&serial) = q.serial_of.get(key) else {
        return;
    };
    let Some(k) = q.keys.get_mut(&serial) else {
        return;
    };
    let order: Vec<((Instant, u64), usize)> = k.by_due.iter().map(|(a, b)| (*a, *b)).collect();
    let offset = k.offset;
    let mut moved = Vec::new();
    for (((_, seq), id), slot) in order.into_iter().zip(slots) {
        let due = mono + duration(slot.since(now));
        let base = due.checked_sub(offset).unwrap_or(due);
        moved.push((seq, id, base, slot.saturating_sub(Micros(micros(offset)))));
    }
    k.by_due.clear();
    for &(seq, id, base, _) in &moved {
        k.by_due.insert((base, seq), id);
    }
    for (_, id, base, slot) in moved {
        if let Some(c) = q.clients.get_mut(&id) {
            c.base = base;
            c.slot = slot;
        }
    }
    q.rewake(serial, s.origin);
    drop(q);
    s.changed.notify_one();
}

impl Queues {
    fn serial(&mut self, key: KeyId) -> u64 {
        if let Some(&s) = self.serial_of.get(&key) {
            return s;
        }
        self.next_serial = self.next_serial.wrapping_add(1);
        let s = self.next_serial;
        self.serial_of.insert(key.clone(), s);
        self.keys.insert(
            s,
            KeyQueue {
                name: key,
                ..KeyQueue::default()
            },
        );
        s
    }

    /// Files the key's next wake (its head's turn, its earliest deadline,
    /// or when its carry stops mattering), or forgets a key with nothing left.
    fn rewake(&mut self, serial: u64, origin: Instant) {
        let Some(k) = self.keys.get_mut(&serial) else {
            return;
        };
        let due = k.by_due.keys().next().map(|(base, _)| *base + k.offset);
        let deadline = k.by_deadline.iter().next().map(|(d, _, _)| *d);
        let carry_end = (k.carry > 0 || !k.gone.is_empty())
            .then_some(k.relevant_until)
            .flatten();
        let wake = [due, deadline, carry_end].into_iter().flatten().min();
        if let Some(old) = k.wake.take() {
            self.wakes.remove(&(old, serial));
        }
        match wake {
            Some(w) => {
                k.wake = Some(w);
                self.wakes.insert((w, serial));
            }
            None => {
                if k.carry > 0 {
                    CARRIES.fetch_sub(1, Relaxed);
                }
                let name = std::mem::take(&mut k.name);
                self.keys.remove(&serial);
                self.serial_of.remove(&name);
            }
        }
        let next = self.wakes.iter().next().map_or(u64::MAX, |(w, _)| {
            u64::try_from(w.saturating_duration_since(origin).as_nanos()).unwrap_or(u64::MAX)
        });
        NEXT_WAKE_NS.store(next, Relaxed);
    }

    /// Takes a client out of every index.
    fn remove(&mut self, id: usize) -> Option<Client> {
        let c = self.clients.remove(&id)?;
        if let Some(k) = self.keys.get_mut(&c.key) {
            k.by_due.remove(&(c.base, c.seq));
            k.by_deadline.remove(&(c.deadline, c.seq, id));
        }
        Some(c)
    }

    /// Takes a client out that leaves without its reply: its tag waits for
    /// the key's next command.
    fn remove_gone(&mut self, id: usize) -> Option<Client> {
        let c = self.remove(id)?;
        if let (Some(tag), Some(k)) = (c.tag, self.keys.get_mut(&c.key)) {
            k.gone.push(tag);
        }
        Some(c)
    }

    /// Releases or refuses what is due on one key at `now`. Returns the
    /// clients to unblock, with their replies.
    fn due(&mut self, serial: u64, now: Instant, out: &mut Vec<(BlockedClient, Box<dyn Held>)>) {
        loop {
            let Some(k) = self.keys.get(&serial) else {
                return;
            };
            let Some((&(base, _), &id)) = k.by_due.iter().next() else {
                break;
            };
            let (offset, due) = (k.offset, base + k.offset);
            if due > now {
                break;
            }
            let Some(c) = self.remove(id) else { break };
            let late_by = now.saturating_duration_since(due);
            let slot = c.slot.saturating_add(Micros(micros(offset)));
            if late_by <= c.on_time_for {
                out.push((c.bc, c.release.release(slot)));
                stats::held(stats::Held::Released { late: false });
            } else if now > c.deadline {
                if let (Some(tag), Some(k)) = (c.tag, self.keys.get_mut(&serial)) {
                    k.gone.push(tag);
                }
                out.push((c.bc, c.release.refuse()));
                stats::held(stats::Held::TimedOut);
            } else {
                // Released now, re-slotted; everyone behind it moves as much.
                let slot = slot.saturating_add(Micros(micros(late_by).max(1)));
                out.push((c.bc, c.release.release(slot)));
                stats::held(stats::Held::Released { late: true });
                if let Some(k) = self.keys.get_mut(&serial) {
                    k.offset += late_by;
                    if k.carry == 0 {
                        CARRIES.fetch_add(1, Relaxed);
                    }
                    k.carry = k.carry.saturating_add(micros(late_by).max(1));
                    k.relevant_until = k.relevant_until.map(|r| r + late_by);
                }
            }
        }
        // Those whose deadline came before their (moved) turn.
        loop {
            let Some(k) = self.keys.get(&serial) else {
                return;
            };
            let Some(&(deadline, _, id)) = k.by_deadline.iter().next() else {
                break;
            };
            if deadline > now {
                break;
            }
            let Some(c) = self.remove_gone(id) else { break };
            out.push((c.bc, c.release.refuse()));
            stats::held(stats::Held::TimedOut);
        }
        // A carry nobody took in time no longer matters: the key's state
        // would be idle (full) by now either way.
        if let Some(k) = self.keys.get_mut(&serial)
            && k.carry > 0
            && k.by_due.is_empty()
            && k.relevant_until.is_none_or(|r| r <= now)
        {
            k.carry = 0;
            CARRIES.fetch_sub(1, Relaxed);
        }
    }
}

/// The event loop's before-sleep hook (main thread): releases what is due.
fn before_sleep() {
    let next = NEXT_WAKE_NS.load(Relaxed);
    if next == u64::MAX {
        return;
    }
    let Some(s) = SCHEDULER.get() else { return };
    let now = Instant::now();
    let since = u64::try_from(now.saturating_duration_since(s.origin).as_nanos()).unwrap_or(0);
    if since < next {
        return;
    }
    let mut out = Vec::new();
    let mut q = lock(s);
    WAKE_PENDING.store(false, Relaxed);
    while let Some(&(at, serial)) = q.wakes.iter().next() {
        if at > now {
            break;
        }
        q.due(serial, now, &mut out);
        q.rewake(serial, s.origin);
    }
    unblock_all(s, q, out);
}

/// Releases what is due on one key, as the before-sleep hook would, before
/// a command decides on that key. A held client whose turn passed while
/// the hook could not run (a slow command, a stalled machine, IO threads
/// delaying the loop) is released now, or re-slotted if late, and the
/// command then takes that shift into the state it writes: a turn it hands
/// out comes after the moved ones, never between them (an immediate permit
/// granted during a stall would otherwise land within one interval of a
/// re-slotted caller).
#[inline] // the fast path, in every write
pub fn release_due(ctx: Ctx<'_>, name: RStr<'_>) {
    let next = NEXT_WAKE_NS.load(Relaxed);
    if next != u64::MAX {
        release_due_from(ctx, name, next);
    }
}

#[inline(never)] // only while something is held or carried
fn release_due_from(ctx: Ctx<'_>, name: RStr<'_>, next: u64) {
    let Some(s) = SCHEDULER.get() else { return };
    let now = Instant::now();
    let since = u64::try_from(now.saturating_duration_since(s.origin).as_nanos()).unwrap_or(0);
    if since < next {
        return;
    }
    let mut q = lock(s);
    let Some(&serial) = q.serial_of.get(&key_id(ctx, name)) else {
        return;
    };
    let mut out = Vec::new();
    q.due(serial, now, &mut out);
    q.rewake(serial, s.origin);
    unblock_all(s, q, out);
}

/// After a change to the queues: counts the clients still held, lets go
/// of the lock, tells the release thread, and sends the replies decided.
fn unblock_all(s: &Scheduler, q: MutexGuard<'_, Queues>, out: Vec<(BlockedClient, Box<dyn Held>)>) {
    stats::HELD.store(q.clients.len() as u64, Relaxed);
    drop(q);
    s.changed.notify_one();
    for (bc, reply) in out {
        bc.unblock(reply);
    }
}

/// The release thread: sleeps until the next wake, then wakes the event
/// loop (whose before-sleep hook does the rest), once per wake.
fn wake_loop() {
    let Some(s) = SCHEDULER.get() else { return };
    let mut q = lock(s);
    loop {
        let now = Instant::now();
        let next = q.wakes.iter().next().map(|(at, _)| *at);
        q = match next {
            Some(at) if at <= now => {
                if !WAKE_PENDING.swap(true, Relaxed) {
                    ffi::blocked::wake_main_thread();
                }
                // The hook notifies when it has run; until then (a busy
                // server) there is nothing more to do.
                s.changed
                    .wait_timeout(q, Duration::from_millis(100))
                    .map(|(q, _)| q)
                    .unwrap_or_else(|p| p.into_inner().0)
            }
            Some(at) => s
                .changed
                .wait_timeout(q, at.saturating_duration_since(now))
                .map(|(q, _)| q)
                .unwrap_or_else(|p| p.into_inner().0),
            None => s.changed.wait(q).unwrap_or_else(|p| p.into_inner()),
        };
    }
}

/// A held client left its queue without a reply of ours (`CLIENT UNBLOCK`
/// answered it nil, or it went away).
fn forget(id: usize, event: stats::Held) {
    let Some(s) = SCHEDULER.get() else { return };
    let mut q = lock(s);
    let Some(c) = q.remove_gone(id) else { return };
    q.rewake(c.key, s.origin);
    stats::HELD.store(q.clients.len() as u64, Relaxed);
    drop(q);
    stats::held(event);
    c.bc.unblock_silently();
}

/// Keys Redis deleted or replaced (DEL, RENAME, a flush, ...): the
/// clients held on them are refused now, since the turns they were given
/// belonged to a state that is gone (a key made again starts afresh, and
/// must not also admit them); the key's carry and gone tags go with it.
fn keys_gone(matches: impl Fn(&KeyId) -> bool) {
    let Some(s) = SCHEDULER.get() else { return };
    let mut q = lock(s);
    let serials: Vec<u64> = q
        .serial_of
        .iter()
        .filter(|(key, _)| matches(key))
        .map(|(_, serial)| *serial)
        .collect();
    if serials.is_empty() {
        return;
    }
    let mut out = Vec::new();
    for serial in serials {
        let ids: Vec<usize> = q
            .keys
            .get(&serial)
            .map(|k| k.by_due.values().copied().collect())
            .unwrap_or_default();
        for id in ids {
            if let Some(c) = q.remove(id) {
                out.push((c.bc, c.release.refuse()));
                stats::held(stats::Held::KeyGone);
            }
        }
        if let Some(k) = q.keys.get_mut(&serial) {
            if k.carry > 0 {
                CARRIES.fetch_sub(1, Relaxed);
            }
            k.carry = 0;
            k.offset = Duration::ZERO;
            k.gone.clear();
            k.relevant_until = None;
        }
        q.rewake(serial, s.origin);
    }
    unblock_all(s, q, out);
}

fn on_unblocked(id: usize) {
    forget(id, stats::Held::Unblocked);
}

fn on_disconnected(id: usize) {
    forget(id, stats::Held::Disconnected);
}
