//! Counters since the module was loaded, recorded from the typed answers,
//! one function per command family, and what `INFO throttle` shows.
//!
//! Redis prefixes every field with the module's name: the field `calls` of
//! section `stats` prints as `throttle_calls` under `# throttle_stats`.
//! docs/operating.md lists the fields; `tests/readme.rs` compares the two.
//!
//! Held clients add up: `blocked_total` equals `blocked_released` plus
//! `blocked_timeout` plus `blocked_key_gone` plus `blocked_unblocked` plus
//! `blocked_disconnected`
//! plus `blocked_clients` (the ones still held); `blocked_late` counts the
//! released ones that were released late and re-slotted.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use throttle_core::lease::Granted;
use throttle_core::limitlion::Reply as LimitLionReply;
use throttle_core::permit::{Permit, PermitAnswer};
use throttle_core::throttle::{AllAnswer, Answer};

use super::clock;
use super::ffi::info::InfoWriter;

/// A counter.
type Counter = AtomicU64;

pub static CALLS: Counter = Counter::new(0);
pub static ALLOWED: Counter = Counter::new(0);
pub static DENIED: Counter = Counter::new(0);
pub static TOKENS_CONSUMED: Counter = Counter::new(0);
pub static PERMIT_CALLS: Counter = Counter::new(0);
pub static PERMIT_IMMEDIATE: Counter = Counter::new(0);
pub static PERMIT_RESERVED: Counter = Counter::new(0);
pub static PERMIT_REFUSED: Counter = Counter::new(0);
/// Clients held right now (a gauge the scheduler keeps).
pub static HELD: Counter = Counter::new(0);
pub static BLOCKED_TOTAL: Counter = Counter::new(0);
pub static BLOCKED_RELEASED: Counter = Counter::new(0);
pub static BLOCKED_LATE: Counter = Counter::new(0);
pub static BLOCKED_TIMEOUT: Counter = Counter::new(0);
pub static BLOCKED_KEY_GONE: Counter = Counter::new(0);
pub static BLOCKED_UNBLOCKED: Counter = Counter::new(0);
pub static BLOCKED_DISCONNECTED: Counter = Counter::new(0);
pub static LEASE_GRANTED: Counter = Counter::new(0);
pub static LEASE_QUEUED: Counter = Counter::new(0);
pub static LEASE_REFUSED: Counter = Counter::new(0);
pub static LEASE_RELEASED: Counter = Counter::new(0);
pub static LEASE_RENEWED: Counter = Counter::new(0);
pub static LEASE_LOST: Counter = Counter::new(0);
/// Values alive in memory, by type (all databases).
pub static LIMITLION_CALLS: Counter = Counter::new(0);
pub static LIMITLION_ALLOWED: Counter = Counter::new(0);
pub static LIMITLION_DENIED: Counter = Counter::new(0);
pub static LIMITLION_ERRORS: Counter = Counter::new(0);
pub static BUCKET_KEYS: Counter = Counter::new(0);
pub static PERMIT_KEYS: Counter = Counter::new(0);
pub static LEASE_KEYS: Counter = Counter::new(0);

fn add(c: &Counter, n: u64) {
    c.fetch_add(n, Relaxed);
}

/// One THROTTLE-like decision of `cost` tokens (THROTTLE, CL.THROTTLE).
pub fn throttle(answer: &Answer, cost: u64) {
    count_call(answer.allowed(), answer.consumed(cost));
}

/// One THROTTLE.ALL call: one call, allowed or not, and the tokens every
/// limit consumed.
pub fn all(answer: &AllAnswer, cost: u64) {
    let consumed = answer
        .answers
        .iter()
        .fold(0u64, |sum, a| sum.saturating_add(a.consumed(cost)));
    count_call(answer.denied_by.is_none(), consumed);
}

fn count_call(allowed: bool, tokens: u64) {
    add(&CALLS, 1);
    if allowed {
        add(&ALLOWED, 1);
        add(&TOKENS_CONSUMED, tokens);
    } else {
        add(&DENIED, 1);
    }
}

/// One PERMIT call.
pub fn permit(answer: &PermitAnswer) {
    add(&PERMIT_CALLS, 1);
    add(
        match answer.permit {
            Permit::Immediate { .. } => &PERMIT_IMMEDIATE,
            Permit::Reserved { .. } => &PERMIT_RESERVED,
            Permit::Refused => &PERMIT_REFUSED,
        },
        1,
    );
}

/// One LEASE call: granted at once, queued (a held caller), or refused.
pub fn lease(answer: &Granted) {
    add(
        match answer {
            Granted::Lease { wait, .. } if wait.0 == 0 => &LEASE_GRANTED,
            Granted::Lease { .. } => &LEASE_QUEUED,
            Granted::Refused => &LEASE_REFUSED,
        },
        1,
    );
}

