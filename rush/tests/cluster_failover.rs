//! rush in sustained mode against a 3 + 3 Redis Cluster while one master is
//! killed (`kill -9`) and its replica takes over: rush keeps calling, counts
//! the failed calls as errors, reaches the new master once it is promoted,
//! and reports the over-admission the failover caused.

mod common;

use std::time::{Duration, Instant};

use common::rush;
use rush::verify::Verdict;
use testkit::cluster::{Cluster, info_field, key_slot};

/// Workers; each has at most one call in flight.
const WORKERS: u64 = 16;
/// Calls per second over all workers: 10 a second for each key, at least
/// 5 each second of the outage on each key of the killed master. Flat out
/// (about 9,000 a second here) the test took 20 CPU-seconds and proved no
/// more.
const RATE: u64 = 2000;
/// The bound the test states: when replication keeps up (loopback), a
/// killed master can only have failed to replicate the calls it was
/// handling when it died, at most one per worker, 1 token each.
const BOUND: u64 = WORKERS;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_under_sustained_load_over_admits_at_most_the_unreplicated_calls() {
    let test_start = Instant::now();
    let mut cluster = Cluster::start(true);
    let victim = cluster.masters()[0];
    let replica = cluster.replica_of(victim);
    let victim_slots = cluster.slots_of(victim);

    // 200 limiters spread over all slots. rps 10, capacity 100: a bucket
    // takes 10 s to refill, longer than the failover, so tokens that the
    // new master forgot would show as over-admission instead of being
    // hidden by the refill during the outage.
    let prefix = format!("fo:{}", std::process::id());
    let on_victim: Vec<u64> = (1..=200u64)
        .filter(|n| {
            let s = key_slot(format!("{prefix}:{n}").as_bytes());
            victim_slots.iter().any(|&(a, b)| a <= s && s <= b)
        })
        .collect();
    assert!(on_victim.len() > 20, "keys on the victim: {on_victim:?}");

    let mut args: Vec<String> = vec!["redis".into(), "--cluster".into()];
    for url in cluster.urls() {
        args.push("-u".into());
        args.push(url);
    }
    let workers = WORKERS.to_string();
    let bound = BOUND.to_string();
    let rate = RATE.to_string();
    let key = format!("{prefix}:{{n}}");
    args.extend(
        [
            "-c",
            &workers,
            "-d",
            "12s",
            "-r",
            &rate,
            "--keys",
            "1..=200",
            "--verify",
            "--allow-excess",
            &bound,
            "--per-key",
            "--",
            "THROTTLE",
            &key,
            "10",
            "10",
            "1",
        ]
        .map(String::from),
    );
    let started = Instant::now();
    let run =
        tokio::spawn(
            async move { rush(&args.iter().map(String::as_str).collect::<Vec<_>>()).await },
        );

    tokio::time::sleep(Duration::from_secs(2)).await;
    let killed = started.elapsed();
    cluster.kill(victim);
    // Promoted: the replica says it is a master (measured from before
    // rush's start, so rush's own times of later calls are surely later).
    let promoted = tokio::task::spawn_blocking(move || {
        testkit::wait_for(Duration::from_secs(20), "the replica to take over", || {
            (info_field(replica, "replication", "role")? == "master").then_some(())
        });
        started.elapsed()
    })
    .await
    .expect("waiting for the promotion");
    let r = run.await.expect("rush task");
    let text = r.to_text();
    let summary = &text[..text.find("per key").unwrap_or(text.len())];

    let v = r.verification.as_ref().expect("verification");
    let victim_keys: Vec<_> = r.keys.iter().filter(|k| on_victim.contains(&k.n)).collect();
    let victim_errors: u64 = victim_keys.iter().map(|k| k.errors).sum();
    let last_error = victim_keys
        .iter()
        .filter_map(|k| k.last_error_s)
        .fold(0.0, f64::max);
    eprintln!(
        "{summary}\nkilled at {:.3} s, replica promoted at {:.3} s; {} of 200 keys on the killed master, \
         {victim_errors} errors on them, the last at {last_error:.3} s; \
         over-admission {} tokens on {} keys (bound {BOUND}); test took {:.1} s",
        killed.as_secs_f64(),
        promoted.as_secs_f64(),
        on_victim.len(),
        v.over_admission,
        v.over_admission_keys,
        test_start.elapsed().as_secs_f64()
    );

    // The failover was felt: calls on the killed master's slots failed.
    assert!(r.errors > 0 && victim_errors > 0, "{summary}");
    // rush recovered: every key of the killed master's slots had calls
    // allowed after its replica was promoted (so by the new master).
    assert_eq!(victim_keys.len(), on_victim.len(), "{summary}");
    for k in &victim_keys {
        assert!(
            k.last_allowed_s.is_some_and(|t| t > promoted.as_secs_f64()),
            "key n={} not served after the promotion at {:.3} s: {k:?}\n{summary}",
            k.n,
            promoted.as_secs_f64()
        );
    }
    // Over-admission stays within the stated bound; errors make the verdict
    // INCONCLUSIVE, never PASS, and beyond the allowance it would be FAIL.
    assert!(v.over_admission <= BOUND, "{summary}");
    assert_eq!(v.verdict, Verdict::Inconclusive, "{summary}");
    assert!(
        summary.contains("over-admission: ") && summary.contains("INCONCLUSIVE"),
        "{summary}"
    );
}
