//! Hostile callers and unlucky operators (issue 11): states a caller could
//! push to an extreme, server stalls, wall-clock steps, huge multi-limits,
//! and THROTTLE.APPLY from ordinary clients. Each reproduction here broke a
//! limiter's promise before the fix.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use redis::Value;
use testkit::clock::WallClock;

/// A connection whose replies may take `secs` (held clients).
fn slow_conn(s: &Server, secs: u64) -> redis::Connection {
    conn_with_timeout(s, secs)
}

/// Runs `args` on its own connection in a thread; the reply (or error) and
/// how long it took arrive on the channel.
fn spawn_call(
    s: &Server,
    args: Vec<String>,
) -> mpsc::Receiver<(redis::RedisResult<Value>, Duration)> {
    let mut c = slow_conn(s, 30);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let t0 = Instant::now();
        let r = redis::cmd(&args[0]).arg(&args[1..]).query::<Value>(&mut c);
        let _ = tx.send((r, t0.elapsed()));
    });
    rx
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

fn ints(v: &Value) -> Vec<i64> {
    match v {
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::Int(n) => *n,
                other => panic!("not an integer: {other:?}"),
            })
            .collect(),
        other => panic!("not an array: {other:?}"),
    }
}

fn blocked(c: &mut redis::Connection) -> u64 {
    throttle_stat(c, "throttle_blocked_clients")
}

/// Reproduction 1: one user fills a permit chain with a huge interval. The
/// chain stops at the horizon instead of saturating (no shared slot), a
/// BLOCK 0 on it answers at once (beyond a year), a client held for a
/// year stalls no one, and every other held client is answered.
#[test]
fn a_saturated_permit_chain_stalls_no_held_client() {
    let (s, mut c) = start();
    let mut pipe = redis::pipe();
    for _ in 0..19_000 {
        pipe.cmd("PERMIT")
            .arg("psat")
            .arg("1000000000000")
            .arg("100000");
    }
    let replies: Vec<Option<Vec<i64>>> = pipe.query(&mut c).unwrap();
    let granted: Vec<&Vec<i64>> = replies.iter().flatten().collect();
    // One immediate permit and one reservation 1e12 ms ahead (the
    // horizon): the next would lie beyond it, so every other call is refused.
    assert_eq!(
        granted.len(),
        2,
        "granted {}, the last {:?}",
        granted.len(),
        granted.last()
    );
    // (valid_at of an immediate permit is rounded down, of a reserved one up.)
    assert!((1_000_000_000_000..=1_000_000_000_001).contains(&(granted[1][1] - granted[0][1])));
    assert!(granted.iter().all(|r| r.iter().all(|&v| v <= NEVER)));
    // BLOCK 0 waits at most a year: a slot further away answers nil at once.
    let r: Option<Vec<i64>> = redis::cmd("PERMIT")
        .arg(&["psat", "1000000000000", "100000", "BLOCK", "0"])
        .query(&mut slow_conn(&s, 5))
        .unwrap();
    assert_eq!(r, None);
    assert_eq!(blocked(&mut c), 0);

    // A client held for a year (365 days: within the one-year cap)…
    permit(&mut c, "year", &["31536000000", "1"]);
    let year = spawn_call(&s, words("PERMIT year 31536000000 1 BLOCK 0"));
    wait_for(Duration::from_secs(5), "the year-long client held", || {
        (blocked(&mut c) == 1).then_some(())
    });
    // …does not stop others from being released.
    permit(&mut c, "k", &["500", "5"]);
    let held_permit = spawn_call(&s, words("PERMIT k 500 5 BLOCK 2000 GRACE 5000"));
    throttle(&mut c, "t", &["1", "1", "1"]);
    let held_wait = spawn_call(&s, words("THROTTLE t 1 1 1 1 WAIT 2000"));
    let (r, _) = held_permit
        .recv_timeout(Duration::from_secs(20))
        .expect("PERMIT … BLOCK answered");
    let r = ints(&r.unwrap());
    assert_eq!(r[0], 0);
    assert!(
        server_time_ms(&mut c) >= r[1] - 1,
        "released before its slot: {r:?}"
    );
    let (r, _) = held_wait
        .recv_timeout(Duration::from_secs(20))
        .expect("THROTTLE … WAIT answered");
    assert_eq!(ints(&r.unwrap())[..3], [1, 0, 0]);
    assert!(
        year.try_recv().is_err(),
        "the year-long client was released"
    );
    assert_eq!(blocked(&mut c), 1);
    // A crafted payload cannot put the chain past the horizon either.
    let () = redis::cmd("CONFIG")
        .arg(&["SET", "throttle.apply-from-clients", "yes"])
        .query(&mut c)
        .unwrap();
    let mut crafted = vec![0x02, b'P'];
    crafted.extend(u64::MAX.to_le_bytes());
    crafted.extend(0u64.to_le_bytes());
    let e = expect_err(
        &mut c,
        redis::cmd("THROTTLE.APPLY").arg("psat").arg(crafted).arg(0),
    );
    assert_eq!(e, "ERR invalid rl-permit payload: bad last slot");
}

