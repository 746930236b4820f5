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
use throttle_core::Write;
use throttle_core::bucket::{self, Bucket};
use throttle_core::codec::Codec;
use throttle_core::decimal;
use throttle_core::permit::{self, PermitRequest, PermitRule, PermitState};
use throttle_core::rate::{Limit, LimitLion, Policy, Rps};
use throttle_core::throttle::{self, ThrottleState};
use throttle_core::{Micros, Timestamp};

/// An instant in 2026, in µs since the epoch.
const NOW: Timestamp = Timestamp(1_790_000_000_000_000);

/// What the Redis layer does with `rps burst window`: three exact decimals
/// and a validated policy (capacity = ceil(rps × burst × window)).
fn parse_policy(rps: &[u8], burst: &[u8], window: &[u8]) -> Option<Policy> {
    let r = decimal::parse(rps, 9).ok()?;
    let args = LimitLion {
        rps: Rps::from_nano(r.negative, r.units).ok()?,
        burst_nano: u64::try_from(decimal::parse(burst, 9).ok()?.units).ok()?,
        window_ns: u64::try_from(decimal::parse(window, 9).ok()?.units).ok()?,
    };
    args.policy().ok()
}

fn limit(rps: &str, burst: &str, window: &str) -> Limit {
    match parse_policy(rps.as_bytes(), burst.as_bytes(), window.as_bytes()) {
        Some(Policy::Bucket(l)) => l,
        other => panic!("not a bucket: {other:?}"),
    }
}

/// A bucket under `l` that `used` tokens were taken from at `at`.
fn used(l: &Limit, used: u64, at: Timestamp) -> Bucket {
    bucket::decide(None, at, l, used, Micros::ZERO)
        .next
        .expect("a write")
}

fn parsing(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    for text in ["1", "0.01", "100000", "2.5", "0.0001", "1e9"] {
        g.bench_function(format!("decimal {text}"), |b| {
            b.iter(|| decimal::parse(black_box(text.as_bytes()), 9))
        });
    }
    g.bench_function("policy 0.01 1000 100000", |b| {
        b.iter(|| parse_policy(black_box(b"0.01"), black_box(b"1000"), black_box(b"100000")))
    });
    g.finish();
}

fn buckets(c: &mut Criterion) {
    let mut g = c.benchmark_group("bucket::decide");
    let l = limit("0.01", "1000", "100000");
    let half = used(&l, l.capacity() / 2, NOW.saturating_sub(Micros(1_000)));
    let empty = used(&l, l.capacity(), NOW);
    g.bench_function("missing key (full)", |b| {
        b.iter(|| bucket::decide(None, black_box(NOW), black_box(&l), 1, Micros::ZERO))
    });
    g.bench_function("allowed", |b| {
        b.iter(|| bucket::decide(Some(black_box(&half)), black_box(NOW), &l, 1, Micros::ZERO))
    });
    g.bench_function("denied", |b| {
        b.iter(|| bucket::decide(Some(black_box(&empty)), black_box(NOW), &l, 1, Micros::ZERO))
    });
    g.finish();
}

fn limiters(c: &mut Criterion) {
    let mut g = c.benchmark_group("limiter::throttle");
    let l = limit("0.01", "1000", "100000");
    let caller = Policy::Bucket(l);
    let stored = ThrottleState::Plain(used(&l, 10, NOW.saturating_sub(Micros(250_000))));
    g.bench_function("missing key", |b| {
        b.iter(|| {
            throttle::throttle(
                None,
                black_box(NOW),
                Some(black_box(&caller)),
                1,
                Micros::ZERO,
            )
        })
    });
    g.bench_function("existing key, allowed", |b| {
        b.iter(|| {
            throttle::throttle(
                Some(black_box(&stored)),
                black_box(NOW),
                Some(black_box(&caller)),
                1,
                Micros::ZERO,
            )
        })
    });
    g.finish();
}

fn permits(c: &mut Criterion) {
    let mut g = c.benchmark_group("permit::decide");
    let interval = Micros::from_millis(1000);
    let rule = PermitRequest {
        rule: Some(PermitRule {
            interval,
            max_waiting: Some(1_000_000),
        }),
        grace: None,
        grace_percent: 10,
        max_wait: None,
        held: false,
    };
    let queued = PermitState::new(NOW.saturating_add(Micros::from_millis(20_000)), NOW);
    g.bench_function("missing key (immediate)", |b| {
        b.iter(|| permit::decide(None, black_box(NOW), black_box(&rule)))
    });
    g.bench_function("reserved", |b| {
        b.iter(|| permit::decide(Some(black_box(&queued)), black_box(NOW), &rule))
    });
    g.finish();
}

fn codecs(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec");
    let l = limit("0.01", "1000", "100000");
    let o =
        throttle::throttle(None, NOW, Some(&Policy::Bucket(l)), 1, Micros::ZERO).expect("a limit");
    let Write::Store { value, .. } = o.write else {
        panic!("a write")
    };
    let bytes = value.encode().as_bytes().to_vec();
    g.bench_function("encode bucket", |b| b.iter(|| black_box(&value).encode()));
    g.bench_function("decode bucket", |b| {
        b.iter(|| ThrottleState::decode(black_box(&bytes)))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    targets = parsing, buckets, limiters, permits, codecs
}
criterion_main!(benches);
