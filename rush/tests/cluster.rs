//! rush against a 3-master Redis Cluster on loopback (the module loaded on each node).

mod common;

use common::rush;
use rush::verify::Verdict;
use testkit::cluster::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_burst_admits_the_capacity_of_every_key() {
    let cluster = Cluster::start(false);
    let mut args: Vec<String> = vec!["redis".into(), "--cluster".into()];
    for url in cluster.urls() {
        args.push("-u".into());
        args.push(url);
    }
    // 30 keys spread over the three masters, 4 calls each, capacity 2 each.
    args.extend(
        "-c 20 -n 6 --keys 1..=30 --key-order sequential --verify -- THROTTLE rush:{run}:{n} 0.1 20 1"
            .split(' ')
            .map(String::from),
    );
    let r = rush(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let v = r.verification.as_ref().expect("verification");
    let outcome = (r.allowed, r.throttled, r.errors, v.verdict, v.keys);
    assert_eq!(outcome, (60, 60, 0, Verdict::Pass, 30), "{}", r.to_text());
    // The keys really were spread: every master holds some.
    for port in cluster.masters() {
        let size: i64 = redis::cmd("DBSIZE")
            .query(&mut cluster.conn(port))
            .expect("DBSIZE");
        assert!(size > 0, "master {port} got no key");
    }
}
