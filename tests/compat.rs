//! What differs between the servers the module supports, pinned down per
//! server: Redis 7.0 (Debian 12), Redis 7.2, Redis 7.4, Valkey 8 and
//! Valkey 9. Each test asks the server what it is (INFO server) and checks
//! what that version does. `scripts/test.sh` runs this suite on every one:
//!
//! ```text
//! cargo test --release --test compat
//! REDIS_SERVER=$(scripts/servers.sh bin redis-7.2.6) cargo test --release --test compat
//! ```
//!
//! What RDB files and DUMP payloads of one version do on another is in
//! `tests/crossversion.rs` (it starts servers of different versions).

mod common;

use std::time::{Duration, Instant};

use common::{Pair, conn_with_timeout, info, permit, throttle};
use testkit::Server;

/// Which server this is: Valkey reports `server_name:valkey` and its own
/// `valkey_version` (its `redis_version` is the Redis version it is
/// compatible with: 7.2.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Identity {
    valkey: bool,
    version: (u32, u32, u32),
}

impl Identity {
    fn of(conn: &mut redis::Connection) -> Identity {
        let i = info(conn, "server");
        let valkey = i.get("server_name").map(String::as_str) == Some("valkey");
        let field = if valkey {
            "valkey_version"
        } else {
            "redis_version"
        };
        let v = i
            .get(field)
            .unwrap_or_else(|| panic!("INFO server has no {field}"));
        let mut parts = v.trim().split('.').map(|p| p.parse().unwrap_or(0));
        let mut next = || parts.next().unwrap_or(0);
        Identity {
            valkey,
            version: (next(), next(), next()),
        }
    }

    fn at_least(&self, redis: (u32, u32), valkey: (u32, u32)) -> bool {
        let (maj, min, _) = self.version;
        (maj, min) >= if self.valkey { valkey } else { redis }
    }

    /// `RedisModule_SetCommandACLCategories`: Redis 7.2+, every Valkey.
    fn has_command_acl_categories(&self) -> bool {
        self.at_least((7, 2), (7, 2))
    }

    /// `RedisModule_AddACLCategory` (a category of the module's own):
    /// Redis 7.4+, Valkey 8+. Redis 7.2 has only the standard categories.
    fn has_module_acl_category(&self) -> bool {
        self.at_least((7, 4), (8, 0))
    }

    /// `ACL CAT <category>` lists module commands: Valkey 9+ and Redis 8+.
    fn acl_cat_lists_module_commands(&self) -> bool {
        self.at_least((8, 0), (9, 0))
    }

    /// `RedisModule_Microseconds`: Redis 7.2+, every Valkey.
    fn has_microseconds_api(&self) -> bool {
        self.at_least((7, 2), (7, 2))
    }
}

fn module_commands(conn: &mut redis::Connection) -> Vec<String> {
    let mut names: Vec<String> = redis::cmd("COMMAND")
        .arg("LIST")
        .arg("FILTERBY")
        .arg("MODULE")
        .arg("throttle")
        .query(conn)
        .expect("COMMAND LIST");
    names.iter_mut().for_each(|n| *n = n.to_ascii_lowercase());
    names.sort();
    names
}

/// The fields of COMMAND INFO for one command.
fn command_info(conn: &mut redis::Connection, name: &str) -> Vec<redis::Value> {
    let info: Vec<redis::Value> = redis::cmd("COMMAND")
        .arg("INFO")
        .arg(name)
        .query(conn)
        .expect("COMMAND INFO");
    let Some(redis::Value::Array(fields)) = info.first() else {
        panic!("COMMAND INFO {name}: {info:?}");
    };
    fields.clone()
}

/// ACL categories from COMMAND INFO (`@write`, …) for one command.
fn command_categories(conn: &mut redis::Connection, name: &str) -> Vec<String> {
    // name, arity, flags, first, last, step, ACL categories, ...
    redis::from_redis_value(command_info(conn, name)[6].clone()).expect("categories")
}

/// The standard categories a command's flags imply.
fn implied(name: &str) -> [&'static str; 2] {
    match name {
        "THROTTLE.PEEK" | "THROTTLE.GET" => ["@read", "@fast"],
        "THROTTLE.APPLY" => ["@write", "@slow"],
        _ => ["@write", "@fast"],
    }
}

const SAMPLE_COMMANDS: [&str; 4] = [
    "THROTTLE",
    "THROTTLE.PEEK",
    "THROTTLE.GET",
    "THROTTLE.APPLY",
];

/// A grant by name, where the server has no `@throttle` category.
const BY_NAME: &[&str] = &[
    "on",
    "nopass",
    "~*",
    "+throttle",
    "+throttle.peek",
    "+permit",
];

