//! Nanoseconds per decision, without a server: the arithmetic of the hot
//! path, so a regression in the core shows up here before it shows up in
//! `scripts/bench.sh`.
//!
//! ```text
//! cargo bench -p throttle-core --bench decide            # all
//! cargo bench -p throttle-core --bench decide -- bucket  # a filter
//! ```
//!
//! Every input is what the Redis layer sees for the benchmark's commands
//! (`THROTTLE key 0.01 1000 100000 1`, `PERMIT key 1000 1000000`, …).

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use throttle_core::Micros;
use throttle_core::bucket::{self, Bucket, FEMTO};
use throttle_core::codec::{self, MAX_LIMITER_LEN};
use throttle_core::decimal;
use throttle_core::limiter::{self, Limiter};
use throttle_core::permit::{self, PermitRule, PermitState};
use throttle_core::quota::{Limit, Quota, Rate};

/// An instant in 2026, in µs since the epoch.
const NOW: Micros = Micros(1_790_000_000_000_000);

/// What the Redis layer does with `rps burst window`: three exact decimals
/// and a validated limit (capacity = ceil(rps × burst × window)).
fn parse_limit(rps: &[u8], burst: &[u8], window: &[u8]) -> Option<Limit> {
    let r = decimal::parse(rps, 9).ok()?;
    let rate = Rate::from_nano(r.negative, r.units).ok()?;
    let b = decimal::parse(burst, 9).ok()?;
    let w = decimal::parse(window, 9).ok()?;
    Limit::new(rate, b.units, w.units).ok()
}

fn limit(rps: &str, burst: &str, window: &str) -> Limit {
    parse_limit(rps.as_bytes(), burst.as_bytes(), window.as_bytes()).expect("valid limit")
}

fn parsing(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    for text in ["1", "0.01", "100000", "2.5", "0.0001", "1e9"] {
        g.bench_function(format!("decimal {text}"), |b| {
            b.iter(|| decimal::parse(black_box(text.as_bytes()), 9))
        });
    }
    g.bench_function("limit 0.01 1000 100000", |b| {
        b.iter(|| parse_limit(black_box(b"0.01"), black_box(b"1000"), black_box(b"100000")))
    });
    g.bench_function("limit 5 2 8", |b| {
        b.iter(|| parse_limit(black_box(b"5"), black_box(b"2"), black_box(b"8")))
    });
    g.finish();
}

fn buckets(c: &mut Criterion) {
    let mut g = c.benchmark_group("bucket::decide");
    let quota = limit("0.01", "1000", "100000")
        .quota()
        .expect("a rate, not a switch");
    let half = Bucket {
        level: i128::from(quota.capacity / 2) * FEMTO,
        updated_at: NOW.saturating_sub(Micros(1_000)),
    };
    let empty = Bucket {
        level: 0,
        updated_at: NOW,
    };
    g.bench_function("missing key (full)", |b| {
        b.iter(|| bucket::decide(None, black_box(NOW), black_box(&quota), 1, Micros::ZERO))
    });
    g.bench_function("allowed", |b| {
        b.iter(|| {
            bucket::decide(
                Some(black_box(&half)),
                black_box(NOW),
                &quota,
                1,
                Micros::ZERO,
            )
        })
    });
    g.bench_function("denied", |b| {
        b.iter(|| {
            bucket::decide(
                Some(black_box(&empty)),
                black_box(NOW),
                &quota,
                1,
                Micros::ZERO,
            )
        })
    });
    let hot = Quota {
        rps_nano: 100_000 * 1_000_000_000,
        capacity: 100_000,
    };
    g.bench_function("hot 100000/s, allowed", |b| {
        b.iter(|| {
            bucket::decide(
                Some(black_box(&half)),
                black_box(NOW),
                &hot,
                1,
                Micros::ZERO,
            )
        })
    });
    g.finish();
}

