//! The module in Redis Cluster: routing, MOVED, COMMAND GETKEYS, replica
//! reads, resharding under load, planned and unplanned failover, and
//! blocked PERMIT clients during a failover.
//!
//! Each test starts its own 3 + 3 cluster on free loopback ports (see
//! `testkit::cluster`) and tears it down on drop; the tests run one at a
//! time because failover timing on a 2-core machine does not like company.
//!
//! ```text
//! cargo build --release -p redis-throttle
//! cargo test --release --test cluster
//! REDIS_SERVER=$(scripts/valkey.sh) cargo test --release --test cluster
//! ```
//!
//! Every command the module registers must have a routing sample in
//! [`samples`]; the routing test fails on one that has none.

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::Value;
use testkit::cluster::load::*;
use testkit::cluster::*;

/// One cluster at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A small, slow bucket (limit 100, 0.01 token/s): state set by a test stays
/// put for the test's duration.
const SLOW: [&str; 3] = ["0.01", "100", "100"];

/// One sample call of a module command and the keys it declares.
struct Sample {
    name: &'static str,
    cmd: redis::Cmd,
    keys: Vec<String>,
}

/// Every module command (but THROTTLE.APPLY, tested apart), as sample calls
/// on keys that share one slot: a bucket, a second bucket and a permit key.
fn samples(bucket: &str, day: &str, permit: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    let mut add = |name: &'static str, args: &[&str], keys: &[&str]| {
        let mut cmd = redis::cmd(name);
        cmd.arg(args);
        let keys = keys.iter().map(|k| k.to_string()).collect();
        out.push(Sample { name, cmd, keys });
    };
    let (r, b, w) = (SLOW[0], SLOW[1], SLOW[2]);
    add("THROTTLE", &[bucket, r, b, w], &[bucket]);
    add("THROTTLE", &[bucket, r, b, w, "2", "WAIT", "50"], &[bucket]);
    add("THROTTLE.PEEK", &[bucket, r, b, w], &[bucket]);
    add("PERMIT", &[permit, "100", "5"], &[permit]);
    add(
        "PERMIT",
        &[permit, "100", "5", "BLOCK", "1000", "GRACE", "5000"],
        &[permit],
    );
    add(
        "THROTTLE.SET",
        &[bucket, "RPS", r, "BURST", b, "WINDOW", w],
        &[bucket],
    );
    add("PERMIT.SET", &[permit, "INTERVAL", "100"], &[permit]);
    add("PERMIT.GET", &[permit], &[permit]);
    add("PERMIT.RESET", &[permit], &[permit]);
    let leases = format!("{permit}:leases");
    add("LEASE", &[&leases, "2", "60000"], &[&leases]);
    add("LEASE.RENEW", &[&leases, "1", "60000"], &[&leases]);
    add("LEASE.RELEASE", &[&leases, "1"], &[&leases]);
    add("LEASE.PEEK", &[&leases], &[&leases]);
    add("THROTTLE.GET", &[bucket], &[bucket]);
    add("THROTTLE.REFUND", &[bucket, "1"], &[bucket]);
    add("THROTTLE.RESET", &[bucket], &[bucket]);
    add(
        "THROTTLE.ALL",
        &["1", bucket, r, b, w, day, "0.001", "1000", "86400"],
        &[bucket, day],
    );
    // redis-cell's command, on a key of its own in the same slot.
    let cell = format!("{permit}:cell");
    add("CL.THROTTLE", &[&cell, "15", "30", "60"], &[&cell]);
    // LimitLion's script, on its two hashes (and its testing clock's keys).
    let (ll, knobs) = (format!("{permit}:ll"), format!("{permit}:ll:knobs"));
    let (second, micros) = (format!("{permit}:s"), format!("{permit}:us"));
    let ll_args = [ll.as_str(), knobs.as_str(), "5", "2", "8", "1", "604800"];
    add("THROTTLE.LIMITLION", &ll_args, &[&ll, &knobs]);
    let with_clock = [&ll_args[..], &["CLOCK", second.as_str(), micros.as_str()]].concat();
    add(
        "THROTTLE.LIMITLION",
        &with_clock,
        &[&ll, &knobs, &second, &micros],
    );
    out
}

/// THROTTLE.ALL of one token on `keys`, each a slow 100-token limit.
fn throttle_all(keys: &[&str]) -> redis::Cmd {
    let mut cmd = redis::cmd("THROTTLE.ALL");
    cmd.arg(1);
    for k in keys {
        cmd.arg(*k).arg(&SLOW[..]);
    }
    cmd
}

fn module_commands(conn: &mut redis::Connection) -> Vec<String> {
    let names: Vec<String> = redis::cmd("COMMAND")
        .arg("LIST")
        .arg("FILTERBY")
        .arg("MODULE")
        .arg("throttle")
        .query(conn)
        .expect("COMMAND LIST FILTERBY MODULE");
    names.into_iter().map(|n| n.to_ascii_lowercase()).collect()
}

/// `WAIT 1 1000` on the master of `tag`'s slot: how many replicas acked.
fn wait_replica(client: &mut redis::cluster::ClusterConnection, tag: &str) -> i64 {
    client
        .route_command(redis::cmd("WAIT").arg(1).arg(1000), route_to(tag, false))
        .and_then(|v| Ok(redis::from_redis_value(v)?))
        .expect("WAIT")
}

fn query_value(cmd: &redis::Cmd, conn: &mut redis::Connection) -> redis::RedisResult<Value> {
    cmd.query(conn)
}