#[test]
fn acl_category_where_the_server_has_module_categories() {
    let server = Server::start();
    let mut c = server.conn();
    let id = Identity::of(&mut c);
    let categories: Vec<String> = redis::cmd("ACL").arg("CAT").query(&mut c).expect("ACL CAT");
    let grant: &[&str] = if id.has_module_acl_category() {
        // Redis 7.4+, Valkey 8+: `@throttle` holds every command of the module.
        assert!(
            categories.iter().any(|c| c == "throttle"),
            "{id:?}: categories {categories:?}"
        );
        // `ACL CAT throttle` lists the commands on Valkey 9; Redis 7.4 and
        // Valkey 8 skip module commands in that listing (acl.c,
        // aclCatWithFlags: `if (cmd->flags & CMD_MODULE) continue;`)
        // although the category grants them (checked below).
        let mut members: Vec<String> = redis::cmd("ACL")
            .arg("CAT")
            .arg("throttle")
            .query(&mut c)
            .expect("ACL CAT throttle");
        members.iter_mut().for_each(|n| *n = n.to_ascii_lowercase());
        members.sort();
        if id.acl_cat_lists_module_commands() {
            assert_eq!(
                members,
                module_commands(&mut c),
                "{id:?}: every command in @throttle"
            );
        } else {
            assert_eq!(
                members,
                Vec::<String>::new(),
                "{id:?}: ACL CAT skips module commands"
            );
        }
        for name in SAMPLE_COMMANDS {
            let cats = command_categories(&mut c, name);
            for want in implied(name).iter().chain(&["@throttle"]) {
                assert!(cats.iter().any(|c| c == want), "{id:?} {name}: {cats:?}");
            }
        }
        &["on", "nopass", "~*", "+@throttle"]
    } else if id.has_command_acl_categories() {
        // Redis 7.2: commands can join the standard categories, but a
        // module cannot add one of its own (AddACLCategory is 7.4+).
        assert!(
            !categories.iter().any(|c| c == "throttle"),
            "{id:?}: {categories:?}"
        );
        for name in SAMPLE_COMMANDS {
            let cats = command_categories(&mut c, name);
            for want in implied(name) {
                assert!(
                    cats.iter().any(|c| c == want),
                    "{id:?} {name}: {cats:?} lacks {want} (SetCommandACLCategories exists on 7.2)"
                );
            }
        }
        BY_NAME
    } else {
        // Redis 7.0: no module categories at all; commands are granted by name.
        assert!(!categories.iter().any(|c| c == "throttle"));
        assert!(command_categories(&mut c, "THROTTLE").is_empty());
        testkit::wait_for(Duration::from_secs(2), "the log line", || {
            server
                .log()
                .contains("no module ACL categories")
                .then_some(())
        });
        BY_NAME
    };
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("app")
        .arg(grant)
        .query(&mut c)
        .expect("ACL SETUSER");
    // Either way the user can limit and nothing else.
    let mut app = server.conn();
    let _: () = redis::cmd("AUTH")
        .arg("app")
        .arg("x")
        .query(&mut app)
        .expect("AUTH app");
    assert_eq!(throttle(&mut app, "acl:k", &["1", "1", "1"])[0], 1);
    let err = redis::cmd("GET")
        .arg("acl:k")
        .query::<redis::Value>(&mut app)
        .expect_err("GET is not granted");
    assert_eq!(err.code(), Some("NOPERM"), "{err}");
}

#[test]
fn the_microseconds_api_is_where_the_version_says() {
    // The module reads `RedisModule_Microseconds` where it exists (7.2+,
    // Valkey) and the host's wall clock on 7.0; both are the clock TIME
    // reads (next test). This pins which servers have the API, through the
    // symbol table of the binary under test, so a new server version that
    // drops or adds it shows up here.
    let server = Server::start();
    let mut c = server.conn();
    let id = Identity::of(&mut c);
    let binary = std::fs::read(which(&testkit::server_binary())).expect("read the server binary");
    let has = |sym: &str| binary.windows(sym.len()).any(|w| w == sym.as_bytes());
    assert_eq!(
        has("RedisModule_Microseconds"),
        id.has_microseconds_api(),
        "{id:?}: RedisModule_Microseconds"
    );
    assert_eq!(
        has("RedisModule_SetCommandACLCategories"),
        id.has_command_acl_categories(),
        "{id:?}: RedisModule_SetCommandACLCategories"
    );
    assert_eq!(
        has("RedisModule_AddACLCategory"),
        id.has_module_acl_category(),
        "{id:?}: RedisModule_AddACLCategory"
    );
}

