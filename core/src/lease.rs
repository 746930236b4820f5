//! Leases: a concurrency limit (Stripe's concurrent-requests limiter). At
//! most `limit` worth of leases are live at any instant; a lease is live
//! from its start until it is released or expires.
//!
//! A key's state is its limit, its live leases and the leases reserved for
//! callers the server holds (`BLOCK`), each with an id, a cost, a start and
//! a length (`ttl`): it expires `ttl` after its start unless renewed.
//! Reservations queue FIFO: each starts no earlier than the one before it,
//! at the first instant its cost fits beside everything live then, so a
//! held caller is admitted the moment capacity frees by a release, an
//! expiry or a raised limit, with no write at that moment: the reservation
//! was written when the caller asked, and every later change (a release, a
//! renewal, a new limit, a waiter gone) re-plans the queue in the command
//! that makes it. A reservation also has its caller's deadline (BLOCK's
//! timeout): one whose first fit by expiries lies beyond its deadline is
//! kept in the queue, taking no place (a release or a raised limit may
//! still pull it in before its deadline), and is dropped once its deadline
//! has passed.
//!
//! Invariants (see the property tests):
//! - at any instant, the costs of the leases live then (reservations from
//!   their start) add up to at most the limit in force;
//! - a lease stops counting at its `expires_at`, exactly;
//! - ids are unique and increase: each is at least its issue time in µs
//!   and above every id the key issued before, so they never repeat, even
//!   after the key expired and was created again (on a clock that does not
//!   step back);
//! - reservations start in their order (FIFO) and never before the moment
//!   they were planned for, once a re-plan moved them later;
//! - the state is bounded: at most [`MAX_LEASES`] leases and reservations,
//!   a limit of at most [`MAX_LIMIT`], a lease of at most [`MAX_WAIT`].
//!
//! Replication is O(1) per call: a write names the operation and its
//! instant ([`Patch`]), and a replica runs the same deterministic code on
//! the same state ([`State::apply`]); only a full copy (RDB, AOF rewrite,
//! DUMP) carries the whole table.
//!
//! Layout (varints, see `codec`; `~` a signed varint): full state `'l'
//! limit last_id count (last_id−id cost ~start−last_id ttl_us
//! ~expires_at−start−ttl ~deadline−start)*`, about 12 bytes a lease; patch
//! `'L' now_us cancelled_count (id)* op`, op = `0 limit cost ttl_us held
//! max_wait_us` (acquire) | `1 id` (release) | `2 id ttl_us` (renew) | `3`
//! (nothing but the cancellations and the purge).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::codec::{Codec, CodecError, Encoded, Reader, Writer};
use crate::step::{State, Step, Write};
use crate::time::{MAX_WAIT, Micros, Timestamp};

/// The largest limit: 10^15.
pub const MAX_LIMIT: u64 = 1_000_000_000_000_000;
/// The most leases (live and reserved) one key holds.
pub const MAX_LEASES: usize = 10_000;

/// One lease, live or reserved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Lease {
    pub id: u64,
    pub cost: u64,
    /// When it starts counting (after now for a reservation).
    pub start: Timestamp,
    /// How long after its start it lasts (a reservation's length).
    pub ttl: Micros,
    pub expires_at: Timestamp,
    /// A reservation's caller's deadline (BLOCK's timeout); its `start`
    /// for a lease granted at once.
    pub deadline: Timestamp,
}

impl Lease {
    /// Whether it takes its place from its start: a lease, or a
    /// reservation planned to start by its caller's deadline.
    pub fn placed(&self) -> bool {
        self.start <= self.deadline
    }

    /// Whether it counts against the limit at `at`.
    fn counts_at(&self, at: Timestamp) -> bool {
        self.placed() && self.start <= at && at < self.expires_at
    }
}

/// A key's state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct LeaseState {
    limit: u64,
    /// The last id issued.
    last_id: u64,
    /// In start order (reservations in queue order after the live ones).
    leases: Vec<Lease>,
}

/// What a LEASE call asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Acquire {
    /// `1..=MAX_LIMIT`.
    pub limit: u64,
    /// `1 µs..=MAX_WAIT`.
    pub ttl: Micros,
    /// `1..=limit` to be granted ever.
    pub cost: u64,
    /// Whether the server holds the caller until its lease starts (BLOCK).
    pub held: bool,
    /// BLOCK's timeout: the caller's deadline is `now + max_wait`.
    pub max_wait: Micros,
}

/// What LEASE answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Granted {
    /// A lease, starting `wait` from now (zero: at once); a held caller's
    /// lease may start after its deadline (`!lease.placed()`): it waits
    /// for a release until then.
    Lease {
        lease: Lease,
        wait: Micros,
        /// The costs live when it starts, its own included.
        in_use: u64,
        limit: u64,
    },
    /// No lease: it does not fit now (and the caller is not held), or
    /// never (cost above the limit), or the key is full of leases.
    Refused,
}

