//! Pure rate-limit arithmetic for the `redis-throttle` module.
//!
//! Nothing here knows about Redis, reads a clock or does I/O: time is a
//! parameter ([`time::Timestamp`], [`time::Micros`]), all state is
//! integers, and every function is total (no panics, no overflow; checked
//! or saturating arithmetic).
//!
//! Every limiter has one shape ([`step`]): a state type, a rule, and a
//! decision `decide(Option<&S>, now, &rule, request) -> Step<S, Answer>`
//! saying what to write and what to answer.
//!
//! - [`time`]: instants and durations, and the bounds on every stored or
//!   armed time;
//! - [`step`]: the shape ([`step::Step`], [`step::Write`], [`step::State`]);
//! - [`decimal`]: exact decimal text → fixed point;
//! - [`rate`]: what a limit is (an exact rate and a capacity) and the
//!   argument forms that give one (LimitLion's, redis-cell's);
//! - [`bucket`]: the token bucket arithmetic (GCRA, exact units);
//! - [`throttle`]: a THROTTLE key's state (bucket and knobs), the
//!   decisions of the THROTTLE family, its codec;
//! - [`permit`]: the minimum-interval permit schedule, its settings, its codec;
//! - [`cell`]: redis-cell's contract on the bucket (its keys, its replies);
//! - [`lease`]: leases, a concurrency limit with expiry and FIFO waiting;
//! - [`limitlion`]: LimitLion's `throttle.lua`, in its own floating point;
//! - [`codec`]: the encoding primitives (compact layouts stored, fixed-width
//!   ones replicated); [`fixed`]: the fixed-width layouts.
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
pub mod fixed;
pub mod lease;
pub mod limitlion;
pub mod permit;
pub mod rate;
pub mod step;
pub mod throttle;
pub mod time;

pub use step::{State, Step, Write};
pub use time::{Micros, Timestamp};
