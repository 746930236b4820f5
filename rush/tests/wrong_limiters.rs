//! Verification must fail limiters that break their bound, and pass them
//! when the bound claimed is the one they really keep.

mod common;

use common::{
    FIXED_WINDOW_LUA, GREEDY_PERMIT_LUA, ZSET_SEMAPHORE_LUA, load_function, load_script, rush,
    rush_redis, verdict,
};
use rush::report::Report;
use rush::verify::{Limit, Verdict};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_window_counter_lets_twice_the_limit_through_at_the_edge() {
    let server = testkit::Server::builder().without_module().start();
    let url = server.url();
    let sha = load_script(&server, FIXED_WINDOW_LUA);
    // 10 per 1 s window, claimed as a bucket of rps 10, capacity 10. Start
    // 150 ms before a window edge: 10 admitted before it, 10 right after.
    let args = |capacity: u32| {
        format!(
            "-c 4 -d 400ms --align-to 1s --align-lead 150ms --rule int<=10 --verify \
             --limit-rps 10 --limit-capacity {capacity} -- EVALSHA {sha} 1 fw:{{run}} 1000"
        )
    };
    let r = rush_redis(&url, &args(10)).await;
    assert_eq!(r.allowed, 20, "{}", r.to_text());
    let v = verdict(&r, Verdict::Fail);
    assert!(v.peak_burst.is_some_and(|p| p > 18.0), "{}", r.to_text());
    assert_eq!(r.exit_code(), 1);
    // What a fixed window of 10 per second does keep: a bucket of capacity 20.
    let r = rush_redis(&url, &args(20)).await;
    verdict(&r, Verdict::Pass);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greedy_pacer_is_caught() {
    let server = testkit::Server::builder().without_module().start();
    let url = server.url();
    let sha = load_script(&server, GREEDY_PERMIT_LUA);
    let r = rush_redis(
        &url,
        &format!("-c 5 -n 4 --rule permit --verify --limit-interval-ms 100 -- EVALSHA {sha} 0"),
    )
    .await;
    assert_eq!(r.allowed, 20);
    let v = verdict(&r, Verdict::Fail);
    assert!(v.min_gap_ms.is_some_and(|g| g < 100));
}

/// `rush redis -u URL --rule lease` on the sorted-set semaphore, acquiring
/// with `acquire` and renewing with `renew`; `words` are rush's flags, then
/// `--` and the lease's `limit ttl_ms`.
async fn rush_zset_semaphore(url: &str, words: &str, acquire: &str, renew: &str) -> Report {
    let (flags, lease) = words.split_once(" -- ").expect("flags -- limit ttl_ms");
    let mut args = vec![
        "redis",
        "-u",
        url,
        "--rule",
        "lease",
        "--verify",
        "--release-cmd",
        "FCALL zsem_release 1",
    ];
    let renew = format!("FCALL {renew} 1");
    args.extend(["--renew-cmd", &renew]);
    args.extend(flags.split_whitespace());
    args.extend(["--", "FCALL", acquire, "1", "sem:{run}"]);
    args.extend(lease.split_whitespace());
    rush(&args).await
}

/// The sorted-set semaphore (atomic in a function, on the server's clock)
/// keeps its limit: killed holders and renewed holds included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sorted_set_semaphore_keeps_its_limit() {
    let server = testkit::Server::builder().without_module().start();
    load_function(&server, ZSET_SEMAPHORE_LUA);
    let r = rush_zset_semaphore(
        &server.url(),
        "-c 12 -d 1500ms --hold-ms 5..150 --kill-fraction 0.1 -- 4 200",
        "zsem_acquire",
        "zsem_renew",
    )
    .await;
    let v = verdict(&r, Verdict::Pass);
    assert_eq!(v.limit, Limit::Concurrency { limit: 4 });
    let l = r.lease.as_ref().expect("a lease report");
    assert!(l.killed >= 1 && l.renewals >= 1, "{}", r.to_text());
    assert!(r.throttled > 0, "refused acquires are throttled");
}

/// A renewal that says yes but does not move the expiry: a long hold loses
/// its place while its holder still holds it, and another is admitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_semaphore_whose_renewal_forgets_to_extend_is_caught() {
    let server = testkit::Server::builder().without_module().start();
    load_function(&server, ZSET_SEMAPHORE_LUA);
    let r = rush_zset_semaphore(
        &server.url(),
        "-c 12 -d 1500ms --hold-ms 300..500 -- 4 200",
        "zsem_acquire",
        "zsem_renew_forgetful",
    )
    .await;
    let v = verdict(&r, Verdict::Fail);
    assert!(v.peak_in_use.is_some_and(|p| p > 4), "{}", r.to_text());
    assert_eq!(r.exit_code(), 1);
}

/// A semaphore that drops a lease after half the ttl it answered: its
/// holders (done in 20 ms) never notice, so it passes without kills; a
/// killed holder's lease counts until its ttl, and its place was handed out
/// long before: FAIL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_semaphore_that_frees_a_dead_holders_place_early_is_caught() {
    let server = testkit::Server::builder().without_module().start();
    load_function(&server, ZSET_SEMAPHORE_LUA);
    let run = |kill: &'static str| {
        let url = server.url();
        async move {
            rush_zset_semaphore(
                &url,
                &format!("-c 12 -d 2s --hold-ms 5..20 --kill-fraction {kill} -- 4 1000"),
                "zsem_acquire_short",
                "zsem_renew",
            )
            .await
        }
    };
    let r = run("0").await;
    verdict(&r, Verdict::Pass);
    let r = run("0.2").await;
    let v = verdict(&r, Verdict::Fail);
    assert!(v.peak_in_use.is_some_and(|p| p > 4), "{}", r.to_text());
    assert!(r.lease.as_ref().is_some_and(|l| l.killed >= 1));
}