/// The other side of a write: how reservations moved.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Moved {
    /// Reservations whose start moved: `(id, new start)`.
    pub starts: Vec<(u64, Timestamp)>,
    /// Reservations dropped (they can never fit under the new limit, or
    /// their caller's deadline passed).
    pub dropped: Vec<u64>,
}

/// An operation, as replication carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Acquire(Acquire),
    Release(u64),
    Renew(u64, Micros),
    Nothing,
}

/// A write as replication carries it: the instant, the reservations
/// cancelled first (their waiters left), the operation.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Patch {
    now: Timestamp,
    cancelled: Vec<u64>,
    op: Op,
}

impl LeaseState {
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// A copy of `old` (or an empty state) to change: with room for one
    /// more lease, so an acquire does not grow the key by a doubling (a
    /// clone is exact, and a push onto it would double it).
    fn to_change(old: Option<&LeaseState>) -> LeaseState {
        let Some(old) = old else {
            return LeaseState::default();
        };
        let mut leases = Vec::with_capacity(old.leases.len().saturating_add(1));
        leases.extend_from_slice(&old.leases);
        LeaseState {
            limit: old.limit,
            last_id: old.last_id,
            leases,
        }
    }

    /// Gives back room beyond one spare lease (after releases, expiries or
    /// a re-plan): a key holds about its leases' bytes, never twice them.
    fn trim(&mut self) {
        if self.leases.capacity() > self.leases.len().saturating_add(1) {
            self.leases.shrink_to_fit();
        }
    }

    pub fn leases(&self) -> &[Lease] {
        &self.leases
    }

    /// The costs of the leases live at `at`.
    pub fn in_use(&self, at: Timestamp) -> u64 {
        self.leases
            .iter()
            .filter(|l| l.counts_at(at))
            .fold(0u64, |sum, l| sum.saturating_add(l.cost))
    }

    /// Reservations (held callers not yet started) at `now`.
    pub fn waiting(&self, now: Timestamp) -> usize {
        self.leases
            .iter()
            .filter(|l| l.start > now && l.deadline >= now)
            .count()
    }

    /// The earliest expiry of a lease live at `now`.
    pub fn next_expiry(&self, now: Timestamp) -> Option<Timestamp> {
        self.leases
            .iter()
            .filter(|l| l.counts_at(now))
            .map(|l| l.expires_at)
            .min()
    }

    /// Drops what expired by `now`, and reservations whose caller's
    /// deadline passed before they started.
    fn purge(&mut self, now: Timestamp) {
        self.leases
            .retain(|l| l.expires_at > now && (l.placed() || l.deadline >= now));
    }

    /// Places the reservations (leases starting after `now`) again, in
    /// their order, each at the first instant from `now` (and from the one
    /// before it) at which its cost fits beside everything live then.
    /// O(n log n); returns the planner as it ends (for a new reservation
    /// behind them all).
    fn replan(&mut self, now: Timestamp) -> (Moved, Option<Planner>) {
        // Nobody waiting (the common case): nothing to place.
        if self.leases.iter().all(|l| l.start <= now) {
            return (Moved::default(), None);
        }
        let (live, queued): (Vec<Lease>, Vec<Lease>) =
            self.leases.iter().partition(|l| l.start <= now);
        let mut planner = Planner::new(self.limit, now);
        for l in &live {
            planner.add(l);
        }
        self.leases = live;
        let mut moved = Moved::default();
        for r in queued {
            match planner.fit(r.cost) {
                Some(start) => {
                    if start != r.start {
                        moved.starts.push((r.id, start));
                    }
                    let placed = Lease {
                        start,
                        expires_at: start.saturating_add(r.ttl),
                        ..r
                    };
                    planner.add(&placed);
                    self.leases.push(placed);
                }
                None => moved.dropped.push(r.id),
            }
        }
        (moved, Some(planner))
    }

    fn next_id(&mut self, now: Timestamp) -> u64 {
        self.last_id = self.last_id.saturating_add(1).max(now.0);
        self.last_id
    }

