//! Operating limits (issue 4) against real servers: THROTTLE.PEEK on a
//! replica and in read-only scripts, knobs (SET/GET/RESET) overriding
//! callers and expiring, refunds, THROTTLE.ALL all-or-nothing, INFO,
//! keyspace notifications, module configs, and COMMAND INFO/DOCS/GETKEYS.

use std::collections::HashMap;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use redis::{Connection, Value};
use testkit::{Server, wait_for};

fn throttle(c: &mut Connection, args: &[&str]) -> Vec<i64> {
    redis::cmd("THROTTLE").arg(args).query(c).expect("THROTTLE")
}

fn cmd<T: redis::FromRedisValue>(
    c: &mut Connection,
    name: &str,
    args: &[&str],
) -> redis::RedisResult<T> {
    redis::cmd(name).arg(args).query(c)
}

fn err(c: &mut Connection, name: &str, args: &[&str]) -> String {
    match redis::cmd(name).arg(args).query::<Value>(c) {
        Ok(v) => panic!("{name} {args:?} should fail, got {v:?}"),
        // "CODE detail", as redis-cli shows it.
        Err(e) => format!("{} {}", e.code().unwrap_or("?"), e.detail().unwrap_or("")),
    }
}

fn dump(c: &mut Connection, key: &str) -> Option<Vec<u8>> {
    redis::cmd("DUMP").arg(key).query(c).expect("DUMP")
}

/// THROTTLE.GET as a field → value map (values rendered as strings).
fn get(c: &mut Connection, key: &str) -> Option<HashMap<String, String>> {
    let v: Value = cmd(c, "THROTTLE.GET", &[key]).expect("THROTTLE.GET");
    let items = match v {
        Value::Nil => return None,
        Value::Array(items) => items,
        Value::Map(pairs) => pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
        other => panic!("unexpected THROTTLE.GET reply {other:?}"),
    };
    let text = |v: &Value| match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::Int(i) => i.to_string(),
        other => format!("{other:?}"),
    };
    Some(
        items
            .chunks(2)
            .map(|p| (text(&p[0]), text(&p[1])))
            .collect(),
    )
}

fn info(c: &mut Connection) -> HashMap<String, u64> {
    let s: String = cmd(c, "INFO", &["throttle"]).expect("INFO");
    s.lines()
        .filter_map(|l| l.split_once(':'))
        .filter_map(|(k, v)| Some((k.to_string(), v.trim().parse().ok()?)))
        .collect()
}

#[test]
fn peek_writes_nothing_and_matches_throttle() {
    let s = Server::start();
    let mut c = s.conn();
    assert_eq!(
        cmd::<Vec<i64>>(&mut c, "THROTTLE.PEEK", &["k", "1", "1", "10"]).unwrap(),
        vec![1, 9, 0, 1000, 10]
    );
    assert_eq!(
        cmd::<i64>(&mut c, "EXISTS", &["k"]).unwrap(),
        0,
        "PEEK created a key"
    );
    throttle(&mut c, &["k", "0.001", "1", "10000", "4"]);
    let before = dump(&mut c, "k");
    let pttl: i64 = cmd(&mut c, "PTTL", &["k"]).unwrap();
    let peek: Vec<i64> = cmd(&mut c, "THROTTLE.PEEK", &["k", "0.001", "1", "10000", "3"]).unwrap();
    assert_eq!(&peek[..2], &[1, 3]);
    assert_eq!(dump(&mut c, "k"), before, "PEEK changed the state");
    assert!(
        cmd::<i64>(&mut c, "PTTL", &["k"]).unwrap() <= pttl,
        "PEEK refreshed the TTL"
    );
    // The same call through THROTTLE gives the same reply.
    assert_eq!(
        &throttle(&mut c, &["k", "0.001", "1", "10000", "3"])[..3],
        &peek[..3]
    );
    assert!(
        err(
            &mut c,
            "THROTTLE.PEEK",
            &["k", "1", "1", "1", "1", "WAIT", "10"]
        )
        .contains("syntax error")
    );
}

