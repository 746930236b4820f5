//! Redis targets: one command, with templated arguments, on one connection per worker.
//!
//! A single server (`redis://host:port/db`) uses a multiplexed async
//! connection; `--cluster` uses redis-rs's async cluster connection, which
//! routes each call by its key (the first argument for THROTTLE, PERMIT and
//! most commands; EVAL/EVALSHA by their first key). Response timeouts are set
//! explicitly: the redis-rs default (500 ms) would cut blocking calls short.
//!
//! # Failover
//!
//! The cluster client follows `MOVED`/`ASK` and retries `TRYAGAIN` and
//! `CLUSTERDOWN` itself, but only a few times and with short waits
//! ([`CLUSTER_RETRIES`], 10–100 ms): a call to a master that is down fails
//! in tens of milliseconds and is counted as an error, instead of holding its
//! worker for the whole response timeout (redis-rs's default: 16 retries
//! from 1.28 s apart) while the other masters sit idle. Later calls try
//! again. The client repairs its node connections and re-reads the slot map
//! on its own (after `MOVED` or a lost connection), so once a replica has
//! taken over, calls reach it (`tests/cluster_failover.rs`). As a bounded
//! safety net, a worker whose cluster connection has answered nothing but
//! errors for [`REBUILD_AFTER`] builds a new one from the seed URLs (so at
//! most once per [`REBUILD_AFTER`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::cluster::ClusterClient;
use redis::{AsyncConnectionConfig, Value};

use crate::classify::{Classified, RedisRule};
use crate::template::{Template, Vars};

/// Retries of one call inside the cluster client (redirects, `TRYAGAIN`,
/// `CLUSTERDOWN`, a lost node connection), each after 10–100 ms.
pub const CLUSTER_RETRIES: u32 = 3;
/// A cluster connection that has answered nothing but errors for this long
/// is rebuilt from the seed URLs.
pub const REBUILD_AFTER: Duration = Duration::from_secs(3);

/// What to send, where, and how to read the reply.
#[derive(Clone, Debug)]
pub struct RedisTarget {
    pub urls: Vec<String>,
    pub cluster: bool,
    /// The command name and its arguments, as templates.
    pub args: Vec<Template>,
    /// The rule, already resolved from `auto`.
    pub rule: RedisRule,
    pub response_timeout: Duration,
    pub connect_timeout: Duration,
}

// Held once per run behind an Arc: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
enum Client {
    Single(redis::Client),
    Cluster(ClusterClient),
}

enum Inner {
    Single(redis::aio::MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
}

/// A validated target, ready to open connections.
#[derive(Clone)]
pub struct RedisConnector {
    target: Arc<RedisTarget>,
    client: Arc<Client>,
}

impl RedisConnector {
    /// Validates the URLs (no network yet).
    pub fn new(target: RedisTarget) -> Result<RedisConnector, String> {
        if target.urls.is_empty() {
            return Err("no Redis URL given".into());
        }
        let client = if target.cluster {
            let client = redis::cluster::ClusterClientBuilder::new(target.urls.clone())
                .connection_timeout(target.connect_timeout)
                .response_timeout(target.response_timeout)
                .retries(CLUSTER_RETRIES)
                .min_retry_wait(10)
                .max_retry_wait(100)
                .build()
                .map_err(|e| format!("bad cluster URL(s) {:?}: {e}", target.urls))?;
            Client::Cluster(client)
        } else {
            if target.urls.len() > 1 {
                return Err("several --url need --cluster (a single server takes one URL)".into());
            }
            let url = &target.urls[0];
            Client::Single(
                redis::Client::open(url.as_str())
                    .map_err(|e| format!("bad Redis URL {url:?}: {e}"))?,
            )
        };
        Ok(RedisConnector {
            target: Arc::new(target),
            client: Arc::new(client),
        })
    }

    pub fn describe(&self) -> String {
        let cmd: Vec<String> = self
            .target
            .args
            .iter()
            .map(|t| t.render_pattern())
            .collect();
        format!(
            "{}{} {}",
            if self.target.cluster { "cluster " } else { "" },
            self.target.urls.join(","),
            cmd.join(" ")
        )
    }

    async fn open(&self) -> Result<Inner, String> {
        let t = &self.target;
        let what = || t.urls.join(",");
        match self.client.as_ref() {
            Client::Single(c) => {
                let cfg = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(t.connect_timeout))
                    .set_response_timeout(Some(t.response_timeout));
                let fut = c.get_multiplexed_async_connection_with_config(&cfg);
                // The connection timeout covers TCP; bound the handshake too.
                match tokio::time::timeout(
                    t.connect_timeout.saturating_add(t.response_timeout),
                    fut,
                )
                .await
                {
                    Ok(Ok(conn)) => Ok(Inner::Single(conn)),
                    Ok(Err(e)) => Err(format!("cannot connect to {}: {e}", what())),
                    Err(_) => Err(format!("cannot connect to {}: timed out", what())),
                }
            }
            Client::Cluster(c) => {
                match tokio::time::timeout(
                    t.connect_timeout.saturating_add(t.response_timeout),
                    c.get_async_connection(),
                )
                .await
                {
                    Ok(Ok(conn)) => Ok(Inner::Cluster(conn)),
                    Ok(Err(e)) => Err(format!("cannot connect to cluster {}: {e}", what())),
                    Err(_) => Err(format!("cannot connect to cluster {}: timed out", what())),
                }
            }
        }
    }

