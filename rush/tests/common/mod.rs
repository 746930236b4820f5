//! Helpers shared by rush's integration tests: run rush in-process, load
//! deliberately wrong limiters written in Lua, start the example HTTP API
//! (Redis Clusters come from `testkit::cluster`).
#![allow(dead_code)]

use rush::report::Report;
use rush::verify::{Verdict, Verification};

/// Runs rush with `args` (without the program name) and returns its report.
pub async fn rush(args: &[&str]) -> Report {
    let mut all = vec!["rush"];
    all.extend_from_slice(args);
    match rush::execute(all).await {
        Ok(r) => r,
        Err(e) => panic!("rush {args:?} failed: {e}"),
    }
}

/// Runs `rush redis -u <url> <words>` (the words split on white space, so
/// no argument may hold a space) and returns its report.
pub async fn rush_redis(url: &str, words: &str) -> Report {
    rush_words(&format!("redis -u {url} {words}")).await
}

/// Starts a redis-server with the module and runs `rush redis` on it (as [`rush_redis`]).
pub async fn rush_on_module(words: &str) -> Report {
    let server = testkit::Server::start();
    rush_redis(&server.url(), words).await
}

/// Runs `rush <words>` (split on white space) and returns its report.
pub async fn rush_words(words: &str) -> Report {
    rush(&words.split_whitespace().collect::<Vec<_>>()).await
}

/// Asserts the report's (allowed, throttled, errors), showing it when they differ.
#[track_caller]
pub fn assert_counts(r: &Report, want: (u64, u64, u64)) {
    assert_eq!((r.allowed, r.throttled, r.errors), want, "{}", r.to_text());
    assert_eq!(r.done, r.allowed + r.throttled + r.errors);
}

/// The report's verification, after asserting its verdict.
#[track_caller]
pub fn verdict(r: &Report, want: Verdict) -> &Verification {
    let v = r.verification.as_ref().expect("a verification");
    assert_eq!(v.verdict, want, "{}", r.to_text());
    v
}

/// Runs rush and returns its error.
pub async fn rush_err(args: &[&str]) -> rush::Error {
    let mut all = vec!["rush"];
    all.extend_from_slice(args);
    match rush::execute(all).await {
        Ok(r) => panic!("rush {args:?} should have failed, got:\n{}", r.to_text()),
        Err(e) => e,
    }
}

/// A fixed-window counter aligned to the wall clock: `INCR key:<window#>`,
/// expiring after two windows. Returns the count; `int<=LIMIT` classifies it.
/// ARGV[1] = window in ms. Lets 2×LIMIT through around each window edge.
pub const FIXED_WINDOW_LUA: &str = include_str!("../../lua/fixed_window.lua");

/// A broken pacer with PERMIT's reply shape: every call is granted "now".
pub const GREEDY_PERMIT_LUA: &str = include_str!("../../lua/greedy_permit.lua");

/// A sorted-set semaphore as a Redis 7 function library (`rushsem`):
/// `zsem_acquire`, `zsem_release`, `zsem_renew`, and two WRONG variants,
/// `zsem_renew_forgetful` and `zsem_acquire_short` (see the file).
pub const ZSET_SEMAPHORE_LUA: &str = include_str!("../../lua/zset_semaphore.lua");

/// Loads (or replaces) a function library.
pub fn load_function(server: &testkit::Server, lua: &str) {
    let mut c = server.conn();
    let _: String = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg("REPLACE")
        .arg(lua)
        .query(&mut c)
        .expect("FUNCTION LOAD");
}

/// Loads a script and returns its SHA1.
pub fn load_script(server: &testkit::Server, lua: &str) -> String {
    let mut c = server.conn();
    redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(lua)
        .query::<String>(&mut c)
        .expect("SCRIPT LOAD")
}

/// Starts the example HTTP API on a free loopback port; returns its base URL.
pub async fn start_http_api(redis_url: &str, rps: f64, burst: f64, window: f64) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local_addr");
    let cfg = http_api::Config {
        listen: addr,
        redis_url: redis_url.to_string(),
        rps,
        burst,
        window,
        cost: 1,
        key_header: "x-api-key".into(),
        key_query: "api_key".into(),
        key_prefix: "api:".into(),
    };
    let app = http_api::app(cfg)
        .await
        .expect("http api connects to redis");
    tokio::spawn(http_api::run(listener, app));
    format!("http://{addr}")
}

/// A raw HTTP/1.1 GET (Connection: close); returns the status line and headers, lower-cased.
pub fn raw_get(base: &str, path: &str, headers: &[(&str, &str)]) -> (u16, Vec<(String, String)>) {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).expect("connect to http api");
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("write request");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read response");
    let mut lines = text.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let hs = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, hs)
}

pub fn header<'a>(hs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    hs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}