#[test]
fn peek_runs_in_read_only_scripts_and_on_replicas() {
    let master = Server::start();
    let replica = Server::builder()
        .args(["--replicaof", "127.0.0.1", &master.port().to_string()])
        .start();
    let mut m = master.conn();
    let mut r = replica.conn();
    // EVAL_RO and a no-writes function-style script.
    let v: Vec<i64> = redis::cmd("EVAL_RO")
        .arg("return redis.call('THROTTLE.PEEK', KEYS[1], 5, 2, 8)")
        .arg(1)
        .arg("ro")
        .query(&mut m)
        .unwrap();
    assert_eq!(v, vec![1, 79, 0, 200, 80]);
    let v: Vec<i64> = redis::cmd("EVAL")
        .arg("#!lua flags=no-writes\nreturn redis.call('THROTTLE.PEEK', KEYS[1], 5, 2, 8)")
        .arg(1)
        .arg("ro")
        .query(&mut m)
        .unwrap();
    assert_eq!(v[4], 80);
    let e = redis::cmd("EVAL_RO")
        .arg("return redis.call('THROTTLE', KEYS[1], 5, 2, 8)")
        .arg(1)
        .arg("ro")
        .query::<Value>(&mut m)
        .unwrap_err();
    assert!(
        e.to_string().contains("Write commands are not allowed"),
        "{e}"
    );
    // On the replica: PEEK and GET answer what the master has; THROTTLE is refused.
    throttle(&mut m, &["k", "0.001", "1", "10000", "4"]);
    let _: i64 = cmd(&mut m, "WAIT", &["1", "5000"]).unwrap();
    wait_for(Duration::from_secs(5), "replica has k", || {
        (cmd::<i64>(&mut r, "EXISTS", &["k"]).ok()? == 1).then_some(())
    });
    let on_replica: Vec<i64> = cmd(&mut r, "THROTTLE.PEEK", &["k", "0.001", "1", "10000"]).unwrap();
    let on_master: Vec<i64> = cmd(&mut m, "THROTTLE.PEEK", &["k", "0.001", "1", "10000"]).unwrap();
    assert_eq!(on_replica[..3], on_master[..3]);
    assert_eq!(get(&mut r, "k").unwrap()["tokens"], "6");
    assert!(err(&mut r, "THROTTLE", &["k", "1", "1", "1"]).contains("READONLY"));
}

