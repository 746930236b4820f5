//! CL.THROTTLE (issue 12): redis-cell's command, checked call by call
//! against the real redis-cell 0.5.0 on a shared frozen clock, and the
//! migration of a server that ran redis-cell.
//!
//! The peer module is `CELL_MODULE` (scripts/test.sh sets it from
//! `scripts/cell.sh`, which builds redis-cell once into a cache). Both
//! modules decide at exactly the same instants: redis-cell reads the host's
//! wall clock, which the test freezes and moves (`testkit::clock`), and
//! this module reads the same instant from its test clock (THROTTLE.CLOCK,
//! set after every move). The server's own clock cannot pin it down: Valkey
//! 9 with its TSC clock reads the wall clock at most once a millisecond
//! and adds TSC time in between, so under a frozen wall clock it jitters by
//! up to a millisecond (and steps back as often).

mod common;

use std::path::PathBuf;

use common::*;
use redis::{Connection, Value};
use testkit::clock::WallClock;

/// redis-cell's module file.
fn cell_module() -> PathBuf {
    let path = std::env::var("CELL_MODULE")
        .expect("CELL_MODULE must name redis-cell's module: CELL_MODULE=$(scripts/cell.sh) cargo test --test cell");
    let path = PathBuf::from(path);
    assert!(
        path.exists(),
        "{} does not exist (scripts/cell.sh builds it)",
        path.display()
    );
    path
}

/// An instant in 2026, in Unix µs.
const T0: i64 = 1_790_000_000_123_456;

/// A server with this module on `clock`, its module reading the test
/// clock (which [`follow`] sets to `clock`'s instant).
fn ours_on(clock: &WallClock, builder: testkit::ServerBuilder) -> Server {
    clock
        .apply(builder.module_args(["test-clock", "yes"]))
        .start()
}

/// Sets this module's test clock to the frozen wall clock's instant.
fn follow(c: &mut Connection, clock: &WallClock) {
    let () = redis::cmd("THROTTLE.CLOCK")
        .arg("FREEZE")
        .arg(clock.frozen_at_us())
        .query(c)
        .expect("THROTTLE.CLOCK FREEZE");
}

/// A server running redis-cell on the frozen `clock`. redis-cell reads the
/// host's wall clock itself, which the shim sets only where the server
/// loads modules without `RTLD_DEEPBIND`: Valkey 9 loads them with it (a
/// module's libc calls then bypass `LD_PRELOAD`), so there redis-cell runs
/// on Debian's redis-server (what is compared is the two modules'
/// arithmetic, not the servers').
fn cell_on(clock: &mut WallClock, builder: testkit::ServerBuilder) -> Server {
    let s = clock
        .apply(builder.clone().module_file(cell_module()))
        .start();
    if cell_follows(&s, clock) {
        return s;
    }
    drop(s);
    eprintln!(
        "note: {} loads modules with RTLD_DEEPBIND: redis-cell's clock cannot be set there, \
         so it runs on redis-server",
        testkit::server_binary()
    );
    let s = clock
        .apply(builder.binary("redis-server").module_file(cell_module()))
        .start();
    assert!(
        cell_follows(&s, clock),
        "the clock shim has no effect on redis-cell"
    );
    s
}

/// Whether redis-cell on `s` sees `clock` move: a bucket of one token per
/// hour, drained an hour ago, has its token again now.
fn cell_follows(s: &Server, clock: &mut WallClock) -> bool {
    let mut c = s.conn();
    let now = clock.frozen_at_us();
    let probe = || {
        [
            "probe".to_string(),
            "0".into(),
            "1".into(),
            "3600".into(),
            "1".into(),
        ]
    };
    clock.freeze(now - 3_600_000_000);
    assert_eq!(cl(&mut c, &probe())[0], 0, "a full bucket allows");
    clock.freeze(now);
    let again = cl(&mut c, &probe());
    let _: i64 = redis::cmd("DEL").arg("probe").query(&mut c).expect("DEL");
    again[0] == 0
}

/// Two servers on one frozen clock: redis-cell's and this module's.
struct Twins {
    ours: Server,
    cell: Server,
    clock: WallClock,
}

impl Twins {
    fn start() -> Twins {
        let mut clock = WallClock::new();
        clock.freeze(T0);
        let cell = cell_on(&mut clock, Server::builder());
        let ours = ours_on(&clock, Server::builder());
        Twins { ours, cell, clock }
    }
}