#[test]
fn routing_reaches_the_slot_owner_and_others_answer_moved() {
    let _serial = serial();
    let cluster = Cluster::start(true);
    let mut any = node_conn(cluster.ports()[0]);

    // Our slot function is the server's.
    let texts = "a user:1 {user:1}:sec foo{}{bar} foo{{bar}}zap {}x".split(' ');
    let keys = texts.map(str::as_bytes).chain([&b"\0\xff\xfe binary"[..]]);
    for key in keys {
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut any)
            .expect("CLUSTER KEYSLOT");
        assert_eq!(slot, key_slot(key), "slot of {key:?}");
    }

    let mut client = cluster.client();
    let mut covered = std::collections::BTreeSet::new();
    for master in cluster.masters() {
        let tag = cluster.tag_on(master, "route");
        let (bucket, day, permit) = (
            format!("{tag}:bucket"),
            format!("{tag}:day"),
            format!("{tag}:permit"),
        );
        for Sample { name, cmd, keys } in samples(&bucket, &day, &permit) {
            let name = name.to_ascii_lowercase();
            covered.insert(name.clone());
            // Through the cluster client: executed once, on the owner only.
            let before = cluster.command_calls();
            let reply = cmd
                .query::<Value>(&mut client)
                .unwrap_or_else(|e| panic!("{name} on {bucket}: {e}"));
            assert!(!matches!(reply, Value::ServerError(_)), "{name}: {reply:?}");
            let after = cluster.command_calls();
            for (port, calls) in &after {
                let delta = calls.get(&name).copied().unwrap_or(0)
                    - before[port].get(&name).copied().unwrap_or(0);
                let expected = u64::from(*port == master);
                assert_eq!(
                    delta, expected,
                    "{name} on {bucket}: node {port} ran it {delta} times (owner {master})"
                );
            }

            // Directly to any other node (replicas without READONLY
            // included): MOVED to the owner, and nothing runs.
            for port in cluster.ports().into_iter().filter(|&p| p != master) {
                let err = query_value(&cmd, &mut node_conn(port))
                    .expect_err("a node that does not own the slot must redirect");
                assert_eq!(err.code(), Some("MOVED"), "{name} on {port}: {err}");
                let (addr, slot) = err.redirect_node().expect("MOVED names a node");
                assert_eq!(addr, format!("127.0.0.1:{master}"), "{name} on {port}");
                assert_eq!(slot, key_slot(bucket.as_bytes()), "{name} on {port}");
            }

            // COMMAND GETKEYS finds the keys (so Redis routes and checks them).
            let mut getkeys = redis::cmd("COMMAND");
            getkeys.arg("GETKEYS");
            for arg in cmd.args_iter() {
                if let redis::Arg::Simple(a) = arg {
                    getkeys.arg(a);
                }
            }
            let found: Vec<String> = getkeys.query(&mut any).expect("COMMAND GETKEYS");
            assert_eq!(found, keys, "COMMAND GETKEYS {name}");
        }
    }

    // THROTTLE.APPLY (the replicated effect) is keyed too: GETKEYS and MOVED.
    let keys: Vec<String> = redis::cmd("COMMAND")
        .arg("GETKEYS")
        .arg("THROTTLE.APPLY")
        .arg("k")
        .arg("payload")
        .arg(0)
        .query(&mut any)
        .expect("COMMAND GETKEYS THROTTLE.APPLY");
    assert_eq!(keys, vec!["k".to_string()]);
    let owner = cluster.owner_of_key("k");
    let other = cluster
        .ports()
        .into_iter()
        .find(|&p| p != owner)
        .expect("another node");
    let err = redis::cmd("THROTTLE.APPLY")
        .arg("k")
        .arg("payload")
        .arg(0)
        .query::<Value>(&mut node_conn(other))
        .expect_err("THROTTLE.APPLY on a non-owner");
    assert_eq!(err.code(), Some("MOVED"), "{err}");
    covered.insert("throttle.apply".to_string());
    // THROTTLE.CLOCK (the test clock) has no key: it acts on the node it is
    // sent to, so there is nothing to route.
    covered.insert("throttle.clock".to_string());

    // Every command the module registers has a sample above.
    let uncovered: Vec<String> = module_commands(&mut any)
        .into_iter()
        .filter(|c| !covered.contains(c))
        .collect();
    assert!(
        uncovered.is_empty(),
        "module commands without a routing sample in tests/cluster.rs: {uncovered:?}"
    );
}

#[test]
fn multi_limit_needs_one_slot_and_hash_tags_give_it() {
    let _serial = serial();
    let cluster = Cluster::start(true);
    let masters = cluster.masters();
    let (a, b) = (
        cluster.tag_on(masters[0], "ml"),
        cluster.tag_on(masters[1], "ml"),
    );
    let mut client = cluster.client();

    // Keys in different slots: CROSSSLOT, sent directly or through the
    // cluster client (which routes by the first key), and nothing stored.
    let (sec, day) = (format!("{a}:sec"), format!("{b}:day"));
    let cross = throttle_all(&[&sec, &day]);
    for port in masters.iter().copied() {
        let err = cross
            .query::<Value>(&mut node_conn(port))
            .expect_err("keys in two slots");
        let code = err.code().unwrap_or("");
        // The owner of neither key redirects first; an owner of one says CROSSSLOT.
        assert!(code == "CROSSSLOT" || code == "MOVED", "{port}: {err}");
        if port == masters[0] {
            assert_eq!(code, "CROSSSLOT", "{err}");
        }
    }
    let err = cross
        .query::<Value>(&mut client)
        .expect_err("CROSSSLOT through the cluster client");
    assert_eq!(err.code(), Some("CROSSSLOT"), "{err}");
    for (key, port) in [(&sec, masters[0]), (&day, masters[1])] {
        assert_eq!(dump(port, key), None, "{key} created by a refused call");
    }

    // A hash tag co-locates them: all or nothing on one node.
    let (sec, day) = (format!("{a}:sec"), format!("{a}:day"));
    let together = throttle_all(&[&sec, &day]);
    let reply: Value = together
        .query(&mut client)
        .expect("THROTTLE.ALL with a hash tag");
    let Value::Array(fields) = reply else {
        panic!("THROTTLE.ALL reply {reply:?}");
    };
    assert_eq!(fields[0], Value::Int(1), "allowed");
    for key in [&sec, &day] {
        assert!(dump(masters[0], key).is_some(), "{key} on the tag's owner");
        let peek: Vec<i64> = redis::cmd("THROTTLE.PEEK")
            .arg(key)
            .arg(&SLOW[..])
            .arg(0)
            .query(&mut client)
            .expect("PEEK");
        assert_eq!(peek[1], 99, "{key}: one token taken");
    }
}

