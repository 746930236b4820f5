//! A THROTTLE key's state ([`ThrottleState`]: the bucket, and optional
//! knobs, settings kept in Redis that override every caller's arguments),
//! every decision the THROTTLE family asks of it, and its codec.
//!
//! [`throttle`] is the decision of THROTTLE and CL.THROTTLE: it picks the
//! policy in force (live knobs win over the caller's arguments), applies
//! LimitLion's two switches, asks the bucket, and says what to write.
//! [`all`] decides several limits at once, all or nothing (THROTTLE.ALL).
//! [`peek`] answers without deciding or writing (THROTTLE.PEEK). The
//! operator's: [`set_knobs`], [`reset_knobs`], [`refund`], [`get`].
//!
//! Expiry. A key only needs to live until its bucket is full again (and
//! its knobs have expired): a missing key and a full bucket mean the same
//! thing, so a later expiry is harmless and an earlier one is not. Every
//! write therefore says whether the key's expiry must move
//! ([`Write::Store`]'s `expire_at`): it moves only when the new state
//! needs more time than the expiry the stored state was given, and then to
//! a grid (`max(1 s, refill time / 10)`, knobs: `max(1 s, ttl / 10)`), so
//! a busy key moves its expiry about ten times per refill rather than on
//! every call. Invariant: the key's expiry ≥ [`State::expiry`] of the
//! stored value ≥ when it is full again. (A key written by encoding
//! version 1 keeps its exact old expiry, below the grid, until a write
//! moves it: the Persistence guarantee states the bound.) A clock step
//! back moves the expiry back with the state, so TTLs stay near their
//! reset times.
//!
//! Layout (after the tag byte; varints, see `codec`):
//! ```text
//! 'b' plain:   bucket
//! 'k' knobbed: has_bucket:u8 [bucket] knobs
//!   bucket:    stamp_s−2026-01-01(signed) num den capacity ahead(signed)
//!   knobs:     rps_kind:u8 (0 deny, 1 allow, 2 rate) [num den] burst_nano window_ns ttl_us expires_at_us
//! ```

use crate::bucket::{self, Bucket, Decision, Retry};
use crate::codec::{Codec, CodecError, Encoded, Reader, Writer};
use crate::fixed;
use crate::rate::{Limit, LimitLion, Policy, Rate, Rps};
use crate::step::{State, Step, Write};
use crate::time::{Micros, Timestamp};

/// The stored value of a THROTTLE key: 32 bytes without knobs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ThrottleState {
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
    /// When they stop applying.
    pub expires_at: Timestamp,
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

    /// When a refused call could succeed (`None` when allowed).
    pub fn retry(&self) -> Option<Retry> {
        match self {
            Answer::Bucket(d) => match d.verdict {
                bucket::Verdict::Denied { retry } => Some(retry),
                bucket::Verdict::Allowed { .. } => None,
            },
            Answer::DenyAll { window } => Some(Retry::After(*window)),
            Answer::AllowAll => None,
        }
    }
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

impl ThrottleState {
    pub fn bucket(&self) -> Option<&Bucket> {
        match self {
            ThrottleState::Plain(b) => Some(b),
            ThrottleState::Knobbed(k) => k.bucket.as_ref(),
        }
    }

    pub fn knobs(&self) -> Option<&Knobs> {
        match self {
            ThrottleState::Plain(_) => None,
            ThrottleState::Knobbed(k) => Some(&k.knobs),
        }
    }

    /// The knobs, if they still apply at `now`.
    pub fn live_knobs(&self, now: Timestamp) -> Option<&Knobs> {
        self.knobs().filter(|k| k.expires_at > now)
    }

    fn with_bucket(&self, bucket: Bucket) -> ThrottleState {
        match self {
            ThrottleState::Plain(_) => ThrottleState::Plain(bucket),
            ThrottleState::Knobbed(k) => ThrottleState::Knobbed(Box::new(Knobbed {
                bucket: Some(bucket),
                knobs: k.knobs,
            })),
        }
    }
}

