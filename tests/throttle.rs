//! THROTTLE and THROTTLE.PEEK against a real redis-server with the module.
//!
//! Time-dependent assertions use small rates and bracket the call with the
//! server's clock (TIME); values that do not depend on timing (capacity,
//! first replies, allowed counts) are checked exactly. No test bounds how
//! fast a reply comes: "at once" means "never parked".

mod common;

use std::path::Path;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use common::*;
use throttle_core::codec::Writer;

/// The bucket of the issue's example: 5 rps × burst 2 × 8 s = 80 tokens.
const EXAMPLE: [&str; 3] = ["5", "2", "8"];
/// Also 80 tokens, refilling so slowly (0.01 per second) that a busy
/// machine's delays cannot change a whole-token count mid-test.
const SLOW80: [&str; 3] = ["0.01", "1", "8000"];

#[test]
fn first_call_matches_the_issue_example() {
    let (s, mut c) = start();
    let before = server_time_ms(&mut c);
    assert_eq!(throttle(&mut c, "user:1", &EXAMPLE), [1, 79, 0, 200, 80]);
    let after = server_time_ms(&mut c);
    assert_eq!(key_type(&mut c, "user:1"), "rl-bucket");
    assert_bucket_expiry(&mut c, "user:1", 200, 16_000, (before, after));
    // A RESP3 client sees the same five integers.
    let mut c3 = s.conn_resp3();
    assert_eq!(throttle(&mut c3, "user:2", &EXAMPLE), [1, 79, 0, 200, 80]);
}

#[test]
fn capacity_is_ceil_of_rps_times_burst_times_window() {
    let (_s, mut c) = start();
    for (args, limit) in [
        (["5", "2", "8"], 80),
        (["1.5", "1", "3"], 5),     // 4.5 → 5
        (["10", "0.3", "1"], 3),    // exactly 3, no float error
        (["0.0001", "1", "1"], 1),  // at least one token
        (["0.1", "0.1", "0.1"], 1), // 0.001 → 1
        (["1e9", "2", "8"], 16_000_000_000),
        (["1e9", "1e6", "1"], 1_000_000_000_000_000),
        (["3", "1", "1"], 3),
        (["2.5E-3", "4e2", "1e1"], 10),
    ] {
        let key = format!("cap:{args:?}");
        let r = throttle(&mut c, &key, &args);
        assert_eq!(r[..3], [1, limit - 1, 0], "{args:?} → {r:?}");
        assert_eq!(r[4], limit, "{args:?} → {r:?}");
        assert_eq!(peek(&mut c, &key, &args)[4], limit);
    }
}

#[test]
fn reset_after_is_rounded_up() {
    let (_s, mut c) = start();
    // One token at 3 rps takes 333.33… ms: reported as 334.
    assert_eq!(throttle(&mut c, "k", &["3", "1", "1"]), [1, 2, 0, 334, 3]);
    // 0.0001 rps: one token takes 10 000 s.
    let before = server_time_ms(&mut c);
    assert_eq!(
        throttle(&mut c, "slow", &["0.0001", "1", "1"]),
        [1, 0, 0, 10_000_000, 1]
    );
    let after = server_time_ms(&mut c);
    assert_bucket_expiry(&mut c, "slow", 10_000_000, 10_000_000, (before, after));
}

#[test]
fn every_reply_field_over_time() {
    let (_s, mut c) = start();
    let args = ["2", "1", "2"]; // 2 rps, limit 4, one token per 500 ms
    assert_eq!(throttle(&mut c, "k", &args), [1, 3, 0, 500, 4]);
    let r = throttle(&mut c, "k", &["2", "1", "2", "3"]);
    assert_eq!(r[..3], [1, 0, 0]);
    assert!((1800..=2000).contains(&r[3]), "reset_after {r:?}");
    assert_eq!(r[4], 4);

    // Empty: denied, retry_after ≤ one token's time, nothing consumed.
    let denied = throttle(&mut c, "k", &args);
    assert_eq!([denied[0], denied[1], denied[4]], [0, 0, 4], "{denied:?}");
    assert!((300..=500).contains(&denied[2]), "retry_after {denied:?}");
    assert!((1600..=2000).contains(&denied[3]), "reset_after {denied:?}");
    // A bigger cost waits longer: two tokens need one more token time.
    let two = peek(&mut c, "k", &["2", "1", "2", "2"]);
    assert!(
        (two[2] - denied[2] - 500).abs() <= 100,
        "{two:?} vs {denied:?}"
    );
    // A cost above the limit can never succeed.
    assert_eq!(peek(&mut c, "k", &["2", "1", "2", "5"])[2], -1);

    // Waiting exactly retry_after is never too early.
    thread::sleep(Duration::from_millis(u64::try_from(denied[2]).unwrap()));
    let ok = throttle(&mut c, "k", &args);
    assert_eq!(ok[..3], [1, 0, 0], "{ok:?}");
    assert!((1400..=2000).contains(&ok[3]), "reset_after {ok:?}");

    // Time passes: reset_after shrinks, the level grows, PTTL follows
    // (cost 0 peeks show the level itself).
    let zero = ["2", "1", "2", "0"];
    let before = peek(&mut c, "k", &zero);
    thread::sleep(Duration::from_millis(600));
    let after = peek(&mut c, "k", &zero);
    assert_eq!(before[1], 0, "{before:?}");
    assert!((1..=2).contains(&after[1]), "{before:?} → {after:?}");
    let shrink = before[3] - after[3];
    assert!((599..=1500).contains(&shrink), "{before:?} → {after:?}");
    // The expiry still covers "full again" (PEEK moves nothing).
    let now = server_time_ms(&mut c);
    assert!(pexpiretime(&mut c, "k") >= now + after[3] - 1, "{after:?}");
}

/// The key expires once the bucket is full again: its expiry is never
/// before `reset_after`, and after it by less than max(1 s, a tenth of the
/// refill time) (it moves only when it must).
#[test]
fn pttl_follows_reset_after() {
    let (_s, mut c) = start();
    let before = server_time_ms(&mut c);
    let r = throttle(&mut c, "k", &["5", "2", "8", "5"]);
    let after = server_time_ms(&mut c);
    assert_eq!(r, [1, 75, 0, 1000, 80]);
    assert_bucket_expiry(&mut c, "k", 1000, 16_000, (before, after));
    // Each allowed call moves the expiry to follow the new "full again".
    for cost in ["10", "30"] {
        let before = server_time_ms(&mut c);
        let r = throttle(&mut c, "k", &["5", "2", "8", cost]);
        let after = server_time_ms(&mut c);
        assert_eq!(r[0], 1, "{r:?}");
        assert_bucket_expiry(&mut c, "k", r[3], 16_000, (before, after));
    }
}

