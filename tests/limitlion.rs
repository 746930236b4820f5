//! THROTTLE.LIMITLION against a real server with the module, beside
//! LimitLion's own script on the same server:
//!
//! - `the_command_and_the_script_answer_write_and_announce_the_same`:
//!   seeded random calls (knobs set, edited and removed, bad knobs,
//!   frozen-time steps) on twin keys, the script's and the command's: the
//!   same reply (or both an error), the same hashes, the same expiry, and
//!   the same keyspace events in the same order;
//! - `bad_input_is_refused_leaving_the_keys_as_they_were`;
//! - `replicas_and_the_aof_get_the_writes_not_the_command`: a replica ends
//!   with the master's hashes and expiries, deletes included, and the AOF
//!   holds HSET/PEXPIREAT/DEL (a restart from it gives the same data);
//! - `inside_multi_and_lua`.
//!
//! `tests/limitlion_lua.rs` checks the arithmetic itself (the core against
//! the script, 24,000 calls); `scripts/limitlion.sh` runs LimitLion's own
//! suite on the command.

mod common;

use std::collections::BTreeMap;

use common::*;
use redis::{Connection, Value};

const CMD: &str = "THROTTLE.LIMITLION";

/// SplitMix64, seeded (`LIMITLION_SEED` repeats a run).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