    /// Runs a write: the purge, the cancellations, the operation, the
    /// re-plan. What the master runs and a replica runs again.
    fn run(&mut self, p: &Patch) -> (Granted, Moved, Option<Timestamp>) {
        self.purge(p.now);
        if !p.cancelled.is_empty() {
            let cancelled: std::collections::HashSet<u64> = p.cancelled.iter().copied().collect();
            self.leases.retain(|l| !cancelled.contains(&l.id));
        }
        let now = p.now;
        let mut renewed = None;
        match p.op {
            Op::Acquire(a) => {
                self.limit = a.limit;
                let (moved, planner) = self.replan(now);
                return (self.acquire(now, &a, planner), moved, None);
            }
            Op::Release(id) => self.leases.retain(|l| l.id != id || l.start > now),
            Op::Renew(id, ttl) => {
                renewed = self
                    .leases
                    .iter_mut()
                    .find(|l| l.id == id && l.start <= now)
                    .map(|l| {
                        l.ttl = ttl;
                        l.expires_at = now.saturating_add(ttl);
                        l.expires_at
                    });
            }
            Op::Nothing => {}
        }
        // Reservations move earlier after a release, later after a renewal.
        let (moved, _) = self.replan(now);
        (Granted::Refused, moved, renewed)
    }

    /// A new lease behind every reservation (FIFO), placed by `planner`
    /// (the re-plan's, which ends behind them; `None`: nobody waits, so
    /// only the live leases count).
    fn acquire(&mut self, now: Timestamp, a: &Acquire, planner: Option<Planner>) -> Granted {
        if a.cost == 0 || a.cost > self.limit || self.leases.len() >= MAX_LEASES {
            return Granted::Refused;
        }
        let start = match planner {
            Some(mut p) => p.fit(a.cost),
            // O(n): it fits now, or a planner finds when.
            None if self.in_use(now).saturating_add(a.cost) <= self.limit => Some(now),
            None => {
                let mut p = Planner::new(self.limit, now);
                for l in &self.leases {
                    p.add(l);
                }
                p.fit(a.cost)
            }
        };
        let Some(start) = start else {
            return Granted::Refused;
        };
        let wait = start.since(now);
        if wait > Micros::ZERO && !a.held {
            return Granted::Refused;
        }
        let deadline = if wait == Micros::ZERO {
            start
        } else {
            now.saturating_add(a.max_wait.min(MAX_WAIT))
        };
        let lease = Lease {
            id: self.next_id(now),
            cost: a.cost,
            start,
            ttl: a.ttl,
            expires_at: start.saturating_add(a.ttl),
            deadline,
        };
        self.leases.push(lease);
        // Its own cost counted, placed or not (as when it starts).
        let own = if lease.placed() { 0 } else { lease.cost };
        Granted::Lease {
            lease,
            wait,
            in_use: self.in_use(start).saturating_add(own),
            limit: self.limit,
        }
    }
}

/// Plans reservations in start order: the places in use from `after` on,
/// held by placed leases that all start by `after`, ended one by one (by
/// expiry) as `after` moves forward. Each fit is O(log n).
struct Planner {
    limit: u64,
    after: Timestamp,
    in_use: u64,
    /// `(expires_at, cost)` of the placed leases still live at `after`.
    ends: BinaryHeap<Reverse<(Timestamp, u64)>>,
}

impl Planner {
    fn new(limit: u64, after: Timestamp) -> Planner {
        Planner {
            limit,
            after,
            in_use: 0,
            ends: BinaryHeap::new(),
        }
    }

    /// Counts a lease that starts by `after` (one not placed takes nothing).
    fn add(&mut self, l: &Lease) {
        if l.placed() && l.expires_at > self.after {
            self.in_use = self.in_use.saturating_add(l.cost);
            self.ends.push(Reverse((l.expires_at, l.cost)));
        }
    }

    /// The first instant from `after` at which `cost` fits beside what is
    /// live then (the costs live only fall from there, at expiries), and
    /// `after` moves there. `None` for a cost above the limit.
    fn fit(&mut self, cost: u64) -> Option<Timestamp> {
        if cost > self.limit {
            return None;
        }
        while self.in_use.saturating_add(cost) > self.limit {
            let Reverse((end, freed)) = self.ends.pop()?;
            self.after = self.after.max(end);
            self.in_use = self.in_use.saturating_sub(freed);
        }
        // What ends at the fit is not live there either.
        while let Some(&Reverse((end, freed))) = self.ends.peek() {
            if end > self.after {
                break;
            }
            self.ends.pop();
            self.in_use = self.in_use.saturating_sub(freed);
        }
        Some(self.after)
    }
}

/// A decision's answer and how the queue moved (the glue re-times the held
/// callers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome<A> {
    pub answer: A,
    pub moved: Moved,
}

