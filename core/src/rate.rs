//! What a limit is: an exact rate and a capacity ([`Limit`], the one limit
//! type), and the two argument forms that produce one:
//!
//! - LimitLion's `rps burst window` ([`LimitLion`]), where `rps` may also be
//!   one of the two switches (0 denies every call, -1 allows every call),
//!   so it yields a [`Policy`] rather than always a bucket;
//! - redis-cell's `max_burst count_per_period period` ([`cell_limit`]).
//!
//! Invariants of a [`Rate`]: `num` tokens per `den` seconds, reduced (no
//! common factor), both in `1..=u32::MAX`. Invariants of a [`Limit`]: the
//! capacity is in `1..=MAX_CAPACITY`, and refilling it from empty takes at
//! most [`HORIZON`]. Those bounds are what keep every stored time, every
//! duration and every reply small (see `crate::time`), and the bucket's
//! arithmetic (`crate::bucket`) inside 96 bits.
//!
//! Arithmetic is exact: a rate is a ratio of integers, never a float, so
//! "7 per 3 seconds" stays exactly that for ever.

use std::num::{NonZeroU32, NonZeroU64};

use crate::time::{HORIZON, Micros};

/// 10^9: LimitLion parameters are given with up to 9 decimals.
pub const NANO: u64 = 1_000_000_000;
/// Largest rate: 10^9 tokens per second.
pub const MAX_RPS_NANO: u64 = 1_000_000_000 * NANO;
/// Most significant digits an `rps` may have (so its exact fraction fits).
pub const MAX_RPS_DIGITS: u32 = 9;
/// Largest burst multiplier: 10^9.
pub const MAX_BURST_NANO: u64 = 1_000_000_000 * NANO;
/// Largest window: 10^9 seconds (about 31.7 years).
pub const MAX_WINDOW_NS: u64 = 1_000_000_000 * NANO;
/// Largest capacity: 10^15 tokens.
pub const MAX_CAPACITY: u64 = 1_000_000_000_000_000;
/// Microseconds per second: one token is `den × US` bucket units.
const US: u128 = 1_000_000;

/// Why parameters were refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitError {
    /// rps is not in (0, 1e9], and is not one of the switches 0 or -1.
    Rps,
    /// rps has more than [`MAX_RPS_DIGITS`] significant digits.
    RpsDigits,
    /// burst is not in (0, 1e9].
    Burst,
    /// window is not in (0, 1e9] seconds.
    Window,
    /// The capacity exceeds [`MAX_CAPACITY`] tokens.
    Capacity,
    /// Refilling the bucket from empty would take longer than [`HORIZON`].
    Refill,
    /// redis-cell's `max_burst` is negative or too large.
    MaxBurst,
    /// redis-cell's `count_per_period` is not in `1..=u32::MAX` once reduced.
    Count,
    /// redis-cell's `period` is not in `1..=u32::MAX` seconds once reduced.
    Period,
}

/// An exact rate: `num` tokens per `den` seconds, reduced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rate {
    num: NonZeroU32,
    den: NonZeroU32,
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a.checked_rem(b).unwrap_or(0));
    }
    a
}

impl Rate {
    /// `num` tokens per `den` seconds, reduced; `None` unless both are
    /// positive and fit 32 bits once reduced.
    pub fn new(num: u64, den: u64) -> Option<Rate> {
        let g = gcd(num, den);
        let num = NonZeroU32::new(u32::try_from(num.checked_div(g)?).ok()?)?;
        let den = NonZeroU32::new(u32::try_from(den.checked_div(g)?).ok()?)?;
        Some(Rate { num, den })
    }

    /// A rate given in nano-tokens per second (`rps` with 9 decimals).
    pub fn from_nano(rps_nano: u64) -> Result<Rate, LimitError> {
        if rps_nano == 0 || rps_nano > MAX_RPS_NANO {
            return Err(LimitError::Rps);
        }
        let mut digits = rps_nano;
        while digits.is_multiple_of(10) {
            digits /= 10;
        }
        if digits >= 10u64.pow(MAX_RPS_DIGITS) {
            return Err(LimitError::RpsDigits);
        }
        Rate::new(rps_nano, NANO).ok_or(LimitError::RpsDigits)
    }

    pub fn num(self) -> u32 {
        self.num.get()
    }

    pub fn den(self) -> u32 {
        self.den.get()
    }

    /// Bucket units that accrue per microsecond (the bucket counts in units
    /// of `1 / (den × 10^6)` token, so a microsecond accrues exactly `num`).
    pub fn units_per_us(self) -> u128 {
        u128::from(self.num.get())
    }

    /// Bucket units in one token.
    pub fn units_per_token(self) -> u128 {
        u128::from(self.den.get()).saturating_mul(US)
    }

