//! rush against the module's THROTTLE and PERMIT on a real redis-server.

mod common;

use std::time::Duration;

use common::{assert_counts, rush_on_module, rush_redis, verdict};
use rush::verify::{Limit, Verdict};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_against_throttle_admits_exactly_the_capacity() {
    // capacity = ceil(0.1 × 100 × 1) = 10; one more token only every 10 s.
    let r = rush_on_module("-c 50 -n 2 --verify -- THROTTLE rush:{run} 0.1 100 1").await;
    assert_counts(&r, (10, 90, 0));
    let v = verdict(&r, Verdict::Pass);
    assert_eq!(
        v.limit,
        Limit::Bucket {
            rps: 0.1,
            capacity: 10.0
        }
    );
    assert_eq!((v.admitted, v.ideal), (10, 10));
    assert!(
        r.to_text().contains("50 workers completed in"),
        "{}",
        r.to_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_over_many_keys_admits_the_capacity_of_each() {
    // 5 keys, 40 calls each (sequential order), capacity 4 each.
    let r = rush_on_module("-c 20 -n 10 --keys 1..=5 --key-order sequential --verify -- THROTTLE rush:{run}:{n} 0.1 40 1").await;
    assert_counts(&r, (20, 180, 0));
    let v = verdict(&r, Verdict::Pass);
    assert_eq!((v.keys, v.admitted, v.ideal), (5, 20, 20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sustained_throttle_stays_within_the_bound_and_near_the_ideal() {
    // rps 100, capacity ceil(100 × 0.2 × 1) = 20, for 2 s as fast as possible:
    // ideal ≈ 20 + 100 × 2 = 220.
    let r = rush_on_module("-c 8 -d 2s --verify -- THROTTLE rush:{run} 100 0.2 1").await;
    let v = verdict(&r, Verdict::Pass);
    assert!(
        r.throttled > r.allowed,
        "the run must saturate the limit: {}",
        r.to_text()
    );
    assert!(
        (0.90..=1.01).contains(&v.efficiency),
        "efficiency {}: {}",
        v.efficiency,
        r.to_text()
    );
    assert!(
        v.peak_burst.is_some_and(|p| p <= 20.0 && p > 15.0),
        "{}",
        r.to_text()
    );
    // One line per second, and one for the calls that were in flight at the end.
    assert!((2..=3).contains(&r.intervals.len()), "{:?}", r.intervals);
    assert_eq!(r.intervals.iter().map(|i| i.done).sum::<u64>(), r.done);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sustained_at_a_rate_below_the_limit_is_all_allowed() {
    let r = rush_on_module("-c 4 -d 1s -r 50 --verify -- THROTTLE rush:{run} 100 1 1").await;
    assert_counts(&r, (50, 0, 0));
    let v = verdict(&r, Verdict::Pass);
    assert!((v.efficiency - 1.0).abs() < 1e-9, "{}", r.to_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttle_wait_blocks_longer_than_the_response_timeout_asked() {
    // rps 20, capacity 1: 6 workers queue behind each other with WAIT up to 2 s.
    // --timeout 200ms is raised above the WAIT timeout, so nothing times out.
    let r = rush_on_module(
        "-c 6 -d 1s --timeout 200ms --verify -- THROTTLE rush:{run} 20 0.05 1 1 WAIT 2000",
    )
    .await;
    assert_eq!(r.errors, 0, "{}", r.to_text());
    assert!(
        r.latency.max_ms > 200.0,
        "calls waited server-side: {}",
        r.to_text()
    );
    verdict(&r, Verdict::Pass);
    // About 1 + 20/s over the run (plus the calls still waiting at the end).
    assert!((15..=32).contains(&r.allowed), "{}", r.to_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permit_block_is_paced_and_verified() {
    // GRACE 1000: a busy CI machine can release a held client more than the
    // default 10 ms late, which would answer nil (counted as throttled).
    let r =
        rush_on_module("-c 6 -d 1200ms --verify -- PERMIT rush:{run} 100 20 GRACE 1000 BLOCK 5000")
            .await;
    let v = verdict(&r, Verdict::Pass);
    assert_eq!(v.limit, Limit::Pacing { interval_ms: 100.0 });
    assert!(v.min_gap_ms.is_some_and(|g| g >= 100), "{}", r.to_text());
    assert!(v.efficiency > 0.95, "{}", r.to_text());
    assert_eq!(r.errors, 0, "{}", r.to_text());
    // BLOCK replies come when the slot is due: about one per 100 ms.
    let elapsed_ms = r.elapsed_s * 1e3;
    assert!(
        r.allowed as f64 <= 1.0 + elapsed_ms / 100.0 + 1.0,
        "{}",
        r.to_text()
    );
    assert!(r.allowed >= 11, "{}", r.to_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permit_refusals_are_throttled() {
    // Interval 1 s, at most 2 waiting: of 10 simultaneous calls, 3 are granted.
    let r = rush_on_module("-c 10 --verify -- PERMIT rush:{run} 1000 2").await;
    assert_counts(&r, (3, 7, 0));
    let v = verdict(&r, Verdict::Pass);
    assert_eq!(v.min_gap_ms, Some(1000), "{}", r.to_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misconfigured_bound_is_caught() {
    let server = testkit::Server::start();
    let url = server.url();
    // The limiter really allows capacity 10; claim 5 and rush must say FAIL.
    let r = rush_redis(
        &url,
        "-c 20 --verify --limit-rps 0.1 --limit-capacity 5 -- THROTTLE rush:{run} 0.1 100 1",
    )
    .await;
    assert_eq!(r.allowed, 10);
    let v = verdict(&r, Verdict::Fail);
    assert_eq!(r.exit_code(), 1);
    assert!(
        v.violations[0].detail.contains("10 tokens"),
        "{}",
        r.to_text()
    );
    assert!(r.to_text().contains("reported limit 10"), "{}", r.to_text());
    // 10 tokens against a bound of 5 + 0.1 × (a few ms): 5 beyond it.
    assert_eq!(
        (
            v.over_admission,
            v.over_admission_keys,
            v.violations[0].excess
        ),
        (5, 1, 5),
        "{}",
        r.to_text()
    );
    assert!(
        r.to_text()
            .contains("over-admission: 5 tokens beyond the bound on 1 key"),
        "{}",
        r.to_text()
    );
    // --allow-excess: 4 is not enough, 5 passes.
    for (allow, verdict) in [("4", Verdict::Fail), ("5", Verdict::Pass)] {
        let r = rush_redis(
            &url,
            &format!(
                "-c 20 --verify --limit-rps 0.1 --limit-capacity 5 --allow-excess {allow} \
                 -- THROTTLE rush:{{run}} 0.1 100 1"
            ),
        )
        .await;
        let v = r.verification.as_ref().expect("verification");
        assert_eq!(
            (v.verdict, v.over_admission, v.allow_excess),
            (verdict, 5, allow.parse().unwrap()),
            "{}",
            r.to_text()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_limiter_state_is_reported_as_over_admission_per_key() {
    let server = testkit::Server::start();
    let url = server.url();
    // 5 keys of capacity 20, refilling 1 token/s, drained at once; then the
    // server forgets them (FLUSHALL, as a master that lost its writes would)
    // and each bucket is full again: about 19 tokens beyond the bound per key.
    let run = tokio::spawn(async move {
        rush_redis(
            &url,
            "-c 4 -d 1s --keys 1..=5 --verify --per-key -- THROTTLE lost:{run}:{n} 1 20 1",
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _: () = redis::cmd("FLUSHALL")
        .query(&mut server.conn())
        .expect("FLUSHALL");
    let r = run.await.expect("rush task");
    let v = verdict(&r, Verdict::Fail);
    assert_eq!(v.over_admission_keys, 5, "{}", r.to_text());
    assert!(
        (5 * 17..=5 * 21).contains(&v.over_admission),
        "{}",
        r.to_text()
    );
    // Per key: the same figures, and each key's counts.
    assert_eq!(r.keys.len(), 5);
    let per_key: u64 = r.keys.iter().filter_map(|k| k.over_admission).sum();
    assert_eq!(per_key, v.over_admission);
    for k in &r.keys {
        assert!(
            (40..=42).contains(&k.allowed) && k.errors == 0,
            "{k:?}\n{}",
            r.to_text()
        );
        assert!(k.last_allowed_s.is_some() && k.first_error_s.is_none());
    }
    assert!(r.to_text().contains("per key"), "{}", r.to_text());
}

/// `INFO stats` `total_connections_received` of a server.
fn connections_received(server: &testkit::Server) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query(&mut server.conn())
        .expect("INFO stats");
    info.lines()
        .find_map(|l| l.strip_prefix("total_connections_received:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("total_connections_received")
}

/// The lease scenario: 30 holders for 5 places, a tenth of them killed while
/// holding. Never more than 5 at once (PASS), every kill dropped its
/// connection and opened a new one, and killed places came back. Time
/// bounds are generous: the machine may be saturated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_keep_the_limit_with_killed_holders_and_their_places_come_back() {
    let server = testkit::Server::start();
    let before = connections_received(&server);
    let r = rush_redis(
        &server.url(),
        "-c 30 -d 2s --verify --hold-ms 5..30 --kill-fraction 0.1 -- LEASE rush:{run} 5 300 BLOCK 30000",
    )
    .await;
    let v = verdict(&r, Verdict::Pass);
    assert_eq!(v.limit, Limit::Concurrency { limit: 5 });
    assert!(
        v.peak_in_use.is_some_and(|p| (1..=5).contains(&p)),
        "{}",
        r.to_text()
    );
    assert_eq!(v.fencing_errors, Some(0));
    let l = r.lease.as_ref().expect("a lease report");
    assert_eq!(l.leases, r.allowed, "{}", r.to_text());
    assert_eq!(
        l.released + l.killed + l.expired_before_release + l.lost_at_renewal,
        l.leases,
        "{}",
        r.to_text()
    );
    assert!(l.killed >= 1 && l.errors.is_empty(), "{}", r.to_text());
    assert_eq!(l.server_in_use_max.map(|m| m <= 5), Some(true));
    let rc = l.recovery.as_ref().expect("the limit is known");
    assert_eq!(rc.proven + rc.not_proven, l.killed);
    assert!(rc.proven >= 1, "{}", r.to_text());
    // A place comes back by its lease's expiry, 300 ms after its last
    // confirmation at most; 10 s of slack for a saturated machine.
    let after_kill = rc.after_kill.expect("proven");
    assert!(after_kill.max_ms < 10_300.0, "{}", r.to_text());
    assert!(r.to_text().contains("places back from killed holders: "));
    // Each kill closed its connection and opened another.
    assert!(
        connections_received(&server) > before + 30 + l.killed - 1,
        "{}",
        r.to_text()
    );
}

/// Holds longer than the ttl renew their leases (every half ttl) and pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_holds_renew_their_leases() {
    let r = rush_on_module(
        "-c 6 -d 1500ms --verify --hold-ms 200..300 -- LEASE rush:{run} 3 100 BLOCK 30000",
    )
    .await;
    verdict(&r, Verdict::Pass);
    let l = r.lease.as_ref().expect("a lease report");
    assert!(l.renewals >= 1, "{}", r.to_text());
    assert_eq!(l.killed, 0);
}

/// A concurrency limit claimed below the one the server keeps fails, with
/// the instant more places were held; a server that forgets its leases
/// mid-run (FLUSHALL, as a master that lost its writes) fails too: the
/// callers refused a moment before get places their holders still hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_leases_at_once_fail() {
    let r = rush_on_module(
        "-c 20 -d 1s --verify --limit-concurrency 3 --hold-ms 50..100 -- LEASE rush:{run} 6 1000 BLOCK 30000",
    )
    .await;
    let v = verdict(&r, Verdict::Fail);
    assert_eq!(r.exit_code(), 1);
    assert!(v.peak_in_use.is_some_and(|p| p > 3), "{}", r.to_text());
    assert!(
        v.violations[0].detail.contains("places held at once at"),
        "{}",
        r.to_text()
    );
    assert!(r.to_text().contains("reported limit 6"), "{}", r.to_text());

    let server = testkit::Server::start();
    let url = server.url();
    let run = tokio::spawn(async move {
        rush_redis(
            &url,
            "-c 12 -d 1s --verify --hold-ms 300..400 -- LEASE lost:{run} 4 10000",
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let _: () = redis::cmd("FLUSHALL")
        .query(&mut server.conn())
        .expect("FLUSHALL");
    let r = run.await.expect("rush task");
    let v = verdict(&r, Verdict::Fail);
    assert!(v.peak_in_use.is_some_and(|p| p > 4), "{}", r.to_text());
}
