//! The one Redis Cluster harness of the workspace (the root `cluster` suite
//! and rush's cluster suites use it): a throw-away cluster of 3 masters,
//! with or without one replica each, on free loopback ports, the module
//! loaded on every node, killed (and its directories removed) when the
//! [`Cluster`] value drops.
//!
//! Nodes are started through [`Server`] (so `REDIS_SERVER` selects another
//! binary, e.g. Valkey) and the cluster is formed with cluster commands
//! (ADDSLOTSRANGE, SET-CONFIG-EPOCH, MEET, REPLICATE) rather than
//! `redis-cli --cluster create`, so no client binary has to match the
//! server. The node timeout is 2 s, so a killed master is replaced in a few
//! seconds.
//!
//! Besides the cluster: key slots (CRC16 with hash tags, as Redis computes
//! them), `CLUSTER NODES` parsing, short-timeout probes of one node,
//! per-node command counters, and [`load`], a load generator that keeps
//! cluster clients calling while a test reshards or fails over.

pub mod load;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use redis::Value;
use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConnection};
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};

use crate::{Server, free_port, wait_for};

/// Number of hash slots.
pub const SLOTS: u16 = 16384;

/// CRC16-CCITT (XMODEM), the checksum Redis Cluster hashes keys with.
fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The slot of `key`, honouring `{hash tags}` as Redis does: the part
/// between the first `{` and the first `}` after it, if not empty.
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    crc16(hashed) % SLOTS
}

/// One line of CLUSTER NODES.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    pub id: String,
    pub port: u16,
    pub master: bool,
    pub master_id: Option<String>,
    pub failed: bool,
    pub slots: Vec<(u16, u16)>,
}

/// Parses CLUSTER NODES.
pub fn parse_nodes(text: &str) -> Vec<NodeInfo> {
    let mut nodes = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 {
            continue;
        }
        let addr = f[1].split(['@', ',']).next().unwrap_or("");
        let port = addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let flags: Vec<&str> = f[2].split(',').collect();
        let slots = f[8..]
            .iter()
            .filter(|s| !s.starts_with('['))
            .filter_map(|s| {
                let (a, b) = s.split_once('-').unwrap_or((s, s));
                Some((a.parse().ok()?, b.parse().ok()?))
            })
            .collect();
        nodes.push(NodeInfo {
            id: f[0].to_string(),
            port,
            master: flags.contains(&"master"),
            master_id: (f[3] != "-").then(|| f[3].to_string()),
            failed: flags
                .iter()
                .any(|fl| matches!(*fl, "fail" | "fail?" | "handshake" | "noaddr")),
            slots,
        });
    }
    nodes
}

/// A connection to one node with short timeouts, or `None` if it does not
/// answer (a killed or paused node).
pub fn try_conn(port: u16) -> Option<redis::Connection> {
    let c = redis::Client::open(format!("redis://127.0.0.1:{port}/")).ok()?;
    let conn = c
        .get_connection_with_timeout(Duration::from_millis(500))
        .ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    Some(conn)
}

/// A `field:value` line of `INFO section` on one node, or of `CLUSTER INFO`
/// when `section` is `"cluster"`.
pub fn info_field(port: u16, section: &str, field: &str) -> Option<String> {
    let mut c = try_conn(port)?;
    let text: String = if section == "cluster" {
        redis::cmd("CLUSTER").arg("INFO").query(&mut c).ok()?
    } else {
        redis::cmd("INFO").arg(section).query(&mut c).ok()?
    };
    text.lines().find_map(|l| {
        l.strip_prefix(field)
            .and_then(|r| r.strip_prefix(':'))
            .map(|v| v.trim().to_string())
    })
}

/// Cluster node timeout: failure detection and failover take a few of these.
pub const NODE_TIMEOUT_MS: u64 = 2000;

/// The cluster as one node sees it.
#[derive(Clone, Debug)]
pub struct Topology {
    pub nodes: Vec<NodeInfo>,
}

impl Topology {
    pub fn parse(text: &str) -> Topology {
        Topology {
            nodes: parse_nodes(text),
        }
    }

    /// The live master serving `slot`.
    pub fn owner(&self, slot: u16) -> Option<&NodeInfo> {
        self.nodes
            .iter()
            .find(|n| n.master && !n.failed && n.slots.iter().any(|&(a, b)| a <= slot && slot <= b))
    }

    pub fn by_port(&self, port: u16) -> Option<&NodeInfo> {
        self.nodes.iter().find(|n| n.port == port)
    }

