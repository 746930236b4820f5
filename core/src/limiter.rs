//! A THROTTLE key's whole value: the bucket, and optional knobs (settings
//! kept in Redis that override every caller's arguments).
//!
//! [`throttle`] is the one decision the Redis layer calls for THROTTLE,
//! THROTTLE.ALL and CL.THROTTLE: it picks the policy in force (live knobs
//! win over the caller's arguments), applies LimitLion's two switches, asks
//! the bucket, and says what to write. [`peek`] answers the same without
//! deciding or writing (THROTTLE.PEEK, CL.THROTTLE with quantity 0). The
//! others: the operator's [`set_knobs`], [`reset_knobs`], [`refund`],
//! [`snapshot`]; [`refund_late`] for a held client released too late;
//! [`from_cell_tat`] for a key redis-cell left; [`is_live`].
//!
//! Expiry. A key only needs to live until its bucket is full again (and
//! its knobs have expired): a missing key and a full bucket mean the same
//! thing, so a later expiry is harmless and an earlier one is not. Every
//! write therefore says whether the key's expiry must move
//! ([`Write::Store::expire_at`]): it moves only when the new state needs
//! more time than the expiry the stored state was given, and then to a
//! grid (`max(1 s, refill time / 10)`, knobs: `max(1 s, ttl / 10)`), so a
//! busy key moves its expiry about ten times per refill rather than on
//! every call. Invariant: the key's expiry ≥ [`Limiter::expiry`] of the
//! stored value ≥ when it is full again. (A key written by encoding
//! version 1 keeps its exact old expiry, below the grid, until a write
//! moves it: the README's Persistence guarantee states the bound.) A clock step back moves the expiry
//! back with the state, so TTLs stay near their reset times.

use crate::bucket::{self, Bucket, Decision};
use crate::rate::{Limit, LimitLion, Policy, Rps};
use crate::time::Micros;

/// The stored value of a THROTTLE key: 32 bytes without knobs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Limiter {
    /// A bucket with no knobs: the common case.
    Plain(Bucket),
    /// Knobs, and the bucket if a call has used it yet.
    Knobbed(Box<Knobbed>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Knobbed {
    pub bucket: Option<Bucket>,
    pub knobs: Knobs,
}

/// Settings kept in the key that override every caller's arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Knobs {
    /// As given to THROTTLE.SET (shown by THROTTLE.GET, changed piecewise).
    pub args: LimitLion,
    /// What they enforce (derived from `args`, validated at SET).
    pub policy: Policy,
    /// How long the knobs live after they are set or used.
    pub ttl: Micros,
    /// When they stop applying (absolute).
    pub expires_at: Micros,
}

/// What a THROTTLE call answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The bucket decided.
    Bucket(Decision),
    /// LimitLion's `rps 0`: denied; `window` is the suggested wait.
    DenyAll { window: Micros },
    /// LimitLion's `rps -1`: allowed, nothing counted.
    AllowAll,
}

impl Answer {
    pub fn allowed(&self) -> bool {
        match self {
            Answer::Bucket(d) => d.allowed(),
            Answer::DenyAll { .. } => false,
            Answer::AllowAll => true,
        }
    }

    /// The tokens this answer takes from a bucket for a call of `cost`
    /// (none when denied, or under a switch).
    pub fn consumed(&self, cost: u64) -> u64 {
        match self {
            Answer::Bucket(d) if d.allowed() => cost,
            _ => 0,
        }
    }

    /// How long an allowed WAIT caller is held.
    pub fn wait(&self) -> Micros {
        match self {
            Answer::Bucket(d) => d.wait(),
            _ => Micros::ZERO,
        }
    }
}

/// A change to the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    /// Store `value`; when `expire_at` is given, move the key's expiry there.
    Store {
        value: Limiter,
        expire_at: Option<Micros>,
    },
    /// Remove the key (nothing left worth keeping).
    Delete,
}

/// What one THROTTLE call decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub answer: Answer,
    pub write: Option<Write>,
}