/// A binary's path: as given when it has a slash, else found on PATH.
fn which(binary: &str) -> std::path::PathBuf {
    if binary.contains('/') {
        return binary.into();
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(binary))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{binary} is not on PATH"))
}

#[test]
fn the_module_reads_the_servers_clock() {
    // An immediate PERMIT replies the module's `now` in ms: it lies between
    // two readings of the server's TIME.
    let server = Server::start();
    let mut c = server.conn();
    let time_ms = |c: &mut redis::Connection| -> i64 {
        let (s, us): (i64, i64) = redis::cmd("TIME").query(c).expect("TIME");
        s * 1000 + us / 1000
    };
    for i in 0..20 {
        let before = time_ms(&mut c);
        let reply: Vec<i64> = redis::cmd("PERMIT")
            .arg(format!("clock:{i}"))
            .arg(1000)
            .arg(0)
            .query(&mut c)
            .expect("PERMIT");
        let after = time_ms(&mut c);
        assert_eq!(reply[0], 0, "immediate");
        assert!(
            before <= reply[1] && reply[1] <= after,
            "module now {} outside server TIME [{before}, {after}]",
            reply[1]
        );
    }
}

/// COMMAND GETKEYSANDFLAGS: each key with its flags.
type KeysAndFlags = Vec<(String, Vec<String>)>;

/// Every key spec and key flag, as the server reports them. The module
/// registers explicit key specs (`RedisModule_SetCommandInfo`, present
/// since 7.0), so every version answers the same.
#[test]
fn key_specs_and_key_flags_are_the_same_on_every_server() {
    let server = Server::start();
    let mut c = server.conn();
    let id = Identity::of(&mut c);
    let keys_and_flags = |c: &mut redis::Connection, args: &[&str]| -> KeysAndFlags {
        redis::cmd("COMMAND")
            .arg("GETKEYSANDFLAGS")
            .arg(args)
            .query(c)
            .unwrap_or_else(|e| panic!("{id:?}: COMMAND GETKEYSANDFLAGS {args:?}: {e}"))
    };
    let rw = || vec!["RW".to_string(), "access".into(), "update".into()];
    let ro = || vec!["RO".to_string(), "access".into()];
    let cases: Vec<(Vec<&str>, KeysAndFlags)> = vec![
        (
            vec!["THROTTLE", "k", "1", "1", "1"],
            vec![("k".into(), rw())],
        ),
        (
            vec!["THROTTLE", "k", "1", "1", "1", "2", "WAIT", "5"],
            vec![("k".into(), rw())],
        ),
        (
            vec!["THROTTLE.PEEK", "k", "1", "1", "1"],
            vec![("k".into(), ro())],
        ),
        (vec!["THROTTLE.GET", "k"], vec![("k".into(), ro())]),
        (
            vec!["THROTTLE.SET", "k", "RPS", "1"],
            vec![("k".into(), rw())],
        ),
        (vec!["THROTTLE.RESET", "k"], vec![("k".into(), rw())]),
        (vec!["THROTTLE.REFUND", "k", "1"], vec![("k".into(), rw())]),
        (
            vec!["PERMIT", "p", "10", "1", "BLOCK", "5"],
            vec![("p".into(), rw())],
        ),
        (
            vec!["THROTTLE.ALL", "1", "a", "1", "1", "1", "b", "1", "1", "1"],
            vec![("a".into(), rw()), ("b".into(), rw())],
        ),
    ];
    for (args, want) in cases {
        assert_eq!(keys_and_flags(&mut c, &args), want, "{id:?}: {args:?}");
    }
    // COMMAND INFO: (first, last, step) as cluster clients that predate key
    // specs read them, and one key spec per command.
    for (name, positions) in [
        ("THROTTLE", (1, 1, 1)),
        ("THROTTLE.PEEK", (1, 1, 1)),
        ("PERMIT", (1, 1, 1)),
        ("THROTTLE.ALL", (2, -1, 4)),
    ] {
        let f = command_info(&mut c, name);
        let got: (i64, i64, i64) = (
            redis::from_redis_value(f[3].clone()).expect("first"),
            redis::from_redis_value(f[4].clone()).expect("last"),
            redis::from_redis_value(f[5].clone()).expect("step"),
        );
        assert_eq!(got, positions, "{id:?}: {name} key positions");
        let specs = match &f[8] {
            redis::Value::Array(a) => a.len(),
            other => panic!("{id:?}: {name} key specs {other:?}"),
        };
        assert_eq!(specs, 1, "{id:?}: {name} has one key spec");
    }
}

