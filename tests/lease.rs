//! Leases (LEASE, LEASE.RELEASE, LEASE.RENEW, LEASE.PEEK) against a real
//! server: at most `limit` at once, expiry, fencing ids, FIFO waiting with
//! BLOCK (admitted by a release, an expiry, a raised limit), bad input,
//! persistence and replication (replicas byte-identical, O(1) patches).

mod common;

use std::time::{Duration, Instant};

use common::*;
use redis::Connection;

fn lease(c: &mut Connection, key: &str, args: &[&str]) -> Option<Vec<i64>> {
    redis::cmd("LEASE").arg(key).arg(args).query(c).unwrap()
}

fn peek(c: &mut Connection, key: &str) -> Vec<i64> {
    redis::cmd("LEASE.PEEK").arg(key).query(c).unwrap()
}

fn release(c: &mut Connection, key: &str, id: i64) -> i64 {
    redis::cmd("LEASE.RELEASE")
        .arg(key)
        .arg(id)
        .query(c)
        .unwrap()
}

fn renew(c: &mut Connection, key: &str, id: i64, ttl_ms: i64) -> Option<i64> {
    redis::cmd("LEASE.RENEW")
        .arg(key)
        .arg(id)
        .arg(ttl_ms)
        .query(c)
        .unwrap()
}

/// A held `LEASE … BLOCK` from its own connection; its answer's first line.
fn held(s: &Server, key: &str, args: &[&str]) -> std::sync::mpsc::Receiver<String> {
    let mut all = vec!["LEASE", key];
    all.extend_from_slice(args);
    testkit::held_call(&s.addr(), &all)
}

#[test]
fn at_most_limit_at_once_with_increasing_ids() {
    let (_s, mut c) = start();
    let before = server_time_ms(&mut c);
    let a = lease(&mut c, "api", &["2", "60000"]).expect("first");
    let b = lease(&mut c, "api", &["2", "60000"]).expect("second");
    assert_eq!(lease(&mut c, "api", &["2", "60000"]), None, "a third");
    // [lease_id, expires_at_ms, in_use, limit]; ids at least the issue time in µs.
    assert_eq!((a[2], a[3], b[2]), (1, 2, 2));
    assert!(b[0] > a[0] && a[0] >= before * 1000, "{a:?} {b:?}");
    assert!((before + 60_000..=before + 61_000).contains(&a[1]), "{a:?}");
    assert_eq!(peek(&mut c, "api")[..3], [2, 2, 0]);
    assert_eq!(release(&mut c, "api", a[0]), 1);
    assert_eq!(release(&mut c, "api", a[0]), 0, "released twice");
    let d = lease(&mut c, "api", &["2", "60000"]).expect("a place again");
    assert!(d[0] > b[0], "ids never repeat");
    // Weights: COST takes several places.
    assert_eq!(
        lease(&mut c, "heavy", &["10", "60000", "COST", "7"]).unwrap()[2],
        7
    );
    assert_eq!(lease(&mut c, "heavy", &["10", "60000", "COST", "4"]), None);
    assert_eq!(
        lease(&mut c, "heavy", &["10", "60000", "COST", "3"]).unwrap()[2],
        10
    );
    assert_eq!(peek(&mut c, "missing"), [0, 0, 0, -1]);
}

/// The crash safety: a lease not renewed stops counting at its expiry, and
/// renewing it after that fails (its holder learns it lost the lease).
#[test]
fn expiry_frees_the_place_and_a_lost_lease_cannot_be_renewed() {
    let s = Server::builder().module_args(["test-clock", "yes"]).start();
    let mut c = s.conn();
    let t0 = server_time_us(&mut c);
    let clock = |c: &mut Connection, at: i64| {
        let () = redis::cmd("THROTTLE.CLOCK")
            .arg("FREEZE")
            .arg(at)
            .query(c)
            .unwrap();
    };
    clock(&mut c, t0);
    let a = lease(&mut c, "w", &["1", "1000"]).unwrap();
    assert_eq!(renew(&mut c, "w", a[0], 1000), Some(t0 / 1000 + 1000));
    clock(&mut c, t0 + 999_999);
    assert_eq!(
        lease(&mut c, "w", &["1", "1000"]),
        None,
        "1 µs before its expiry"
    );
    clock(&mut c, t0 + 1_000_000);
    assert_eq!(renew(&mut c, "w", a[0], 1000), None, "lost at its expiry");
    assert!(lease(&mut c, "w", &["1", "1000"]).is_some());
    assert_eq!(renew(&mut c, "w", 12345, 1000), None, "an unknown id");
    assert_eq!(throttle_stat(&mut c, "throttle_lease_lost"), 2);
}