/// Runs `patch` on `state`: the write (none when nothing changed; a
/// delete when no lease is left) and the answer.
fn step<A>(
    state: Option<&LeaseState>,
    patch: Patch,
    answer: impl FnOnce(Granted, Option<Timestamp>) -> A,
) -> Step<LeaseState, Outcome<A>> {
    let mut next = LeaseState::to_change(state);
    let (granted, moved, renewed) = next.run(&patch);
    next.trim();
    let write = if state == Some(&next) || (state.is_none() && next.leases.is_empty()) {
        Write::Keep
    } else if next.leases.is_empty() {
        Write::Delete
    } else {
        let expire_at = Some(next.expiry());
        Write::Patch {
            value: next,
            patch: patch.encode(),
            expire_at,
        }
    };
    Step {
        write,
        answer: Outcome {
            answer: answer(granted, renewed),
            moved,
        },
    }
}

/// LEASE: a lease of `cost` for `ttl`, now if it fits, else (held) the
/// first instant it fits within `max_wait`, behind every waiter. The ids
/// in `cancelled` (reservations whose callers left) are dropped first.
pub fn acquire(
    state: Option<&LeaseState>,
    now: Timestamp,
    cancelled: Vec<u64>,
    a: &Acquire,
) -> Step<LeaseState, Outcome<Granted>> {
    let patch = Patch {
        now,
        cancelled,
        op: Op::Acquire(*a),
    };
    step(state, patch, |g, _| g)
}

/// Whether lease `id` is live at `now` (started, not expired).
fn is_live(state: Option<&LeaseState>, id: u64, now: Timestamp) -> bool {
    state.is_some_and(|s| {
        s.leases
            .iter()
            .any(|l| l.id == id && l.start <= now && now < l.expires_at)
    })
}

/// LEASE.RELEASE: ends a live lease at once (a reservation, or an unknown
/// or expired id, is not released). Answers whether it was.
pub fn release(
    state: Option<&LeaseState>,
    now: Timestamp,
    cancelled: Vec<u64>,
    id: u64,
) -> Step<LeaseState, Outcome<bool>> {
    let was_live = is_live(state, id, now);
    let patch = Patch {
        now,
        cancelled,
        op: Op::Release(id),
    };
    step(state, patch, |_, _| was_live)
}

/// LEASE.RENEW: a live lease now lasts `ttl` from now; `None` when it is
/// not live (expired, released, unknown): its holder lost it.
pub fn renew(
    state: Option<&LeaseState>,
    now: Timestamp,
    cancelled: Vec<u64>,
    id: u64,
    ttl: Micros,
) -> Step<LeaseState, Outcome<Option<Timestamp>>> {
    let live = is_live(state, id, now);
    let op = if live {
        Op::Renew(id, ttl)
    } else {
        Op::Nothing
    };
    let patch = Patch { now, cancelled, op };
    step(state, patch, |_, r| r)
}

/// What LEASE.PEEK shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseSnapshot {
    pub in_use: u64,
    pub limit: u64,
    pub waiting: usize,
    pub next_expiry: Option<Timestamp>,
}

/// LEASE.PEEK: the key now, writing nothing; `None` for no key.
pub fn peek(state: Option<&LeaseState>, now: Timestamp) -> Option<LeaseSnapshot> {
    let s = state?;
    Some(LeaseSnapshot {
        in_use: s.in_use(now),
        limit: s.limit,
        waiting: s.waiting(now),
        next_expiry: s.next_expiry(now),
    })
}

impl State for LeaseState {
    /// When the last lease ends (or, for a reservation not placed, when
    /// its caller stops waiting).
    fn expiry(&self) -> Timestamp {
        self.leases
            .iter()
            .map(|l| if l.placed() { l.expires_at } else { l.deadline })
            .max()
            .unwrap_or(Timestamp::ZERO)
    }

    /// Leases do not move with a stalled release (a late holder simply has
    /// less of its lease).
    fn paused(&self, _by: Micros) -> LeaseState {
        self.clone()
    }

    fn heap_size(&self) -> usize {
        size_of::<Self>().saturating_add(self.leases.capacity().saturating_mul(size_of::<Lease>()))
    }

    /// A full state, or a patch applied to `old` (what the master ran).
    fn apply(old: Option<&LeaseState>, payload: &[u8]) -> Result<LeaseState, CodecError> {
        if payload.first() != Some(&PATCH_TAG) {
            return LeaseState::decode(payload);
        }
        let patch = Patch::decode(payload)?;
        let mut next = LeaseState::to_change(old);
        next.run(&patch);
        next.trim();
        next.check()?;
        Ok(next)
    }
}

// ---- codec --------------------------------------------------------------------

const TAG: u8 = b'l';
const PATCH_TAG: u8 = b'L';