/// The short form (no `rps burst window`) on a key without live knobs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoLimit;

/// The longest knobs TTL: ten years.
pub const MAX_KNOBS_TTL: Micros = Micros(10 * 365 * 24 * 3600 * 1_000_000);
/// The default knobs TTL (LimitLion's): seven days.
pub const DEFAULT_KNOBS_TTL: Micros = Micros(7 * 24 * 3600 * 1_000_000);

/// A denied call refreshes knobs only when that moves their expiry this much.
pub const KNOB_REFRESH: Micros = Micros(1_000_000);
/// The smallest expiry grid.
const MIN_GRID: Micros = Micros(1_000_000);

impl Limiter {
    pub fn bucket(&self) -> Option<&Bucket> {
        match self {
            Limiter::Plain(b) => Some(b),
            Limiter::Knobbed(k) => k.bucket.as_ref(),
        }
    }

    pub fn knobs(&self) -> Option<&Knobs> {
        match self {
            Limiter::Plain(_) => None,
            Limiter::Knobbed(k) => Some(&k.knobs),
        }
    }

    /// The knobs, if they still apply at `now`.
    pub fn live_knobs(&self, now: Micros) -> Option<&Knobs> {
        self.knobs().filter(|k| k.expires_at > now)
    }

    fn with_bucket(&self, bucket: Bucket) -> Limiter {
        match self {
            Limiter::Plain(_) => Limiter::Plain(bucket),
            Limiter::Knobbed(k) => Limiter::Knobbed(Box::new(Knobbed {
                bucket: Some(bucket),
                knobs: k.knobs,
            })),
        }
    }

    /// The expiry this value needs, on its grid: when the bucket is full
    /// again, and when the knobs expire, whichever is later.
    pub fn expiry(&self) -> Micros {
        let bucket = self.bucket().map_or(Micros::ZERO, |b| {
            let grid = (b.limit().refill_time().0 / 10).max(MIN_GRID.0);
            b.full_at().ceil_to(Micros(grid))
        });
        let knobs = self.knobs().map_or(Micros::ZERO, |k| {
            let grid = (k.ttl.0 / 10).max(MIN_GRID.0);
            k.expires_at.ceil_to(Micros(grid))
        });
        bucket.max(knobs)
    }
}

/// Stores `next` in place of `old`: the expiry moves when `next` needs
/// more time than `old` had, or when the clock stepped back under `old`.
fn store(old: Option<&Limiter>, next: Limiter, now: Micros) -> Write {
    let expire_at = match old {
        Some(o) if o.bucket().is_some_and(|b| b.rebased(now).is_some()) => Some(next.expiry()),
        Some(o) if still_covered(o, &next) => None,
        Some(o) => Some(next.expiry()).filter(|&need| need > o.expiry()),
        None => Some(next.expiry()),
    };
    Write::Store {
        value: next,
        expire_at,
    }
}

/// The common case, cheaply: a plain bucket under the same limit whose new
/// "full again" is still within the expiry the old one was given (one
/// multiplication instead of recomputing both expiries).
fn still_covered(old: &Limiter, next: &Limiter) -> bool {
    let (Limiter::Plain(o), Limiter::Plain(n)) = (old, next) else {
        return false;
    };
    let rate = o.limit().rate();
    o.limit() == n.limit()
        && n.full() <= u128::from(old.expiry().0).saturating_mul(rate.units_per_us())
}

/// The policy in force at `now`: live knobs, else the caller's.
fn policy(value: Option<&Limiter>, now: Micros, caller: Option<&Policy>) -> Option<Policy> {
    value
        .and_then(|v| v.live_knobs(now))
        .map(|k| k.policy)
        .or(caller.copied())
}

