//! An example HTTP API limited per API key with the module's `THROTTLE` command.
//!
//! Every request must carry an API key, in a header (default `X-API-Key`) or
//! a query parameter (default `api_key`). The service calls
//! `THROTTLE <prefix><key> <rps> <burst> <window> <cost>` and answers:
//!
//! - `200` with a small JSON body when allowed;
//! - `429` when throttled, with `Retry-After` (seconds, rounded up);
//! - `401` without an API key; `503` when Redis fails.
//!
//! Allowed and throttled answers carry `RateLimit-Limit` (the bucket's
//! capacity), `RateLimit-Remaining` (tokens left) and `RateLimit-Reset`
//! (seconds, rounded up, until the bucket is full again), as in the IETF
//! RateLimit header fields draft.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use clap::Parser;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// Settings, from flags or the environment.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "http-api",
    about = "Example HTTP API limited per API key with THROTTLE"
)]
pub struct Config {
    /// Address to listen on
    #[arg(long, env = "HTTP_API_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Redis server with the module loaded
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379/")]
    pub redis_url: String,
    /// Sustained rate per API key, requests per second
    #[arg(long, env = "THROTTLE_RPS", default_value_t = 10.0)]
    pub rps: f64,
    /// Burst factor (capacity = ceil(rps × burst × window))
    #[arg(long, env = "THROTTLE_BURST", default_value_t = 1.0)]
    pub burst: f64,
    /// Window, seconds
    #[arg(long, env = "THROTTLE_WINDOW", default_value_t = 1.0)]
    pub window: f64,
    /// Tokens each request takes
    #[arg(long, env = "THROTTLE_COST", default_value_t = 1)]
    pub cost: u64,
    /// Header holding the API key
    #[arg(long, env = "API_KEY_HEADER", default_value = "x-api-key")]
    pub key_header: String,
    /// Query parameter holding the API key (when the header is absent)
    #[arg(long, env = "API_KEY_QUERY", default_value = "api_key")]
    pub key_query: String,
    /// Prefix of the Redis keys
    #[arg(long, env = "THROTTLE_KEY_PREFIX", default_value = "api:")]
    pub key_prefix: String,
}

struct AppState {
    cfg: Config,
    key_header: HeaderName,
    redis: ConnectionManager,
}

/// Connects to Redis and serves on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, cfg: Config) -> Result<(), String> {
    let app = app(cfg).await?;
    run(listener, app).await
}

/// Serves an already connected router on `listener`.
pub async fn run(listener: tokio::net::TcpListener, app: Router) -> Result<(), String> {
    axum::serve(listener, app)
        .await
        .map_err(|e| format!("server error: {e}"))
}

/// The router, connected to Redis.
pub async fn app(cfg: Config) -> Result<Router, String> {
    for (name, x) in [
        ("--rps", cfg.rps),
        ("--burst", cfg.burst),
        ("--window", cfg.window),
    ] {
        if !(x.is_finite() && x > 0.0) {
            return Err(format!("{name} must be a positive number, got {x}"));
        }
    }
    let key_header = HeaderName::from_bytes(cfg.key_header.as_bytes())
        .map_err(|_| format!("bad --key-header {:?}", cfg.key_header))?;
    let client = redis::Client::open(cfg.redis_url.as_str())
        .map_err(|e| format!("bad Redis URL {:?}: {e}", cfg.redis_url))?;
    let mcfg = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(2)))
        .set_number_of_retries(1);
    let redis = tokio::time::timeout(
        Duration::from_secs(5),
        ConnectionManager::new_with_config(client, mcfg),
    )
    .await
    .map_err(|_| format!("cannot connect to {}: timed out", cfg.redis_url))?
    .map_err(|e| format!("cannot connect to {}: {e}", cfg.redis_url))?;
    let state = Arc::new(AppState {
        cfg,
        key_header,
        redis,
    });
    Ok(Router::new().fallback(handle).with_state(state))
}

fn seconds_up(ms: i64) -> i64 {
    ms.max(0).saturating_add(999) / 1000
}

async fn handle(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    let key = headers
        .get(&st.key_header)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| {
            query
                .iter()
                .find(|(k, _)| *k == st.cfg.key_query)
                .map(|(_, v)| v.clone())
        })
        .filter(|k| !k.is_empty());
    let Some(key) = key else {
        return (
            StatusCode::UNAUTHORIZED,
            [("content-type", "application/json")],
            format!(
                "{{\"error\":\"missing API key: send the {} header or the {} query parameter\"}}\n",
                st.cfg.key_header, st.cfg.key_query
            ),
        )
            .into_response();
    };
    let mut conn = st.redis.clone();
    let reply: redis::RedisResult<Vec<i64>> = redis::cmd("THROTTLE")
        .arg(format!("{}{}", st.cfg.key_prefix, key))
        .arg(st.cfg.rps)
        .arg(st.cfg.burst)
        .arg(st.cfg.window)
        .arg(st.cfg.cost)
        .query_async(&mut conn)
        .await;
    let r = match reply {
        Ok(r) if r.len() == 5 => r,
        Ok(r) => return unavailable(format!("unexpected THROTTLE reply {r:?}")),
        Err(e) => return unavailable(e.to_string()),
    };
    let (allowed, remaining, retry_after_ms, reset_after_ms, limit) =
        (r[0] == 1, r[1], r[2], r[3], r[4]);
    let mut h = HeaderMap::new();
    let mut put = |name: &'static str, v: i64| {
        if let Ok(v) = HeaderValue::from_str(&v.to_string()) {
            h.insert(name, v);
        }
    };
    put("ratelimit-limit", limit);
    put("ratelimit-remaining", remaining);
    put("ratelimit-reset", seconds_up(reset_after_ms));
    h.insert("content-type", HeaderValue::from_static("application/json"));
    if allowed {
        (StatusCode::OK, h, "{\"ok\":true}\n".to_string()).into_response()
    } else {
        put_retry(&mut h, retry_after_ms);
        (
            StatusCode::TOO_MANY_REQUESTS,
            h,
            format!("{{\"error\":\"rate limited\",\"retry_after_ms\":{retry_after_ms}}}\n"),
        )
            .into_response()
    }
}

fn put_retry(h: &mut HeaderMap, retry_after_ms: i64) {
    // Retry-After is whole seconds; never tell a client to retry in 0 s.
    if let Ok(v) = HeaderValue::from_str(&seconds_up(retry_after_ms).max(1).to_string()) {
        h.insert("retry-after", v);
    }
}

fn unavailable(msg: String) -> Response {
    let msg = msg.replace('\\', "\\\\").replace('"', "\\\"");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [("content-type", "application/json")],
        format!("{{\"error\":\"rate limiter unavailable: {msg}\"}}\n"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn seconds_round_up() {
        assert_eq!(super::seconds_up(0), 0);
        assert_eq!(super::seconds_up(1), 1);
        assert_eq!(super::seconds_up(1000), 1);
        assert_eq!(super::seconds_up(1001), 2);
        assert_eq!(super::seconds_up(-5), 0);
        assert_eq!(super::seconds_up(i64::MAX), i64::MAX / 1000);
    }
}