#[test]
fn replicas_with_readonly_answer_peek_like_their_master() {
    let _serial = serial();
    let cluster = Cluster::start(true);
    let mut client = cluster.client();
    for master in cluster.masters() {
        let replica = cluster.replica_of(master);
        let tag = cluster.tag_on(master, "ro");
        let (bucket, permit) = (format!("{tag}:bucket"), format!("{tag}:permit"));
        let _: Vec<i64> = redis::cmd("THROTTLE")
            .arg(&bucket)
            .arg(&SLOW[..])
            .arg(37)
            .query(&mut client)
            .expect("THROTTLE");
        for _ in 0..3 {
            let _: Option<Vec<i64>> = redis::cmd("PERMIT")
                .arg(&permit)
                .arg(60_000)
                .arg(5)
                .query(&mut client)
                .expect("PERMIT");
        }
        let acked: i64 = wait_replica(&mut client, &tag);
        assert_eq!(acked, 1, "WAIT on master {master}");

        let peek = || {
            let mut c = redis::cmd("THROTTLE.PEEK");
            c.arg(&bucket).arg(&SLOW[..]).arg(5);
            c
        };
        // Without READONLY a replica redirects, as for any key.
        let err = peek()
            .query::<Vec<i64>>(&mut node_conn(replica))
            .expect_err("replica without READONLY");
        assert_eq!(err.code(), Some("MOVED"), "{err}");

        let mut on_replica = node_conn(replica);
        let _: () = redis::cmd("READONLY")
            .query(&mut on_replica)
            .expect("READONLY");
        let from_master: Vec<i64> = peek().query(&mut node_conn(master)).expect("PEEK");
        let from_replica: Vec<i64> = peek().query(&mut on_replica).expect("PEEK on replica");
        assert_eq!(
            from_master[..3],
            from_replica[..3],
            "allowed/remaining/retry"
        );
        assert_eq!(from_master[4], from_replica[4], "limit");
        assert!(
            (from_master[3] - from_replica[3]).abs() <= 100,
            "reset_after {} vs {}",
            from_master[3],
            from_replica[3]
        );
        // 37 of 100 used; PEEK reports what 5 more would leave.
        assert_eq!(from_replica[1], 100 - 37 - 5, "remaining");
        // Byte-identical state and the same absolute expiry.
        for key in [&bucket, &permit] {
            let d: Option<Vec<u8>> = redis::cmd("DUMP")
                .arg(key)
                .query(&mut on_replica)
                .expect("DUMP on replica");
            assert_eq!(d, dump(master, key), "DUMP {key}");
            assert!(d.is_some(), "{key} replicated");
            let at: i64 = redis::cmd("PEXPIRETIME")
                .arg(key)
                .query(&mut on_replica)
                .expect("PEXPIRETIME");
            assert_eq!(at, pexpiretime(master, key), "PEXPIRETIME {key}");
        }
        // Writes still go to the master, even with READONLY.
        let err = redis::cmd("THROTTLE")
            .arg(&bucket)
            .arg(&SLOW[..])
            .query::<Vec<i64>>(&mut on_replica)
            .expect_err("THROTTLE on a replica");
        assert_eq!(err.code(), Some("MOVED"), "{err}");

        // A cluster client reading from replicas: served by the replica.
        cluster.wait_replica_listed(key_slot(bucket.as_bytes()), replica);
        let mut replica_client = cluster
            .client_builder()
            .read_routing_strategy(redis::cluster_read_routing::RandomReplicaStrategy)
            .build()
            .expect("client")
            .get_connection()
            .expect("connection");
        let before = cluster.command_calls();
        let routed: Vec<i64> = replica_client
            .route_command(&peek(), route_to(&bucket, true))
            .and_then(|v| Ok(redis::from_redis_value(v)?))
            .expect("PEEK routed to a replica");
        let after = cluster.command_calls();
        let ran = |p: u16| {
            after[&p].get("throttle.peek").copied().unwrap_or(0)
                - before[&p].get("throttle.peek").copied().unwrap_or(0)
        };
        assert_eq!(
            (ran(replica), ran(master)),
            (1, 0),
            "PEEK served by the replica"
        );
        assert_eq!(routed[..3], from_master[..3]);

        // THROTTLE.GET (on a knob-carrying key): the same fields, with
        // the time-dependent ones within 100 ms.
        let _: () = redis::cmd("THROTTLE.SET")
            .arg(&bucket)
            .arg(&["RPS", "0.02", "BURST", "100", "WINDOW", "100"])
            .query(&mut client)
            .expect("THROTTLE.SET");
        let _: i64 = wait_replica(&mut client, &tag);
        let from_master = get_fields(&mut node_conn(master), &bucket);
        let from_replica = get_fields(&mut on_replica, &bucket);
        assert_eq!(
            from_master.keys().collect::<Vec<_>>(),
            from_replica.keys().collect::<Vec<_>>()
        );
        assert_eq!(from_replica["source"], Value::BulkString(b"knobs".to_vec()));
        for (field, m) in &from_master {
            let r = &from_replica[field];
            match (field.as_str(), m, r) {
                ("reset_after_ms" | "knobs_ttl_ms", Value::Int(m), Value::Int(r)) => {
                    assert!((m - r).abs() <= 100, "THROTTLE.GET {field}: {m} vs {r}")
                }
                _ => assert_eq!(m, r, "THROTTLE.GET {field}"),
            }
        }
    }
}