    /// How long `units` take to accrue, rounded up to whole microseconds.
    pub fn time_for(self, units: u128) -> Micros {
        let us = div_ceil(units, self.units_per_us());
        Micros(u64::try_from(us).unwrap_or(u64::MAX))
    }

    /// Nano-tokens per second when that is a whole number.
    pub fn as_nano(self) -> Option<u64> {
        let (num, den) = (u64::from(self.num.get()), u64::from(self.den.get()));
        let n = num.checked_mul(NANO)?;
        (n.checked_rem(den)? == 0)
            .then(|| n.checked_div(den))
            .flatten()
    }

    /// The rate as text: an exact decimal when it is one with at most 9
    /// decimals ("5", "0.25"), else the fraction ("7/3").
    pub fn text(self) -> String {
        match self.as_nano() {
            Some(nano) => crate::decimal::format(false, u128::from(nano), 9),
            None => format!("{}/{}", self.num.get(), self.den.get()),
        }
    }
}

/// `n / d` rounded down (0 when `d` is 0). What a bucket holds or lacks
/// fits in 64 bits on almost every call: then it is one 64-bit division,
/// not the 128-bit routine.
pub fn div_floor(n: u128, d: u128) -> u128 {
    match (u64::try_from(n), u64::try_from(d)) {
        (Ok(n), Ok(d)) => u128::from(n.checked_div(d).unwrap_or(0)),
        _ => n.checked_div(d).unwrap_or(0),
    }
}

/// `n / d` rounded up (`d` below 1 counts as 1), as [`div_floor`].
pub fn div_ceil(n: u128, d: u128) -> u128 {
    match (u64::try_from(n), u64::try_from(d)) {
        (Ok(n), Ok(d)) => u128::from(n.div_ceil(d.max(1))),
        _ => n.div_ceil(d.max(1)),
    }
}

/// A token bucket: a rate and a capacity, both validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Limit {
    rate: Rate,
    capacity: NonZeroU64,
}

impl Limit {
    /// Validates the capacity (`1..=MAX_CAPACITY`) and the refill time.
    pub fn new(rate: Rate, capacity: u64) -> Result<Limit, LimitError> {
        let capacity = NonZeroU64::new(capacity)
            .filter(|c| c.get() <= MAX_CAPACITY)
            .ok_or(LimitError::Capacity)?;
        let limit = Limit { rate, capacity };
        if limit.refill_time() > HORIZON {
            return Err(LimitError::Refill);
        }
        Ok(limit)
    }

    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Whole tokens, `1..=MAX_CAPACITY`.
    pub fn capacity(&self) -> u64 {
        self.capacity.get()
    }

    /// The capacity in bucket units.
    pub fn capacity_units(&self) -> u128 {
        u128::from(self.capacity.get()).saturating_mul(self.rate.units_per_token())
    }

    /// From empty to full, rounded up (at most [`HORIZON`]).
    pub fn refill_time(&self) -> Micros {
        self.rate.time_for(self.capacity_units())
    }
}

/// LimitLion's `rps` argument: a rate, or one of its two switches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rps {
    /// `rps = 0`: every call is denied.
    Deny,
    /// `rps = -1`: every call is allowed.
    Allow,
    Rate(Rate),
}

impl Rps {
    /// From a signed count of nano-tokens per second.
    pub fn from_nano(negative: bool, rps_nano: u128) -> Result<Rps, LimitError> {
        match (negative, rps_nano) {
            (_, 0) => Ok(Rps::Deny),
            (true, n) if n == u128::from(NANO) => Ok(Rps::Allow),
            (true, _) => Err(LimitError::Rps),
            (false, n) => {
                let n = u64::try_from(n).map_err(|_| LimitError::Rps)?;
                Rate::from_nano(n).map(Rps::Rate)
            }
        }
    }

    pub fn text(self) -> String {
        match self {
            Rps::Deny => "0".into(),
            Rps::Allow => "-1".into(),
            Rps::Rate(r) => r.text(),
        }
    }
}

/// What a caller (or the knobs) asks for, in LimitLion's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LimitLion {
    pub rps: Rps,
    /// The burst multiplier in billionths, `1..=MAX_BURST_NANO`.
    pub burst_nano: u64,
    /// The window in nanoseconds, `1..=MAX_WINDOW_NS`.
    pub window_ns: u64,
}

/// What to enforce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// LimitLion's `rps 0`: deny every call; `window` is what it tells
    /// callers to wait.
    Deny {
        window: Micros,
    },
    /// LimitLion's `rps -1`: allow every call.
    Allow,
    Bucket(Limit),
}