#[test]
fn a_bucket_that_is_full_again_expires() {
    let (_s, mut c) = start();
    assert_eq!(
        throttle(&mut c, "k", &["100", "1", "1"]),
        [1, 99, 0, 10, 100]
    );
    wait_for(Duration::from_secs(2), "the key to expire", || {
        (!exists(&mut c, "k")).then_some(())
    });
    // Absence is a full bucket.
    assert_eq!(
        throttle(&mut c, "k", &["100", "1", "1"]),
        [1, 99, 0, 10, 100]
    );
}

#[test]
fn denied_call_changes_nothing() {
    let (_s, mut c) = start();
    let args = ["0.01", "1", "100"]; // limit 1
    assert_eq!(throttle(&mut c, "k", &args)[0], 1);
    let d0 = dump(&mut c, "k");
    let t0 = pexpiretime(&mut c, "k");
    let changes0: i64 = info(&mut c, "persistence")["rdb_changes_since_last_save"]
        .parse()
        .unwrap();
    for _ in 0..5 {
        let r = throttle(&mut c, "k", &args);
        assert_eq!(r[0], 0, "{r:?}");
        thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(dump(&mut c, "k"), d0);
    assert_eq!(pexpiretime(&mut c, "k"), t0);
    let changes1: i64 = info(&mut c, "persistence")["rdb_changes_since_last_save"]
        .parse()
        .unwrap();
    assert_eq!(changes1, changes0, "a denied call marked the dataset dirty");
    // An allowed call does count as a change (RDB save points see it).
    throttle(&mut c, "other", &args);
    let changes2: i64 = info(&mut c, "persistence")["rdb_changes_since_last_save"]
        .parse()
        .unwrap();
    assert!(changes2 > changes1);
}

#[test]
fn cost_zero_is_allowed_and_writes_nothing() {
    let (_s, mut c) = start();
    assert_eq!(
        throttle(&mut c, "fresh", &["5", "2", "8", "0"]),
        [1, 80, 0, 0, 80]
    );
    assert!(!exists(&mut c, "fresh"));
    // On an empty bucket a zero cost is still allowed, and nothing moves.
    throttle(&mut c, "k", &["0.01", "1", "100"]);
    let d0 = dump(&mut c, "k");
    let t0 = pexpiretime(&mut c, "k");
    thread::sleep(Duration::from_millis(5));
    let r = throttle(&mut c, "k", &["0.01", "1", "100", "0"]);
    assert_eq!(r[..3], [1, 0, 0], "{r:?}");
    assert_eq!(dump(&mut c, "k"), d0);
    assert_eq!(pexpiretime(&mut c, "k"), t0);
}

#[test]
fn cost_above_the_limit_is_never_allowed() {
    let (_s, mut c) = start();
    assert_eq!(
        throttle(&mut c, "k", &["5", "2", "8", "81"]),
        [0, 80, -1, 0, 80]
    );
    assert!(!exists(&mut c, "k"));
    assert_eq!(
        throttle(&mut c, "k", &["5", "2", "8", "80"]),
        [1, 0, 0, 16000, 80]
    );
    let r = throttle(&mut c, "k", &["5", "2", "8", "81"]);
    assert_eq!([r[0], r[2], r[4]], [0, -1, 80], "{r:?}");
}

#[test]
fn rps_zero_denies_and_minus_one_allows_storing_nothing() {
    let (_s, mut c) = start();
    assert_eq!(throttle(&mut c, "k", &["0", "2", "8"]), [0, 0, 8000, 0, 0]);
    assert_eq!(
        throttle(&mut c, "k", &["0", "1", "0.25"]),
        [0, 0, 250, 0, 0]
    );
    assert_eq!(throttle(&mut c, "k", &["-1", "2", "8"]), [1, -1, 0, 0, -1]);
    assert_eq!(
        throttle(&mut c, "k", &["-1", "2", "8", "1000"]),
        [1, -1, 0, 0, -1]
    );
    assert_eq!(peek(&mut c, "k", &["0", "2", "8"]), [0, 0, 8000, 0, 0]);
    assert_eq!(peek(&mut c, "k", &["-1", "2", "8"]), [1, -1, 0, 0, -1]);
    assert!(!exists(&mut c, "k"));
    // And on an existing bucket they leave it exactly as it was.
    throttle(&mut c, "held", &["0.01", "1", "100"]);
    let d0 = dump(&mut c, "held");
    let t0 = pexpiretime(&mut c, "held");
    thread::sleep(Duration::from_millis(5));
    assert_eq!(throttle(&mut c, "held", &["0", "2", "8"])[0], 0);
    assert_eq!(throttle(&mut c, "held", &["-1", "2", "8"])[0], 1);
    assert_eq!(dump(&mut c, "held"), d0);
    assert_eq!(pexpiretime(&mut c, "held"), t0);
}

#[test]
fn peek_never_writes() {
    let (_s, mut c) = start();
    assert_eq!(peek(&mut c, "k", &EXAMPLE), [1, 79, 0, 200, 80]);
    assert!(!exists(&mut c, "k"));
    throttle(&mut c, "k", &["0.01", "1", "8000", "10"]);
    let d0 = dump(&mut c, "k");
    let t0 = pexpiretime(&mut c, "k");
    for _ in 0..3 {
        let r = peek(&mut c, "k", &SLOW80);
        assert_eq!([r[0], r[1], r[4]], [1, 69, 80], "{r:?}");
        thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(dump(&mut c, "k"), d0);
    assert_eq!(pexpiretime(&mut c, "k"), t0);
    // PEEK runs where writes may not: a read-only script.
    let r: Vec<i64> = redis::cmd("EVAL_RO")
        .arg("return redis.call('THROTTLE.PEEK', KEYS[1], '5', '2', '8')")
        .arg(1)
        .arg("k")
        .query(&mut c)
        .unwrap();
    assert_eq!([r[0], r[4]], [1, 80]);
    let e = expect_err(
        &mut c,
        redis::cmd("EVAL_RO")
            .arg("return redis.call('THROTTLE', KEYS[1], '5', '2', '8')")
            .arg(1)
            .arg("k"),
    );
    assert!(e.contains("Write commands are not allowed"), "{e}");
    assert_eq!(dump(&mut c, "k"), d0);
}

/// Bad arguments after the key, and the start of the error they must give.
fn bad_throttle_inputs() -> Vec<(Vec<&'static str>, &'static str)> {
    let mut cases: Vec<(Vec<&str>, &str)> = Vec::new();
    const NOT_NUMBERS: [&str; 22] = [
        "abc", "nan", "NaN", "-nan", "inf", "-inf", "+inf", "Infinity", "", " 1", "1 ", "0x10",
        "0X1A", "1.5x", "1e", "1e+", "1,5", "--1", "1.2.3", "e5", ".", "１",
    ];
    for bad in NOT_NUMBERS {
        cases.push((vec![bad, "2", "8"], "ERR rps is not a valid decimal number"));
        cases.push((
            vec!["5", bad, "8"],
            "ERR burst is not a valid decimal number",
        ));
        cases.push((
            vec!["5", "2", bad],
            "ERR window is not a valid decimal number",
        ));
    }
    for (bad, why) in [
        ("-2", "ERR rps must be > 0"),
        ("-0.5", "ERR rps must be > 0"),
        ("-1.5", "ERR rps must be > 0"),
        ("1e11", "ERR rps must be > 0"),
        ("1000000001", "ERR rps must be > 0 and <= 1e9"),
        (
            "1234567.891",
            "ERR rps has too many significant digits (at most 9)",
        ),
        ("1e400", "ERR rps must be"),
        (
            "99999999999999999999999999999999999999999",
            "ERR rps must be",
        ),
        ("0.0000000001", "ERR rps has too many decimal places"),
        ("1e-10", "ERR rps has too many decimal places"),
    ] {
        cases.push((vec![bad, "2", "8"], why));
    }
    for (bad, why) in [
        ("0", "ERR burst must be > 0 and <= 1e9"),
        ("-0", "ERR burst must be > 0 and <= 1e9"),
        ("-1", "ERR burst must be > 0 and <= 1e9"),
        ("1e10", "ERR burst must be > 0 and <= 1e9"),
        ("1.000000001e9", "ERR burst must be > 0 and <= 1e9"),
        ("0.0000000001", "ERR burst has too many decimal places"),
    ] {
        cases.push((vec!["5", bad, "8"], why));
    }
    for (bad, why) in [
        ("0", "ERR window must be > 0"),
        ("-8", "ERR window must be > 0"),
        ("1e10", "ERR window must be > 0"),
        ("0.0000000001", "ERR window has too many decimal places"),
    ] {
        cases.push((vec!["5", "2", bad], why));
    }
    for (bad, why) in [
        ("-1", "ERR tokens must be"),
        ("99999999999999999999", "ERR tokens must be"),
        ("1.5", "ERR tokens is not a valid integer"),
        ("1.0", "ERR tokens is not a valid integer"),
        ("abc", "ERR tokens is not a valid integer"),
        ("", "ERR tokens is not a valid integer"),
        ("0x1", "ERR tokens is not a valid integer"),
        ("+1", "ERR tokens is not a valid integer"),
        ("01", "ERR tokens is not a valid integer"),
        ("1e3", "ERR tokens is not a valid integer"),
        (" 1", "ERR tokens is not a valid integer"),
        ("1 ", "ERR tokens is not a valid integer"),
        ("-0", "ERR tokens is not a valid integer"),
        ("nan", "ERR tokens is not a valid integer"),
        ("FOO", "ERR tokens is not a valid integer"),
    ] {
        cases.push((vec!["5", "2", "8", bad], why));
    }
    for (rest, why) in [
        (vec!["1", "WAIT"], "ERR syntax error"),
        (vec!["WAIT"], "ERR syntax error"),
        (
            vec!["1", "WAIT", "abc"],
            "ERR timeout_ms is not a valid integer",
        ),
        (
            vec!["1", "WAIT", ""],
            "ERR timeout_ms is not a valid integer",
        ),
        (
            vec!["1", "WAIT", "1.5"],
            "ERR timeout_ms is not a valid integer",
        ),
        (vec!["1", "WAIT", "-1"], "ERR timeout_ms must be"),
        (
            vec!["1", "WAIT", "99999999999999"],
            "ERR timeout_ms must be",
        ),
        (vec!["WAIT", "nan"], "ERR timeout_ms is not a valid integer"),
        (vec!["1", "WAIT", "10", "WAIT", "10"], "ERR syntax error"),
        (vec!["1", "WAIT", "10", "1"], "ERR syntax error"),
        (vec!["1", "FOO"], "ERR syntax error"),
        (vec!["1", "FOO", "1"], "ERR syntax error"),
        (vec!["1", "2"], "ERR syntax error"),
        (vec!["1", "BLOCK", "10"], "ERR syntax error"),
    ] {
        let mut args = vec!["5", "2", "8"];
        args.extend(rest);
        cases.push((args, why));
    }
    cases.push((
        vec!["1e9", "1e9", "1e9"],
        "ERR rps*burst*window is too large",
    ));
    cases.push((
        vec!["1e9", "1e6", "1.000001"],
        "ERR rps*burst*window is too large",
    ));
    cases.push((
        vec!["0.000000001", "2", "1e9"],
        "ERR the limit would take more than 1e9 seconds to refill",
    ));
    // Without `rps burst window` the key's knobs give the limit; these
    // keys have none.
    for short in [vec![], vec!["5"]] {
        cases.push((short, "ERR no knobs on this key"));
    }
    cases.push((vec!["5", "2"], "ERR syntax error"));
    cases
}

/// Every bad input: an ERR naming the argument, no key created, and an
/// existing key's value and expiry untouched.
#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let (_s, mut c) = start();
    throttle(&mut c, "held", &["0.01", "1", "100"]);
    assert_refused_changing_nothing(&mut c, "THROTTLE", "held", &bad_throttle_inputs());
    let e = expect_err(&mut c, &redis::cmd("THROTTLE"));
    assert_eq!(e, "ERR wrong number of arguments for 'throttle' command");
}

#[test]
fn peek_refuses_the_same_bad_input() {
    let (_s, mut c) = start();
    for (args, want) in bad_throttle_inputs() {
        let e = expect_err(&mut c, redis::cmd("THROTTLE.PEEK").arg("k").arg(&args));
        let want = want.replace("'throttle'", "'throttle.peek'");
        // PEEK has no WAIT option: every WAIT form is a syntax error there.
        if args.contains(&"WAIT") && !want.contains("tokens") {
            assert_eq!(e, "ERR syntax error", "PEEK {args:?}");
        } else {
            assert!(
                e.starts_with(&want),
                "PEEK {args:?}: got {e:?}, want {want:?}"
            );
        }
    }
    let e = expect_err(
        &mut c,
        redis::cmd("THROTTLE.PEEK")
            .arg("k")
            .arg(&["5", "2", "8", "1", "WAIT", "10"]),
    );
    assert_eq!(e, "ERR syntax error");
    assert!(!exists(&mut c, "k"));
}

#[test]
fn extreme_but_valid_parameters_work() {
    let (_s, mut c) = start();
    let big = "1000000000000000"; // the largest capacity, 1e15 tokens
    let r = throttle(&mut c, "max", &["1e9", "1e6", "1", big]);
    assert_eq!(r[..3], [1, 0, 0]);
    assert_eq!(r[4], 1_000_000_000_000_000);
    // Refilling 1e15 tokens at 1e9 per second takes 1e6 s.
    let r = throttle(&mut c, "max", &["1e9", "1e6", "1", big]);
    assert_eq!(r[0], 0);
    assert!((999_990_000..=1_000_000_000).contains(&r[2]), "{r:?}");
    assert_eq!(r[2], r[3], "{r:?}");
    // The smallest rate with the largest burst: one token, refilled in
    // 1e9 s, the longest refill there is.
    let r = throttle(&mut c, "tiny", &["0.000000001", "1e9", "1"]);
    assert_eq!(r[4], 1);
    let r = throttle(&mut c, "tiny", &["0.000000001", "1", "1", "1"]);
    assert_eq!(r[4], 1);
    let first_ms = server_time_ms(&mut c);
    let r = throttle(&mut c, "slowest", &["0.000000001", "1", "1"]);
    assert_eq!(r, [1, 0, 0, 1_000_000_000_000, 1]);
    let r = throttle(&mut c, "slowest", &["0.000000001", "1", "1"]);
    // Denied: the token is due 1e12 ms after the first call, less the time
    // that passed between the two calls (rounded up: at most 1 ms more).
    let elapsed_ms = server_time_ms(&mut c) - first_ms;
    assert_eq!(r[..2], [0, 0], "{r:?}");
    assert!(
        (1_000_000_000_000 - elapsed_ms - 1..=1_000_000_000_000).contains(&r[2]),
        "{r:?} ({elapsed_ms} ms passed)"
    );
    assert_eq!(r[2], r[3], "{r:?}");
    assert_eq!(r[4], 1, "{r:?}");
    let r = throttle(
        &mut c,
        "slowest",
        &["0.000000001", "1", "1", "1", "WAIT", "31622400000"],
    );
    assert_eq!(r[0], 0, "{r:?}");
    let r = throttle(&mut c, "k", &["5", "2", "8", "9223372036854775807"]);
    assert_eq!(r, [0, 80, -1, 0, 80]);
}

#[test]
fn wrongtype_leaves_other_keys_alone() {
    let (_s, mut c) = start();
    let _: () = redis::cmd("SET")
        .arg("str")
        .arg("v")
        .arg("EX")
        .arg(100)
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("HSET")
        .arg("hash")
        .arg("f")
        .arg("v")
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("RPUSH")
        .arg("list")
        .arg("a")
        .query(&mut c)
        .unwrap();
    for key in ["str", "hash", "list"] {
        let before = dump(&mut c, key);
        let ttl_before = pexpiretime(&mut c, key);
        for args in [
            vec!["5", "2", "8"],
            vec!["0", "2", "8"],
            vec!["-1", "2", "8"],
            vec!["5", "2", "8", "0"],
        ] {
            let e = expect_err(&mut c, redis::cmd("THROTTLE").arg(key).arg(&args));
            assert_eq!(
                e,
                "WRONGTYPE Operation against a key holding the wrong kind of value"
            );
            let e = expect_err(&mut c, redis::cmd("THROTTLE.PEEK").arg(key).arg(&args));
            assert!(e.starts_with("WRONGTYPE"), "{e}");
        }
        assert_eq!(dump(&mut c, key), before, "{key} changed");
        assert_eq!(pexpiretime(&mut c, key), ttl_before);
    }
    let v: String = redis::cmd("GET").arg("str").query(&mut c).unwrap();
    assert_eq!(v, "v");
}

#[test]
fn keys_are_binary_safe() {
    let (_s, mut c) = start();
    let keys: [&[u8]; 5] = [b"a", b"a\0b", b"a\0c", b"\xff\xfe\x00\x80", b""];
    for (i, key) in keys.iter().enumerate() {
        let cost = (i + 1).to_string();
        let r = throttle(&mut c, *key, &["0.01", "1", "8000", &cost]);
        assert_eq!(r[1], 80 - i64::try_from(i).unwrap() - 1, "{key:?}");
    }
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(key_type(&mut c, *key), "rl-bucket");
        let left = tokens_left(&mut c, *key, &SLOW80);
        assert_eq!(
            left,
            80 - i64::try_from(i).unwrap() - 1,
            "{key:?} kept its own bucket"
        );
    }
    let n: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(n, 5);
    // DUMP/RESTORE with a binary key name.
    let d = dump(&mut c, keys[3]).unwrap();
    let _: () = redis::cmd("RESTORE")
        .arg(b"\x00copy\xff")
        .arg(0)
        .arg(&d)
        .query(&mut c)
        .unwrap();
    assert_eq!(dump(&mut c, b"\x00copy\xff"), Some(d));
}