    /// Opens one connection (each worker has its own).
    pub async fn connect(&self) -> Result<RedisConn, String> {
        let inner = self.open().await?;
        Ok(RedisConn {
            connector: self.clone(),
            inner: Some(inner),
            failing: None,
        })
    }
}

/// One worker's connection; reconnects after a broken connection (a cluster
/// connection: after failing for [`REBUILD_AFTER`]).
pub struct RedisConn {
    connector: RedisConnector,
    inner: Option<Inner>,
    /// Cluster: the first error since the last success (or since the connection was built).
    failing: Option<Instant>,
}

impl RedisConn {
    /// Sends the command for `vars` and classifies the reply.
    pub async fn call(&mut self, vars: Vars) -> Classified {
        let mut cmd = redis::Cmd::new();
        let mut buf = String::new();
        for a in &self.connector.target.args {
            buf.clear();
            a.render_into(vars, &mut buf);
            cmd.arg(buf.as_bytes());
        }
        match self.send(&cmd).await {
            Ok(v) => self.connector.target.rule.classify(&v),
            Err(e) => Classified::error(e),
        }
    }

    /// The command's words for `vars`.
    pub fn render(&self, vars: Vars) -> Vec<String> {
        self.connector
            .target
            .args
            .iter()
            .map(|a| a.render(vars))
            .collect()
    }

    /// How replies to the command are read.
    pub fn rule(&self) -> RedisRule {
        self.connector.target.rule
    }

    /// Drops the connection without a word to the server, as a crashed
    /// client would (the socket closes); the next call reconnects.
    pub fn disconnect(&mut self) {
        self.inner = None;
        self.failing = None;
    }

    /// Opens a connection now if there is none (after [`RedisConn::disconnect`]).
    pub async fn ensure_connected(&mut self) -> Result<(), String> {
        if self.inner.is_none() {
            self.inner = Some(self.connector.open().await?);
        }
        Ok(())
    }

    /// Sends `words` (a command and its arguments) and returns the reply, or
    /// the error as the report shows it. A broken single-server connection is
    /// reopened before the next call.
    pub async fn query(&mut self, words: &[String]) -> Result<Value, String> {
        let mut cmd = redis::Cmd::new();
        for w in words {
            cmd.arg(w.as_bytes());
        }
        self.send(&cmd).await
    }

    async fn send(&mut self, cmd: &redis::Cmd) -> Result<Value, String> {
        let t = &self.connector.target;
        if self.inner.is_none() {
            self.inner = Some(self.connector.open().await?);
        }
        let (result, cluster): (redis::RedisResult<Value>, bool) = match self.inner.as_mut() {
            Some(Inner::Single(c)) => (cmd.query_async(c).await, false),
            Some(Inner::Cluster(c)) => (cmd.query_async(c).await, true),
            None => return Err("not connected".into()),
        };
        let e = match result {
            Ok(v) => {
                self.failing = None;
                return Ok(v);
            }
            Err(e) => e,
        };
        if cluster {
            // The cluster client repairs its own node connections; rebuild it
            // only when nothing but errors came back for REBUILD_AFTER.
            let first = *self.failing.get_or_insert_with(Instant::now);
            if first.elapsed() >= REBUILD_AFTER {
                self.inner = None;
                self.failing = None;
            }
        }
        if e.is_timeout() {
            return Err(format!(
                "timeout: no reply within {} ms",
                t.response_timeout.as_millis()
            ));
        }
        if e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() {
            if !cluster {
                self.inner = None;
            }
            return Err(format!("connection error: {e}"));
        }
        Err(server_error_text(&e))
    }
}

/// "ERR message" for a server error, as Redis wrote it; a redirect that the
/// cluster client had no retries left to follow is grouped by node
/// ("MOVED to host:port"), not by slot.
fn server_error_text(e: &redis::RedisError) -> String {
    match (e.code(), e.detail()) {
        (Some(code @ ("MOVED" | "ASK")), Some(detail)) => {
            let node = detail.split_whitespace().nth(1).unwrap_or(detail);
            format!("{code} to {node} (redirect not followed: out of retries)")
        }
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        (Some(code), None) => code.to_string(),
        _ => e.to_string(),
    }
}

/// The block timeout of a blocking THROTTLE/PERMIT/LEASE call (`WAIT ms` / `BLOCK ms`), if any.
pub fn block_timeout(args: &[String]) -> Option<Duration> {
    let name = args.first()?;
    let word = if name.eq_ignore_ascii_case("THROTTLE") {
        "WAIT"
    } else if name.eq_ignore_ascii_case("PERMIT") || name.eq_ignore_ascii_case("LEASE") {
        "BLOCK"
    } else {
        return None;
    };
    let i = args.iter().position(|a| a.eq_ignore_ascii_case(word))?;
    let ms = args.get(i + 1)?.parse::<u64>().ok()?;
    if ms == 0 && word == "BLOCK" {
        // BLOCK 0 waits up to 366 days: as long as a response timeout may be.
        return Some(Duration::from_secs(7 * 86400));
    }
    Some(Duration::from_millis(ms))
}