impl LeaseState {
    /// Whether a decoded state is one calls can produce.
    fn check(&self) -> Result<(), CodecError> {
        let bad = |what| Err(CodecError::BadField(what));
        if self.limit > MAX_LIMIT || self.leases.len() > MAX_LEASES {
            return bad("limit");
        }
        for l in &self.leases {
            if l.cost == 0 || l.cost > MAX_LIMIT || l.ttl > MAX_WAIT || l.ttl == Micros::ZERO {
                return bad("lease");
            }
            if l.expires_at <= l.start || l.expires_at.since(l.start) > MAX_WAIT {
                return bad("lease expiry");
            }
            if l.deadline > l.start.saturating_add(MAX_WAIT) || l.start > Timestamp::LATEST {
                return bad("lease deadline");
            }
            if l.id > self.last_id || l.id == 0 {
                return bad("lease id");
            }
        }
        Ok(())
    }
}

impl Codec for LeaseState {
    fn encode(&self) -> Encoded {
        let mut w = Writer::new(TAG);
        w.u64(self.limit);
        w.u64(self.last_id);
        w.u64(u64::try_from(self.leases.len()).unwrap_or(u64::MAX));
        let diff = |a: u64, b: u64| i128::from(a).saturating_sub(i128::from(b));
        for l in &self.leases {
            w.u64(self.last_id.saturating_sub(l.id));
            w.u64(l.cost);
            w.int(diff(l.start.0, self.last_id));
            w.u64(l.ttl.0);
            w.int(diff(l.expires_at.0, l.start.0.saturating_add(l.ttl.0)));
            w.int(diff(l.deadline.0, l.start.0));
        }
        w.finish()
    }

    fn decode(bytes: &[u8]) -> Result<LeaseState, CodecError> {
        let mut r = Reader::new(bytes);
        match r.u8()? {
            TAG => {}
            t if t.is_ascii_alphabetic() => return Err(CodecError::WrongKind),
            v => return Err(CodecError::UnknownVersion(v)),
        }
        let limit = r.u64("limit")?;
        let last_id = r.u64("last id")?;
        let n = usize::try_from(r.u64("count")?).map_err(|_| CodecError::BadField("count"))?;
        if n > MAX_LEASES {
            return Err(CodecError::BadField("count"));
        }
        let mut leases = Vec::with_capacity(n);
        // `base + delta` as a time, or the field is bad.
        let at = |base: u64, delta: i128, what| {
            i128::from(base)
                .checked_add(delta)
                .and_then(|t| u64::try_from(t).ok())
                .map(Timestamp)
                .ok_or(CodecError::BadField(what))
        };
        for _ in 0..n {
            let id = last_id
                .checked_sub(r.u64("lease id")?)
                .ok_or(CodecError::BadField("lease id"))?;
            let cost = r.u64("lease")?;
            let start = at(last_id, r.int("lease")?, "lease")?;
            let ttl = Micros(r.u64("lease")?);
            let expires_at = at(
                start.0.saturating_add(ttl.0),
                r.int("lease")?,
                "lease expiry",
            )?;
            let deadline = at(start.0, r.int("lease")?, "lease deadline")?;
            leases.push(Lease {
                id,
                cost,
                start,
                ttl,
                expires_at,
                deadline,
            });
        }
        r.end()?;
        let s = LeaseState {
            limit,
            last_id,
            leases,
        };
        s.check()?;
        Ok(s)
    }

    fn claims(bytes: &[u8]) -> bool {
        matches!(bytes, [TAG | PATCH_TAG, ..])
    }
}