/// An RDB written before issue 15 (value encoding version 1; see
/// tests/fixtures/README.md) loads, and every limiter carries on from the
/// state it held: the buckets' tokens (one accrues every 1e8 s, so the
/// expected count follows the server's clock), the knobs, the permit.
#[test]
fn an_rdb_written_by_encoding_version_1_loads_and_carries_on() {
    const WRITTEN_US: i64 = 1_796_015_921_876_839;
    const TOKEN_US: i64 = 100_000_000 * 1_000_000;
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/encoding-v1.rdb");
    let dir = testkit::scratch_dir("encoding-v1");
    std::fs::copy(&fixture, dir.join("v1.rdb")).expect("copy the fixture");
    let s = Server::builder()
        .dir(&dir)
        .args(["--dbfilename", "v1.rdb"])
        .start();
    let mut c = s.conn();
    let n: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(n, 3);
    assert_eq!(key_type(&mut c, "slow"), "rl-bucket");
    assert_eq!(key_type(&mut c, "p"), "rl-permit");
    let slow = ["0.00000001", "100000000", "10"];
    let accrued = |c: &mut redis::Connection| (server_time_us(c) - WRITTEN_US) / TOKEN_US;
    let expected = (7 + accrued(&mut c)).min(10);
    assert_eq!(tokens_left(&mut c, "slow", &slow), expected);
    let r = throttle(&mut c, "slow", &[&slow[..], &["1"]].concat());
    assert_eq!(r[..3], [1, expected - 1, 0], "carries on: {r:?}");
    // The knobs came through: the short form uses them.
    let r: Vec<i64> = redis::cmd("THROTTLE")
        .arg("knobbed")
        .arg(1)
        .query(&mut c)
        .expect("THROTTLE knobbed 1");
    assert_eq!(r[..3], [1, (8 + accrued(&mut c)).min(10) - 1, 0], "{r:?}");
    // The permit's last slot is long past: the next one is immediate.
    let p = permit(&mut c, "p", &["1000", "5"]).expect("a permit");
    assert_eq!(p[0], 0);
    // Written again, everything is in the current encoding and reloads.
    let keys: [&[u8]; 3] = [b"slow", b"knobbed", b"p"];
    let before = states(&mut c, &keys);
    let _: () = redis::cmd("DEBUG").arg("RELOAD").query(&mut c).unwrap();
    assert_eq!(states(&mut c, &keys), before);
    drop(c);
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn debug_reload_keeps_state_and_expiry() {
    let (_s, mut c) = start();
    throttle(&mut c, "a", &["5", "2", "8", "17"]);
    throttle(&mut c, "b", &["0.001", "1", "3000", "2"]);
    throttle(&mut c, b"bin\0key", &["1", "1", "1"]);
    let keys: [&[u8]; 3] = [b"a", b"b", b"bin\0key"];
    let before = states(&mut c, &keys);
    let digest0 = digest(&mut c);
    let _: () = redis::cmd("DEBUG").arg("RELOAD").query(&mut c).unwrap();
    assert_eq!(states(&mut c, &keys), before);
    assert_eq!(digest(&mut c), digest0);
    // And the reloaded bucket keeps counting from where it was.
    assert_eq!(tokens_left(&mut c, "b", &["0.001", "1", "3000"]), 1);
    assert_key_count(&mut c, "throttle_bucket_keys", 3);
}

#[test]
fn dump_restore_round_trips() {
    let (_s, mut c) = start();
    throttle(&mut c, "src", &["0.01", "1", "1000", "4"]);
    let payload = dump(&mut c, "src").unwrap();
    let at = pexpiretime(&mut c, "src");
    let _: () = redis::cmd("RESTORE")
        .arg("dst")
        .arg(at)
        .arg(&payload)
        .arg("ABSTTL")
        .query(&mut c)
        .unwrap();
    assert_eq!(dump(&mut c, "dst").as_ref(), Some(&payload));
    assert_eq!(pexpiretime(&mut c, "dst"), at);
    assert_eq!(key_type(&mut c, "dst"), "rl-bucket");
    assert_eq!(digest_value(&mut c, "dst"), digest_value(&mut c, "src"));
    // Both now behave the same, and independently.
    let args = ["0.01", "1", "1000"];
    assert_eq!(tokens_left(&mut c, "dst", &args), 6);
    throttle(&mut c, "dst", &["0.01", "1", "1000", "6"]);
    assert_eq!(throttle(&mut c, "dst", &args)[0], 0);
    assert_eq!(tokens_left(&mut c, "src", &args), 6);
    // RESTORE onto an existing key needs REPLACE, as for any type.
    let e = expect_err(
        &mut c,
        redis::cmd("RESTORE").arg("src").arg(0).arg(&payload),
    );
    assert!(e.starts_with("BUSYKEY"), "{e}");
}

/// Where the encoded value of a bucket sits inside an uncompressed DUMP
/// payload: the module saves it as one string, `[0x05 opcode][len][b'b' …]`
/// (see core/src/throttle.rs for the layout). Returns its start and length.
fn value_at(payload: &[u8]) -> (usize, usize) {
    let i = payload
        .windows(3)
        .position(|w| w[0] == 0x05 && w[1] < 64 && w[2] == b'b')
        .expect("the encoded value in the DUMP payload");
    (i + 2, usize::from(payload[i + 1]))
}

/// Edits the module value inside a DUMP payload and re-seals its checksum,
/// so the module's own loader sees the damage.
fn corrupt(payload: &[u8], edit: impl FnOnce(&mut Vec<u8>, usize, usize)) -> Vec<u8> {
    let mut p = payload.to_vec();
    let (at, len) = value_at(payload);
    edit(&mut p, at, len);
    reseal_dump(&mut p);
    p
}

/// The payload with its module value replaced by `value` (under 64 bytes).
fn with_value(payload: &[u8], value: &[u8]) -> Vec<u8> {
    corrupt(payload, |p, at, len| {
        p[at - 1] = u8::try_from(value.len()).unwrap();
        p.splice(at..at + len, value.iter().copied());
    })
}

/// A bucket layout with the given fields (see core/src/throttle.rs).
/// A plain bucket's payload (encoding version 3): its stamp counted from
/// 2026-01-01 (signed), the rate, the capacity, how far `full` lies ahead.
fn bucket_value(stamp_s: u64, num: u64, den: u64, capacity: u64, ahead: i128) -> Vec<u8> {
    let mut w = Writer::new(b'b');
    w.int(i128::from(stamp_s) - 1_767_225_600);
    w.u64(num);
    w.u64(den);
    w.u64(capacity);
    w.int(ahead);
    w.finish().as_bytes().to_vec()
}

#[test]
fn corrupt_dump_payloads_are_refused_without_a_crash() {
    // Uncompressed, so the value's bytes can be found and edited.
    let mut s = Server::builder().args(["--rdbcompression", "no"]).start();
    let mut c = s.conn();
    throttle(&mut c, "src", &["5", "2", "8"]);
    let good = dump(&mut c, "src").unwrap();
    // Our checksum is Redis's: re-sealing an untouched payload changes nothing.
    assert_eq!(corrupt(&good, |_, _, _| {}), good);
    let (at, len) = value_at(&good);
    let value = &good[at..at + len];
    assert_eq!(with_value(&good, value), good);
    let now_s = (server_time_us(&mut c) / 1_000_000) as u64;
    // A bucket written by hand with sound fields is accepted: the craft is
    // right, so each case below is refused for its damage alone.
    // (0.001 tokens/s, capacity 80, 7 tokens used: a token is 10^9 units.)
    let sound = with_value(&good, &bucket_value(now_s, 1, 1000, 80, 7_000_000_000));
    let () = redis::cmd("RESTORE")
        .arg("crafted")
        .arg(0)
        .arg(&sound)
        .query(&mut c)
        .unwrap();
    assert_eq!(tokens_left(&mut c, "crafted", &["0.001", "1", "80000"]), 73);
    let permit_value = {
        let mut w = Writer::new(b'p');
        w.u64(now_s * 1_000_000);
        w.int(0);
        w.u64(1000);
        w.u8(0);
        w.finish().as_bytes().to_vec()
    };

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("unknown version", corrupt(&good, |p, at, _| p[at] = 9)),
        ("wrong kind", with_value(&good, &permit_value)),
        (
            "full decades after its stamp",
            with_value(
                &good,
                &bucket_value(now_s, 5, 1, 80, 5 * 1_000_000 * 40 * 365 * 86_400),
            ),
        ),
        (
            "unreduced rate",
            with_value(&good, &bucket_value(now_s, 10, 2, 80, 0)),
        ),
        (
            "zero rate",
            with_value(&good, &bucket_value(now_s, 0, 0, 80, 0)),
        ),
        (
            "zero capacity",
            with_value(&good, &bucket_value(now_s, 5, 1, 0, 0)),
        ),
        (
            "capacity over 1e15",
            with_value(&good, &bucket_value(now_s, 5, 1, 1_000_000_000_000_001, 0)),
        ),
        ("a varint not in its shortest form", {
            let mut v = bucket_value(now_s, 5, 1, 80, 0);
            let last = v.len() - 1;
            v[last] |= 0x80;
            v.push(0);
            with_value(&good, &v)
        }),
        // One byte shorter: the value ends early, the EOF marker follows.
        (
            "truncated value",
            corrupt(&good, |p, at, len| {
                p[at - 1] -= 1;
                p.remove(at + len - 1);
            }),
        ),
        // One byte longer: the EOF marker is read as part of the value.
        ("trailing byte", corrupt(&good, |p, at, _| p[at - 1] += 1)),
        // The string claims more bytes than the whole payload holds (a
        // 14-bit length of 200): the read itself fails.
        (
            "short read",
            corrupt(&good, |p, at, _| {
                p[at - 1] = 200;
                p.insert(at - 1, 0x40);
            }),
        ),
        // Not a string where the module expects one.
        ("wrong opcode", corrupt(&good, |p, at, _| p[at - 2] = 2)),
        // No value at all: the module's read meets the EOF marker.
        (
            "no value",
            corrupt(&good, |p, at, len| {
                p.drain(at - 2..at + len);
            }),
        ),
    ];
    for (what, payload) in cases {
        let r = redis::cmd("RESTORE")
            .arg("dst")
            .arg(0)
            .arg(&payload)
            .query::<redis::Value>(&mut c);
        assert!(s.is_alive(), "{what}: the server died; log:\n{}", s.log());
        assert!(
            r.is_err(),
            "{what}: RESTORE accepted a corrupt payload: {r:?}"
        );
        c = s.conn();
        assert!(!exists(&mut c, "dst"), "{what}: created a key");
    }
    // Flipped bytes without a new checksum are refused by Redis itself.
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0xff;
    let e = expect_err(
        &mut c,
        redis::cmd("RESTORE").arg("dst").arg(0).arg(&flipped),
    );
    assert!(e.contains("checksum"), "{e}");
    // The good payload still restores.
    let _: () = redis::cmd("RESTORE")
        .arg("dst")
        .arg(0)
        .arg(&good)
        .query(&mut c)
        .unwrap();
    assert_eq!(dump(&mut c, "dst"), Some(good));
}

