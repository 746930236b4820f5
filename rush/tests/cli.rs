//! The binary itself, and errors a user meets.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{assert_counts, rush_err, rush_redis};

fn rush_bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rush"))
}

#[test]
fn binary_prints_json_and_exits_zero() {
    let server = testkit::Server::start();
    let out = rush_bin()
        .args([
            "redis",
            "-u",
            &server.url(),
            "-c",
            "20",
            "--json",
            "--verify",
            "--",
            "THROTTLE",
            "bin:{run}",
            "0.1",
            "50",
            "1",
        ])
        .output()
        .expect("run rush");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("JSON report");
    assert_eq!(v["allowed"], 5);
    assert_eq!(v["throttled"], 15);
    assert_eq!(v["verification"]["verdict"], "pass");
    assert!(
        out.stderr.is_empty(),
        "no progress bar when stderr is not a terminal"
    );
}

#[test]
fn binary_exit_codes_for_bad_input_and_unreachable_targets() {
    let out = rush_bin()
        .args(["redis", "--", "GET", "user:{id}"])
        .output()
        .expect("run rush");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown placeholder {id}"));

    let port = testkit::free_port();
    let out = rush_bin()
        .args([
            "redis",
            "-u",
            &format!("redis://127.0.0.1:{port}/"),
            "--",
            "PING",
        ])
        .output()
        .expect("run rush");
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect"));

    let out = rush_bin()
        .args(["redis", "--workers", "lots", "--", "PING"])
        .output()
        .expect("run rush");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn ctrl_c_prints_the_partial_report() {
    let server = testkit::Server::builder().without_module().start();
    let mut child = rush_bin()
        .args([
            "redis",
            "-u",
            &server.url(),
            "-c",
            "2",
            "-d",
            "20s",
            "-r",
            "200",
            "--",
            "INCR",
            "ctrlc",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rush");
    // Wait for the first per-second line... roughly: the run is 20 s, stop it after ~1.2 s.
    std::thread::sleep(Duration::from_millis(1200));
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().expect("try_wait").is_none() {
        assert!(Instant::now() < deadline, "rush did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(130), "{stdout}");
    assert!(stdout.contains("(interrupted)"), "{stdout}");
    assert!(stdout.contains("allowed: "), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_counted_and_shown() {
    let server = testkit::Server::builder().without_module().start();
    let url = server.url();
    let r = rush_redis(&url, "-c 4 -n 3 -- THROTTLE k 1 1 1").await;
    assert_eq!((r.errors, r.allowed), (12, 0));
    let (msg, n) = r.error_kinds.iter().next().expect("an error kind");
    assert!(msg.starts_with("ERR unknown command"), "{msg}");
    assert_eq!(*n, 12);
    assert!(
        r.to_text().contains("12 × ERR unknown command"),
        "{}",
        r.to_text()
    );
    // Wrong type: INCR on a list, with the int rule.
    redis::cmd("RPUSH")
        .arg("alist")
        .arg("x")
        .query::<i64>(&mut server.conn())
        .unwrap();
    let r = rush_redis(&url, "-c 2 --rule int<=5 -- INCR alist").await;
    assert_eq!(r.errors, 2);
    assert!(
        r.error_kinds.keys().any(|k| k.starts_with("WRONGTYPE")),
        "{:?}",
        r.error_kinds
    );
    // With --verify, errors make the verdict inconclusive (exit 1).
    let r = rush_redis(&url, "-c 2 --verify -- THROTTLE k 1 1 1").await;
    assert_eq!(
        r.verification.as_ref().map(|v| v.verdict),
        Some(rush::verify::Verdict::Inconclusive)
    );
    assert_eq!(r.exit_code(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_errors_are_clear() {
    let e = rush_err(&["redis", "-u", "redis://127.0.0.1:1/", "--", "PING"]).await;
    assert_eq!(e.exit_code(), 3);
    assert!(
        e.to_string()
            .contains("cannot connect to redis://127.0.0.1:1/"),
        "{e}"
    );
    let e = rush_err(&["redis", "-u", "127.0.0.1:6379", "--", "PING"]).await;
    assert_eq!(e.exit_code(), 2);
    assert!(e.to_string().contains("bad Redis URL"), "{e}");
    let e = rush_err(&["http", "http://127.0.0.1:1/"]).await;
    assert_eq!(e.exit_code(), 3);
    let e = rush_err(&["redis", "--", "GET", "a}b"]).await;
    assert!(e.to_string().contains("unmatched '}'"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_commands_with_an_int_rule() {
    let server = testkit::Server::builder().without_module().start();
    let url = server.url();
    // INCR on one key: the first 7 replies are ≤ 7.
    let r = rush_redis(&url, "-c 10 -n 3 --rule int<=7 -- INCR counter:{run}").await;
    assert_counts(&r, (7, 23, 0));
}

/// `--seed`: the same `{run}` and, per worker, the same key for each call;
/// another seed draws other keys. Each worker appends its keys, in call
/// order, to its own list `seed:{run}:{worker}`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seed_repeats_the_run_id_and_every_workers_keys() {
    let server = testkit::Server::builder().without_module().start();
    let url = server.url();
    let words = |seed: u64| {
        format!("-c 4 -n 25 --keys 0..1000000 --seed {seed} -- RPUSH seed:{{run}}:{{worker}} {{n}}")
    };
    for seed in [7, 7, 8] {
        let r = rush_redis(&url, &words(seed)).await;
        assert_eq!((r.allowed, r.seed), (100, seed), "{}", r.to_text());
    }
    let mut c = server.conn();
    let list = |c: &mut redis::Connection, seed: u64, worker: u64| -> Vec<u64> {
        let key = format!("seed:{:08x}:{worker}", rush::seed::run_id(seed));
        redis::cmd("LRANGE")
            .arg(key)
            .arg(0)
            .arg(-1)
            .query(c)
            .expect("LRANGE")
    };
    let mut firsts = Vec::new();
    for w in 0..4 {
        let twice = list(&mut c, 7, w);
        assert_eq!(twice.len(), 50, "two runs of 25 calls under one {{run}}");
        assert_eq!(twice[..25], twice[25..], "worker {w} drew other keys");
        let other = list(&mut c, 8, w);
        assert_eq!(other.len(), 25, "seed 8 has its own {{run}}");
        assert_ne!(other[..], twice[..25], "seeds 7 and 8 drew the same keys");
        firsts.push(twice[..25].to_vec());
    }
    firsts.dedup();
    assert_eq!(firsts.len(), 4, "workers draw different keys");
    let keys: Vec<String> = redis::cmd("KEYS").arg("seed:*").query(&mut c).unwrap();
    assert_eq!(keys.len(), 8, "{keys:?}");
}
