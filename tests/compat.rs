//! What differs between the servers the module supports, pinned down:
//! Redis 7.0 (Debian 12) and anything reporting Redis 7.2+ compatibility
//! (Redis 7.2+, Valkey 8/9, which reports 7.2.4).
//!
//! ```text
//! cargo test --release --test compat
//! REDIS_SERVER=$(scripts/valkey.sh) cargo test --release --test compat
//! ```

use std::time::Duration;

use testkit::Server;

/// `redis_version` (Valkey reports the Redis version it is compatible with).
fn redis_version(conn: &mut redis::Connection) -> (u32, u32) {
    let info: String = redis::cmd("INFO").arg("server").query(conn).expect("INFO");
    let v = info
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .expect("redis_version");
    let mut parts = v.trim().split('.').map(|p| p.parse().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
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

/// ACL categories from COMMAND INFO (`@write`, …) for one command.
fn command_categories(conn: &mut redis::Connection, name: &str) -> Vec<String> {
    let info: Vec<redis::Value> = redis::cmd("COMMAND")
        .arg("INFO")
        .arg(name)
        .query(conn)
        .expect("COMMAND INFO");
    let Some(redis::Value::Array(fields)) = info.first() else {
        panic!("COMMAND INFO {name}: {info:?}");
    };
    // name, arity, flags, first, last, step, ACL categories, ...
    redis::from_redis_value(fields[6].clone()).expect("categories")
}

#[test]
fn acl_category_where_the_server_has_module_categories() {
    let server = Server::start();
    let mut c = server.conn();
    let modern = redis_version(&mut c) >= (7, 2);
    let categories: Vec<String> = redis::cmd("ACL").arg("CAT").query(&mut c).expect("ACL CAT");
    if !modern {
        // Redis 7.0: no module categories; commands are granted by name.
        assert!(!categories.iter().any(|c| c == "throttle"));
        assert!(command_categories(&mut c, "THROTTLE").is_empty());
        testkit::wait_for(Duration::from_secs(2), "the log line", || {
            server
                .log()
                .contains("no module ACL categories")
                .then_some(())
        });
        let _: () = redis::cmd("ACL")
            .arg("SETUSER")
            .arg("app")
            .arg(&[
                "on",
                "nopass",
                "~*",
                "+throttle",
                "+throttle.peek",
                "+permit",
            ])
            .query(&mut c)
            .expect("ACL SETUSER by name");
    } else {
        assert!(
            categories.iter().any(|c| c == "throttle"),
            "categories {categories:?}"
        );
        let mut members: Vec<String> = redis::cmd("ACL")
            .arg("CAT")
            .arg("throttle")
            .query(&mut c)
            .expect("ACL CAT throttle");
        members.iter_mut().for_each(|n| *n = n.to_ascii_lowercase());
        members.sort();
        assert_eq!(
            members,
            module_commands(&mut c),
            "every command in @throttle"
        );
        for (name, implied) in [
            ("THROTTLE", ["@write", "@fast"]),
            ("THROTTLE.PEEK", ["@read", "@fast"]),
            ("THROTTLE.GET", ["@read", "@fast"]),
            ("THROTTLE.APPLY", ["@write", "@slow"]),
        ] {
            let cats = command_categories(&mut c, name);
            for want in implied.iter().chain(&["@throttle"]) {
                assert!(cats.iter().any(|c| c == want), "{name}: {cats:?}");
            }
        }
        let _: () = redis::cmd("ACL")
            .arg("SETUSER")
            .arg("app")
            .arg(&["on", "nopass", "~*", "+@throttle"])
            .query(&mut c)
            .expect("ACL SETUSER +@throttle");
    }
    // Either way the user can limit and nothing else.
    let mut app = server.conn();
    let _: () = redis::cmd("AUTH")
        .arg("app")
        .arg("x")
        .query(&mut app)
        .expect("AUTH app");
    let reply: Vec<i64> = redis::cmd("THROTTLE")
        .arg("acl:k")
        .arg(&["1", "1", "1"])
        .query(&mut app)
        .expect("THROTTLE as app");
    assert_eq!(reply[0], 1);
    let err = redis::cmd("GET")
        .arg("acl:k")
        .query::<redis::Value>(&mut app)
        .expect_err("GET is not granted");
    assert_eq!(err.code(), Some("NOPERM"), "{err}");
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
