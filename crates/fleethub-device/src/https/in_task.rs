//! [`InTaskConnection`]: one HTTPS/1.1 keep-alive connection driven by the task that sends on
//! it. [`super::HttpsClient`] spawns hyper's connection future as a task of its own and hands
//! every request and response over channels between the two tasks (wake-ups, and on a
//! multi-threaded runtime often a thread switch, per request). A caller that sends its requests
//! one after the other on one connection (DPS registration: register, then poll) needs none
//! of that: here the connection future is polled beside the request in the same task.
//!
//! Same wire behaviour as [`super::HttpsClient`]: a response with `Connection: close` (or a
//! connection the server closed) makes the next request open a new connection; a request that
//! failed on a reused connection before any response is sent again once on a new one when
//! `client::may_retry` allows it.

use std::future::poll_fn;
use std::pin::Pin;
use std::task::Poll;

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;

use super::client::{Conn, connect, may_retry, read_response, says_close};
use super::{HttpsError, HttpsRequest, HttpsResponse};
use crate::tls::ClientTlsConfig;

struct Open {
    sender: SendRequest<Full<Bytes>>,
    /// `None` once the connection future has finished (the server closed the connection).
    conn: Option<Pin<Box<Conn>>>,
}

/// One keep-alive connection to `host:port`, opened on the first request. Not shared: `send`
/// takes `&mut self`, one request at a time.
pub(crate) struct InTaskConnection {
    tls: ClientTlsConfig,
    host: String,
    port: u16,
    open: Option<Open>,
}

impl InTaskConnection {
    /// A connection to `host:port` (`host` without brackets), verified against `host`.
    pub(crate) fn new(tls: ClientTlsConfig, host: &str, port: u16) -> Self {
        InTaskConnection {
            tls,
            host: host.to_string(),
            port,
            open: None,
        }
    }

    /// Sends a request and reads the whole response. Non-2xx statuses are not errors. Not
    /// bounded in time: the caller bounds it.
    pub(crate) async fn send(&mut self, req: &HttpsRequest) -> Result<HttpsResponse, HttpsError> {
        if let Some(open) = self.open.as_mut()
            && open.conn.is_some()
            && !open.sender.is_closed()
        {
            match exchange(open, req, self.port).await {
                Ok(resp) => return Ok(self.keep_or_close(resp)),
                Err(Failure::NotReady(e)) => {
                    tracing::debug!(host = %req.host, "kept-alive connection went away ({e}); reconnecting");
                }
                Err(Failure::Http(e)) if may_retry(&e, &req.method) => {
                    tracing::debug!(host = %req.host, "kept-alive connection went away ({e}); reconnecting");
                }
                Err(f) => {
                    self.open = None;
                    return Err(f.into_error(&req.host));
                }
            }
        }
        self.open = None;
        let (sender, conn) = connect(&self.tls, &self.host, self.port, &req.host).await?;
        let open = self.open.insert(Open {
            sender,
            conn: Some(Box::pin(conn)),
        });
        match exchange(open, req, self.port).await {
            Ok(resp) => Ok(self.keep_or_close(resp)),
            Err(f) => {
                self.open = None;
                Err(f.into_error(&req.host))
            }
        }
    }

    /// Closes the connection as [`super::HttpsClient`]'s connection task does when the client
    /// is dropped: hyper shuts the stream down (TLS `close_notify`, then the TCP write side).
    /// Not bounded in time: the caller bounds it.
    pub(crate) async fn close(&mut self) {
        if let Some(Open { sender, conn }) = self.open.take() {
            drop(sender);
            if let Some(conn) = conn
                && let Err(e) = conn.await
            {
                tracing::debug!("HTTPS connection ended: {e}");
            }
        }
    }

    /// Drops the connection when the response says it closes.
    fn keep_or_close(&mut self, resp: HttpsResponse) -> HttpsResponse {
        if says_close(&resp.headers) {
            self.open = None;
        }
        resp
    }
}

enum Failure {
    /// The connection could not take the request (it was never sent).
    NotReady(hyper::Error),
    Http(hyper::Error),
    Body(String),
    Request(HttpsError),
}

impl Failure {
    fn into_error(self, authority: &str) -> HttpsError {
        match self {
            Failure::NotReady(source) | Failure::Http(source) => HttpsError::Http {
                authority: authority.to_string(),
                source,
            },
            Failure::Body(reason) => HttpsError::Body {
                authority: authority.to_string(),
                reason,
            },
            Failure::Request(e) => e,
        }
    }
}

/// Sends `req` on `open` and reads the whole response, polling the connection future in the
/// same task until the response is complete.
async fn exchange(
    open: &mut Open,
    req: &HttpsRequest,
    port: u16,
) -> Result<HttpsResponse, Failure> {
    let request = req.to_hyper(port).map_err(Failure::Request)?;
    let Open { sender, conn } = open;
    let response = async {
        // Waits until the connection is idle again after the previous exchange.
        sender.ready().await.map_err(Failure::NotReady)?;
        let resp = sender.send_request(request).await.map_err(Failure::Http)?;
        read_response(resp).await.map_err(Failure::Body)
    };
    let mut response = std::pin::pin!(response);
    poll_fn(|cx| {
        if let Poll::Ready(r) = response.as_mut().poll(cx) {
            return Poll::Ready(r);
        }
        if let Some(c) = conn.as_mut()
            && let Poll::Ready(ended) = c.as_mut().poll(cx)
        {
            if let Err(e) = ended {
                tracing::debug!("HTTPS connection ended: {e}");
            }
            // Dropping the finished connection fails a request still waiting on it.
            *conn = None;
            return response.as_mut().poll(cx);
        }
        Poll::Pending
    })
    .await
}
