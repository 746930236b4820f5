//! Integer time: instants ([`Timestamp`]) and durations ([`Micros`]) are
//! distinct types, both counted in microseconds, and the bounds every
//! stored or armed time respects.
//!
//! A [`Timestamp`] is an instant on the Redis server's wall clock,
//! microseconds since the Unix epoch; a [`Micros`] is a length of time.
//! Instant − instant is a duration ([`Timestamp::since`], zero when the
//! clock went backwards, never negative); instant ± duration is an instant.
//! All arithmetic saturates: time never wraps.
//!
//! Bounds (so that no caller can make the server store or arm an extreme
//! time, and every reply fits in the 53 bits every client reads exactly):
//! - [`MAX_WAIT`]: the longest a caller may be held (WAIT, BLOCK, GRACE):
//!   366 days;
//! - [`HORIZON`]: no stored time lies further ahead than this (a bucket's
//!   refill time, a permit chain): 10^15 µs, about 31.7 years;
//! - [`Timestamp::LATEST`]: the latest clock reading the arithmetic takes
//!   (year 9967): every instant derived from it, at most [`HORIZON`] plus
//!   [`MAX_WAIT`] ahead, stays before [`NEVER_MS`];
//! - [`REPLY_MAX`]: 9 × 10^15, the largest integer any reply carries:
//!   below 2^53 − 48, so every client reads every reply exactly (ioredis and
//!   node-redis misread the odd integers within 48 of 2^53);
//! - [`NEVER_MS`]: PERMIT's "never expires", 9999-12-31T23:59:59.999Z in
//!   Unix ms: a real instant every client and date library reads exactly,
//!   and later than any expiry a naive comparison could meet.

/// A duration in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Micros(pub u64);

/// An instant: microseconds since the Unix epoch, on the server's clock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub u64);

/// The longest a caller may be held, and the longest GRACE: 366 days.
pub const MAX_WAIT: Micros = Micros(366 * 24 * 3600 * 1_000_000);
/// The longest a stored time may lie ahead of now: 10^15 µs (~31.7 years).
pub const HORIZON: Micros = Micros(1_000_000_000_000_000);
/// The largest integer in any reply: 9 × 10^15, exact in every client
/// (JavaScript numbers included; see the module docs).
pub const REPLY_MAX: i64 = 9_000_000_000_000_000;
/// PERMIT's "never expires": 9999-12-31T23:59:59.999Z, in Unix ms.
pub const NEVER_MS: i64 = 253_402_300_799_999;

const US_PER_S: u64 = 1_000_000;

impl Micros {
    pub const ZERO: Micros = Micros(0);
    pub const MAX: Micros = Micros(u64::MAX);

    pub const fn from_millis(ms: u64) -> Micros {
        Micros(ms.saturating_mul(1000))
    }

    pub const fn from_secs(s: u64) -> Micros {
        Micros(s.saturating_mul(US_PER_S))
    }

    pub const fn saturating_add(self, d: Micros) -> Micros {
        Micros(self.0.saturating_add(d.0))
    }

    pub const fn saturating_sub(self, d: Micros) -> Micros {
        Micros(self.0.saturating_sub(d.0))
    }

    /// Whole seconds, rounded down.
    pub const fn as_secs_floor(self) -> u64 {
        self.0 / US_PER_S
    }

    /// Whole milliseconds, rounded up (a wait of 1 µs is 1 ms: never early).
    pub const fn as_millis_ceil(self) -> u64 {
        self.0.div_ceil(1000)
    }

    /// Whole milliseconds, rounded down.
    pub const fn as_millis_floor(self) -> u64 {
        self.0 / 1000
    }

    /// Milliseconds rounded up, as a reply integer (at most [`REPLY_MAX`]).
    pub fn reply_ms_ceil(self) -> i64 {
        clamp_reply(self.as_millis_ceil())
    }

    /// Milliseconds rounded down, as a reply integer (at most [`REPLY_MAX`]).
    pub fn reply_ms_floor(self) -> i64 {
        clamp_reply(self.as_millis_floor())
    }
}

impl Timestamp {
    pub const ZERO: Timestamp = Timestamp(0);
    /// The latest instant the module's clock reads (year 9967): a frozen
    /// test clock may not go later, a real one never will. Anything the
    /// arithmetic derives from it ([`HORIZON`] and [`MAX_WAIT`] ahead at
    /// most) is still before [`NEVER_MS`].
    pub const LATEST: Timestamp =
        Timestamp(NEVER_MS as u64 * 1000 - HORIZON.0 - MAX_WAIT.0 - US_PER_S);

    pub const fn from_secs(s: u64) -> Timestamp {
        Timestamp(s.saturating_mul(US_PER_S))
    }

