//! The live telemetry stream, `GET /messages/events/live[?deviceId=..]` (Server-Sent Events),
//! over its own TLS connection: the request is written by hand and the response read with
//! [`super::http1`], so events are handled as they arrive.

use super::http1::{BodyReader, Head, read_head};
use super::sse::{SseEvent, SseParser};
use crate::client::seg;
use crate::errors::{ServiceError, explain_transport_error};
use crate::settings::Endpoint;
use anyhow::{Result, anyhow};
use fleethub_service_client::TlsTarget;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::future::Future;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWriteExt, BufReader};

/// Longest silence accepted on the live stream; the server sends a keep-alive comment every
/// 15 s, so this much silence means the connection is gone.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(45);
/// Largest error body read.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// A source of live events (the real one, or a script in tests).
pub(crate) trait LiveEvents {
    /// The next event; `None` when the server ended the stream.
    fn next_event(&mut self) -> impl Future<Output = Result<Option<SseEvent>>> + Send;
}

/// Opens live streams (each reconnect opens a new one).
pub(crate) trait LiveConnector {
    type Stream: LiveEvents + Send;
    /// `device`: only this device's events. `token`: a fresh service SAS token.
    fn open(
        &self,
        device: Option<&str>,
        token: String,
    ) -> impl Future<Output = Result<Self::Stream>> + Send;
}

/// The real connector: TLS to the endpoint, `GET /messages/events/live`.
pub(crate) struct HttpsLive {
    target: TlsTarget,
    endpoint: Endpoint,
    api_version: &'static str,
}

impl HttpsLive {
    pub(crate) fn new(endpoint: &Endpoint, api_version: &'static str) -> Result<Self> {
        Ok(HttpsLive {
            target: crate::transport::tls_target(endpoint)?,
            endpoint: endpoint.clone(),
            api_version,
        })
    }
}

/// The request for the live stream.
pub(crate) fn live_request(
    host_header: &str,
    api_version: &str,
    device: Option<&str>,
    token: &str,
) -> String {
    let mut target = format!("/messages/events/live?api-version={api_version}");
    if let Some(d) = device {
        let _ = write!(target, "&deviceId={}", seg(d));
    }
    format!(
        "GET {target} HTTP/1.1\r\nHost: {host_header}\r\nAuthorization: {token}\r\n\
         Accept: text/event-stream\r\nCache-Control: no-cache\r\nRequest-Id: {}\r\n\
         User-Agent: fleethub-cli/{}\r\n\r\n",
        uuid::Uuid::new_v4(),
        env!("CARGO_PKG_VERSION")
    )
}

impl LiveConnector for HttpsLive {
    type Stream = SseStream<BufReader<fleethub_device::tls::TlsStream>>;

    async fn open(&self, device: Option<&str>, token: String) -> Result<Self::Stream> {
        let t = &self.target;
        let mut tls = t.tls.connect(&t.host_name, t.port).await.map_err(|e| {
            explain_transport_error(
                anyhow::Error::new(fleethub_device::HttpsError::from(e)),
                &self.endpoint,
            )
        })?;
        let host_header = t.authority.strip_suffix(":443").unwrap_or(&t.authority);
        let req = live_request(host_header, self.api_version, device, &token);
        tls.write_all(req.as_bytes()).await.map_err(|e| {
            anyhow!(
                "cannot send the live-stream request to {}: {e}",
                self.endpoint.dial
            )
        })?;
        tls.flush().await?;
        let reader = BufReader::new(tls);
        let operation = "GET /messages/events/live".to_string();
        SseStream::start(reader, operation).await
    }
}

/// An open event stream: the body of a 200 `text/event-stream` response.
pub(crate) struct SseStream<R> {
    body: BodyReader<R>,
    parser: SseParser,
    pending: VecDeque<SseEvent>,
}

impl<R: AsyncRead + Unpin + Send + tokio::io::AsyncBufRead> SseStream<R> {
    /// Reads the response head; a non-200 answer becomes a [`ServiceError`].
    pub(crate) async fn start(mut reader: R, operation: String) -> Result<Self> {
        let head: Head = tokio::time::timeout(IDLE_TIMEOUT, read_head(&mut reader))
            .await
            .map_err(|_| anyhow!("{operation}: no answer within {} s", IDLE_TIMEOUT.as_secs()))??;
        let mut body = BodyReader::new(reader, &head)?;
        if head.status != 200 {
            let bytes = tokio::time::timeout(IDLE_TIMEOUT, body.read_to_end(MAX_ERROR_BODY))
                .await
                .unwrap_or_else(|_| Ok(Vec::new()))
                .unwrap_or_default();
            return Err(ServiceError::from_response(operation, head.status, &bytes).into());
        }
        Ok(SseStream {
            body,
            parser: SseParser::default(),
            pending: VecDeque::new(),
        })
    }
}

impl<R: AsyncRead + Unpin + Send + tokio::io::AsyncBufRead> LiveEvents for SseStream<R> {
    async fn next_event(&mut self) -> Result<Option<SseEvent>> {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                return Ok(Some(ev));
            }
            let piece = tokio::time::timeout(IDLE_TIMEOUT, self.body.read_some())
                .await
                .map_err(|_| {
                    anyhow!(
                        "nothing from the server for {} s (not even a keep-alive)",
                        IDLE_TIMEOUT.as_secs()
                    )
                })??;
            match piece {
                None => return Ok(None),
                Some(bytes) => self.pending.extend(self.parser.push(&bytes)?),
            }
        }
    }
}
