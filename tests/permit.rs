//! PERMIT (with GRACE and BLOCK) and THROTTLE … WAIT against a real server.
//!
//! Times are checked on the server's clock (TIME) and only from below: a
//! held client is never released before its slot. How late releases come
//! is a benchmark (`bench-tools/blockwait`), not a test: a busy 2-core
//! machine may delay any reply. Spacing is checked with intervals of
//! 300–500 ms, and "answered at once" means "never parked" (INFO's
//! `throttle_blocked_total` did not move).

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use redis::Connection;

/// Waits until the server has parked `n` clients since `base` (INFO's
/// monotonic `blocked_total`), so requests arrive in a known order.
fn wait_blocked(con: &mut Connection, base: u64, n: u64) {
    wait_for(Duration::from_secs(20), "clients to block", || {
        (throttle_stat(con, "throttle_blocked_total") >= base + n).then_some(())
    });
}

/// What a PERMIT sent from a thread got: the reply (or error), the
/// server's clock (ms) read right after it arrived, and when it arrived.
type Released = (redis::RedisResult<Option<Vec<i64>>>, i64, Instant);

/// Sends a blocking PERMIT from its own connection on a thread.
fn spawn_permit(
    s: &Server,
    key: &'static str,
    args: Vec<&'static str>,
) -> thread::JoinHandle<Released> {
    // Generous: a saturated machine may release late.
    let mut c = conn_with_timeout(s, 30);
    thread::spawn(move || {
        let r = redis::cmd("PERMIT").arg(key).arg(&args).query(&mut c);
        let arrived = Instant::now();
        (r, server_time_ms(&mut c), arrived)
    })
}

/// `PERMIT key args…` with the server clock (ms) read just before and just
/// after it.
fn timed_permit(c: &mut Connection, key: &str, args: &[&str]) -> (Vec<i64>, (i64, i64)) {
    let before = server_time_ms(c);
    let r = permit(c, key, args).unwrap_or_else(|| panic!("PERMIT {key} {args:?} refused"));
    (r, (before, server_time_ms(c)))
}

/// A held client was released no earlier than its slot, on the server's
/// clock: `now_ms` is TIME read after the reply arrived; `valid_at_ms` is
/// the slot rounded up to whole ms, so the slot itself is later than
/// `valid_at_ms - 1`.
fn assert_not_early(now_ms: i64, valid_at_ms: i64, what: &str) {
    assert!(
        now_ms >= valid_at_ms - 1,
        "{what}: released at {now_ms}, before its slot {valid_at_ms}"
    );
}

/// A reserved permit's wait is `valid_at - now`, rounded up to whole ms.
fn assert_wait(r: &[i64], (before, after): (i64, i64)) {
    assert!(
        (r[1] - after - 1..=r[1] - before + 1).contains(&r[0]),
        "wait must be valid_at - now: {r:?} with now in [{before}, {after}]"
    );
}

#[test]
fn reply_fields_and_ttl() {
    let (_s, mut c) = start();
    let (first, (before, after)) = timed_permit(&mut c, "k", &["1000", "2"]);
    assert_eq!([first[0], first[2]], [0, NEVER], "{first:?}");
    assert!((before..=after).contains(&first[1]), "{first:?} not now");
    assert_eq!(key_type(&mut c, "k"), "rl-permit");
    // The key lives until one interval after its slot (µs, rounded up).
    let at = pexpiretime(&mut c, "k");
    assert!(
        (first[1] + 1000..=first[1] + 1001).contains(&at),
        "{at} vs {first:?}"
    );

    // Reserved: one interval after the last slot, 10% grace by default.
    let (second, now) = timed_permit(&mut c, "k", &["1000", "2"]);
    let valid = second[1];
    assert!(
        valid == first[1] + 1000 || valid == first[1] + 1001,
        "{first:?} → {second:?}"
    );
    assert_eq!(second[2], valid + 100, "{second:?}");
    assert_wait(&second, now);
    // The next one chains exactly one interval later.
    let (third, now) = timed_permit(&mut c, "k", &["1000", "2"]);
    assert_eq!(third[1], valid + 1000, "{third:?}");
    assert_eq!(third[2], third[1] + 100);
    assert_wait(&third, now);
    // Two waiting = max_waiting: refused, and nothing changes.
    let d0 = dump(&mut c, "k");
    let e0 = pexpiretime(&mut c, "k");
    assert_eq!(permit(&mut c, "k", &["1000", "2"]), None);
    assert_eq!(dump(&mut c, "k"), d0);
    assert_eq!(pexpiretime(&mut c, "k"), e0);
    // The key lives until one interval after its last slot.
    assert_eq!(e0, third[1] + 1000);
}

