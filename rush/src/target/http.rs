//! HTTP(S) targets: one HTTP/1.1 keep-alive connection per worker.
//!
//! Each worker opens its own TCP (and TLS, with the Mozilla roots of
//! `webpki-roots`) connection before the run starts, so a burst is not
//! spread out by connection set-up. The scheme, host and port must be the
//! same for every call; the path, query, header values and body may use
//! placeholders. A closed connection is reopened before the next call.

use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self};

use crate::classify::{Classified, StatusSet, classify_status};
use crate::template::{Template, Vars};

/// What to request and how to read the status.
#[derive(Clone, Debug)]
pub struct HttpTarget {
    pub method: String,
    pub url: Template,
    /// `(name, value template)` pairs.
    pub headers: Vec<(String, Template)>,
    pub body: Option<Template>,
    pub allowed: StatusSet,
    pub throttled: StatusSet,
    pub response_timeout: Duration,
    pub connect_timeout: Duration,
    /// Extra trusted root certificates (PEM), besides the Mozilla roots.
    pub ca_pem: Option<Vec<u8>>,
}

struct Endpoint {
    tls: Option<(TlsConnector, ServerName<'static>)>,
    host: String,
    port: u16,
    authority: String,
    scheme_https: bool,
}

/// A validated target, ready to open connections.
#[derive(Clone)]
pub struct HttpConnector {
    target: Arc<HttpTarget>,
    method: Method,
    headers: Arc<Vec<(HeaderName, Template)>>,
    endpoint: Arc<Endpoint>,
}

impl HttpConnector {
    /// Validates the URL, method and headers (no network yet).
    pub fn new(target: HttpTarget) -> Result<HttpConnector, String> {
        let method = Method::from_bytes(target.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| format!("bad HTTP method {:?}", target.method))?;
        let sample = target.url.render(Vars::default());
        let uri: Uri = sample
            .parse()
            .map_err(|e| format!("bad URL {:?}: {e}", target.url.render_pattern()))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            Some(s) => {
                return Err(format!(
                    "bad URL {sample:?}: scheme {s:?} is not http or https"
                ));
            }
            None => return Err(format!("bad URL {sample:?}: it needs http:// or https://")),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| format!("bad URL {sample:?}: no host"))?;
        if authority.as_str().contains('@') {
            return Err(format!(
                "bad URL {sample:?}: user:password@ is not supported; send an Authorization header"
            ));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tls = if https {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            if let Some(pem) = &target.ca_pem {
                let mut added = 0;
                for cert in CertificateDer::pem_slice_iter(pem) {
                    let cert = cert.map_err(|e| format!("bad --cacert: {e}"))?;
                    roots
                        .add(cert)
                        .map_err(|e| format!("bad --cacert certificate: {e}"))?;
                    added += 1;
                }
                if added == 0 {
                    return Err("bad --cacert: no PEM certificate in it".into());
                }
            }
            let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("TLS setup: {e}"))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
            let name = ServerName::try_from(host.clone()).map_err(|e| {
                format!("bad URL {sample:?}: host {host:?} is not a TLS server name: {e}")
            })?;
            Some((TlsConnector::from(Arc::new(cfg)), name))
        } else {
            None
        };
        let mut headers = Vec::new();
        for (name, value) in &target.headers {
            let n = HeaderName::from_bytes(name.trim().as_bytes())
                .map_err(|_| format!("bad header name {name:?}"))?;
            let sample = value.render(Vars::default());
            HeaderValue::from_str(&sample)
                .map_err(|_| format!("bad value for header {name:?}: {sample:?}"))?;
            headers.push((n, value.clone()));
        }
        Ok(HttpConnector {
            endpoint: Arc::new(Endpoint {
                tls,
                authority: authority.as_str().to_string(),
                host,
                port,
                scheme_https: https,
            }),
            method,
            headers: Arc::new(headers),
            target: Arc::new(target),
        })
    }

    pub fn describe(&self) -> String {
        format!("{} {}", self.method, self.target.url.render_pattern())
    }

