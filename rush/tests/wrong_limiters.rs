//! Verification must fail limiters that break their bound, and pass them
//! when the bound claimed is the one they really keep.

mod common;

use common::{FIXED_WINDOW_LUA, GREEDY_PERMIT_LUA, load_script, rush};
use rush::verify::Verdict;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_window_counter_lets_twice_the_limit_through_at_the_edge() {
    let server = testkit::Server::builder().without_module().start();
    let url = server.url();
    let sha = load_script(&server, FIXED_WINDOW_LUA);
    // 10 per 1 s window, claimed as a bucket of rps 10, capacity 10. Start
    // 150 ms before a window edge: 10 admitted before it, 10 right after.
    let args = |capacity: &'static str| {
        vec![
            "redis".to_string(),
            "-u".into(),
            url.clone(),
            "-c".into(),
            "4".into(),
            "-d".into(),
            "400ms".into(),
            "--align-to".into(),
            "1s".into(),
            "--align-lead".into(),
            "150ms".into(),
            "--rule".into(),
            "int<=10".into(),
            "--verify".into(),
            "--limit-rps".into(),
            "10".into(),
            "--limit-capacity".into(),
            capacity.into(),
            "--".into(),
            "EVALSHA".into(),
            sha.clone(),
            "1".into(),
            "fw:{run}".into(),
            "1000".into(),
        ]
    };
    let a = args("10");
    let r = rush(&a.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert_eq!(r.allowed, 20, "{}", r.to_text());
    let v = r.verification.as_ref().expect("verification");
    assert_eq!(v.verdict, Verdict::Fail, "{}", r.to_text());
    assert!(v.peak_burst.is_some_and(|p| p > 18.0), "{}", r.to_text());
    assert_eq!(r.exit_code(), 1);
    // What a fixed window of 10 per second does keep: a bucket of capacity 20.
    let a = args("20");
    let r = rush(&a.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let v = r.verification.as_ref().expect("verification");
    assert_eq!(v.verdict, Verdict::Pass, "{}", r.to_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greedy_pacer_is_caught() {
    let server = testkit::Server::builder().without_module().start();
    let url = server.url();
    let sha = load_script(&server, GREEDY_PERMIT_LUA);
    let r = rush(&[
        "redis",
        "-u",
        &url,
        "-c",
        "5",
        "-n",
        "4",
        "--rule",
        "permit",
        "--verify",
        "--limit-interval-ms",
        "100",
        "--",
        "EVALSHA",
        &sha,
        "0",
    ])
    .await;
    assert_eq!(r.allowed, 20);
    let v = r.verification.as_ref().expect("verification");
    assert_eq!(v.verdict, Verdict::Fail, "{}", r.to_text());
    assert!(v.min_gap_ms.is_some_and(|g| g < 100));
}