/// THROTTLE.GET as field → value (RESP2 flat pairs).
fn get_fields(
    conn: &mut redis::Connection,
    key: &str,
) -> std::collections::BTreeMap<String, Value> {
    let flat: Vec<Value> = redis::cmd("THROTTLE.GET")
        .arg(key)
        .query(conn)
        .expect("THROTTLE.GET");
    flat.chunks(2)
        .map(|kv| match &kv[0] {
            Value::BulkString(k) => (String::from_utf8_lossy(k).into_owned(), kv[1].clone()),
            other => panic!("THROTTLE.GET field name {other:?}"),
        })
        .collect()
}

/// Moves `slot` from `source` to `target` the way redis-cli's reshard does,
/// a few keys at a time with pauses, so clients see a half-moved slot.
/// `first` moves alone, then `half_moved` runs.
fn migrate_slot(
    cluster: &Cluster,
    slot: u16,
    (source, target): (u16, u16),
    first: &[&str],
    half_moved: impl FnOnce(),
) -> usize {
    let (source_id, target_id) = (cluster.node_id(source), cluster.node_id(target));
    let mut s = node_conn(source);
    let mut t = node_conn(target);
    let setslot = |c: &mut redis::Connection, how: &str, id: &str| {
        let _: () = redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg(how)
            .arg(id)
            .query(c)
            .unwrap_or_else(|e| panic!("SETSLOT {how}: {e}"));
    };
    setslot(&mut t, "IMPORTING", &source_id);
    setslot(&mut s, "MIGRATING", &target_id);
    let migrate = |s: &mut redis::Connection, keys: &[Vec<u8>]| {
        let _: Value = redis::cmd("MIGRATE")
            .arg("127.0.0.1")
            .arg(target)
            .arg("")
            .arg(0)
            .arg(5000)
            .arg("KEYS")
            .arg(keys)
            .query(s)
            .expect("MIGRATE");
    };
    let first: Vec<Vec<u8>> = first.iter().map(|k| k.as_bytes().to_vec()).collect();
    migrate(&mut s, &first);
    let mut moved = first.len();
    half_moved();
    for _batch in 0..500 {
        let keys: Vec<Vec<u8>> = redis::cmd("CLUSTER")
            .arg("GETKEYSINSLOT")
            .arg(slot)
            .arg(3)
            .query(&mut s)
            .expect("GETKEYSINSLOT");
        if keys.is_empty() {
            break;
        }
        migrate(&mut s, &keys);
        moved += keys.len();
        std::thread::sleep(Duration::from_millis(100));
    }
    setslot(&mut t, "NODE", &target_id);
    setslot(&mut s, "NODE", &target_id);
    for m in cluster.masters() {
        if m != source && m != target {
            setslot(&mut node_conn(m), "NODE", &target_id);
        }
    }
    moved
}

/// Static keys whose state a test compares before and after.
fn make_static_keys(client: &mut redis::cluster::ClusterConnection, tag: &str) -> Vec<String> {
    let mut keys = Vec::new();
    for i in 0..8 {
        let k = format!("{tag}:bucket{i}");
        let _: Vec<i64> = redis::cmd("THROTTLE")
            .arg(&k)
            .arg(&SLOW[..])
            .arg(5 * i + 3)
            .query(client)
            .expect("THROTTLE");
        keys.push(k);
    }
    for i in 0..4 {
        let k = format!("{tag}:permit{i}");
        for _ in 0..=i {
            let _: Option<Vec<i64>> = redis::cmd("PERMIT")
                .arg(&k)
                .arg(60_000)
                .arg(5)
                .query(client)
                .expect("PERMIT");
        }
        keys.push(k);
    }
    // A knob-carrying key: settings stored with the bucket.
    {
        let k = format!("{tag}:knobs");
        let _: Value = redis::cmd("THROTTLE.SET")
            .arg(&k)
            .arg(&[
                "RPS", "0.01", "BURST", "100", "WINDOW", "100", "TTL", "3600",
            ])
            .query(client)
            .expect("THROTTLE.SET");
        let _: Vec<i64> = redis::cmd("THROTTLE")
            .arg(&k)
            .arg(&["1", "1", "1", "7"])
            .query(client)
            .expect("THROTTLE on a knob-carrying key");
        keys.push(k);
    }
    keys
}

struct Snapshot {
    key: String,
    dump: Vec<u8>,
    expire_at_ms: i64,
}

fn snapshot(port: u16, keys: &[String]) -> Vec<Snapshot> {
    keys.iter()
        .map(|k| Snapshot {
            key: k.clone(),
            dump: dump(port, k).unwrap_or_else(|| panic!("{k} missing on {port}")),
            expire_at_ms: pexpiretime(port, k),
        })
        .collect()
}

/// Asserts the keys on `port` hold the snapshot's state; returns the
/// largest expiry difference seen (ms).
fn assert_same_state(port: u16, before: &[Snapshot], expiry_slack_ms: i64) -> i64 {
    let mut worst = 0;
    for s in before {
        assert_eq!(
            dump(port, &s.key).as_deref(),
            Some(&s.dump[..]),
            "{} on {port}: state changed",
            s.key
        );
        let at = pexpiretime(port, &s.key);
        assert!(at > 0, "{} on {port}: no expiry ({at})", s.key);
        let diff = (at - s.expire_at_ms).abs();
        assert!(
            diff <= expiry_slack_ms,
            "{} on {port}: expiry moved by {diff} ms",
            s.key
        );
        worst = worst.max(diff);
    }
    worst
}

