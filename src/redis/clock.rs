//! The module's clock, read once per command.
//!
//! Wall-clock microseconds since the Unix epoch: where the server offers
//! it (Redis 7.2+, Valkey), `RedisModule_Microseconds`, the server's own
//! `ustime()`; on Redis 7.0, whose module API has only milliseconds, the
//! host's wall clock read inside the server process (`clock_gettime
//! (CLOCK_REALTIME)`, what `TIME` reads). Stored state and replication use
//! this clock: absolute times survive restarts and failovers, and replicas
//! never read it (they receive absolute state). Waiting is measured on the
//! monotonic clock instead (see `blocking`), so a wall-clock step never
//! releases a held client early or holds it past its timeout.
//!
//! The test clock (loaded with `test-clock yes`): `THROTTLE.CLOCK FREEZE`
//! makes [`now`] return a fixed instant, for every command of the module on
//! this server, until `REAL`. Key expiry is the server's, on its real clock:
//! [`to_server`] maps a module instant to the server's.

use std::sync::atomic::{AtomicI64, Ordering::Relaxed};
use std::time::{SystemTime, UNIX_EPOCH};

use throttle_core::Timestamp;

use super::ffi;

/// The frozen instant in µs, or -1 when the clock is real.
static FROZEN_US: AtomicI64 = AtomicI64::new(-1);

/// Microseconds since the Unix epoch, as the module's commands see them
/// (never later than [`Timestamp::LATEST`]).
pub fn now() -> Timestamp {
    let frozen = FROZEN_US.load(Relaxed);
    match u64::try_from(frozen) {
        Ok(us) => Timestamp(us),
        Err(_) => real(),
    }
}

/// The server's wall clock, whatever the test clock says.
pub fn real() -> Timestamp {
    let us = match ffi::server_micros() {
        Some(us) => u64::try_from(us).unwrap_or(0),
        None => {
            let us = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_micros())
                .unwrap_or(0);
            u64::try_from(us).unwrap_or(u64::MAX)
        }
    };
    Timestamp(us).min(Timestamp::LATEST)
}

/// Which clock [`real`] reads: `server-us` (`RedisModule_Microseconds`) or
/// `host` (the process's wall clock, Redis 7.0).
pub fn source() -> &'static str {
    if ffi::has_server_micros() {
        "server-us"
    } else {
        "host"
    }
}

/// A module instant `at`, seen from module time `now`, on the server's
/// real clock (where key expiry runs): `at` itself unless the clock is frozen.
pub fn to_server(at: Timestamp, now: Timestamp) -> Timestamp {
    if FROZEN_US.load(Relaxed) < 0 {
        return at;
    }
    let real = real();
    if at >= now {
        real.saturating_add(at.since(now))
    } else {
        real.saturating_sub(now.since(at))
    }
}

/// Freezes the clock at `at` (at most [`Timestamp::LATEST`]).
pub fn freeze(at: Timestamp) {
    let at = at.min(Timestamp::LATEST);
    FROZEN_US.store(i64::try_from(at.0).unwrap_or(i64::MAX), Relaxed);
}

/// Moves the clock `by` ahead, freezing it first if it runs; returns the
/// new instant (at most [`Timestamp::LATEST`]).
pub fn advance(by: throttle_core::Micros) -> Timestamp {
    let at = now().saturating_add(by).min(Timestamp::LATEST);
    freeze(at);
    at
}

/// Back to the real clock.
pub fn unfreeze() {
    FROZEN_US.store(-1, Relaxed);
}

/// Whether the clock is frozen.
pub fn is_frozen() -> bool {
    FROZEN_US.load(Relaxed) >= 0
}
