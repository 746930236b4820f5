//! The permit schedule: minimum-interval permits with bounded reservations,
//! optional settings kept in the key, and its codec.
//!
//! One key is one paced stream. Its state is the instant of the last slot
//! granted (`last_valid_at`), the interval that slot was spaced by, when
//! the state was written (`stamp`), the latest slot promised to a caller
//! the server does not hold (`promised_until`), and optional settings
//! (PERMIT.SET: an interval and a bound that override every caller's while
//! they live). At `now`, with interval `I`:
//! - no slot yet, or `now ≥ last_valid_at + I`: an immediate permit, valid
//!   now, which becomes the last slot;
//! - otherwise, when fewer than `max_waiting` granted permits are still in
//!   the future (or there is no bound), the next slot is
//!   `last_valid_at + I` ahead, and it is no further than [`HORIZON`] (and
//!   the caller's `max_wait`): a reserved permit valid then;
//! - otherwise: refused, nothing changes.
//!
//! Invariants: consecutive slots are never less than `I` apart (each call
//! spaces its slot by its own interval from the last one); at most
//! `max_waiting` permits are waiting at any instant (reserved slots form a
//! chain after the last immediate one, so the number of slots after `now`
//! is `ceil((last_valid_at − now) / I)`); no slot lies more than
//! [`HORIZON`] ahead, so the chain can never saturate or share a slot; a
//! refused call changes nothing. A state written "in the future" (the
//! clock stepped back) is moved back by the step first, so the stream
//! carries on from the new clock instead of refusing until the old one
//! comes round again.
//!
//! Re-spacing ([`respace`]): when PERMIT.SET changes the interval, the
//! callers the server holds are given new slots at once, in their order,
//! at the new interval. Slots promised to callers it does not hold (they
//! were told when to come) stand; held callers after the last such promise
//! move.
//!
//! Layout (after the tag byte `'p'`; varints, see `codec`):
//! ```text
//! stamp_us last_valid_at-stamp(signed) last_interval_us flags:u8
//!   [promised_until-stamp(signed)]                       (flags & 1)
//!   [interval_us max_waiting+1 (0: none) ttl_us expires_at_us]  (flags & 2)
//! ```

use crate::codec::{Codec, CodecError, Encoded, Reader, Writer};
use crate::fixed;
use crate::step::{State, Step, Write};
use crate::time::{HORIZON, MAX_WAIT, Micros, Timestamp};

/// A key's state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PermitState {
    last_valid_at: Timestamp,
    /// The interval the last slot was spaced by (zero: unknown, a state of
    /// an older layout).
    last_interval: Micros,
    /// The server time at which this state was written.
    stamp: Timestamp,
    /// The latest slot granted to a caller the server does not hold
    /// (`ZERO`: none).
    promised_until: Timestamp,
    settings: Option<Box<PermitSettings>>,
}

/// Settings kept in the key (PERMIT.SET).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PermitSettings {
    pub interval: Micros,
    /// `None`: no bound on waiting permits.
    pub max_waiting: Option<u64>,
    /// How long the settings live after they are set or used.
    pub ttl: Micros,
    pub expires_at: Timestamp,
}

/// A caller's pacing rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PermitRule {
    /// Minimum spacing between slots, `1 µs..=HORIZON`.
    pub interval: Micros,
    /// How many granted permits may wait for their slot at once (`None`:
    /// no bound).
    pub max_waiting: Option<u64>,
}

/// One PERMIT call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PermitRequest {
    /// The caller's rule; `None` for the short form (the key's settings).
    pub rule: Option<PermitRule>,
    /// GRACE, when given.
    pub grace: Option<Micros>,
    /// The default grace, in percent of the interval in force.
    pub grace_percent: u64,
    /// BLOCK's timeout, when the caller will be held: a reserved slot
    /// further away is refused.
    pub max_wait: Option<Micros>,
    /// Whether the server holds the caller until its slot (BLOCK outside
    /// MULTI and scripts).
    pub held: bool,
}

