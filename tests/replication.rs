//! Deterministic replication and persistence: a replica (even a slow one)
//! and an AOF replayed seconds later end with byte-identical state, because
//! the module propagates effects (`THROTTLE.APPLY key payload expire_at`),
//! never a command that reads the clock.
//!
//! Keys here live for minutes (small rates, long windows), so nothing
//! expires between the moment a value is written and the moment it is
//! compared.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::thread;
use std::time::Duration;

use common::*;
use redis::Connection;

/// DUMP and absolute expiry of each key.
fn snapshot(con: &mut Connection, keys: &[Vec<u8>]) -> Vec<(Vec<u8>, Option<Vec<u8>>, i64)> {
    keys.iter()
        .map(|k| (k.clone(), dump(con, k), pexpiretime(con, k)))
        .collect()
}

/// Every key of db 0 (SCAN on the given server).
fn all_keys(con: &mut Connection) -> Vec<Vec<u8>> {
    let mut keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(con).unwrap();
    keys.sort();
    keys
}

/// A mix of writes: drained, partly used and fresh buckets, denied calls,
/// costs, binary keys, permits, knobs and refunds, a transaction and a
/// script. Returns nothing; callers compare whole datasets.
fn write_mix(m: &mut Connection, round: usize) {
    for i in 0..5 {
        let k = format!("b{i}");
        throttle(m, &k, &["0.01", "1", "500", &(i + 1).to_string()]);
        throttle(m, &k, &["0.01", "1", "500"]);
    }
    // Drained, then denied (denials write nothing).
    for _ in 0..4 {
        throttle(m, "drained", &["0.001", "3", "1000"]);
    }
    throttle(m, b"bin\0\xff\xfe".as_slice(), &["0.02", "1", "1000", "3"]);
    permit(m, "p", &["60000", "5"]);
    permit(m, format!("p{round}"), &["90000", "2", "GRACE", "5"]);
    let _: () = redis::cmd("THROTTLE.SET")
        .arg("knobbed")
        .arg(&["RPS", "0.05", "BURST", "1", "WINDOW", "200"])
        .query(m)
        .unwrap();
    throttle(m, "knobbed", &["5", "2", "8", "2"]);
    let _: redis::Value = redis::cmd("THROTTLE.REFUND")
        .arg("b0")
        .arg(1)
        .query(m)
        .unwrap();
    let ptx: &[&str] = &["PERMIT", "ptx", "70000", "3", "BLOCK", "0"];
    let _: Vec<Vec<i64>> = multi(
        m,
        &[
            &["THROTTLE", "tx", "0.01", "2", "300"],
            &["THROTTLE", "tx", "0.01", "2", "300", "2"],
            ptx,
            ptx,
        ],
    );
    let _: Vec<i64> = redis::cmd("EVAL")
        .arg(
            "local out = {}
             for i = 1, 4 do
                 out[i] = redis.call('THROTTLE', KEYS[1], '0.01', '1', '300')[1]
             end
             redis.call('PERMIT', KEYS[2], '80000', '3')
             return out",
        )
        .arg(2)
        .arg("lua")
        .arg("plua")
        .query(m)
        .unwrap();
}

#[test]
fn a_slow_replica_ends_byte_identical() {
    let mut pair = Pair::start_with_module_args(&[], &["test-clock", "yes"]);
    let mut m = pair.master.conn();
    write_mix(&mut m, 0);
    pair.sync();
    // The replica is busy for a second while the master keeps deciding.
    let mut busy = pair.replica.conn();
    let sleeper = thread::spawn(move || {
        let _: () = redis::cmd("DEBUG")
            .arg("SLEEP")
            .arg(1)
            .query(&mut busy)
            .unwrap();
    });
    thread::sleep(Duration::from_millis(50));
    for round in 1..6 {
        write_mix(&mut m, round);
        thread::sleep(Duration::from_millis(120));
    }
    // A THROTTLE ... WAIT held on the master: its effect is propagated
    // when it is decided, not when it is answered.
    // (10 rps, limit 100: drained, then one token reserved 100 ms ahead.)
    tolerate_late_releases(&mut m);
    throttle(&mut m, "waited", &["10", "100", "0.1", "100"]);
    let mut wc = conn_with_timeout(&pair.master, 10);
    let waited = throttle(
        &mut wc,
        "waited",
        &["10", "100", "0.1", "1", "WAIT", "1000"],
    );
    assert_eq!(waited[0], 1);
    sleeper.join().unwrap();
    pair.sync();

    let mut r = pair.replica.conn();
    let keys = all_keys(&mut m);
    assert!(keys.len() >= 15, "{keys:?}");
    assert_eq!(all_keys(&mut r), keys);
    let on_master = snapshot(&mut m, &keys);
    let on_replica = snapshot(&mut r, &keys);
    for (a, b) in on_master.iter().zip(&on_replica) {
        assert_eq!(a, b, "{:?} differs", String::from_utf8_lossy(&a.0));
    }
    for k in &keys {
        assert_eq!(digest_value(&mut m, k), digest_value(&mut r, k));
    }
    assert_eq!(digest(&mut m), digest(&mut r));
    // Reads on the replica answer exactly as the master does, both asked at
    // the same instant of their test clocks (the state is absolute time).
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query(&mut m).unwrap();
    let at = secs * 1_000_000 + micros;
    for c in [&mut m, &mut r] {
        let () = redis::cmd("THROTTLE.CLOCK")
            .arg("FREEZE")
            .arg(at)
            .query(c)
            .unwrap();
    }
    for args in [["0.01", "1", "500"], ["0.001", "3", "1000"]] {
        for k in ["b3", "drained"] {
            assert_eq!(
                peek(&mut m, k, &args),
                peek(&mut r, k, &args),
                "{k} {args:?}"
            );
        }
    }
    for c in [&mut m, &mut r] {
        let () = redis::cmd("THROTTLE.CLOCK").arg("REAL").query(c).unwrap();
    }
    pair.assert_healthy();
}

