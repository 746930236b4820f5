//! A throw-away Redis Cluster on loopback for rush's tests: 3 masters, with
//! or without one replica each, the module loaded on every node (through
//! `testkit`), formed with `redis-cli --cluster create`. Dropping the
//! [`Cluster`] kills every node.

use std::process::Command;
use std::time::Duration;

/// Cluster node timeout: a killed master is replaced after a few of these.
pub const NODE_TIMEOUT_MS: u64 = 2000;

pub use testkit::cluster::{NodeInfo, info_field, parse_nodes, try_conn};

/// The slot of `key`, honouring a `{hash tag}` as Redis does.
pub fn key_slot(key: &str) -> u16 {
    testkit::cluster::key_slot(key.as_bytes())
}

/// CLUSTER NODES as `port` sees it, if it answers.
pub fn view_of(port: u16) -> Option<Vec<NodeInfo>> {
    let mut c = try_conn(port)?;
    let text: String = redis::cmd("CLUSTER").arg("NODES").query(&mut c).ok()?;
    Some(parse_nodes(&text))
}

/// A running cluster; dropping it kills every node.
pub struct Cluster {
    /// `None` once killed.
    pub nodes: Vec<Option<testkit::Server>>,
    pub ports: Vec<u16>,
    pub replicas: bool,
}

impl Cluster {
    /// Starts 3 masters (and, with `replicas`, 3 more nodes, one replica of
    /// each master) with `cluster-node-timeout 2000`, and waits until every
    /// node reports `cluster_state:ok` and every replica is in sync.
    /// (`testkit` already starts every server with `repl-diskless-sync-delay 0`.)
    pub fn start(replicas: bool) -> Cluster {
        let count = if replicas { 6 } else { 3 };
        let timeout = NODE_TIMEOUT_MS.to_string();
        let nodes: Vec<testkit::Server> = (0..count)
            .map(|_| {
                testkit::Server::builder()
                    .args([
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        timeout.as_str(),
                        // A replica may take over however long it was cut off.
                        "--cluster-replica-validity-factor",
                        "0",
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
            .args(["--cluster-replicas", if replicas { "1" } else { "0" }])
            .arg("--cluster-yes")
            .output()
            .expect("redis-cli --cluster create (is redis-tools installed?)");
        assert!(
            out.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = Cluster {
            ports: nodes.iter().map(testkit::Server::port).collect(),
            nodes: nodes.into_iter().map(Some).collect(),
            replicas,
        };
        cluster.wait_healthy();
        cluster
    }

    /// Seed URLs of every node.
    pub fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}/"))
            .collect()
    }

    /// Waits until every node agrees on 3 masters covering all slots (each
    /// with one replica, if the cluster has replicas), reports
    /// `cluster_state:ok`, and every replica's link is up and synced.
    pub fn wait_healthy(&self) {
        testkit::wait_for(Duration::from_secs(40), "a healthy cluster", || {
            for &p in &self.ports {
                let view = view_of(p)?;
                let masters: Vec<&NodeInfo> = view
                    .iter()
                    .filter(|n| n.master && !n.slots.is_empty())
                    .collect();
                let covered: u32 = masters
                    .iter()
                    .flat_map(|m| m.slots.iter())
                    .map(|&(a, b)| u32::from(b - a) + 1)
                    .sum();
                let replicas = view.iter().filter(|n| !n.master).count();
                if view.len() != self.ports.len()
                    || view.iter().any(|n| n.failed)
                    || masters.len() != 3
                    || covered != 16384
                    || replicas != if self.replicas { 3 } else { 0 }
                    || info_field(p, "cluster", "cluster_state")? != "ok"
                {
                    return None;
                }
            }
            let view = view_of(self.ports[0])?;
            for r in view.iter().filter(|n| !n.master) {
                if info_field(r.port, "replication", "master_link_status")? != "up"
                    || info_field(r.port, "replication", "master_sync_in_progress")? != "0"
                {
                    return None;
                }
            }
            Some(())
        });
    }

    /// The cluster as the first live node that answers sees it.
    pub fn view(&self) -> Vec<NodeInfo> {
        testkit::wait_for(Duration::from_secs(10), "a node to answer", || {
            self.nodes.iter().flatten().find_map(|n| view_of(n.port()))
        })
    }

    /// Ports of the masters that serve slots, sorted.
    pub fn masters(&self) -> Vec<u16> {
        let mut m: Vec<u16> = self
            .view()
            .iter()
            .filter(|n| n.master && !n.failed && !n.slots.is_empty())
            .map(|n| n.port)
            .collect();
        m.sort_unstable();
        m
    }

    /// The slot ranges of the master on `port`.
    pub fn slots_of(&self, port: u16) -> Vec<(u16, u16)> {
        self.view()
            .into_iter()
            .find(|n| n.port == port)
            .map(|n| n.slots)
            .unwrap_or_default()
    }

    /// The port of the (one) replica of the master on `port`.
    pub fn replica_of(&self, port: u16) -> u16 {
        let view = self.view();
        let id = &view
            .iter()
            .find(|n| n.port == port)
            .expect("master in CLUSTER NODES")
            .id;
        let r: Vec<u16> = view
            .iter()
            .filter(|n| !n.master && n.master_id.as_ref() == Some(id))
            .map(|n| n.port)
            .collect();
        assert_eq!(r.len(), 1, "replicas of {port}: {r:?}");
        r[0]
    }

    /// `kill -9` the node on `port`.
    pub fn kill(&mut self, port: u16) {
        let i = self
            .ports
            .iter()
            .position(|&p| p == port)
            .expect("a node of this cluster");
        if let Some(mut s) = self.nodes[i].take() {
            s.kill();
        }
    }

    /// A direct connection to the node on `port`.
    pub fn conn(&self, port: u16) -> redis::Connection {
        try_conn(port).unwrap_or_else(|| panic!("node {port} does not answer"))
    }

    /// Tails of every node's log (for failure messages).
    pub fn log_tails(&self) -> String {
        let mut out = String::new();
        for n in self.nodes.iter().flatten() {
            let log = n.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(12)..].join("\n");
            out.push_str(&format!("--- node {} log tail:\n{tail}\n", n.port()));
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_tails());
        }
    }
}
