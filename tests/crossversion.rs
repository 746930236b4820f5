//! Data written by one server version, read by another, with the module
//! loaded on both: DUMP payloads (RESTORE, MIGRATE), RDB files, and
//! replication (a rolling upgrade adds replicas of the new version).
//!
//! The servers come from `THROTTLE_SERVERS`, `label=binary` pairs
//! separated by `;` (scripts/test.sh sets it to every server it tests);
//! without it, `REDIS_SERVER` (or `redis-server`) alone, against itself.
//!
//! ```text
//! THROTTLE_SERVERS="redis-7.0=$(scripts/servers.sh bin redis-7.0);valkey-9=$(scripts/servers.sh bin valkey-9)" \
//!     cargo test --release --test crossversion
//! ```
//!
//! What decides is the RDB format version the server writes (DUMP
//! payloads end with it): Redis 7.0 writes 10, Redis 7.2 and Valkey 8
//! write 11, Redis 7.4 and 8.2 write 12, Valkey 9 writes 80. A server reads its
//! own version and older ones, except that Valkey refuses 12..=79 (formats
//! of Redis releases that Valkey does not share) unless
//! `rdb-version-check relaxed` (Valkey 9). The module's own encoding is
//! versioned apart and reads the same on every server.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::{digest_value, info, pexpiretime};
use testkit::wait_for;

/// A server of one given binary (testkit's servers all run the one that
/// `REDIS_SERVER` names), with the module, on a free port, in its own
/// directory. Killed, and its directory removed, on drop.
struct Node {
    child: Child,
    port: u16,
    dir: PathBuf,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

impl Node {
    /// Starts `binary` in a new directory, or in `dir` (which may hold a
    /// dump.rdb to load). Err: the server exited, with its log.
    fn start(binary: &str, dir: Option<&Path>, args: &[&str]) -> Result<Node, String> {
        // Another process may take the free port first: try another.
        let mut last = String::new();
        for _ in 0..5 {
            match Node::start_once(binary, dir, args) {
                Err(e) if e.contains("Address already in use") || e.contains("another server") => {
                    last = e
                }
                done => return done,
            }
        }
        Err(last)
    }