    async fn open(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let ep = &self.endpoint;
        let what = || {
            format!(
                "{}://{}",
                if ep.scheme_https { "https" } else { "http" },
                ep.authority
            )
        };
        let connect = async {
            let tcp = TcpStream::connect((ep.host.as_str(), ep.port))
                .await
                .map_err(|e| format!("cannot connect to {}: {e}", what()))?;
            let _ = tcp.set_nodelay(true);
            match &ep.tls {
                None => {
                    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                        .await
                        .map_err(|e| format!("cannot connect to {}: {e}", what()))?;
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                    Ok(sender)
                }
                Some((tls, name)) => {
                    let stream = tls
                        .connect(name.clone(), tcp)
                        .await
                        .map_err(|e| format!("TLS handshake with {} failed: {e}", what()))?;
                    let (sender, conn) =
                        hyper::client::conn::http1::handshake(TokioIo::new(stream))
                            .await
                            .map_err(|e| format!("cannot connect to {}: {e}", what()))?;
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                    Ok(sender)
                }
            }
        };
        match tokio::time::timeout(self.target.connect_timeout, connect).await {
            Ok(r) => r,
            Err(_) => Err(format!("cannot connect to {}: timed out", what())),
        }
    }

    /// Opens one connection (each worker has its own).
    pub async fn connect(&self) -> Result<HttpConn, String> {
        self.open().await.map(|sender| HttpConn {
            connector: self.clone(),
            sender: Some(sender),
        })
    }

    fn request(&self, vars: Vars) -> Result<Request<Full<Bytes>>, String> {
        let url = self.target.url.render(vars);
        let uri: Uri = url.parse().map_err(|e| format!("bad URL {url:?}: {e}"))?;
        if uri.authority().map(|a| a.as_str()) != Some(self.endpoint.authority.as_str()) {
            return Err(format!(
                "URL {url:?} leaves {}: the host must not depend on placeholders",
                self.endpoint.authority
            ));
        }
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let mut req = Request::builder()
            .method(self.method.clone())
            .uri(path)
            .header(http::header::HOST, self.endpoint.authority.as_str());
        for (name, value) in self.headers.iter() {
            let v = value.render(vars);
            let v = HeaderValue::from_str(&v)
                .map_err(|_| format!("bad value for header {name}: {v:?}"))?;
            req = req.header(name, v);
        }
        let body = match &self.target.body {
            Some(b) => Bytes::from(b.render(vars)),
            None => Bytes::new(),
        };
        req.body(Full::new(body))
            .map_err(|e| format!("bad request: {e}"))
    }
}

/// One worker's connection.
pub struct HttpConn {
    connector: HttpConnector,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl HttpConn {
    /// Sends the request for `vars` and classifies the status.
    pub async fn call(&mut self, vars: Vars) -> Classified {
        let req = match self.connector.request(vars) {
            Ok(r) => r,
            Err(e) => return Classified::error(e),
        };
        let timeout = self.connector.target.response_timeout;
        let result = tokio::time::timeout(timeout, self.send(req)).await;
        match result {
            Ok(Ok(status)) => classify_status(
                status,
                &self.connector.target.allowed,
                &self.connector.target.throttled,
            ),
            Ok(Err(e)) => {
                self.sender = None;
                Classified::error(e)
            }
            Err(_) => {
                // The reply may still come on this connection: start afresh.
                self.sender = None;
                Classified::error(format!(
                    "timeout: no response within {} ms",
                    timeout.as_millis()
                ))
            }
        }
    }

    async fn send(&mut self, req: Request<Full<Bytes>>) -> Result<u16, String> {
        let usable = match self.sender.as_mut() {
            Some(s) => s.ready().await.is_ok(),
            None => false,
        };
        if !usable {
            self.sender = Some(self.connector.open().await?);
        }
        let sender = self
            .sender
            .as_mut()
            .ok_or_else(|| "not connected".to_string())?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("connection error: {e}"))?;
        let status = resp.status().as_u16();
        // Read the whole body so the connection can carry the next request.
        resp.into_body()
            .collect()
            .await
            .map_err(|e| format!("connection error while reading the body: {e}"))?;
        Ok(status)
    }
}