/// `COPY src dst extra…`: 1 if copied.
fn copy(c: &mut redis::Connection, src: &str, dst: &str, extra: &[&str]) -> i64 {
    redis::cmd("COPY")
        .arg(src)
        .arg(dst)
        .arg(extra)
        .query(c)
        .unwrap()
}

#[test]
fn copy_duplicates_value_and_expiry() {
    let (_s, mut c) = start();
    throttle(&mut c, "src", &["0.01", "1", "1000", "3"]);
    assert_eq!(copy(&mut c, "src", "dst", &[]), 1);
    assert_eq!(dump(&mut c, "dst"), dump(&mut c, "src"));
    assert_eq!(pexpiretime(&mut c, "dst"), pexpiretime(&mut c, "src"));
    assert_eq!(digest_value(&mut c, "dst"), digest_value(&mut c, "src"));
    // Independent values: draining the copy leaves the source alone.
    throttle(&mut c, "dst", &["0.01", "1", "1000", "7"]);
    assert_eq!(tokens_left(&mut c, "src", &["0.01", "1", "1000"]), 7);
    assert_eq!(tokens_left(&mut c, "dst", &["0.01", "1", "1000"]), 0);
    // The digest follows the value (so replica comparisons mean something).
    assert_ne!(digest_value(&mut c, "dst"), digest_value(&mut c, "src"));
    // No REPLACE: the destination stays; with REPLACE it is overwritten.
    assert_eq!(copy(&mut c, "src", "dst", &[]), 0);
    assert_eq!(copy(&mut c, "src", "dst", &["REPLACE"]), 1);
    assert_eq!(dump(&mut c, "dst"), dump(&mut c, "src"));
    // Into another database.
    assert_eq!(copy(&mut c, "src", "src", &["DB", "1"]), 1);
    let _: () = redis::cmd("SELECT").arg(1).query(&mut c).unwrap();
    assert_eq!(tokens_left(&mut c, "src", &["0.01", "1", "1000"]), 7);
}