#[test]
fn knobs_override_callers_keep_tokens_and_reset() {
    let s = Server::start();
    let mut c = s.conn();
    // 4 of 10 used.
    throttle(&mut c, &["k", "0.001", "1", "10000", "4"]);
    assert!(
        err(&mut c, "THROTTLE.SET", &["k", "RPS", "1"]).contains("must give RPS, BURST and WINDOW")
    );
    let _: () = cmd(
        &mut c,
        "THROTTLE.SET",
        &["k", "RPS", "0.001", "BURST", "1", "WINDOW", "100000"],
    )
    .unwrap();
    let g = get(&mut c, "k").unwrap();
    assert_eq!(g["source"], "knobs");
    assert_eq!(
        g["tokens"], "6",
        "a knob change must keep the tokens held (no free burst)"
    );
    assert_eq!(g["limit"], "100");
    assert_eq!(
        (g["rps"].as_str(), g["burst"].as_str(), g["window"].as_str()),
        ("0.001", "1", "100000")
    );
    // Callers' own arguments no longer matter.
    assert_eq!(throttle(&mut c, &["k", "1000", "1000", "1000"])[4], 100);
    // A subset change; the capacity shrinks below the tokens held → capped.
    let _: () = cmd(&mut c, "THROTTLE.SET", &["k", "WINDOW", "3000"]).unwrap();
    let g = get(&mut c, "k").unwrap();
    assert_eq!((g["limit"].as_str(), g["tokens"].as_str()), ("3", "3"));
    // RPS 0 stops every caller; RPS -1 lets every caller through.
    let _: () = cmd(&mut c, "THROTTLE.SET", &["k", "RPS", "0"]).unwrap();
    assert_eq!(
        throttle(&mut c, &["k", "5", "2", "8"]),
        vec![0, 0, 3_000_000, 0, 0]
    );
    let _: () = cmd(&mut c, "THROTTLE.SET", &["k", "RPS", "-1"]).unwrap();
    assert_eq!(
        throttle(&mut c, &["k", "5", "2", "8"]),
        vec![1, -1, 0, 0, -1]
    );
    // RESET removes the knobs and keeps the bucket.
    assert_eq!(cmd::<i64>(&mut c, "THROTTLE.RESET", &["k"]).unwrap(), 1);
    assert_eq!(cmd::<i64>(&mut c, "THROTTLE.RESET", &["k"]).unwrap(), 0);
    let g = get(&mut c, "k").unwrap();
    assert_eq!(
        (g["source"].as_str(), g["knobs_ttl_ms"].as_str()),
        ("last-call", "-1")
    );
    assert_eq!(g["tokens"], "3");
    assert_eq!(throttle(&mut c, &["k", "0.001", "1", "10000"])[..2], [1, 2]);
    // DEL removes everything; GET of a missing key is nil.
    let _: i64 = cmd(&mut c, "DEL", &["k"]).unwrap();
    assert!(get(&mut c, "k").is_none());
    // Bad input.
    for (args, want) in [
        (
            &["k", "RPS", "abc"][..],
            "rps is not a valid decimal number",
        ),
        (&["k", "BURST", "0"][..], "burst must be"),
        (&["k", "WINDOW", "-1"][..], "window must be"),
        (&["k", "TTL", "0"][..], "TTL must be"),
        (&["k", "RPS"][..], "syntax error"),
        (&["k", "SPEED", "1"][..], "syntax error"),
        (&["k", "RPS", "1", "RPS", "2"][..], "syntax error"),
    ] {
        assert!(err(&mut c, "THROTTLE.SET", args).contains(want), "{args:?}");
    }
    assert_eq!(
        cmd::<i64>(&mut c, "EXISTS", &["k"]).unwrap(),
        0,
        "a refused SET created the key"
    );
}

#[test]
fn knobs_expire_and_calls_push_their_expiry() {
    let s = Server::start();
    let mut c = s.conn();
    let _: () = cmd(
        &mut c,
        "THROTTLE.SET",
        &[
            "k", "RPS", "0.001", "BURST", "1", "WINDOW", "2000", "TTL", "1",
        ],
    )
    .unwrap();
    let ttl: i64 = get(&mut c, "k").unwrap()["knobs_ttl_ms"].parse().unwrap();
    assert!((900..=1000).contains(&ttl), "{ttl}");
    assert_eq!(throttle(&mut c, &["k", "5", "2", "8"])[4], 2, "knobs apply");
    // Every THROTTLE that writes pushes the knobs' expiry out again.
    std::thread::sleep(Duration::from_millis(300));
    let ttl: i64 = get(&mut c, "k").unwrap()["knobs_ttl_ms"].parse().unwrap();
    assert!(ttl <= 700, "{ttl}");
    throttle(&mut c, &["k", "5", "2", "8"]);
    let ttl: i64 = get(&mut c, "k").unwrap()["knobs_ttl_ms"].parse().unwrap();
    assert!(ttl >= 950, "THROTTLE did not push the knobs' expiry: {ttl}");
    std::thread::sleep(Duration::from_millis(1100));
    // A call 1.1 s after the last push: the knobs have expired, the caller's limit applies.
    let r = throttle(&mut c, &["k", "5", "2", "8"]);
    assert_eq!(r[4], 80, "expired knobs still applied: {r:?}");
    assert_eq!(get(&mut c, "k").unwrap()["source"], "last-call");
}