    pub fn replicas_of(&self, master_port: u16) -> Vec<&NodeInfo> {
        let Some(m) = self.by_port(master_port) else {
            return Vec::new();
        };
        self.nodes
            .iter()
            .filter(|n| !n.master && n.master_id.as_deref() == Some(m.id.as_str()))
            .collect()
    }

    /// Slot ranges per master port, for comparing two nodes' views.
    fn slot_map(&self) -> BTreeMap<u16, Vec<(u16, u16)>> {
        self.nodes
            .iter()
            .filter(|n| n.master && !n.slots.is_empty())
            .map(|n| {
                let mut s = n.slots.clone();
                s.sort_unstable();
                (n.port, s)
            })
            .collect()
    }

    /// `nodes` nodes, none failed, 3 masters covering every slot, each with
    /// `replicas_each` replicas.
    fn healthy(&self, nodes: usize, replicas_each: usize) -> bool {
        let masters: Vec<_> = self
            .nodes
            .iter()
            .filter(|n| n.master && !n.slots.is_empty())
            .collect();
        let covered: u32 = masters
            .iter()
            .flat_map(|m| m.slots.iter())
            .map(|&(a, b)| u32::from(b - a) + 1)
            .sum();
        self.nodes.len() == nodes
            && self.nodes.iter().all(|n| !n.failed)
            && masters.len() == 3
            && covered == u32::from(SLOTS)
            && masters
                .iter()
                .all(|m| self.replicas_of(m.port).len() == replicas_each)
    }
}

/// One cluster node: its ports, directory and (while it runs) its process.
pub struct Node {
    pub port: u16,
    pub bus_port: u16,
    dir: PathBuf,
    server: Option<Server>,
}

/// A running cluster of 3 masters (and 3 replicas, if asked). Dropping it
/// kills every node and removes their directories.
pub struct Cluster {
    pub nodes: Vec<Node>,
    replicas: bool,
    root: PathBuf,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// The arguments that make a server a cluster node with its bus on
/// `bus_port` and the given node timeout.
pub fn node_args(bus_port: u16, node_timeout_ms: u64) -> Vec<String> {
    [
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
        "--cluster-node-timeout",
        &node_timeout_ms.to_string(),
        "--cluster-port",
        &bus_port.to_string(),
    ]
    .map(String::from)
    .to_vec()
}

fn node_builder(port: u16, bus_port: u16, dir: &PathBuf) -> crate::ServerBuilder {
    Server::builder()
        .port(port)
        .dir(dir)
        .args(node_args(bus_port, NODE_TIMEOUT_MS))
        // The tests kill masters on purpose; the last replica must still
        // be allowed to take over however long it was cut off.
        .args(["--cluster-replica-validity-factor", "0"])
}

/// A node restarted on its own port and bus port.
fn start_node(port: u16, bus_port: u16, dir: &PathBuf) -> Server {
    node_builder(port, bus_port, dir).start()
}

/// A new node on free ports: a port free a moment ago can be taken before
/// the server binds it (by another test's server or a client's ephemeral
/// port), so a failed start tries again on other ports, in a clean dir.
fn start_new_node(dir: &PathBuf) -> (u16, u16, Server) {
    let mut last_err = String::new();
    for _attempt in 0..5 {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).expect("node dir");
        let (port, bus_port) = (free_port(), free_port());
        match node_builder(port, bus_port, dir).try_start_once() {
            Ok(server) => return (port, bus_port, server),
            Err(e) => last_err = e,
        }
    }
    panic!("a cluster node did not start: {last_err}");
}

/// A direct (non-cluster) connection to one node, with a 10 s read timeout.
pub fn node_conn(port: u16) -> redis::Connection {
    let c = redis::Client::open(format!("redis://127.0.0.1:{port}/")).expect("url");
    let conn = c
        .get_connection_with_timeout(Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("connect to node {port}: {e}"));
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    conn
}

fn cluster_cmd<T: redis::FromRedisValue>(port: u16, args: &[&str]) -> T {
    redis::cmd("CLUSTER")
        .arg(args)
        .query(&mut node_conn(port))
        .unwrap_or_else(|e| panic!("CLUSTER {args:?} on {port}: {e}"))
}