#[test]
fn the_replica_refuses_writes_but_serves_peek() {
    let mut pair = Pair::start();
    let mut m = pair.master.conn();
    throttle(&mut m, "k", &["0.01", "1", "500", "2"]);
    pair.sync();
    let mut r = pair.replica.conn();
    let e = expect_err(
        &mut r,
        redis::cmd("THROTTLE").arg("k").arg(&["0.01", "1", "500"]),
    );
    assert!(e.starts_with("READONLY"), "{e}");
    let e = expect_err(&mut r, redis::cmd("PERMIT").arg("p").arg(&["100", "1"]));
    assert!(e.starts_with("READONLY"), "{e}");
    assert_eq!(tokens_left(&mut r, "k", &["0.01", "1", "500"]), 3);
    pair.assert_healthy();
}

/// Nothing that leaves the data alone reaches the replication stream.
#[test]
fn calls_that_change_nothing_propagate_nothing() {
    let mut pair = Pair::start();
    let mut m = pair.master.conn();
    throttle(&mut m, "k", &["0.01", "1", "100"]); // limit 1, now empty
    permit(&mut m, "p", &["100000", "0"]);
    let _: () = redis::cmd("SET").arg("str").arg("v").query(&mut m).unwrap();
    pair.sync();
    let offset = |c: &mut Connection| -> i64 {
        info(c, "replication")["master_repl_offset"]
            .parse()
            .unwrap()
    };
    let o0 = offset(&mut m);
    assert_eq!(throttle(&mut m, "k", &["0.01", "1", "100"])[0], 0);
    assert_eq!(throttle(&mut m, "k", &["0.01", "1", "100", "0"])[0], 1);
    assert_eq!(throttle(&mut m, "k", &["0.01", "1", "100", "5"])[2], -1);
    assert_eq!(throttle(&mut m, "k", &["0", "1", "100"])[0], 0);
    assert_eq!(throttle(&mut m, "k", &["-1", "1", "100"])[0], 1);
    assert_eq!(
        throttle(&mut m, "k", &["0.01", "1", "100", "1", "WAIT", "5"])[0],
        0
    );
    assert_eq!(throttle(&mut m, "new", &["0.01", "1", "100", "0"])[0], 1);
    peek(&mut m, "k", &["0.01", "1", "100"]);
    assert_eq!(permit(&mut m, "p", &["100000", "0"]), None);
    let _ = expect_err(
        &mut m,
        redis::cmd("THROTTLE").arg("k").arg(&["x", "1", "1"]),
    );
    let _ = expect_err(
        &mut m,
        redis::cmd("THROTTLE").arg("str").arg(&["1", "1", "1"]),
    );
    let _ = expect_err(&mut m, redis::cmd("PERMIT").arg("k").arg(&["1", "1"]));
    assert_eq!(offset(&mut m), o0, "something was propagated");
    pair.assert_healthy();
}

/// The AOF files of a server directory, by kind.
fn aof_files(dir: &Path) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut base = Vec::new();
    let mut incr = Vec::new();
    for e in std::fs::read_dir(dir.join("appendonlydir")).expect("appendonlydir") {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        let bytes = std::fs::read(&p).unwrap();
        if name.ends_with(".base.aof") || name.ends_with(".base.rdb") {
            base.push(bytes);
        } else if name.ends_with(".incr.aof") {
            incr.push(bytes);
        }
    }
    (base, incr)
}

/// Only effects in the AOF: never THROTTLE or PERMIT themselves.
fn assert_only_effects(stream: &[u8], allowed: &[&str]) {
    let names: BTreeSet<String> = resp_command_names(stream).into_iter().collect();
    for n in &names {
        assert!(
            allowed.contains(&n.as_str()),
            "the AOF holds {n}: {names:?}"
        );
    }
}