#[test]
fn knobs_ttl_default_comes_from_config_and_load_arguments() {
    let s = Server::builder().module_args(["knobs-ttl", "3600"]).start();
    let mut c = s.conn();
    let v: Vec<String> = cmd(&mut c, "CONFIG", &["GET", "throttle.knobs-ttl"]).unwrap();
    assert_eq!(v, vec!["throttle.knobs-ttl", "3600"]);
    let _: () = cmd(
        &mut c,
        "THROTTLE.SET",
        &["a", "RPS", "1", "BURST", "1", "WINDOW", "1"],
    )
    .unwrap();
    let ttl: i64 = get(&mut c, "a").unwrap()["knobs_ttl_ms"].parse().unwrap();
    assert!((3_599_000..=3_600_000).contains(&ttl), "{ttl}");
    let _: () = cmd(&mut c, "CONFIG", &["SET", "throttle.knobs-ttl", "60"]).unwrap();
    let _: () = cmd(
        &mut c,
        "THROTTLE.SET",
        &["b", "RPS", "1", "BURST", "1", "WINDOW", "1"],
    )
    .unwrap();
    let ttl: i64 = get(&mut c, "b").unwrap()["knobs_ttl_ms"].parse().unwrap();
    assert!((59_000..=60_000).contains(&ttl), "{ttl}");
    assert!(
        err(&mut c, "CONFIG", &["SET", "throttle.knobs-ttl", "0"])
            .contains("argument must be between")
    );
    // PERMIT's default grace: 10% → 50%.
    let _: Vec<i64> = cmd(&mut c, "PERMIT", &["p", "1000", "5"]).unwrap();
    let r: Vec<i64> = cmd(&mut c, "PERMIT", &["p", "1000", "5"]).unwrap();
    assert_eq!(r[2] - r[1], 100);
    let _: () = cmd(
        &mut c,
        "CONFIG",
        &["SET", "throttle.permit-grace-percent", "50"],
    )
    .unwrap();
    let r: Vec<i64> = cmd(&mut c, "PERMIT", &["p", "1000", "5"]).unwrap();
    assert_eq!(r[2] - r[1], 500);
}

#[test]
fn bad_module_arguments_refuse_to_load() {
    let mut s = Server::builder()
        .args(["--enable-module-command", "yes"])
        .start();
    let mut c = s.conn();
    let so = testkit::module_path();
    let so = so.to_str().unwrap();
    let e = err(
        &mut c,
        "MODULE",
        &["LOADEX", so, "ARGS", "knobs-ttl", "abc"],
    );
    assert!(e.contains("Error loading the extension"), "{e}");
    assert!(s.is_alive());
}

#[test]
fn refunds_are_capped_at_the_limit() {
    let s = Server::start();
    let mut c = s.conn();
    throttle(&mut c, &["k", "0.001", "1", "5000", "3"]);
    assert_eq!(
        cmd::<i64>(&mut c, "THROTTLE.REFUND", &["k", "1"]).unwrap(),
        3
    );
    assert_eq!(
        cmd::<i64>(&mut c, "THROTTLE.REFUND", &["k", "100"]).unwrap(),
        5
    );
    assert_eq!(
        cmd::<Option<i64>>(&mut c, "THROTTLE.REFUND", &["missing", "1"]).unwrap(),
        None
    );
    assert!(err(&mut c, "THROTTLE.REFUND", &["k", "-1"]).contains("tokens must be"));
    assert!(err(&mut c, "THROTTLE.REFUND", &["k"]).contains("wrong number of arguments"));
    let _: () = cmd(&mut c, "SET", &["s", "x"]).unwrap();
    assert!(err(&mut c, "THROTTLE.REFUND", &["s", "1"]).starts_with("WRONGTYPE"));
}

