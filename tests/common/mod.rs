//! Helpers shared by the integration suites (each suite compiles its own
//! copy, so not every suite uses every helper).
//!
//! Servers come from `testkit`; this file adds what the suites need on
//! top: typed command shortcuts, error text, DUMP/expiry probes, INFO
//! parsing, a health check, a master + replica pair and a working
//! directory that outlives one server (for restarts).
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use redis::{Connection, RedisError, ToRedisArgs};
pub use testkit::{Server, wait_for};

/// A server with the module and a connection to it. Dropping the server
/// checks that it did not crash or log a panic (see `testkit::Server`).
pub fn start() -> (Server, Connection) {
    let s = Server::start();
    let c = s.conn();
    (s, c)
}

/// Runs `calls` (each `[command, args…]`) in one MULTI/EXEC: every call
/// reads the clock microseconds after the one before.
pub fn multi<T: redis::FromRedisValue>(con: &mut Connection, calls: &[&[&str]]) -> T {
    let mut pipe = redis::pipe();
    pipe.atomic();
    for call in calls {
        pipe.cmd(call[0]).arg(&call[1..]);
    }
    pipe.query(con)
        .unwrap_or_else(|e| panic!("MULTI {calls:?}: {e}"))
}

/// DUMP and absolute expiry of each key.
pub fn states<K: ToRedisArgs>(con: &mut Connection, keys: &[K]) -> Vec<(Option<Vec<u8>>, i64)> {
    keys.iter()
        .map(|k| (dump(con, k), pexpiretime(con, k)))
        .collect()
}

/// The error reply as the server wrote it: `CODE detail`.
pub fn error_text(e: &RedisError) -> String {
    match (e.code(), e.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        (Some(code), None) => code.to_string(),
        _ => e.to_string(),
    }
}

/// Runs `cmd`, which must fail with an error reply; returns its text.
pub fn expect_err(con: &mut Connection, cmd: &redis::Cmd) -> String {
    match cmd.query::<redis::Value>(con) {
        Ok(v) => panic!("expected an error from {:?}, got {v:?}", cmd_text(cmd)),
        Err(e) => {
            assert!(
                e.code().is_some(),
                "expected an error reply from {:?}, got a client error: {e}",
                cmd_text(cmd)
            );
            error_text(&e)
        }
    }
}

fn cmd_text(cmd: &redis::Cmd) -> String {
    String::from_utf8_lossy(&cmd.get_packed_command()).replace("\r\n", " ")
}

/// `THROTTLE key <args…>`.
pub fn throttle<K: ToRedisArgs>(con: &mut Connection, key: K, args: &[&str]) -> Vec<i64> {
    redis::cmd("THROTTLE")
        .arg(key)
        .arg(args)
        .query(con)
        .unwrap_or_else(|e| panic!("THROTTLE {args:?}: {e}"))
}

/// `THROTTLE.PEEK key <args…>`.
pub fn peek<K: ToRedisArgs>(con: &mut Connection, key: K, args: &[&str]) -> Vec<i64> {
    redis::cmd("THROTTLE.PEEK")
        .arg(key)
        .arg(args)
        .query(con)
        .unwrap_or_else(|e| panic!("THROTTLE.PEEK {args:?}: {e}"))
}

/// Whole tokens in the bucket now: `THROTTLE.PEEK` with cost 0 (PEEK's
/// `remaining`, like THROTTLE's, is what is left *after* the call's cost).
pub fn tokens_left<K: ToRedisArgs>(con: &mut Connection, key: K, params: &[&str; 3]) -> i64 {
    let mut args = params.to_vec();
    args.push("0");
    let r = peek(con, key, &args);
    assert_eq!(r[0], 1, "a zero cost is always allowed: {r:?}");
    r[1]
}

/// `PERMIT key <args…>`: the reply, or `None` for nil.
pub fn permit<K: ToRedisArgs>(con: &mut Connection, key: K, args: &[&str]) -> Option<Vec<i64>> {
    redis::cmd("PERMIT")
        .arg(key)
        .arg(args)
        .query(con)
        .unwrap_or_else(|e| panic!("PERMIT {args:?}: {e}"))
}

/// The DUMP payload of `key`, `None` when it does not exist.
pub fn dump<K: ToRedisArgs>(con: &mut Connection, key: K) -> Option<Vec<u8>> {
    redis::cmd("DUMP").arg(key).query(con).expect("DUMP")
}

/// `PEXPIRETIME key` (absolute Unix ms; -1 no expiry, -2 no key).
pub fn pexpiretime<K: ToRedisArgs>(con: &mut Connection, key: K) -> i64 {
    redis::cmd("PEXPIRETIME")
        .arg(key)
        .query(con)
        .expect("PEXPIRETIME")
}