/// The outcome of one permit request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permit {
    /// Valid at once; never expires.
    Immediate { valid_at: Timestamp },
    /// Valid at `valid_at` (after `wait`), usable until `expires_at`.
    Reserved {
        valid_at: Timestamp,
        wait: Micros,
        expires_at: Timestamp,
    },
    /// No slot: the queue is full, or the slot is later than `max_wait`.
    Refused,
}

/// The short form on a key without live settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoSettings;

/// The default grace: `percent` of the interval, rounded up to whole
/// milliseconds, at most [`MAX_WAIT`].
pub fn default_grace(interval: Micros, percent: u64) -> Micros {
    // ⌈⌈x / 100⌉ / 1000⌉ = ⌈x / 100,000⌉: one division.
    let ms = interval.0.saturating_mul(percent).div_ceil(100_000);
    Micros::from_millis(ms).min(MAX_WAIT)
}

/// Settings refresh on a call that changes nothing at most this often.
const SETTINGS_REFRESH: Micros = Micros(1_000_000);

impl PermitState {
    /// A state with `last_valid_at` as its last slot, written at `stamp`.
    pub fn new(last_valid_at: Timestamp, stamp: Timestamp) -> PermitState {
        PermitState {
            last_valid_at,
            last_interval: Micros::ZERO,
            stamp,
            promised_until: Timestamp::ZERO,
            settings: None,
        }
    }

    /// The same state with the interval of its last slot and its promise
    /// (as the fixed-width layout carries them).
    pub(crate) fn paced(self, last_interval: Micros, promised_until: Timestamp) -> PermitState {
        PermitState {
            last_interval,
            promised_until,
            ..self
        }
    }

    pub fn last_valid_at(&self) -> Timestamp {
        self.last_valid_at
    }

    pub fn stamp(&self) -> Timestamp {
        self.stamp
    }

    pub fn settings(&self) -> Option<&PermitSettings> {
        self.settings.as_deref()
    }

    /// The settings, if they still apply at `now`.
    pub fn live_settings(&self, now: Timestamp) -> Option<&PermitSettings> {
        self.settings().filter(|s| s.expires_at > now)
    }

    /// The same state moved back by a clock step (`None`: no step back).
    pub fn rebased(&self, now: Timestamp) -> Option<PermitState> {
        (now < self.stamp).then(|| {
            let step = self.stamp.since(now);
            PermitState {
                last_valid_at: self.last_valid_at.saturating_sub(step),
                stamp: now,
                promised_until: match self.promised_until {
                    Timestamp::ZERO => Timestamp::ZERO,
                    p => p.saturating_sub(step),
                },
                ..self.clone()
            }
        })
    }

    /// Whether a decoded state is one calls can produce: its slots no
    /// further ahead of its stamp than the horizon allows.
    pub fn is_plausible(&self) -> bool {
        self.last_valid_at.since(self.stamp) <= HORIZON
            && self.promised_until <= self.last_valid_at.max(self.stamp)
            && self.last_interval <= HORIZON
    }

    /// Permits granted after `now` (waiting for their slot), counted with `interval`.
    pub fn waiting(&self, now: Timestamp, interval: Micros) -> u64 {
        if self.last_valid_at <= now {
            return 0;
        }
        self.last_valid_at.since(now).0.div_ceil(interval.0.max(1))
    }

    /// The settings pushed out to `now + ttl` (they are in use).
    fn refreshed(mut self, now: Timestamp) -> PermitState {
        if let Some(s) = self.settings.as_mut()
            && s.expires_at > now
        {
            s.expires_at = now.saturating_add(s.ttl);
        }
        self
    }
}

impl State for PermitState {
    /// One interval after the last slot (the stream is idle then), or when
    /// the settings expire, whichever is later.
    fn expiry(&self) -> Timestamp {
        let stream = self.last_valid_at.saturating_add(self.last_interval);
        let settings = self.settings().map_or(Timestamp::ZERO, |s| s.expires_at);
        stream.max(settings)
    }

    fn paused(&self, by: Micros) -> PermitState {
        PermitState {
            last_valid_at: self.last_valid_at.saturating_add(by),
            ..self.clone()
        }
    }

    fn heap_size(&self) -> usize {
        let settings = self.settings().map_or(0, |_| size_of::<PermitSettings>());
        size_of::<Self>().saturating_add(settings)
    }
}

