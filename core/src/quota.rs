//! What a token-bucket limit is: validated parameters.
//!
//! Parameters use LimitLion's vocabulary, held exactly in integers:
//! `rps` (tokens per second) in nano-tokens per second, `burst` (a
//! multiplier) in billionths, `window` in nanoseconds. The bucket's
//! capacity ("limit") is `max(1, ceil(rps × burst × window))` tokens.
//!
//! Invariants of a [`Quota`]: every parameter is within its range below and
//! the capacity is in `1..=MAX_CAPACITY`, so the bucket arithmetic in
//! femto-tokens (see [`crate::bucket`]) can never overflow.

use crate::time::Micros;

/// 10^9: parameters are stored in billionths.
pub const NANO: u64 = 1_000_000_000;
/// Largest rate: 10^10 tokens per second.
pub const MAX_RPS_NANO: u64 = 10_000_000_000 * NANO;
/// Largest burst multiplier: 10^9.
pub const MAX_BURST_NANO: u64 = 1_000_000_000 * NANO;
/// Largest window: 10^9 seconds (about 31 years).
pub const MAX_WINDOW_NS: u64 = 1_000_000_000 * NANO;
/// Largest capacity: 10^15 tokens.
pub const MAX_CAPACITY: u64 = 1_000_000_000_000_000;

/// Why parameters were refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuotaError {
    /// rps is not in (0, 1e10], and is not one of the switches 0 or -1.
    Rps,
    /// burst is not in (0, 1e9].
    Burst,
    /// window is not in (0, 1e9] seconds.
    Window,
    /// rps × burst × window exceeds [`MAX_CAPACITY`] tokens.
    Capacity,
}

/// The `rps` argument: a rate, or one of LimitLion's two switches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rate {
    /// `rps = 0`: every call is denied.
    DenyAll,
    /// `rps = -1`: every call is allowed.
    AllowAll,
    /// A rate in nano-tokens per second, `1..=MAX_RPS_NANO`.
    PerSecond(u64),
}

impl Rate {
    /// Builds a rate from a signed count of nano-tokens per second.
    pub fn from_nano(negative: bool, rps_nano: u128) -> Result<Rate, QuotaError> {
        match (negative, rps_nano) {
            (_, 0) => Ok(Rate::DenyAll),
            (true, n) if n == u128::from(NANO) => Ok(Rate::AllowAll),
            (true, _) => Err(QuotaError::Rps),
            (false, n) => match u64::try_from(n) {
                Ok(n) if n <= MAX_RPS_NANO => Ok(Rate::PerSecond(n)),
                _ => Err(QuotaError::Rps),
            },
        }
    }
}

/// Validated limit parameters: a rate (or switch), burst and window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    pub rate: Rate,
    pub burst_nano: u64,
    pub window_ns: u64,
    /// `max(1, ceil(rps × burst × window))`; 0 for the two switches.
    pub capacity: u64,
}

/// A token bucket's rate and capacity, both validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    /// Nano-tokens per second, which is also femto-tokens per microsecond.
    pub rps_nano: u64,
    /// Whole tokens, `1..=MAX_CAPACITY`.
    pub capacity: u64,
}

impl Limit {
    /// Validates parameters given in billionths (burst) and nanoseconds (window).
    pub fn new(rate: Rate, burst_nano: u128, window_ns: u128) -> Result<Limit, QuotaError> {
        let burst_nano = match u64::try_from(burst_nano) {
            Ok(b) if (1..=MAX_BURST_NANO).contains(&b) => b,
            _ => return Err(QuotaError::Burst),
        };
        let window_ns = match u64::try_from(window_ns) {
            Ok(w) if (1..=MAX_WINDOW_NS).contains(&w) => w,
            _ => return Err(QuotaError::Window),
        };
        let capacity = match rate {
            Rate::PerSecond(rps_nano) => capacity(rps_nano, burst_nano, window_ns)?,
            Rate::DenyAll | Rate::AllowAll => 0,
        };
        Ok(Limit {
            rate,
            burst_nano,
            window_ns,
            capacity,
        })
    }

    /// The bucket behind this limit, or `None` for the switches.
    pub fn quota(&self) -> Option<Quota> {
        match self.rate {
            Rate::PerSecond(rps_nano) => Some(Quota {
                rps_nano,
                capacity: self.capacity,
            }),
            Rate::DenyAll | Rate::AllowAll => None,
        }
    }

