//! Pure rate-limit arithmetic for the `redis-throttle` module.
//!
//! Nothing here knows about Redis, reads a clock or does I/O: time is a
//! parameter ([`time::Micros`]), all state is integers, and every function
//! is total (no panics, no overflow; checked or saturating arithmetic).
//!
//! - [`time`]: integer time, and the bounds on every stored or armed time;
//! - [`decimal`]: exact decimal text → fixed point;
//! - [`rate`]: what a limit is (an exact rate and a capacity) and the
//!   argument forms that give one (LimitLion's, redis-cell's);
//! - [`bucket`]: the token bucket decision (GCRA, exact units);
//! - [`limiter`]: a THROTTLE key's value (bucket and knobs), and the
//!   decisions the commands ask of it;
//! - [`permit`]: the minimum-interval permit schedule;
//! - [`cell`]: redis-cell's reply arithmetic (whole seconds, its rounding);
//! - [`codec`]: versioned encoding of stored values.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects
    )
)]

pub mod bucket;
pub mod cell;
pub mod codec;
pub mod decimal;
pub mod limiter;
pub mod limitlion;
pub mod permit;
pub mod rate;
pub mod time;

pub use time::Micros;