impl State for ThrottleState {
    /// When the bucket is full again, and when the knobs expire, whichever
    /// is later, each on its grid.
    fn expiry(&self) -> Timestamp {
        let bucket = self.bucket().map_or(Timestamp::ZERO, |b| {
            let grid = (b.limit().refill_time().0 / 10).max(MIN_GRID.0);
            b.full_at().ceil_to(Micros(grid))
        });
        let knobs = self.knobs().map_or(Timestamp::ZERO, |k| {
            let grid = (k.ttl.0 / 10).max(MIN_GRID.0);
            k.expires_at.ceil_to(Micros(grid))
        });
        bucket.max(knobs)
    }

    fn paused(&self, by: Micros) -> ThrottleState {
        match self.bucket() {
            Some(b) => self.with_bucket(b.paused(by)),
            None => self.clone(),
        }
    }

    fn heap_size(&self) -> usize {
        let knobs = matches!(self, ThrottleState::Knobbed(_)).then_some(size_of::<Knobbed>());
        size_of::<Self>().saturating_add(knobs.unwrap_or(0))
    }
}

/// Stores `next` in place of `old`: the expiry moves when `next` needs
/// more time than `old` had, or when the clock stepped back under `old`.
#[inline(always)] // the write is built where the step is, not copied into it
fn store(old: Option<&ThrottleState>, next: ThrottleState, now: Timestamp) -> Write<ThrottleState> {
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

/// The common case, cheaply: a plain bucket under the same limit that is
/// full again within the expiry the old one was given.
fn still_covered(old: &ThrottleState, next: &ThrottleState) -> bool {
    let (ThrottleState::Plain(o), ThrottleState::Plain(n)) = (old, next) else {
        return false;
    };
    o.limit() == n.limit() && n.full_by(old.expiry())
}

/// The policy in force at `now`: live knobs, else the caller's.
fn policy(
    value: Option<&ThrottleState>,
    now: Timestamp,
    caller: Option<&Policy>,
) -> Option<Policy> {
    value
        .and_then(|v| v.live_knobs(now))
        .map(|k| k.policy)
        .or(caller.copied())
}

/// What THROTTLE would answer now, deciding nothing and writing nothing
/// (THROTTLE.PEEK).
pub fn peek(
    value: Option<&ThrottleState>,
    now: Timestamp,
    caller: Option<&Policy>,
    cost: u64,
) -> Result<Answer, NoLimit> {
    Ok(match policy(value, now, caller).ok_or(NoLimit)? {
        Policy::Deny { window } => Answer::DenyAll { window },
        Policy::Allow => Answer::AllowAll,
        Policy::Bucket(limit) => Answer::Bucket(bucket::decide(
            value.and_then(ThrottleState::bucket),
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
    value: Option<&ThrottleState>,
    now: Timestamp,
    caller: Option<&Policy>,
    cost: u64,
    max_wait: Micros,
) -> Result<Step<ThrottleState, Answer>, NoLimit> {
    let limit = match policy(value, now, caller).ok_or(NoLimit)? {
        Policy::Deny { window } => {
            return Ok(knobs_only(value, now, Answer::DenyAll { window }));
        }
        Policy::Allow => return Ok(knobs_only(value, now, Answer::AllowAll)),
        Policy::Bucket(limit) => limit,
    };
    let d = bucket::decide(
        value.and_then(ThrottleState::bucket),
        now,
        &limit,
        cost,
        max_wait,
    );
    let answer = Answer::Bucket(d);
    let Some(bucket) = d.next else {
        return Ok(knobs_only(value, now, answer));
    };
    let next = match value {
        None => ThrottleState::Plain(bucket),
        Some(v) => refreshed(v.with_bucket(bucket), now),
    };
    Ok(Step {
        write: store(value, next, now),
        answer,
    })
}

/// Knobs in use live on: every write pushes their expiry out again.
fn refreshed(mut v: ThrottleState, now: Timestamp) -> ThrottleState {
    if let ThrottleState::Knobbed(k) = &mut v
        && k.knobs.expires_at > now
    {
        k.knobs.expires_at = now.saturating_add(k.knobs.ttl);
    }
    v
}

/// A call that changes no tokens still keeps knobs in use alive (as
/// LimitLion does on every call), but writes for that at most once per
/// [`KNOB_REFRESH`], so denied calls almost never write.
fn knobs_only(
    value: Option<&ThrottleState>,
    now: Timestamp,
    answer: Answer,
) -> Step<ThrottleState, Answer> {
    let Some(v) = value else {
        return Step::keep(answer);
    };
    let Some(k) = v.live_knobs(now) else {
        return Step::keep(answer);
    };
    if now.saturating_add(k.ttl).since(k.expires_at) < KNOB_REFRESH {
        return Step::keep(answer);
    }
    Step {
        write: store(value, refreshed(v.clone(), now), now),
        answer,
    }
}

/// What THROTTLE.ALL answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllAnswer {
    /// The first limit (0-based) that refused, `None` when all allowed.
    pub denied_by: Option<usize>,
    /// When denied: the longest wait among the limits that refused
    /// ([`Retry::Never`] if one of them can never allow this cost).
    pub retry: Option<Retry>,
    /// Each limit's answer: the decisions when allowed (all consumed), or
    /// what each limit holds now when denied (nothing consumed).
    pub answers: Vec<Answer>,
}

/// Several limits at once, all or nothing: every limit must allow `cost`
/// for any to consume it. `values` and `policies` pair up, one per key.
/// Returns a write per key and the answer.
pub fn all(
    values: &[Option<&ThrottleState>],
    now: Timestamp,
    policies: &[Policy],
    cost: u64,
) -> (Vec<Write<ThrottleState>>, AllAnswer) {
    let steps: Vec<Step<ThrottleState, Answer>> = values
        .iter()
        .zip(policies)
        .filter_map(|(v, p)| throttle(*v, now, Some(p), cost, Micros::ZERO).ok())
        .collect();
    let denied_by = steps.iter().position(|s| !s.answer.allowed());
    if denied_by.is_none() {
        let (writes, answers) = steps.into_iter().map(|s| (s.write, s.answer)).unzip();
        let answer = AllAnswer {
            denied_by,
            retry: None,
            answers,
        };
        return (writes, answer);
    }
    let retry = steps.iter().filter_map(|s| s.answer.retry()).max();
    // Nothing is consumed: report what each limit holds now.
    let answers = values
        .iter()
        .zip(policies)
        .filter_map(|(v, p)| peek(*v, now, Some(p), 0).ok())
        .collect();
    let writes = values.iter().map(|_| Write::Keep).collect();
    let answer = AllAnswer {
        denied_by,
        retry,
        answers,
    };
    (writes, answer)
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
fn bucket_under(value: Option<&ThrottleState>, now: Timestamp, limit: &Limit) -> Option<Bucket> {
    let b = value.and_then(ThrottleState::bucket)?;
    if b.limit() == *limit {
        return Some(b.rebased(now).unwrap_or(*b));
    }
    Some(b.under(now, limit))
}

/// THROTTLE.SET at `now`. The bucket keeps the tokens it holds at that
/// moment, capped at the new capacity: no free burst, no lost tokens.
pub fn set_knobs(
    value: Option<&ThrottleState>,
    now: Timestamp,
    changes: &KnobChanges,
    default_ttl: Micros,
) -> Result<Step<ThrottleState, ()>, SetError> {
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
        Policy::Deny { .. } | Policy::Allow => value.and_then(ThrottleState::bucket).copied(),
    };
    let next = ThrottleState::Knobbed(Box::new(Knobbed {
        bucket,
        knobs: Knobs {
            args,
            policy,
            ttl,
            expires_at: now.saturating_add(ttl),
        },
    }));
    Ok(Step {
        write: store(value, next, now),
        answer: (),
    })
}

/// THROTTLE.RESET: drops the knobs, keeping the bucket (its tokens at
/// `now`). Answers whether there were knobs to remove.
pub fn reset_knobs(value: Option<&ThrottleState>, now: Timestamp) -> Step<ThrottleState, bool> {
    let Some(ThrottleState::Knobbed(k)) = value else {
        return Step::keep(false);
    };
    let bucket = match k.knobs.policy {
        Policy::Bucket(limit) if k.knobs.expires_at > now => bucket_under(value, now, &limit),
        _ => k.bucket,
    };
    let write = match bucket {
        Some(b) => store(value, ThrottleState::Plain(b), now),
        // Knobs alone and nothing used yet: a full bucket, i.e. no key.
        None => Write::Delete,
    };
    Step {
        write,
        answer: true,
    }
}

/// THROTTLE.REFUND: gives back `tokens`, never above the capacity of the
/// limit in force. Answers the whole tokens now held; `None` when there is
/// nothing to give back to (no key: a full bucket) or no bucket applies (a
/// switch). Writes nothing when nothing changes (zero tokens, a bucket
/// already full, knobs alone).
pub fn refund(
    value: Option<&ThrottleState>,
    now: Timestamp,
    tokens: u64,
) -> Step<ThrottleState, Option<u64>> {
    let Some(value) = value else {
        return Step::keep(None);
    };
    let limit = match policy(Some(value), now, None) {
        Some(Policy::Bucket(l)) => l,
        Some(Policy::Deny { .. } | Policy::Allow) => return Step::keep(None),
        None => match value.bucket() {
            Some(b) => b.limit(),
            None => return Step::keep(None),
        },
    };
    let Some(b) = value.bucket() else {
        return Step::keep(Some(limit.capacity()));
    };
    let next = bucket::refund(Some(b), now, &limit, tokens);
    let held = next.tokens(now);
    let write = if tokens > 0 && bucket::differs(b, &next, now) {
        store(Some(value), value.with_bucket(next), now)
    } else {
        Write::Keep
    };
    Step {
        write,
        answer: Some(held),
    }
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

/// THROTTLE.GET: the limiter as it stands at `now`; `None` for no key, or
/// a value with nothing left that matters (its knobs expired before the
/// key did: the same as no key).
pub fn get(value: Option<&ThrottleState>, now: Timestamp) -> Option<Snapshot> {
    let v = value?;
    let knobs = v.live_knobs(now);
    if v.bucket().is_none() && knobs.is_none() {
        return None;
    }
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
    Some(Snapshot {
        tokens,
        limit,
        rps,
        burst_window: knobs.map(|k| (k.args.burst_nano, k.args.window_ns)),
        knobs_ttl: knobs.map(|k| k.expires_at.since(now)),
        reset_after,
    })
}

// ---- codec --------------------------------------------------------------------

const TAG_PLAIN: u8 = b'b';
const TAG_KNOBBED: u8 = b'k';

/// The second bucket stamps are stored from (2026-01-01T00:00:00Z): a
/// stamp within four years of it takes four bytes instead of five.
const STAMP_EPOCH_S: u32 = 1_767_225_600;

fn put_bucket(w: &mut Writer, b: &Bucket) {
    let (limit, stamp_s, ahead) = b.stored();
    w.int(i128::from(stamp_s).saturating_sub(i128::from(STAMP_EPOCH_S)));
    w.u64(u64::from(limit.rate().num()));
    w.u64(u64::from(limit.rate().den()));
    w.u64(limit.capacity());
    w.int(ahead);
}

fn put_knobs(w: &mut Writer, k: &Knobs) {
    match k.args.rps {
        Rps::Deny => w.u8(0),
        Rps::Allow => w.u8(1),
        Rps::Rate(r) => {
            w.u8(2);
            w.u64(u64::from(r.num()));
            w.u64(u64::from(r.den()));
        }
    }
    w.u64(k.args.burst_nano);
    w.u64(k.args.window_ns);
    w.u64(k.ttl.0);
    w.u64(k.expires_at.0);
}

/// A rate as stored: reduced, as every rate is written.
pub(crate) fn read_rate(r: &mut Reader<'_>) -> Result<Rate, CodecError> {
    let (num, den) = (r.u32("rate")?, r.u32("rate")?);
    match Rate::new(u64::from(num), u64::from(den)) {
        Some(rate) if rate.num() == num && rate.den() == den => Ok(rate),
        _ => Err(CodecError::BadField("rate")),
    }
}

fn read_bucket(r: &mut Reader<'_>) -> Result<Bucket, CodecError> {
    let stamp_s = i128::from(STAMP_EPOCH_S)
        .checked_add(r.int("stamp")?)
        .and_then(|s| u32::try_from(s).ok())
        .ok_or(CodecError::BadField("stamp"))?;
    let rate = read_rate(r)?;
    let limit =
        Limit::new(rate, r.u64("capacity")?).map_err(|_| CodecError::BadField("capacity"))?;
    let ahead = r.int("bucket state")?;
    Bucket::from_stored(limit, stamp_s, ahead).ok_or(CodecError::BadField("bucket state"))
}

/// Knobs as stored; their limit is validated again.
pub(crate) fn checked_knobs(
    args: LimitLion,
    ttl: Micros,
    expires_at: Timestamp,
) -> Result<Knobs, CodecError> {
    let policy = args
        .policy()
        .map_err(|_| CodecError::BadField("knobs limit"))?;
    if ttl > MAX_KNOBS_TTL {
        return Err(CodecError::BadField("knobs ttl"));
    }
    Ok(Knobs {
        args,
        policy,
        ttl,
        expires_at,
    })
}

fn read_knobs(r: &mut Reader<'_>) -> Result<Knobs, CodecError> {
    let rps = match r.u8()? {
        0 => Rps::Deny,
        1 => Rps::Allow,
        2 => Rps::Rate(read_rate(r)?),
        _ => return Err(CodecError::BadField("rps kind")),
    };
    let args = LimitLion {
        rps,
        burst_nano: r.u64("burst")?,
        window_ns: r.u64("window")?,
    };
    let ttl = Micros(r.u64("knobs ttl")?);
    checked_knobs(args, ttl, Timestamp(r.u64("knobs expiry")?))
}

/// A knobbed state: a flag, the bucket if there is one, the knobs (each
/// read by the layout's own readers).
pub(crate) fn read_knobbed(
    r: &mut Reader<'_>,
    bucket: fn(&mut Reader<'_>) -> Result<Bucket, CodecError>,
    knobs: fn(&mut Reader<'_>) -> Result<Knobs, CodecError>,
) -> Result<ThrottleState, CodecError> {
    let bucket = match r.u8()? {
        0 => None,
        1 => Some(bucket(r)?),
        _ => return Err(CodecError::BadField("bucket flag")),
    };
    let knobs = knobs(r)?;
    Ok(ThrottleState::Knobbed(Box::new(Knobbed { bucket, knobs })))
}

impl Codec for ThrottleState {
    fn encode(&self) -> Encoded {
        match self {
            ThrottleState::Plain(b) => {
                let mut w = Writer::new(TAG_PLAIN);
                put_bucket(&mut w, b);
                w.finish()
            }
            ThrottleState::Knobbed(k) => {
                let mut w = Writer::new(TAG_KNOBBED);
                match &k.bucket {
                    Some(b) => {
                        w.u8(1);
                        put_bucket(&mut w, b);
                    }
                    None => w.u8(0),
                }
                put_knobs(&mut w, &k.knobs);
                w.finish()
            }
        }
    }

    /// A plain bucket (every call's write): the fixed-width layout.
    fn encode_replicated(&self) -> Encoded {
        let fixed = match self {
            ThrottleState::Plain(b) => fixed::bucket(b),
            ThrottleState::Knobbed(_) => None,
        };
        fixed.unwrap_or_else(|| self.encode())
    }

    fn decode(bytes: &[u8]) -> Result<ThrottleState, CodecError> {
        let mut r = Reader::new(bytes);
        let v = match r.u8()? {
            TAG_PLAIN => ThrottleState::Plain(read_bucket(&mut r)?),
            TAG_KNOBBED => read_knobbed(&mut r, read_bucket, read_knobs)?,
            1 | 2 => return fixed::decode_throttle(bytes),
            // Another state's layout (every current tag is a lower-case letter).
            t if t.is_ascii_lowercase() => return Err(CodecError::WrongKind),
            v => return Err(CodecError::UnknownVersion(v)),
        };
        r.end()?;
        Ok(v)
    }

    fn claims(bytes: &[u8]) -> bool {
        match bytes {
            [TAG_PLAIN | TAG_KNOBBED, ..] => true,
            [1 | 2, kind, ..] => fixed::THROTTLE_KINDS.contains(kind),
            _ => false,
        }
    }
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

    fn stored(w: Write<ThrottleState>) -> ThrottleState {
        match w {
            Write::Store { value, .. } => value,
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
    fn deny_knobs() -> ThrottleState {
        let set = KnobChanges {
            rps: Some(Rps::Deny),
            burst_nano: Some(NANO),
            window_ns: Some(NANO),
            ttl: Some(Micros(10 * SEC)),
        };
        stored(set_knobs(None, Timestamp(T0), &set, TTL).unwrap().write)
    }

    fn call(
        v: Option<&ThrottleState>,
        now: u64,
        p: &Policy,
        cost: u64,
    ) -> Step<ThrottleState, Answer> {
        throttle(v, Timestamp(now), Some(p), cost, Micros::ZERO).unwrap()
    }

    #[test]
    fn the_value_is_32_bytes_without_knobs() {
        assert_eq!(std::mem::size_of::<ThrottleState>(), 32);
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
            Write::Store {
                expire_at: Some(at),
                ..
            } => {
                assert!(
                    at >= Timestamp(T0 + 200_000) && at <= Timestamp(T0 + 1_800_000),
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
            let Write::Store { value, expire_at } = o.write else {
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
            assert_eq!(call(None, T0, &p, 1), Step::keep(answer));
        }
    }

    #[test]
    fn the_short_form_needs_live_knobs() {
        assert_eq!(
            throttle(None, Timestamp(T0), None, 1, Micros::ZERO),
            Err(NoLimit)
        );
        let v = stored(call(None, T0, &policy_of(1, 1, 5), 1).write);
        assert_eq!(
            throttle(Some(&v), Timestamp(T0), None, 1, Micros::ZERO),
            Err(NoLimit)
        );
        let v = stored(
            set_knobs(Some(&v), Timestamp(T0), &one_per_second(3), TTL)
                .unwrap()
                .write,
        );
        let o = throttle(Some(&v), Timestamp(T0), None, 1, Micros::ZERO).unwrap();
        assert!(o.answer.allowed());
    }

    #[test]
    fn live_knobs_override_the_caller_and_keep_the_tokens() {
        // 10 tokens, 4 used → 6 held.
        let v = stored(call(None, T0, &policy_of(1, 1, 10), 4).write);
        let all = one_per_second(100);
        let v2 = stored(set_knobs(Some(&v), Timestamp(T0), &all, TTL).unwrap().write);
        assert_eq!(get(Some(&v2), Timestamp(T0)).unwrap().tokens, Some(6)); // no free burst
        let shrink = KnobChanges {
            window_ns: Some(3 * NANO),
            ..Default::default()
        };
        let v3 = stored(
            set_knobs(Some(&v2), Timestamp(T0), &shrink, TTL)
                .unwrap()
                .write,
        );
        let s = get(Some(&v3), Timestamp(T0)).unwrap();
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
        let after = stored(o.write);
        let reset = reset_knobs(Some(&after), Timestamp(T0));
        assert!(reset.answer);
        let v4 = stored(reset.write);
        let s = get(Some(&v4), Timestamp(T0)).unwrap();
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
        assert_eq!(reset_knobs(Some(&v), Timestamp(T0)).write, Write::Delete);
        assert_eq!(reset_knobs(None, Timestamp(T0)), Step::keep(false));
        assert_eq!(
            set_knobs(None, Timestamp(T0), &KnobChanges::default(), TTL),
            Err(SetError::Incomplete)
        );
    }

    #[test]
    fn refund_is_capped_and_missing_buckets_are_full() {
        let v = stored(call(None, T0, &policy_of(1, 1, 5), 3).write);
        assert_eq!(refund(Some(&v), Timestamp(T0), 1).answer, Some(3));
        assert_eq!(refund(Some(&v), Timestamp(T0), 100).answer, Some(5));
        assert!(refund(Some(&v), Timestamp(T0), 0).write.is_keep());
        assert_eq!(refund(None, Timestamp(T0), 1), Step::keep(None));
    }

    #[test]
    fn denied_calls_refresh_knobs_at_most_once_a_second() {
        let v = deny_knobs();
        let p = policy_of(1, 1, 1);
        assert!(call(Some(&v), T0 + SEC - 1, &p, 1).write.is_keep());
        let o = call(Some(&v), T0 + SEC, &p, 1);
        assert_eq!(
            o.answer,
            Answer::DenyAll {
                window: Micros(SEC)
            }
        );
        assert_eq!(
            stored(o.write).knobs().unwrap().expires_at,
            Timestamp(T0 + 11 * SEC)
        );
    }

    #[test]
    fn a_clock_step_back_moves_the_expiry_back() {
        let p = policy_of(1, 5, 1);
        let v = stored(call(None, T0, &p, 5).write);
        let o = call(Some(&v), T0 - 3600 * SEC, &p, 1);
        assert!(!o.answer.allowed());
        match o.write {
            Write::Store {
                expire_at: Some(at),
                ..
            } => {
                assert!(at <= Timestamp(T0 - 3600 * SEC + 6 * SEC), "{at:?}")
            }
            w => panic!("{w:?}"),
        }
    }

    #[test]
    fn all_is_all_or_nothing() {
        let (a, b) = (policy_of(1, 1, 3), policy_of(1, 1, 1));
        let va = stored(call(None, T0, &a, 1).write); // 2 of 3 left
        let vb = stored(call(None, T0, &b, 1).write); // 0 of 1 left
        let (writes, answer) = all(&[Some(&va), Some(&vb)], Timestamp(T0), &[a, b], 1);
        assert_eq!(answer.denied_by, Some(1));
        assert_eq!(answer.retry, Some(Retry::After(Micros(SEC))));
        assert!(writes.iter().all(Write::is_keep));
        // What each holds now, nothing consumed.
        let held: Vec<u64> = answer
            .answers
            .iter()
            .map(|a| match a {
                Answer::Bucket(d) => d.remaining,
                _ => panic!(),
            })
            .collect();
        assert_eq!(held, vec![2, 0]);
        // A second later both allow, and both consume.
        let (writes, answer) = all(&[Some(&va), Some(&vb)], Timestamp(T0 + SEC), &[a, b], 1);
        assert_eq!((answer.denied_by, answer.retry), (None, None));
        assert!(writes.iter().all(|w| w.stored().is_some()));
        // A cost no limit can ever hold: Never wins over any wait.
        let (_, answer) = all(&[Some(&va), None], Timestamp(T0), &[a, b], 2);
        assert_eq!(answer.retry, Some(Retry::Never));
    }

    #[test]
    fn a_paused_state_moves_its_schedule_and_keeps_its_knobs() {
        let p = policy_of(1, 1, 1);
        let v = stored(call(None, T0, &p, 1).write);
        let paused = v.paused(Micros(3 * SEC));
        assert_eq!(paused.bucket().unwrap().full_at(), Timestamp(T0 + 4 * SEC));
        assert!(paused.expiry() >= Timestamp(T0 + 4 * SEC));
        let k = deny_knobs();
        assert_eq!(k.paused(Micros(SEC)), k);
    }

    fn sample(knobs: bool) -> ThrottleState {
        let v = stored(call(None, T0 + 123_456, &policy_of(5, 2, 8), 7).write);
        if !knobs {
            return v;
        }
        let ch = KnobChanges {
            rps: Some(Rps::Deny),
            burst_nano: Some(NANO),
            window_ns: Some(NANO),
            ttl: None,
        };
        stored(
            set_knobs(Some(&v), Timestamp(T0), &ch, Micros(60 * SEC))
                .unwrap()
                .write,
        )
    }

    #[test]
    fn round_trips_compactly() {
        for knobs in [false, true] {
            let v = sample(knobs);
            let e = v.encode();
            assert!(ThrottleState::claims(e.as_bytes()));
            assert_eq!(ThrottleState::decode(e.as_bytes()), Ok(v));
        }
        // A plain bucket: tag, stamp (5), num, den, capacity, ahead (4).
        assert!(sample(false).encode().as_bytes().len() <= 14);
        // What a write replicates: a plain bucket fixed-width (34 bytes),
        // knobs compact; both decode to the value and claim its type.
        for knobs in [false, true] {
            let v = sample(knobs);
            let r = v.encode_replicated();
            assert!(ThrottleState::claims(r.as_bytes()));
            assert!(!crate::permit::PermitState::claims(r.as_bytes()));
            assert_eq!(ThrottleState::decode(r.as_bytes()), Ok(v));
        }
        assert_eq!(&sample(false).encode_replicated().as_bytes()[..2], b"\x02B");
        assert_eq!(sample(false).encode_replicated().as_bytes().len(), 34);
        assert_eq!(
            sample(true).encode_replicated().as_bytes(),
            sample(true).encode().as_bytes()
        );
    }

    #[test]
    fn rejects_bad_input() {
        let good = sample(true).encode().as_bytes().to_vec();
        assert_eq!(ThrottleState::decode(&[]), Err(CodecError::Truncated));
        assert_eq!(
            ThrottleState::decode(&good[..good.len() - 1]),
            Err(CodecError::Truncated)
        );
        let mut long = good.clone();
        long.push(0);
        assert_eq!(ThrottleState::decode(&long), Err(CodecError::TrailingBytes));
        assert_eq!(
            ThrottleState::decode(&[9]),
            Err(CodecError::UnknownVersion(9))
        );
        assert_eq!(ThrottleState::decode(b"p"), Err(CodecError::WrongKind));
        // A plain bucket's layout with these fields.
        let plain = |num: u64, den: u64, ahead: i128| {
            let mut w = Writer::new(TAG_PLAIN);
            for v in [T0 / SEC, num, den, 80] {
                w.u64(v);
            }
            w.int(ahead);
            ThrottleState::decode(w.finish().as_bytes())
        };
        assert!(plain(5, 1, 0).is_ok());
        // An unreduced rate is damage.
        assert_eq!(plain(10, 2, 0), Err(CodecError::BadField("rate")));
        // A bucket "full" a century after it was written: no call makes that.
        let century = 5 * 100 * 365 * 24 * 3600 * i128::from(SEC);
        assert_eq!(
            plain(5, 1, century),
            Err(CodecError::BadField("bucket state"))
        );
    }
}