/// What a PERMIT call answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PermitAnswer {
    pub permit: Permit,
    /// The interval in force (the settings', or the caller's).
    pub interval: Micros,
}

/// The state written by a call at `now` whose slot is `valid_at`.
fn written(
    current: Option<&PermitState>,
    now: Timestamp,
    valid_at: Timestamp,
    interval: Micros,
    promised: bool,
) -> PermitState {
    let base = current
        .cloned()
        .unwrap_or_else(|| PermitState::new(valid_at, now));
    let promised_until = if promised {
        valid_at
    } else {
        base.promised_until
    };
    PermitState {
        last_valid_at: valid_at,
        last_interval: interval,
        stamp: now,
        promised_until,
        ..base
    }
    .refreshed(now)
}

fn store(next: PermitState) -> Write<PermitState> {
    let expire_at = Some(next.expiry());
    Write::Store {
        value: next,
        expire_at,
    }
}

/// Decides one request at `now`.
pub fn decide(
    state: Option<&PermitState>,
    now: Timestamp,
    req: &PermitRequest,
) -> Result<Step<PermitState, PermitAnswer>, NoSettings> {
    let rebased = state.and_then(|s| s.rebased(now));
    let current = rebased.as_ref().or(state);
    let rule = match current.and_then(|s| s.live_settings(now)) {
        Some(s) => PermitRule {
            interval: s.interval,
            max_waiting: s.max_waiting,
        },
        None => req.rule.ok_or(NoSettings)?,
    };
    let interval = rule.interval;
    let answer = |permit| PermitAnswer { permit, interval };
    let immediate = || Step {
        write: store(written(current, now, now, interval, false)),
        answer: answer(Permit::Immediate { valid_at: now }),
    };
    let Some(s) = current else {
        return Ok(immediate());
    };
    let next_slot = s.last_valid_at.saturating_add(interval);
    if now >= next_slot {
        return Ok(immediate());
    }
    let wait = next_slot.since(now);
    let too_far = wait > HORIZON || req.max_wait.is_some_and(|m| wait > m.min(MAX_WAIT));
    let full = rule
        .max_waiting
        .is_some_and(|max| s.waiting(now, interval) >= max);
    if too_far || full {
        // Only a state moved back by a clock step is kept, or settings in
        // use refreshed (at most once a second).
        let write = match (&rebased, s.live_settings(now)) {
            (Some(r), _) => store(r.clone().refreshed(now)),
            (None, Some(set))
                if now.saturating_add(set.ttl).since(set.expires_at) >= SETTINGS_REFRESH =>
            {
                store(s.clone().refreshed(now))
            }
            _ => Write::Keep,
        };
        return Ok(Step {
            write,
            answer: answer(Permit::Refused),
        });
    }
    let grace = req
        .grace
        .unwrap_or_else(|| default_grace(interval, req.grace_percent));
    Ok(Step {
        write: store(written(Some(s), now, next_slot, interval, !req.held)),
        answer: answer(Permit::Reserved {
            valid_at: next_slot,
            wait,
            expires_at: next_slot.saturating_add(grace),
        }),
    })
}

/// PERMIT.SET's changes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SettingsChanges {
    pub interval: Option<Micros>,
    /// `Some(None)`: no bound.
    pub max_waiting: Option<Option<u64>>,
    pub ttl: Option<Micros>,
}

/// PERMIT.SET: new settings (the first SET must give the interval). The
/// callers the server holds on the key (`held`: their slots, in order)
/// are re-spaced to the new interval; the answer is their new slots.
pub fn set(
    state: Option<&PermitState>,
    now: Timestamp,
    changes: &SettingsChanges,
    default_ttl: Micros,
    held: &[Timestamp],
) -> Result<Step<PermitState, Vec<Timestamp>>, NoSettings> {
    let rebased = state.and_then(|s| s.rebased(now));
    let current = rebased.as_ref().or(state);
    let old = current.and_then(|s| s.live_settings(now)).copied();
    let interval = changes
        .interval
        .or(old.map(|s| s.interval))
        .ok_or(NoSettings)?;
    let max_waiting = changes
        .max_waiting
        .unwrap_or(old.and_then(|s| s.max_waiting));
    let ttl = changes.ttl.or(old.map(|s| s.ttl)).unwrap_or(default_ttl);
    let settings = PermitSettings {
        interval,
        max_waiting,
        ttl,
        expires_at: now.saturating_add(ttl),
    };
    let mut next = current
        .cloned()
        .unwrap_or_else(|| PermitState::new(Timestamp::ZERO, now));
    let old_interval = old.map_or(next.last_interval, |s| s.interval);
    next.stamp = now;
    next.settings = Some(Box::new(settings));
    let slots = respace(&mut next, now, held, old_interval, interval);
    Ok(Step {
        write: store(next),
        answer: slots,
    })
}

