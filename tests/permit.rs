//! PERMIT (with GRACE and BLOCK) and THROTTLE … WAIT against a real server.
//!
//! Server-held waits are timed with the client's clocks: the wall clock
//! (the same clock the server reads, on this host) to check that a reply
//! never comes before its slot, and `Instant` for durations. Upper bounds
//! carry slack for a busy 2-core machine.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use redis::Connection;

/// `[0, now_ms, i64::MAX]` of an immediate permit.
const NEVER: i64 = i64::MAX;

/// Waits until the server has parked `n` clients since `base` (INFO's
/// monotonic `blocked_total`), so requests arrive in a known order.
fn wait_blocked(con: &mut Connection, base: u64, n: u64) {
    wait_for(Duration::from_secs(5), "clients to block", || {
        (throttle_stat(con, "blocked_total") >= base + n).then_some(())
    });
}

/// What a PERMIT sent from a thread got: the reply (or error), the
/// wall-clock ms at which it arrived, and how long it took.
type Released = (redis::RedisResult<Option<Vec<i64>>>, i64, Duration);

/// Sends a blocking PERMIT from its own connection on a thread.
fn spawn_permit(
    s: &Server,
    key: &'static str,
    args: Vec<&'static str>,
) -> thread::JoinHandle<Released> {
    let mut c = conn_with_timeout(s, 10);
    thread::spawn(move || {
        let t = Instant::now();
        let r = redis::cmd("PERMIT").arg(key).arg(&args).query(&mut c);
        (r, wall_ms(), t.elapsed())
    })
}

#[test]
fn reply_fields_and_ttl() {
    let mut s = Server::start();
    let mut c = s.conn();
    let before = wall_ms();
    let first = permit(&mut c, "k", &["1000", "2"]).unwrap();
    let after = wall_ms();
    assert_eq!([first[0], first[2]], [0, NEVER], "{first:?}");
    assert!((before..=after).contains(&first[1]), "{first:?} not now");
    assert_eq!(key_type(&mut c, "k"), "rl-permit");
    let ttl = pttl(&mut c, "k");
    assert!((900..=1001).contains(&ttl), "PTTL {ttl}");

    // Reserved: one interval after the last slot, 10% grace by default.
    let t = wall_ms();
    let second = permit(&mut c, "k", &["1000", "2"]).unwrap();
    let valid = second[1];
    assert!(
        valid == first[1] + 1000 || valid == first[1] + 1001,
        "{first:?} → {second:?}"
    );
    assert_eq!(second[2], valid + 100, "{second:?}");
    assert!((900..=1000).contains(&second[0]), "{second:?}");
    assert!(
        (valid - second[0] - t).abs() <= 50,
        "wait must be valid_at - now: {second:?} at {t}"
    );
    // The next one chains exactly one interval later.
    let third = permit(&mut c, "k", &["1000", "2"]).unwrap();
    assert_eq!(third[1], valid + 1000, "{third:?}");
    assert_eq!(third[2], third[1] + 100);
    assert!((1900..=2000).contains(&third[0]), "{third:?}");
    // Two waiting = max_waiting: refused, and nothing changes.
    let d0 = dump(&mut c, "k");
    let e0 = pexpiretime(&mut c, "k");
    assert_eq!(permit(&mut c, "k", &["1000", "2"]), None);
    assert_eq!(dump(&mut c, "k"), d0);
    assert_eq!(pexpiretime(&mut c, "k"), e0);
    // The key lives until one interval after its last slot.
    assert_eq!(e0, third[1] + 1000);
    let ttl = pttl(&mut c, "k");
    assert!((2850..=3001).contains(&ttl), "PTTL {ttl}");
    assert_healthy(&mut s);
}

#[test]
fn max_waiting_zero_gives_only_immediate_permits() {
    let mut s = Server::start();
    let mut c = s.conn();
    assert_eq!(permit(&mut c, "k", &["100", "0"]).unwrap()[0], 0);
    let d0 = dump(&mut c, "k");
    assert_eq!(permit(&mut c, "k", &["100", "0"]), None);
    assert_eq!(permit(&mut c, "k", &["100", "0", "BLOCK", "0"]), None);
    assert_eq!(dump(&mut c, "k"), d0);
    thread::sleep(Duration::from_millis(100));
    let r = permit(&mut c, "k", &["100", "0"]).unwrap();
    assert_eq!([r[0], r[2]], [0, NEVER], "{r:?}");
    assert_healthy(&mut s);
}