#[test]
fn all_is_all_or_nothing() {
    let s = Server::start();
    let mut c = s.conn();
    let call = |c: &mut Connection| -> Value {
        cmd(
            c,
            "THROTTLE.ALL",
            &[
                "1", "{u}:sec", "0.001", "1", "3000", "{u}:hour", "0.001", "1", "5000",
            ],
        )
        .unwrap()
    };
    let ints = |v: &Value| -> (i64, i64, i64, Vec<i64>) {
        let Value::Array(a) = v else { panic!("{v:?}") };
        let i = |x: &Value| match x {
            Value::Int(n) => *n,
            o => panic!("{o:?}"),
        };
        let Value::Array(rem) = &a[3] else {
            panic!("{a:?}")
        };
        (i(&a[0]), i(&a[1]), i(&a[2]), rem.iter().map(i).collect())
    };
    for n in (0..3).rev() {
        assert_eq!(ints(&call(&mut c)), (1, 0, 0, vec![n, n + 2]));
    }
    let before = dump(&mut c, "{u}:hour");
    let (allowed, denied_by, retry, rem) = ints(&call(&mut c));
    assert_eq!((allowed, denied_by, rem), (0, 1, vec![0, 2]));
    assert!(retry > 900_000, "{retry}");
    assert_eq!(
        dump(&mut c, "{u}:hour"),
        before,
        "a refused THROTTLE.ALL consumed from another limit"
    );
    // Errors, and a wrong-typed key leaves the others untouched.
    assert!(
        err(&mut c, "THROTTLE.ALL", &["1", "a", "1", "1"]).contains("wrong number of arguments")
    );
    assert!(
        err(
            &mut c,
            "THROTTLE.ALL",
            &["1", "a", "1", "1", "1", "a", "1", "1", "1"]
        )
        .contains("same key twice")
    );
    let _: () = cmd(&mut c, "SET", &["{u}:str", "x"]).unwrap();
    let e = err(
        &mut c,
        "THROTTLE.ALL",
        &["1", "{u}:new", "1", "1", "10", "{u}:str", "1", "1", "1"],
    );
    assert!(e.starts_with("WRONGTYPE"), "{e}");
    assert_eq!(cmd::<i64>(&mut c, "EXISTS", &["{u}:new"]).unwrap(), 0);
    let keys: Vec<String> = cmd(
        &mut c,
        "COMMAND",
        &[
            "GETKEYS",
            "THROTTLE.ALL",
            "1",
            "a",
            "1",
            "1",
            "1",
            "b",
            "1",
            "1",
            "1",
        ],
    )
    .unwrap();
    assert_eq!(keys, vec!["a", "b"]);
}

#[test]
fn all_admits_exactly_the_tightest_limit_under_20_concurrent_clients() {
    let s = Server::start();
    let barrier = Arc::new(Barrier::new(20));
    let handles: Vec<_> = (0..20)
        .map(|_| {
            let mut c = s.conn();
            let b = barrier.clone();
            std::thread::spawn(move || {
                b.wait();
                let mut allowed = 0;
                for _ in 0..10 {
                    let v: Value = cmd(
                        &mut c,
                        "THROTTLE.ALL",
                        &[
                            "1", "{t}:a", "0.001", "1", "50000", "{t}:b", "0.001", "1", "30000",
                        ],
                    )
                    .unwrap();
                    if let Value::Array(a) = v {
                        if a[0] == Value::Int(1) {
                            allowed += 1;
                        }
                    }
                }
                allowed
            })
        })
        .collect();
    let total: i32 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(total, 30);
    let mut c = s.conn();
    assert_eq!(
        get(&mut c, "{t}:a").unwrap()["tokens"],
        "20",
        "the looser limit lost tokens on refusals"
    );
    assert_eq!(get(&mut c, "{t}:b").unwrap()["tokens"], "0");
}