fn seed() -> u64 {
    std::env::var("LIMITLION_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x11AB_0001)
}

fn hgetall(c: &mut Connection, key: &str) -> BTreeMap<String, String> {
    redis::cmd("HGETALL").arg(key).query(c).unwrap()
}

/// One key as the test compares it: its type, its hash (if one) and its
/// absolute expiry in ms (-1 none, -2 no key).
fn key_state(c: &mut Connection, key: &str) -> (String, BTreeMap<String, String>, i64) {
    let kind = key_type(c, key);
    let hash = if kind == "hash" {
        hgetall(c, key)
    } else {
        BTreeMap::new()
    };
    (kind, hash, pexpiretime(c, key))
}

/// The reply as comparable text: `ok [a, t, "sleep"]` or `error`.
fn reply_text(v: &redis::RedisResult<Value>) -> String {
    match v {
        Ok(Value::Array(items)) => {
            let parts: Vec<String> = items
                .iter()
                .map(|i| match i {
                    Value::Int(n) => n.to_string(),
                    Value::BulkString(b) => format!("{:?}", String::from_utf8_lossy(b)),
                    other => format!("{other:?}"),
                })
                .collect();
            format!("ok [{}]", parts.join(", "))
        }
        Ok(other) => format!("ok {other:?}"),
        Err(_) => "error".into(),
    }
}

/// The keyspace events `sub` received since the last call, as (key,
/// event): this writes a marker key and reads up to its event, so every
/// event before it has arrived.
fn events_since(sub: &mut Connection, c: &mut Connection) -> Vec<(String, String)> {
    let _: () = redis::cmd("SET").arg("marker").arg("x").query(c).unwrap();
    let mut out = Vec::new();
    loop {
        let parts = match sub.recv_response() {
            Ok(Value::Array(parts)) | Ok(Value::Push { data: parts, .. }) => parts,
            Ok(_) => continue,
            Err(e) => panic!("the event subscription: {e}"),
        };
        let text = |v: &Value| match v {
            Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
            other => format!("{other:?}"),
        };
        if parts.len() != 4 || text(&parts[0]) != "pmessage" {
            continue;
        }
        let key = text(&parts[2]);
        let key = key
            .strip_prefix("__keyspace@0__:")
            .unwrap_or(&key)
            .to_string();
        if key == "marker" {
            return out;
        }
        out.push((key, text(&parts[3])));
    }
}

/// A subscriber to every keyspace event of db 0 (`notify-keyspace-events KA`).
fn subscriber(s: &Server, c: &mut Connection) -> Connection {
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("notify-keyspace-events")
        .arg("KA")
        .query(c)
        .unwrap();
    let mut sub = conn_with_timeout(s, 30);
    redis::cmd("PSUBSCRIBE")
        .arg("__keyspace@0__:*")
        .exec(&mut sub)
        .unwrap();
    events_since(&mut sub, c);
    sub
}

#[test]
fn the_command_and_the_script_answer_write_and_announce_the_same() {
    let s = Server::start();
    let mut c = s.conn();
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(limitlion_testing_script())
        .query(&mut c)
        .unwrap();
    let mut sub = subscriber(&s, &mut c);
    let mut rng = Rng(seed());
    let mut second: i64 = 1_800_000_000;
    let _: () = redis::cmd("MSET")
        .arg(&[
            "frozen_second",
            &second.to_string(),
            "frozen_microsecond",
            "0",
        ])
        .query(&mut c)
        .unwrap();
    let calls = 600;
    let (mut allowed, mut denied, mut errors) = (0, 0, 0);
    for i in 0..calls {
        let n = i % 4;
        let (lua, ours) = (format!("throttle:lua:{n}"), format!("throttle:mod:{n}"));
        // Knobs: set, hand-edited (even to junk), or removed, on both twins.
        if rng.chance(8) {
            let (field, value) = (
                rng.pick(&["rps", "burst", "window"]),
                rng.pick(&["1", "2", "0.5", "10", "1", "2", "0", "-1", "x", ""]),
            );
            for k in [&lua, &ours] {
                let _: () = redis::cmd("HSET")
                    .arg(format!("{k}:knobs"))
                    .arg(field)
                    .arg(value)
                    .query(&mut c)
                    .unwrap();
            }
        } else if rng.chance(12) {
            for k in [&lua, &ours] {
                let _: () = redis::cmd("DEL")
                    .arg(format!("{k}:knobs"))
                    .query(&mut c)
                    .unwrap();
            }
        }
        if rng.chance(30) {
            second += (rng.next() % 12) as i64;
            let us = (rng.next() % 1_000_000).to_string();
            let _: () = redis::cmd("MSET")
                .arg(&[
                    "frozen_second",
                    &second.to_string(),
                    "frozen_microsecond",
                    &us,
                ])
                .query(&mut c)
                .unwrap();
        }
        let args = [
            rng.pick(&["5", "2", "0.5", "1", "3.3", "0", "-1", "100"]),
            rng.pick(&["1", "2", "0.5", "3", "0.1"]),
            rng.pick(&["1", "5", "8", "2", "0.25"]),
            rng.pick(&["1", "1", "1", "2", "5", "0.5", "0"]),
            rng.pick(&["604800", "604800", "604800", "0", "-5", "10", "0.5"]),
        ];
        events_since(&mut sub, &mut c);
        // Both in one MULTI: the same server time for both (to the µs the
        // server takes between them).
        let mut pipe = redis::pipe();
        pipe.atomic().ignore_errors();
        pipe.cmd("EVALSHA").arg(&sha).arg(0).arg(&lua).arg(&args);
        pipe.cmd(CMD)
            .arg(&ours)
            .arg(format!("{ours}:knobs"))
            .arg(&args)
            .arg(&["CLOCK", "frozen_second", "frozen_microsecond"]);
        let replies: Vec<redis::RedisResult<Value>> = pipe
            .query::<Vec<Value>>(&mut c)
            .unwrap_or_else(|e| panic!("call {i} {args:?}: {e}"))
            .into_iter()
            .map(|v| match v {
                Value::ServerError(e) => Err(e.into()),
                v => Ok(v),
            })
            .collect();
        let (script, command) = (reply_text(&replies[0]), reply_text(&replies[1]));
        assert_eq!(script, command, "call {i} {args:?}");
        match &replies[1] {
            Ok(Value::Array(r)) if r[0] == Value::Int(1) => allowed += 1,
            Ok(_) => denied += 1,
            Err(_) => errors += 1,
        }
        for suffix in ["", ":knobs"] {
            let (a, b) = (format!("{lua}{suffix}"), format!("{ours}{suffix}"));
            let (sa, sb) = (key_state(&mut c, &a), key_state(&mut c, &b));
            assert_eq!(
                (&sa.0, &sa.1),
                (&sb.0, &sb.1),
                "call {i} {args:?}: {a} vs {b}"
            );
            // Expiries: both EXPIREs count from the same EXEC; 50 ms is
            // a generous bound for a server preempted between the two.
            assert_eq!(
                sa.2 < 0,
                sb.2 < 0,
                "call {i}: expiry of {a} {sa:?} vs {b} {sb:?}"
            );
            assert!(
                (sa.2 - sb.2).abs() <= 50,
                "call {i}: {a} {sa:?} vs {b} {sb:?}"
            );
        }
        let events = events_since(&mut sub, &mut c);
        let of = |prefix: &str| -> Vec<(String, String)> {
            events
                .iter()
                .filter(|(k, _)| k.starts_with(prefix))
                .map(|(k, e)| (k[prefix.len()..].to_string(), e.clone()))
                .collect()
        };
        assert_eq!(of(&lua), of(&ours), "call {i} {args:?}: events {events:?}");
    }
    eprintln!("{calls} calls: {allowed} allowed, {denied} denied, {errors} errors, all alike");
    assert!(
        allowed > 50 && denied > 50 && errors > 5,
        "a mix of outcomes"
    );
}

#[test]
fn bad_input_is_refused_leaving_the_keys_as_they_were() {
    let (_s, mut c) = start();
    let call = |c: &mut Connection, args: &[&str]| -> redis::RedisResult<Value> {
        redis::cmd(CMD).arg(args).query(c)
    };
    let ok = call(&mut c, &["b", "b:knobs", "5", "2", "8", "1", "604800"]).unwrap();
    assert!(matches!(ok, Value::Array(ref r) if r.len() == 3), "{ok:?}");
    let before = key_state(&mut c, "b");
    assert_eq!(before.1["tokens"], "79");
    let cases: &[(&[&str], &str)] = &[
        (
            &["b", "b:knobs", "5", "2", "8", "1"],
            "ERR wrong number of arguments for 'throttle.limitlion' command",
        ),
        (
            &["b", "b:knobs", "5", "2", "8", "1", "9", "CLOCK"],
            "ERR syntax error",
        ),
        (
            &["b", "b:knobs", "5", "2", "8", "1", "9", "CLOCK", "s"],
            "ERR syntax error",
        ),
        (
            &["b", "b:knobs", "5", "2", "8", "1", "9", "CLOCKS", "s", "u"],
            "ERR syntax error",
        ),
        (
            &[
                "b", "b:knobs", "5", "2", "8", "1", "9", "CLOCK", "s", "u", "x",
            ],
            "ERR syntax error",
        ),
        (
            &["b", "b", "5", "2", "8", "1", "9"],
            "ERR the knobs key must differ from the bucket key",
        ),
        // The script's own failures, before it writes the bucket.
        (
            &["b", "b:knobs", "5", "x", "8", "1", "9"],
            "ERR burst is not a number",
        ),
        (
            &["b", "b:knobs", "5", "2", "", "1", "9"],
            "ERR window is not a number",
        ),
        (
            &["b", "b:knobs", "5", "2", "8", "many", "9"],
            "ERR requested_tokens is not a number",
        ),
        (
            &["b", "b:knobs", "fast", "2", "8", "1", "9"],
            "ERR rps is not a number",
        ),
    ];
    for (args, want) in cases {
        let e = call(&mut c, args).expect_err("refused");
        assert!(error_text(&e).starts_with(want), "{args:?}: {e}");
        assert_eq!(
            key_state(&mut c, "b"),
            before,
            "{args:?} changed the bucket"
        );
        assert!(!exists(&mut c, "b:knobs"), "{args:?} created knobs");
    }
    // Keys of another type: WRONGTYPE. A knobs key that is not a hash
    // fails the script's first HMGET: nothing is written.
    let _: () = redis::cmd("SET")
        .arg("k:knobs")
        .arg("x")
        .query(&mut c)
        .unwrap();
    let e = call(&mut c, &["b", "k:knobs", "5", "2", "8", "1", "9"]).expect_err("WRONGTYPE");
    assert!(error_text(&e).starts_with("WRONGTYPE"), "{e}");
    assert_eq!(key_state(&mut c, "b"), before);
    let _: () = redis::cmd("SET").arg("s").arg("x").query(&mut c).unwrap();
    let e = call(&mut c, &["s", "s:knobs", "5", "2", "8", "1", "9"]).expect_err("WRONGTYPE");
    assert!(error_text(&e).starts_with("WRONGTYPE"), "{e}");
    let s: String = redis::cmd("GET").arg("s").query(&mut c).unwrap();
    assert_eq!((s, pttl(&mut c, "s")), ("x".to_string(), -1));
    // The switches read no bucket: rps 0 and -1 answer on a string key too,
    // as the script does.
    let v = call(&mut c, &["s", "s:knobs", "0", "2", "8", "1", "9"]).unwrap();
    assert_eq!(
        v,
        Value::Array(vec![
            Value::Int(0),
            Value::Int(0),
            Value::BulkString(b"8.000000".to_vec())
        ])
    );
    // A knobs_ttl the script's EXPIRE refuses: the knobs exist, so the
    // script fails at their EXPIRE, before the bucket.
    let _: () = redis::cmd("HSET")
        .arg("b:knobs")
        .arg("rps")
        .arg("1")
        .query(&mut c)
        .unwrap();
    let e = call(&mut c, &["b", "b:knobs", "5", "2", "8", "1", "0.5"]).expect_err("EXPIRE");
    assert!(
        error_text(&e).starts_with("ERR value is not an integer"),
        "{e}"
    );
    assert_eq!(key_state(&mut c, "b"), before);
    assert_eq!(pttl(&mut c, "b:knobs"), -1, "no EXPIRE happened");
}

#[test]
fn replicas_and_the_aof_get_the_writes_not_the_command() {
    let mut pair = Pair::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let mut m = pair.master.conn();
    let call = |m: &mut Connection, key: &str, args: &[&str]| {
        let _: redis::RedisResult<Value> = redis::cmd(CMD)
            .arg(key)
            .arg(format!("{key}:knobs"))
            .arg(args)
            .query(m);
    };
    for i in 0..20 {
        call(&mut m, "throttle:a", &["5", "2", "8", "1", "604800"]);
        call(&mut m, "throttle:b", &["0.5", "1", "4", "1", "604800"]);
        if i == 5 {
            let _: () = redis::cmd("HSET")
                .arg("throttle:b:knobs")
                .arg(&["rps", "2", "burst", "1", "window", "3"])
                .query(&mut m)
                .unwrap();
        }
    }
    // ttl = floor(burst × window × 2) = 0: the script's EXPIRE deletes the bucket.
    call(&mut m, "throttle:gone", &["5", "0.1", "1", "1", "604800"]);
    assert!(!exists(&mut m, "throttle:gone"));
    pair.sync();
    let mut r = pair.replica.conn();
    for key in [
        "throttle:a",
        "throttle:b",
        "throttle:b:knobs",
        "throttle:gone",
    ] {
        assert_eq!(
            key_state(&mut m, key),
            key_state(&mut r, key),
            "{key} on the replica"
        );
    }
    assert!(
        key_state(&mut m, "throttle:b:knobs").2 > 0,
        "knobs_ttl applied"
    );
    // The AOF: the writes, never the command (which reads the clock).
    let dir = pair.master.dir().join("appendonlydir");
    let mut names = std::collections::BTreeSet::new();
    for e in std::fs::read_dir(&dir).expect("appendonlydir") {
        let p = e.unwrap().path();
        if p.to_string_lossy().ends_with(".incr.aof") {
            names.extend(resp_command_names(&std::fs::read(&p).unwrap()));
        }
    }
    for n in &names {
        assert!(
            ["SELECT", "MULTI", "EXEC", "HSET", "PEXPIREAT", "DEL"].contains(&n.as_str()),
            "the AOF holds {n}: {names:?}"
        );
    }
    assert!(
        names.contains("HSET") && names.contains("PEXPIREAT") && names.contains("DEL"),
        "{names:?}"
    );
    let before: Vec<_> = ["throttle:a", "throttle:b", "throttle:b:knobs"]
        .iter()
        .map(|k| key_state(&mut m, k))
        .collect();
    let _: () = redis::cmd("DEBUG").arg("LOADAOF").query(&mut m).unwrap();
    let after: Vec<_> = ["throttle:a", "throttle:b", "throttle:b:knobs"]
        .iter()
        .map(|k| key_state(&mut m, k))
        .collect();
    assert_eq!(before, after, "reloaded from the AOF");
    pair.assert_healthy();
}

#[test]
fn inside_multi_and_lua() {
    let (_s, mut c) = start();
    let v: Vec<Value> = multi(
        &mut c,
        &[
            &[CMD, "m", "m:knobs", "1", "1", "2", "1", "604800"],
            &[CMD, "m", "m:knobs", "1", "1", "2", "1", "604800"],
            &[CMD, "m", "m:knobs", "1", "1", "2", "1", "604800"],
        ],
    );
    let allowed: Vec<Value> = v
        .iter()
        .map(|r| match r {
            Value::Array(x) => x[0].clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        allowed,
        [Value::Int(1), Value::Int(1), Value::Int(0)],
        "capacity 2"
    );
    let from_lua: Vec<Value> = redis::cmd("EVAL")
        .arg("return redis.call('THROTTLE.LIMITLION', KEYS[1], KEYS[2], '1', '1', '2', '1', '604800')")
        .arg(2)
        .arg("l")
        .arg("l:knobs")
        .query(&mut c)
        .unwrap();
    assert_eq!(from_lua[0], Value::Int(1));
    assert_eq!(hgetall(&mut c, "l")["tokens"], "1");
}