/// Workers calling THROTTLE on two accounting buckets each, THROTTLE.ALL
/// on the pair, and PERMIT on a paced key, all in `tag`'s slot.
fn accounting_workers(tag: &str, n: usize, with_wait: bool) -> Vec<WorkerKeys> {
    (0..n)
        .map(|w| WorkerKeys {
            buckets: vec![format!("{tag}:acct{w}a"), format!("{tag}:acct{w}b")],
            all_pair: true,
            permits: vec![format!("{tag}:paced{w}")],
            wait_on: with_wait.then(|| tag.to_string()),
        })
        .collect()
}

/// A worker spreading calls over the other masters' slots.
fn spread_worker(cluster: &Cluster, except: &[u16]) -> WorkerKeys {
    let buckets = cluster
        .masters()
        .into_iter()
        .filter(|m| !except.contains(m))
        .map(|m| format!("{}:acct", cluster.tag_on(m, "spread")))
        .collect();
    WorkerKeys {
        buckets,
        all_pair: false,
        permits: Vec::new(),
        wait_on: None,
    }
}

#[test]
fn resharding_moves_state_and_ttls_while_clients_keep_calling() {
    let _serial = serial();
    let cluster = Cluster::start(true);
    let mut client = cluster.client();
    let masters = cluster.masters();
    let (source, target) = (masters[0], masters[1]);
    let tag = cluster.tag_on(source, "mig");
    let slot = key_slot(tag.as_bytes());
    let statics = make_static_keys(&mut client, &tag);
    let before = snapshot(source, &statics);

    let mut workers = accounting_workers(&tag, 2, false);
    workers.push(spread_worker(&cluster, &[]));
    let load = Load::start(&cluster, workers, Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(300));
    let rejected = || -> u64 {
        let stats = cluster.command_stats("rejected_calls");
        ["throttle", "permit"]
            .iter()
            .map(|c| stats[&source].get(*c).copied().unwrap_or(0))
            .sum()
    };
    let redirects_before = rejected();
    let started = Instant::now();
    let (moved_key, staying_key) = (format!("{tag}:bucket0"), format!("{tag}:bucket1"));
    let moved = migrate_slot(&cluster, slot, (source, target), &[&moved_key], || {
        // THROTTLE.ALL over a half-moved pair: TRYAGAIN (clients retry),
        // and nothing consumed (the state comparison below checks that).
        let err = throttle_all(&[&moved_key, &staying_key])
            .query::<Value>(&mut node_conn(source))
            .expect_err("keys split by the move");
        assert_eq!(err.code(), Some("TRYAGAIN"), "{err}");
    });
    let took = started.elapsed();
    // The clients keep calling until one has been sent on by the source
    // (ASK / MOVED: Redis counts those as rejected calls), however slowly
    // a busy machine runs their threads; they must follow without error.
    testkit::wait_for(
        Duration::from_secs(20),
        "a client redirected by the move",
        || (rejected() > redirects_before).then_some(()),
    );
    let report = load.stop();
    let redirects = rejected() - redirects_before;
    assert!(
        redirects > 0,
        "no client was redirected: the move was not under load"
    );

    assert_eq!(
        report.errors, 0,
        "clients saw errors other than redirects: {:?}",
        report.first_errors
    );
    assert_eq!(
        cluster.owner(slot),
        target,
        "slot {slot} now served by target"
    );
    let left: i64 = redis::cmd("CLUSTER")
        .arg("COUNTKEYSINSLOT")
        .arg(slot)
        .query(&mut node_conn(source))
        .expect("COUNTKEYSINSLOT");
    assert_eq!(left, 0, "keys left behind on the source");
    assert!(moved >= statics.len() + 4, "moved {moved} keys");

    // State and absolute expiry arrive intact (MIGRATE sends the relative
    // TTL, so the expiry may move by the transfer time: a few ms here, more
    // on a saturated machine; the bound is generous, the worst is printed).
    const MIGRATE_SLACK_MS: i64 = 1000;
    let worst = assert_same_state(target, &before, MIGRATE_SLACK_MS);
    // The target's replica has it too.
    let acked: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(10_000)
        .query(&mut node_conn(target))
        .expect("WAIT");
    assert_eq!(acked, 1);
    assert_same_state(cluster.replica_of(target), &before, MIGRATE_SLACK_MS);

    // Under load, every admitted call is counted once: nothing lost or
    // doubled by the move, and PERMIT's spacing held across it.
    for (key, t) in &report.tallies {
        if key.contains(":acct") {
            let port = cluster.owner_of_key(key);
            assert_eq!(consumed(port, key), t.allowed as i64, "{key}: tokens");
        }
        assert_spacing(key, &t.valid_at);
    }
    eprintln!(
        "resharding: moved slot {slot} ({moved} keys) in {} ms under {} calls; \
         {redirects} redirects followed, 0 errors; worst expiry shift {worst} ms",
        took.as_millis(),
        report.calls
    );
}