/// New slots for the held callers (`held`, in order) at `interval`: those
/// after the last promise move, the first no earlier than one new interval
/// after the slot before it (and not before `now`), the rest one interval
/// apart. Updates the chain's end. Returns every held caller's slot.
pub fn respace(
    state: &mut PermitState,
    now: Timestamp,
    held: &[Timestamp],
    old_interval: Micros,
    interval: Micros,
) -> Vec<Timestamp> {
    let fixed = held
        .iter()
        .take_while(|&&slot| slot <= state.promised_until)
        .count();
    let (keep, movable) = held.split_at(fixed.min(held.len()));
    let mut slots: Vec<Timestamp> = keep.to_vec();
    let Some(&first) = movable.first() else {
        return slots;
    };
    let before = first.saturating_sub(old_interval);
    let mut at = before.saturating_add(interval).max(now);
    if state.promised_until > Timestamp::ZERO {
        at = at.max(state.promised_until.saturating_add(interval));
    }
    let latest = now.saturating_add(HORIZON);
    for _ in movable {
        slots.push(at.min(latest));
        at = at.saturating_add(interval);
    }
    if let Some(&last) = slots.last() {
        state.last_valid_at = last.max(state.promised_until);
        state.last_interval = interval;
    }
    slots
}

/// PERMIT.RESET: removes the settings. Answers whether there were any.
pub fn reset(state: Option<&PermitState>) -> Step<PermitState, bool> {
    match state {
        Some(s) if s.settings.is_some() => {
            let next = PermitState {
                settings: None,
                ..s.clone()
            };
            Step {
                write: store(next),
                answer: true,
            }
        }
        _ => Step::keep(false),
    }
}

/// What PERMIT.GET shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PermitSnapshot {
    /// The settings, when live.
    pub settings: Option<PermitSettings>,
    /// The interval in force: the settings', else the last caller's.
    pub interval: Micros,
    /// Permits waiting for their slot, counted in that interval.
    pub waiting: u64,
    pub last_valid_at: Timestamp,
}

/// PERMIT.GET; `None` for no key.
pub fn get(state: Option<&PermitState>, now: Timestamp) -> Option<PermitSnapshot> {
    let s = state?;
    let s = s.rebased(now).unwrap_or_else(|| s.clone());
    let settings = s.live_settings(now).copied();
    let interval = settings.map_or(s.last_interval, |x| x.interval);
    Some(PermitSnapshot {
        settings,
        interval,
        waiting: s.waiting(now, interval),
        last_valid_at: s.last_valid_at,
    })
}

// ---- codec --------------------------------------------------------------------

const TAG: u8 = b'p';
const HAS_PROMISE: u8 = 1;
const HAS_SETTINGS: u8 = 2;

fn relative(at: Timestamp, stamp: Timestamp) -> i128 {
    i128::from(at.0).saturating_sub(i128::from(stamp.0))
}

fn absolute(offset: i128, stamp: Timestamp, what: &'static str) -> Result<Timestamp, CodecError> {
    let at = i128::from(stamp.0).saturating_add(offset);
    u64::try_from(at)
        .map(Timestamp)
        .map_err(|_| CodecError::BadField(what))
}