pub fn pttl<K: ToRedisArgs>(con: &mut Connection, key: K) -> i64 {
    redis::cmd("PTTL").arg(key).query(con).expect("PTTL")
}

pub fn exists<K: ToRedisArgs>(con: &mut Connection, key: K) -> bool {
    redis::cmd("EXISTS")
        .arg(key)
        .query::<i64>(con)
        .expect("EXISTS")
        == 1
}

pub fn key_type<K: ToRedisArgs>(con: &mut Connection, key: K) -> String {
    redis::cmd("TYPE").arg(key).query(con).expect("TYPE")
}

/// `DEBUG DIGEST-VALUE key` as hex text.
pub fn digest_value<K: ToRedisArgs>(con: &mut Connection, key: K) -> String {
    let v: Vec<String> = redis::cmd("DEBUG")
        .arg("DIGEST-VALUE")
        .arg(key)
        .query(con)
        .expect("DEBUG DIGEST-VALUE");
    v.into_iter().next().unwrap_or_default()
}

/// `DEBUG DIGEST`: the whole dataset, TTLs included.
pub fn digest(con: &mut Connection) -> String {
    redis::cmd("DEBUG")
        .arg("DIGEST")
        .query(con)
        .expect("DEBUG DIGEST")
}

/// An immediate permit's `expires_at`: never, written as
/// 9999-12-31T23:59:59.999Z in Unix ms (read exactly by every client).
pub const NEVER: i64 = 253_402_300_799_999;

/// The server's clock (TIME) in Unix microseconds.
pub fn server_time_us(con: &mut Connection) -> i64 {
    let (s, us): (i64, i64) = redis::cmd("TIME").query(con).expect("TIME");
    s * 1_000_000 + us
}

/// The server's clock (TIME) in Unix milliseconds.
pub fn server_time_ms(con: &mut Connection) -> i64 {
    server_time_us(con) / 1000
}

/// Checks where a THROTTLE that replied `reset_after_ms` while the server
/// clock read between `before_ms` and `after_ms` left its key's expiry: no
/// earlier than "full again", and later by less than max(1 s, a tenth of
/// the limit's refill time `refill_ms`) (the expiry moves only when it
/// must, to a grid of that size).
pub fn assert_bucket_expiry<K: ToRedisArgs + std::fmt::Debug>(
    con: &mut Connection,
    key: K,
    reset_after_ms: i64,
    refill_ms: i64,
    (before_ms, after_ms): (i64, i64),
) {
    let at = pexpiretime(con, &key);
    let slack = 1000.max(refill_ms / 10);
    let (low, high) = (
        before_ms + reset_after_ms,
        after_ms + reset_after_ms + slack + 1,
    );
    assert!(
        (low..=high).contains(&at),
        "{key:?}: expires at {at}, want [{low}, {high}] (reset_after {reset_after_ms} ms)"
    );
}

