//! Counters since the module was loaded, shown by `INFO throttle`.

use std::sync::atomic::AtomicU64;

#[derive(Default)]
pub struct Stats {
    pub throttle_calls: AtomicU64,
    pub throttle_allowed: AtomicU64,
    pub throttle_denied: AtomicU64,
    pub tokens_consumed: AtomicU64,
    pub permit_calls: AtomicU64,
    pub permit_immediate: AtomicU64,
    pub permit_reserved: AtomicU64,
    pub permit_refused: AtomicU64,
    pub blocked_total: AtomicU64,
    pub released: AtomicU64,
    pub timed_out: AtomicU64,
}

pub static STATS: Stats = Stats {
    throttle_calls: AtomicU64::new(0),
    throttle_allowed: AtomicU64::new(0),
    throttle_denied: AtomicU64::new(0),
    tokens_consumed: AtomicU64::new(0),
    permit_calls: AtomicU64::new(0),
    permit_immediate: AtomicU64::new(0),
    permit_reserved: AtomicU64::new(0),
    permit_refused: AtomicU64::new(0),
    blocked_total: AtomicU64::new(0),
    released: AtomicU64::new(0),
    timed_out: AtomicU64::new(0),
};

/// Values alive in memory, by type (all databases).
pub struct Keys {
    pub buckets: AtomicU64,
    pub permits: AtomicU64,
}

pub static KEYS: Keys = Keys {
    buckets: AtomicU64::new(0),
    permits: AtomicU64::new(0),
};
