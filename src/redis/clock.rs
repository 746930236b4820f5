//! The server clock, read once per command.
//!
//! Microseconds of wall-clock time since the Unix epoch. Where the server
//! offers it (Redis 7.2+, Valkey), this is `RedisModule_Microseconds`, the
//! server's own `ustime()`. Redis 7.0's module API has only milliseconds,
//! so there the module reads the host's wall clock itself
//! (`clock_gettime(CLOCK_REALTIME)`, what the server's `TIME` reads: the
//! module runs inside the redis-server process): microsecond resolution on
//! every version. Replicas and AOF replays never read it: they receive
//! absolute state.

use std::time::{SystemTime, UNIX_EPOCH};

use redis_module::raw;
use throttle_core::Micros;

/// Microseconds since the Unix epoch. A clock set before 1970 reads as 0.
pub fn now() -> Micros {
    // Filled in by RedisModule_Init before any command can run; `None` on
    // servers without the API (Redis 7.0).
    if let Some(server_us) = unsafe { raw::RedisModule_Microseconds } {
        let us = unsafe { server_us() };
        return Micros(u64::try_from(us).unwrap_or(0));
    }
    let us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    Micros(u64::try_from(us).unwrap_or(u64::MAX))
}