/// `INFO <section>` as a field → value map.
pub fn info(con: &mut Connection, section: &str) -> HashMap<String, String> {
    let text: String = redis::cmd("INFO").arg(section).query(con).expect("INFO");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

/// Held THROTTLE … WAIT clients released late (a busy CI machine can wake
/// the release thread tens of ms late) still get the reply they were
/// promised: for tests of "never early" and of order. Lateness itself is
/// tested with the default tolerance (tests/hostile.rs).
pub fn tolerate_late_releases(con: &mut Connection) {
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("throttle.wait-tolerance-ms")
        .arg(60_000)
        .query(con)
        .expect("CONFIG SET throttle.wait-tolerance-ms");
}

/// A numeric field of `INFO throttle`, by the exact name the server prints
/// (`throttle_calls`, `throttle_permit_calls`, `throttle_blocked_total`, …).
pub fn throttle_stat(con: &mut Connection, field: &str) -> u64 {
    let all = info(con, "throttle");
    let v = all
        .get(field)
        .unwrap_or_else(|| panic!("INFO throttle has no {field}: {all:?}"));
    v.parse().expect("numeric INFO field")
}

/// INFO's held-client counters add up: every client ever held was
/// released, refused at its timeout, unblocked, disconnected, or is held.
pub fn assert_held_counters_add_up(con: &mut Connection) {
    let i = info(con, "throttle");
    let n = |f: &str| -> u64 {
        i.get(f)
            .unwrap_or_else(|| panic!("INFO throttle has no {f}: {i:?}"))
            .parse()
            .unwrap()
    };
    let ended = n("throttle_blocked_released")
        + n("throttle_blocked_timeout")
        + n("throttle_blocked_key_gone")
        + n("throttle_blocked_unblocked")
        + n("throttle_blocked_disconnected");
    assert_eq!(
        n("throttle_blocked_total"),
        ended + n("throttle_blocked_clients"),
        "held-client counters do not add up: {i:?}"
    );
    assert!(n("throttle_blocked_late") <= n("throttle_blocked_released"));
}

/// Waits (up to 2 s) until the `INFO throttle` key count `field` reads
/// `want`: Valkey frees deleted and replaced values in the background
/// (lazyfree), and a value is uncounted when it is freed.
pub fn assert_key_count(con: &mut Connection, field: &str, want: u64) {
    let what = format!("{field} to read {want}");
    wait_for(Duration::from_secs(2), &what, || {
        (throttle_stat(con, field) == want).then_some(())
    });
}

/// The server process runs, answers PING, and its log shows no panic.
pub fn assert_healthy(server: &mut Server) {
    assert!(server.is_alive(), "server died; log:\n{}", server.log());
    let pong: String = redis::cmd("PING")
        .query(&mut server.conn())
        .expect("PING after the test");
    assert_eq!(pong, "PONG");
    let panics = server.panics_logged();
    assert!(
        panics.is_empty(),
        "the server log shows a panic: {panics:?}"
    );
}

/// Sends `cmd key args…` for every bad input on a fresh key and on `held`
/// (an existing key of the command's type): each must be refused with an
/// error that starts with the expected text, create no key, and leave
/// `held`'s value and expiry as they were; no client is ever parked.
pub fn assert_refused_changing_nothing(
    con: &mut Connection,
    cmd: &str,
    held: &str,
    cases: &[(Vec<&str>, &str)],
) {
    let (d0, e0) = (dump(con, held), pexpiretime(con, held));
    assert!(d0.is_some(), "{held} must exist");
    let parked = throttle_stat(con, "throttle_blocked_total");
    for (args, want) in cases {
        for key in ["fresh", held] {
            let e = expect_err(con, redis::cmd(cmd).arg(key).arg(args));
            assert!(
                e.starts_with(want),
                "{cmd} {key} {args:?}: got {e:?}, want {want:?}"
            );
        }
        assert!(!exists(con, "fresh"), "{cmd} {args:?} created a key");
        assert_eq!(dump(con, held), d0, "{cmd} {args:?} changed {held}");
        assert_eq!(
            pexpiretime(con, held),
            e0,
            "{cmd} {args:?} moved the expiry"
        );
    }
    assert_eq!(throttle_stat(con, "throttle_blocked_total"), parked);
}

/// A master and a replica of it, both with the module loaded. The
/// replica runs with `propagation-error-behavior panic`, so a propagated
/// command it cannot apply kills it loudly instead of being skipped.
pub struct Pair {
    pub master: Server,
    pub replica: Server,
}

impl Pair {
    pub fn start() -> Pair {
        Pair::start_with(&[])
    }

    /// Both servers get `args` too.
    pub fn start_with(args: &[&str]) -> Pair {
        Pair::start_with_module_args(args, &[])
    }

    /// Both servers get `args`, and `module_args` after the module's path
    /// (`["test-clock", "yes"]`: THROTTLE.CLOCK on both).
    pub fn start_with_module_args(args: &[&str], module_args: &[&str]) -> Pair {
        let master = Server::builder()
            .args(args.iter().copied())
            .module_args(module_args.iter().copied())
            .start();
        let port = master.port().to_string();
        let replica = Server::builder()
            .args(args.iter().copied())
            .module_args(module_args.iter().copied())
            .args([
                "--replicaof",
                "127.0.0.1",
                port.as_str(),
                "--propagation-error-behavior",
                "panic",
            ])
            .start();
        let pair = Pair { master, replica };
        let mut rc = pair.replica.conn();
        wait_for(Duration::from_secs(10), "the replica link", || {
            let i = info(&mut rc, "replication");
            (i.get("master_link_status").map(String::as_str) == Some("up")
                && i.get("master_sync_in_progress").map(String::as_str) == Some("0"))
            .then_some(())
        });
        pair
    }

    /// Waits until the replica has applied everything the master has
    /// propagated so far (its offset reaches the master's).
    ///
    /// Not `WAIT` from a new connection: WAIT waits for the calling
    /// client's own last write, and a fresh client has none, so it returns
    /// at once.
    pub fn sync(&self) {
        let mut m = self.master.conn();
        let mut r = self.replica.conn();
        let offset = |c: &mut Connection, field: &str| -> i64 {
            info(c, "replication")[field].parse().expect("offset")
        };
        let target = offset(&mut m, "master_repl_offset");
        wait_for(Duration::from_secs(10), "the replica to catch up", || {
            (offset(&mut r, "slave_repl_offset") >= target).then_some(())
        });
    }

    /// Both servers alive and panic-free.
    pub fn assert_healthy(&mut self) {
        assert_healthy(&mut self.master);
        assert_healthy(&mut self.replica);
    }
}

/// A working directory kept across server restarts; removed on drop.
pub struct ScratchDir(pub PathBuf);

impl ScratchDir {
    /// Takes over `server`'s directory (the server no longer removes it).
    pub fn adopt(server: &mut Server) -> ScratchDir {
        server.keep_dir();
        ScratchDir(server.dir().to_path_buf())
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The CRC-64 (Jones, reflected) that Redis appends to DUMP payloads.
pub fn crc64(data: &[u8]) -> u64 {
    const POLY: u64 = 0x95ac_9329_ac4b_c9b5; // 0xad93d23594c935a9 reflected
    let mut crc = 0u64;
    for &b in data {
        crc ^= u64::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ POLY
            } else {
                crc >> 1
            };
        }
    }
    crc
}

/// Replaces the trailing checksum of a DUMP payload after editing it, so
/// RESTORE hands the edited value to the module instead of refusing it.
pub fn reseal_dump(payload: &mut Vec<u8>) {
    let body = payload.len() - 8;
    let crc = crc64(&payload[..body]);
    payload.truncate(body);
    payload.extend_from_slice(&crc.to_le_bytes());
}

/// Command names in a RESP command stream (an AOF file).
pub fn resp_command_names(stream: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    let mut i = 0;
    let line = |from: usize| -> Option<(usize, &[u8])> {
        let end = stream[from..].windows(2).position(|w| w == b"\r\n")? + from;
        Some((end + 2, &stream[from..end]))
    };
    while i < stream.len() {
        let Some((next, header)) = line(i) else { break };
        assert_eq!(header.first(), Some(&b'*'), "not a RESP array at {i}");
        let argc: usize = std::str::from_utf8(&header[1..]).unwrap().parse().unwrap();
        i = next;
        for a in 0..argc {
            let (next, len_line) = line(i).expect("bulk length");
            let len: usize = std::str::from_utf8(&len_line[1..])
                .unwrap()
                .parse()
                .unwrap();
            if a == 0 {
                names.push(String::from_utf8_lossy(&stream[next..next + len]).to_uppercase());
            }
            i = next + len + 2;
        }
    }
    names
}

/// A connection whose reads give up after `secs` (so a blocking command
/// that never returns fails the test instead of hanging it).
/// (Three times `secs`, as `wait_for`: generous for a saturated machine.)
pub fn conn_with_timeout(server: &Server, secs: u64) -> Connection {
    let con = server.conn();
    con.set_read_timeout(Some(Duration::from_secs(secs * 3)))
        .expect("set_read_timeout");
    con
}

/// LimitLion's tarball: `$LIMITLION_TARBALL`, else `../shared/peers/`'s.
fn limitlion_tarball() -> PathBuf {
    std::env::var_os("LIMITLION_TARBALL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../shared/peers/limitlion-6411f9f.tar.gz")
        })
}

/// `limitlion/throttle.lua` as LimitLion's `throttle_configure(r,
/// testing=True)` loads it: the `TIME` call replaced by the frozen keys
/// when `frozen_second` exists.
pub fn limitlion_testing_script() -> String {
    let tar = limitlion_tarball();
    let out = std::process::Command::new("tar")
        .arg("-xzOf")
        .arg(&tar)
        .arg("limitlion/limitlion/throttle.lua")
        .output()
        .unwrap_or_else(|e| panic!("tar on {}: {e}", tar.display()));
    assert!(
        out.status.success(),
        "cannot read throttle.lua from {} (set LIMITLION_TARBALL): {}",
        tar.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let lua = String::from_utf8(out.stdout).expect("throttle.lua is UTF-8");
    let time_call = "local time = redis.call(\"time\")";
    assert_eq!(lua.matches(time_call).count(), 1, "LimitLion's TIME line");
    lua.replace(
        time_call,
        "local time\n\
         if redis.call(\"exists\", \"frozen_second\") == 1 then\n  \
           time = redis.call(\"mget\", \"frozen_second\", \"frozen_microsecond\")\n\
         else\n  \
           time = redis.call(\"time\")\n\
         end",
    )
}