/// Writes state with AOF on, optionally rewrites the AOF, kills the
/// server, waits more than a second, restarts it from the same directory
/// and expects the very same dataset (values and absolute expiries).
fn aof_round_trip(preamble: &str, rewrite: bool) {
    let args = [
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--aof-use-rdb-preamble",
        preamble,
    ];
    let mut s = Server::builder().args(args).start();
    let dir = ScratchDir::adopt(&mut s);
    let mut c = s.conn();
    write_mix(&mut c, 0);
    if rewrite {
        let _: String = redis::cmd("BGREWRITEAOF").query(&mut c).unwrap();
        wait_for(Duration::from_secs(10), "the AOF rewrite", || {
            let i = info(&mut c, "persistence");
            (i["aof_rewrite_in_progress"] == "0" && i["aof_rewrite_scheduled"] == "0")
                .then(|| assert_eq!(i["aof_last_bgrewrite_status"], "ok"))
        });
        // More writes after the rewrite land in the new incremental file.
        write_mix(&mut c, 1);
    }
    // Drain one bucket completely: after the restart it must have refilled
    // by the elapsed time only.
    throttle(&mut c, "refill", &["2", "1", "10", "20"]);
    let keys = all_keys(&mut c);
    assert!(keys.len() >= 15, "{keys:?}");
    let before = snapshot(&mut c, &keys);
    let digest0 = digest(&mut c);

    let (base, incr) = aof_files(dir.path());
    let effects = ["SELECT", "THROTTLE.APPLY", "MULTI", "EXEC"];
    for f in &incr {
        assert_only_effects(f, &effects);
    }
    if rewrite && preamble == "no" {
        // aof_rewrite emits THROTTLE.APPLY and Redis adds PEXPIREAT.
        let b = base.concat();
        let names = resp_command_names(&b);
        assert!(names.iter().any(|n| n == "THROTTLE.APPLY"), "{names:?}");
        assert!(names.iter().any(|n| n == "PEXPIREAT"), "{names:?}");
        assert_only_effects(&b, &["SELECT", "THROTTLE.APPLY", "PEXPIREAT"]);
    }
    if rewrite && preamble == "yes" {
        assert!(
            // The RDB magic: "REDIS00nn" (Redis), "VALKEY0nn" (Valkey 9+).
            base.iter()
                .any(|b| b.starts_with(b"REDIS") || b.starts_with(b"VALKEY")),
            "no RDB preamble"
        );
    }

    s.kill();
    drop(s);
    thread::sleep(Duration::from_millis(1100));
    let mut s = Server::builder().dir(dir.path()).args(args).start();
    let mut c = s.conn();
    assert_eq!(all_keys(&mut c), keys);
    assert_eq!(snapshot(&mut c, &keys), before);
    assert_eq!(digest(&mut c), digest0);
    // The drained bucket refilled by the time that passed (2 rps, > 1 s),
    // and not more than that.
    let left = tokens_left(&mut c, "refill", &["2", "1", "10"]);
    assert!((2..=10).contains(&left), "refilled {left} tokens");
    assert_healthy(&mut s);
}

#[test]
fn aof_replay_after_a_delay_rebuilds_identical_state() {
    aof_round_trip("no", false);
}

#[test]
fn aof_with_rdb_preamble_replays_identically() {
    aof_round_trip("yes", false);
}

#[test]
fn aof_rewrite_without_preamble_replays_identically() {
    aof_round_trip("no", true);
}

#[test]
fn aof_rewrite_with_rdb_preamble_replays_identically() {
    aof_round_trip("yes", true);
}

/// A replica that starts from an RDB snapshot of a master with state (full
/// sync), then follows the stream, also matches.
#[test]
fn full_sync_carries_the_module_types() {
    let master = Server::start();
    let mut m = master.conn();
    write_mix(&mut m, 0);
    let port = master.port().to_string();
    let replica = Server::builder()
        .args(["--replicaof", "127.0.0.1", port.as_str()])
        .args(["--propagation-error-behavior", "panic"])
        .start();
    let mut pair = Pair { master, replica };
    let mut r = pair.replica.conn();
    wait_for(Duration::from_secs(10), "the initial sync", || {
        let i = info(&mut r, "replication");
        (i.get("master_link_status").map(String::as_str) == Some("up")).then_some(())
    });
    write_mix(&mut m, 1);
    pair.sync();
    let keys = all_keys(&mut m);
    assert_eq!(all_keys(&mut r), keys);
    assert_eq!(snapshot(&mut m, &keys), snapshot(&mut r, &keys));
    assert_eq!(digest(&mut m), digest(&mut r));
    pair.assert_healthy();
}