impl LimitLion {
    /// Validates burst and window, and derives the bucket: capacity
    /// `max(1, ceil(rps × burst × window))`, exactly.
    pub fn policy(&self) -> Result<Policy, LimitError> {
        if !(1..=MAX_BURST_NANO).contains(&self.burst_nano) {
            return Err(LimitError::Burst);
        }
        if !(1..=MAX_WINDOW_NS).contains(&self.window_ns) {
            return Err(LimitError::Window);
        }
        match self.rps {
            Rps::Deny => Ok(Policy::Deny {
                window: Micros(self.window_ns.div_ceil(1000)),
            }),
            Rps::Allow => Ok(Policy::Allow),
            Rps::Rate(rate) => {
                let capacity = capacity(rate, self.burst_nano, self.window_ns)?;
                Limit::new(rate, capacity).map(Policy::Bucket)
            }
        }
    }
}

/// `max(1, ceil(num/den × burst_nano/10^9 × window_ns/10^9))`, exactly.
fn capacity(rate: Rate, burst_nano: u64, window_ns: u64) -> Result<u64, LimitError> {
    const E9: u128 = NANO as u128;
    // x = num × burst_nano ≤ 2^92; d = den × 10^9 ≤ 2^62.
    // tokens = x·w / (d·10^9) = (q·w + r·w/d) / 10^9 with x = q·d + r.
    let ceil = (|| {
        let x = u128::from(rate.num()).checked_mul(u128::from(burst_nano))?;
        let d = u128::from(rate.den()).checked_mul(E9)?;
        let w = u128::from(window_ns);
        let (q, r) = (x.checked_div(d)?, x.checked_rem(d)?);
        let (a, b) = (q.checked_mul(w)?, r.checked_mul(w)?);
        let (b1, b2) = (b.checked_div(d)?, b.checked_rem(d)?);
        let s = a.checked_add(b1)?;
        let exact = s.checked_rem(E9)? == 0 && b2 == 0;
        s.checked_div(E9)?.checked_add(u128::from(!exact))
    })()
    .ok_or(LimitError::Capacity)?;
    u64::try_from(ceil.max(1)).map_err(|_| LimitError::Capacity)
}

/// redis-cell's limit: capacity `max_burst + 1`, rate `count_per_period`
/// per `period` seconds, kept as an exact ratio.
pub fn cell_limit(max_burst: i64, count: i64, period_s: i64) -> Result<Limit, LimitError> {
    let capacity = u64::try_from(max_burst)
        .ok()
        .and_then(|b| b.checked_add(1))
        .filter(|&c| c <= MAX_CAPACITY)
        .ok_or(LimitError::MaxBurst)?;
    let count = u64::try_from(count)
        .ok()
        .filter(|&c| c > 0)
        .ok_or(LimitError::Count)?;
    let period = u64::try_from(period_s)
        .ok()
        .filter(|&p| p > 0)
        .ok_or(LimitError::Period)?;
    let g = gcd(count, period);
    if u32::try_from(count.checked_div(g).unwrap_or(count)).is_err() {
        return Err(LimitError::Count);
    }
    let rate = Rate::new(count, period).ok_or(LimitError::Period)?;
    Limit::new(rate, capacity)
}

#[cfg(test)]
mod tests {
    use super::*;

    const N: u64 = NANO;

    proptest::proptest! {
        #[test]
        fn the_64_bit_divisions_equal_the_128_bit_ones(
            n in proptest::prop_oneof![0u128..=u128::from(u64::MAX), proptest::num::u128::ANY],
            d in proptest::prop_oneof![0u128..=1_000_000_000_000_000, proptest::num::u128::ANY],
        ) {
            proptest::prop_assert_eq!(div_floor(n, d), n.checked_div(d).unwrap_or(0));
            proptest::prop_assert_eq!(div_ceil(n, d), n.div_ceil(d.max(1)));
        }
    }

