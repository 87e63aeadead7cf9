//! A minimal HTTPS/1.1 client on `hyper::client::conn::http1` over [`crate::tls`]: the
//! device plane's transport (DPS registration, the hub's device HTTPS API, an edge device's
//! module identities). The service-plane conventions (policy SAS, api-versions, Azure error
//! bodies) live in the `fleethub-service-client` crate, which sends over this client.
//!
//! One [`HttpsClient`] keeps at most one idle keep-alive connection and reuses it for the
//! next request to the same `host:port`; concurrent requests open extra connections that
//! are closed (or kept as the idle one) when they finish. Every request is bounded by the
//! client's timeout (connect + send + whole response body).
//!
//! ```no_run
//! # async fn demo(tls: fleethub_device::ClientTlsConfig) -> Result<(), fleethub_device::HttpsError> {
//! use fleethub_device::{HttpsClient, HttpsRequest};
//! let client = HttpsClient::new(tls);
//! let resp = client
//!     .send(HttpsRequest::get("https://dps.fleethub.local:443/0ne00000A0A/registrations/dev-01/operations/op-1?api-version=2021-06-01")?
//!         .header("Authorization", "SharedAccessSignature sr=...")
//!         .header("Accept", "application/json"))
//!     .await?;
//! println!("{} {}", resp.status, resp.text());
//! # Ok(()) }
//! ```

use std::borrow::Cow;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_TYPE, HOST, HeaderName, HeaderValue, USER_AGENT};
use http::{HeaderMap, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::tls::{ClientTlsConfig, TlsError};

/// Default bound on one request (connect, send, read the whole response).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response body accepted.
pub const MAX_RESPONSE_BODY: usize = 16 * 1024 * 1024;
/// Port used when the host has none.
pub const DEFAULT_HTTPS_PORT: u16 = 443;

/// Errors of [`HttpsClient::send`] and of the request/response helpers.
#[derive(Debug, thiserror::Error)]
pub enum HttpsError {
    #[error("invalid URL '{url}': {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("invalid header '{name}': {reason}")]
    InvalidHeader { name: String, reason: String },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("HTTP error talking to {authority}: {source}")]
    Http {
        authority: String,
        source: hyper::Error,
    },
    #[error("cannot read the response body from {authority}: {reason}")]
    Body { authority: String, reason: String },
    #[error("request to {authority} timed out after {after:?}")]
    Timeout { authority: String, after: Duration },
    #[error("response (HTTP {status}) is not the expected JSON: {source}")]
    Json {
        status: u16,
        source: serde_json::Error,
    },
    #[error("cannot serialize the JSON request body: {0}")]
    Serialize(serde_json::Error),
}

/// An HTTPS request. `host` is `host` or `host:port` (default port 443).
#[derive(Debug, Clone)]
pub struct HttpsRequest {
    pub method: Method,
    pub host: String,
    /// Origin-form target, e.g. `/0ne00000A0A/registrations/dev-01/register?api-version=2021-06-01`.
    pub path_and_query: String,
    /// Extra headers; `Host` and `User-Agent` are added when absent.
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

impl HttpsRequest {
    /// Parses `https://host[:port]/path?query`, `host[:port]/path?query` or `host[:port]`.
    pub fn new(method: Method, url: &str) -> Result<Self, HttpsError> {
        let (host, path_and_query) = split_url(url)?;
        Ok(Self::from_parts(method, host, path_and_query))
    }

    /// A request from an already split host (`host` or `host:port`) and origin-form target.
    pub fn from_parts(
        method: Method,
        host: impl Into<String>,
        path_and_query: impl Into<String>,
    ) -> Self {
        let mut path_and_query = path_and_query.into();
        if !path_and_query.starts_with('/') {
            path_and_query.insert(0, '/');
        }
        HttpsRequest {
            method,
            host: host.into(),
            path_and_query,
            headers: Vec::new(),
            body: None,
        }
    }

    pub fn get(url: &str) -> Result<Self, HttpsError> {
        Self::new(Method::GET, url)
    }

    pub fn put(url: &str) -> Result<Self, HttpsError> {
        Self::new(Method::PUT, url)
    }

    pub fn post(url: &str) -> Result<Self, HttpsError> {
        Self::new(Method::POST, url)
    }