#[test]
fn multi_exec_runs_calls_in_order() {
    let (_s, mut c) = start();
    // limit 2
    let call: &[&str] = &["THROTTLE", "k", "0.01", "2", "100"];
    let replies: Vec<Vec<i64>> = multi(
        &mut c,
        &[
            call,
            call,
            call,
            &["THROTTLE.PEEK", "k", "0.01", "2", "100"],
        ],
    );
    let allowed: Vec<i64> = replies.iter().map(|r| r[0]).collect();
    assert_eq!(allowed, [1, 1, 0, 0]);
    assert_eq!(replies[1][1], 0);
    // WAIT cannot block inside MULTI: it answers at once as the plain form
    // (and is never parked).
    let replies: Vec<Vec<i64>> = multi(
        &mut c,
        &[
            &["THROTTLE", "w", "10", "1", "0.1"],
            &["THROTTLE", "w", "10", "1", "0.1", "1", "WAIT", "5000"],
        ],
    );
    assert_eq!(throttle_stat(&mut c, "throttle_blocked_total"), 0);
    assert_eq!(replies[0][0], 1);
    assert_eq!(replies[1][0], 0, "{replies:?}");
    assert!((1..=100).contains(&replies[1][2]), "{replies:?}");
    // An error inside the transaction does not abort the others.
    // (redis-rs reports the failed command; what matters is the state.)
    let _ = redis::pipe()
        .atomic()
        .cmd("THROTTLE")
        .arg("e")
        .arg(&SLOW80)
        .cmd("THROTTLE")
        .arg("e")
        .arg(&["x", "1", "8000"])
        .cmd("THROTTLE")
        .arg("e")
        .arg(&SLOW80)
        .query::<redis::Value>(&mut c);
    assert_eq!(tokens_left(&mut c, "e", &SLOW80), 78);
}