/// One LEASE.RELEASE: released, or the lease was not live (lost).
pub fn lease_end(released: bool) {
    add(
        if released {
            &LEASE_RELEASED
        } else {
            &LEASE_LOST
        },
        1,
    );
}

/// One LEASE.RENEW: renewed, or the lease was not live (lost).
pub fn lease_renewed(renewed: bool) {
    add(if renewed { &LEASE_RENEWED } else { &LEASE_LOST }, 1);
}

/// One THROTTLE.LIMITLION call: allowed, denied, or an error the script
/// raises.
pub fn limitlion<E>(reply: &Result<LimitLionReply, E>) {
    add(&LIMITLION_CALLS, 1);
    add(
        match reply {
            Ok(r) if r.allowed => &LIMITLION_ALLOWED,
            Ok(_) => &LIMITLION_DENIED,
            Err(_) => &LIMITLION_ERRORS,
        },
        1,
    );
}

/// What happened to a held client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Held {
    /// Parked by a command.
    Parked,
    /// Released with its reply (`late`: after its slot and tolerance, so
    /// re-slotted to the moment of release).
    Released { late: bool },
    /// Pushed past its own timeout by late releases ahead of it: refused.
    TimedOut,
    /// `CLIENT UNBLOCK`.
    Unblocked,
    /// Its key was deleted or replaced (DEL, RENAME, a flush, ...):
    /// refused.
    KeyGone,
    /// The client went away.
    Disconnected,
}

/// One held-client event.
pub fn held(event: Held) {
    match event {
        Held::Parked => add(&BLOCKED_TOTAL, 1),
        Held::Released { late } => {
            add(&BLOCKED_RELEASED, 1);
            if late {
                add(&BLOCKED_LATE, 1);
            }
        }
        Held::TimedOut => add(&BLOCKED_TIMEOUT, 1),
        Held::KeyGone => add(&BLOCKED_KEY_GONE, 1),
        Held::Unblocked => add(&BLOCKED_UNBLOCKED, 1),
        Held::Disconnected => add(&BLOCKED_DISCONNECTED, 1),
    }
}

/// The counters of `# throttle_stats`, in the order INFO prints them
/// (Redis prefixes each name with `throttle_`).
static COUNTERS: [(&str, &Counter); 26] = [
    ("calls", &CALLS),
    ("allowed", &ALLOWED),
    ("denied", &DENIED),
    ("tokens_consumed", &TOKENS_CONSUMED),
    ("permit_calls", &PERMIT_CALLS),
    ("permit_immediate", &PERMIT_IMMEDIATE),
    ("permit_reserved", &PERMIT_RESERVED),
    ("permit_refused", &PERMIT_REFUSED),
    ("blocked_clients", &HELD),
    ("blocked_total", &BLOCKED_TOTAL),
    ("blocked_released", &BLOCKED_RELEASED),
    ("blocked_late", &BLOCKED_LATE),
    ("blocked_timeout", &BLOCKED_TIMEOUT),
    ("blocked_key_gone", &BLOCKED_KEY_GONE),
    ("blocked_unblocked", &BLOCKED_UNBLOCKED),
    ("blocked_disconnected", &BLOCKED_DISCONNECTED),
    ("lease_granted", &LEASE_GRANTED),
    ("lease_queued", &LEASE_QUEUED),
    ("lease_refused", &LEASE_REFUSED),
    ("lease_released", &LEASE_RELEASED),
    ("lease_renewed", &LEASE_RENEWED),
    ("lease_lost", &LEASE_LOST),
    ("limitlion_calls", &LIMITLION_CALLS),
    ("limitlion_allowed", &LIMITLION_ALLOWED),
    ("limitlion_denied", &LIMITLION_DENIED),
    ("limitlion_errors", &LIMITLION_ERRORS),
];

/// The gauges of `# throttle_keys`.
static KEY_COUNTS: [(&str, &Counter); 3] = [
    ("bucket_keys", &BUCKET_KEYS),
    ("permit_keys", &PERMIT_KEYS),
    ("lease_keys", &LEASE_KEYS),
];

/// `INFO throttle`.
pub fn info(w: &mut InfoWriter<'_>) {
    let n = |c: &Counter| i64::try_from(c.load(Relaxed)).unwrap_or(i64::MAX);
    w.section("stats");
    for (name, counter) in &COUNTERS {
        w.field_i64(name, n(counter));
    }
    w.field_str("clock_source", clock::source());
    w.field_i64("clock_frozen", i64::from(clock::is_frozen()));
    w.section("keys");
    for (name, count) in &KEY_COUNTS {
        w.field_i64(name, n(count));
    }
}
