//! Verification must fail limiters that break their bound, and pass them
//! when the bound claimed is the one they really keep.

mod common;

use common::{FIXED_WINDOW_LUA, GREEDY_PERMIT_LUA, load_script, rush_redis, verdict};
use rush::verify::Verdict;

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