#[test]
fn max_waiting_zero_gives_only_immediate_permits() {
    let (_s, mut c) = start();
    assert_eq!(permit(&mut c, "k", &["100", "0"]).unwrap()[0], 0);
    let d0 = dump(&mut c, "k");
    assert_eq!(permit(&mut c, "k", &["100", "0"]), None);
    assert_eq!(permit(&mut c, "k", &["100", "0", "BLOCK", "0"]), None);
    assert_eq!(dump(&mut c, "k"), d0);
    thread::sleep(Duration::from_millis(100));
    let r = permit(&mut c, "k", &["100", "0"]).unwrap();
    assert_eq!([r[0], r[2]], [0, NEVER], "{r:?}");
}

#[test]
fn a_finished_schedule_expires() {
    let (_s, mut c) = start();
    permit(&mut c, "k", &["20", "5"]);
    permit(&mut c, "k", &["20", "5"]);
    wait_for(Duration::from_secs(2), "the key to expire", || {
        (!exists(&mut c, "k")).then_some(())
    });
    assert_eq!(permit(&mut c, "k", &["20", "5"]).unwrap()[0], 0);
}

#[test]
fn grace_sets_the_expiry_of_reserved_permits() {
    let (_s, mut c) = start();
    for (grace, extra) in [("250", 250), ("0", 0), ("100000", 100_000)] {
        let key = format!("g{grace}");
        let r = permit(&mut c, &key, &["1000", "5", "GRACE", grace]).unwrap();
        assert_eq!(r[2], NEVER, "immediate permits never expire");
        let r = permit(&mut c, &key, &["1000", "5", "grace", grace]).unwrap();
        assert_eq!(r[2], r[1] + extra, "GRACE {grace}: {r:?}");
    }
}