impl Cluster {
    /// Starts 3 masters (node i has a third of the slots) and, with
    /// `replicas`, 3 more nodes, node i + 3 a replica of node i. Returns once
    /// every node agrees on the slot map, reports `cluster_state:ok`, and
    /// every replica is in sync.
    pub fn start(replicas: bool) -> Cluster {
        let root = std::env::temp_dir().join(format!(
            "throttle-cluster-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&root);
        let mut cluster = Cluster {
            nodes: Vec::new(),
            replicas,
            root: root.clone(),
        };
        for i in 0..if replicas { 6 } else { 3 } {
            let dir = root.join(format!("node{i}"));
            let (port, bus_port, server) = start_new_node(&dir);
            cluster.nodes.push(Node {
                port,
                bus_port,
                dir,
                server: Some(server),
            });
        }
        let ids: Vec<String> = cluster
            .ports()
            .iter()
            .map(|&p| cluster_cmd(p, &["MYID"]))
            .collect();
        let ranges = [("0", "5460"), ("5461", "10922"), ("10923", "16383")];
        for (i, port) in cluster.ports().into_iter().enumerate() {
            let epoch = (i + 1).to_string();
            let () = cluster_cmd(port, &["SET-CONFIG-EPOCH", &epoch]);
            if let Some(&(a, b)) = ranges.get(i) {
                let () = cluster_cmd(port, &["ADDSLOTSRANGE", a, b]);
            }
        }
        let first = cluster.nodes[0].port;
        for node in &cluster.nodes[1..] {
            let (port, bus) = (node.port.to_string(), node.bus_port.to_string());
            let () = cluster_cmd(first, &["MEET", "127.0.0.1", &port, &bus]);
        }
        // Every node must know every other before a replica can name its master.
        let count = cluster.nodes.len();
        for port in cluster.ports() {
            wait_for(Duration::from_secs(20), "nodes to meet", || {
                let t = cluster.view_of(port)?;
                (t.nodes.len() == count && t.nodes.iter().all(|n| !n.failed)).then_some(())
            });
        }
        for i in 3..count {
            let port = cluster.nodes[i].port;
            let master_id = ids[i - 3].clone();
            wait_for(Duration::from_secs(10), "CLUSTER REPLICATE", || {
                redis::cmd("CLUSTER")
                    .arg("REPLICATE")
                    .arg(&master_id)
                    .query::<()>(&mut node_conn(port))
                    .ok()
            });
        }
        cluster.wait_healthy();
        cluster
    }

    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// Seed URLs of every node.
    pub fn urls(&self) -> Vec<String> {
        self.ports()
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}/"))
            .collect()
    }

    fn node_mut(&mut self, port: u16) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("no node on port {port}"))
    }

    pub fn is_alive(&mut self, port: u16) -> bool {
        self.node_mut(port)
            .server
            .as_mut()
            .is_some_and(|s| s.is_alive())
    }

    /// `kill -9` the node.
    pub fn kill(&mut self, port: u16) {
        if let Some(mut s) = self.node_mut(port).server.take() {
            s.kill();
        }
    }

    /// Starts a killed node again on its port, with its nodes.conf: it
    /// rejoins the cluster (a failed-over master comes back as a replica).
    pub fn restart(&mut self, port: u16) {
        let node = self.node_mut(port);
        assert!(node.server.is_none(), "node {port} still runs");
        let server = start_node(node.port, node.bus_port, &node.dir);
        node.server = Some(server);
    }

    /// A direct connection to the node on `port`.
    pub fn conn(&self, port: u16) -> redis::Connection {
        node_conn(port)
    }

    /// CLUSTER NODES as `port` sees it, if it answers.
    pub fn view_of(&self, port: u16) -> Option<Topology> {
        let mut c = try_conn(port)?;
        let text: String = redis::cmd("CLUSTER").arg("NODES").query(&mut c).ok()?;
        Some(Topology::parse(&text))
    }

    fn live_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.server.is_some())
            .map(|n| n.port)
            .collect()
    }

    /// The topology as the first live node that answers sees it.
    pub fn topology(&self) -> Topology {
        wait_for(Duration::from_secs(10), "a node to answer", || {
            self.live_ports().into_iter().find_map(|p| self.view_of(p))
        })
    }

    /// Port of the master that serves `slot` (as the cluster sees it now).
    pub fn owner(&self, slot: u16) -> u16 {
        wait_for(Duration::from_secs(10), "an owner for the slot", || {
            self.topology().owner(slot).map(|n| n.port)
        })
    }

    pub fn owner_of_key(&self, key: &str) -> u16 {
        self.owner(key_slot(key.as_bytes()))
    }

    /// The replica of the master on `master_port`.
    pub fn replica_of(&self, master_port: u16) -> u16 {
        let t = self.topology();
        let r = t.replicas_of(master_port);
        assert_eq!(r.len(), 1, "master {master_port} has replicas {r:?}");
        r[0].port
    }

    /// Ports of the masters that serve slots, sorted.
    pub fn masters(&self) -> Vec<u16> {
        let mut m: Vec<u16> = self
            .topology()
            .nodes
            .iter()
            .filter(|n| n.master && !n.failed && !n.slots.is_empty())
            .map(|n| n.port)
            .collect();
        m.sort_unstable();
        m
    }

    /// The slot ranges of the master on `port`.
    pub fn slots_of(&self, port: u16) -> Vec<(u16, u16)> {
        self.topology()
            .by_port(port)
            .map(|n| n.slots.clone())
            .unwrap_or_default()
    }

    pub fn node_id(&self, port: u16) -> String {
        self.topology()
            .by_port(port)
            .map(|n| n.id.clone())
            .unwrap_or_else(|| panic!("no node id for {port}"))
    }

    /// A hash tag `{prefix<n>}` whose slot `master_port` serves.
    pub fn tag_on(&self, master_port: u16, prefix: &str) -> String {
        let t = self.topology();
        (0..100_000)
            .map(|n| format!("{{{prefix}{n}}}"))
            .find(|tag| t.owner(key_slot(tag.as_bytes())).map(|n| n.port) == Some(master_port))
            .unwrap_or_else(|| panic!("no tag served by {master_port}"))
    }

    /// Waits until every node runs and reports cluster_state:ok, all agree
    /// on the slot map, every master has its replica, and every replica's
    /// link to its master is up, synced, and caught up with its offset.
    pub fn wait_healthy(&self) {
        let ports = self.ports();
        let replicas_each = usize::from(self.replicas);
        wait_for(Duration::from_secs(40), "a healthy cluster", || {
            let views: Vec<Topology> = ports
                .iter()
                .map(|&p| self.view_of(p))
                .collect::<Option<_>>()?;
            let map = views[0].slot_map();
            if !views
                .iter()
                .all(|v| v.healthy(ports.len(), replicas_each) && v.slot_map() == map)
            {
                return None;
            }
            for &p in &ports {
                if info_field(p, "cluster", "cluster_state")? != "ok" {
                    return None;
                }
            }
            for r in views[0].nodes.iter().filter(|n| !n.master) {
                if info_field(r.port, "replication", "master_link_status")? != "up"
                    || info_field(r.port, "replication", "master_sync_in_progress")? != "0"
                {
                    return None;
                }
                // Caught up: the replica has everything its master had a
                // moment before (a write right after start must reach it).
                let m = views[0]
                    .nodes
                    .iter()
                    .find(|m| Some(&m.id) == r.master_id.as_ref())?;
                let offset = |port, field| -> Option<i64> {
                    info_field(port, "replication", field)?.parse().ok()
                };
                let target = offset(m.port, "master_repl_offset")?;
                if info_field(r.port, "replication", "master_port")? != m.port.to_string()
                    || offset(r.port, "slave_repl_offset")? < target
                {
                    return None;
                }
            }
            Some(())
        });
    }

    /// Waits until `port` is a master serving slots, in every live node's view.
    pub fn wait_master(&self, port: u16, timeout: Duration) {
        wait_for(timeout, "the replica to become master", || {
            if info_field(port, "replication", "role")? != "master" {
                return None;
            }
            self.live_ports()
                .iter()
                .all(|&p| {
                    self.view_of(p).is_some_and(|t| {
                        t.by_port(port)
                            .is_some_and(|n| n.master && !n.slots.is_empty())
                    })
                })
                .then_some(())
        });
    }

    /// Waits until every node's CLUSTER SLOTS lists `replica` for `slot`.
    /// (Redis 7.0 leaves a replica out until it has replicated something,
    /// so clients reading from replicas route to the master before that.)
    pub fn wait_replica_listed(&self, slot: u16, replica: u16) {
        wait_for(
            Duration::from_secs(20),
            "CLUSTER SLOTS to list the replica",
            || {
                self.live_ports()
                    .iter()
                    .all(|&p| slots_replicas(p, slot).is_some_and(|r| r.contains(&replica)))
                    .then_some(())
            },
        );
    }

    /// A cluster client that knows every node, with quick retries.
    pub fn client_builder(&self) -> ClusterClientBuilder {
        ClusterClient::builder(self.urls())
            .retries(20)
            .min_retry_wait(20)
            .max_retry_wait(400)
            .connection_timeout(Duration::from_secs(1))
            .response_timeout(Duration::from_secs(5))
    }

    pub fn client(&self) -> ClusterConnection {
        self.client_builder()
            .build()
            .expect("cluster client")
            .get_connection()
            .expect("cluster connection")
    }

    /// Per-command call counts on every live node (INFO commandstats).
    pub fn command_calls(&self) -> BTreeMap<u16, BTreeMap<String, u64>> {
        self.command_stats("calls")
    }

    /// A per-command counter of INFO commandstats (`calls`, `rejected_calls`
    /// — which counts MOVED/ASK redirects —, `failed_calls`) on every live node.
    pub fn command_stats(&self, field: &str) -> BTreeMap<u16, BTreeMap<String, u64>> {
        self.live_ports()
            .into_iter()
            .map(|p| {
                let text: String = redis::cmd("INFO")
                    .arg("commandstats")
                    .query(&mut node_conn(p))
                    .expect("INFO commandstats");
                (p, parse_commandstats(&text, field))
            })
            .collect()
    }

    /// The logs of the running nodes so far, by port.
    pub fn logs(&self) -> Vec<(u16, String)> {
        self.nodes
            .iter()
            .map(|n| {
                let log = std::fs::read_to_string(n.dir.join("server.log")).unwrap_or_default();
                (n.port, log)
            })
            .collect()
    }

    /// Tails of the node logs (for failure messages).
    pub fn log_tails(&self) -> String {
        let mut out = String::new();
        for (port, log) in self.logs() {
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(15)..].join("\n");
            out.push_str(&format!("--- node {port} log tail:\n{tail}\n"));
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_tails());
        }
        for n in &mut self.nodes {
            if let Some(mut s) = n.server.take() {
                s.kill();
            }
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The replica ports CLUSTER SLOTS on `port` lists for `slot`.
fn slots_replicas(port: u16, slot: u16) -> Option<Vec<u16>> {
    let mut c = try_conn(port)?;
    let ranges: Vec<Vec<Value>> = redis::cmd("CLUSTER").arg("SLOTS").query(&mut c).ok()?;
    ranges.into_iter().find_map(|r| {
        let (Some(Value::Int(a)), Some(Value::Int(b))) = (r.first(), r.get(1)) else {
            return None;
        };
        (*a..=*b).contains(&i64::from(slot)).then(|| {
            r[2..]
                .iter()
                .skip(1) // the master
                .filter_map(|node| match node {
                    Value::Array(n) => match n.get(1) {
                        Some(Value::Int(p)) => u16::try_from(*p).ok(),
                        _ => None,
                    },
                    _ => None,
                })
                .collect()
        })
    })
}

/// One counter per command from INFO commandstats
/// (`cmdstat_<name>:calls=N,...,rejected_calls=N,failed_calls=N`), by
/// lower-case command name.
pub fn parse_commandstats(text: &str, field: &str) -> BTreeMap<String, u64> {
    let prefix = format!("{field}=");
    text.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let n = rest
                .split(',')
                .find_map(|kv| kv.strip_prefix(prefix.as_str()))?
                .parse()
                .ok()?;
            Some((name.to_ascii_lowercase(), n))
        })
        .collect()
}

/// Routes a command to the node serving `key`'s slot: its master, or its replica.
pub fn route_to(key: &str, replica: bool) -> RoutingInfo {
    let addr = if replica {
        SlotAddr::ReplicaRequired
    } else {
        SlotAddr::Master
    };
    RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::with_key(
        key, addr,
    )))
}

/// A connection that may read on a replica (READONLY; no effect on masters).
pub fn read_conn(port: u16) -> redis::Connection {
    let mut c = node_conn(port);
    let () = redis::cmd("READONLY").query(&mut c).expect("READONLY");
    c
}

/// DUMP of `key` on one node, master or replica (None when missing).
pub fn dump(port: u16, key: &str) -> Option<Vec<u8>> {
    redis::cmd("DUMP")
        .arg(key)
        .query(&mut read_conn(port))
        .expect("DUMP")
}

/// PEXPIRETIME of `key` on one node (absolute Unix ms; -1 none, -2 missing).
pub fn pexpiretime(port: u16, key: &str) -> i64 {
    redis::cmd("PEXPIRETIME")
        .arg(key)
        .query(&mut read_conn(port))
        .expect("PEXPIRETIME")
}