/// What THROTTLE would answer now, deciding nothing and writing nothing
/// (THROTTLE.PEEK).
pub fn peek(
    value: Option<&Limiter>,
    now: Micros,
    caller: Option<&Policy>,
    cost: u64,
) -> Result<Answer, NoLimit> {
    Ok(match policy(value, now, caller).ok_or(NoLimit)? {
        Policy::Deny { window } => Answer::DenyAll { window },
        Policy::Allow => Answer::AllowAll,
        Policy::Bucket(limit) => Answer::Bucket(bucket::decide(
            value.and_then(Limiter::bucket),
            now,
            &limit,
            cost,
            Micros::ZERO,
        )),
    })
}

/// Decides a THROTTLE call on `value` (`None`: no key, a full bucket).
///
/// `caller` is the validated policy the caller passed (`None` for the
/// short form, which needs live knobs); live knobs override it. `max_wait`
/// is WAIT's timeout (zero without WAIT).
pub fn throttle(
    value: Option<&Limiter>,
    now: Micros,
    caller: Option<&Policy>,
    cost: u64,
    max_wait: Micros,
) -> Result<Outcome, NoLimit> {
    let limit = match policy(value, now, caller).ok_or(NoLimit)? {
        Policy::Deny { window } => {
            return Ok(knobs_only(value, now, Answer::DenyAll { window }));
        }
        Policy::Allow => return Ok(knobs_only(value, now, Answer::AllowAll)),
        Policy::Bucket(limit) => limit,
    };
    let d = bucket::decide(value.and_then(Limiter::bucket), now, &limit, cost, max_wait);
    let answer = Answer::Bucket(d);
    let Some(bucket) = d.next else {
        return Ok(knobs_only(value, now, answer));
    };
    let next = match value {
        None => Limiter::Plain(bucket),
        Some(v) => refreshed(v.with_bucket(bucket), now),
    };
    Ok(Outcome {
        answer,
        write: Some(store(value, next, now)),
    })
}

/// Knobs in use live on: every write pushes their expiry out again.
fn refreshed(mut v: Limiter, now: Micros) -> Limiter {
    if let Limiter::Knobbed(k) = &mut v
        && k.knobs.expires_at > now
    {
        k.knobs.expires_at = now.saturating_add(k.knobs.ttl);
    }
    v
}

/// A call that changes no tokens still keeps knobs in use alive (as
/// LimitLion does on every call), but writes for that at most once per
/// [`KNOB_REFRESH`], so denied calls almost never write.
fn knobs_only(value: Option<&Limiter>, now: Micros, answer: Answer) -> Outcome {
    let unchanged = Outcome {
        answer,
        write: None,
    };
    let Some(v) = value else { return unchanged };
    let Some(k) = v.live_knobs(now) else {
        return unchanged;
    };
    if now.saturating_add(k.ttl).since(k.expires_at) < KNOB_REFRESH {
        return unchanged;
    }
    Outcome {
        write: Some(store(value, refreshed(v.clone(), now), now)),
        ..unchanged
    }
}

/// THROTTLE.SET's changes: any subset of the parameters, and the TTL.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KnobChanges {
    pub rps: Option<Rps>,
    pub burst_nano: Option<u64>,
    pub window_ns: Option<u64>,
    pub ttl: Option<Micros>,
}

/// Why THROTTLE.SET was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetError {
    /// The first SET on a limiter must give rps, burst and window.
    Incomplete,
    Limit(crate::rate::LimitError),
}

/// The bucket as it stands at `now`, counted in `limit` (tokens carried
/// over, capped at its capacity); `None` for a missing bucket (full).
fn bucket_under(value: Option<&Limiter>, now: Micros, limit: &Limit) -> Option<Bucket> {
    let b = value.and_then(Limiter::bucket)?;
    if b.limit() == *limit {
        return Some(b.rebased(now).unwrap_or(*b));
    }
    Some(bucket::refund(Some(b), now, limit, 0))
}