#[test]
fn default_grace_is_ten_percent_rounded_up_to_ms() {
    let (_s, mut c) = start();
    for (interval, grace) in [("1000", 100), ("15", 2), ("3000", 300), ("10", 1), ("7", 1)] {
        let key = format!("i{interval}");
        // In MULTI both calls read nearly the same clock: the second is
        // reserved however short the interval.
        let call: &[&str] = &["PERMIT", &key, interval, "5"];
        let replies: Vec<Vec<i64>> = multi(&mut c, &[call, call]);
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
}

#[test]
fn fractional_intervals_are_microseconds() {
    // Five permits 0.25 ms apart at one frozen instant (a busy machine can
    // pause the server for more than 0.25 ms between two commands, even
    // inside a transaction, so the server's clock would make this test
    // flaky): one immediate, four reserved at +0.25, +0.5, +0.75 and +1 ms.
    let s = Server::builder().module_args(["test-clock", "yes"]).start();
    let mut c = s.conn();
    let ms = server_time_ms(&mut c);
    let _: () = redis::cmd("THROTTLE.CLOCK")
        .arg("FREEZE")
        .arg(ms * 1000 + 100) // 0.1 ms past a millisecond
        .query(&mut c)
        .unwrap();
    // In one transaction: the key expires one interval after its last slot
    // in real time (0.25 ms here), and between separate commands a busy
    // machine lets more than that pass.
    let mut p = redis::pipe();
    p.atomic();
    for _ in 0..5 {
        p.cmd("PERMIT").arg("q").arg(&["0.25", "10"]);
    }
    let replies: Vec<Vec<i64>> = p.query(&mut c).unwrap();
    assert_eq!(replies[0], [0, ms, NEVER]);
    // valid_at rounds up (never early): 0.35, 0.6 and 0.85 ms → 1, 1.1 → 2;
    // waits round up to whole ms; grace 10% of 250 µs rounds up to 1 ms.
    for (r, valid_at) in replies[1..].iter().zip([1, 1, 1, 2]) {
        assert_eq!(*r, [1, ms + valid_at, ms + valid_at + 1], "{replies:?}");
    }
}

#[test]
fn block_holds_the_caller_until_its_slot() {
    let s = Server::start();
    let mut c = conn_with_timeout(&s, 10);
    let first = permit(&mut c, "k", &["300", "5"]).unwrap();
    let r = permit(&mut c, "k", &["300", "5", "BLOCK", "1000", "GRACE", "5000"]).unwrap();
    let now = server_time_ms(&mut c);
    assert_eq!(r[0], 0, "a held permit is due when it arrives: {r:?}");
    assert!(r[1] == first[1] + 300 || r[1] == first[1] + 301, "{r:?}");
    assert_eq!(r[2], r[1] + 5000);
    assert_not_early(now, r[1], "BLOCK 1000");
    // BLOCK 0: no limit on the wait (still bounded by max_waiting).
    let r2 = permit(&mut c, "k", &["300", "5", "BLOCK", "0", "GRACE", "5000"]).unwrap();
    assert_eq!([r2[0], r2[1]], [0, r[1] + 300], "{r2:?}");
    assert_not_early(server_time_ms(&mut c), r2[1], "BLOCK 0");
    // An immediate permit is answered at once, BLOCK or not.
    let r = permit(&mut c, "fresh", &["300", "5", "BLOCK", "1000"]).unwrap();
    assert_eq!([r[0], r[2]], [0, NEVER]);
    assert_eq!(throttle_stat(&mut c, "throttle_blocked_clients"), 0);
    assert_eq!(throttle_stat(&mut c, "throttle_blocked_total"), 2);
    assert_eq!(throttle_stat(&mut c, "throttle_blocked_released"), 2);
}

#[test]
fn block_shorter_than_the_wait_answers_nil_at_once_and_reserves_nothing() {
    let (_s, mut c) = start();
    let first = permit(&mut c, "k", &["1000", "5"]).unwrap();
    let d0 = dump(&mut c, "k");
    let e0 = pexpiretime(&mut c, "k");
    assert_eq!(permit(&mut c, "k", &["1000", "5", "BLOCK", "100"]), None);
    assert_eq!(dump(&mut c, "k"), d0);
    assert_eq!(pexpiretime(&mut c, "k"), e0);
    // The next caller gets the slot the refused one did not take.
    let r = permit(&mut c, "k", &["1000", "5"]).unwrap();
    assert!(r[1] - first[1] <= 1001, "{first:?} → {r:?}");
    // A full queue is refused at once too, whatever the timeout.
    for _ in 0..4 {
        permit(&mut c, "k", &["1000", "5"]).unwrap();
    }
    assert_eq!(permit(&mut c, "k", &["1000", "5", "BLOCK", "0"]), None);
    // "At once": neither call was ever parked.
    assert_eq!(throttle_stat(&mut c, "throttle_blocked_total"), 0);
}

#[test]
fn ten_blocked_clients_are_released_in_order_one_interval_apart() {
    let (s, mut c) = start();
    let base = throttle_stat(&mut c, "throttle_blocked_total");
    let first = permit(&mut c, "fifo", &["300", "20"]).unwrap();
    let mut handles = Vec::new();
    for i in 0..10 {
        handles.push(spawn_permit(
            &s,
            "fifo",
            vec!["300", "20", "BLOCK", "10000", "GRACE", "5000"],
        ));
        // The next request leaves only once this one is parked.
        wait_blocked(&mut c, base, i + 1);
    }
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut prev_valid = first[1];
    let mut prev_arrival: Option<Instant> = None;
    for (i, (r, now, arrived)) in results.iter().enumerate() {
        let r = r.as_ref().unwrap().as_ref().unwrap();
        assert_eq!(r[0], 0, "client {i}: {r:?}");
        let gap = r[1] - prev_valid;
        if i == 0 {
            assert!(gap == 300 || gap == 301, "client 0: {first:?} → {r:?}");
        } else {
            assert_eq!(gap, 300, "client {i}: slots one interval apart");
        }
        assert_eq!(r[2], r[1] + 5000, "GRACE 5000");
        assert_not_early(*now, r[1], &format!("client {i}"));
        assert!(
            prev_arrival.is_none_or(|p| *arrived > p),
            "client {i} released out of order"
        );
        prev_valid = r[1];
        prev_arrival = Some(*arrived);
    }
    assert_eq!(throttle_stat(&mut c, "throttle_blocked_clients"), 0);
    assert_eq!(
        throttle_stat(&mut c, "throttle_blocked_released"),
        base + 10
    );
}

#[test]
fn blocked_clients_do_not_stop_the_server() {
    let (s, mut c) = start();
    let base = throttle_stat(&mut c, "throttle_blocked_total");
    permit(&mut c, "k", &["500", "5"]);
    let h = spawn_permit(&s, "k", vec!["500", "5", "BLOCK", "0", "GRACE", "5000"]);
    wait_blocked(&mut c, base, 1);
    // Meanwhile everyone else is served: 100 calls answered while the
    // client is still held.
    for i in 0..100 {
        assert_eq!(
            throttle(&mut c, format!("other{i}"), &["5", "2", "8"])[0],
            1
        );
    }
    assert_eq!(throttle_stat(&mut c, "throttle_blocked_clients"), 1);
    let (r, now, _) = h.join().unwrap();
    let r = r.unwrap().unwrap();
    assert_eq!(r[0], 0);
    assert_not_early(now, r[1], "the held client");
}

#[test]
fn throttle_wait_holds_until_the_tokens_are_due() {
    let s = Server::start();
    let mut c = conn_with_timeout(&s, 10);
    tolerate_late_releases(&mut c);
    let args = ["2", "1", "0.5"]; // one token per 500 ms, limit 1
    let parked = |c: &mut Connection| throttle_stat(c, "throttle_blocked_total");
    let drained_after = server_time_ms(&mut c);
    assert_eq!(throttle(&mut c, "w", &args), [1, 0, 0, 500, 1]);
    let r = throttle(&mut c, "w", &["2", "1", "0.5", "1", "WAIT", "1000"]);
    let now = server_time_ms(&mut c);
    // Allowed when released; the bucket is then empty, full 500 ms later.
    assert_eq!(r, [1, 0, 0, 500, 1]);
    assert!(
        now >= drained_after + 500,
        "released early: {now} < {drained_after} + 500"
    );
    assert_eq!(parked(&mut c), 1);
    // Tokens available now: WAIT answers at once (is never parked).
    thread::sleep(Duration::from_millis(510));
    assert_eq!(
        throttle(&mut c, "w", &["2", "1", "0.5", "1", "WAIT", "1000"])[0],
        1
    );
    assert_eq!(parked(&mut c), 1);
    // Due later than the timeout: denied at once, nothing reserved.
    let d0 = dump(&mut c, "w");
    let r = throttle(&mut c, "w", &["2", "1", "0.5", "1", "WAIT", "20"]);
    assert_eq!([r[0], r[1], r[4]], [0, 0, 1], "{r:?}");
    assert!((21..=500).contains(&r[2]), "{r:?}");
    assert_eq!(dump(&mut c, "w"), d0);
    // WAIT 0 is the plain call.
    assert_eq!(
        throttle(&mut c, "w", &["2", "1", "0.5", "1", "WAIT", "0"])[0],
        0
    );
    // A cost above the limit never waits.
    let r = throttle(&mut c, "w", &["2", "1", "0.5", "2", "WAIT", "5000"]);
    assert_eq!([r[0], r[2]], [0, -1]);
    assert_eq!(dump(&mut c, "w"), d0);
    assert_eq!(parked(&mut c), 1);
}

#[test]
fn throttle_waiters_queue_in_order() {
    let (s, mut c) = start();
    tolerate_late_releases(&mut c);
    let base = throttle_stat(&mut c, "throttle_blocked_total");
    let args = ["2.5", "1", "0.4"]; // one token per 400 ms, limit 1
    let drained = server_time_ms(&mut c);
    throttle(&mut c, "q", &args); // empty now
    let mut handles = Vec::new();
    for i in 0..3 {
        let mut wc = conn_with_timeout(&s, 30);
        handles.push(thread::spawn(move || {
            let r = throttle(&mut wc, "q", &["2.5", "1", "0.4", "1", "WAIT", "3000"]);
            (r, Instant::now())
        }));
        wait_blocked(&mut c, base, i + 1);
    }
    // A plain caller meanwhile is told to come back after all three: the
    // 4th token after the drain, 1 600 ms after it.
    let r = throttle(&mut c, "q", &args);
    let now = server_time_ms(&mut c);
    assert_eq!(r[0], 0);
    assert!(
        (1600 - (now - drained) - 1..=1601).contains(&r[2]),
        "queued behind the waiters: {r:?}, {} ms after the drain",
        now - drained
    );
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut prev: Option<Instant> = None;
    for (i, (r, arrived)) in results.iter().enumerate() {
        assert_eq!(r[0], 1, "waiter {i}: {r:?}");
        assert!(
            prev.is_none_or(|p| *arrived > p),
            "waiter {i} released out of order"
        );
        prev = Some(*arrived);
    }
    let now = server_time_ms(&mut c);
    assert!(now >= drained + 1200, "the last waiter was released early");
}

#[test]
fn block_and_wait_inside_multi_and_scripts_answer_at_once() {
    let (_s, mut c) = start();
    let block: &[&str] = &["PERMIT", "m", "1000", "5", "BLOCK", "0"];
    let replies: Vec<Vec<i64>> = multi(
        &mut c,
        &[block, block, &["PERMIT", "m", "1000", "5", "BLOCK", "10"]],
    );
    assert_eq!([replies[0][0], replies[0][2]], [0, NEVER]);
    assert!((900..=1000).contains(&replies[1][0]), "{replies:?}");
    assert!((1900..=2000).contains(&replies[2][0]), "{replies:?}");
    assert_eq!(replies[2][1], replies[1][1] + 1000);
    // The same from a script.
    let r: Vec<Vec<i64>> = redis::cmd("EVAL")
        .arg(
            "return {redis.call('PERMIT', KEYS[1], '1000', '5', 'BLOCK', '0'),
                     redis.call('PERMIT', KEYS[1], '1000', '5', 'BLOCK', '0')}",
        )
        .arg(1)
        .arg("lua")
        .query(&mut c)
        .unwrap();
    assert_eq!(r[0][0], 0);
    assert!((900..=1000).contains(&r[1][0]), "{r:?}");
    assert_eq!(throttle_stat(&mut c, "throttle_blocked_total"), 0);
}