/// BLOCK waits FIFO on the server, without polling: a release admits the
/// first waiter at once, an expiry the next one at that instant, a raised
/// limit the rest; each waiter gets its lease in arrival order.
#[test]
fn held_callers_are_admitted_in_order_by_release_expiry_and_limit() {
    let (s, mut c) = start();
    // 20 s: the waiters' turns (20 s, 21.5 s, 23 s) fall within their 30 s.
    let first = lease(&mut c, "q", &["1", "20000"]).unwrap();
    let mut waiters = Vec::new();
    for i in 0..3 {
        waiters.push(held(&s, "q", &["1", "1500", "BLOCK", "30000"]));
        testkit::wait_for(Duration::from_secs(10), "the waiter to be held", || {
            (peek(&mut c, "q")[2] == i + 1).then_some(())
        });
    }
    let t = Instant::now();
    assert_eq!(release(&mut c, "q", first[0]), 1);
    let got = testkit::held_answers(waiters.drain(..1).collect());
    assert_eq!(got, ["*4"], "the first waiter, by the release");
    // Admitted at the release, not at the 20 s expiry (a generous bound for
    // a saturated machine).
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "admitted at the release"
    );
    // The second starts when the first's 1.5 s lease expires (no call in
    // between), the third 1.5 s after that: in order, each in its turn.
    let got = testkit::held_answers(waiters.drain(..1).collect());
    assert_eq!(got, ["*4"]);
    assert!(
        t.elapsed() >= Duration::from_millis(1400),
        "{:?}",
        t.elapsed()
    );
    // A raised limit admits the last one at once.
    let more = lease(&mut c, "q", &["5", "1500"]).expect("room under 5");
    assert!(more[2] >= 2, "{more:?}");
    assert_eq!(testkit::held_answers(waiters), ["*4"]);
    assert_held_counters_add_up(&mut c);
}

