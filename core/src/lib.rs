//! Pure rate-limit arithmetic for the `redis-throttle` module.
//!
//! Nothing here knows about Redis, reads a clock or does I/O: time is a
//! parameter ([`time::Micros`]), all state is integers, and every function
//! is total (no panics, no overflow; checked or saturating arithmetic).
//!
//! - [`decimal`]: exact decimal text → fixed point;
//! - [`quota`]: validated limit parameters and the bucket capacity;
//! - [`bucket`]: the token bucket decision;
//! - [`limiter`]: a THROTTLE key's value (bucket, last parameters, knobs);
//! - [`permit`]: the minimum-interval permit schedule;
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
pub mod codec;
pub mod decimal;
pub mod limiter;
pub mod permit;
pub mod quota;
pub mod time;

pub use time::Micros;