#[test]
fn eval_scripts_call_throttle() {
    let (_s, mut c) = start();
    let script = "local out = {}
        for i = 1, tonumber(ARGV[1]) do
            out[i] = redis.call('THROTTLE', KEYS[1], '0.01', '3', '100')[1]
        end
        return out";
    let allowed: Vec<i64> = redis::cmd("EVAL")
        .arg(script)
        .arg(1)
        .arg("k")
        .arg(5)
        .query(&mut c)
        .unwrap();
    assert_eq!(allowed, [1, 1, 1, 0, 0]);
    assert_eq!(tokens_left(&mut c, "k", &["0.01", "3", "100"]), 0);
    // The whole reply passes through.
    let r: Vec<i64> = redis::cmd("EVAL")
        .arg("return redis.call('THROTTLE', KEYS[1], '5', '2', '8')")
        .arg(1)
        .arg("u")
        .query(&mut c)
        .unwrap();
    assert_eq!(r, [1, 79, 0, 200, 80]);
    // Errors reach the script (pcall) and the caller.
    let e = expect_err(
        &mut c,
        redis::cmd("EVAL")
            .arg("return redis.pcall('THROTTLE', KEYS[1], 'abc', '2', '8')")
            .arg(1)
            .arg("u"),
    );
    assert!(
        e.starts_with("ERR rps is not a valid decimal number"),
        "{e}"
    );
    let msg: String = redis::cmd("EVAL")
        .arg("local r = redis.pcall('THROTTLE', KEYS[1], '5', '2', '8', '1', 'WAIT'); return r.err")
        .arg(1)
        .arg("u")
        .query(&mut c)
        .unwrap();
    assert!(msg.contains("syntax error"), "{msg}");
    // WAIT inside a script answers at once (is never parked).
    let r: Vec<i64> = redis::cmd("EVAL")
        .arg(
            "redis.call('THROTTLE', KEYS[1], '10', '1', '0.1')
              return redis.call('THROTTLE', KEYS[1], '10', '1', '0.1', '1', 'WAIT', '5000')",
        )
        .arg(1)
        .arg("w")
        .query(&mut c)
        .unwrap();
    assert_eq!(throttle_stat(&mut c, "throttle_blocked_total"), 0);
    assert_eq!(r[0], 0, "{r:?}");
}