/// Reads one RESP reply of integers (an array, or nil) from `stream`.
fn read_ints(stream: &mut TcpStream) -> Option<Vec<i64>> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    let mut line = || -> String {
        buf.clear();
        loop {
            stream.read_exact(&mut byte).expect("a reply");
            if byte[0] == b'\n' {
                break;
            }
            buf.push(byte[0]);
        }
        String::from_utf8_lossy(&buf).trim_end().to_string()
    };
    let head = line();
    if head == "*-1" || head == "_" {
        return None;
    }
    let n: usize = head.strip_prefix('*').expect("an array").parse().unwrap();
    Some(
        (0..n)
            .map(|_| {
                line()
                    .strip_prefix(':')
                    .expect("an integer")
                    .parse()
                    .unwrap()
            })
            .collect(),
    )
}

/// Reproduction 2: 150 callers WAIT on a bucket of 50 refilled at 50/s,
/// and the server stalls for 2 s half a second in. Replies that were due
/// during the stall are not sent all at once when it ends, and not refused
/// either: every caller's timeout (60 s) allows the wait, so every one is
/// allowed, the late ones re-slotted when the stall ends and those behind
/// them moved as much. By arrival, the allowed replies stay within C + r·W
/// (plus 250 ms of client-side jitter) in every window, and INFO's held
/// counters add up.
#[test]
fn a_stalled_server_releases_late_waiters_in_turn_within_the_bound() {
    let (s, mut c) = start();
    let addr = s.addr();
    let cmd = b"*8\r\n$8\r\nTHROTTLE\r\n$2\r\nst\r\n$2\r\n50\r\n$1\r\n1\r\n$1\r\n1\r\n$1\r\n1\r\n$4\r\nWAIT\r\n$5\r\n60000\r\n";
    let t0 = Instant::now();
    let readers: Vec<_> = (0..150)
        .map(|_| {
            let mut conn = TcpStream::connect(&addr).unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(60)))
                .unwrap();
            conn.write_all(cmd).unwrap();
            std::thread::spawn(move || {
                let r = read_ints(&mut conn).expect("a THROTTLE reply");
                (t0.elapsed(), r)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let _: () = redis::cmd("DEBUG")
        .arg("SLEEP")
        .arg(2)
        .query(&mut slow_conn(&s, 10))
        .unwrap();
    let mut replies: Vec<(Duration, Vec<i64>)> =
        readers.into_iter().map(|h| h.join().unwrap()).collect();
    replies.sort_by_key(|(at, _)| *at);
    assert!(
        replies.iter().all(|(_, r)| r[0] == 1),
        "a caller was refused: {replies:?}"
    );
    let late = throttle_stat(&mut c, "throttle_blocked_late");
    assert!(late >= 1, "no waiter was late across a 2 s stall");
    let allowed: Vec<Duration> = replies.iter().map(|(at, _)| *at).collect();
    for (i, start) in allowed.iter().enumerate() {
        let within = allowed[i..]
            .iter()
            .take_while(|t| **t <= *start + Duration::from_secs(1))
            .count();
        assert!(
            within as f64 <= 50.0 + 50.0 * 1.25,
            "{within} allowed replies arrived within 1 s of {start:?}"
        );
    }
    assert_held_counters_add_up(&mut c);
}

/// What a late release does, exactly: with the module's clock frozen (and
/// moved by hand to the held clients' due time), only the server's stall
/// makes them late (by D, about a second). THROTTLE … WAIT is allowed,
/// re-slotted to its release; PERMIT … BLOCK gets a permit valid at its
/// release (its slot moved by D) with its grace after it. Nothing was
/// written by the release: the next call on each key takes the shift (the
/// bucket holds D of refill less than a twin that saw no late release, the
/// next permit is one interval after the moved one).
#[test]
fn late_releases_are_reslotted_and_the_key_carries_the_shift() {
    let s = Server::builder().module_args(["test-clock", "yes"]).start();
    let mut c = s.conn();
    let clock = |c: &mut redis::Connection, args: &[&str]| {
        let _: () = redis::cmd("THROTTLE.CLOCK").arg(args).query(c).unwrap();
    };
    let now_us = server_time_us(&mut c).to_string();
    clock(&mut c, &["FREEZE", &now_us]);
    let call = |c: &mut redis::Connection, line: &str| -> Vec<i64> {
        let w = words(line);
        redis::cmd(&w[0]).arg(&w[1..]).query(c).unwrap()
    };
    // Capacity 10 at 1 token/s, drained (and a twin that sees no WAIT): a
    // WAIT for 2 tokens waits 2 s.
    for key in ["rf", "twin"] {
        assert_eq!(
            call(&mut c, &format!("THROTTLE {key} 1 10 1 10")),
            [1, 0, 0, 10000, 10]
        );
    }
    let first = call(&mut c, "PERMIT pl 2000 5");
    let held_throttle = spawn_call(&s, words("THROTTLE rf 1 10 1 2 WAIT 5000"));
    let held_permit = spawn_call(&s, words("PERMIT pl 2000 5 BLOCK 5000"));
    testkit::wait_for(Duration::from_secs(10), "two held clients", || {
        (blocked(&mut c) == 2).then_some(())
    });
    // The module's clock reaches their due time; the server then stalls for
    // 3 s, so both are released about 1 s late (on the monotonic clock).
    clock(&mut c, &["ADVANCE", "2000000"]);
    let _: () = redis::cmd("DEBUG")
        .arg("SLEEP")
        .arg(3)
        .query(&mut slow_conn(&s, 10))
        .unwrap();
    let (throttle_reply, _) = held_throttle.recv().unwrap();
    // Allowed; 0 left when it proceeds, full 10 s after.
    assert_eq!(ints(&throttle_reply.unwrap()), [1, 0, 0, 10000, 10]);
    let (permit_reply, _) = held_permit.recv().unwrap();
    let p = ints(&permit_reply.unwrap());
    let planned = first[1] + 2000;
    let moved_ms = p[1] - planned;
    assert_eq!(p[0], 0);
    assert!(
        (900..=10_000).contains(&moved_ms),
        "the permit moved {moved_ms} ms, not about the 1 s it was late"
    );
    // Its grace (10% of 2 s) follows its new slot.
    assert_eq!(p[2] - p[1], 200);
    assert_eq!(throttle_stat(&mut c, "throttle_blocked_late"), 2);
    // The next permit comes one interval after the moved slot.
    let next = call(&mut c, "PERMIT pl 2000 5");
    assert_eq!(next[1], p[1] + 2000, "{next:?} after {p:?}");
    // The bucket took a shift of about as much: 2 tokens and D of refill
    // behind the twin (at 1 token/s, D ms more to full).
    let rf = call(&mut c, "THROTTLE.PEEK rf 1 10 1 0");
    let twin = call(&mut c, "THROTTLE.PEEK twin 1 10 1 0");
    let behind_ms = rf[3] - twin[3];
    assert!(
        (2900..=12_000).contains(&behind_ms),
        "the bucket is {behind_ms} ms behind its twin, not 2 s of WAIT plus about 1 s"
    );
    assert_held_counters_add_up(&mut c);
}

// ---- wall-clock steps -------------------------------------------------------------

/// A server whose wall clock the test steps.
struct SteppedServer {
    server: Server,
    clock: WallClock,
}

impl SteppedServer {
    fn start() -> SteppedServer {
        let clock = WallClock::new();
        let server = clock.apply(Server::builder()).start();
        let mut s = SteppedServer { server, clock };
        // The shim must work on this server, or the tests below prove nothing.
        let mut c = s.server.conn();
        let before = server_time_us(&mut c);
        s.step(-3_600_000_000);
        let after = server_time_us(&mut c);
        assert!(
            after < before - 3_500_000_000,
            "the clock shim has no effect on {}",
            testkit::server_binary()
        );
        s.step(3_600_000_000);
        s
    }

    /// Moves the server's wall clock by `delta_us`.
    fn step(&mut self, delta_us: i64) {
        self.clock.step(delta_us);
    }
}

const HOUR_US: i64 = 3_600_000_000;

/// Reproduction 3a: a drained bucket, then the clock steps back an hour.
/// It neither freezes for the hour (retry_after stays a second, the next
/// token comes a second later in real time) nor creates tokens, and its
/// TTL stays near its reset time.
#[test]
fn a_step_back_neither_freezes_nor_creates_tokens() {
    let mut s = SteppedServer::start();
    let mut c = s.server.conn();
    for _ in 0..5 {
        assert_eq!(throttle(&mut c, "cj", &["1", "5", "1"])[0], 1);
    }
    // Drained: the next token is at most a second away (less by however
    // long the six calls took).
    let drained = throttle(&mut c, "cj", &["1", "5", "1"]);
    assert_eq!(drained[..2], [0, 0]);
    assert!((1..=1000).contains(&drained[2]), "{drained:?}");
    s.step(-HOUR_US);
    let r = throttle(&mut c, "cj", &["1", "5", "1"]);
    assert_eq!(r[0], 0);
    assert!(r[2] <= 2000, "retry_after {} ms after a step back", r[2]);
    assert!(r[3] <= 7000, "reset_after {} ms after a step back", r[3]);
    assert!(
        pttl(&mut c, "cj") <= 8000,
        "PTTL {} after a step back",
        pttl(&mut c, "cj")
    );
    // The next token comes within a couple of seconds of real time…
    wait_for(
        Duration::from_secs(5),
        "a token after the step back",
        || (throttle(&mut c, "cj", &["1", "5", "1"])[0] == 1).then_some(()),
    );
    // …and only one: no tokens were created.
    assert_eq!(throttle(&mut c, "cj", &["1", "5", "1"])[0], 0);
}

/// Reproduction 3b: a permit queue after an hour's step back carries on
/// from the new clock: not refused for the hour, no hour-long waits.
#[test]
fn a_step_back_does_not_freeze_a_permit_queue() {
    let mut s = SteppedServer::start();
    let mut c = s.server.conn();
    for _ in 0..4 {
        assert!(permit(&mut c, "pj", &["1000", "3"]).is_some());
    }
    assert_eq!(permit(&mut c, "pj", &["1000", "3"]), None);
    s.step(-HOUR_US);
    let r = permit(&mut c, "pj", &["1000", "100000"]).expect("a deep queue takes it");
    assert!(r[0] <= 4000, "told to wait {} ms after a step back", r[0]);
    wait_for(Duration::from_secs(5), "a place in the queue", || {
        permit(&mut c, "pj", &["1000", "5"])
    });
    assert!(pttl(&mut c, "pj") <= 10_000, "PTTL {}", pttl(&mut c, "pj"));
}

/// Reproduction 3c and 3d: held clients wait on the monotonic clock. A
/// 30 s step back does not hold one past its slot (let alone its timeout),
/// and an hour's step forward does not release one early.
#[test]
fn held_clients_wait_in_elapsed_time_whatever_the_wall_clock_does() {
    let mut s = SteppedServer::start();
    let mut c = s.server.conn();
    for (key, step) in [("back", -30_000_000i64), ("fwd", HOUR_US)] {
        // The held caller's slot is 2 s after this first permit (whenever
        // the held call itself arrives).
        let first = std::time::Instant::now();
        permit(&mut c, key, &["2000", "5"]);
        let base = throttle_stat(&mut c, "throttle_blocked_total");
        let held = spawn_call(
            &s.server,
            words(&format!("PERMIT {key} 2000 5 BLOCK 10000 GRACE 5000")),
        );
        wait_for(Duration::from_secs(5), "held", || {
            (throttle_stat(&mut c, "throttle_blocked_total") == base + 1).then_some(())
        });
        s.step(step);
        let (r, took) = held
            .recv_timeout(Duration::from_secs(12))
            .expect("answered within its timeout");
        let since_first = first.elapsed();
        let r = ints(&r.unwrap());
        assert_eq!(r[0], 0, "{key}: {r:?}");
        assert!(
            since_first >= Duration::from_millis(1990),
            "{key}: released {since_first:?} after the first permit, its slot was 2 s after it"
        );
        // Not held longer either: a permit (not nil) means it was released
        // within its 5 s GRACE of the slot, against 30 s before the fix.
        assert!(
            took < Duration::from_secs(7),
            "{key}: released after {took:?}, past its slot and grace"
        );
    }
}

/// Reproduction 4: THROTTLE.ALL's work per call is bounded: more limits
/// than `all-max-limits` are refused before any key is touched, and the
/// duplicate check of the largest allowed call is a sort.
#[test]
fn throttle_all_takes_a_bounded_number_of_limits() {
    let (_s, mut c) = start();
    let call = |n: usize, dup: bool| {
        let mut cmd = redis::cmd("THROTTLE.ALL");
        cmd.arg(1);
        for i in 0..n {
            let key = if dup && i == n - 1 {
                "{t}:0".to_string()
            } else {
                format!("{{t}}:{i}")
            };
            cmd.arg(key).arg(&["10", "1", "1"]);
        }
        cmd
    };
    let e = expect_err(&mut c, &call(65, false));
    assert_eq!(
        e,
        "ERR THROTTLE.ALL takes at most 64 limits (config throttle.all-max-limits)"
    );
    assert!(!exists(&mut c, "{t}:0"));
    let r: Value = call(64, false).query(&mut c).unwrap();
    assert!(
        matches!(&r, Value::Array(v) if v[0] == Value::Int(1)),
        "{r:?}"
    );
    let () = redis::cmd("CONFIG")
        .arg(&["SET", "throttle.all-max-limits", "1024"])
        .query(&mut c)
        .unwrap();
    let e = expect_err(&mut c, &call(1024, true));
    assert_eq!(e, "ERR THROTTLE.ALL got the same key twice");
    let r: Value = call(1024, false).query(&mut c).unwrap();
    assert!(
        matches!(&r, Value::Array(v) if v[0] == Value::Int(1)),
        "{r:?}"
    );
    let e = expect_err(
        &mut c,
        redis::cmd("CONFIG").arg(&["SET", "throttle.all-max-limits", "1025"]),
    );
    assert!(e.starts_with("ERR"), "{e}");
}

/// Reproduction 5: THROTTLE.APPLY is for replication and the AOF. A user
/// granted `+@all -@dangerous` cannot call it: the ACL refuses it where the
/// server has module ACL categories (it is in `@dangerous`), the module
/// everywhere else; an operator can enable it for tools.
#[test]
fn apply_is_refused_to_ordinary_clients() {
    let (_s, mut c) = start();
    let () = redis::cmd("ACL")
        .arg(&["SETUSER", "app", "on", ">pw", "~*", "+@all", "-@dangerous"])
        .query(&mut c)
        .unwrap();
    let info: Value = redis::cmd("COMMAND")
        .arg("INFO")
        .arg("throttle.apply")
        .query(&mut c)
        .unwrap();
    let dangerous = format!("{info:?}").contains("dangerous");
    let mut app = _s.conn();
    let () = redis::cmd("AUTH")
        .arg("app")
        .arg("pw")
        .query(&mut app)
        .unwrap();
    let payload = [0x02u8, b'P', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let e = expect_err(
        &mut app,
        redis::cmd("THROTTLE.APPLY").arg("k").arg(&payload[..]),
    );
    if dangerous {
        assert!(e.starts_with("NOPERM"), "{e}");
    } else {
        assert!(e.contains("throttle.apply-from-clients"), "{e}");
    }
    assert!(!exists(&mut c, "k"));
    // The default user, too, until an operator enables it.
    let e = expect_err(
        &mut c,
        redis::cmd("THROTTLE.APPLY").arg("k").arg(&payload[..]),
    );
    assert!(e.contains("throttle.apply-from-clients"), "{e}");
    // The load option, for tools that replay an AOF by hand.
    let s2 = Server::builder()
        .module_args(["apply-from-clients", "yes"])
        .start();
    let ok: String = redis::cmd("THROTTLE.APPLY")
        .arg("k")
        .arg(&payload[..])
        .query(&mut s2.conn())
        .unwrap();
    assert_eq!(ok, "OK");
}