impl Patch {
    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(PATCH_TAG);
        w.u64(self.now.0);
        w.u64(u64::try_from(self.cancelled.len()).unwrap_or(u64::MAX));
        for id in &self.cancelled {
            w.u64(*id);
        }
        match self.op {
            Op::Acquire(a) => {
                w.u8(0);
                w.u64(a.limit);
                w.u64(a.cost);
                w.u64(a.ttl.0);
                w.u8(u8::from(a.held));
                w.u64(a.max_wait.0);
            }
            Op::Release(id) => {
                w.u8(1);
                w.u64(id);
            }
            Op::Renew(id, ttl) => {
                w.u8(2);
                w.u64(id);
                w.u64(ttl.0);
            }
            Op::Nothing => w.u8(3),
        }
        w.finish().as_bytes().to_vec()
    }

    fn decode(bytes: &[u8]) -> Result<Patch, CodecError> {
        let mut r = Reader::new(bytes);
        if r.u8()? != PATCH_TAG {
            return Err(CodecError::WrongKind);
        }
        let now = Timestamp(r.u64("patch time")?);
        let n =
            usize::try_from(r.u64("cancelled")?).map_err(|_| CodecError::BadField("cancelled"))?;
        if n > MAX_LEASES {
            return Err(CodecError::BadField("cancelled"));
        }
        let mut cancelled = Vec::with_capacity(n);
        for _ in 0..n {
            cancelled.push(r.u64("cancelled")?);
        }
        let op = match r.u8()? {
            0 => {
                let a = Acquire {
                    limit: r.u64("limit")?,
                    cost: r.u64("cost")?,
                    ttl: Micros(r.u64("ttl")?),
                    held: r.u8()? != 0,
                    max_wait: Micros(r.u64("max wait")?),
                };
                if a.limit == 0 || a.limit > MAX_LIMIT || a.ttl == Micros::ZERO || a.ttl > MAX_WAIT
                {
                    return Err(CodecError::BadField("acquire"));
                }
                Op::Acquire(a)
            }
            1 => Op::Release(r.u64("id")?),
            2 => {
                let id = r.u64("id")?;
                let ttl = Micros(r.u64("ttl")?);
                if ttl == Micros::ZERO || ttl > MAX_WAIT {
                    return Err(CodecError::BadField("ttl"));
                }
                Op::Renew(id, ttl)
            }
            3 => Op::Nothing,
            _ => return Err(CodecError::BadField("operation")),
        };
        r.end()?;
        Ok(Patch { now, cancelled, op })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000;
    const T0: u64 = 1_790_000_000 * SEC;

    fn call(limit: u64, ttl_s: u64, cost: u64, held: bool) -> Acquire {
        Acquire {
            limit,
            ttl: Micros(ttl_s * SEC),
            cost,
            held,
            max_wait: Micros(60 * SEC),
        }
    }

    /// Runs a step on `s`, keeps its state, returns its outcome.
    fn keep<A>(
        s: &mut Option<LeaseState>,
        f: impl FnOnce(Option<&LeaseState>) -> Step<LeaseState, Outcome<A>>,
    ) -> Outcome<A> {
        let step = f(s.as_ref());
        match step.write {
            Write::Patch { value, .. } | Write::Store { value, .. } => *s = Some(value),
            Write::Delete => *s = None,
            Write::Keep => {}
        }
        step.answer
    }

    fn lease_of(g: Granted) -> Lease {
        match g {
            Granted::Lease { lease, .. } => lease,
            Granted::Refused => panic!("refused"),
        }
    }

    #[test]
    fn a_key_holds_room_for_at_most_one_spare_lease() {
        let mut s = None;
        let now = Timestamp(T0);
        let mut ids = Vec::new();
        for n in 1..=1000usize {
            let granted = keep(&mut s, |x| {
                acquire(x, now, vec![], &call(1000, 10, 1, false))
            });
            ids.push(lease_of(granted.answer).id);
            let st = s.as_ref().unwrap();
            assert_eq!(st.leases.len(), n);
            assert!(
                st.leases.capacity() <= n + 1,
                "{n} leases, room for {}",
                st.leases.capacity()
            );
        }
        for (released, id) in ids.into_iter().enumerate().take(900) {
            assert!(keep(&mut s, |x| release(x, now, vec![], id)).answer);
            let st = s.as_ref().unwrap();
            assert!(
                st.leases.capacity() <= 1000 - released,
                "room for {}",
                st.leases.capacity()
            );
        }
    }

    #[test]
    fn at_most_limit_then_refused_then_released() {
        let mut s = None;
        let now = Timestamp(T0);
        let a = lease_of(keep(&mut s, |x| acquire(x, now, vec![], &call(2, 10, 1, false))).answer);
        let b = lease_of(keep(&mut s, |x| acquire(x, now, vec![], &call(2, 10, 1, false))).answer);
        assert!(b.id > a.id && a.id >= T0, "ids increase from the clock");
        let third = keep(&mut s, |x| acquire(x, now, vec![], &call(2, 10, 1, false)));
        assert_eq!(third.answer, Granted::Refused);
        assert!(keep(&mut s, |x| release(x, now, vec![], a.id)).answer);
        assert!(
            !keep(&mut s, |x| release(x, now, vec![], a.id)).answer,
            "twice"
        );
        let c = lease_of(keep(&mut s, |x| acquire(x, now, vec![], &call(2, 10, 1, false))).answer);
        assert!(c.id > b.id);
    }

    #[test]
    fn expiry_frees_exactly_and_renew_fails_after_it() {
        let mut s = None;
        let now = Timestamp(T0);
        let a = lease_of(keep(&mut s, |x| acquire(x, now, vec![], &call(1, 10, 1, false))).answer);
        assert_eq!(a.expires_at, Timestamp(T0 + 10 * SEC));
        let just_before = Timestamp(T0 + 10 * SEC - 1);
        assert_eq!(
            keep(&mut s, |x| acquire(
                x,
                just_before,
                vec![],
                &call(1, 10, 1, false)
            ))
            .answer,
            Granted::Refused
        );
        let at = Timestamp(T0 + 10 * SEC);
        assert_eq!(
            keep(&mut s, |x| renew(x, at, vec![], a.id, Micros(SEC))).answer,
            None
        );
        assert!(matches!(
            keep(&mut s, |x| acquire(x, at, vec![], &call(1, 10, 1, false))).answer,
            Granted::Lease { .. }
        ));
    }

    #[test]
    fn waiters_queue_fifo_and_a_release_pulls_them_in() {
        let mut s = None;
        let now = Timestamp(T0);
        let a = lease_of(keep(&mut s, |x| acquire(x, now, vec![], &call(1, 10, 1, false))).answer);
        // Two held callers: the first starts when `a` expires, the second after it.
        let w1 = keep(&mut s, |x| acquire(x, now, vec![], &call(1, 5, 1, true))).answer;
        let w2 = keep(&mut s, |x| acquire(x, now, vec![], &call(1, 5, 1, true))).answer;
        let (w1, w2) = (lease_of(w1), lease_of(w2));
        assert_eq!(w1.start, a.expires_at);
        assert_eq!(w2.start, w1.expires_at);
        // Not held: refused rather than queued.
        assert_eq!(
            keep(&mut s, |x| acquire(x, now, vec![], &call(1, 5, 1, false))).answer,
            Granted::Refused
        );
        // Releasing `a` 2 s in: the waiters move up, in order.
        let at = Timestamp(T0 + 2 * SEC);
        let out = keep(&mut s, |x| release(x, at, vec![], a.id));
        assert!(out.answer);
        assert_eq!(
            out.moved.starts,
            vec![(w1.id, at), (w2.id, Timestamp(T0 + 7 * SEC))]
        );
        // A waiter that left (cancelled) frees its place for the next.
        let out = keep(&mut s, |x| release(x, at, vec![w1.id], 0));
        assert_eq!(out.moved.starts, vec![(w2.id, at)]);
    }

    #[test]
    fn a_waiter_past_its_deadline_by_expiries_waits_for_a_release() {
        let mut s = None;
        let now = Timestamp(T0);
        // One place, held for 100 s; a waiter with a 60 s timeout.
        let a = lease_of(keep(&mut s, |x| acquire(x, now, vec![], &call(1, 100, 1, false))).answer);
        let w = lease_of(keep(&mut s, |x| acquire(x, now, vec![], &call(1, 5, 1, true))).answer);
        assert!(!w.placed() && w.start == a.expires_at && w.deadline == Timestamp(T0 + 60 * SEC));
        let st = s.as_ref().unwrap();
        assert_eq!(
            (st.in_use(Timestamp(T0 + 100 * SEC)), st.waiting(now)),
            (0, 1)
        );
        assert_eq!(st.expiry(), a.expires_at);
        // A release 30 s in admits it at once.
        let at = Timestamp(T0 + 30 * SEC);
        let out = keep(&mut s, |x| release(x, at, vec![], a.id));
        assert_eq!(out.moved.starts, vec![(w.id, at)]);
        let st = s.as_ref().unwrap();
        assert_eq!(st.in_use(at), 1);
        assert!(st.leases()[0].placed());
        // Another waiter whose deadline passes first: dropped by the next write.
        let v = lease_of(keep(&mut s, |x| acquire(x, at, vec![], &call(1, 5, 1, true))).answer);
        assert!(v.placed(), "behind w's 5 s lease, within its 60 s");
        let b = lease_of(
            keep(&mut s, |x| {
                acquire(
                    x,
                    at,
                    vec![],
                    &Acquire {
                        max_wait: Micros(SEC),
                        ..call(1, 5, 1, true)
                    },
                )
            })
            .answer,
        );
        assert!(!b.placed());
        let later = Timestamp(T0 + 32 * SEC);
        keep(&mut s, |x| renew(x, later, vec![], 0, Micros(SEC)));
        assert!(s.as_ref().unwrap().leases().iter().all(|l| l.id != b.id));
    }

    #[test]
    fn a_renewal_pushes_waiters_back_and_a_raised_limit_pulls_them_in() {
        let mut s = None;
        let now = Timestamp(T0);
        let a = lease_of(keep(&mut s, |x| acquire(x, now, vec![], &call(1, 10, 1, false))).answer);
        let w = lease_of(keep(&mut s, |x| acquire(x, now, vec![], &call(1, 5, 1, true))).answer);
        let at = Timestamp(T0 + 5 * SEC);
        let out = keep(&mut s, |x| renew(x, at, vec![], a.id, Micros(20 * SEC)));
        assert_eq!(out.answer, Some(Timestamp(T0 + 25 * SEC)));
        assert_eq!(out.moved.starts, vec![(w.id, Timestamp(T0 + 25 * SEC))]);
        // A caller with a limit of 2: the waiter fits now (and starts), so
        // the caller finds two live.
        let out = keep(&mut s, |x| acquire(x, at, vec![], &call(2, 5, 1, false)));
        assert_eq!(out.moved.starts, vec![(w.id, at)]);
        assert!(matches!(out.answer, Granted::Refused), "two live already");
    }

    #[test]
    fn costs_weigh_and_a_cost_above_the_limit_never_fits() {
        let mut s = None;
        let now = Timestamp(T0);
        let big = keep(&mut s, |x| acquire(x, now, vec![], &call(10, 10, 7, false))).answer;
        assert!(matches!(
            big,
            Granted::Lease {
                in_use: 7,
                limit: 10,
                ..
            }
        ));
        assert_eq!(
            keep(&mut s, |x| acquire(x, now, vec![], &call(10, 10, 4, false))).answer,
            Granted::Refused
        );
        assert!(matches!(
            keep(&mut s, |x| acquire(x, now, vec![], &call(10, 10, 3, false))).answer,
            Granted::Lease { in_use: 10, .. }
        ));
        assert_eq!(
            keep(&mut s, |x| acquire(x, now, vec![], &call(10, 10, 11, true))).answer,
            Granted::Refused
        );
    }

    #[test]
    fn the_key_ends_with_its_last_lease() {
        let mut s = None;
        let now = Timestamp(T0);
        let a = keep(&mut s, |x| acquire(x, now, vec![], &call(3, 10, 1, false))).answer;
        assert_eq!(s.as_ref().unwrap().expiry(), Timestamp(T0 + 10 * SEC));
        let r = release(s.as_ref(), now, vec![], lease_of(a).id);
        assert_eq!(r.write, Write::Delete);
    }

    #[test]
    fn a_replica_applying_the_patches_ends_equal() {
        let mut master = None;
        let mut replica: Option<LeaseState> = None;
        let mut now = T0;
        for i in 0..50u64 {
            now += (i * 7919) % (3 * SEC);
            let t = Timestamp(now);
            let step = match i % 4 {
                0 | 1 => acquire(
                    master.as_ref(),
                    t,
                    vec![],
                    &call(3, 1 + i % 5, 1 + i % 2, i % 3 == 0),
                )
                .map(|_| ()),
                2 => {
                    let id = master
                        .as_ref()
                        .and_then(|m: &LeaseState| m.leases.first())
                        .map_or(0, |l| l.id);
                    release(master.as_ref(), t, vec![], id).map(|_| ())
                }
                _ => {
                    let id = master
                        .as_ref()
                        .and_then(|m: &LeaseState| m.leases.last())
                        .map_or(0, |l| l.id);
                    renew(master.as_ref(), t, vec![], id, Micros(2 * SEC)).map(|_| ())
                }
            };
            match step.write {
                Write::Patch { value, patch, .. } => {
                    replica = Some(LeaseState::apply(replica.as_ref(), &patch).unwrap());
                    master = Some(value);
                }
                Write::Delete => {
                    master = None;
                    replica = None;
                }
                Write::Keep => {}
                Write::Store { .. } => panic!("leases replicate patches"),
            }
            assert_eq!(replica, master, "after step {i}");
        }
    }

    #[test]
    fn round_trips_and_refuses_damage() {
        let mut s = None;
        let now = Timestamp(T0);
        keep(&mut s, |x| acquire(x, now, vec![], &call(2, 10, 1, false)));
        keep(&mut s, |x| acquire(x, now, vec![], &call(2, 10, 1, false)));
        keep(&mut s, |x| acquire(x, now, vec![], &call(2, 10, 1, true)));
        let s = s.unwrap();
        let e = s.encode();
        assert!(LeaseState::claims(e.as_bytes()));
        assert_eq!(LeaseState::decode(e.as_bytes()), Ok(s.clone()));
        assert_eq!(LeaseState::apply(None, e.as_bytes()), Ok(s));
        assert_eq!(LeaseState::decode(b"b"), Err(CodecError::WrongKind));
        // An id below the key's last id by more than it (ids are stored as
        // `last_id - id`).
        let mut w = Writer::new(TAG);
        w.u64(2);
        w.u64(5);
        w.u64(1);
        w.u64(9);
        w.u64(1);
        w.int(0);
        w.u64(SEC);
        w.int(0);
        w.int(0);
        assert_eq!(
            LeaseState::decode(w.finish().as_bytes()),
            Err(CodecError::BadField("lease id"))
        );
        // A live lease takes about 12 bytes.
        let mut s2 = None;
        for _ in 0..100 {
            keep(&mut s2, |x| {
                acquire(x, now, vec![], &call(1000, 10, 1, false))
            });
        }
        let per_lease = s2.unwrap().encode().as_bytes().len() / 100;
        assert!(per_lease <= 14, "{per_lease} bytes a lease");
    }
}