fn cl(c: &mut Connection, args: &[String]) -> Vec<i64> {
    redis::cmd("CL.THROTTLE")
        .arg(args)
        .query(c)
        .unwrap_or_else(|e| panic!("CL.THROTTLE {args:?}: {e}"))
}

/// A tiny deterministic generator (xorshift64*), so a failing sequence can
/// be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[(self.next() % from.len() as u64) as usize]
    }
}

/// Random call sequences (limits, quantities, pauses) go to both modules;
/// every reply must match, field by field, within 1 where the two round
/// differently at a boundary.
///
/// A boundary can also flip a decision: redis-cell keeps its emission
/// interval in whole nanoseconds (7 per 3 s is 428,571,428 ns, not
/// 428,571,428.57…), so at an instant where this module, exact, is still a
/// fraction of a microsecond short of a token, redis-cell may already see
/// it. Such a flip must be exactly that: this module denies with a wait
/// under a millisecond (`retry_after` 0 s) where redis-cell allows. The two
/// states differ by a token afterwards, so the key is set aside and the
/// sequence carries on with a fresh one. Flips must stay rare.
#[test]
fn replies_match_redis_cell_call_by_call() {
    let mut t = Twins::start();
    let (mut ours, mut cell) = (t.ours.conn(), t.cell.conn());
    let mut worst = [0i64; 5];
    let (mut calls, mut flips) = (0, 0);
    for seed in 1..=12u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        // A few keys per sequence, each with its own limit.
        let limits: Vec<[i64; 3]> = (0..3)
            .map(|_| {
                [
                    rng.pick(&[0, 1, 2, 5, 15, 100]),
                    rng.pick(&[1, 2, 3, 7, 30, 100, 1000]),
                    rng.pick(&[1, 2, 3, 10, 60, 3600]),
                ]
            })
            .collect();
        let mut generation = [0u32; 3];
        for step in 0..250 {
            let k = rng.pick(&[0usize, 1, 2]);
            let [burst, count, period] = limits[k];
            let quantity = rng.pick(&[0, 1, 1, 1, 2, 3, burst + 1, burst + 2]);
            let advance_us =
                rng.pick(&[0, 0, 1_000, 37_000, 250_000, 999_999, 3_000_000, 61_000_000]);
            t.clock.advance(advance_us);
            follow(&mut ours, &t.clock);
            let args: Vec<String> = [format!("s{seed}:k{k}:{}", generation[k])]
                .into_iter()
                .chain([burst, count, period, quantity].map(|n| n.to_string()))
                .collect();
            let a = cl(&mut ours, &args);
            let b = cl(&mut cell, &args);
            calls += 1;
            let at = format!("seed {seed} step {step} {args:?}: ours {a:?}, redis-cell {b:?}");
            assert_eq!(a[1], b[1], "limit, {at}");
            if a[0] != b[0] {
                assert!(
                    a[0] == 1 && a[3] == 0 && b[0] == 0,
                    "a decision differs beyond a boundary, {at}"
                );
                flips += 1;
                generation[k] += 1;
                continue;
            }
            for f in 0..5 {
                let d = (a[f] - b[f]).abs();
                worst[f] = worst[f].max(d);
                assert!(d <= 1, "field {f}, {at}");
            }
        }
    }
    eprintln!(
        "{calls} calls, {flips} decisions flipped at a boundary; largest difference per field: {worst:?}"
    );
    assert_eq!(calls, 12 * 250);
    assert!(flips * 100 <= calls, "{flips} flips in {calls} calls");
}