#[test]
fn a_finished_schedule_expires() {
    let mut s = Server::start();
    let mut c = s.conn();
    permit(&mut c, "k", &["20", "5"]);
    permit(&mut c, "k", &["20", "5"]);
    wait_for(Duration::from_secs(2), "the key to expire", || {
        (!exists(&mut c, "k")).then_some(())
    });
    assert_eq!(permit(&mut c, "k", &["20", "5"]).unwrap()[0], 0);
    assert_healthy(&mut s);
}

#[test]
fn grace_sets_the_expiry_of_reserved_permits() {
    let mut s = Server::start();
    let mut c = s.conn();
    for (grace, extra) in [("250", 250), ("0", 0), ("100000", 100_000)] {
        let key = format!("g{grace}");
        let r = permit(&mut c, &key, &["1000", "5", "GRACE", grace]).unwrap();
        assert_eq!(r[2], NEVER, "immediate permits never expire");
        let r = permit(&mut c, &key, &["1000", "5", "grace", grace]).unwrap();
        assert_eq!(r[2], r[1] + extra, "GRACE {grace}: {r:?}");
    }
    assert_healthy(&mut s);
}

#[test]
fn default_grace_is_ten_percent_rounded_up_to_ms() {
    let mut s = Server::start();
    let mut c = s.conn();
    for (interval, grace) in [("1000", 100), ("15", 2), ("3000", 300), ("10", 1), ("7", 1)] {
        let key = format!("i{interval}");
        // In MULTI both calls read nearly the same clock: the second is
        // reserved however short the interval.
        let replies: Vec<Vec<i64>> = redis::pipe()
            .atomic()
            .cmd("PERMIT")
            .arg(&key)
            .arg(&[interval, "5"])
            .cmd("PERMIT")
            .arg(&key)
            .arg(&[interval, "5"])
            .query(&mut c)
            .unwrap();
        let r = &replies[1];
        assert_eq!(r[2] - r[1], grace, "interval {interval}: {replies:?}");
    }
    // The percentage is a module config.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("throttle.permit-grace-percent")
        .arg(50)
        .query(&mut c)
        .unwrap();
    permit(&mut c, "p50", &["1000", "5"]);
    let r = permit(&mut c, "p50", &["1000", "5"]).unwrap();
    assert_eq!(r[2] - r[1], 500, "{r:?}");
    assert_healthy(&mut s);
}

#[test]
fn fractional_intervals_are_microseconds() {
    let mut s = Server::start();
    let mut c = s.conn();
    // Five permits 0.25 ms apart inside one transaction (one clock read
    // each, microseconds apart): one immediate, four reserved.
    let mut p = redis::pipe();
    p.atomic();
    for _ in 0..5 {
        p.cmd("PERMIT").arg("q").arg(&["0.25", "10"]);
    }
    let replies: Vec<Vec<i64>> = p.query(&mut c).unwrap();
    assert_eq!(replies[0][0], 0);
    assert_eq!(replies[0][2], NEVER);
    for r in &replies[1..] {
        assert_eq!(r[0], 1, "waits round up to whole ms: {replies:?}");
        assert_eq!(r[2], r[1] + 1, "grace 10% of 250 µs → 1 ms: {replies:?}");
    }
    let span = replies[4][1] - replies[0][1];
    assert!((1..=2).contains(&span), "4 × 0.25 ms: {replies:?}");
    assert_healthy(&mut s);
}

#[test]
fn block_holds_the_caller_until_its_slot() {
    let mut s = Server::start();
    let mut c = conn_with_timeout(&s, 10);
    let first = permit(&mut c, "k", &["200", "5"]).unwrap();
    let t = Instant::now();
    let r = permit(&mut c, "k", &["200", "5", "BLOCK", "1000"]).unwrap();
    let held = t.elapsed();
    let arrived = wall_ms();
    assert_eq!(r[0], 0, "a held permit is due when it arrives: {r:?}");
    assert!(r[1] == first[1] + 200 || r[1] == first[1] + 201, "{r:?}");
    assert_eq!(r[2], r[1] + 20);
    assert!(arrived >= r[1] - 1, "released {} ms early", r[1] - arrived);
    assert!(
        held >= Duration::from_millis(150) && held < Duration::from_millis(600),
        "held {held:?}"
    );
    // BLOCK 0: no limit on the wait (still bounded by max_waiting).
    let t = Instant::now();
    let r = permit(&mut c, "k", &["200", "5", "BLOCK", "0"]).unwrap();
    assert_eq!(r[0], 0);
    assert!(
        t.elapsed() >= Duration::from_millis(150),
        "{:?}",
        t.elapsed()
    );
    assert!(wall_ms() >= r[1] - 1);
    // An immediate permit is answered at once, BLOCK or not.
    let r = permit(&mut c, "fresh", &["200", "5", "BLOCK", "1000"]).unwrap();
    assert_eq!([r[0], r[2]], [0, NEVER]);
    assert_eq!(throttle_stat(&mut c, "blocked_clients"), 0);
    assert!(throttle_stat(&mut c, "blocked_released") >= 2);
    assert_healthy(&mut s);
}