/// THROTTLE.SET at `now`. The bucket keeps the tokens it holds at that
/// moment, capped at the new capacity: no free burst, no lost tokens.
pub fn set_knobs(
    value: Option<&Limiter>,
    now: Micros,
    changes: &KnobChanges,
    default_ttl: Micros,
) -> Result<Write, SetError> {
    let old = value.and_then(|v| v.live_knobs(now));
    let args = match (old, changes.rps, changes.burst_nano, changes.window_ns) {
        (Some(k), r, b, w) => LimitLion {
            rps: r.unwrap_or(k.args.rps),
            burst_nano: b.unwrap_or(k.args.burst_nano),
            window_ns: w.unwrap_or(k.args.window_ns),
        },
        (None, Some(rps), Some(burst_nano), Some(window_ns)) => LimitLion {
            rps,
            burst_nano,
            window_ns,
        },
        _ => return Err(SetError::Incomplete),
    };
    let policy = args.policy().map_err(SetError::Limit)?;
    let ttl = changes.ttl.or(old.map(|k| k.ttl)).unwrap_or(default_ttl);
    let bucket = match policy {
        Policy::Bucket(limit) => bucket_under(value, now, &limit),
        // Under a switch the bucket is kept as it is.
        Policy::Deny { .. } | Policy::Allow => value.and_then(Limiter::bucket).copied(),
    };
    let next = Limiter::Knobbed(Box::new(Knobbed {
        bucket,
        knobs: Knobs {
            args,
            policy,
            ttl,
            expires_at: now.saturating_add(ttl),
        },
    }));
    Ok(store(value, next, now))
}

/// THROTTLE.RESET: drops the knobs, keeping the bucket (its tokens at
/// `now`). `None` when there were no knobs to remove.
pub fn reset_knobs(value: &Limiter, now: Micros) -> Option<Write> {
    let Limiter::Knobbed(k) = value else {
        return None;
    };
    let bucket = match k.knobs.policy {
        Policy::Bucket(limit) if k.knobs.expires_at > now => bucket_under(Some(value), now, &limit),
        _ => k.bucket,
    };
    Some(match bucket {
        Some(b) => store(Some(value), Limiter::Plain(b), now),
        // Knobs alone and nothing used yet: a full bucket, i.e. no key.
        None => Write::Delete,
    })
}

/// THROTTLE.REFUND: gives back `tokens`, never above the capacity of the
/// limit in force. Returns the write (none when nothing changes: zero
/// tokens, a bucket already full, or knobs alone) and the whole tokens now
/// held; `None` when no bucket applies (a switch).
pub fn refund(value: &Limiter, now: Micros, tokens: u64) -> Option<(Option<Write>, u64)> {
    let limit = match policy(Some(value), now, None) {
        Some(Policy::Bucket(l)) => l,
        Some(Policy::Deny { .. } | Policy::Allow) => return None,
        None => value.bucket()?.limit(),
    };
    let Some(b) = value.bucket() else {
        return Some((None, limit.capacity()));
    };
    let next = bucket::refund(Some(b), now, &limit, tokens);
    let held = next.tokens(now);
    let changed = next.full() != b.full() || b.limit() != next.limit() || b.rebased(now).is_some();
    let write = (tokens > 0 && changed).then(|| store(Some(value), value.with_bucket(next), now));
    Some((write, held))
}

/// A WAIT caller released too late to use its tokens: they go back when
/// nobody queues behind it (see [`bucket::refund_late`]).
pub fn refund_late(value: &Limiter, now: Micros, cost: u64) -> Option<Write> {
    let b = bucket::refund_late(value.bucket()?, now, cost)?;
    Some(store(Some(value), value.with_bucket(b), now))
}

/// What THROTTLE.GET shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Whole tokens now (floor, ≥ 0); `None` under the allow-all switch.
    pub tokens: Option<u64>,
    /// The capacity; 0 under a switch.
    pub limit: u64,
    /// The rate as text (exact decimal, or `num/den`), `0` or `-1`.
    pub rps: String,
    /// The knobs' burst and window (billionths, nanoseconds), when the
    /// settings come from knobs.
    pub burst_window: Option<(u64, u64)>,
    /// The knobs' remaining life, when they are live.
    pub knobs_ttl: Option<Micros>,
    pub reset_after: Micros,
}