    fn cap(rps: u64, burst: u64, window: u64) -> Result<u64, LimitError> {
        let ll = LimitLion {
            rps: Rps::Rate(Rate::from_nano(rps)?),
            burst_nano: burst,
            window_ns: window,
        };
        match ll.policy()? {
            Policy::Bucket(l) => Ok(l.capacity()),
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn rates_are_exact_reduced_fractions() {
        let r = Rate::from_nano(5 * N).unwrap();
        assert_eq!((r.num(), r.den()), (5, 1));
        let r = Rate::from_nano(N / 4).unwrap();
        assert_eq!((r.num(), r.den()), (1, 4));
        assert_eq!(r.text(), "0.25");
        let r = Rate::new(7, 3).unwrap();
        assert_eq!(r.text(), "7/3");
        assert_eq!(Rate::new(14, 6), Some(r));
        assert_eq!(Rate::new(0, 3), None);
        assert_eq!(Rate::new(1 << 32, 1), None);
        assert_eq!(Rate::from_nano(1).unwrap().text(), "0.000000001");
        assert_eq!(Rate::from_nano(MAX_RPS_NANO).unwrap().text(), "1000000000");
    }

    #[test]
    fn rps_bounds_and_digits() {
        assert_eq!(Rate::from_nano(0), Err(LimitError::Rps));
        assert_eq!(Rate::from_nano(MAX_RPS_NANO + 1), Err(LimitError::Rps));
        // 123456789 is 9 digits; 1234567891 is ten.
        assert!(Rate::from_nano(123_456_789 * N / 1000).is_ok());
        assert_eq!(
            Rate::from_nano(1_234_567_891 * N / 1000),
            Err(LimitError::RpsDigits)
        );
        assert_eq!(Rps::from_nano(true, u128::from(N)), Ok(Rps::Allow));
        assert_eq!(Rps::from_nano(true, 0), Ok(Rps::Deny));
        assert_eq!(
            Rps::from_nano(true, 2 * u128::from(N)),
            Err(LimitError::Rps)
        );
    }

    #[test]
    fn capacity_is_ceil_of_the_product() {
        assert_eq!(cap(5 * N, 2 * N, 8 * N), Ok(80));
        assert_eq!(cap(N / 3 + 1, N, N), Ok(1)); // 0.333… → 1
        assert_eq!(cap(N / 10_000, N, N), Ok(1)); // at least one token
        assert_eq!(cap(3 * N / 2, N, 3 * N), Ok(5)); // 4.5 → 5
        assert_eq!(cap(10 * N, 3 * N / 10, N), Ok(3)); // exactly 3, no float error
        assert_eq!(cap(1_000_000 * N, 2 * N, 8 * N), Ok(16_000_000));
    }

    #[test]
    fn limits_are_bounded() {
        assert_eq!(cap(N, 0, N), Err(LimitError::Burst));
        assert_eq!(cap(N, N, 0), Err(LimitError::Window));
        assert_eq!(cap(N, MAX_BURST_NANO + 1, N), Err(LimitError::Burst));
        assert_eq!(cap(N, N, MAX_WINDOW_NS + 1), Err(LimitError::Window));
        // 1e9 tokens/s for 1e6 s = 1e15 tokens: the largest capacity.
        assert_eq!(cap(MAX_RPS_NANO, N, 1_000_000 * N), Ok(MAX_CAPACITY));
        assert_eq!(
            cap(MAX_RPS_NANO, N, 1_000_001 * N),
            Err(LimitError::Capacity)
        );
        // One token per 1e9 s takes 31.7 years to refill: allowed; two
        // such tokens are not.
        assert!(cap(1, N, N).is_ok());
        assert_eq!(cap(1, 2 * N, 1_000_000_000 * N), Err(LimitError::Refill));
        assert_eq!(cap(N, 2 * N, 1_000_000_000 * N), Err(LimitError::Refill));
    }

    #[test]
    fn switches_have_no_bucket() {
        let ll = |rps| LimitLion {
            rps,
            burst_nano: N,
            window_ns: 8 * N,
        };
        assert_eq!(
            ll(Rps::Deny).policy(),
            Ok(Policy::Deny {
                window: Micros(8_000_000)
            })
        );
        assert_eq!(ll(Rps::Allow).policy(), Ok(Policy::Allow));
    }

    #[test]
    fn cell_limits() {
        let l = cell_limit(15, 30, 60).unwrap();
        assert_eq!(l.capacity(), 16);
        assert_eq!(l.rate(), Rate::new(1, 2).unwrap());
        let l = cell_limit(0, 7, 3).unwrap();
        assert_eq!((l.capacity(), l.rate().text()), (1, "7/3".to_string()));
        assert_eq!(cell_limit(-1, 1, 1), Err(LimitError::MaxBurst));
        assert_eq!(cell_limit(1, 0, 1), Err(LimitError::Count));
        assert_eq!(cell_limit(1, -5, 1), Err(LimitError::Count));
        assert_eq!(cell_limit(1, 1, 0), Err(LimitError::Period));
        assert_eq!(cell_limit(1, 1 << 40, 1), Err(LimitError::Count));
        assert_eq!(cell_limit(1, 1, 1 << 40), Err(LimitError::Period));
        // Reduced first: 2^33 per 2^33 s is one per second.
        assert_eq!(cell_limit(1, 1 << 33, 1 << 33).unwrap().rate().text(), "1");
        assert_eq!(cell_limit(i64::MAX, 1, 1), Err(LimitError::MaxBurst));
    }
}