/// Clients held by PERMIT … BLOCK when their server stops being a master
/// (REPLICAOF): every version answers them at once with `-UNBLOCKED`, and
/// the demoted server survives the held slots' timers.
#[test]
fn blocked_clients_are_unblocked_when_their_master_becomes_a_replica() {
    let old = Server::start();
    let new_master = Server::start();
    let mut c = old.conn();
    let id = Identity::of(&mut c);
    let first = permit(&mut c, "demote:p", &["1500", "5"]).expect("a permit");
    assert_eq!(first[0], 0);
    let held: Vec<_> = (0..3)
        .map(|_| {
            let mut conn = conn_with_timeout(&old, 20);
            std::thread::spawn(move || {
                let started = Instant::now();
                let r = redis::cmd("PERMIT")
                    .arg("demote:p")
                    .arg(&["1500", "5", "BLOCK", "10000"])
                    .query::<Option<Vec<i64>>>(&mut conn);
                (r, started.elapsed())
            })
        })
        .collect();
    testkit::wait_for(Duration::from_secs(10), "3 blocked clients", || {
        (info(&mut c, "clients")["blocked_clients"] == "3").then_some(())
    });
    let _: () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(new_master.port())
        .query(&mut c)
        .expect("REPLICAOF");
    for h in held {
        let (r, took) = h.join().expect("blocked client");
        let e = r.expect_err("a demoted master does not answer at the slot");
        assert_eq!(e.code(), Some("UNBLOCKED"), "{id:?}: {e}");
        assert!(
            took < Duration::from_millis(1400),
            "{id:?}: held {took:?}, past the first slot"
        );
    }
    // The held slots were due up to 4.5 s after the first permit: their
    // timers fire on the demoted server, which must survive them.
    std::thread::sleep(Duration::from_millis(4700));
    let mut c = old.conn();
    let _: () = redis::cmd("PING")
        .query(&mut c)
        .expect("the demoted server answers");
    assert_eq!(info(&mut c, "clients")["blocked_clients"], "0");
}

/// A cluster of one master (every slot) and its replica: the least a
/// planned failover needs.
fn master_and_replica_cluster() -> (Server, Server) {
    let node = || {
        Server::builder()
            .args(testkit::cluster::node_args(
                testkit::free_port(),
                testkit::cluster::NODE_TIMEOUT_MS,
            ))
            .start()
    };
    let (master, replica) = (node(), node());
    let mut m = master.conn();
    let mut r = replica.conn();
    let _: () = redis::cmd("CLUSTER")
        .arg(&["ADDSLOTSRANGE", "0", "16383"])
        .query(&mut m)
        .expect("ADDSLOTSRANGE");
    let master_id: String = redis::cmd("CLUSTER")
        .arg("MYID")
        .query(&mut m)
        .expect("MYID");
    let port = master.port().to_string();
    let bus_port: String = redis::cmd("CONFIG")
        .arg(&["GET", "cluster-port"])
        .query::<Vec<String>>(&mut m)
        .expect("CONFIG GET")[1]
        .clone();
    let _: () = redis::cmd("CLUSTER")
        .arg(&["MEET", "127.0.0.1", &port, &bus_port])
        .query(&mut r)
        .expect("MEET");
    testkit::wait_for(
        Duration::from_secs(10),
        "the replica to know the master",
        || {
            let nodes: String = redis::cmd("CLUSTER").arg("NODES").query(&mut r).ok()?;
            nodes.contains(&master_id).then_some(())
        },
    );
    testkit::wait_for(Duration::from_secs(10), "CLUSTER REPLICATE", || {
        redis::cmd("CLUSTER")
            .arg(&["REPLICATE", &master_id])
            .query::<()>(&mut r)
            .ok()
    });
    testkit::wait_for(
        Duration::from_secs(20),
        "the cluster and the replica link",
        || {
            let ok = |c: &mut redis::Connection| {
                redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query::<String>(c)
                    .is_ok_and(|i| i.contains("cluster_state:ok"))
            };
            let linked = info(&mut r, "replication")
                .get("master_link_status")
                .map(String::as_str)
                == Some("up");
            (ok(&mut m) && ok(&mut r) && linked).then_some(())
        },
    );
    (master, replica)
}