fn limiters(c: &mut Criterion) {
    let mut g = c.benchmark_group("limiter::throttle");
    let caller = limit("0.01", "1000", "100000");
    let quota = caller.quota().expect("a rate");
    let stored = Limiter {
        bucket: Bucket {
            level: i128::from(quota.capacity - 10) * FEMTO,
            updated_at: NOW.saturating_sub(Micros(250_000)),
        },
        params: caller.params(),
        knobs: None,
    };
    g.bench_function("missing key", |b| {
        b.iter(|| limiter::throttle(None, black_box(NOW), black_box(&caller), 1, Micros::ZERO))
    });
    g.bench_function("existing key, allowed", |b| {
        b.iter(|| {
            limiter::throttle(
                Some(black_box(&stored)),
                black_box(NOW),
                black_box(&caller),
                1,
                Micros::ZERO,
            )
        })
    });
    g.bench_function("parse + decide (THROTTLE's core work)", |b| {
        b.iter(|| {
            let l = parse_limit(black_box(b"0.01"), black_box(b"1000"), black_box(b"100000"))?;
            limiter::throttle(Some(black_box(&stored)), NOW, &l, 1, Micros::ZERO).ok()
        })
    });
    g.finish();
}

fn permits(c: &mut Criterion) {
    let mut g = c.benchmark_group("permit::decide");
    let interval = Micros::from_millis(1000);
    let rule = PermitRule {
        interval,
        max_waiting: 1_000_000,
        grace: PermitRule::default_grace(interval),
    };
    let queued = PermitState {
        last_valid_at: NOW.saturating_add(Micros::from_millis(20_000)),
    };
    let old = PermitState {
        last_valid_at: NOW.saturating_sub(Micros::from_millis(5_000)),
    };
    let full_rule = PermitRule {
        max_waiting: 3,
        ..rule
    };
    g.bench_function("missing key (immediate)", |b| {
        b.iter(|| permit::decide(None, black_box(NOW), black_box(&rule), None))
    });
    g.bench_function("idle key (immediate)", |b| {
        b.iter(|| permit::decide(Some(black_box(&old)), black_box(NOW), &rule, None))
    });
    g.bench_function("reserved", |b| {
        b.iter(|| permit::decide(Some(black_box(&queued)), black_box(NOW), &rule, None))
    });
    g.bench_function("refused (queue full)", |b| {
        b.iter(|| permit::decide(Some(black_box(&queued)), black_box(NOW), &full_rule, None))
    });
    g.finish();
}

fn codecs(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec");
    let caller = limit("0.01", "1000", "100000");
    let v = Limiter {
        bucket: Bucket {
            level: 123_456_789 * FEMTO,
            updated_at: NOW,
        },
        params: caller.params(),
        knobs: None,
    };
    let mut buf = [0u8; MAX_LIMITER_LEN];
    let n = codec::encode_limiter(&v, &mut buf);
    let bytes = buf[..n].to_vec();
    let p = PermitState { last_valid_at: NOW };
    let pbytes = codec::encode_permit(&p);
    g.bench_function("encode limiter", |b| {
        b.iter(|| {
            let mut out = [0u8; MAX_LIMITER_LEN];
            let n = codec::encode_limiter(black_box(&v), &mut out);
            black_box(out);
            n
        })
    });
    g.bench_function("decode limiter", |b| {
        b.iter(|| codec::decode_limiter(black_box(&bytes)))
    });
    g.bench_function("encode permit", |b| {
        b.iter(|| codec::encode_permit(black_box(&p)))
    });
    g.bench_function("decode permit", |b| {
        b.iter(|| codec::decode_permit(black_box(&pbytes)))
    });
    g.finish();
}

fn config() -> Criterion {
    // Short runs: ~3 s per benchmark keeps the whole suite near a minute.
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
}

criterion_group! {
    name = benches;
    config = config();
    targets = parsing, buckets, limiters, permits, codecs
}
criterion_main!(benches);