    /// The window as a duration, rounded up to whole microseconds.
    pub fn window(&self) -> Micros {
        Micros(self.window_ns.div_ceil(1000))
    }
}

/// `max(1, ceil(rps_nano × burst_nano × window_ns / 10^27))`, exactly.
fn capacity(rps_nano: u64, burst_nano: u64, window_ns: u64) -> Result<u64, QuotaError> {
    const E9: u128 = 1_000_000_000;
    const E18: u128 = E9 * E9;
    const E27: u128 = E18 * E9;
    // rps × burst fits: both are at most ~1.8e19.
    // None of these can fail within the parameter ranges; checked anyway.
    let ceil = (|| {
        let x = u128::from(rps_nano).checked_mul(u128::from(burst_nano))?;
        let (q, m) = (x.checked_div(E18)?, x.checked_rem(E18)?);
        let w = u128::from(window_ns);
        // x·w = q·w·10^18 + m·w, so x·w / 10^27 = q·w / 10^9 + m·w / 10^27.
        let a = q.checked_mul(w)?;
        let low = a
            .checked_rem(E9)?
            .checked_mul(E18)?
            .checked_add(m.checked_mul(w)?)?;
        let floor = a.checked_div(E9)?.checked_add(low.checked_div(E27)?)?;
        floor.checked_add(u128::from(low.checked_rem(E27)? != 0))
    })()
    .ok_or(QuotaError::Capacity)?;
    match u64::try_from(ceil.max(1)) {
        Ok(c) if c <= MAX_CAPACITY => Ok(c),
        _ => Err(QuotaError::Capacity),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const N: u128 = NANO as u128;

    fn cap(rps: u128, burst: u128, window: u128) -> Result<u64, QuotaError> {
        Limit::new(Rate::from_nano(false, rps)?, burst, window).map(|l| l.capacity)
    }

    #[test]
    fn capacity_is_ceil_of_the_product() {
        assert_eq!(cap(5 * N, 2 * N, 8 * N), Ok(80));
        assert_eq!(cap(N / 3, N, N), Ok(1)); // 0.333… → 1
        assert_eq!(cap(N / 10_000, N, N), Ok(1)); // at least one token
        assert_eq!(cap(3 * N / 2, N, 3 * N), Ok(5)); // 4.5 → 5
        assert_eq!(cap(10 * N, 3 * N / 10, N), Ok(3)); // exactly 3, no float error
        assert_eq!(cap(1_000_000_000 * N, 2 * N, 8 * N), Ok(16_000_000_000));
    }

    #[test]
    fn capacity_overflow_is_an_error_not_a_wrap() {
        let max = u128::from(u64::MAX);
        assert_eq!(
            cap(
                u128::from(MAX_RPS_NANO),
                u128::from(MAX_BURST_NANO),
                u128::from(MAX_WINDOW_NS)
            ),
            Err(QuotaError::Capacity)
        );
        assert_eq!(cap(max, N, N), Err(QuotaError::Rps));
        assert_eq!(cap(N, max, N), Err(QuotaError::Burst));
        assert_eq!(cap(N, N, max), Err(QuotaError::Window));
        assert_eq!(cap(N, 0, N), Err(QuotaError::Burst));
        assert_eq!(cap(N, N, 0), Err(QuotaError::Window));
        assert_eq!(
            cap(1_000 * N, 1_000_000 * N, 1_000_000 * N),
            Ok(MAX_CAPACITY)
        );
        assert_eq!(
            cap(1_000 * N, 1_000_000 * N, 1_000_001 * N),
            Err(QuotaError::Capacity)
        );
    }

    #[test]
    fn switches() {
        assert_eq!(Rate::from_nano(false, 0), Ok(Rate::DenyAll));
        assert_eq!(Rate::from_nano(true, 0), Ok(Rate::DenyAll));
        assert_eq!(Rate::from_nano(true, N), Ok(Rate::AllowAll));
        assert_eq!(Rate::from_nano(true, 2 * N), Err(QuotaError::Rps));
        assert_eq!(Rate::from_nano(true, 1), Err(QuotaError::Rps));
        let l = Limit::new(Rate::DenyAll, N, 8 * N).unwrap();
        assert_eq!((l.capacity, l.quota()), (0, None));
        assert_eq!(l.window(), Micros(8_000_000));
    }
}
