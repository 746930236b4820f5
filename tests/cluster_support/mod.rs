//! A throw-away Redis Cluster for tests: 3 masters + 3 replicas on free
//! loopback ports, the module loaded on every node, dropped (killed, its
//! directory removed) with the [`Cluster`] value.
//!
//! Nodes are started through `testkit` (so `REDIS_SERVER` selects another
//! binary, e.g. Valkey) and the cluster is formed with cluster commands
//! (ADDSLOTSRANGE, SET-CONFIG-EPOCH, MEET, REPLICATE) rather than
//! `redis-cli --cluster create`, so no client binary has to match the server.
//! The node timeout is 2 s, so a killed master is replaced in about 4 s.
//!
//! Besides the cluster itself this module has what the tests share: the
//! key-slot function, topology queries, per-node command counters, and a
//! load generator that keeps a cluster-aware client calling while a test
//! reshards or fails over, counting what it was told.

#![allow(dead_code)] // each test uses a different subset

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redis::Value;
use redis::cluster::{ClusterClient, ClusterConnection};
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use testkit::{Server, free_port, wait_for};

pub use testkit::cluster::SLOTS;
/// Cluster node timeout: failure detection and failover take a few of these.
pub const NODE_TIMEOUT_MS: u64 = 2000;

// ---------------------------------------------------------------- key slots

pub use testkit::cluster::{NodeInfo, info_field, key_slot, try_conn};

/// The cluster as one node sees it.
#[derive(Clone, Debug)]
pub struct Topology {
    pub nodes: Vec<NodeInfo>,
}

impl Topology {
    pub fn parse(text: &str) -> Topology {
        Topology {
            nodes: testkit::cluster::parse_nodes(text),
        }
    }

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
        let mut m = BTreeMap::new();
        for n in self
            .nodes
            .iter()
            .filter(|n| n.master && !n.slots.is_empty())
        {
            let mut s = n.slots.clone();
            s.sort_unstable();
            m.insert(n.port, s);
        }
        m
    }

    /// 3 healthy masters covering every slot, each with one replica.
    fn healthy(&self) -> bool {
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
        self.nodes.len() == 6
            && self.nodes.iter().all(|n| !n.failed)
            && masters.len() == 3
            && covered == u32::from(SLOTS)
            && masters.iter().all(|m| self.replicas_of(m.port).len() == 1)
    }
}

// ------------------------------------------------------------------ cluster

/// One cluster node: its ports, directory and (while it runs) its process.
pub struct Node {
    pub port: u16,
    pub bus_port: u16,
    dir: PathBuf,
    server: Option<Server>,
}