impl Codec for PermitState {
    fn encode(&self) -> Encoded {
        let mut w = Writer::new(TAG);
        w.u64(self.stamp.0);
        w.int(relative(self.last_valid_at, self.stamp));
        w.u64(self.last_interval.0);
        let promised = self.promised_until > Timestamp::ZERO;
        let mut flags = 0;
        if promised {
            flags |= HAS_PROMISE;
        }
        if self.settings.is_some() {
            flags |= HAS_SETTINGS;
        }
        w.u8(flags);
        if promised {
            w.int(relative(self.promised_until, self.stamp));
        }
        if let Some(s) = self.settings() {
            w.u64(s.interval.0);
            w.u64(s.max_waiting.map_or(0, |m| m.saturating_add(1)));
            w.u64(s.ttl.0);
            w.u64(s.expires_at.0);
        }
        w.finish()
    }

    /// Without settings (every call's write): the fixed-width layout.
    fn encode_replicated(&self) -> Encoded {
        let fixed = match self.settings {
            None => fixed::paced(
                self.last_valid_at,
                self.stamp,
                self.last_interval,
                self.promised_until,
            ),
            Some(_) => None,
        };
        fixed.unwrap_or_else(|| self.encode())
    }

    fn decode(bytes: &[u8]) -> Result<PermitState, CodecError> {
        let mut r = Reader::new(bytes);
        match r.u8()? {
            TAG => {}
            1 | 2 => return fixed::decode_permit(bytes),
            t if t.is_ascii_lowercase() => return Err(CodecError::WrongKind),
            v => return Err(CodecError::UnknownVersion(v)),
        }
        let stamp = Timestamp(r.u64("stamp")?);
        let last_valid_at = absolute(r.int("last slot")?, stamp, "last slot")?;
        let last_interval = Micros(r.u64("interval")?);
        let flags = r.u8()?;
        if flags & !(HAS_PROMISE | HAS_SETTINGS) != 0 {
            return Err(CodecError::BadField("flags"));
        }
        let promised_until = if flags & HAS_PROMISE != 0 {
            absolute(r.int("promise")?, stamp, "promise")?
        } else {
            Timestamp::ZERO
        };
        let settings = if flags & HAS_SETTINGS != 0 {
            let interval = Micros(r.u64("settings interval")?);
            let max_waiting = r.u64("max_waiting")?.checked_sub(1);
            let ttl = Micros(r.u64("settings ttl")?);
            let expires_at = Timestamp(r.u64("settings expiry")?);
            if interval == Micros::ZERO
                || interval > HORIZON
                || ttl > crate::throttle::MAX_KNOBS_TTL
            {
                return Err(CodecError::BadField("settings"));
            }
            Some(Box::new(PermitSettings {
                interval,
                max_waiting,
                ttl,
                expires_at,
            }))
        } else {
            None
        };
        r.end()?;
        let s = PermitState {
            last_valid_at,
            last_interval,
            stamp,
            promised_until,
            settings,
        };
        if !s.is_plausible() {
            return Err(CodecError::BadField("last slot"));
        }
        Ok(s)
    }

