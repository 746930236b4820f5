//! Every reply the module sends, laid out from the core's typed answers:
//! the commands' replies, and the replies held clients get when they are
//! released (or refused). The core returns durations, instants and
//! verdicts (and, for CL.THROTTLE, redis-cell's whole-second rounding in
//! `core::cell`); the integers and their order live here.

use throttle_core::bucket::{Decision, Retry, Verdict};
use throttle_core::cell;
use throttle_core::decimal;
use throttle_core::lease::{Granted, LeaseSnapshot};
use throttle_core::limitlion;
use throttle_core::permit::{Permit, PermitAnswer, PermitSnapshot};
use throttle_core::throttle::{AllAnswer, Answer, Snapshot};
use throttle_core::time::{NEVER_MS, clamp_reply};
use throttle_core::{Micros, Timestamp};

use super::blocking::Release;
use super::ffi::{Ctx, Held};

/// `retry_after_ms` as every reply states it: rounded up (never early),
/// -1 when the call can never succeed.
fn retry_ms(r: Retry) -> i64 {
    match r {
        Retry::After(d) => d.reply_ms_ceil(),
        Retry::Never => -1,
    }
}

/// THROTTLE's `[allowed, remaining, retry_after_ms, reset_after_ms, limit]`
/// (also THROTTLE.PEEK's, and each limit of THROTTLE.ALL). The switches
/// answer `[0, 0, window_ms, 0, 0]` (deny) and `[1, -1, 0, 0, -1]` (allow).
pub fn throttle_ints(a: &Answer) -> [i64; 5] {
    match a {
        Answer::Bucket(d) => {
            let retry = match d.verdict {
                Verdict::Allowed { .. } => 0,
                Verdict::Denied { retry } => retry_ms(retry),
            };
            let (remaining, limit) = (clamp_reply(d.remaining), clamp_reply(d.limit.capacity()));
            [
                i64::from(d.allowed()),
                remaining,
                retry,
                d.reset_after.reply_ms_ceil(),
                limit,
            ]
        }
        Answer::DenyAll { window } => [0, 0, window.reply_ms_ceil(), 0, 0],
        Answer::AllowAll => [1, -1, 0, 0, -1],
    }
}

#[inline]
pub fn throttle(ctx: Ctx<'_>, a: &Answer) {
    ctx.reply_i64s(&throttle_ints(a));
}

/// CL.THROTTLE's `[limited, limit, remaining, retry_after_s, reset_after_s]`,
/// as redis-cell answers; the switches (knobs with RPS 0 or -1) answer as
/// THROTTLE does, in seconds.
pub fn cell(ctx: Ctx<'_>, a: &Answer) {
    let bucket = |d: &Decision| {
        let r = cell::reply(d);
        [
            i64::from(r.limited),
            clamp_reply(r.limit),
            clamp_reply(r.remaining),
            r.retry_after_s.unwrap_or(-1),
            r.reset_after_s,
        ]
    };
    ctx.reply_i64s(&match a {
        Answer::Bucket(d) => bucket(d),
        Answer::DenyAll { window } => [1, 0, 0, cell::whole_seconds(*window), 0],
        Answer::AllowAll => [0, -1, -1, -1, 0],
    });
}

/// THROTTLE.ALL's `[allowed, denied_by, retry_after_ms, [remaining...]]`:
/// `denied_by` 1-based (0 when allowed).
pub fn all(ctx: Ctx<'_>, a: &AllAnswer) {
    ctx.reply_array(4);
    ctx.reply_i64(i64::from(a.denied_by.is_none()));
    ctx.reply_i64(a.denied_by.map_or(0, |p| {
        i64::try_from(p).unwrap_or(i64::MAX).saturating_add(1)
    }));
    ctx.reply_i64(a.retry.map_or(0, retry_ms));
    let remaining: Vec<i64> = a.answers.iter().map(|x| throttle_ints(x)[1]).collect();
    ctx.reply_i64s(&remaining);
}

/// PERMIT's `[time_to_wait_ms, valid_at_ms, expires_at_ms]`, or nil when
/// refused: an immediate permit is `[0, now_ms, 253402300799999]` (never
/// expires).
pub fn permit(ctx: Ctx<'_>, a: &PermitAnswer) {
    match a.permit {
        Permit::Immediate { valid_at } => ctx.reply_i64s(&[0, valid_at.reply_ms_floor(), NEVER_MS]),
        Permit::Reserved {
            valid_at,
            wait,
            expires_at,
        } => ctx.reply_i64s(&[
            wait.reply_ms_ceil(),
            valid_at.reply_ms_ceil(),
            expires_at.reply_ms_ceil(),
        ]),
        Permit::Refused => ctx.reply_null(),
    }
}