#[test]
fn planned_failover_loses_nothing() {
    let _serial = serial();
    let cluster = Cluster::start(true);
    let mut client = cluster.client();
    let master = cluster.masters()[0];
    let replica = cluster.replica_of(master);
    let tag = cluster.tag_on(master, "pf");
    let statics = make_static_keys(&mut client, &tag);
    let before = snapshot(master, &statics);

    let mut workers = accounting_workers(&tag, 2, false);
    workers.push(spread_worker(&cluster, &[master]));
    let load = Load::start(&cluster, workers, Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let _: () = redis::cmd("CLUSTER")
        .arg("FAILOVER")
        .query(&mut node_conn(replica))
        .expect("CLUSTER FAILOVER");
    cluster.wait_master(replica, Duration::from_secs(20));
    let took = started.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let report = load.stop();

    // Nothing lost and no client saw an error: byte-identical state, same
    // expiry, and every admitted call counted exactly once on the new master.
    assert_eq!(
        report.errors, 0,
        "clients saw errors across a planned failover: {:?}",
        report.first_errors
    );
    assert!(report.calls > 0, "no load");
    assert_same_state(replica, &before, 0);
    for (key, t) in &report.tallies {
        if key.contains(":acct") {
            let port = cluster.owner_of_key(key);
            assert_eq!(
                consumed(port, key),
                i64::try_from(t.allowed).unwrap(),
                "{key}: tokens consumed on the new master vs admitted"
            );
        }
        assert_spacing(key, &t.valid_at);
    }
    cluster.wait_healthy();
    assert_eq!(
        cluster.replica_of(replica),
        master,
        "old master now replica"
    );
    eprintln!(
        "planned failover: {} ms, {} calls, 0 errors",
        took.as_millis(),
        report.calls
    );
}

#[test]
fn killed_master_fails_over_without_losing_acknowledged_state() {
    let _serial = serial();
    let mut cluster = Cluster::start(true);
    let mut client = cluster.client();
    let master = cluster.masters()[0];
    let replica = cluster.replica_of(master);
    let tag = cluster.tag_on(master, "kill");

    // Acknowledged state: partially used buckets and reserved permits.
    let statics = make_static_keys(&mut client, &tag);
    let acked: i64 = wait_replica(&mut client, &tag);
    assert_eq!(acked, 1, "replica acknowledged the state");
    let before = snapshot(master, &statics);
    let permit3 = |port: u16, max_waiting: u32| -> Vec<i64> {
        redis::cmd("PERMIT")
            .arg(format!("{tag}:permit3"))
            .arg(60_000)
            .arg(max_waiting)
            .query(&mut node_conn(port))
            .unwrap_or_else(|e| panic!("PERMIT on {port}: {e}"))
    };
    let last_permit = permit3(master, 5);
    // That PERMIT reserved one more slot; acknowledge it as well.
    let _: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(1000)
        .query(&mut node_conn(master))
        .expect("WAIT");
    let mut before = before;
    before.retain(|s| !s.key.ends_with(":permit3"));

    let mut workers = accounting_workers(&tag, 2, true);
    workers.push(spread_worker(&cluster, &[master]));
    let load = Load::start(&cluster, workers, Duration::from_secs(90));
    std::thread::sleep(Duration::from_millis(500));

    let killed_at = Instant::now();
    cluster.kill(master);
    cluster.wait_master(replica, Duration::from_secs(30));
    let promoted = killed_at.elapsed();
    // THROTTLE keeps working: a fresh client is served by the new master.
    let probe = format!("{tag}:probe");
    let recovered = testkit::wait_for(Duration::from_secs(20), "THROTTLE after failover", || {
        let mut c = cluster
            .client_builder()
            .build()
            .ok()?
            .get_connection()
            .ok()?;
        redis::cmd("THROTTLE")
            .arg(&probe)
            .arg(&SLOW[..])
            .query::<Vec<i64>>(&mut c)
            .ok()
            .map(|_| killed_at.elapsed())
    });
    std::thread::sleep(Duration::from_millis(500));
    let report = load.stop();

    // Acknowledged state survived byte for byte: no bucket refilled.
    assert_same_state(replica, &before, 0);
    let peek: Vec<i64> = redis::cmd("THROTTLE.PEEK")
        .arg(format!("{tag}:bucket7"))
        .arg(&SLOW[..])
        .arg(0)
        .query(&mut node_conn(replica))
        .expect("PEEK");
    assert_eq!(peek[1], 100 - 38, "bucket7 keeps what was consumed");
    // The permit schedule continues after the last acknowledged slot.
    let next = permit3(replica, 6);
    assert_eq!(next[1], last_permit[1] + 60_000, "next permit slot");

    // Under load: whatever a WAIT confirmed is still there; at most the
    // unconfirmed writes were lost.
    let mut lost_total = 0;
    let mut unacked_total = 0;
    for (key, t) in report.tallies.iter().filter(|(k, _)| k.contains(&tag)) {
        if !key.contains(":acct") {
            continue;
        }
        let used = consumed(replica, key);
        assert!(
            used >= t.acked as i64,
            "{key}: {} acknowledged but only {used} consumed after failover",
            t.acked
        );
        let lost = (t.allowed as i64 - used).max(0);
        let unacked = t.allowed as i64 - t.acked as i64;
        assert!(
            lost <= unacked,
            "{key}: lost {lost} > unacknowledged {unacked}"
        );
        lost_total += lost;
        unacked_total += unacked;
    }
    assert!(
        report.calls > 0 && report.longest_gap_ms < 30_000,
        "load stalled"
    );

    // The old master comes back as a replica of the new one.
    cluster.restart(master);
    cluster.wait_healthy();
    assert_eq!(cluster.replica_of(replica), master);
    eprintln!(
        "kill -9 failover: replica promoted after {} ms, clients served again after {} ms; \
         {} calls, {} errors; tokens lost {lost_total} of {unacked_total} unacknowledged",
        promoted.as_millis(),
        recovered.as_millis(),
        report.calls,
        report.errors
    );
}

/// What a client held by `PERMIT … BLOCK` got when its master went away.
#[derive(Debug, Clone, PartialEq)]
enum Released {
    /// The normal reply: `[0, valid_at_ms, expires_at_ms]`.
    Reply(Vec<i64>),
    Nil,
    /// `-UNBLOCKED …`: the server released it without an answer.
    Unblocked(String),
    /// The connection broke (the node died).
    ConnectionLost(String),
    Other(String),
}

impl Released {
    fn of(r: redis::RedisResult<Option<Vec<i64>>>) -> Released {
        match r {
            Ok(Some(v)) => Released::Reply(v),
            Ok(None) => Released::Nil,
            Err(e) if e.code() == Some("UNBLOCKED") => Released::Unblocked(e.to_string()),
            Err(e) if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() => {
                Released::ConnectionLost(e.to_string())
            }
            Err(e) => Released::Other(e.to_string()),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Released::Reply(_) => "reply",
            Released::Nil => "nil",
            Released::Unblocked(_) => "unblocked",
            Released::ConnectionLost(_) => "connection lost",
            Released::Other(_) => "other",
        }
    }
}

/// Held clients: how each connects, its thread, and when it started.
struct Held {
    clustered: bool,
    thread: std::thread::JoinHandle<Released>,
}

/// Blocks `direct` plain connections to `port`, then `clustered`
/// cluster-client connections, on `PERMIT key 700 20 BLOCK 0`, one at a
/// time (each is parked before the next is sent), so the i-th holds slot
/// i + 1 after the key's first permit.
fn block_clients(
    cluster: &Cluster,
    port: u16,
    key: &str,
    direct: usize,
    clustered: usize,
) -> Vec<Held> {
    let mut held = Vec::new();
    for i in 0..direct + clustered {
        let key = key.to_string();
        let builder = cluster
            .client_builder()
            .retries(3)
            .response_timeout(Duration::from_secs(15));
        let is_clustered = i >= direct;
        let thread = std::thread::spawn(move || {
            let mut cmd = redis::cmd("PERMIT");
            cmd.arg(&key)
                .arg(700)
                .arg(20)
                .arg("BLOCK")
                .arg(0)
                .arg("GRACE")
                .arg(5000);
            Released::of(if is_clustered {
                builder
                    .build()
                    .and_then(|c| c.get_connection())
                    .and_then(|mut c| cmd.query(&mut c))
            } else {
                let mut c = node_conn(port);
                c.set_read_timeout(Some(Duration::from_secs(15)))
                    .expect("timeout");
                cmd.query(&mut c)
            })
        });
        held.push(Held {
            clustered: is_clustered,
            thread,
        });
        testkit::wait_for(Duration::from_secs(10), "the client to block", || {
            (blocked_now(port) == i64::try_from(i).unwrap() + 1).then_some(())
        });
    }
    held
}

/// Takes `n` slots of `key` (700 ms apart) without blocking, so clients
/// blocked next wait 700 ms × (n + 1) or more: a failover or a kill that a
/// loaded machine slows still comes before their slots. Returns the last
/// slot's `valid_at_ms`.
fn reserve_ahead(port: u16, key: &str, n: usize) -> i64 {
    let mut last = 0;
    for _ in 0..n {
        let r: Vec<i64> = redis::cmd("PERMIT")
            .arg(key)
            .arg(700)
            .arg(20)
            .query(&mut node_conn(port))
            .expect("PERMIT");
        assert!(r[0] > 0, "a reserved slot: {r:?}");
        last = r[1];
    }
    last
}

fn blocked_now(port: u16) -> i64 {
    info_field(port, "throttle", "throttle_blocked_clients")
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1)
}

