//! Redis targets: one command, with templated arguments, on one connection per worker.
//!
//! A single server (`redis://host:port/db`) uses a multiplexed async
//! connection; `--cluster` uses redis-rs's async cluster connection, which
//! routes each call by its key (the first argument for THROTTLE, PERMIT and
//! most commands; EVAL/EVALSHA by their first key). Response timeouts are set
//! explicitly: the redis-rs default (500 ms) would cut blocking calls short.

use std::sync::Arc;
use std::time::Duration;

use redis::cluster::ClusterClient;
use redis::{AsyncConnectionConfig, Value};

use crate::classify::{Classified, RedisRule};
use crate::template::{Template, Vars};

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
        })
    }
}

/// One worker's connection; reconnects after a broken connection.
pub struct RedisConn {
    connector: RedisConnector,
    inner: Option<Inner>,
}

impl RedisConn {
    /// Sends the command for `vars` and classifies the reply.
    pub async fn call(&mut self, vars: Vars) -> Classified {
        let t = &self.connector.target;
        let mut cmd = redis::Cmd::new();
        let mut buf = String::new();
        for a in &t.args {
            buf.clear();
            a.render_into(vars, &mut buf);
            cmd.arg(buf.as_bytes());
        }
        if self.inner.is_none() {
            match self.connector.open().await {
                Ok(i) => self.inner = Some(i),
                Err(e) => return Classified::error(e),
            }
        }
        let result: redis::RedisResult<Value> = match self.inner.as_mut() {
            Some(Inner::Single(c)) => cmd.query_async(c).await,
            Some(Inner::Cluster(c)) => cmd.query_async(c).await,
            None => return Classified::error("not connected"),
        };
        match result {
            Ok(v) => t.rule.classify(&v),
            Err(e) => {
                if e.is_timeout() {
                    return Classified::error(format!(
                        "timeout: no reply within {} ms",
                        t.response_timeout.as_millis()
                    ));
                }
                if e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() {
                    self.inner = None;
                    return Classified::error(format!("connection error: {e}"));
                }
                Classified::error(server_error_text(&e))
            }
        }
    }
}

/// "ERR message" for a server error, as Redis wrote it.
fn server_error_text(e: &redis::RedisError) -> String {
    match (e.code(), e.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        (Some(code), None) => code.to_string(),
        _ => e.to_string(),
    }
}

/// The block timeout of a blocking THROTTLE/PERMIT call (`WAIT ms` / `BLOCK ms`), if any.
pub fn block_timeout(args: &[String]) -> Option<Duration> {
    let name = args.first()?;
    let word = if name.eq_ignore_ascii_case("THROTTLE") {
        "WAIT"
    } else if name.eq_ignore_ascii_case("PERMIT") {
        "BLOCK"
    } else {
        return None;
    };
    let i = args.iter().position(|a| a.eq_ignore_ascii_case(word))?;
    let ms = args.get(i + 1)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ms))
}