#[test]
fn info_counts_calls_and_keys() {
    let s = Server::start();
    let mut c = s.conn();
    let before = info(&mut c);
    throttle(&mut c, &["a", "0.001", "1", "2000"]);
    throttle(&mut c, &["a", "0.001", "1", "2000"]);
    throttle(&mut c, &["a", "0.001", "1", "2000"]);
    let _: Option<Vec<i64>> = cmd(&mut c, "PERMIT", &["p", "100000", "0"]).unwrap();
    let _: Option<Vec<i64>> = cmd(&mut c, "PERMIT", &["p", "100000", "0"]).unwrap();
    let after = info(&mut c);
    let d = |k: &str| after[k] - before.get(k).copied().unwrap_or(0);
    assert_eq!(
        (
            d("throttle_throttle_calls"),
            d("throttle_throttle_allowed"),
            d("throttle_throttle_denied")
        ),
        (3, 2, 1)
    );
    assert_eq!(d("throttle_tokens_consumed"), 2);
    assert_eq!(
        (
            d("throttle_permit_calls"),
            d("throttle_permit_immediate"),
            d("throttle_permit_refused")
        ),
        (2, 1, 1)
    );
    assert_eq!(
        (after["throttle_bucket_keys"], after["throttle_permit_keys"]),
        (1, 1)
    );
    let _: i64 = cmd(&mut c, "DEL", &["a", "p"]).unwrap();
    let after = info(&mut c);
    assert_eq!(
        (after["throttle_bucket_keys"], after["throttle_permit_keys"]),
        (0, 0)
    );
}

#[test]
fn keyspace_notifications_name_the_event() {
    let s = Server::start();
    let mut c = s.conn();
    let _: () = cmd(&mut c, "CONFIG", &["SET", "notify-keyspace-events", "Kd"]).unwrap();
    let mut sub = s.conn();
    sub.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut ps = sub.as_pubsub();
    ps.psubscribe("__keyspace@0__:*").unwrap();
    throttle(&mut c, &["k", "1", "1", "10"]);
    let _: () = cmd(
        &mut c,
        "THROTTLE.SET",
        &["k", "RPS", "1", "BURST", "1", "WINDOW", "10"],
    )
    .unwrap();
    let _: i64 = cmd(&mut c, "THROTTLE.REFUND", &["k", "1"]).unwrap();
    let _: i64 = cmd(&mut c, "THROTTLE.RESET", &["k"]).unwrap();
    let _: Vec<i64> = cmd(&mut c, "PERMIT", &["p", "10", "1"]).unwrap();
    let mut events = Vec::new();
    for _ in 0..5 {
        let m = ps.get_message().unwrap();
        events.push((
            m.get_channel_name().to_string(),
            m.get_payload::<String>().unwrap(),
        ));
    }
    assert_eq!(
        events,
        vec![
            ("__keyspace@0__:k".into(), "throttle".into()),
            ("__keyspace@0__:k".into(), "throttle.set".into()),
            ("__keyspace@0__:k".into(), "throttle.refund".into()),
            ("__keyspace@0__:k".into(), "throttle.reset".into()),
            ("__keyspace@0__:p".into(), "permit".into()),
        ]
    );
}