/// Joins the held clients (each must have been answered within 12 s: none
/// hangs) and returns what each got, in blocking order.
fn released(held: Vec<Held>, what: &str) -> Vec<(bool, Released)> {
    let started = Instant::now();
    let out: Vec<(bool, Released)> = held
        .into_iter()
        .map(|h| (h.clustered, h.thread.join().expect("blocked client thread")))
        .collect();
    let took = started.elapsed();
    eprintln!(
        "{what}: {out:?}; all answered within {} ms",
        took.as_millis()
    );
    assert!(took < Duration::from_secs(12), "{what}: held {took:?}");
    out
}

/// A reply at the i-th slot after `first_valid_at` (700 ms apart; the
/// first reserved slot may round up by 1 ms), never early on the server clock.
fn assert_reply_at_slot(what: &str, i: usize, reply: &[i64], first_valid_at: i64, now_ms: i64) {
    let slot = first_valid_at + 700 * (i64::try_from(i).unwrap() + 1);
    assert!(
        reply.len() == 3 && reply[0] == 0 && (slot..=slot + 1).contains(&reply[1]),
        "{what}: client {i} got {reply:?}, want [0, {slot}, {}]",
        slot + 5000
    );
    assert_eq!(reply[2], reply[1] + 5000, "{what}: client {i} grace");
    // valid_at_ms is the slot rounded up to whole ms.
    assert!(
        now_ms >= reply[1] - 1,
        "{what}: client {i} released before its slot"
    );
}

fn server_time_ms(port: u16) -> i64 {
    let (s, us): (i64, i64) = redis::cmd("TIME")
        .query(&mut node_conn(port))
        .expect("TIME");
    s * 1000 + us / 1000
}

/// What a client held on a master that a planned failover demotes gets, by
/// server (measured on each): Redis 7.0, 7.2, 7.4 and Valkey 8 answer
/// `-UNBLOCKED` when the master turns replica; Valkey 9 keeps the client and
/// answers at its slot (the demoted node's timer still fires). The same for
/// plain connections and for cluster clients, which do not retry UNBLOCKED.
fn planned_failover_answer(v: testkit::ServerVersion) -> &'static str {
    if v.flavor == testkit::Flavor::Valkey && v.major >= 9 {
        "reply"
    } else {
        "unblocked"
    }
}