    pub const fn from_millis(ms: u64) -> Timestamp {
        Timestamp(ms.saturating_mul(1000))
    }

    /// Elapsed time from `earlier` to `self`; zero when the clock went backwards.
    pub const fn since(self, earlier: Timestamp) -> Micros {
        Micros(self.0.saturating_sub(earlier.0))
    }

    /// The instant `d` later.
    pub const fn saturating_add(self, d: Micros) -> Timestamp {
        Timestamp(self.0.saturating_add(d.0))
    }

    /// The instant `d` earlier (never before the epoch).
    pub const fn saturating_sub(self, d: Micros) -> Timestamp {
        Timestamp(self.0.saturating_sub(d.0))
    }

    /// Whole seconds since the epoch, rounded down.
    pub const fn as_secs_floor(self) -> u64 {
        self.0 / US_PER_S
    }

    /// Unix milliseconds rounded up, as a reply integer.
    pub fn reply_ms_ceil(self) -> i64 {
        clamp_reply(self.0.div_ceil(1000))
    }

    /// Unix milliseconds rounded down, as a reply integer.
    pub fn reply_ms_floor(self) -> i64 {
        clamp_reply(self.0 / 1000)
    }

    /// Rounds up to a multiple of `grid` (a zero grid leaves it as is).
    pub fn ceil_to(self, grid: Micros) -> Timestamp {
        match self.0.checked_rem(grid.0) {
            Some(0) | None => self,
            Some(r) => Timestamp(self.0.saturating_add(grid.0.saturating_sub(r))),
        }
    }
}

/// A count as a reply integer: at most [`REPLY_MAX`].
pub fn clamp_reply(v: u64) -> i64 {
    i64::try_from(v).map_or(REPLY_MAX, |v| v.min(REPLY_MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_clamps_backwards_clock_to_zero() {
        assert_eq!(Timestamp(5).since(Timestamp(9)), Micros::ZERO);
        assert_eq!(Timestamp(9).since(Timestamp(5)), Micros(4));
    }

    #[test]
    fn millis_round_up_and_down() {
        assert_eq!(Micros(0).as_millis_ceil(), 0);
        assert_eq!(Micros(1).as_millis_ceil(), 1);
        assert_eq!(Micros(1000).as_millis_ceil(), 1);
        assert_eq!(Micros(1001).as_millis_ceil(), 2);
        assert_eq!(Micros(1999).as_millis_floor(), 1);
        assert_eq!(Timestamp(1001).reply_ms_ceil(), 2);
        assert_eq!(Timestamp(1999).reply_ms_floor(), 1);
    }

    #[test]
    fn replies_never_exceed_53_bits() {
        assert_eq!(Micros::MAX.reply_ms_ceil(), REPLY_MAX);
        assert_eq!(clamp_reply(u64::MAX), REPLY_MAX);
        const { assert!(REPLY_MAX < (1 << 53) - 48) };
        const { assert!(NEVER_MS < REPLY_MAX) };
        // Everything the bounds allow is far below it.
        assert!(HORIZON.saturating_add(MAX_WAIT).as_millis_ceil() * 10 < REPLY_MAX as u64);
    }

    #[test]
    fn the_latest_clock_keeps_every_derived_instant_before_never() {
        let latest = Timestamp::LATEST
            .saturating_add(HORIZON)
            .saturating_add(MAX_WAIT);
        assert!(latest.reply_ms_ceil() < NEVER_MS);
        // Year 9967 or so: far beyond any real clock.
        assert!(Timestamp::LATEST.as_secs_floor() > 250_000_000_000);
    }

    #[test]
    fn arithmetic_saturates() {
        assert_eq!(Micros::MAX.saturating_add(Micros(1)), Micros::MAX);
        assert_eq!(Micros(1).saturating_sub(Micros(2)), Micros::ZERO);
        assert_eq!(Micros::from_millis(u64::MAX), Micros::MAX);
        assert_eq!(Timestamp(1).saturating_sub(Micros(2)), Timestamp::ZERO);
        assert_eq!(
            Timestamp(u64::MAX).saturating_add(Micros(1)),
            Timestamp(u64::MAX)
        );
    }

    #[test]
    fn ceil_to_a_grid() {
        assert_eq!(Timestamp(0).ceil_to(Micros(1000)), Timestamp(0));
        assert_eq!(Timestamp(1).ceil_to(Micros(1000)), Timestamp(1000));
        assert_eq!(Timestamp(1000).ceil_to(Micros(1000)), Timestamp(1000));
        assert_eq!(Timestamp(7).ceil_to(Micros::ZERO), Timestamp(7));
        assert_eq!(Timestamp(u64::MAX).ceil_to(Micros(10)), Timestamp(u64::MAX));
    }
}