/// Whether anything of the limiter still matters at `now`: a bucket, or
/// live knobs. A value with neither (its knobs expired before the key did)
/// is the same as no key.
pub fn is_live(v: &Limiter, now: Micros) -> bool {
    v.bucket().is_some() || v.live_knobs(now).is_some()
}

/// The limiter as it stands at `now`.
pub fn snapshot(v: &Limiter, now: Micros) -> Snapshot {
    let knobs = v.live_knobs(now);
    let bucket_view = |limit: &Limit| {
        let d = bucket::decide(v.bucket(), now, limit, 0, Micros::ZERO);
        (Some(d.remaining), limit.capacity(), d.reset_after)
    };
    let (tokens, limit, reset_after) = match knobs.map(|k| k.policy) {
        Some(Policy::Bucket(l)) => bucket_view(&l),
        Some(Policy::Deny { .. }) => (Some(0), 0, Micros::ZERO),
        Some(Policy::Allow) => (None, 0, Micros::ZERO),
        None => match v.bucket() {
            Some(b) => bucket_view(&b.limit()),
            None => (None, 0, Micros::ZERO),
        },
    };
    let rps = match (knobs, v.bucket()) {
        (Some(k), _) => k.args.rps.text(),
        (None, Some(b)) => b.limit().rate().text(),
        (None, None) => "-".into(),
    };
    Snapshot {
        tokens,
        limit,
        rps,
        burst_window: knobs.map(|k| (k.args.burst_nano, k.args.window_ns)),
        knobs_ttl: knobs.map(|k| k.expires_at.since(now)),
        reset_after,
    }
}