/// A rate that is not a finite decimal (7 per 3 s) stays exact: taken at
/// the instants they are due, 30,000 tokens arrive exactly when 7/3 per
/// second says, the last as on time as the first (redis-cell's emission
/// interval, truncated to whole nanoseconds, would run 0.57 ns early per
/// token).
#[test]
fn a_ratio_rate_does_not_drift() {
    let s = Server::builder().module_args(["test-clock", "yes"]).start();
    let mut c = s.conn();
    let clock = |c: &mut Connection, args: &[&str]| {
        let _: i64 = redis::cmd("THROTTLE.CLOCK")
            .arg(args)
            .query(c)
            .map(|_: Value| 0)
            .expect("THROTTLE.CLOCK");
    };
    clock(&mut c, &["FREEZE", &T0.to_string()]);
    // Capacity 2, so a call a fraction of a µs after its token is due
    // loses nothing: both taken now, then one every 3/7 s.
    let args = |q: i64| {
        vec![
            "r".to_string(),
            "1".into(),
            "7".into(),
            "3".into(),
            q.to_string(),
        ]
    };
    assert_eq!(cl(&mut c, &args(2))[0], 0);
    // In pipelines of 1,000 tokens: one round trip each, the same calls.
    let mut elapsed_us = 0i64;
    for first in (1..=30_000i64).step_by(1000) {
        let mut pipe = redis::pipe();
        let mut advance = |pipe: &mut redis::Pipeline, to_us: i64| {
            pipe.cmd("THROTTLE.CLOCK")
                .arg("ADVANCE")
                .arg(to_us - elapsed_us)
                .ignore();
            elapsed_us = to_us;
        };
        let mut expected = Vec::new(); // (token, due, CL.THROTTLE's "limited")
        for n in first..first + 1000 {
            let due_us = (n * 3_000_000 + 6) / 7; // ceil(n × 3/7 s) in µs
            if n % 10_000 == 0 {
                // A microsecond before it is due, the token is not there.
                advance(&mut pipe, due_us - 1);
                pipe.cmd("CL.THROTTLE").arg(args(1));
                expected.push((n, due_us, 1));
            }
            advance(&mut pipe, due_us);
            pipe.cmd("CL.THROTTLE").arg(args(1));
            expected.push((n, due_us, 0));
        }
        let replies: Vec<Vec<i64>> = pipe.query(&mut c).expect("THROTTLE.CLOCK and CL.THROTTLE");
        assert_eq!(replies.len(), expected.len());
        for ((n, due_us, limited), r) in expected.into_iter().zip(replies) {
            let when = if limited == 1 { "early" } else { "not there" };
            assert_eq!(r[0], limited, "token {n} {when} at {due_us} µs: {r:?}");
        }
    }
}

/// What redis-cell gets wrong, done right: a key of another type is
/// WRONGTYPE (redis-cell 0.5.0 crashes the server on a string that is not
/// a number), quantity 0 writes nothing, bad limits are errors naming the
/// argument, and a negative quantity points to THROTTLE.REFUND.
#[test]
fn wrong_input_gets_clear_errors() {
    let (mut s, mut c) = start();
    let _: () = redis::cmd("SET")
        .arg("str")
        .arg("hello")
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("HSET")
        .arg("h")
        .arg("f")
        .arg("v")
        .query(&mut c)
        .unwrap();
    for key in ["str", "h"] {
        let e = expect_err(
            &mut c,
            redis::cmd("CL.THROTTLE").arg(&[key, "5", "10", "1"]),
        );
        assert!(e.starts_with("WRONGTYPE"), "{key}: {e}");
    }
    assert_eq!(key_type(&mut c, "str"), "string");
    for (args, want) in [
        (
            vec!["k", "5", "0", "1"],
            "ERR count_per_period must be an integer >= 1",
        ),
        (
            vec!["k", "5", "10", "0"],
            "ERR period must be an integer >= 1",
        ),
        (
            vec!["k", "-1", "10", "1"],
            "ERR max_burst must be an integer >= 0",
        ),
        (
            vec!["k", "5", "-10", "1"],
            "ERR count_per_period must be an integer >= 1",
        ),
        (
            vec!["k", "5", "10", "1", "-1"],
            "ERR quantity must be an integer >= 0 (to give tokens back, use THROTTLE.REFUND)",
        ),
        (
            vec!["k", "5", "10", "1", "x"],
            "ERR quantity is not a valid integer",
        ),
        (
            vec!["k", "1.5", "10", "1"],
            "ERR max_burst is not a valid integer",
        ),
        (
            vec!["k", "5", "10"],
            "ERR wrong number of arguments for 'cl.throttle' command",
        ),
        (
            vec!["k", "5", "10", "1", "1", "1"],
            "ERR wrong number of arguments for 'cl.throttle' command",
        ),
        (
            vec!["k", "5", "99999999999", "1"],
            "ERR count_per_period must be an integer >= 1 (at most 4294967295",
        ),
    ] {
        let e = expect_err(&mut c, redis::cmd("CL.THROTTLE").arg(&args));
        assert!(e.starts_with(want), "{args:?}: {e}");
    }
    // A peek creates nothing.
    assert_eq!(
        cl(
            &mut c,
            &["p".into(), "5".into(), "10".into(), "1".into(), "0".into()]
        ),
        [0, 6, 6, -1, 0]
    );
    assert!(!exists(&mut c, "p"));
    assert_healthy(&mut s);
}