    fn claims(bytes: &[u8]) -> bool {
        match bytes {
            [TAG, ..] => true,
            [1 | 2, kind, ..] => fixed::PERMIT_KINDS.contains(kind),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1000;
    const T0: u64 = 1_790_000_000_000_000;

    fn rule(interval_ms: u64, max_waiting: u64) -> PermitRequest {
        PermitRequest {
            rule: Some(PermitRule {
                interval: Micros(interval_ms * MS),
                max_waiting: Some(max_waiting),
            }),
            grace: None,
            grace_percent: 10,
            max_wait: None,
            held: false,
        }
    }

    fn step(s: &mut Option<PermitState>, now: u64, r: &PermitRequest) -> Permit {
        let d = decide(s.as_ref(), Timestamp(now), r).unwrap();
        if let Write::Store { value, .. } = d.write {
            *s = Some(value);
        }
        d.answer.permit
    }

    #[test]
    fn default_grace_is_a_percentage_rounded_up_to_ms() {
        let g = default_grace;
        assert_eq!(g(Micros(3_000_000), 10), Micros(300_000));
        assert_eq!(g(Micros(250), 10), Micros(1000));
        assert_eq!(g(Micros(15_000), 10), Micros(2000));
        assert_eq!(g(Micros(15_000), 0), Micros::ZERO);
        assert_eq!(g(HORIZON, 1000), MAX_WAIT);
    }

    #[test]
    fn first_call_on_a_fresh_key_is_immediate() {
        // The exercise crashed here (no key yet).
        let d = decide(None, Timestamp(T0), &rule(3000, 2)).unwrap();
        assert_eq!(
            d.answer.permit,
            Permit::Immediate {
                valid_at: Timestamp(T0)
            }
        );
        // The key lives one interval past its slot.
        assert!(
            matches!(d.write, Write::Store { expire_at: Some(at), .. } if at == Timestamp(T0 + 3_000_000))
        );
    }

    #[test]
    fn exercise_scenario_three_seconds_two_waiting() {
        let r = rule(3000, 2);
        let mut s = None;
        assert!(matches!(step(&mut s, T0, &r), Permit::Immediate { .. }));
        assert_eq!(
            step(&mut s, T0 + 1, &r),
            Permit::Reserved {
                valid_at: Timestamp(T0 + 3000 * MS),
                wait: Micros(3000 * MS - 1),
                expires_at: Timestamp(T0 + 3300 * MS)
            }
        );
        assert!(matches!(
            step(&mut s, T0 + 2, &r),
            Permit::Reserved { valid_at, .. } if valid_at == Timestamp(T0 + 6000 * MS)
        ));
        // Exactly max_waiting outstanding: refused (the exercise allowed one more).
        assert_eq!(step(&mut s, T0 + 3, &r), Permit::Refused);
        // Once the first reserved slot has passed, one place frees up.
        assert!(matches!(
            step(&mut s, T0 + 3000 * MS, &r),
            Permit::Reserved { valid_at, .. } if valid_at == Timestamp(T0 + 9000 * MS)
        ));
        assert_eq!(step(&mut s, T0 + 3000 * MS, &r), Permit::Refused);
    }

    #[test]
    fn max_waiting_zero_gives_only_immediate_permits() {
        let r = rule(100, 0);
        let mut s = None;
        assert!(matches!(step(&mut s, T0, &r), Permit::Immediate { .. }));
        assert_eq!(step(&mut s, T0 + 99_999, &r), Permit::Refused);
        assert!(matches!(
            step(&mut s, T0 + 100_000, &r),
            Permit::Immediate { .. }
        ));
    }

    #[test]
    fn no_bound_reserves_as_far_as_the_horizon() {
        let mut r = rule(1000, 0);
        r.rule = Some(PermitRule {
            interval: Micros(1000 * MS),
            max_waiting: None,
        });
        let mut s = None;
        for i in 0..50u64 {
            let p = step(&mut s, T0, &r);
            if i > 0 {
                assert!(
                    matches!(p, Permit::Reserved { valid_at, .. } if valid_at == Timestamp(T0 + i * 1000 * MS))
                );
            }
        }
    }

    #[test]
    fn block_timeout_shorter_than_the_wait_reserves_nothing() {
        let mut r = rule(100, 5);
        let s = Some(PermitState::new(Timestamp(T0), Timestamp(T0)));
        r.max_wait = Some(Micros(99_999));
        let d = decide(s.as_ref(), Timestamp(T0), &r).unwrap();
        assert_eq!((d.answer.permit, d.write), (Permit::Refused, Write::Keep));
        r.max_wait = Some(Micros(100_000));
        assert!(matches!(
            decide(s.as_ref(), Timestamp(T0), &r).unwrap().answer.permit,
            Permit::Reserved { .. }
        ));
    }

    #[test]
    fn the_chain_never_passes_the_horizon() {
        // Found by hostile testing: 19,000 reservations a 1e12 ms interval
        // apart saturated the chain at u64::MAX and shared one slot.
        let r = PermitRequest {
            rule: Some(PermitRule {
                interval: HORIZON,
                max_waiting: Some(100_000),
            }),
            grace: Some(Micros::ZERO),
            ..rule(1, 1)
        };
        let mut s = None;
        assert!(matches!(step(&mut s, T0, &r), Permit::Immediate { .. }));
        assert!(matches!(step(&mut s, T0, &r), Permit::Reserved { .. }));
        for _ in 0..10 {
            assert_eq!(step(&mut s, T0, &r), Permit::Refused);
        }
        assert_eq!(s.unwrap().last_valid_at, Timestamp(T0 + HORIZON.0));
    }

    #[test]
    fn a_step_back_carries_on_from_the_new_clock() {
        let r = rule(1000, 3);
        let mut s = None;
        for _ in 0..4 {
            step(&mut s, T0, &r); // one immediate, three reserved
        }
        assert_eq!(step(&mut s, T0, &r), Permit::Refused);
        let back = T0 - 3_600_000_000;
        // An hour back: the queue is as full as it was, not an hour fuller…
        assert_eq!(step(&mut s, back, &r), Permit::Refused);
        assert_eq!(s.as_ref().unwrap().stamp, Timestamp(back));
        // …and drains at the interval on the new clock.
        assert!(matches!(
            step(&mut s, back + 1000 * MS, &r),
            Permit::Reserved { wait, .. } if wait == Micros(3000 * MS)
        ));
    }

    #[test]
    fn mixed_intervals_space_each_slot_by_its_own_interval() {
        let mut s = None;
        step(&mut s, T0, &rule(1000, 10));
        let short = step(&mut s, T0, &rule(100, 10));
        assert!(
            matches!(short, Permit::Reserved { valid_at, .. } if valid_at == Timestamp(T0 + 100 * MS))
        );
        let long = step(&mut s, T0, &rule(1000, 10));
        assert!(
            matches!(long, Permit::Reserved { valid_at, .. } if valid_at == Timestamp(T0 + 1100 * MS))
        );
        // Counted with a 100 ms interval, 11 slots wait: refused at 10.
        assert_eq!(step(&mut s, T0, &rule(100, 10)), Permit::Refused);
    }

    #[test]
    fn settings_override_callers_and_the_short_form_needs_them() {
        let short = PermitRequest {
            rule: None,
            ..rule(1, 1)
        };
        assert_eq!(decide(None, Timestamp(T0), &short), Err(NoSettings));
        let changes = SettingsChanges {
            interval: Some(Micros(500 * MS)),
            max_waiting: Some(None),
            ttl: None,
        };
        let set_step = set(None, Timestamp(T0), &changes, Micros(60_000 * MS), &[]).unwrap();
        let mut s = set_step.write.stored().cloned();
        assert!(matches!(step(&mut s, T0, &short), Permit::Immediate { .. }));
        // A caller's own interval no longer matters.
        assert!(matches!(
            step(&mut s, T0, &rule(10, 0)),
            Permit::Reserved { valid_at, .. } if valid_at == Timestamp(T0 + 500 * MS)
        ));
        // RESET removes them.
        let r = reset(s.as_ref());
        assert!(r.answer);
        let s = r.write.stored().cloned();
        assert_eq!(decide(s.as_ref(), Timestamp(T0), &short), Err(NoSettings));
        assert_eq!(
            set(
                None,
                Timestamp(T0),
                &SettingsChanges::default(),
                Micros(1),
                &[]
            ),
            Err(NoSettings)
        );
    }

    #[test]
    fn respacing_moves_held_callers_in_order_to_the_new_interval() {
        // One immediate at T0, then five held at 500 ms.
        let mut r = rule(500, 100);
        r.held = true;
        let mut s = None;
        let mut held = Vec::new();
        for _ in 0..6 {
            if let Permit::Reserved { valid_at, .. } = step(&mut s, T0, &r) {
                held.push(valid_at);
            }
        }
        assert_eq!(held.len(), 5);
        // 100 ms later the interval becomes 20 ms.
        let now = Timestamp(T0 + 100 * MS);
        let changes = SettingsChanges {
            interval: Some(Micros(20 * MS)),
            ..Default::default()
        };
        let st = set(s.as_ref(), now, &changes, Micros(60_000 * MS), &held).unwrap();
        let slots = st.answer;
        // The first comes now (its predecessor, T0, is more than 20 ms ago).
        assert_eq!(slots[0], now);
        for w in slots.windows(2) {
            assert_eq!(w[1].since(w[0]), Micros(20 * MS));
        }
        assert_eq!(st.write.stored().unwrap().last_valid_at, slots[4]);
        // Slower: 1 s apart, starting one new interval after T0.
        let changes = SettingsChanges {
            interval: Some(Micros(1000 * MS)),
            ..Default::default()
        };
        let st = set(s.as_ref(), now, &changes, Micros(60_000 * MS), &held).unwrap();
        assert_eq!(st.answer[0], Timestamp(T0 + 1000 * MS));
        assert_eq!(st.answer[4], Timestamp(T0 + 5000 * MS));
    }

    #[test]
    fn promises_to_callers_not_held_stand_when_respacing() {
        let mut s = None;
        let held_rule = PermitRequest {
            held: true,
            ..rule(500, 100)
        };
        step(&mut s, T0, &held_rule); // immediate
        let promise = step(&mut s, T0, &rule(500, 100)); // not held: a promise at +500
        assert!(
            matches!(promise, Permit::Reserved { valid_at, .. } if valid_at == Timestamp(T0 + 500 * MS))
        );
        let mut held = Vec::new();
        for _ in 0..2 {
            if let Permit::Reserved { valid_at, .. } = step(&mut s, T0, &held_rule) {
                held.push(valid_at);
            }
        }
        let changes = SettingsChanges {
            interval: Some(Micros(100 * MS)),
            ..Default::default()
        };
        let st = set(
            s.as_ref(),
            Timestamp(T0),
            &changes,
            Micros(60_000 * MS),
            &held,
        )
        .unwrap();
        // After the promise at +500, one new interval apart.
        assert_eq!(
            st.answer,
            vec![Timestamp(T0 + 600 * MS), Timestamp(T0 + 700 * MS)]
        );
    }

    #[test]
    fn a_paused_stream_moves_its_last_slot() {
        let mut s = None;
        step(&mut s, T0, &rule(100, 1));
        let p = s.unwrap().paused(Micros(50 * MS));
        assert_eq!(p.last_valid_at(), Timestamp(T0 + 50 * MS));
        assert_eq!(p.expiry(), Timestamp(T0 + 150 * MS));
    }

    #[test]
    fn round_trips_and_refuses_damage() {
        let mut s = None;
        step(&mut s, T0, &rule(100, 5));
        step(&mut s, T0 + 7, &rule(100, 5));
        let changes = SettingsChanges {
            interval: Some(Micros(250)),
            max_waiting: Some(Some(3)),
            ttl: Some(Micros(5 * MS)),
        };
        let with_settings = set(s.as_ref(), Timestamp(T0 + 9), &changes, Micros(1), &[])
            .unwrap()
            .write
            .stored()
            .cloned()
            .unwrap();
        for v in [s.clone().unwrap(), with_settings.clone()] {
            let e = v.encode();
            assert!(PermitState::claims(e.as_bytes()));
            assert_eq!(PermitState::decode(e.as_bytes()), Ok(v.clone()));
            let r = v.encode_replicated();
            assert!(PermitState::claims(r.as_bytes()));
            assert!(!crate::throttle::ThrottleState::claims(r.as_bytes()));
            assert_eq!(PermitState::decode(r.as_bytes()), Ok(v));
        }
        // Without settings a write replicates the fixed-width layout (34
        // bytes), with them the compact one.
        assert_eq!(
            &s.clone().unwrap().encode_replicated().as_bytes()[..2],
            b"\x02Q"
        );
        assert_eq!(s.clone().unwrap().encode_replicated().as_bytes().len(), 34);
        assert_eq!(
            with_settings.encode_replicated().as_bytes(),
            with_settings.encode().as_bytes()
        );
        assert!(s.unwrap().encode().as_bytes().len() <= 20);
        assert_eq!(PermitState::decode(b"b"), Err(CodecError::WrongKind));
        // A layout with these fields, and no promise or settings to follow.
        let layout = |ahead: i128, flags: u8| {
            let mut w = Writer::new(TAG);
            w.u64(T0);
            w.int(ahead);
            w.u64(0);
            w.u8(flags);
            PermitState::decode(w.finish().as_bytes())
        };
        assert!(layout(7, 0).is_ok());
        // A chain beyond the horizon, unknown flags.
        let far = i128::from(HORIZON.0) + 1;
        assert_eq!(layout(far, 0), Err(CodecError::BadField("last slot")));
        assert_eq!(layout(0, 4), Err(CodecError::BadField("flags")));
    }
}
