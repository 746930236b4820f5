//! rush against the example HTTP API (THROTTLE per API key).

mod common;

use common::{assert_counts, header, raw_get, rush_words, start_http_api, verdict};
use rush::verify::Verdict;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rush_counts_the_429s_of_the_example_api() {
    let server = testkit::Server::start();
    // capacity ceil(0.1 × 100 × 1) = 10 per API key.
    let base = start_http_api(&server.url(), 0.1, 100.0, 1.0).await;
    let r = rush_words(&format!(
        "http -c 30 -n 2 -H X-API-Key:key-{{run}} --verify --limit-rps 0.1 --limit-capacity 10 \
         {base}/v1/things"
    ))
    .await;
    assert_counts(&r, (10, 50, 0));
    verdict(&r, Verdict::Pass);

    // Keys in the query string, three keys: 10 each.
    let r = rush_words(&format!(
        "http -c 30 -n 3 --keys 1..=3 --key-order sequential {base}/v1/things?api_key=q-{{run}}-{{n}}"
    ))
    .await;
    assert_counts(&r, (30, 60, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_api_sends_rate_limit_headers() {
    let server = testkit::Server::start();
    let base = start_http_api(&server.url(), 1.0, 2.0, 1.0).await;
    let key = [("X-API-Key", "headers-test")];
    let (s1, h1) = tokio::task::spawn_blocking({
        let base = base.clone();
        move || raw_get(&base, "/", &key)
    })
    .await
    .unwrap();
    assert_eq!(s1, 200);
    assert_eq!(header(&h1, "ratelimit-limit"), Some("2"));
    assert_eq!(header(&h1, "ratelimit-remaining"), Some("1"));
    assert_eq!(header(&h1, "ratelimit-reset"), Some("1"));
    assert_eq!(header(&h1, "retry-after"), None);
    let (statuses, last) = tokio::task::spawn_blocking({
        let base = base.clone();
        move || {
            let a = raw_get(&base, "/", &key);
            let b = raw_get(&base, "/", &key);
            (vec![a.0, b.0], b.1)
        }
    })
    .await
    .unwrap();
    assert_eq!(statuses, vec![200, 429]);
    assert_eq!(header(&last, "retry-after"), Some("1"));
    assert_eq!(header(&last, "ratelimit-remaining"), Some("0"));
    assert_eq!(header(&last, "ratelimit-limit"), Some("2"));
    let (s, _) = tokio::task::spawn_blocking(move || raw_get(&base, "/", &[]))
        .await
        .unwrap();
    assert_eq!(s, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_errors_are_counted_by_status() {
    let server = testkit::Server::start();
    let base = start_http_api(&server.url(), 10.0, 1.0, 1.0).await;
    // No API key: every call is a 401, an error for the default rule ...
    let r = rush_words(&format!("http -c 3 -n 2 {base}")).await;
    assert_eq!((r.allowed, r.errors), (0, 6), "{}", r.to_text());
    assert_eq!(r.error_kinds.get("HTTP 401"), Some(&6), "{}", r.to_text());
    // ... unless the rule says 401 is "allowed".
    let r = rush_words(&format!("http -c 3 --allow-status 2xx,401 {base}")).await;
    assert_eq!((r.allowed, r.errors), (3, 0), "{}", r.to_text());
}