/// A key left by redis-cell: its theoretical arrival time in nanoseconds
/// since the epoch, taken over as a bucket under `limit` (the same
/// instant, rounded up to the microsecond: never more tokens than it had).
pub fn from_cell_tat(tat_ns: u64, now: Micros, limit: &Limit) -> Option<Limiter> {
    let full_at = Micros(tat_ns.div_ceil(1000));
    let full = u128::from(full_at.0).saturating_mul(limit.rate().units_per_us());
    // A missing or past TAT is a full bucket.
    let b = Bucket::full_at_now(*limit, now);
    let stamp = b.stamp_s();
    let b = Bucket::from_parts(*limit, full.max(b.full()), stamp)?;
    Some(Limiter::Plain(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rate::{NANO, Rate};

    const SEC: u64 = 1_000_000;
    const T0: u64 = 1_790_000_000 * SEC;
    const TTL: Micros = Micros(604_800 * SEC);

    fn ll(rps: u64, burst: u64, window: u64) -> LimitLion {
        LimitLion {
            rps: Rps::Rate(Rate::from_nano(rps * NANO).unwrap()),
            burst_nano: burst * NANO,
            window_ns: window * NANO,
        }
    }

    fn policy_of(rps: u64, burst: u64, window: u64) -> Policy {
        ll(rps, burst, window).policy().unwrap()
    }

    fn stored(w: Option<Write>) -> Limiter {
        match w {
            Some(Write::Store { value, .. }) => value,
            other => panic!("expected a store, got {other:?}"),
        }
    }

    /// Knobs of 1 token/s, burst 1, over `window` seconds.
    fn one_per_second(window: u64) -> KnobChanges {
        KnobChanges {
            rps: Some(Rps::Rate(Rate::from_nano(NANO).unwrap())),
            burst_nano: Some(NANO),
            window_ns: Some(window * NANO),
            ttl: None,
        }
    }

    /// A key with knobs alone (`RPS 0`, 10 s TTL), set at T0.
    fn deny_knobs() -> Limiter {
        let set = KnobChanges {
            rps: Some(Rps::Deny),
            burst_nano: Some(NANO),
            window_ns: Some(NANO),
            ttl: Some(Micros(10 * SEC)),
        };
        stored(Some(set_knobs(None, Micros(T0), &set, TTL).unwrap()))
    }

    fn call(v: Option<&Limiter>, now: u64, p: &Policy, cost: u64) -> Outcome {
        throttle(v, Micros(now), Some(p), cost, Micros::ZERO).unwrap()
    }

    #[test]
    fn the_value_is_32_bytes_without_knobs() {
        assert_eq!(std::mem::size_of::<Limiter>(), 32);
    }

    #[test]
    fn first_call_matches_the_issue_example() {
        let o = call(None, T0, &policy_of(5, 2, 8), 1);
        let Answer::Bucket(d) = o.answer else {
            panic!()
        };
        assert_eq!(
            (d.remaining, d.reset_after, d.limit.capacity()),
            (79, Micros(200_000), 80)
        );
        // Expiry on the grid: refill 16 s → grid 1.6 s.
        match o.write {
            Some(Write::Store {
                expire_at: Some(at),
                ..
            }) => {
                assert!(
                    at >= Micros(T0 + 200_000) && at <= Micros(T0 + 1_800_000),
                    "{at:?}"
                )
            }
            w => panic!("{w:?}"),
        }
    }

    #[test]
    fn the_expiry_moves_only_when_it_must() {
        let p = policy_of(1, 1, 100); // capacity 100, refill 100 s, grid 10 s
        let mut v = stored(call(None, T0, &p, 1).write);
        let first = v.expiry();
        let mut moves = 0;
        for i in 0..99 {
            let o = call(Some(&v), T0 + i, &p, 1);
            let Some(Write::Store { value, expire_at }) = o.write else {
                panic!()
            };
            if let Some(at) = expire_at {
                assert!(at > first);
                moves += 1;
            }
            // Never shorter than the time to full.
            assert!(value.expiry() >= value.bucket().unwrap().full_at());
            v = value;
        }
        // 100 s of tokens on a 10 s grid: the expiry moved ~10 times, not 99.
        assert!((9..=11).contains(&moves), "{moves}");
    }

    #[test]
    fn switches_store_nothing() {
        for (rps, answer) in [
            (
                Rps::Deny,
                Answer::DenyAll {
                    window: Micros(8 * SEC),
                },
            ),
            (Rps::Allow, Answer::AllowAll),
        ] {
            let p = LimitLion { rps, ..ll(1, 1, 8) }.policy().unwrap();
            assert_eq!(
                call(None, T0, &p, 1),
                Outcome {
                    answer,
                    write: None
                }
            );
        }
    }

    #[test]
    fn the_short_form_needs_live_knobs() {
        assert_eq!(
            throttle(None, Micros(T0), None, 1, Micros::ZERO),
            Err(NoLimit)
        );
        let v = stored(call(None, T0, &policy_of(1, 1, 5), 1).write);
        assert_eq!(
            throttle(Some(&v), Micros(T0), None, 1, Micros::ZERO),
            Err(NoLimit)
        );
        let v = stored(Some(
            set_knobs(Some(&v), Micros(T0), &one_per_second(3), TTL).unwrap(),
        ));
        let o = throttle(Some(&v), Micros(T0), None, 1, Micros::ZERO).unwrap();
        assert!(o.answer.allowed());
    }

    #[test]
    fn live_knobs_override_the_caller_and_keep_the_tokens() {
        // 10 tokens, 4 used → 6 held.
        let v = stored(call(None, T0, &policy_of(1, 1, 10), 4).write);
        let all = one_per_second(100);
        let v2 = stored(Some(set_knobs(Some(&v), Micros(T0), &all, TTL).unwrap()));
        assert_eq!(snapshot(&v2, Micros(T0)).tokens, Some(6)); // no free burst
        let shrink = KnobChanges {
            window_ns: Some(3 * NANO),
            ..Default::default()
        };
        let v3 = stored(Some(
            set_knobs(Some(&v2), Micros(T0), &shrink, TTL).unwrap(),
        ));
        let s = snapshot(&v3, Micros(T0));
        assert_eq!(
            (s.tokens, s.limit, s.burst_window),
            (Some(3), 3, Some((NANO, 3 * NANO)))
        );
        // Callers' arguments no longer matter while the knobs live.
        let o = call(Some(&v3), T0, &policy_of(100, 100, 100), 1);
        let Answer::Bucket(d) = o.answer else {
            panic!()
        };
        assert_eq!((d.remaining, d.limit.capacity()), (2, 3));
        // RESET keeps the tokens and returns to the callers' parameters.
        let v4 = stored(reset_knobs(&stored(o.write), Micros(T0)));
        let s = snapshot(&v4, Micros(T0));
        assert_eq!(
            (s.tokens, s.burst_window, s.knobs_ttl),
            (Some(2), None, None)
        );
        // Expired knobs no longer apply.
        let late = T0 + TTL.0 + 1;
        let o = call(Some(&v3), late, &policy_of(5, 2, 8), 1);
        let Answer::Bucket(d) = o.answer else {
            panic!()
        };
        assert_eq!(d.limit.capacity(), 80);
    }

    #[test]
    fn knobs_alone_then_reset_is_no_key() {
        let v = deny_knobs();
        assert_eq!(reset_knobs(&v, Micros(T0)), Some(Write::Delete));
        assert_eq!(
            set_knobs(None, Micros(T0), &KnobChanges::default(), TTL),
            Err(SetError::Incomplete)
        );
    }

    #[test]
    fn refund_is_capped_and_missing_buckets_are_full() {
        let v = stored(call(None, T0, &policy_of(1, 1, 5), 3).write);
        assert_eq!(refund(&v, Micros(T0), 1).unwrap().1, 3);
        assert_eq!(refund(&v, Micros(T0), 100).unwrap().1, 5);
        assert_eq!(refund(&v, Micros(T0), 0).unwrap().0, None);
    }

    #[test]
    fn denied_calls_refresh_knobs_at_most_once_a_second() {
        let v = deny_knobs();
        let p = policy_of(1, 1, 1);
        assert_eq!(call(Some(&v), T0 + SEC - 1, &p, 1).write, None);
        let o = call(Some(&v), T0 + SEC, &p, 1);
        assert_eq!(
            o.answer,
            Answer::DenyAll {
                window: Micros(SEC)
            }
        );
        assert_eq!(
            stored(o.write).knobs().unwrap().expires_at,
            Micros(T0 + 11 * SEC)
        );
    }

    #[test]
    fn a_clock_step_back_moves_the_expiry_back() {
        let p = policy_of(1, 5, 1);
        let v = stored(call(None, T0, &p, 5).write);
        let o = call(Some(&v), T0 - 3600 * SEC, &p, 1);
        assert!(!o.answer.allowed());
        match o.write {
            Some(Write::Store {
                expire_at: Some(at),
                ..
            }) => {
                assert!(at <= Micros(T0 - 3600 * SEC + 6 * SEC), "{at:?}")
            }
            w => panic!("{w:?}"),
        }
    }

    #[test]
    fn cell_keys_are_taken_over_with_their_state() {
        let limit = crate::rate::cell_limit(15, 30, 60).unwrap();
        // A TAT 4 s ahead: 2 tokens used of 16.
        let tat_ns = (T0 + 4 * SEC) * 1000;
        let v = from_cell_tat(tat_ns, Micros(T0), &limit).unwrap();
        let s = snapshot(&v, Micros(T0));
        assert_eq!(
            (s.tokens, s.limit, s.reset_after),
            (Some(14), 16, Micros(4 * SEC))
        );
        // A TAT in the past is a full bucket.
        let v = from_cell_tat(1, Micros(T0), &limit).unwrap();
        assert_eq!(snapshot(&v, Micros(T0)).tokens, Some(16));
        // A TAT no call can produce is refused.
        assert_eq!(from_cell_tat(u64::MAX, Micros(T0), &limit), None);
    }
}