    fn start_once(binary: &str, dir: Option<&Path>, args: &[&str]) -> Result<Node, String> {
        let dir = match dir {
            Some(d) => d.to_path_buf(),
            None => {
                let d = std::env::temp_dir().join(format!(
                    "throttle-xv-{}-{}",
                    std::process::id(),
                    SEQ.fetch_add(1, Ordering::Relaxed)
                ));
                let _ = std::fs::remove_dir_all(&d);
                std::fs::create_dir_all(&d).map_err(|e| e.to_string())?;
                d
            }
        };
        let port = testkit::free_port();
        let child = Command::new(binary)
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args([
                "--enable-debug-command",
                "yes",
                "--repl-diskless-sync-delay",
                "0",
            ])
            .arg("--dir")
            .arg(&dir)
            .args(["--logfile", "server.log", "--loadmodule"])
            .arg(testkit::module_path())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn {binary}: {e}"))?;
        let mut node = Node { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = node.child.try_wait() {
                return Err(format!("exited with {status}: {}", node.log()));
            }
            if let Ok(c) = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
                && let Ok(mut c) = c.get_connection_with_timeout(Duration::from_millis(200))
                && let Ok(info) = redis::cmd("INFO").arg("server").query::<String>(&mut c)
            {
                let pid = info
                    .lines()
                    .find_map(|l| l.strip_prefix("process_id:"))
                    .and_then(|v| v.trim().parse::<u32>().ok());
                if pid == Some(node.child.id()) {
                    return Ok(node);
                }
                return Err(format!("port {port} is another server's"));
            }
            if Instant::now() > deadline {
                return Err(format!("no PONG within 10 s: {}", node.log()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn conn(&self) -> redis::Connection {
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.port))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One server binary under test.
#[derive(Clone, Debug)]
struct Version {
    label: String,
    binary: String,
    valkey: bool,
    /// The RDB format version this server writes.
    rdb: u16,
    /// Has `rdb-version-check` (Valkey 9+).
    relaxable: bool,
}

impl Version {
    fn start(&self) -> Node {
        Node::start(&self.binary, None, &[]).unwrap_or_else(|e| panic!("{}: {e}", self.label))
    }

    /// Whether this server reads data in RDB format version `v`.
    fn reads(&self, v: u16) -> bool {
        v <= self.rdb && !(self.valkey && (12..80).contains(&v))
    }
}

fn versions() -> Vec<Version> {
    let spec = std::env::var("THROTTLE_SERVERS").unwrap_or_default();
    let mut pairs: Vec<(String, String)> = spec
        .split(';')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            let (l, b) = s
                .split_once('=')
                .expect("THROTTLE_SERVERS: label=binary;...");
            (l.trim().to_string(), b.trim().to_string())
        })
        .collect();
    if pairs.is_empty() {
        pairs.push(("server".into(), testkit::server_binary()));
    }
    pairs
        .into_iter()
        .map(|(label, binary)| {
            let s = Node::start(&binary, None, &[]).unwrap_or_else(|e| panic!("{label}: {e}"));
            let mut c = s.conn();
            let i = info(&mut c, "server");
            let valkey = i.get("server_name").map(String::as_str) == Some("valkey");
            let _: () = redis::cmd("SET")
                .arg("probe")
                .arg("x")
                .query(&mut c)
                .expect("SET");
            let payload = common::dump(&mut c, "probe").expect("DUMP");
            let relaxable = !redis::cmd("CONFIG")
                .arg("GET")
                .arg("rdb-version-check")
                .query::<Vec<String>>(&mut c)
                .expect("CONFIG GET")
                .is_empty();
            Version {
                label,
                binary,
                valkey,
                rdb: rdb_version(&payload),
                relaxable,
            }
        })
        .collect()
}

/// A DUMP payload ends with the RDB version (2 bytes, little endian) and
/// a CRC64 (8 bytes).
fn rdb_version(payload: &[u8]) -> u16 {
    let n = payload.len();
    assert!(n >= 10, "short DUMP payload");
    u16::from_le_bytes([payload[n - 10], payload[n - 9]])
}

/// Limiter state that stays put for the test's duration: a slow bucket
/// with knobs, one without, and a permit stream with reservations.
const KEYS: [&str; 3] = ["x:knobs", "x:bucket", "x:permit"];

fn write_state(c: &mut redis::Connection) {
    let _: () = redis::cmd("THROTTLE.SET")
        .arg(KEYS[0])
        .arg(&["RPS", "0.001", "BURST", "10", "WINDOW", "1000"])
        .query(c)
        .expect("THROTTLE.SET");
    for k in &KEYS[..2] {
        let _: Vec<i64> = redis::cmd("THROTTLE")
            .arg(k)
            .arg(&["0.001", "10", "1000", "3"])
            .query(c)
            .expect("THROTTLE");
    }
    for _ in 0..3 {
        let _: Option<Vec<i64>> = redis::cmd("PERMIT")
            .arg(KEYS[2])
            .arg(&["100000", "5"])
            .query(c)
            .expect("PERMIT");
    }
}

/// DEBUG DIGEST-VALUE and PEXPIRETIME of every key: the state and its
/// absolute expiry, comparable across servers.
fn fingerprint(c: &mut redis::Connection) -> Vec<(String, i64)> {
    KEYS.iter()
        .map(|k| (digest_value(c, k), pexpiretime(c, k)))
        .collect()
}

#[test]
fn dump_payloads_restore_where_the_rdb_version_allows() {
    let all = versions();
    let servers: Vec<Node> = all.iter().map(Version::start).collect();
    let mut outcomes = Vec::new();
    for (w, writer) in all.iter().enumerate() {
        let mut wc = servers[w].conn();
        write_state(&mut wc);
        let want = fingerprint(&mut wc);
        let payloads: Vec<Vec<u8>> = KEYS
            .iter()
            .map(|k| common::dump(&mut wc, k).expect("DUMP"))
            .collect();
        let expiries: Vec<i64> = KEYS.iter().map(|k| pexpiretime(&mut wc, k)).collect();
        assert_eq!(rdb_version(&payloads[0]), writer.rdb, "{}", writer.label);
        for (r, reader) in all.iter().enumerate() {
            let mut rc = servers[r].conn();
            let restore = |rc: &mut redis::Connection| -> Result<(), redis::RedisError> {
                for ((k, p), at) in KEYS.iter().zip(&payloads).zip(&expiries) {
                    redis::cmd("RESTORE")
                        .arg(k)
                        .arg(at)
                        .arg(p.as_slice())
                        .arg("REPLACE")
                        .arg("ABSTTL")
                        .query::<()>(rc)?;
                }
                Ok(())
            };
            let result = restore(&mut rc);
            let what = format!(
                "DUMP from {} (RDB {}) RESTOREd on {}",
                writer.label, writer.rdb, reader.label
            );
            if reader.reads(writer.rdb) {
                result.unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_eq!(
                    fingerprint(&mut rc),
                    want,
                    "{what}: state or expiry differs"
                );
                outcomes.push(format!("{what}: same state and expiry"));
            } else {
                let e = result.expect_err(&what);
                assert!(
                    e.to_string()
                        .contains("DUMP payload version or checksum are wrong"),
                    "{what}: {e}"
                );
                outcomes.push(format!("{what}: refused ({e})"));
                if reader.relaxable {
                    // Valkey 9 reads a newer format when told to.
                    let _: () = redis::cmd("CONFIG")
                        .arg("SET")
                        .arg("rdb-version-check")
                        .arg("relaxed")
                        .query(&mut rc)
                        .expect("CONFIG SET");
                    let relaxed = restore(&mut rc);
                    let _: () = redis::cmd("CONFIG")
                        .arg("SET")
                        .arg("rdb-version-check")
                        .arg("strict")
                        .query(&mut rc)
                        .expect("CONFIG SET");
                    if writer.rdb < 80 {
                        relaxed.unwrap_or_else(|e| {
                            panic!("{what} with rdb-version-check relaxed: {e}")
                        });
                        assert_eq!(
                            fingerprint(&mut rc),
                            want,
                            "{what} (relaxed): state differs"
                        );
                        outcomes.push(format!(
                            "{what} with rdb-version-check relaxed: same state and expiry"
                        ));
                    }
                }
            }
            let _: i64 = redis::cmd("DEL").arg(&KEYS).query(&mut rc).expect("DEL");
        }
        let _: i64 = redis::cmd("DEL").arg(&KEYS).query(&mut wc).expect("DEL");
    }
    for o in outcomes {
        eprintln!("{o}");
    }
}

#[test]
fn rdb_files_load_where_the_rdb_version_allows() {
    let all = versions();
    for writer in &all {
        let w = writer.start();
        let mut wc = w.conn();
        write_state(&mut wc);
        let want = fingerprint(&mut wc);
        let _: () = redis::cmd("SAVE").query(&mut wc).expect("SAVE");
        let rdb = w.dir.join("dump.rdb");
        // "REDIS0011"; Valkey 9 writes "VALKEY080", a signature older
        // servers (Redis, Valkey 8) do not know at all.
        let magic = std::fs::read(&rdb).expect("read dump.rdb")[..9].to_vec();
        for reader in &all {
            let what = format!(
                "dump.rdb of {} (RDB {}) loaded by {}",
                writer.label, writer.rdb, reader.label
            );
            let dir = std::env::temp_dir().join(format!(
                "throttle-xv-{}-{}-{}",
                std::process::id(),
                writer.label,
                reader.label
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("dir");
            std::fs::copy(&rdb, dir.join("dump.rdb")).expect("copy dump.rdb");
            match Node::start(&reader.binary, Some(&dir), &[]) {
                Ok(s) => {
                    assert!(
                        reader.reads(writer.rdb),
                        "{what}: loaded, but the format says it cannot"
                    );
                    let mut c = s.conn();
                    assert_eq!(fingerprint(&mut c), want, "{what}: state or expiry differs");
                    eprintln!("{what}: same state and expiry");
                }
                Err(log) => {
                    assert!(!reader.reads(writer.rdb), "{what}: {log}");
                    let line = if magic.starts_with(b"VALKEY") {
                        "Wrong signature trying to load DB from file".to_string()
                    } else {
                        format!("Can't handle RDB format version {}", writer.rdb)
                    };
                    assert!(
                        log.contains(&line),
                        "{what}: refused, but not with '{line}': {log}"
                    );
                    eprintln!("{what}: refused ({line})");
                }
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

/// The RDB format a master sends a replica in a full sync. Observed:
/// Valkey 9 sends its replicas of other versions format 11 (it writes 80
/// only for Valkey 9 replicas), so Redis 7.2/7.4 and Valkey 8 replicate
/// from it; every other master sends the format it writes.
fn sync_format(master: &Version, replica: &Version) -> u16 {
    if master.rdb >= 80 && replica.rdb < 80 {
        11
    } else {
        master.rdb
    }
}

fn start_replica(v: &Version, master: &Node, args: &[&str]) -> Node {
    let port = master.port.to_string();
    let mut all = vec!["--replicaof", "127.0.0.1", &port];
    all.extend_from_slice(args);
    Node::start(&v.binary, None, &all).unwrap_or_else(|e| panic!("{}: {e}", v.label))
}

/// Waits for the full sync, makes more calls on the master, and checks the
/// replica ends with the same state and expiry.
fn assert_in_sync(mc: &mut redis::Connection, replica: &Node, what: &str) {
    let mut rc = replica.conn();
    wait_for(Duration::from_secs(10), what, || {
        let i = info(&mut rc, "replication");
        (i.get("master_link_status").map(String::as_str) == Some("up")
            && i.get("master_sync_in_progress").map(String::as_str) == Some("0"))
        .then_some(())
    });
    // Effects replicate too: more calls after the full sync.
    write_state(mc);
    let target: i64 = info(mc, "replication")["master_repl_offset"]
        .parse()
        .expect("offset");
    wait_for(Duration::from_secs(10), "the replica to catch up", || {
        let o: i64 = info(&mut rc, "replication")["slave_repl_offset"]
            .parse()
            .unwrap_or(-1);
        (o >= target).then_some(())
    });
    assert_eq!(
        fingerprint(&mut rc),
        fingerprint(mc),
        "{what}: state or expiry differs"
    );
    eprintln!("{what}: in sync, same state and expiry");
}

#[test]
fn replicas_of_other_versions_sync_where_the_rdb_version_allows() {
    let all = versions();
    for (m, master_v) in all.iter().enumerate() {
        for (r, replica_v) in all.iter().enumerate() {
            if m == r {
                continue;
            }
            let what = format!("{} replica of a {} master", replica_v.label, master_v.label);
            let master = master_v.start();
            let mut mc = master.conn();
            write_state(&mut mc);
            let expected = replica_v.reads(sync_format(master_v, replica_v));
            let replica = start_replica(replica_v, &master, &[]);
            if expected {
                assert_in_sync(&mut mc, &replica, &what);
            } else {
                let line = format!(
                    "Can't handle RDB format version {}",
                    sync_format(master_v, replica_v)
                );
                wait_for(
                    Duration::from_secs(10),
                    &format!("{what}: '{line}' in its log"),
                    || replica.log().contains(&line).then_some(()),
                );
                let i = info(&mut replica.conn(), "replication");
                assert_eq!(
                    i.get("master_link_status").map(String::as_str),
                    Some("down"),
                    "{what}"
                );
                eprintln!("{what}: refused ({line})");
                if replica_v.relaxable && sync_format(master_v, replica_v) < 80 {
                    // The way from Redis 7.4 to Valkey 9.
                    let relaxed =
                        start_replica(replica_v, &master, &["--rdb-version-check", "relaxed"]);
                    let what = format!("{what} with rdb-version-check relaxed");
                    assert_in_sync(&mut mc, &relaxed, &what);
                }
            }
        }
    }
}