    pub fn delete(url: &str) -> Result<Self, HttpsError> {
        Self::new(Method::DELETE, url)
    }

    /// Adds a header (validated when sent).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the raw body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// Sets a JSON body and `Content-Type: application/json; charset=utf-8` (unless a
    /// content type was already given).
    pub fn json<T: Serialize + ?Sized>(mut self, value: &T) -> Result<Self, HttpsError> {
        self.body = Some(serde_json::to_vec(value).map_err(HttpsError::Serialize)?);
        if !self.has_header(CONTENT_TYPE.as_str()) {
            self = self.header("Content-Type", "application/json; charset=utf-8");
        }
        Ok(self)
    }

    fn has_header(&self, name: &str) -> bool {
        self.headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    fn to_hyper(&self, port: u16) -> Result<Request<Full<Bytes>>, HttpsError> {
        let uri: Uri = self
            .path_and_query
            .parse()
            .map_err(|e: http::uri::InvalidUri| HttpsError::InvalidUrl {
                url: self.path_and_query.clone(),
                reason: e.to_string(),
            })?;
        let mut headers = HeaderMap::new();
        for (name, value) in &self.headers {
            let invalid = |reason: String| HttpsError::InvalidHeader {
                name: name.clone(),
                reason,
            };
            let n = HeaderName::from_bytes(name.as_bytes()).map_err(|e| invalid(e.to_string()))?;
            let v = HeaderValue::from_str(value).map_err(|e| invalid(e.to_string()))?;
            headers.append(n, v);
        }
        if !headers.contains_key(HOST) {
            let host = if port == DEFAULT_HTTPS_PORT {
                host_only(&self.host).to_string()
            } else {
                self.host.clone()
            };
            let v = HeaderValue::from_str(&host).map_err(|e| HttpsError::InvalidHeader {
                name: "Host".into(),
                reason: e.to_string(),
            })?;
            headers.insert(HOST, v);
        }
        if !headers.contains_key(USER_AGENT) {
            headers.insert(USER_AGENT, HeaderValue::from_static(crate::USER_AGENT));
        }
        let body = Full::new(Bytes::from(self.body.clone().unwrap_or_default()));
        let mut req = Request::new(body);
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = uri;
        *req.headers_mut() = headers;
        Ok(req)
    }
}

/// Splits a URL (scheme optional, `https` only) into (`host[:port]`, path-and-query).
fn split_url(url: &str) -> Result<(String, String), HttpsError> {
    let invalid = |reason: &str| HttpsError::InvalidUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let rest = match url.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => rest,
        Some(_) => return Err(invalid("only https:// URLs are supported")),
        None => url,
    };
    let (host, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if host.is_empty() {
        return Err(invalid("missing host"));
    }
    if host.contains('@') {
        return Err(invalid("user info in URLs is not supported"));
    }
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_string()
    };
    split_host_port(host).map_err(|e| invalid(&e))?;
    Ok((host.to_string(), path))
}

/// Splits `host`, `host:port`, `[v6]` or `[v6]:port`; the host keeps no brackets.
pub fn split_host_port(host: &str) -> Result<(&str, u16), String> {
    if let Some(rest) = host.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or("unterminated '[' in host")?;
        return match after.strip_prefix(':') {
            Some(p) => Ok((h, parse_port(p)?)),
            None if after.is_empty() => Ok((h, DEFAULT_HTTPS_PORT)),
            None => Err("junk after ']' in host".into()),
        };
    }
    match host.rsplit_once(':') {
        Some((h, _)) if h.contains(':') => Ok((host, DEFAULT_HTTPS_PORT)), // bare IPv6
        Some((h, p)) if !h.is_empty() => Ok((h, parse_port(p)?)),
        Some(_) => Err("missing host".into()),
        None if host.is_empty() => Err("missing host".into()),
        None => Ok((host, DEFAULT_HTTPS_PORT)),
    }
}

fn parse_port(p: &str) -> Result<u16, String> {
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("invalid port '{p}'")),
        Ok(port) => Ok(port),
    }
}

fn host_only(host: &str) -> &str {
    match host.strip_prefix('[') {
        Some(_) => host
            .split_once(']')
            .map(|(h, _)| &host[..=h.len()])
            .unwrap_or(host),
        None => host.split(':').next().unwrap_or(host),
    }
}

