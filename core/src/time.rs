//! Integer time.
//!
//! [`Micros`] is a count of microseconds. It is used both for instants
//! (microseconds since the Unix epoch, on the Redis server's wall clock) and
//! for durations; names say which (`now`, `updated_at`, `wait`, `retry_after`).
//! All arithmetic saturates: time never wraps, and a clock that steps
//! backwards produces an elapsed time of zero, never a negative one.

/// Microseconds: an instant since the Unix epoch, or a duration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Micros(pub u64);

impl Micros {
    pub const ZERO: Micros = Micros(0);
    pub const MAX: Micros = Micros(u64::MAX);

    pub const fn from_millis(ms: u64) -> Micros {
        Micros(ms.saturating_mul(1000))
    }

    /// Elapsed time from `earlier` to `self`; zero when the clock went backwards.
    pub const fn since(self, earlier: Micros) -> Micros {
        Micros(self.0.saturating_sub(earlier.0))
    }

    pub const fn saturating_add(self, d: Micros) -> Micros {
        Micros(self.0.saturating_add(d.0))
    }

    pub const fn saturating_sub(self, d: Micros) -> Micros {
        Micros(self.0.saturating_sub(d.0))
    }

    /// Whole milliseconds, rounded up (a wait of 1 µs is 1 ms: never early).
    pub const fn as_millis_ceil(self) -> u64 {
        self.0.div_ceil(1000)
    }

    /// Whole milliseconds, rounded down.
    pub const fn as_millis_floor(self) -> u64 {
        self.0 / 1000
    }

    /// Milliseconds rounded up, as the `i64` Redis replies with (saturating).
    pub fn as_millis_ceil_i64(self) -> i64 {
        i64::try_from(self.as_millis_ceil()).unwrap_or(i64::MAX)
    }

    /// Milliseconds rounded down, as an `i64` (saturating).
    pub fn as_millis_floor_i64(self) -> i64 {
        i64::try_from(self.as_millis_floor()).unwrap_or(i64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_clamps_backwards_clock_to_zero() {
        assert_eq!(Micros(5).since(Micros(9)), Micros::ZERO);
        assert_eq!(Micros(9).since(Micros(5)), Micros(4));
    }

    #[test]
    fn millis_round_up_and_down() {
        assert_eq!(Micros(0).as_millis_ceil(), 0);
        assert_eq!(Micros(1).as_millis_ceil(), 1);
        assert_eq!(Micros(1000).as_millis_ceil(), 1);
        assert_eq!(Micros(1001).as_millis_ceil(), 2);
        assert_eq!(Micros(1999).as_millis_floor(), 1);
        assert_eq!(Micros::MAX.as_millis_ceil_i64(), 18_446_744_073_709_552);
    }

    #[test]
    fn arithmetic_saturates() {
        assert_eq!(Micros::MAX.saturating_add(Micros(1)), Micros::MAX);
        assert_eq!(Micros(1).saturating_sub(Micros(2)), Micros::ZERO);
        assert_eq!(Micros::from_millis(u64::MAX), Micros::MAX);
    }
}