/// LEASE's `[lease_id, expires_at_ms, in_use, limit]`, or nil.
pub fn lease(ctx: Ctx<'_>, g: &Granted) {
    match g {
        Granted::Lease {
            lease,
            in_use,
            limit,
            ..
        } => ctx.reply_i64s(&lease_ints(lease.id, lease.expires_at, *in_use, *limit)),
        Granted::Refused => ctx.reply_null(),
    }
}

/// THROTTLE.LIMITLION's `[allowed, tokens, sleep]`, as LimitLion's script
/// answers: two integers and the `"%.6f"` text of the seconds to sleep.
pub fn limitlion(ctx: Ctx<'_>, r: &limitlion::Reply) {
    ctx.reply_array(3);
    ctx.reply_i64(i64::from(r.allowed));
    ctx.reply_i64(r.tokens);
    ctx.reply_bulk(r.sleep.as_bytes());
}

fn lease_ints(id: u64, expires_at: Timestamp, in_use: u64, limit: u64) -> [i64; 4] {
    [
        clamp_reply(id),
        expires_at.reply_ms_floor(),
        clamp_reply(in_use),
        clamp_reply(limit),
    ]
}

/// LEASE.RENEW: the new `expires_at_ms`, or nil.
pub fn renewed(ctx: Ctx<'_>, at: Option<Timestamp>) {
    match at {
        Some(t) => ctx.reply_i64(t.reply_ms_floor()),
        None => ctx.reply_null(),
    }
}

/// LEASE.PEEK's `[in_use, limit, waiting, next_expiry_ms]` (`[0, 0, 0, -1]`
/// for no key; `-1`: no live lease).
pub fn lease_peek(ctx: Ctx<'_>, s: Option<&LeaseSnapshot>) {
    let (in_use, limit, waiting, next) = s.map_or((0, 0, 0, None), |s| {
        (s.in_use, s.limit, s.waiting, s.next_expiry)
    });
    ctx.reply_i64s(&[
        clamp_reply(in_use),
        clamp_reply(limit),
        clamp_reply(waiting as u64),
        next.map_or(-1, Timestamp::reply_ms_floor),
    ]);
}

pub fn ok(ctx: Ctx<'_>) {
    ctx.reply_simple(c"OK");
}

/// 1 or 0.
pub fn flag(ctx: Ctx<'_>, b: bool) {
    ctx.reply_i64(i64::from(b));
}

/// THROTTLE.REFUND: the tokens now held, or nil.
pub fn refund(ctx: Ctx<'_>, held: Option<u64>) {
    match held {
        Some(n) => ctx.reply_i64(clamp_reply(n)),
        None => ctx.reply_null(),
    }
}

fn nano_text(n: u64) -> String {
    decimal::format(false, u128::from(n), 9)
}

/// An interval in ms with its µs (`250`, `0.25`).
fn ms_text(d: Micros) -> String {
    decimal::format(false, u128::from(d.0), 3)
}

/// A map field's value.
enum Field {
    Int(i64),
    Text(String),
    Nil,
}

/// A map (a flat field/value array on RESP2), or nil.
fn map(ctx: Ctx<'_>, fields: Option<&[(&str, Field)]>) {
    let Some(fields) = fields else {
        ctx.reply_null();
        return;
    };
    ctx.reply_map(fields.len());
    for (name, value) in fields {
        ctx.reply_bulk(name.as_bytes());
        match value {
            Field::Int(n) => ctx.reply_i64(*n),
            Field::Text(t) => ctx.reply_bulk(t.as_bytes()),
            Field::Nil => ctx.reply_null(),
        }
    }
}

