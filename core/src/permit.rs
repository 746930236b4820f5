//! The permit schedule: minimum-interval permits with bounded reservations.
//!
//! One key is one paced stream. Its state is the instant of the last slot
//! granted (`last_valid_at`). At `now`, with interval `I`:
//! - no slot yet, or `now ≥ last_valid_at + I`: an immediate permit, valid
//!   now, which becomes the last slot;
//! - otherwise, when fewer than `max_waiting` granted permits are still in
//!   the future, a reserved permit valid at `last_valid_at + I`;
//! - otherwise: refused, nothing changes.
//!
//! Invariants: consecutive slots are never less than `I` apart; at most
//! `max_waiting` permits are waiting at any instant (reserved slots form a
//! chain `I` apart after the last immediate one, so the number of slots
//! after `now` is `ceil((last_valid_at − now) / I)`); a refused call changes
//! nothing. The state stops mattering at `last_valid_at + I` (the key may
//! expire then).

use crate::time::Micros;

/// The last slot granted on a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PermitState {
    pub last_valid_at: Micros,
}

/// A key's pacing rule, as the caller gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PermitRule {
    /// Minimum spacing between slots, at least 1 µs.
    pub interval: Micros,
    /// How many granted permits may wait for their slot at once.
    pub max_waiting: u64,
    /// How long after its slot a reserved permit stays usable.
    pub grace: Micros,
}

impl PermitRule {
    /// The default grace: 10% of the interval, rounded up to whole ms.
    pub fn default_grace(interval: Micros) -> Micros {
        Micros::from_millis(interval.0.div_ceil(10).div_ceil(1000))
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

impl Permit {
    /// The state after this permit, or `None` when nothing changes.
    pub fn next(&self) -> Option<PermitState> {
        match *self {
            Permit::Immediate { valid_at } | Permit::Reserved { valid_at, .. } => {
                Some(PermitState {
                    last_valid_at: valid_at,
                })
            }
            Permit::Refused => None,
        }
    }
}

/// Permits granted after `now` (waiting for their slot).
pub fn waiting(state: Option<&PermitState>, now: Micros, interval: Micros) -> u64 {
    match state {
        Some(s) if s.last_valid_at > now => {
            s.last_valid_at.since(now).0.div_ceil(interval.0.max(1))
        }
        _ => 0,
    }
}

/// Decides one request at `now`. `max_wait`, when given (BLOCK), refuses
/// a reserved slot that is further away than it.
pub fn decide(
    state: Option<&PermitState>,
    now: Micros,
    rule: &PermitRule,
    max_wait: Option<Micros>,
) -> Permit {
    let last = match state {
        None => return Permit::Immediate { valid_at: now },
        Some(s) => s.last_valid_at,
    };
    let next_slot = last.saturating_add(rule.interval);
    if now >= next_slot {
        return Permit::Immediate { valid_at: now };
    }
    if waiting(state, now, rule.interval) >= rule.max_waiting {
        return Permit::Refused;
    }
    let wait = next_slot.since(now);
    if max_wait.is_some_and(|m| wait > m) {
        return Permit::Refused;
    }
    Permit::Reserved {
        valid_at: next_slot,
        wait,
        expires_at: next_slot.saturating_add(rule.grace),
    }
}

/// When the state stops mattering (the key may expire): one interval after
/// the last slot.
pub fn expires_at(state: &PermitState, interval: Micros) -> Micros {
    state.last_valid_at.saturating_add(interval)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1000;

    fn rule(interval_ms: u64, max_waiting: u64) -> PermitRule {
        let interval = Micros(interval_ms * MS);
        PermitRule {
            interval,
            max_waiting,
            grace: PermitRule::default_grace(interval),
        }
    }

    fn step(s: &mut Option<PermitState>, now: u64, r: &PermitRule) -> Permit {
        let p = decide(s.as_ref(), Micros(now), r, None);
        if let Some(n) = p.next() {
            *s = Some(n);
        }
        p
    }

    #[test]
    fn first_call_on_a_fresh_key_is_immediate() {
        // The exercise crashed here (no key yet).
        let r = rule(3000, 2);
        assert_eq!(
            decide(None, Micros(5), &r, None),
            Permit::Immediate {
                valid_at: Micros(5)
            }
        );
    }

    #[test]
    fn exercise_scenario_three_seconds_two_waiting() {
        let r = rule(3000, 2);
        let mut s = None;
        assert!(matches!(step(&mut s, 0, &r), Permit::Immediate { .. }));
        assert_eq!(
            step(&mut s, 1, &r),
            Permit::Reserved {
                valid_at: Micros(3000 * MS),
                wait: Micros(3000 * MS - 1),
                expires_at: Micros(3300 * MS)
            }
        );
        assert!(matches!(
            step(&mut s, 2, &r),
            Permit::Reserved {
                valid_at: Micros(6_000_000),
                ..
            }
        ));
        // Exactly max_waiting outstanding: refused (the exercise allowed one more).
        assert_eq!(step(&mut s, 3, &r), Permit::Refused);
        // Once the first reserved slot has passed, one place frees up.
        assert!(matches!(
            step(&mut s, 3000 * MS, &r),
            Permit::Reserved {
                valid_at: Micros(9_000_000),
                ..
            }
        ));
        assert_eq!(step(&mut s, 3000 * MS, &r), Permit::Refused);
    }

    #[test]
    fn max_waiting_zero_gives_only_immediate_permits() {
        let r = rule(100, 0);
        let mut s = None;
        assert!(matches!(step(&mut s, 0, &r), Permit::Immediate { .. }));
        assert_eq!(step(&mut s, 99_999, &r), Permit::Refused);
        assert!(matches!(
            step(&mut s, 100_000, &r),
            Permit::Immediate { .. }
        ));
    }

    #[test]
    fn block_timeout_shorter_than_the_wait_reserves_nothing() {
        let r = rule(100, 5);
        let s = Some(PermitState {
            last_valid_at: Micros(0),
        });
        assert_eq!(
            decide(s.as_ref(), Micros(0), &r, Some(Micros(99_999))),
            Permit::Refused
        );
        assert!(matches!(
            decide(s.as_ref(), Micros(0), &r, Some(Micros(100_000))),
            Permit::Reserved { .. }
        ));
    }

    #[test]
    fn default_grace_is_ten_percent_rounded_up_to_ms() {
        assert_eq!(
            PermitRule::default_grace(Micros(3_000_000)),
            Micros(300_000)
        );
        assert_eq!(PermitRule::default_grace(Micros(250)), Micros(1000));
        assert_eq!(PermitRule::default_grace(Micros(15_000)), Micros(2000));
    }

    #[test]
    fn fractional_interval_in_microseconds() {
        let r = PermitRule {
            interval: Micros(250),
            max_waiting: 10,
            grace: Micros::ZERO,
        };
        let mut s = None;
        step(&mut s, 0, &r);
        assert_eq!(
            step(&mut s, 0, &r),
            Permit::Reserved {
                valid_at: Micros(250),
                wait: Micros(250),
                expires_at: Micros(250)
            }
        );
    }
}
