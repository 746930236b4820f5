//! The permit schedule: minimum-interval permits with bounded reservations.
//!
//! One key is one paced stream. Its state is the instant of the last slot
//! granted (`last_valid_at`) and when the state was written (`stamp`). At
//! `now`, with interval `I`:
//! - no slot yet, or `now ≥ last_valid_at + I`: an immediate permit, valid
//!   now, which becomes the last slot;
//! - otherwise, when fewer than `max_waiting` granted permits are still in
//!   the future, the next slot is `last_valid_at + I` ahead, and it is no
//!   further than [`HORIZON`] (and the caller's `max_wait`): a reserved
//!   permit valid then;
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

use crate::time::{HORIZON, MAX_WAIT, Micros};

/// A key's state: the last slot granted, and when that was decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PermitState {
    pub last_valid_at: Micros,
    /// The server time at which this state was written.
    pub stamp: Micros,
}

/// A key's pacing rule, as the caller gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PermitRule {
    /// Minimum spacing between slots, `1 µs..=HORIZON`.
    pub interval: Micros,
    /// How many granted permits may wait for their slot at once.
    pub max_waiting: u64,
    /// How long after its slot a reserved permit stays usable.
    pub grace: Micros,
}

impl PermitRule {
    /// The default grace: `percent` of the interval, rounded up to whole
    /// milliseconds, at most [`MAX_WAIT`].
    pub fn default_grace(interval: Micros, percent: u64) -> Micros {
        let us = interval.0.saturating_mul(percent).div_ceil(100);
        Micros::from_millis(us.div_ceil(1000)).min(MAX_WAIT)
    }
}

/// The outcome of one permit request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permit {
    /// Valid at once; never expires.
    Immediate { valid_at: Micros },
    /// Valid at `valid_at` (after `wait`), usable until `expires_at`.
    Reserved {
        valid_at: Micros,
        wait: Micros,
        expires_at: Micros,
    },
    /// No slot: the queue is full, or the slot is later than `max_wait`.
    Refused,
}

/// A decision and what to store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PermitDecision {
    pub permit: Permit,
    /// The state to store, or `None` when nothing changes.
    pub next: Option<PermitState>,
}

impl PermitState {
    /// The same state moved back by a clock step (`None`: no step back).
    pub fn rebased(&self, now: Micros) -> Option<PermitState> {
        (now < self.stamp).then(|| PermitState {
            last_valid_at: self.last_valid_at.saturating_sub(self.stamp.since(now)),
            stamp: now,
        })
    }

    /// When the state stops mattering (the key may expire): one interval
    /// after the last slot.
    pub fn expires_at(&self, interval: Micros) -> Micros {
        self.last_valid_at.saturating_add(interval)
    }

    /// Whether a decoded state is one calls can produce: its last slot no
    /// further ahead of its stamp than the horizon allows.
    pub fn is_plausible(&self) -> bool {
        self.last_valid_at.since(self.stamp) <= HORIZON
    }
}

/// Permits granted after `now` (waiting for their slot), counted with `interval`.
pub fn waiting(state: Option<&PermitState>, now: Micros, interval: Micros) -> u64 {
    match state {
        Some(s) if s.last_valid_at > now => {
            s.last_valid_at.since(now).0.div_ceil(interval.0.max(1))
        }
        _ => 0,
    }
}