#[test]
fn a_client_killed_or_gone_while_blocked_harms_no_one() {
    let (s, mut c) = start();
    let base = throttle_stat(&mut c, "throttle_blocked_total");
    let first = permit(&mut c, "k", &["300", "10"]).unwrap();

    // A: killed by CLIENT KILL while it waits for slot 1.
    let mut a = conn_with_timeout(&s, 10);
    let a_id: i64 = redis::cmd("CLIENT").arg("ID").query(&mut a).unwrap();
    let (tx, rx) = mpsc::channel();
    let ha = thread::spawn(move || {
        let r = redis::cmd("PERMIT")
            .arg("k")
            .arg(&["300", "10", "BLOCK", "0", "GRACE", "5000"])
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
        b"*6\r\n$6\r\nPERMIT\r\n$1\r\nk\r\n$3\r\n300\r\n$2\r\n10\r\n$5\r\nBLOCK\r\n$1\r\n0\r\n",
    )
    .unwrap();
    wait_blocked(&mut c, base, 2);
    drop(raw);

    // C waits for slot 3: the two lost slots stay lost, C is unaffected.
    let hc = spawn_permit(&s, "k", vec!["300", "10", "BLOCK", "0", "GRACE", "5000"]);
    wait_blocked(&mut c, base, 3);
    let (r, now, _) = hc.join().unwrap();
    let r = r.unwrap().unwrap();
    assert_eq!(r[0], 0);
    assert!(
        r[1] - first[1] >= 900 && r[1] - first[1] <= 901,
        "{first:?} → {r:?}"
    );
    assert_not_early(now, r[1], "the held client");
    wait_for(Duration::from_secs(2), "no blocked clients left", || {
        (throttle_stat(&mut c, "throttle_blocked_clients") == 0).then_some(())
    });
    // Only C was released; A and B left the queue when they went (their
    // handles were released at once, not at their slots).
    assert_eq!(throttle_stat(&mut c, "throttle_blocked_released"), 1);
    assert_eq!(throttle_stat(&mut c, "throttle_blocked_disconnected"), 2);
    // Later callers still work, blocking or not.
    assert!(permit(&mut c, "k", &["300", "10"]).is_some());
}

#[test]
fn client_unblock_answers_nil_or_the_unblock_error_once() {
    let (s, mut c) = start();
    let base = throttle_stat(&mut c, "throttle_blocked_total");
    let first = permit(&mut c, "u", &["300", "10"]).unwrap();
    let mut ids = Vec::new();
    let mut handles = Vec::new();
    for i in 0..2 {
        let mut w = conn_with_timeout(&s, 10);
        let id: i64 = redis::cmd("CLIENT").arg("ID").query(&mut w).unwrap();
        ids.push(id);
        handles.push(thread::spawn(move || {
            let r = redis::cmd("PERMIT")
                .arg("u")
                .arg(&["300", "10", "BLOCK", "0", "GRACE", "5000"])
                .query::<Option<Vec<i64>>>(&mut w);
            (r, w)
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
        // Nil and -UNBLOCKED can only come from CLIENT UNBLOCK: a client
        // released at its slot gets its permit.
        let (r, w) = h.join().unwrap();
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
    wait_for(Duration::from_secs(10), "the last slot to pass", || {
        (server_time_ms(&mut c) > last_slot + 50).then_some(())
    });
    for (i, mut w) in conns.into_iter().enumerate() {
        let pong: String = redis::cmd("PING").query(&mut w).unwrap();
        assert_eq!(pong, "PONG");
        let r = permit(&mut w, format!("fresh{i}"), &["300", "10"]).unwrap();
        assert_eq!(r[2], NEVER);
    }
    assert_eq!(throttle_stat(&mut c, "throttle_blocked_clients"), 0);
    // Only the nil form goes through the module's timeout callback.
    assert_eq!(throttle_stat(&mut c, "throttle_blocked_unblocked"), 1);
    // The two slots stay taken (they are simply lost): the next permit
    // comes after them.
    let r = permit(&mut c, "u", &["300", "10"]).unwrap();
    assert!(
        r[1] - first[1] == 900 || r[1] - first[1] == 901,
        "{first:?} → {r:?}"
    );
}

#[test]
fn wrongtype_across_the_two_types() {
    let (_s, mut c) = start();
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
            vec!["100", "5", "BLOCK", "1000", "GRACE", "5000"],
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
    assert_eq!(throttle_stat(&mut c, "throttle_blocked_total"), 0);
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
    // No interval and no settings on the key (`PERMIT key 100` alone is
    // valid: no bound on waiting permits).
    cases.push((
        vec![],
        "ERR no settings on this key: give interval_ms, or set them with PERMIT.SET",
    ));
    cases
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let (_s, mut c) = start();
    permit(&mut c, "held", &["100000", "5"]);
    permit(&mut c, "held", &["100000", "5"]);
    assert_refused_changing_nothing(&mut c, "PERMIT", "held", &bad_permit_inputs());
}

/// Callers of one key with different intervals: each spaces its slot by
/// its own interval from the last slot, its grace is 10% of its own
/// interval, `max_waiting` counts the waiting permits in the caller's
/// interval (`ceil((last_slot - now) / interval)`), and the key lives one
/// interval (the last writer's) after its last slot. In one transaction,
/// so every call reads (almost) the same clock.
#[test]
fn mixed_intervals_on_one_key() {
    let (_s, mut c) = start();
    let calls: [&[&str]; 7] = [
        &["1000", "5"], // immediate: slot t0
        &["300", "5"],  // t0 + 300
        &["500", "5"],  // t0 + 800 (1 waiting in 500 ms units)
        &["100", "8"],  // 8 waiting in 100 ms units: refused
        &["100", "9"],  // t0 + 900
        &["1000", "1"], // 1 waiting in 1000 ms units: refused
        &["1000", "2"], // t0 + 1900
    ];
    let mut pipe = redis::pipe();
    pipe.atomic();
    for args in calls {
        pipe.cmd("PERMIT").arg("mixed").arg(args);
    }
    let r: Vec<Option<Vec<i64>>> = pipe.query(&mut c).unwrap();
    let t0 = r[0].as_ref().expect("immediate")[1];
    assert_eq!(r[0], Some(vec![0, t0, NEVER]));
    let slot = |i: usize| {
        r[i].as_ref()
            .unwrap_or_else(|| panic!("call {i} refused: {r:?}"))[1]
    };
    // Reserved slots are rounded up from µs, the immediate one down.
    let first = slot(1) - t0;
    assert!(first == 300 || first == 301, "{r:?}");
    assert_eq!(
        [slot(2) - slot(1), slot(4) - slot(2), slot(6) - slot(4)],
        [500, 100, 1000],
        "{r:?}"
    );
    assert_eq!((&r[3], &r[5]), (&None, &None), "{r:?}");
    for (i, grace) in [(1, 30), (2, 50), (4, 10), (6, 100)] {
        let v = r[i].as_ref().unwrap();
        assert_eq!(v[2], v[1] + grace, "call {i}: {v:?}");
    }
    assert_eq!(pexpiretime(&mut c, "mixed"), slot(6) + 1000);
}

#[test]
fn permit_state_survives_reload_restore_and_copy() {
    let (_s, mut c) = start();
    permit(&mut c, "p", &["100000", "5"]);
    permit(&mut c, "p", &["100000", "5"]);
    permit(&mut c, b"p\0\xff", &["100000", "5"]);
    let keys: [&[u8]; 2] = [b"p", b"p\0\xff"];
    let before = states(&mut c, &keys);
    let _: () = redis::cmd("DEBUG").arg("RELOAD").query(&mut c).unwrap();
    assert_eq!(states(&mut c, &keys), before);
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
    // Identical values (the state holds when it was written, so compare
    // before the next call writes a new one; RESTORE's TTL 0 gives "r" no
    // expiry, which DIGEST-VALUE counts, so compare DUMPs there)…
    assert_eq!(dump(&mut c, "r"), dump(&mut c, "p"));
    assert_eq!(digest_value(&mut c, "c"), digest_value(&mut c, "p"));
    // …that schedule the same next slot.
    let next: Vec<_> = ["p", "r", "c"]
        .iter()
        .map(|k| permit(&mut c, *k, &["100000", "5"]).unwrap()[1])
        .collect();
    assert_eq!(next[0], next[1]);
    assert_eq!(next[0], next[2]);
    // A crafted permit payload is refused (version byte 9).
    let mut bad = payload.clone();
    let at = bad
        .windows(3)
        .position(|w| w[0] == 0x05 && w[1] < 64 && w[2] == b'p')
        .expect("permit value")
        + 2;
    bad[at] = 9;
    reseal_dump(&mut bad);
    let e = expect_err(&mut c, redis::cmd("RESTORE").arg("bad").arg(0).arg(&bad));
    assert!(e.contains("Bad data format"), "{e}");
    assert!(!exists(&mut c, "bad"));
    assert_key_count(&mut c, "throttle_permit_keys", 4);
}

#[test]
fn info_counts_permits() {
    let (_s, mut c) = start();
    permit(&mut c, "k", &["10000", "1"]);
    permit(&mut c, "k", &["10000", "1"]);
    permit(&mut c, "k", &["10000", "1"]);
    assert_eq!(throttle_stat(&mut c, "throttle_permit_calls"), 3);
    assert_eq!(throttle_stat(&mut c, "throttle_permit_immediate"), 1);
    assert_eq!(throttle_stat(&mut c, "throttle_permit_reserved"), 1);
    assert_eq!(throttle_stat(&mut c, "throttle_permit_refused"), 1);
    assert_eq!(throttle_stat(&mut c, "throttle_permit_keys"), 1);
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
    let base = throttle_stat(&mut m, "throttle_blocked_total");
    // A second a slot: the held caller is held even if it is sent late.
    permit(&mut m, "blocky", &["1000", "5"]);
    let blocked = spawn_permit(
        &pair.master,
        "blocky",
        vec!["1000", "5", "BLOCK", "5000", "GRACE", "5000"],
    );
    for i in 0..20 {
        permit(&mut m, "a", &["50000", "5"]);
        permit(&mut m, format!("k{i}"), &["60000", "3", "GRACE", "7"]);
        permit(&mut m, format!("k{i}"), &["60000", "3"]);
        permit(&mut m, b"bin\0\xff", &["60000", "100"]);
        thread::sleep(Duration::from_millis(15));
    }
    let tx: &[&str] = &["PERMIT", "tx", "40000", "5", "BLOCK", "0"];
    let _: Vec<Vec<i64>> = multi(&mut m, &[tx, tx]);
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

/// PERMIT.SET's settings: they override every caller's interval and bound
/// while they live, the short form uses them, PERMIT.GET shows them, a
/// PERMIT that writes pushes their TTL out, PERMIT.RESET removes them, and
/// they replicate (a replica's DUMP equals its master's).
#[test]
fn settings_override_callers_until_reset() {
    let pair = Pair::start();
    let mut c = pair.master.conn();
    let ok: String = redis::cmd("PERMIT.SET")
        .arg(&["s", "INTERVAL", "60000", "MAX_WAITING", "1", "TTL", "100"])
        .query(&mut c)
        .unwrap();
    assert_eq!(ok, "OK");
    // The caller asks for 1 ms and no bound; the settings say 60 s and 1.
    let first = permit(&mut c, "s", &["1"]).unwrap();
    let second = permit(&mut c, "s", &["1"]).unwrap();
    // (The immediate slot is rounded down, a reserved one up.)
    assert!(
        (60_000..=60_001).contains(&(second[1] - first[1])),
        "{first:?} {second:?}"
    );
    assert_eq!(permit(&mut c, "s", &["1"]), None, "one waiting at most");
    assert_eq!(permit(&mut c, "s", &["BLOCK", "1"]), None, "the short form");
    let get: Vec<redis::Value> = redis::cmd("PERMIT.GET").arg("s").query(&mut c).unwrap();
    let field = |name: &str| -> redis::Value {
        let i = get
            .iter()
            .position(|v| *v == redis::Value::BulkString(name.as_bytes().to_vec()))
            .unwrap_or_else(|| panic!("no {name} in {get:?}"));
        get[i + 1].clone()
    };
    assert_eq!(
        field("interval_ms"),
        redis::Value::BulkString(b"60000".to_vec())
    );
    assert_eq!(field("max_waiting"), redis::Value::Int(1));
    assert_eq!(
        field("source"),
        redis::Value::BulkString(b"settings".to_vec())
    );
    assert_eq!(field("waiting"), redis::Value::Int(1));
    // TTL 100 s, just pushed out by the last write.
    let redis::Value::Int(ttl) = field("ttl_ms") else {
        panic!("{get:?}")
    };
    assert!((99_000..=100_000).contains(&ttl), "{ttl}");
    // The key lives until its stream is idle (one interval after its last
    // slot) or its settings expire, whichever is later: here the stream.
    assert!(pttl(&mut c, "s") > 100_000);
    pair.sync();
    assert_eq!(dump(&mut c, "s"), dump(&mut pair.replica.conn(), "s"));
    let removed: i64 = redis::cmd("PERMIT.RESET").arg("s").query(&mut c).unwrap();
    assert_eq!(removed, 1);
    let removed: i64 = redis::cmd("PERMIT.RESET").arg("s").query(&mut c).unwrap();
    assert_eq!(removed, 0);
    // The caller's own interval (and no bound) again; the chain stands.
    let after = permit(&mut c, "s", &["1"]).unwrap();
    assert_eq!(after[1], second[1] + 1);
    let e = expect_err(&mut c, redis::cmd("PERMIT").arg("s"));
    assert!(e.contains("no settings on this key"), "{e}");
}

/// Issue 22's "live reset_rate": 50 callers held at a 5 s interval (a
/// queue that would take over four minutes), the interval set to 20 ms.
/// They are re-spaced at once, in order: their slots (as replied) exactly
/// 20 ms apart, the first within one new interval of the change, so all 50
/// are through in about a second. Spacing is measured on the server's
/// slots.
#[test]
fn a_live_interval_change_respaces_held_callers() {
    let (s, mut c) = start();
    let base = throttle_stat(&mut c, "throttle_blocked_total");
    let first = permit(&mut c, "q", &["5000"]).unwrap();
    let mut handles = Vec::new();
    for i in 0..50 {
        handles.push(spawn_permit(&s, "q", vec!["5000", "BLOCK", "600000"]));
        wait_blocked(&mut c, base, i + 1);
    }
    let before_set = server_time_ms(&mut c);
    assert!(before_set < first[1] + 5000, "the setup took over 5 s");
    let ok: String = redis::cmd("PERMIT.SET")
        .arg(&["q", "INTERVAL", "20"])
        .query(&mut c)
        .unwrap();
    assert_eq!(ok, "OK");
    let after_set = server_time_ms(&mut c);
    let results: Vec<Vec<i64>> = handles
        .into_iter()
        .map(|h| h.join().unwrap().0.unwrap().expect("a permit"))
        .collect();
    let slots: Vec<i64> = results.iter().map(|r| r[1]).collect();
    // In order, 20 ms apart on the server's slots.
    for w in slots.windows(2) {
        assert_eq!(w[1] - w[0], 20, "{slots:?}");
    }
    // The first at the change (its predecessor, the immediate permit, was
    // more than 20 ms before): within one new interval of it.
    assert!(
        (before_set..=after_set + 21).contains(&slots[0]),
        "first re-spaced slot {} vs the change at {before_set}..{after_set}",
        slots[0]
    );
    // The next caller comes at least one new interval after the last (its
    // stored chain ends there).
    let next = permit(&mut c, "q", &["5000"]).unwrap();
    assert!(next[1] >= slots[49] + 20, "{next:?} after {}", slots[49]);
    assert_held_counters_add_up(&mut c);
}