#[test]
fn command_info_docs_and_getkeys_for_every_command() {
    let s = Server::start();
    let mut c = s.conn();
    let table: &[(&str, i64, &[&str], &[&str])] = &[
        (
            "throttle",
            -5,
            &["write", "denyoom", "fast"],
            &["THROTTLE", "k", "1", "1", "1"],
        ),
        (
            "throttle.peek",
            -5,
            &["readonly", "fast"],
            &["THROTTLE.PEEK", "k", "1", "1", "1"],
        ),
        (
            "permit",
            -4,
            &["write", "denyoom", "fast"],
            &["PERMIT", "k", "1", "1"],
        ),
        (
            "throttle.set",
            -2,
            &["write", "denyoom", "fast"],
            &["THROTTLE.SET", "k", "RPS", "1"],
        ),
        (
            "throttle.get",
            2,
            &["readonly", "fast"],
            &["THROTTLE.GET", "k"],
        ),
        (
            "throttle.reset",
            2,
            &["write", "fast"],
            &["THROTTLE.RESET", "k"],
        ),
        (
            "throttle.refund",
            3,
            &["write", "denyoom", "fast"],
            &["THROTTLE.REFUND", "k", "1"],
        ),
        (
            "throttle.apply",
            4,
            &["write", "denyoom"],
            &["THROTTLE.APPLY", "k", "x", "0"],
        ),
    ];
    for (name, arity, flags, call) in table {
        let v: Value = cmd(&mut c, "COMMAND", &["INFO", name]).unwrap();
        let Value::Array(outer) = v else {
            panic!("{v:?}")
        };
        let Value::Array(info) = &outer[0] else {
            panic!("no COMMAND INFO for {name}: {outer:?}")
        };
        assert_eq!(info[1], Value::Int(*arity), "{name} arity");
        let Value::Array(got) = &info[2] else {
            panic!()
        };
        for f in *flags {
            assert!(
                got.iter()
                    .any(|g| matches!(g, Value::SimpleString(s) if s == f)),
                "{name} lacks flag {f}: {got:?}"
            );
        }
        let mut getkeys = vec!["GETKEYS"];
        getkeys.extend_from_slice(call);
        let keys: Vec<String> = cmd(&mut c, "COMMAND", &getkeys).unwrap();
        assert_eq!(keys, vec!["k"], "{name}");
        let docs: Value = cmd(&mut c, "COMMAND", &["DOCS", name]).unwrap();
        let text = format!("{docs:?}");
        assert!(
            text.contains("summary") && text.contains("arguments"),
            "{name} docs: {text}"
        );
    }
}

/// A call that changes nothing leaves a WATCH on its key intact; a write
/// invalidates it, as any Redis write does.
#[test]
fn watch_sees_writes_but_not_denied_calls() {
    let s = Server::start();
    let mut w = s.conn();
    let mut c = s.conn();
    let exec = |w: &mut Connection| -> Value {
        let _: () = cmd(w, "MULTI", &[]).unwrap();
        let _: Value = cmd(w, "PING", &[]).unwrap();
        cmd(w, "EXEC", &[]).unwrap()
    };
    // Capacity 1, one token per 1000 s: the first call drains it.
    assert_eq!(throttle(&mut c, &["k", "0.001", "1", "1000"])[0], 1);
    for denied in [
        &["THROTTLE", "k", "0.001", "1", "1000"][..],
        &["THROTTLE.PEEK", "k", "0.001", "1", "1000"][..],
        &["THROTTLE.ALL", "1", "k", "0.001", "1", "1000"][..],
        &["THROTTLE.RESET", "k"][..],
    ] {
        let _: () = cmd(&mut w, "WATCH", &["k"]).unwrap();
        let _: Value = cmd(&mut c, denied[0], &denied[1..]).unwrap();
        assert_ne!(
            exec(&mut w),
            Value::Nil,
            "{denied:?} invalidated a WATCH without writing"
        );
    }
    let _: () = cmd(&mut w, "WATCH", &["k"]).unwrap();
    let _: i64 = cmd(&mut c, "THROTTLE.REFUND", &["k", "1"]).unwrap();
    assert_eq!(
        exec(&mut w),
        Value::Nil,
        "a refund is a write: WATCH must fail"
    );
    let _: () = cmd(&mut w, "WATCH", &["p"]).unwrap();
    let _: Vec<i64> = cmd(&mut c, "PERMIT", &["p", "1000", "0"]).unwrap();
    assert_eq!(
        exec(&mut w),
        Value::Nil,
        "a granted permit is a write: WATCH must fail"
    );
    let _: () = cmd(&mut w, "WATCH", &["p"]).unwrap();
    let refused: Option<Vec<i64>> = cmd(&mut c, "PERMIT", &["p", "1000", "0"]).unwrap();
    assert_eq!(refused, None);
    assert_ne!(
        exec(&mut w),
        Value::Nil,
        "a refused PERMIT invalidated a WATCH"
    );
}