/// A server that ran redis-cell: its RDB (plain strings holding each
/// key's theoretical arrival time) loads here, and CL.THROTTLE carries on
/// from the same state, converting each key to this module's type on its
/// first call.
#[test]
fn a_redis_cell_rdb_loads_and_carries_on() {
    let mut clock = WallClock::new();
    clock.freeze(T0);
    let mut cell = cell_on(
        &mut clock,
        Server::builder().args(["--dbfilename", "cell.rdb"]),
    );
    let mut c = cell.conn();
    let args = |k: &str, q: i64| {
        vec![
            k.to_string(),
            "15".into(),
            "30".into(),
            "60".into(),
            q.to_string(),
        ]
    };
    for _ in 0..5 {
        cl(&mut c, &args("a", 1));
    }
    cl(&mut c, &args("b", 10));
    let _: () = redis::cmd("SAVE").query(&mut c).unwrap();
    clock.advance(500_000);
    let cell_next: Vec<Vec<i64>> = ["a", "b", "c"]
        .iter()
        .map(|k| cl(&mut c, &args(k, 1)))
        .collect();
    drop(c);
    let dir = ScratchDir::adopt(&mut cell);
    drop(cell);

    let ours = ours_on(
        &clock,
        Server::builder()
            .dir(dir.path())
            .args(["--dbfilename", "cell.rdb"]),
    );
    let mut c = ours.conn();
    follow(&mut c, &clock);
    assert_eq!(key_type(&mut c, "a"), "string");
    // A peek reads the string as a bucket and converts nothing.
    let peek = cl(&mut c, &args("a", 0));
    assert_eq!(peek[..3], [0, 16, cell_next[0][2] + 1]);
    assert_eq!(key_type(&mut c, "a"), "string");
    let our_next: Vec<Vec<i64>> = ["a", "b", "c"]
        .iter()
        .map(|k| cl(&mut c, &args(k, 1)))
        .collect();
    assert_eq!(our_next, cell_next);
    for k in ["a", "b"] {
        assert_eq!(key_type(&mut c, k), "rl-bucket");
        let ttl = pttl(&mut c, k);
        assert!(
            ttl > 0,
            "{k} lost its expiry: PTTL {ttl}, type {}",
            key_type(&mut c, k)
        );
    }
    // The rest of the module works on them.
    let get: Value = redis::cmd("THROTTLE.GET").arg("a").query(&mut c).unwrap();
    let text = format!("{get:?}");
    assert!(text.contains("\"0.5\"") && text.contains("16"), "{text}");
}

/// Replication is by effects: a replica that lags (DEBUG SLEEP) ends
/// byte-identical, including a redis-cell key taken over on the master.
#[test]
fn a_slow_replica_ends_byte_identical() {
    let pair = Pair::start();
    let mut m = pair.master.conn();
    let mut r = pair.replica.conn();
    // A redis-cell key, as redis-cell wrote it: its TAT in ns, with a TTL.
    let now_ns = server_time_us(&mut m) * 1000;
    let _: () = redis::cmd("SET")
        .arg("old")
        .arg((now_ns + 4_000_000_000).to_string())
        .arg("PX")
        .arg(4000)
        .query(&mut m)
        .unwrap();
    pair.sync();
    let _: () = redis::cmd("DEBUG")
        .arg("SLEEP")
        .arg("0.3")
        .query(&mut r)
        .unwrap_or(());
    for i in 0..200 {
        let key = format!("k{}", i % 7);
        cl(
            &mut m,
            &[key, "3".into(), "10".into(), "1".into(), "1".into()],
        );
    }
    cl(
        &mut m,
        &[
            "old".into(),
            "15".into(),
            "30".into(),
            "60".into(),
            "1".into(),
        ],
    );
    pair.sync();
    let keys: Vec<String> = (0..7)
        .map(|i| format!("k{i}"))
        .chain(["old".to_string()])
        .collect();
    for k in &keys {
        assert_eq!(dump(&mut m, k), dump(&mut r, k), "{k}");
        assert_eq!(pexpiretime(&mut m, k), pexpiretime(&mut r, k), "{k}");
    }
    assert_eq!(key_type(&mut r, "old"), "rl-bucket");
    assert_eq!(digest(&mut m), digest(&mut r));
}

/// Cluster clients route it by its key (key specs), and GETKEYS finds it.
#[test]
fn its_key_is_declared() {
    let (_s, mut c) = start();
    let keys: Vec<String> = redis::cmd("COMMAND")
        .arg(&["GETKEYS", "CL.THROTTLE", "user:7", "1", "2", "3"])
        .query(&mut c)
        .unwrap();
    assert_eq!(keys, ["user:7"]);
}