/// A complete HTTPS response.
#[derive(Debug, Clone)]
pub struct HttpsResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl HttpsResponse {
    /// 2xx?
    pub fn is_success(&self) -> bool {
        self.status.is_success()
    }

    /// A header value as text (the first one; `None` when absent or not visible ASCII).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as text (lossy UTF-8).
    pub fn text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }

    /// Deserializes the body as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, HttpsError> {
        serde_json::from_slice(&self.body).map_err(|source| HttpsError::Json {
            status: self.status.as_u16(),
            source,
        })
    }
}

struct IdleConn {
    authority: (String, u16),
    sender: SendRequest<Full<Bytes>>,
}

/// HTTPS/1.1 client; see the module docs. `Send + Sync`: share it behind an `Arc`.
pub struct HttpsClient {
    tls: ClientTlsConfig,
    timeout: Duration,
    idle: Mutex<Option<IdleConn>>,
}

impl std::fmt::Debug for HttpsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpsClient")
            .field("tls", &self.tls)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl HttpsClient {
    pub fn new(tls: ClientTlsConfig) -> Self {
        HttpsClient {
            tls,
            timeout: DEFAULT_REQUEST_TIMEOUT,
            idle: Mutex::new(None),
        }
    }

    /// Bounds each request (default [`DEFAULT_REQUEST_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn tls(&self) -> &ClientTlsConfig {
        &self.tls
    }

    /// Sends a request and reads the whole response. Non-2xx statuses are not errors.
    pub async fn send(&self, req: HttpsRequest) -> Result<HttpsResponse, HttpsError> {
        let (host, port) = split_host_port(&req.host).map_err(|reason| HttpsError::InvalidUrl {
            url: req.host.clone(),
            reason,
        })?;
        let authority = (host.to_string(), port);
        let after = self.timeout;
        match tokio::time::timeout(after, self.send_inner(&req, authority)).await {
            Ok(result) => result,
            Err(_) => Err(HttpsError::Timeout {
                authority: req.host.clone(),
                after,
            }),
        }
    }

    /// Drops the idle connection, if any.
    pub fn close_idle(&self) {
        self.lock_idle().take();
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Option<IdleConn>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take_idle(&self, authority: &(String, u16)) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = self.lock_idle();
        match idle.take() {
            Some(c) if &c.authority == authority && !c.sender.is_closed() => Some(c.sender),
            Some(c) if &c.authority != authority => {
                *idle = Some(c);
                None
            }
            _ => None,
        }
    }

    async fn send_inner(
        &self,
        req: &HttpsRequest,
        authority: (String, u16),
    ) -> Result<HttpsResponse, HttpsError> {
        let port = authority.1;
        if let Some(mut sender) = self.take_idle(&authority)
            && sender.ready().await.is_ok()
        {
            match sender.send_request(req.to_hyper(port)?).await {
                Ok(resp) => return self.finish(req, authority, sender, resp).await,
                Err(e) if may_retry(&e, &req.method) => {
                    tracing::debug!(host = %req.host, "idle connection went away ({e}); reconnecting");
                }
                Err(source) => {
                    return Err(HttpsError::Http {
                        authority: req.host.clone(),
                        source,
                    });
                }
            }
        }
        let mut sender = self.open(&req.host, &authority).await?;
        let resp = sender
            .send_request(req.to_hyper(port)?)
            .await
            .map_err(|source| HttpsError::Http {
                authority: req.host.clone(),
                source,
            })?;
        self.finish(req, authority, sender, resp).await
    }

    async fn open(
        &self,
        host_header: &str,
        (host, port): &(String, u16),
    ) -> Result<SendRequest<Full<Bytes>>, HttpsError> {
        let stream = self.tls.connect(host, *port).await?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|source| HttpsError::Http {
                authority: host_header.to_string(),
                source,
            })?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("HTTPS connection ended: {e}");
            }
        });
        Ok(sender)
    }

    async fn finish(
        &self,
        req: &HttpsRequest,
        authority: (String, u16),
        sender: SendRequest<Full<Bytes>>,
        resp: http::Response<hyper::body::Incoming>,
    ) -> Result<HttpsResponse, HttpsError> {
        let (parts, body) = resp.into_parts();
        let body = Limited::new(body, MAX_RESPONSE_BODY)
            .collect()
            .await
            .map_err(|e| HttpsError::Body {
                authority: req.host.clone(),
                reason: e.to_string(),
            })?
            .to_bytes();
        let closing = parts
            .headers
            .get_all(CONNECTION)
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| v.eq_ignore_ascii_case("close")));
        if !closing && !sender.is_closed() {
            *self.lock_idle() = Some(IdleConn { authority, sender });
        }
        Ok(HttpsResponse {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

/// A request that failed on a reused connection before any response may be retried once
/// on a fresh connection: always if it was never sent, otherwise only when idempotent.
fn may_retry(e: &hyper::Error, method: &Method) -> bool {
    if e.is_canceled() {
        return true;
    }
    let idempotent = matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
    );
    idempotent && (e.is_closed() || e.is_incomplete_message())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TestPki;
    use http_body_util::Full;
    use hyper::body::Incoming;
    use hyper::service::service_fn;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn url_splitting() {
        let r = HttpsRequest::get("https://dps.local:8443/a/b?x=1").unwrap();
        assert_eq!(
            (r.host.as_str(), r.path_and_query.as_str()),
            ("dps.local:8443", "/a/b?x=1")
        );
        let r = HttpsRequest::get("dps.local/a").unwrap();
        assert_eq!(
            (r.host.as_str(), r.path_and_query.as_str()),
            ("dps.local", "/a")
        );
        let r = HttpsRequest::get("HTTPS://dps.local").unwrap();
        assert_eq!(
            (r.host.as_str(), r.path_and_query.as_str()),
            ("dps.local", "/")
        );
        let r = HttpsRequest::get("dps.local?q=1").unwrap();
        assert_eq!(r.path_and_query, "/?q=1");
        assert!(HttpsRequest::get("http://dps.local/").is_err());
        assert!(HttpsRequest::get("https:///x").is_err());
        assert!(HttpsRequest::get("dps.local:0/x").is_err());
        assert!(HttpsRequest::get("dps.local:http/x").is_err());
        let r = HttpsRequest::from_parts(Method::GET, "h", "x");
        assert_eq!(r.path_and_query, "/x");
    }

    #[test]
    fn host_port_splitting() {
        assert_eq!(split_host_port("h"), Ok(("h", 443)));
        assert_eq!(split_host_port("h:8443"), Ok(("h", 8443)));
        assert_eq!(split_host_port("[::1]:8443"), Ok(("::1", 8443)));
        assert_eq!(split_host_port("[::1]"), Ok(("::1", 443)));
        assert_eq!(split_host_port("::1"), Ok(("::1", 443)));
        assert!(split_host_port(":1").is_err());
        assert!(split_host_port("[::1").is_err());
        assert_eq!(host_only("[::1]:5"), "[::1]");
        assert_eq!(host_only("h:5"), "h");
    }

    #[test]
    fn host_header_omits_default_port_and_bad_headers_fail() {
        let r = HttpsRequest::get("https://h:443/x").unwrap();
        assert_eq!(r.to_hyper(443).unwrap().headers()["host"], "h");
        let r = HttpsRequest::get("https://h:8443/x").unwrap();
        assert_eq!(r.to_hyper(8443).unwrap().headers()["host"], "h:8443");
        let r = HttpsRequest::get("h/x").unwrap().header("bad name", "v");
        assert!(matches!(
            r.to_hyper(443),
            Err(HttpsError::InvalidHeader { .. })
        ));
        let r = HttpsRequest::get("h/x")
            .unwrap()
            .header("x-a", "line\nbreak");
        assert!(matches!(
            r.to_hyper(443),
            Err(HttpsError::InvalidHeader { .. })
        ));
    }

    /// Echo server: answers with method, path, Host and body as JSON; counts connections.
    /// `/close` answers with `Connection: close`, `/slow` sleeps 2 s.
    async fn echo_server(pki: &TestPki) -> (u16, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let acceptor = pki.acceptor();
        let conns = Arc::new(AtomicUsize::new(0));
        let counter = conns.clone();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, Ordering::SeqCst);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = service_fn(|req: Request<Incoming>| async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.unwrap().to_bytes();
                        if parts.uri.path() == "/slow" {
                            tokio::time::sleep(Duration::from_secs(2)).await;
                        }
                        let json = serde_json::json!({
                            "method": parts.method.as_str(),
                            "path": parts.uri.to_string(),
                            "host": parts.headers.get("host").and_then(|v| v.to_str().ok()),
                            "auth": parts.headers.get("authorization").and_then(|v| v.to_str().ok()),
                            "contentType": parts.headers.get("content-type").and_then(|v| v.to_str().ok()),
                            "userAgent": parts.headers.get("user-agent").and_then(|v| v.to_str().ok()),
                            "body": String::from_utf8_lossy(&body),
                        });
                        let mut resp = http::Response::builder()
                            .status(if parts.uri.path() == "/missing" {
                                404
                            } else {
                                200
                            })
                            .header("content-type", "application/json");
                        if parts.uri.path() == "/close" {
                            resp = resp.header("connection", "close");
                        }
                        Ok::<_, std::convert::Infallible>(
                            resp.body(Full::new(Bytes::from(json.to_string()))).unwrap(),
                        )
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        (port, conns)
    }

    #[tokio::test]
    async fn requests_reuse_one_keep_alive_connection() {
        let pki = TestPki::new();
        let (port, conns) = echo_server(&pki).await;
        let client = HttpsClient::new(pki.client_tls());
        let host = format!("localhost:{port}");

        let resp = client
            .send(
                HttpsRequest::from_parts(
                    Method::PUT,
                    host.clone(),
                    "/enrollments/d1?api-version=x",
                )
                .header("Authorization", "SharedAccessSignature sr=a")
                .json(&serde_json::json!({"registrationId": "d1"}))
                .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status, 200);
        assert!(resp.is_success());
        assert_eq!(resp.header("content-type"), Some("application/json"));
        let v: serde_json::Value = resp.json().unwrap();
        assert_eq!(v["method"], "PUT");
        assert_eq!(v["path"], "/enrollments/d1?api-version=x");
        assert_eq!(v["host"], host.as_str());
        assert_eq!(v["auth"], "SharedAccessSignature sr=a");
        assert_eq!(v["contentType"], "application/json; charset=utf-8");
        assert_eq!(v["userAgent"], crate::USER_AGENT);
        assert_eq!(v["body"], r#"{"registrationId":"d1"}"#);

        for _ in 0..3 {
            let resp = client
                .send(HttpsRequest::get(&format!("https://{host}/missing")).unwrap())
                .await
                .unwrap();
            assert_eq!(resp.status, 404);
            assert!(!resp.is_success());
        }
        assert_eq!(
            conns.load(Ordering::SeqCst),
            1,
            "keep-alive connection reused"
        );

        // Connection: close -> the next request opens a new connection.
        client
            .send(HttpsRequest::get(&format!("https://{host}/close")).unwrap())
            .await
            .unwrap();
        client
            .send(HttpsRequest::delete(&format!("https://{host}/x")).unwrap())
            .await
            .unwrap();
        assert_eq!(conns.load(Ordering::SeqCst), 2);

        // Concurrent requests open extra connections and still succeed.
        let client = Arc::new(client);
        let mut tasks = Vec::new();
        for i in 0..4 {
            let client = client.clone();
            let url = format!("https://{host}/c/{i}");
            tasks.push(tokio::spawn(async move {
                client
                    .send(HttpsRequest::post(&url).unwrap().body("x"))
                    .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap().status, 200);
        }
    }

    #[tokio::test]
    async fn timeout_and_tls_errors_are_reported() {
        let pki = TestPki::new();
        let (port, _) = echo_server(&pki).await;
        let client = HttpsClient::new(pki.client_tls()).with_timeout(Duration::from_millis(300));
        let err = client
            .send(HttpsRequest::get(&format!("https://127.0.0.1:{port}/slow")).unwrap())
            .await
            .unwrap_err();
        assert!(matches!(err, HttpsError::Timeout { .. }), "{err}");

        let other = TestPki::new();
        let client = HttpsClient::new(other.client_tls());
        let err = client
            .send(HttpsRequest::get(&format!("https://127.0.0.1:{port}/")).unwrap())
            .await
            .unwrap_err();
        assert!(
            matches!(err, HttpsError::Tls(TlsError::Handshake { .. })),
            "{err}"
        );
    }
}
