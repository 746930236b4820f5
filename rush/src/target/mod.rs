//! Targets: what a call is. Each worker owns one connection.

pub mod http;
pub mod redis;

use crate::classify::Classified;
use crate::template::Vars;

/// A validated target of either kind.
#[derive(Clone)]
pub enum Connector {
    Redis(redis::RedisConnector),
    Http(http::HttpConnector),
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Connector({})", self.describe())
    }
}

impl Connector {
    /// One line saying what is called.
    pub fn describe(&self) -> String {
        match self {
            Connector::Redis(c) => c.describe(),
            Connector::Http(c) => c.describe(),
        }
    }

    /// Opens one connection.
    pub async fn connect(&self) -> Result<Conn, String> {
        match self {
            Connector::Redis(c) => c.connect().await.map(|c| Conn::Redis(Box::new(c))),
            Connector::Http(c) => c.connect().await.map(Conn::Http),
        }
    }
}

/// One worker's connection.
pub enum Conn {
    Redis(Box<redis::RedisConn>),
    Http(http::HttpConn),
}

impl Conn {
    /// The Redis connection, if this is one.
    pub fn redis(&mut self) -> Option<&mut redis::RedisConn> {
        match self {
            Conn::Redis(c) => Some(c),
            Conn::Http(_) => None,
        }
    }

    /// Makes one call and classifies its outcome.
    pub async fn call(&mut self, vars: Vars) -> Classified {
        match self {
            Conn::Redis(c) => c.call(vars).await,
            Conn::Http(c) => c.call(vars).await,
        }
    }
}