#[test]
fn twenty_concurrent_clients_admit_exactly_the_limit() {
    let s = Server::start();
    let clients = 20;
    let calls_each = 5;
    // 0.001 rps × burst 1 × 10 000 s = 10 tokens; nothing accrues meanwhile.
    let args = ["0.001", "1", "10000"];
    let barrier = Arc::new(Barrier::new(clients));
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let mut c = s.conn();
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                (0..calls_each)
                    .map(|_| throttle(&mut c, "hot", &args)[0])
                    .sum::<i64>()
            })
        })
        .collect();
    let allowed: i64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(allowed, 10);
    let mut c = s.conn();
    assert_eq!(tokens_left(&mut c, "hot", &args), 0);
    // The same with costs: 7 clients asking 3 tokens each from 10 → 3 win.
    let barrier = Arc::new(Barrier::new(7));
    let handles: Vec<_> = (0..7)
        .map(|_| {
            let mut c = s.conn();
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                throttle(&mut c, "costly", &["0.001", "1", "10000", "3"])[0]
            })
        })
        .collect();
    let allowed: i64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(allowed, 3);
}

#[test]
fn info_counters_move() {
    let (_s, mut c) = start();
    let calls0 = throttle_stat(&mut c, "throttle_calls");
    let allowed0 = throttle_stat(&mut c, "throttle_allowed");
    let denied0 = throttle_stat(&mut c, "throttle_denied");
    let tokens0 = throttle_stat(&mut c, "throttle_tokens_consumed");
    let keys0 = throttle_stat(&mut c, "throttle_bucket_keys");
    throttle(&mut c, "a", &["0.01", "1", "300", "2"]); // limit 3
    throttle(&mut c, "a", &["0.01", "1", "300"]);
    throttle(&mut c, "a", &["0.01", "1", "300"]);
    throttle(&mut c, "b", &["5", "2", "8", "4"]);
    assert_eq!(throttle_stat(&mut c, "throttle_calls") - calls0, 4);
    assert_eq!(throttle_stat(&mut c, "throttle_allowed") - allowed0, 3);
    assert_eq!(throttle_stat(&mut c, "throttle_denied") - denied0, 1);
    assert_eq!(
        throttle_stat(&mut c, "throttle_tokens_consumed") - tokens0,
        7
    );
    assert_eq!(throttle_stat(&mut c, "throttle_bucket_keys") - keys0, 2);
    let _: () = redis::cmd("DEL").arg("a").query(&mut c).unwrap();
    assert_eq!(throttle_stat(&mut c, "throttle_bucket_keys") - keys0, 1);
    // Bad input is not a call.
    let _ = expect_err(
        &mut c,
        redis::cmd("THROTTLE").arg("a").arg(&["x", "1", "1"]),
    );
    assert_eq!(throttle_stat(&mut c, "throttle_calls") - calls0, 4);
}

/// THROTTLE.APPLY (what replication carries) is refused to ordinary
/// clients unless `throttle.apply-from-clients` is `yes`; then a payload is
/// validated as strictly as an RDB load.
#[test]
fn apply_refuses_garbage() {
    let (_s, mut c) = start();
    let valid = b"\x01P\x00\x00\x00\x00\x00\x00\x00\x00";
    let e = expect_err(
        &mut c,
        redis::cmd("THROTTLE.APPLY").arg("k").arg(valid).arg(0),
    );
    assert!(
        e.starts_with("ERR") && e.contains("throttle.apply-from-clients"),
        "{e}"
    );
    assert!(!exists(&mut c, "k"));
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("throttle.apply-from-clients")
        .arg("yes")
        .query(&mut c)
        .unwrap();
    for (payload, at) in [
        (&b""[..], "0"),
        (b"garbage", "0"),
        (b"\x01L", "0"),
        (b"\x09L0123456789", "0"),
        (b"\x01P\x00", "0"),
        (valid, "-1"),
        (valid, "x"),
    ] {
        let e = expect_err(
            &mut c,
            redis::cmd("THROTTLE.APPLY").arg("k").arg(payload).arg(at),
        );
        assert!(e.starts_with("ERR"), "{payload:?}: {e}");
        assert!(!e.contains("apply-from-clients"), "{payload:?}: {e}");
        assert!(!exists(&mut c, "k"));
    }
    // The effect replaces whatever the key held (a redis-cell string taken
    // over on the master replicates this way).
    let _: () = redis::cmd("SET").arg("str").arg("v").query(&mut c).unwrap();
    let ok: String = redis::cmd("THROTTLE.APPLY")
        .arg("str")
        .arg(valid)
        .arg(0)
        .query(&mut c)
        .unwrap();
    assert_eq!(ok, "OK");
    assert_eq!(key_type(&mut c, "str"), "rl-permit");
}