/// A running 3 + 3 cluster. Dropping it kills every node.
pub struct Cluster {
    pub nodes: Vec<Node>,
    root: PathBuf,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

fn node_args(bus_port: u16) -> Vec<String> {
    [
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
        "--cluster-node-timeout",
        &NODE_TIMEOUT_MS.to_string(),
        "--cluster-port",
        &bus_port.to_string(),
        // The tests kill masters on purpose; the last replica must still
        // be allowed to take over however long it was cut off.
        "--cluster-replica-validity-factor",
        "0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn start_node(port: u16, bus_port: u16, dir: &PathBuf) -> Server {
    Server::builder()
        .port(port)
        .dir(dir)
        .args(node_args(bus_port))
        .start()
}

/// A direct (non-cluster) connection to one node, with a read timeout.
pub fn node_conn(port: u16) -> redis::Connection {
    let c = redis::Client::open(format!("redis://127.0.0.1:{port}/")).expect("url");
    let conn = c
        .get_connection_with_timeout(Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("connect to node {port}: {e}"));
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    conn
}

/// A field of CLUSTER INFO on one node.
pub fn cluster_info_field(port: u16, field: &str) -> Option<String> {
    info_field(port, "cluster", field)
}

impl Cluster {
    /// Starts 6 nodes and forms the cluster: node i < 3 is a master with a
    /// third of the slots, node i + 3 its replica. Returns once every node
    /// agrees and every replica is in sync.
    pub fn start() -> Cluster {
        let root = std::env::temp_dir().join(format!(
            "throttle-cluster-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&root);
        let mut cluster = Cluster {
            nodes: Vec::new(),
            root: root.clone(),
        };
        for i in 0..6 {
            let (port, bus_port) = (free_port(), free_port());
            let dir = root.join(format!("node{i}"));
            std::fs::create_dir_all(&dir).expect("node dir");
            let server = start_node(port, bus_port, &dir);
            cluster.nodes.push(Node {
                port,
                bus_port,
                dir,
                server: Some(server),
            });
        }
        let ids: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| {
                redis::cmd("CLUSTER")
                    .arg("MYID")
                    .query(&mut node_conn(n.port))
                    .expect("CLUSTER MYID")
            })
            .collect();
        let ranges = [(0u16, 5460u16), (5461, 10922), (10923, 16383)];
        for (i, node) in cluster.nodes.iter().enumerate() {
            let mut c = node_conn(node.port);
            let _: () = redis::cmd("CLUSTER")
                .arg("SET-CONFIG-EPOCH")
                .arg(i + 1)
                .query(&mut c)
                .expect("SET-CONFIG-EPOCH");
            if let Some(&(a, b)) = ranges.get(i) {
                let _: () = redis::cmd("CLUSTER")
                    .arg("ADDSLOTSRANGE")
                    .arg(a)
                    .arg(b)
                    .query(&mut c)
                    .expect("ADDSLOTSRANGE");
            }
        }
        let mut first = node_conn(cluster.nodes[0].port);
        for node in &cluster.nodes[1..] {
            let _: () = redis::cmd("CLUSTER")
                .arg("MEET")
                .arg("127.0.0.1")
                .arg(node.port)
                .arg(node.bus_port)
                .query(&mut first)
                .expect("CLUSTER MEET");
        }
        // Every node must know every other before a replica can name its master.
        for node in &cluster.nodes {
            wait_for(Duration::from_secs(20), "nodes to meet", || {
                let t = cluster.view_of(node.port)?;
                (t.nodes.len() == 6 && t.nodes.iter().all(|n| !n.failed)).then_some(())
            });
        }
        for i in 3..6 {
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

    /// Waits until all 6 nodes run, every node reports cluster_state:ok,
    /// all agree on the slot map, every master has one replica, and every
    /// replica's link to its master is up and synced.
    pub fn wait_healthy(&self) {
        let ports = self.ports();
        wait_for(Duration::from_secs(40), "a healthy cluster", || {
            let views: Vec<Topology> = ports
                .iter()
                .map(|&p| self.view_of(p))
                .collect::<Option<_>>()?;
            let map = views[0].slot_map();
            if !views.iter().all(|v| v.healthy() && v.slot_map() == map) {
                return None;
            }
            for &p in &ports {
                if cluster_info_field(p, "cluster_state")? != "ok" {
                    return None;
                }
            }
            for r in views[0].nodes.iter().filter(|n| !n.master) {
                if info_field(r.port, "replication", "master_link_status")? != "up"
                    || info_field(r.port, "replication", "master_sync_in_progress")? != "0"
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
            let role = info_field(port, "replication", "role")?;
            if role != "master" {
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
    pub fn client_builder(&self) -> redis::cluster::ClusterClientBuilder {
        let urls: Vec<String> = self
            .ports()
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}/"))
            .collect();
        ClusterClient::builder(urls)
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

    /// Per-command call counts on every node (INFO commandstats).
    pub fn command_calls(&self) -> BTreeMap<u16, BTreeMap<String, u64>> {
        self.command_stats("calls")
    }

    /// A per-command counter of INFO commandstats (`calls`, `rejected_calls`
    /// — which counts MOVED/ASK redirects —, `failed_calls`) on every node.
    pub fn command_stats(&self, field: &str) -> BTreeMap<u16, BTreeMap<String, u64>> {
        self.live_ports()
            .into_iter()
            .map(|p| {
                let mut c = node_conn(p);
                let text: String = redis::cmd("INFO")
                    .arg("commandstats")
                    .query(&mut c)
                    .expect("INFO commandstats");
                (p, parse_commandstats(&text, field))
            })
            .collect()
    }

    /// Tails of the node logs (for failure messages).
    fn log_tails(&self) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            let log = std::fs::read_to_string(n.dir.join("server.log")).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(15)..].join("\n");
            out.push_str(&format!("--- node {} log tail:\n{tail}\n", n.port));
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
    for r in ranges {
        let (Some(Value::Int(a)), Some(Value::Int(b))) = (r.first(), r.get(1)) else {
            continue;
        };
        if (*a..=*b).contains(&i64::from(slot)) {
            let ports = r[2..]
                .iter()
                .skip(1) // the master
                .filter_map(|node| match node {
                    Value::Array(n) => match n.get(1) {
                        Some(Value::Int(p)) => u16::try_from(*p).ok(),
                        _ => None,
                    },
                    _ => None,
                })
                .collect();
            return Some(ports);
        }
    }
    None
}

/// One counter per command from INFO commandstats
/// (`cmdstat_<name>:calls=N,...,rejected_calls=N,failed_calls=N`), by
/// lower-case command name.
pub fn parse_commandstats(text: &str, field: &str) -> BTreeMap<String, u64> {
    let prefix = format!("{field}=");
    text.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .split(',')
                .find_map(|kv| kv.strip_prefix(prefix.as_str()))?
                .parse()
                .ok()?;
            Some((name.to_ascii_lowercase(), calls))
        })
        .collect()
}

/// Routes `cmd` to the node serving `key`'s slot: its master, or its replica.
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
    let _: () = redis::cmd("READONLY").query(&mut c).expect("READONLY");
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

// --------------------------------------------------------------------- load

/// Accounting keys: a bucket so large and so slow to refill (capacity 10^6,
/// 0.0001 token/s) that `limit - remaining` counts exactly the calls that
/// were admitted, for as long as a test runs.
pub const BIG_BUCKET: [&str; 3] = ["0.0001", "10000000", "1000"];
pub const BIG_LIMIT: i64 = 1_000_000;
/// PERMIT spacing under load: one permit per 10 ms, up to 50 waiting.
pub const LOAD_INTERVAL_MS: i64 = 10;

/// What the load generator was told, per key.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    /// THROTTLE replies with allowed = 1.
    pub allowed: u64,
    /// Of those, how many a later `WAIT 1` on the same connection confirmed
    /// as replicated (before any error that might have reset it).
    pub acked: u64,
    /// `valid_at_ms` of every PERMIT granted.
    pub valid_at: Vec<i64>,
}

#[derive(Debug, Default)]
pub struct LoadReport {
    pub calls: u64,
    pub errors: u64,
    pub first_errors: Vec<String>,
    pub tallies: BTreeMap<String, Tally>,
    /// Longest stretch without a successful call, per worker (ms).
    pub longest_gap_ms: u128,
}

impl LoadReport {
    fn merge(&mut self, other: LoadReport) {
        self.calls += other.calls;
        self.errors += other.errors;
        for e in other.first_errors {
            if self.first_errors.len() < 10 {
                self.first_errors.push(e);
            }
        }
        for (k, t) in other.tallies {
            let e = self.tallies.entry(k).or_default();
            e.allowed += t.allowed;
            e.acked += t.acked;
            e.valid_at.extend(t.valid_at);
        }
        self.longest_gap_ms = self.longest_gap_ms.max(other.longest_gap_ms);
    }
}

/// Cluster-aware clients calling THROTTLE and THROTTLE.ALL (on accounting
/// keys) and PERMIT in a loop until stopped; each worker owns its keys, so per-key counts
/// are exact. With `wait_tag`, a worker sends `WAIT 1 200` to the master of
/// that tag's slot every few calls and counts what it confirms.
pub struct Load {
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<LoadReport>>,
}

pub struct WorkerKeys {
    pub buckets: Vec<String>,
    /// Also call THROTTLE.ALL on the first two buckets (same slot).
    pub all_pair: bool,
    pub permits: Vec<String>,
    /// Send WAIT to the master of this key's slot (all `buckets` must
    /// share its slot for the count to mean anything).
    pub wait_on: Option<String>,
}

impl Load {
    pub fn start(cluster: &Cluster, workers: Vec<WorkerKeys>, max_run: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let handles = workers
            .into_iter()
            .map(|keys| {
                let client = cluster.client_builder().build().expect("cluster client");
                let stop = stop.clone();
                std::thread::spawn(move || run_worker(client, keys, &stop, max_run))
            })
            .collect();
        Load {
            stop,
            workers: handles,
        }
    }

    pub fn stop(self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        let mut report = LoadReport::default();
        for w in self.workers {
            report.merge(w.join().expect("load worker panicked"));
        }
        report
    }
}

fn connect(client: &ClusterClient) -> Option<ClusterConnection> {
    client.get_connection().ok()
}

fn run_worker(
    client: ClusterClient,
    keys: WorkerKeys,
    stop: &AtomicBool,
    max_run: Duration,
) -> LoadReport {
    let mut report = LoadReport::default();
    let started = Instant::now();
    let mut last_ok = Instant::now();
    let mut conn = connect(&client);
    let mut unacked: BTreeMap<String, u64> = BTreeMap::new();
    let mut round: u64 = 0;
    let note = |report: &mut LoadReport, e: &redis::RedisError| {
        report.errors += 1;
        if report.first_errors.len() < 10 {
            report.first_errors.push(e.to_string());
        }
    };
    while !stop.load(Ordering::Relaxed) && started.elapsed() < max_run {
        round += 1;
        let Some(c) = conn.as_mut() else {
            std::thread::sleep(Duration::from_millis(100));
            conn = connect(&client);
            continue;
        };
        let mut failed = false;
        for k in &keys.buckets {
            let r: redis::RedisResult<Vec<i64>> =
                redis::cmd("THROTTLE").arg(k).arg(&BIG_BUCKET[..]).query(c);
            report.calls += 1;
            match r {
                Ok(reply) => {
                    last_ok = Instant::now();
                    if reply.first() == Some(&1) {
                        report.tallies.entry(k.clone()).or_default().allowed += 1;
                        *unacked.entry(k.clone()).or_default() += 1;
                    }
                }
                Err(e) => {
                    note(&mut report, &e);
                    failed = true;
                }
            }
        }
        if keys.all_pair && keys.buckets.len() >= 2 {
            let pair = &keys.buckets[..2];
            let r: redis::RedisResult<Value> = redis::cmd("THROTTLE.ALL")
                .arg(1)
                .arg(&pair[0])
                .arg(&BIG_BUCKET[..])
                .arg(&pair[1])
                .arg(&BIG_BUCKET[..])
                .query(c);
            report.calls += 1;
            match r {
                Ok(Value::Array(reply)) => {
                    last_ok = Instant::now();
                    if reply.first() == Some(&Value::Int(1)) {
                        for k in pair {
                            report.tallies.entry(k.clone()).or_default().allowed += 1;
                            *unacked.entry(k.clone()).or_default() += 1;
                        }
                    }
                }
                Ok(other) => panic!("THROTTLE.ALL replied {other:?}"),
                Err(e) => {
                    note(&mut report, &e);
                    failed = true;
                }
            }
        }
        for k in &keys.permits {
            let r: redis::RedisResult<Option<Vec<i64>>> = redis::cmd("PERMIT")
                .arg(k)
                .arg(LOAD_INTERVAL_MS)
                .arg(50)
                .query(c);
            report.calls += 1;
            match r {
                Ok(reply) => {
                    last_ok = Instant::now();
                    if let Some(v) = reply {
                        let t = report.tallies.entry(k.clone()).or_default();
                        t.valid_at.push(v[1]);
                    }
                }
                Err(e) => {
                    note(&mut report, &e);
                    failed = true;
                }
            }
        }
        if failed {
            // A write whose connection failed can never be confirmed by a
            // WAIT on a new connection: it stays unacknowledged.
            unacked.clear();
            // Rebuild the client so it learns the current topology (the
            // synchronous client does not refresh it on connection errors).
            conn = None;
            std::thread::sleep(Duration::from_millis(50));
        } else if let Some(tag) = &keys.wait_on
            && round % 10 == 0
        {
            let w: redis::RedisResult<i64> = c
                .route_command(redis::cmd("WAIT").arg(1).arg(200), route_to(tag, false))
                .and_then(|v| redis::from_redis_value(v).map_err(Into::into));
            match w {
                Ok(n) if n >= 1 => {
                    for (k, n) in std::mem::take(&mut unacked) {
                        report.tallies.entry(k).or_default().acked += n;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    note(&mut report, &e);
                    unacked.clear();
                    conn = None;
                }
            }
        }
        report.longest_gap_ms = report.longest_gap_ms.max(last_ok.elapsed().as_millis());
    }
    report
}

/// Tokens consumed from an accounting key, read on `port` (THROTTLE.PEEK).
pub fn consumed(port: u16, key: &str) -> i64 {
    let mut c = node_conn(port);
    let reply: Vec<i64> = redis::cmd("THROTTLE.PEEK")
        .arg(key)
        .arg(&BIG_BUCKET[..])
        .arg(0) // cost 0: `remaining` is what the bucket holds now
        .query(&mut c)
        .expect("THROTTLE.PEEK");
    assert_eq!(reply[4], BIG_LIMIT, "accounting bucket limit");
    BIG_LIMIT - reply[1]
}

/// Checks PERMIT's spacing rule over granted `valid_at`s (ms; reserved
/// slots are rounded up and immediate ones down, hence the 1 ms slack).
pub fn assert_spacing(key: &str, valid_at: &[i64]) {
    let mut v = valid_at.to_vec();
    v.sort_unstable();
    for w in v.windows(2) {
        assert!(
            w[1] - w[0] >= LOAD_INTERVAL_MS - 1,
            "{key}: permits {} and {} closer than {LOAD_INTERVAL_MS} ms",
            w[0],
            w[1]
        );
    }
}