/// A waiter whose turn by expiries lies past its timeout still waits: a
/// release before its timeout admits it; without one it gets nil at its
/// timeout (not at once), and its reservation is gone after.
#[test]
fn a_waiter_whose_turn_lies_past_its_timeout_waits_for_a_release() {
    let (s, mut c) = start();
    let first = lease(&mut c, "q", &["1", "600000"]).unwrap(); // 10 minutes
    let t = Instant::now();
    let admitted = held(&s, "q", &["1", "5000", "BLOCK", "30000"]);
    testkit::wait_for(Duration::from_secs(10), "the waiter to be held", || {
        (peek(&mut c, "q")[2] == 1).then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        peek(&mut c, "q")[..3],
        [1, 1, 1],
        "still waiting, not refused"
    );
    assert_eq!(release(&mut c, "q", first[0]), 1);
    assert_eq!(testkit::held_answers(vec![admitted]), ["*4"]);
    assert!(t.elapsed() < Duration::from_secs(30), "before its timeout");
    // The place is taken for 5 s by the admitted caller; this one's turn
    // (in 5 s) lies past its 400 ms: it waits them, then gets nil.
    let t = Instant::now();
    let refused = held(&s, "q", &["1", "5000", "BLOCK", "400"]);
    assert_eq!(testkit::held_answers(vec![refused]), ["$-1"], "nil");
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(peek(&mut c, "q")[..3], [1, 1, 0], "nobody waits now");
    assert_held_counters_add_up(&mut c);
}

/// Held callers belong to their key's state: when Redis deletes or
/// replaces the key (DEL, FLUSHALL, ...), they are refused at once, so a
/// key made again never also admits them (no more than `limit`, ids in
/// order).
#[test]
fn held_callers_are_refused_when_their_key_is_deleted() {
    let (s, mut c) = start();
    for wipe in [
        &["DEL", "q"][..],
        &["FLUSHALL"],
        &["UNLINK", "q"],
        &["SWAPDB", "0", "1"],
    ] {
        lease(&mut c, "q", &["1", "60000"]).unwrap();
        let waiter = held(&s, "q", &["1", "5000", "BLOCK", "30000"]);
        testkit::wait_for(Duration::from_secs(10), "the waiter to be held", || {
            (peek(&mut c, "q")[2] == 1).then_some(())
        });
        let _: () = redis::cmd(wipe[0]).arg(&wipe[1..]).query(&mut c).unwrap();
        assert_eq!(
            testkit::held_answers(vec![waiter]),
            ["$-1"],
            "{wipe:?}: refused"
        );
        let fresh = lease(&mut c, "q", &["1", "5000"]).expect("the new key's only lease");
        assert_eq!(fresh[2], 1, "{wipe:?}");
        let _: () = redis::cmd("FLUSHALL").query(&mut c).unwrap();
    }
    assert_eq!(throttle_stat(&mut c, "throttle_blocked_key_gone"), 4);
    assert_held_counters_add_up(&mut c);
}

/// A waiter that leaves (disconnects) does not keep its place: the key's
/// next command cancels its reservation, and the next waiter moves up.
#[test]
fn a_waiter_that_leaves_gives_its_place_back() {
    let (s, mut c) = start();
    let first = lease(&mut c, "q", &["1", "5000"]).unwrap();
    {
        // Held (its turn, at 5 s, is within its 10 s), then gone.
        use std::io::Write;
        let mut gone = std::net::TcpStream::connect(s.addr()).unwrap();
        gone.write_all(b"*6\r\n$5\r\nLEASE\r\n$1\r\nq\r\n$1\r\n1\r\n$5\r\n60000\r\n$5\r\nBLOCK\r\n$5\r\n10000\r\n")
            .unwrap();
        testkit::wait_for(Duration::from_secs(10), "the first waiter", || {
            (throttle_stat(&mut c, "throttle_blocked_clients") == 1).then_some(())
        });
    }
    testkit::wait_for(Duration::from_secs(10), "it to leave", || {
        (throttle_stat(&mut c, "throttle_blocked_disconnected") == 1).then_some(())
    });
    // Its reservation (at 5 s, for 60 s) is still in the key: the next
    // command cancels it, so the second waiter takes the 5 s turn, not 65 s.
    let w = held(&s, "q", &["1", "60000", "BLOCK", "30000"]);
    testkit::wait_for(Duration::from_secs(10), "the second waiter", || {
        (throttle_stat(&mut c, "throttle_blocked_clients") == 1).then_some(())
    });
    assert_eq!(peek(&mut c, "q")[..3], [1, 1, 1], "one waiting: the second");
    assert_eq!(release(&mut c, "q", first[0]), 1);
    assert_eq!(
        testkit::held_answers(vec![w]),
        ["*4"],
        "not behind the one that left"
    );
    assert_eq!(peek(&mut c, "q")[..3], [1, 1, 0]);
    assert_held_counters_add_up(&mut c);
}

/// Leases in MULTI: BLOCK behaves as the plain form (refused, not held).
#[test]
fn block_in_a_transaction_is_the_plain_form() {
    let (_s, mut c) = start();
    lease(&mut c, "m", &["1", "60000"]).unwrap();
    let r: Vec<Option<Vec<i64>>> = multi(&mut c, &[&["LEASE", "m", "1", "60000", "BLOCK", "1000"]]);
    assert_eq!(r, [None]);
    assert_eq!(throttle_stat(&mut c, "throttle_blocked_total"), 0);
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let (_s, mut c) = start();
    lease(&mut c, "k", &["2", "60000"]).unwrap();
    let before = dump(&mut c, "k");
    for (args, want) in [
        (
            &["LEASE", "k", "0", "1000"][..],
            "ERR limit must be an integer >= 1 and <= 1000000000000000",
        ),
        (
            &["LEASE", "k", "x", "1000"],
            "ERR limit is not a valid integer",
        ),
        (
            &["LEASE", "k", "1000000000000001", "1000"],
            "ERR limit must be",
        ),
        (
            &["LEASE", "k", "2", "0"],
            "ERR ttl_ms must be an integer >= 1 and <= 31622400000 (one year)",
        ),
        (&["LEASE", "k", "2", "31622400001"], "ERR ttl_ms must be"),
        (
            &["LEASE", "k", "2", "1.5"],
            "ERR ttl_ms is not a valid integer",
        ),
        (
            &["LEASE", "k", "2", "1000", "COST", "0"],
            "ERR COST must be",
        ),
        (
            &["LEASE", "k", "2", "1000", "BLOCK", "-1"],
            "ERR BLOCK must be",
        ),
        (&["LEASE", "k", "2", "1000", "BLOCK"], "ERR syntax error"),
        (
            &["LEASE", "k", "2", "1000", "WAIT", "1"],
            "ERR syntax error",
        ),
        (
            &["LEASE", "k", "2", "1000", "COST", "1", "COST", "1"],
            "ERR syntax error",
        ),
        (
            &["LEASE", "k", "2"],
            "ERR wrong number of arguments for 'lease' command",
        ),
        (
            &["LEASE.RELEASE", "k", "x"],
            "ERR lease_id is not a valid integer",
        ),
        (
            &["LEASE.RELEASE", "k"],
            "ERR wrong number of arguments for 'lease.release' command",
        ),
        (&["LEASE.RENEW", "k", "1", "0"], "ERR ttl_ms must be"),
        (&["LEASE.RENEW", "k", "-1", "10"], "ERR lease_id must be"),
        (
            &["LEASE.PEEK", "k", "x"],
            "ERR wrong number of arguments for 'lease.peek' command",
        ),
    ] {
        let e = expect_err(&mut c, redis::cmd(args[0]).arg(&args[1..]));
        assert!(e.starts_with(want), "{args:?}: {e}");
        assert_eq!(dump(&mut c, "k"), before, "{args:?} changed the key");
    }
    // Keys of another type.
    throttle(&mut c, "bucket", &["1", "1", "1"]);
    for cmd in [
        &["LEASE", "bucket", "1", "10"][..],
        &["LEASE.PEEK", "bucket"],
        &["LEASE.RELEASE", "bucket", "1"],
    ] {
        let e = expect_err(&mut c, redis::cmd(cmd[0]).arg(&cmd[1..]));
        assert!(e.starts_with("WRONGTYPE"), "{cmd:?}: {e}");
    }
    let e = expect_err(&mut c, redis::cmd("THROTTLE").arg(&["k", "1", "1", "1"]));
    assert!(e.starts_with("WRONGTYPE"), "{e}");
}

/// The key expires when its last lease does; RDB, DUMP/RESTORE, COPY keep
/// the leases; a replica (patches applied) ends byte-identical, and so
/// does an AOF replay.
#[test]
fn leases_persist_and_replicate_byte_identical() {
    let pair = Pair::start_with(&["--appendonly", "yes"]);
    let mut m = pair.master.conn();
    let a = lease(&mut m, "p", &["3", "600000", "COST", "2"]).unwrap();
    lease(&mut m, "p", &["3", "600000"]).unwrap();
    assert_eq!(release(&mut m, "p", a[0]), 1);
    let b = lease(&mut m, "p", &["3", "600000", "COST", "2"]).unwrap();
    let before = server_time_ms(&mut m);
    let renewed = renew(&mut m, "p", b[0], 900_000).expect("live");
    let after = server_time_ms(&mut m);
    assert!(
        (before + 900_000..=after + 900_000).contains(&renewed) && renewed >= b[1] + 300_000,
        "{renewed} vs {b:?}"
    );
    lease(&mut m, "short", &["1", "200"]).unwrap();
    pair.sync();
    let mut r = pair.replica.conn();
    assert_eq!(dump(&mut m, "p"), dump(&mut r, "p"));
    assert_eq!(pexpiretime(&mut m, "p"), pexpiretime(&mut r, "p"));
    assert_eq!(key_type(&mut r, "p"), "rl-leases");
    // Expiry of the last lease ends the key (the 200 ms one).
    testkit::wait_for(Duration::from_secs(5), "the short key to expire", || {
        (!exists(&mut m, "short")).then_some(())
    });
    // DUMP/RESTORE and COPY keep the leases exactly.
    let payload = dump(&mut m, "p").unwrap();
    let () = redis::cmd("RESTORE")
        .arg("restored")
        .arg(0)
        .arg(&payload)
        .query(&mut m)
        .unwrap();
    let n: i64 = redis::cmd("COPY")
        .arg("p")
        .arg("copied")
        .query(&mut m)
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(peek(&mut m, "restored")[..3], peek(&mut m, "p")[..3]);
    assert_eq!(peek(&mut m, "copied")[..3], [3, 3, 0]);
    // A restart from the RDB keeps them too.
    let () = redis::cmd("DEBUG").arg("RELOAD").query(&mut m).unwrap();
    assert_eq!(peek(&mut m, "p")[..3], [3, 3, 0]);
    assert_eq!(dump(&mut m, "p").unwrap(), payload);
}

/// Replication carries the change, not the table: 200 leases on a key,
/// and one more lease replicates a payload of a few dozen bytes.
#[test]
fn replication_carries_a_patch_not_the_table() {
    let pair = Pair::start();
    let mut m = pair.master.conn();
    for _ in 0..200 {
        lease(&mut m, "big", &["1000", "600000"]).unwrap();
    }
    pair.sync();
    let offset = |c: &mut Connection| -> i64 {
        info(c, "replication")["master_repl_offset"]
            .parse()
            .unwrap()
    };
    let before = offset(&mut m);
    lease(&mut m, "big", &["1000", "600000"]).unwrap();
    let grew = offset(&mut m) - before;
    assert!(grew < 150, "one LEASE replicated {grew} bytes");
    pair.sync();
    assert_eq!(dump(&mut m, "big"), dump(&mut pair.replica.conn(), "big"));
}
