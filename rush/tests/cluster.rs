//! rush against a 3-master Redis Cluster on loopback (the module loaded on each node).

mod common;

use std::process::Command;
use std::time::Duration;

use common::rush;
use rush::verify::Verdict;

/// Starts three cluster-enabled servers and joins them (no replicas).
fn start_cluster() -> Vec<testkit::Server> {
    let nodes: Vec<testkit::Server> = (0..3)
        .map(|_| {
            testkit::Server::builder()
                .args([
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                ])
                .start()
        })
        .collect();
    let mut cmd = Command::new("redis-cli");
    cmd.arg("--cluster").arg("create");
    for n in &nodes {
        cmd.arg(n.addr());
    }
    let out = cmd
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .expect("redis-cli --cluster create (is redis-tools installed?)");
    assert!(
        out.status.success(),
        "cluster create failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    for n in &nodes {
        testkit::wait_for(Duration::from_secs(10), "cluster_state:ok", || {
            let info: String = redis::cmd("CLUSTER")
                .arg("INFO")
                .query(&mut n.conn())
                .ok()?;
            info.contains("cluster_state:ok").then_some(())
        });
    }
    nodes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_burst_admits_the_capacity_of_every_key() {
    let nodes = start_cluster();
    let mut args: Vec<String> = vec!["redis".into(), "--cluster".into()];
    for n in &nodes {
        args.push("-u".into());
        args.push(n.url());
    }
    // 30 keys spread over the three masters, 4 calls each, capacity 2 each.
    args.extend(
        [
            "-c",
            "20",
            "-n",
            "6",
            "--keys",
            "1..=30",
            "--key-order",
            "sequential",
            "--verify",
            "--",
            "THROTTLE",
            "rush:{run}:{n}",
            "0.1",
            "20",
            "1",
        ]
        .map(String::from),
    );
    let r = rush(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert_eq!(
        (r.allowed, r.throttled, r.errors),
        (60, 60, 0),
        "{}",
        r.to_text()
    );
    let v = r.verification.as_ref().expect("verification");
    assert_eq!((v.verdict, v.keys), (Verdict::Pass, 30), "{}", r.to_text());
    // The keys really were spread: every master holds some.
    for n in &nodes {
        let size: i64 = redis::cmd("DBSIZE").query(&mut n.conn()).expect("DBSIZE");
        assert!(size > 0, "a master got no key");
    }
}