#[test]
fn block_shorter_than_the_wait_answers_nil_at_once_and_reserves_nothing() {
    let mut s = Server::start();
    let mut c = s.conn();
    let first = permit(&mut c, "k", &["1000", "5"]).unwrap();
    let d0 = dump(&mut c, "k");
    let e0 = pexpiretime(&mut c, "k");
    let t = Instant::now();
    assert_eq!(permit(&mut c, "k", &["1000", "5", "BLOCK", "100"]), None);
    assert!(
        t.elapsed() < Duration::from_millis(100),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(dump(&mut c, "k"), d0);
    assert_eq!(pexpiretime(&mut c, "k"), e0);
    // The next caller gets the slot the refused one did not take.
    let r = permit(&mut c, "k", &["1000", "5"]).unwrap();
    assert!(r[1] - first[1] <= 1001, "{first:?} → {r:?}");
    // A full queue is refused at once too, whatever the timeout.
    let t = Instant::now();
    for _ in 0..4 {
        permit(&mut c, "k", &["1000", "5"]).unwrap();
    }
    assert_eq!(permit(&mut c, "k", &["1000", "5", "BLOCK", "0"]), None);
    assert!(
        t.elapsed() < Duration::from_millis(100),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(throttle_stat(&mut c, "blocked_total"), 0);
    assert_healthy(&mut s);
}

#[test]
fn ten_blocked_clients_are_released_in_order_one_interval_apart() {
    let mut s = Server::start();
    let mut c = s.conn();
    let base = throttle_stat(&mut c, "blocked_total");
    let first = permit(&mut c, "fifo", &["50", "20"]).unwrap();
    let mut handles = Vec::new();
    for i in 0..10 {
        handles.push(spawn_permit(&s, "fifo", vec!["50", "20", "BLOCK", "5000"]));
        // The next request leaves only once this one is parked.
        wait_blocked(&mut c, base, i + 1);
    }
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut prev_valid = first[1];
    let mut prev_arrival = 0;
    for (i, (r, arrived, _)) in results.iter().enumerate() {
        let r = r.as_ref().unwrap().as_ref().unwrap();
        assert_eq!(r[0], 0, "client {i}: {r:?}");
        let gap = r[1] - prev_valid;
        if i == 0 {
            assert!(gap == 50 || gap == 51, "client 0: {first:?} → {r:?}");
        } else {
            assert_eq!(gap, 50, "client {i}: slots one interval apart");
        }
        assert_eq!(r[2], r[1] + 5, "grace 10% of 50 ms");
        assert!(
            *arrived >= r[1] - 1,
            "client {i} released early: {r:?} at {arrived}"
        );
        assert!(
            *arrived <= r[1] + 150,
            "client {i} released late: {r:?} at {arrived}"
        );
        assert!(*arrived >= prev_arrival, "client {i} released out of order");
        prev_valid = r[1];
        prev_arrival = *arrived;
    }
    assert_eq!(throttle_stat(&mut c, "blocked_clients"), 0);
    assert_eq!(throttle_stat(&mut c, "blocked_released"), base + 10);
    assert_healthy(&mut s);
}

#[test]
fn blocked_clients_do_not_stop_the_server() {
    let mut s = Server::start();
    let mut c = s.conn();
    let base = throttle_stat(&mut c, "blocked_total");
    permit(&mut c, "k", &["500", "5"]);
    let h = spawn_permit(&s, "k", vec!["500", "5", "BLOCK", "0"]);
    wait_blocked(&mut c, base, 1);
    // Meanwhile everyone else is served at once.
    let t = Instant::now();
    for i in 0..100 {
        throttle(&mut c, format!("other{i}"), &["5", "2", "8"]);
    }
    assert_eq!(throttle_stat(&mut c, "blocked_clients"), 1);
    assert!(
        t.elapsed() < Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    let (r, _, held) = h.join().unwrap();
    assert_eq!(r.unwrap().unwrap()[0], 0);
    assert!(held >= Duration::from_millis(400), "{held:?}");
    assert_healthy(&mut s);
}

#[test]
fn throttle_wait_holds_until_the_tokens_are_due() {
    let mut s = Server::start();
    let mut c = conn_with_timeout(&s, 10);
    let args = ["10", "1", "0.1"]; // one token per 100 ms, limit 1
    assert_eq!(throttle(&mut c, "w", &args), [1, 0, 0, 100, 1]);
    let t = Instant::now();
    let r = throttle(&mut c, "w", &["10", "1", "0.1", "1", "WAIT", "1000"]);
    let held = t.elapsed();
    // Allowed when released; the bucket is then empty, full 100 ms later.
    assert_eq!(r, [1, 0, 0, 100, 1]);
    assert!(
        held >= Duration::from_millis(80) && held < Duration::from_millis(500),
        "held {held:?}"
    );
    // Tokens available now: WAIT answers at once.
    thread::sleep(Duration::from_millis(110));
    let t = Instant::now();
    assert_eq!(
        throttle(&mut c, "w", &["10", "1", "0.1", "1", "WAIT", "1000"])[0],
        1
    );
    assert!(t.elapsed() < Duration::from_millis(50), "{:?}", t.elapsed());
    // Due later than the timeout: denied at once, nothing reserved.
    let d0 = dump(&mut c, "w");
    let t = Instant::now();
    let r = throttle(&mut c, "w", &["10", "1", "0.1", "1", "WAIT", "20"]);
    assert_eq!([r[0], r[1], r[4]], [0, 0, 1], "{r:?}");
    assert!((21..=100).contains(&r[2]), "{r:?}");
    assert!(t.elapsed() < Duration::from_millis(50), "{:?}", t.elapsed());
    assert_eq!(dump(&mut c, "w"), d0);
    // WAIT 0 is the plain call.
    assert_eq!(
        throttle(&mut c, "w", &["10", "1", "0.1", "1", "WAIT", "0"])[0],
        0
    );
    // A cost above the limit never waits.
    let t = Instant::now();
    let r = throttle(&mut c, "w", &["10", "1", "0.1", "2", "WAIT", "5000"]);
    assert_eq!([r[0], r[2]], [0, -1]);
    assert!(t.elapsed() < Duration::from_millis(50));
    assert_eq!(dump(&mut c, "w"), d0);
    assert_healthy(&mut s);
}

#[test]
fn throttle_waiters_queue_in_order() {
    let mut s = Server::start();
    let mut c = s.conn();
    let base = throttle_stat(&mut c, "blocked_total");
    throttle(&mut c, "q", &["10", "1", "0.1"]); // empty now
    let start = Instant::now();
    let mut handles = Vec::new();
    for i in 0..3 {
        let mut wc = conn_with_timeout(&s, 10);
        handles.push(thread::spawn(move || {
            let r = throttle(&mut wc, "q", &["10", "1", "0.1", "1", "WAIT", "2000"]);
            (r, start.elapsed())
        }));
        wait_blocked(&mut c, base, i + 1);
    }
    // A plain caller meanwhile is told to come back after all three.
    let r = throttle(&mut c, "q", &["10", "1", "0.1"]);
    assert_eq!(r[0], 0);
    assert!(
        (250..=400).contains(&r[2]),
        "queued behind the waiters: {r:?}"
    );
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut prev = Duration::ZERO;
    for (i, (r, arrived)) in results.iter().enumerate() {
        assert_eq!(r[0], 1, "waiter {i}: {r:?}");
        assert!(*arrived > prev, "waiter {i} released out of order");
        prev = *arrived;
    }
    assert!(prev >= Duration::from_millis(250), "{prev:?}");
    assert_healthy(&mut s);
}

#[test]
fn block_and_wait_inside_multi_and_scripts_answer_at_once() {
    let mut s = Server::start();
    let mut c = s.conn();
    let t = Instant::now();
    let replies: Vec<Vec<i64>> = redis::pipe()
        .atomic()
        .cmd("PERMIT")
        .arg("m")
        .arg(&["1000", "5", "BLOCK", "0"])
        .cmd("PERMIT")
        .arg("m")
        .arg(&["1000", "5", "BLOCK", "0"])
        .cmd("PERMIT")
        .arg("m")
        .arg(&["1000", "5", "BLOCK", "10"])
        .query(&mut c)
        .unwrap();
    assert!(
        t.elapsed() < Duration::from_millis(200),
        "{:?}",
        t.elapsed()
    );
    assert_eq!([replies[0][0], replies[0][2]], [0, NEVER]);
    assert!((900..=1000).contains(&replies[1][0]), "{replies:?}");
    assert!((1900..=2000).contains(&replies[2][0]), "{replies:?}");
    assert_eq!(replies[2][1], replies[1][1] + 1000);
    // The same from a script.
    let t = Instant::now();
    let r: Vec<Vec<i64>> = redis::cmd("EVAL")
        .arg(
            "return {redis.call('PERMIT', KEYS[1], '1000', '5', 'BLOCK', '0'),
                     redis.call('PERMIT', KEYS[1], '1000', '5', 'BLOCK', '0')}",
        )
        .arg(1)
        .arg("lua")
        .query(&mut c)
        .unwrap();
    assert!(
        t.elapsed() < Duration::from_millis(200),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(r[0][0], 0);
    assert!((900..=1000).contains(&r[1][0]), "{r:?}");
    assert_eq!(throttle_stat(&mut c, "blocked_total"), 0);
    assert_healthy(&mut s);
}

#[test]
fn a_client_killed_or_gone_while_blocked_harms_no_one() {
    let mut s = Server::start();
    let mut c = s.conn();
    let base = throttle_stat(&mut c, "blocked_total");
    let first = permit(&mut c, "k", &["200", "10"]).unwrap();

    // A: killed by CLIENT KILL while it waits for slot 1.
    let mut a = conn_with_timeout(&s, 10);
    let a_id: i64 = redis::cmd("CLIENT").arg("ID").query(&mut a).unwrap();
    let (tx, rx) = mpsc::channel();
    let ha = thread::spawn(move || {
        let r = redis::cmd("PERMIT")
            .arg("k")
            .arg(&["200", "10", "BLOCK", "0"])
            .query::<redis::Value>(&mut a);
        tx.send(()).unwrap();
        r
    });
    wait_blocked(&mut c, base, 1);
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(a_id)
        .query(&mut c)
        .unwrap();
    assert_eq!(killed, 1);
    rx.recv_timeout(Duration::from_secs(2))
        .expect("the killed client's call ends");
    assert!(ha.join().unwrap().is_err(), "the killed client got a reply");

    // B: its socket closes while it waits for slot 2.
    let mut raw = TcpStream::connect(s.addr()).unwrap();
    raw.write_all(
        b"*6\r\n$6\r\nPERMIT\r\n$1\r\nk\r\n$3\r\n200\r\n$2\r\n10\r\n$5\r\nBLOCK\r\n$1\r\n0\r\n",
    )
    .unwrap();
    wait_blocked(&mut c, base, 2);
    drop(raw);

    // C waits for slot 3: the two lost slots stay lost, C is unaffected.
    let hc = spawn_permit(&s, "k", vec!["200", "10", "BLOCK", "0"]);
    wait_blocked(&mut c, base, 3);
    let (r, arrived, _) = hc.join().unwrap();
    let r = r.unwrap().unwrap();
    assert_eq!(r[0], 0);
    assert!(
        r[1] - first[1] >= 600 && r[1] - first[1] <= 601,
        "{first:?} → {r:?}"
    );
    assert!(arrived >= r[1] - 1);
    wait_for(Duration::from_secs(2), "no blocked clients left", || {
        (throttle_stat(&mut c, "blocked_clients") == 0).then_some(())
    });
    assert_eq!(throttle_stat(&mut c, "blocked_released"), 3);
    // Later callers still work, blocking or not.
    assert!(permit(&mut c, "k", &["200", "10"]).is_some());
    assert_healthy(&mut s);
}

#[test]
fn client_unblock_answers_nil_or_the_unblock_error_once() {
    let mut s = Server::start();
    let mut c = s.conn();
    let base = throttle_stat(&mut c, "blocked_total");
    let first = permit(&mut c, "u", &["300", "10"]).unwrap();
    let mut ids = Vec::new();
    let mut handles = Vec::new();
    for i in 0..2 {
        let mut w = conn_with_timeout(&s, 10);
        let id: i64 = redis::cmd("CLIENT").arg("ID").query(&mut w).unwrap();
        ids.push(id);
        handles.push(thread::spawn(move || {
            let t = Instant::now();
            let r = redis::cmd("PERMIT")
                .arg("u")
                .arg(&["300", "10", "BLOCK", "0"])
                .query::<Option<Vec<i64>>>(&mut w);
            (r, t.elapsed(), w)
        }));
        wait_blocked(&mut c, base, i + 1);
    }
    let n: i64 = redis::cmd("CLIENT")
        .arg("UNBLOCK")
        .arg(ids[0])
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 1);
    let n: i64 = redis::cmd("CLIENT")
        .arg("UNBLOCK")
        .arg(ids[1])
        .arg("ERROR")
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 1);
    let mut conns = Vec::new();
    for (i, h) in handles.into_iter().enumerate() {
        let (r, held, w) = h.join().unwrap();
        assert!(
            held < Duration::from_millis(250),
            "client {i} held {held:?}"
        );
        match i {
            0 => assert_eq!(r.unwrap(), None),
            _ => {
                let e = r.unwrap_err();
                assert!(error_text(&e).starts_with("UNBLOCKED"), "{e}");
            }
        }
        conns.push(w);
    }
    // Once the slots have passed (the timers fire), the connections get
    // nothing extra: their next command's reply is their own.
    let last_slot = first[1] + 600;
    while wall_ms() < last_slot + 50 {
        thread::sleep(Duration::from_millis(20));
    }
    for (i, mut w) in conns.into_iter().enumerate() {
        let pong: String = redis::cmd("PING").query(&mut w).unwrap();
        assert_eq!(pong, "PONG");
        let r = permit(&mut w, format!("fresh{i}"), &["300", "10"]).unwrap();
        assert_eq!(r[2], NEVER);
    }
    assert_eq!(throttle_stat(&mut c, "blocked_clients"), 0);
    // Only the nil form goes through the module's timeout callback.
    assert_eq!(throttle_stat(&mut c, "blocked_timed_out"), 1);
    // The two slots stay taken (they are simply lost): the next permit
    // comes after them.
    let r = permit(&mut c, "u", &["300", "10"]).unwrap();
    assert!(
        r[1] - first[1] == 900 || r[1] - first[1] == 901,
        "{first:?} → {r:?}"
    );
    assert_healthy(&mut s);
}

#[test]
fn wrongtype_across_the_two_types() {
    let mut s = Server::start();
    let mut c = s.conn();
    throttle(&mut c, "bucket", &["0.01", "1", "1000"]);
    permit(&mut c, "permit", &["100000", "5"]);
    permit(&mut c, "permit", &["100000", "5"]);
    let _: () = redis::cmd("SET").arg("str").arg("v").query(&mut c).unwrap();
    let snapshot =
        |c: &mut Connection| ["bucket", "permit", "str"].map(|k| (dump(c, k), pexpiretime(c, k)));
    let before = snapshot(&mut c);
    let wrong = "WRONGTYPE Operation against a key holding the wrong kind of value";
    for key in ["bucket", "str"] {
        for args in [
            vec!["100", "5"],
            vec!["100", "5", "BLOCK", "1000"],
            vec!["100", "0"],
        ] {
            let e = expect_err(&mut c, redis::cmd("PERMIT").arg(key).arg(&args));
            assert_eq!(e, wrong, "PERMIT {key} {args:?}");
        }
    }
    for cmd in ["THROTTLE", "THROTTLE.PEEK"] {
        for args in [
            vec!["5", "2", "8"],
            vec!["0", "2", "8"],
            vec!["5", "2", "8", "0"],
        ] {
            let e = expect_err(&mut c, redis::cmd(cmd).arg("permit").arg(&args));
            assert_eq!(e, wrong, "{cmd} permit {args:?}");
        }
    }
    let e = expect_err(
        &mut c,
        redis::cmd("THROTTLE")
            .arg("permit")
            .arg(&["5", "2", "8", "1", "WAIT", "100"]),
    );
    assert_eq!(e, wrong);
    assert_eq!(snapshot(&mut c), before);
    assert_eq!(throttle_stat(&mut c, "blocked_total"), 0);
    assert_healthy(&mut s);
}

fn bad_permit_inputs() -> Vec<(Vec<&'static str>, &'static str)> {
    let mut cases: Vec<(Vec<&str>, &str)> = Vec::new();
    for bad in [
        "nan", "NaN", "inf", "-inf", "", "abc", "0x10", "1e", " 1", "1 ", "1.5.1", "10ms",
    ] {
        cases.push((
            vec![bad, "5"],
            "ERR interval_ms is not a valid decimal number",
        ));
    }
    for bad in ["0", "-0", "-1", "-0.5", "1e13", "1000000000001"] {
        cases.push((vec![bad, "5"], "ERR interval_ms must be > 0"));
    }
    for bad in ["0.0001", "1e-4"] {
        cases.push((
            vec![bad, "5"],
            "ERR interval_ms has too many decimal places",
        ));
    }
    cases.push((vec!["1e40", "5"], "ERR interval_ms must be"));
    for bad in ["-1", "99999999999999999999"] {
        cases.push((vec!["100", bad], "ERR max_waiting must be"));
    }
    for bad in [
        "1.5", "0.5", "abc", "", "+1", "01", "1e2", " 1", "nan", "-0",
    ] {
        cases.push((vec!["100", bad], "ERR max_waiting is not a valid integer"));
    }
    for (rest, why) in [
        (vec!["GRACE"], "ERR syntax error"),
        (vec!["BLOCK"], "ERR syntax error"),
        (vec!["GRACE", "10", "BLOCK"], "ERR syntax error"),
        (vec!["BLOCK", "10", "GRACE"], "ERR syntax error"),
        (vec!["GRACE", "-1"], "ERR GRACE must be"),
        (vec!["GRACE", "abc"], "ERR GRACE is not a valid integer"),
        (vec!["GRACE", "1.5"], "ERR GRACE is not a valid integer"),
        (vec!["GRACE", ""], "ERR GRACE is not a valid integer"),
        (vec!["BLOCK", "-1"], "ERR BLOCK must be"),
        (vec!["BLOCK", "x"], "ERR BLOCK is not a valid integer"),
        (vec!["BLOCK", "0.5"], "ERR BLOCK is not a valid integer"),
        (vec!["BLOCK", "99999999999999"], "ERR BLOCK must be"),
        (vec!["FOO", "1"], "ERR syntax error"),
        (vec!["FOO"], "ERR syntax error"),
        (vec!["WAIT", "10"], "ERR syntax error"),
        (vec!["GRACE", "1", "GRACE", "2"], "ERR syntax error"),
        (vec!["BLOCK", "1", "BLOCK", "1"], "ERR syntax error"),
        (
            vec!["BLOCK", "1", "GRACE", "1", "BLOCK", "1"],
            "ERR syntax error",
        ),
        (vec!["1"], "ERR syntax error"),
    ] {
        let mut args = vec!["100", "5"];
        args.extend(rest);
        cases.push((args, why));
    }
    for short in [vec![], vec!["100"]] {
        cases.push((short, "ERR wrong number of arguments for 'permit' command"));
    }
    cases
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let mut s = Server::start();
    let mut c = s.conn();
    permit(&mut c, "held", &["100000", "5"]);
    permit(&mut c, "held", &["100000", "5"]);
    let d0 = dump(&mut c, "held").unwrap();
    let e0 = pexpiretime(&mut c, "held");
    for (args, want) in bad_permit_inputs() {
        for key in ["fresh", "held"] {
            let e = expect_err(&mut c, redis::cmd("PERMIT").arg(key).arg(&args));
            assert!(
                e.starts_with(want),
                "PERMIT {key} {args:?}: got {e:?}, want {want:?}"
            );
        }
        assert!(!exists(&mut c, "fresh"), "{args:?} created a key");
        assert_eq!(
            dump(&mut c, "held").as_ref(),
            Some(&d0),
            "{args:?} changed the key"
        );
        assert_eq!(pexpiretime(&mut c, "held"), e0);
    }
    assert_eq!(throttle_stat(&mut c, "blocked_total"), 0);
    assert_healthy(&mut s);
}

#[test]
fn permit_state_survives_reload_restore_and_copy() {
    let mut s = Server::start();
    let mut c = s.conn();
    permit(&mut c, "p", &["100000", "5"]);
    permit(&mut c, "p", &["100000", "5"]);
    permit(&mut c, b"p\0\xff", &["100000", "5"]);
    let keys: [&[u8]; 2] = [b"p", b"p\0\xff"];
    let before: Vec<_> = keys
        .iter()
        .map(|k| (dump(&mut c, *k), pexpiretime(&mut c, *k)))
        .collect();
    let _: () = redis::cmd("DEBUG").arg("RELOAD").query(&mut c).unwrap();
    let after: Vec<_> = keys
        .iter()
        .map(|k| (dump(&mut c, *k), pexpiretime(&mut c, *k)))
        .collect();
    assert_eq!(before, after);
    // DUMP/RESTORE and COPY carry the schedule.
    let payload = dump(&mut c, "p").unwrap();
    let _: () = redis::cmd("RESTORE")
        .arg("r")
        .arg(0)
        .arg(&payload)
        .query(&mut c)
        .unwrap();
    let n: i64 = redis::cmd("COPY").arg("p").arg("c").query(&mut c).unwrap();
    assert_eq!(n, 1);
    let next: Vec<_> = ["p", "r", "c"]
        .iter()
        .map(|k| permit(&mut c, *k, &["100000", "5"]).unwrap()[1])
        .collect();
    assert_eq!(next[0], next[1]);
    assert_eq!(next[0], next[2]);
    assert_eq!(digest_value(&mut c, "r"), digest_value(&mut c, "c"));
    // A crafted permit payload is refused (version byte 9).
    let mut bad = payload.clone();
    let at = bad
        .windows(3)
        .position(|w| w == [10, 0x01, b'P'])
        .expect("permit value")
        + 1;
    bad[at] = 9;
    reseal_dump(&mut bad);
    let e = expect_err(&mut c, redis::cmd("RESTORE").arg("bad").arg(0).arg(&bad));
    assert!(e.contains("Bad data format"), "{e}");
    assert!(!exists(&mut c, "bad"));
    assert_eq!(throttle_stat(&mut c, "permit_keys"), 4);
    assert_healthy(&mut s);
}

#[test]
fn info_counts_permits() {
    let mut s = Server::start();
    let mut c = s.conn();
    permit(&mut c, "k", &["10000", "1"]);
    permit(&mut c, "k", &["10000", "1"]);
    permit(&mut c, "k", &["10000", "1"]);
    assert_eq!(throttle_stat(&mut c, "permit_calls"), 3);
    assert_eq!(throttle_stat(&mut c, "permit_immediate"), 1);
    assert_eq!(throttle_stat(&mut c, "permit_reserved"), 1);
    assert_eq!(throttle_stat(&mut c, "permit_refused"), 1);
    assert_eq!(throttle_stat(&mut c, "permit_keys"), 1);
    assert_healthy(&mut s);
}

/// PERMIT propagates its effect: a replica, even one that is busy while
/// the master grants permits, ends with identical schedules and expiries;
/// a refused call propagates nothing.
#[test]
fn permits_replicate_deterministically() {
    let mut pair = Pair::start();
    let mut m = pair.master.conn();
    let mut r = pair.replica.conn();
    permit(&mut m, "a", &["50000", "5"]);
    pair.sync();
    // The replica sleeps while the master keeps granting.
    let mut busy = pair.replica.conn();
    let sleeper = thread::spawn(move || {
        let _: () = redis::cmd("DEBUG")
            .arg("SLEEP")
            .arg("0.7")
            .query(&mut busy)
            .unwrap();
    });
    thread::sleep(Duration::from_millis(50));
    let base = throttle_stat(&mut m, "blocked_total");
    permit(&mut m, "blocky", &["30", "5"]);
    let blocked = spawn_permit(&pair.master, "blocky", vec!["30", "5", "BLOCK", "1000"]);
    for i in 0..20 {
        permit(&mut m, "a", &["50000", "5"]);
        permit(&mut m, format!("k{i}"), &["60000", "3", "GRACE", "7"]);
        permit(&mut m, format!("k{i}"), &["60000", "3"]);
        permit(&mut m, b"bin\0\xff", &["60000", "100"]);
        thread::sleep(Duration::from_millis(15));
    }
    let _: Vec<Vec<i64>> = redis::pipe()
        .atomic()
        .cmd("PERMIT")
        .arg("tx")
        .arg(&["40000", "5", "BLOCK", "0"])
        .cmd("PERMIT")
        .arg("tx")
        .arg(&["40000", "5", "BLOCK", "0"])
        .query(&mut m)
        .unwrap();
    let _: Vec<Vec<i64>> = redis::cmd("EVAL")
        .arg("return {redis.call('PERMIT', KEYS[1], '40000', '5'), redis.call('PERMIT', KEYS[1], '40000', '5')}")
        .arg(1)
        .arg("lua")
        .query(&mut m)
        .unwrap();
    wait_blocked(&mut m, base, 1);
    assert!(blocked.join().unwrap().0.unwrap().is_some());
    sleeper.join().unwrap();
    pair.sync();
    let mut keys: Vec<Vec<u8>> = vec![
        b"a".to_vec(),
        b"bin\0\xff".to_vec(),
        b"tx".to_vec(),
        b"lua".to_vec(),
    ];
    keys.extend((0..20).map(|i| format!("k{i}").into_bytes()));
    for k in &keys {
        let md = dump(&mut m, k);
        assert!(md.is_some(), "{k:?} missing on the master");
        assert_eq!(md, dump(&mut r, k), "{k:?} differs on the replica");
        assert_eq!(
            pexpiretime(&mut m, k),
            pexpiretime(&mut r, k),
            "{k:?} expiry"
        );
        assert_eq!(digest_value(&mut m, k), digest_value(&mut r, k));
    }
    // A refused permit writes and propagates nothing.
    let offset = |c: &mut Connection| -> i64 {
        info(c, "replication")["master_repl_offset"]
            .parse()
            .unwrap()
    };
    let o0 = offset(&mut m);
    assert_eq!(permit(&mut m, "a", &["50000", "1"]), None);
    assert_eq!(permit(&mut m, "a", &["50000", "5", "BLOCK", "1"]), None);
    assert_eq!(offset(&mut m), o0, "a refused PERMIT propagated something");
    // Short-lived keys could expire between the two digests: drop them.
    let _: () = redis::cmd("DEL").arg("blocky").query(&mut m).unwrap();
    pair.sync();
    assert_eq!(digest(&mut m), digest(&mut r));
    pair.assert_healthy();
}
