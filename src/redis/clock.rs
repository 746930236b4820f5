//! The server clock, read once per command.
//!
//! The module runs inside the redis-server process, so the host's wall
//! clock (`clock_gettime(CLOCK_REALTIME)`, what Redis's own TIME reads) is
//! the server clock, with microsecond resolution on every server version
//! (Redis 7.0 offers only milliseconds through its module API). Replicas
//! and AOF replays never read it: they receive absolute state.

use std::time::{SystemTime, UNIX_EPOCH};

use throttle_core::Micros;

/// Microseconds since the Unix epoch. A clock set before 1970 reads as 0.
pub fn now() -> Micros {
    let us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    Micros(u64::try_from(us).unwrap_or(u64::MAX))
}