/// THROTTLE.GET: a map, or nil.
pub fn knobs(ctx: Ctx<'_>, s: Option<&Snapshot>) {
    let fields = s.map(|s| {
        let nano = |v: Option<u64>| v.map_or(Field::Nil, |n| Field::Text(nano_text(n)));
        let source = if s.knobs_ttl.is_some() {
            "knobs"
        } else {
            "last-call"
        };
        [
            ("tokens", Field::Int(s.tokens.map_or(-1, clamp_reply))),
            ("limit", Field::Int(clamp_reply(s.limit))),
            ("rps", Field::Text(s.rps.clone())),
            ("burst", nano(s.burst_window.map(|b| b.0))),
            ("window", nano(s.burst_window.map(|b| b.1))),
            ("source", Field::Text(source.into())),
            (
                "knobs_ttl_ms",
                Field::Int(s.knobs_ttl.map_or(-1, |t| t.reply_ms_ceil())),
            ),
            ("reset_after_ms", Field::Int(s.reset_after.reply_ms_ceil())),
        ]
    });
    map(ctx, fields.as_ref().map(|f| &f[..]));
}

/// PERMIT.GET: a map, or nil.
pub fn permit_settings(ctx: Ctx<'_>, s: Option<&PermitSnapshot>, now: Timestamp) {
    let fields = s.map(|s| {
        let set = s.settings;
        let source = if set.is_some() {
            "settings"
        } else {
            "last-call"
        };
        [
            ("interval_ms", Field::Text(ms_text(s.interval))),
            (
                "max_waiting",
                Field::Int(set.and_then(|x| x.max_waiting).map_or(-1, clamp_reply)),
            ),
            ("source", Field::Text(source.into())),
            (
                "ttl_ms",
                Field::Int(set.map_or(-1, |x| x.expires_at.since(now).reply_ms_ceil())),
            ),
            ("waiting", Field::Int(clamp_reply(s.waiting))),
            ("last_slot_ms", Field::Int(s.last_valid_at.reply_ms_ceil())),
        ]
    });
    map(ctx, fields.as_ref().map(|f| &f[..]));
}

// ---- held clients ---------------------------------------------------------------

/// A reply a released client gets.
enum Sent {
    Ints(Vec<i64>),
    Nil,
}

impl Held for Sent {
    fn reply(&self, ctx: Ctx<'_>) {
        match self {
            Sent::Ints(v) => ctx.reply_i64s(v),
            Sent::Nil => ctx.reply_null(),
        }
    }
}

/// A THROTTLE … WAIT caller's reply, decided when the command ran. Moved
/// later by a late release, its tokens and reset time are the same (the
/// bucket's schedule moved with it).
pub struct HeldThrottle {
    pub ints: [i64; 5],
}

impl Release for HeldThrottle {
    fn release(self: Box<Self>, _slot: Timestamp) -> Box<dyn Held> {
        Box::new(Sent::Ints(self.ints.to_vec()))
    }

    /// Pushed past its own timeout: denied, with its limit (its tokens
    /// stay taken).
    fn refuse(self: Box<Self>) -> Box<dyn Held> {
        let [_, _, _, _, limit] = self.ints;
        Box::new(Sent::Ints(vec![0, 0, 0, 0, limit]))
    }
}

/// A PERMIT … BLOCK caller's slot, replied where it finally stands (moved
/// later by a late release, either way by PERMIT.SET re-spacing); its
/// `expires_at` is `grace` after it.
pub struct HeldPermit {
    pub grace: Micros,
}

impl Release for HeldPermit {
    fn release(self: Box<Self>, valid_at: Timestamp) -> Box<dyn Held> {
        let expires_at = valid_at.saturating_add(self.grace);
        Box::new(Sent::Ints(vec![
            0,
            valid_at.reply_ms_ceil(),
            expires_at.reply_ms_ceil(),
        ]))
    }

    fn refuse(self: Box<Self>) -> Box<dyn Held> {
        Box::new(Sent::Nil)
    }
}

/// A LEASE … BLOCK caller's reserved lease. Moved by a re-plan, its expiry
/// moves with its start.
pub struct HeldLease {
    pub id: u64,
    /// How long the lease lasts from its start.
    pub ttl: Micros,
    pub in_use: u64,
    pub limit: u64,
}

impl Release for HeldLease {
    /// The lease starts at its turn as last planned (a lease is never
    /// late: its holder just has less of it), so it expires `ttl` after
    /// that turn, exactly as the key's state says.
    fn release(self: Box<Self>, slot: Timestamp) -> Box<dyn Held> {
        let expires_at = slot.saturating_add(self.ttl);
        Box::new(Sent::Ints(
            lease_ints(self.id, expires_at, self.in_use, self.limit).to_vec(),
        ))
    }

    fn refuse(self: Box<Self>) -> Box<dyn Held> {
        Box::new(Sent::Nil)
    }
}