#[test]
fn blocked_permit_clients_get_an_answer_when_their_master_fails_over() {
    let _serial = serial();
    let mut cluster = Cluster::start(true);
    let master = cluster.masters()[0];
    let replica = cluster.replica_of(master);
    let tag = cluster.tag_on(master, "blk");
    let version = testkit::ServerVersion::of(&mut node_conn(master));

    // Planned failover: the demoted master answers its held clients.
    let key = format!("{tag}:planned");
    let first: Vec<i64> = redis::cmd("PERMIT")
        .arg(&key)
        .arg(700)
        .arg(20)
        .query(&mut node_conn(master))
        .expect("PERMIT");
    assert_eq!(first[0], 0, "immediate permit: {first:?}");
    let base = reserve_ahead(master, &key, 4);
    let held = block_clients(&cluster, master, &key, 3, 2);
    let () = redis::cmd("CLUSTER")
        .arg("FAILOVER")
        .query(&mut node_conn(replica))
        .expect("CLUSTER FAILOVER");
    let out = released(held, "planned failover");
    let want = planned_failover_answer(version);
    for (i, (clustered, r)) in out.iter().enumerate() {
        let what = format!("planned failover on {version:?}, clustered {clustered}");
        assert_eq!(r.kind(), want, "{what}: client {i} got {r:?}");
        if let Released::Reply(v) = r {
            assert_reply_at_slot(&what, i, v, base, server_time_ms(replica));
        }
    }
    cluster.wait_master(replica, Duration::from_secs(20));
    // The held slots' timers still fire on the demoted node (the last one
    // 3.5 s after the reserved ones): it must survive them.
    let last_slot = base + 5 * 700;
    testkit::wait_for(Duration::from_secs(10), "the last slot", || {
        (server_time_ms(replica) > last_slot + 100).then_some(())
    });
    assert!(cluster.is_alive(master), "demoted master crashed");
    assert_eq!(blocked_now(master), 0, "no client left blocked");

    // kill -9: clients held on the (new) master lose their connection.
    let (master, replica) = (replica, master);
    cluster.wait_healthy();
    let key = format!("{tag}:killed");
    let _: Option<Vec<i64>> = redis::cmd("PERMIT")
        .arg(&key)
        .arg(700)
        .arg(20)
        .query(&mut node_conn(master))
        .expect("PERMIT");
    reserve_ahead(master, &key, 4);
    let held = block_clients(&cluster, master, &key, 3, 2);
    cluster.kill(master);
    let out = released(held, "kill -9");
    for (i, (clustered, r)) in out.iter().enumerate() {
        assert_eq!(
            r.kind(),
            "connection lost",
            "kill -9 on {version:?}: client {i} (clustered {clustered}) got {r:?}"
        );
    }
    cluster.wait_master(replica, Duration::from_secs(30));
    cluster.restart(master);
    cluster.wait_healthy();
    let logs = cluster.logs();
    for (port, log) in logs {
        assert!(!log.contains("panic"), "node {port} logged a panic:\n{log}");
    }
}

/// A planned failover (`CLUSTER FAILOVER` on the replica) while WAIT and
/// BLOCK clients are held on the master, the master asleep through some of
/// their turns (so they are released late, while it pauses its writes for
/// the handover). The old master stays up and answers every held client,
/// its counters add up, and master and replica end with equal DUMPs.
#[test]
fn held_clients_some_late_through_a_planned_cluster_failover() {
    let _serial = serial();
    let mut cluster = Cluster::start(true);
    let master = cluster.masters()[0];
    let replica = cluster.replica_of(master);
    let tag = cluster.tag_on(master, "late");
    let (w, q) = (format!("{tag}:w"), format!("{tag}:q"));
    let mut m = node_conn(master);
    let _: Vec<i64> = redis::cmd("THROTTLE")
        .arg(&w)
        .arg(&["4", "1", "1", "4"])
        .query(&mut m)
        .unwrap();
    let _: Vec<i64> = redis::cmd("PERMIT")
        .arg(&q)
        .arg(&["300", "20"])
        .query(&mut m)
        .unwrap();
    let addr = format!("127.0.0.1:{master}");
    let mut rx = Vec::new();
    for _ in 0..4 {
        rx.push(testkit::held_call(
            &addr,
            &["THROTTLE", &w, "4", "1", "1", "1", "WAIT", "30000"],
        ));
        rx.push(testkit::held_call(
            &addr,
            &["PERMIT", &q, "300", "20", "BLOCK", "30000"],
        ));
    }
    // all eight parked (on a slow machine the first may be released before
    // the last arrives)
    testkit::wait_for(Duration::from_secs(20), "eight held clients", || {
        let parked = info_field(master, "throttle", "throttle_blocked_total")
            .and_then(|v| v.parse::<i64>().ok());
        (parked >= Some(8)).then_some(())
    });
    let () = redis::cmd("CLUSTER")
        .arg("FAILOVER")
        .query(&mut node_conn(replica))
        .expect("CLUSTER FAILOVER");
    let () = redis::cmd("DEBUG")
        .arg("SLEEP")
        .arg("1.5")
        .query(&mut m)
        .unwrap();
    let got = testkit::held_answers(rx);
    for a in &got {
        assert!(testkit::is_an_answer(a), "a held client got {a:?}: {got:?}");
    }
    assert!(cluster.is_alive(master), "the old master died");
    cluster.wait_master(replica, Duration::from_secs(20));
    // (key_gone counts those a demoted master refused when a full resync
    // emptied its data; Valkey 9 keeps them until then)
    common::assert_held_counters_add_up(&mut node_conn(master));
    // The new master writes; the old one, its replica now, follows.
    let mut r = node_conn(replica);
    let _: Vec<i64> = redis::cmd("THROTTLE")
        .arg(&w)
        .arg(&["4", "1", "1", "0"])
        .query(&mut r)
        .unwrap();
    let _: Option<Vec<i64>> = redis::cmd("PERMIT")
        .arg(&q)
        .arg(&["300", "20"])
        .query(&mut r)
        .unwrap();
    cluster.wait_healthy();
    testkit::wait_for(Duration::from_secs(20), "equal state", || {
        let same = [&w, &q].iter().all(|k| {
            dump(replica, k) == dump(master, k) && pexpiretime(replica, k) == pexpiretime(master, k)
        });
        same.then_some(())
    });
    for (port, log) in cluster.logs() {
        assert!(!log.contains("panic"), "node {port} logged a panic:\n{log}");
    }
}