/// THROTTLE.APPLY's `expire_at_ms`: 0 (or none) leaves the expiry of a key
/// holding a state of the same type as it is (the value is replaced in
/// place); a key of another type is replaced, expiry and all, as any write
/// of a new value; an instant in the past deletes the key, as PEXPIREAT
/// does (an AOF replayed after its keys expired).
#[test]
fn apply_leaves_the_expiry_alone_and_a_past_one_deletes() {
    let (_s, mut c) = start();
    let () = redis::cmd("CONFIG")
        .arg(&["SET", "throttle.apply-from-clients", "yes"])
        .query(&mut c)
        .unwrap();
    // A bucket with a TTL, and the payload of another bucket state.
    throttle(&mut c, "k", &["0.001", "1", "10000", "3"]);
    let at = pexpiretime(&mut c, "k");
    assert!(at > 0);
    let state = permit_payload_of(&mut c);
    for expire in [None, Some("0")] {
        let mut cmd = redis::cmd("THROTTLE.APPLY");
        cmd.arg("k").arg(bucket_payload(&mut c));
        if let Some(e) = expire {
            cmd.arg(e);
        }
        let () = cmd.query(&mut c).unwrap();
        assert_eq!(pexpiretime(&mut c, "k"), at, "expire_at_ms {expire:?}");
    }
    // Another type: replaced, with no expiry of its own.
    let () = redis::cmd("THROTTLE.APPLY")
        .arg("k")
        .arg(&state)
        .arg(0)
        .query(&mut c)
        .unwrap();
    assert_eq!(key_type(&mut c, "k"), "rl-permit");
    assert_eq!(pexpiretime(&mut c, "k"), -1);
    // A past instant deletes the key.
    let () = redis::cmd("THROTTLE.APPLY")
        .arg("k")
        .arg(&state)
        .arg(1000)
        .query(&mut c)
        .unwrap();
    assert!(!exists(&mut c, "k"));
}

/// A bucket state as THROTTLE.APPLY carries it: 1 token per 1000 s,
/// capacity 10, 3 used, written now.
fn bucket_payload(c: &mut redis::Connection) -> Vec<u8> {
    let stamp_s = (server_time_us(c) / 1_000_000) as u64;
    let mut w = throttle_core::codec::Writer::new(b'b');
    w.u64(stamp_s);
    w.u64(1);
    w.u64(1000);
    w.u64(10);
    w.int(3_000_000_000);
    w.finish().as_bytes().to_vec()
}

/// A PERMIT state as THROTTLE.APPLY carries it: last slot now.
fn permit_payload_of(c: &mut redis::Connection) -> Vec<u8> {
    let now = server_time_us(c) as u64;
    let mut w = throttle_core::codec::Writer::new(b'p');
    w.u64(now);
    w.int(0);
    w.u64(1000);
    w.u8(0);
    w.finish().as_bytes().to_vec()
}

/// Throws a mix of odd calls at one server; none may take it down.
#[test]
fn no_input_crashes_the_server() {
    let (_s, mut c) = start();
    let odd = [
        "0",
        "-1",
        "-0",
        "1",
        "0.000000001",
        "1e10",
        "1e9",
        "1e-9",
        "999999999999",
        "1e15",
        "9223372036854775807",
        "18446744073709551616",
        "-9223372036854775808",
        "x",
        "",
    ];
    let mut n = 0u64;
    for rps in odd {
        for burst in ["1", "1e9", "0.000000001", "x"] {
            for window in ["1", "1e9", "0.000000001"] {
                for tokens in ["0", "1", "9223372036854775807"] {
                    let args = [rps, burst, window, tokens, "WAIT", "1"];
                    let _ = redis::cmd("THROTTLE")
                        .arg("k")
                        .arg(&args)
                        .query::<redis::Value>(&mut c);
                    let _ = redis::cmd("THROTTLE.PEEK")
                        .arg("k")
                        .arg(&args[..4])
                        .query::<redis::Value>(&mut c);
                    n += 1;
                }
            }
        }
    }
    assert!(n > 500);
}

/// Commands that move keys without the module's callbacks (RENAME, MOVE,
/// SWAPDB) keep the value and its expiry; MEMORY USAGE measures it;
/// FLUSHALL frees every value (INFO's key counts drop to zero).
#[test]
fn rename_move_swapdb_and_memory_usage() {
    let (_s, mut c) = start();
    throttle(&mut c, "a", &["0.01", "1", "1000", "4"]);
    permit(&mut c, "p", &["100000", "3"]);
    let d = dump(&mut c, "a");
    let at = pexpiretime(&mut c, "a");
    let _: () = redis::cmd("RENAME")
        .arg("a")
        .arg("b")
        .query(&mut c)
        .unwrap();
    assert_eq!(
        (dump(&mut c, "b"), pexpiretime(&mut c, "b")),
        (d.clone(), at)
    );
    let moved: i64 = redis::cmd("MOVE").arg("b").arg(1).query(&mut c).unwrap();
    assert_eq!(moved, 1);
    let _: () = redis::cmd("SWAPDB").arg(0).arg(1).query(&mut c).unwrap();
    assert_eq!((dump(&mut c, "b"), pexpiretime(&mut c, "b")), (d, at));
    assert_eq!(tokens_left(&mut c, "b", &["0.01", "1", "1000"]), 6);
    let _: () = redis::cmd("SELECT").arg(1).query(&mut c).unwrap();
    assert_eq!(key_type(&mut c, "p"), "rl-permit");
    let usage = |c: &mut redis::Connection, key: &str| -> i64 {
        redis::cmd("MEMORY").arg("USAGE").arg(key).query(c).unwrap()
    };
    assert!(usage(&mut c, "p") > 0);
    let _: () = redis::cmd("SELECT").arg(0).query(&mut c).unwrap();
    assert!(usage(&mut c, "b") > 0);
    assert_eq!(throttle_stat(&mut c, "throttle_bucket_keys"), 1);
    assert_eq!(throttle_stat(&mut c, "throttle_permit_keys"), 1);
    // SYNC: Valkey frees a FLUSHALL in the background by default
    // (lazyfree-lazy-user-flush), so the counts would drop a moment later.
    let _: () = redis::cmd("FLUSHALL").arg("SYNC").query(&mut c).unwrap();
    assert_eq!(throttle_stat(&mut c, "throttle_bucket_keys"), 0);
    assert_eq!(throttle_stat(&mut c, "throttle_permit_keys"), 0);
}
