//! [`HttpsClient`]: the connection (one idle keep-alive connection reused), the request
//! timeout and the retry of a request that failed on a reused connection.

use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http::header::CONNECTION;
use http::{HeaderMap, Method};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper_util::rt::TokioIo;

use super::{
    DEFAULT_REQUEST_TIMEOUT, HttpsError, HttpsRequest, HttpsResponse, MAX_RESPONSE_BODY,
    split_host_port,
};
use crate::tls::{ClientTlsConfig, TlsStream};

/// hyper's connection future: it must be polled for the connection to make progress.
pub(super) type Conn = Connection<TokioIo<TlsStream>, Full<Bytes>>;

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
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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
        let (sender, conn) = connect(&self.tls, host, *port, host_header).await?;
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
        let resp = read_response(resp)
            .await
            .map_err(|reason| HttpsError::Body {
                authority: req.host.clone(),
                reason,
            })?;
        if !says_close(&resp.headers) && !sender.is_closed() {
            *self.lock_idle() = Some(IdleConn { authority, sender });
        }
        Ok(resp)
    }
}

/// Opens a TLS connection to `host:port` and starts HTTP/1.1 on it (`authority` names it in
/// errors): the request sender and the connection future to poll.
pub(super) async fn connect(
    tls: &ClientTlsConfig,
    host: &str,
    port: u16,
    authority: &str,
) -> Result<(SendRequest<Full<Bytes>>, Conn), HttpsError> {
    let stream = tls.connect(host, port).await?;
    http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|source| HttpsError::Http {
            authority: authority.to_string(),
            source,
        })
}

/// Reads a whole response, its body bounded by [`MAX_RESPONSE_BODY`]; the error says why the
/// body could not be read.
pub(super) async fn read_response(
    resp: http::Response<hyper::body::Incoming>,
) -> Result<HttpsResponse, String> {
    let (parts, body) = resp.into_parts();
    let body = Limited::new(body, MAX_RESPONSE_BODY)
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(HttpsResponse {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// Whether a response's `Connection` header says the server closes the connection after it.
pub(super) fn says_close(headers: &HeaderMap) -> bool {
    headers
        .get_all(CONNECTION)
        .iter()
        .any(|v| v.to_str().is_ok_and(|v| v.eq_ignore_ascii_case("close")))
}

/// A request that failed on a reused connection before any response may be retried once
/// on a fresh connection: always if it was never sent, otherwise only when idempotent.
pub(super) fn may_retry(e: &hyper::Error, method: &Method) -> bool {
    if e.is_canceled() {
        return true;
    }
    let idempotent = matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
    );
    idempotent && (e.is_closed() || e.is_incomplete_message())
}