/// Clients held by PERMIT … BLOCK through a planned cluster failover
/// (CLUSTER FAILOVER on the replica). Redis 7.0–7.4 and Valkey 8 answer
/// `-UNBLOCKED` at once; Valkey 9 keeps them and answers at their slot.
#[test]
fn blocked_clients_through_a_planned_cluster_failover() {
    let (master, replica) = master_and_replica_cluster();
    let mut c = master.conn();
    let id = Identity::of(&mut c);
    // The held client's slot is 5 s away, so the failover (under a second
    // on a quiet machine, longer on a loaded one) comes well before it.
    let first = permit(&mut c, "fo:p", &["5000", "5"]).expect("a permit");
    let held = {
        let mut conn = conn_with_timeout(&master, 20);
        std::thread::spawn(move || {
            redis::cmd("PERMIT")
                .arg("fo:p")
                .arg(&["5000", "5", "BLOCK", "10000"])
                .query::<Option<Vec<i64>>>(&mut conn)
        })
    };
    testkit::wait_for(Duration::from_secs(10), "a blocked client", || {
        (info(&mut c, "clients")["blocked_clients"] == "1").then_some(())
    });
    let _: () = redis::cmd("CLUSTER")
        .arg("FAILOVER")
        .query(&mut replica.conn())
        .expect("CLUSTER FAILOVER");
    let reply = held.join().expect("blocked client");
    if id.valkey && id.version >= (9, 0, 0) {
        let r = reply
            .unwrap_or_else(|e| panic!("{id:?}: {e}"))
            .expect("a permit");
        assert_eq!(r[0], 0, "{id:?}: answered at its slot: {r:?}");
        assert!(r[1] >= first[1] + 5000, "{id:?}: {r:?} after {first:?}");
    } else {
        let e = reply.expect_err("answered at once");
        assert_eq!(e.code(), Some("UNBLOCKED"), "{id:?}: {e}");
    }
    let mut rc = replica.conn();
    testkit::wait_for(Duration::from_secs(20), "the replica to take over", || {
        (info(&mut rc, "replication").get("role").map(String::as_str) == Some("master"))
            .then_some(())
    });
}

/// A limiter whose expiry has passed reads as missing (a full bucket) on a
/// replica before its master has deleted it, on every version: the replica
/// never serves a stale bucket.
#[test]
fn an_expired_limiter_reads_as_missing_on_a_replica_before_the_master_deletes_it() {
    let pair = Pair::start();
    let mut m = pair.master.conn();
    let id = Identity::of(&mut m);
    let _: () = redis::cmd("DEBUG")
        .arg("SET-ACTIVE-EXPIRE")
        .arg(0)
        .query(&mut m)
        .expect("DEBUG SET-ACTIVE-EXPIRE 0");
    assert_eq!(
        throttle(&mut m, "exp:k", &["1", "10", "1"]),
        [1, 9, 0, 1000, 10]
    );
    let _: Option<Vec<i64>> = redis::cmd("PERMIT")
        .arg("exp:p")
        .arg(&["100000", "5"])
        .query(&mut m)
        .expect("PERMIT");
    for k in ["exp:k", "exp:p"] {
        let _: i64 = redis::cmd("PEXPIRE")
            .arg(k)
            .arg(100)
            .query(&mut m)
            .expect("PEXPIRE");
    }
    pair.sync();
    std::thread::sleep(Duration::from_millis(200));
    let mut r = pair.replica.conn();
    assert_eq!(
        info(&mut r, "keyspace")
            .get("db0")
            .map(|s| s.starts_with("keys=2")),
        Some(true),
        "{id:?}: the replica still holds both keys"
    );
    let exists: i64 = redis::cmd("EXISTS")
        .arg(&["exp:k", "exp:p"])
        .query(&mut r)
        .expect("EXISTS");
    assert_eq!(exists, 0, "{id:?}: expired keys are missing on the replica");
    let get: Option<redis::Value> = redis::cmd("THROTTLE.GET")
        .arg("exp:k")
        .query(&mut r)
        .expect("GET");
    assert_eq!(get, None, "{id:?}: THROTTLE.GET of an expired limiter");
    let peek: Vec<i64> = redis::cmd("THROTTLE.PEEK")
        .arg("exp:k")
        .arg(&["1", "10", "1"])
        .query(&mut r)
        .expect("PEEK");
    assert_eq!(peek, vec![1, 9, 0, 1000, 10], "{id:?}: a full bucket");
    // The master deletes it on access and the replica follows.
    let get: Option<redis::Value> = redis::cmd("THROTTLE.GET")
        .arg("exp:k")
        .query(&mut m)
        .expect("GET");
    assert_eq!(get, None);
    pair.sync();
    let _: i64 = redis::cmd("EXISTS")
        .arg("exp:p")
        .query(&mut m)
        .expect("EXISTS");
    pair.sync();
    assert_eq!(
        info(&mut r, "keyspace").get("db0"),
        None,
        "{id:?}: deleted on the replica too"
    );
}