/// Decides one request at `now`. `max_wait` (BLOCK's timeout, at most
/// [`MAX_WAIT`]) refuses a reserved slot that is further away than it.
pub fn decide(
    state: Option<&PermitState>,
    now: Micros,
    rule: &PermitRule,
    max_wait: Option<Micros>,
) -> PermitDecision {
    let rebased = state.and_then(|s| s.rebased(now));
    let current = rebased.or(state.copied());
    let written = |valid_at| PermitState {
        last_valid_at: valid_at,
        stamp: now,
    };
    let immediate = PermitDecision {
        permit: Permit::Immediate { valid_at: now },
        next: Some(written(now)),
    };
    let Some(last) = current.map(|s| s.last_valid_at) else {
        return immediate;
    };
    let next_slot = last.saturating_add(rule.interval);
    if now >= next_slot {
        return immediate;
    }
    let refused = PermitDecision {
        permit: Permit::Refused,
        // Only a state moved back by a clock step is kept.
        next: rebased,
    };
    let wait = next_slot.since(now);
    let too_far = wait > HORIZON || max_wait.is_some_and(|m| wait > m.min(MAX_WAIT));
    if too_far || waiting(current.as_ref(), now, rule.interval) >= rule.max_waiting {
        return refused;
    }
    PermitDecision {
        permit: Permit::Reserved {
            valid_at: next_slot,
            wait,
            expires_at: next_slot.saturating_add(rule.grace),
        },
        next: Some(written(next_slot)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1000;
    const T0: u64 = 1_790_000_000_000_000;

    fn rule(interval_ms: u64, max_waiting: u64) -> PermitRule {
        PermitRule {
            interval: Micros(interval_ms * MS),
            max_waiting,
            grace: Micros(interval_ms * MS / 10),
        }
    }

    fn step(s: &mut Option<PermitState>, now: u64, r: &PermitRule) -> Permit {
        let d = decide(s.as_ref(), Micros(now), r, None);
        if let Some(n) = d.next {
            *s = Some(n);
        }
        d.permit
    }

    #[test]
    fn default_grace_is_a_percentage_rounded_up_to_ms() {
        let g = PermitRule::default_grace;
        assert_eq!(g(Micros(3_000_000), 10), Micros(300_000));
        assert_eq!(g(Micros(250), 10), Micros(1000));
        assert_eq!(g(Micros(15_000), 10), Micros(2000));
        assert_eq!(g(Micros(15_000), 0), Micros::ZERO);
        assert_eq!(g(HORIZON, 1000), MAX_WAIT);
    }

    #[test]
    fn first_call_on_a_fresh_key_is_immediate() {
        // The exercise crashed here (no key yet).
        let d = decide(None, Micros(T0), &rule(3000, 2), None);
        assert_eq!(
            d.permit,
            Permit::Immediate {
                valid_at: Micros(T0)
            }
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
                valid_at: Micros(T0 + 3000 * MS),
                wait: Micros(3000 * MS - 1),
                expires_at: Micros(T0 + 3300 * MS)
            }
        );
        assert!(matches!(
            step(&mut s, T0 + 2, &r),
            Permit::Reserved { valid_at, .. } if valid_at == Micros(T0 + 6000 * MS)
        ));
        // Exactly max_waiting outstanding: refused (the exercise allowed one more).
        assert_eq!(step(&mut s, T0 + 3, &r), Permit::Refused);
        // Once the first reserved slot has passed, one place frees up.
        assert!(matches!(
            step(&mut s, T0 + 3000 * MS, &r),
            Permit::Reserved { valid_at, .. } if valid_at == Micros(T0 + 9000 * MS)
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
    fn block_timeout_shorter_than_the_wait_reserves_nothing() {
        let r = rule(100, 5);
        let s = Some(PermitState {
            last_valid_at: Micros(T0),
            stamp: Micros(T0),
        });
        let d = decide(s.as_ref(), Micros(T0), &r, Some(Micros(99_999)));
        assert_eq!((d.permit, d.next), (Permit::Refused, None));
        assert!(matches!(
            decide(s.as_ref(), Micros(T0), &r, Some(Micros(100_000))).permit,
            Permit::Reserved { .. }
        ));
    }

    #[test]
    fn the_chain_never_passes_the_horizon() {
        // Found by hostile testing: 19,000 reservations a 1e12 ms interval
        // apart saturated the chain at u64::MAX and shared one slot.
        let r = PermitRule {
            interval: HORIZON,
            max_waiting: 100_000,
            grace: Micros::ZERO,
        };
        let mut s = None;
        assert!(matches!(step(&mut s, T0, &r), Permit::Immediate { .. }));
        assert!(matches!(step(&mut s, T0, &r), Permit::Reserved { .. }));
        for _ in 0..10 {
            assert_eq!(step(&mut s, T0, &r), Permit::Refused);
        }
        assert_eq!(s.unwrap().last_valid_at, Micros(T0 + HORIZON.0));
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
        assert_eq!(s.unwrap().stamp, Micros(back));
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
            matches!(short, Permit::Reserved { valid_at, .. } if valid_at == Micros(T0 + 100 * MS))
        );
        let long = step(&mut s, T0, &rule(1000, 10));
        assert!(
            matches!(long, Permit::Reserved { valid_at, .. } if valid_at == Micros(T0 + 1100 * MS))
        );
        // Counted with a 100 ms interval, 11 slots wait: refused at 10.
        assert_eq!(step(&mut s, T0, &rule(100, 10)), Permit::Refused);
    }
}
