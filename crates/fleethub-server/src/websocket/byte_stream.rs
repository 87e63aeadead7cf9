//! A WebSocket as a byte stream: the one adapter both WebSocket transports run on (MQTT over
//! WebSocket, AMQP over WebSocket). Binary messages carry the transport's bytes; they are pumped
//! through an in-memory pipe, so the transport serves the same connection code as on its TLS
//! listener. The endpoint bounds the message size before the socket gets here.

use axum::extract::ws::{Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use std::future::Future;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

/// How long a connection may take to finish after its client closed the WebSocket.
pub const CONNECTION_DRAIN: Duration = Duration::from_secs(10);

/// The pipe's buffer, per direction.
const PIPE_BYTES: usize = 64 * 1024;
/// The largest WebSocket message the outbound pump sends at once.
const OUT_CHUNK: usize = 16 * 1024;

/// What a text message means to the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextMessages {
    /// Its UTF-8 bytes are transport bytes (MQTT: some clients send text frames).
    AsBytes,
    /// It is ignored (AMQP over WebSocket is binary only).
    Ignore,
}

/// Runs `serve` on the WebSocket's byte stream until the connection ends. When the client goes
/// away first, the connection still runs to its end (it reads EOF), for up to
/// [`CONNECTION_DRAIN`], so that it can unregister itself (a device must not stay shown as
/// connected); when the connection ends first, its last bytes are still sent and the WebSocket
/// is closed.
pub async fn serve<F, Fut>(ws: WebSocket, text: TextMessages, label: &'static str, serve: F)
where
    F: FnOnce(DuplexStream) -> Fut,
    Fut: Future<Output = ()>,
{
    let (ours, theirs) = tokio::io::duplex(PIPE_BYTES);
    let (mut pipe_rd, mut pipe_wr) = tokio::io::split(theirs);
    let (mut sink, mut stream) = ws.split();
    let inbound = async move {
        while let Some(Ok(msg)) = stream.next().await {
            let data = match msg {
                Message::Binary(b) => b,
                Message::Text(t) if text == TextMessages::AsBytes => {
                    bytes::Bytes::copy_from_slice(t.as_str().as_bytes())
                }
                Message::Close(_) => break,
                Message::Text(_) | Message::Ping(_) | Message::Pong(_) => continue,
            };
            if pipe_wr.write_all(&data).await.is_err() {
                break;
            }
        }
        let _ = pipe_wr.shutdown().await;
    };
    let outbound = async move {
        let mut buf = vec![0u8; OUT_CHUNK];
        loop {
            match pipe_rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let msg = Message::Binary(bytes::Bytes::copy_from_slice(&buf[..n]));
                    if sink.send(msg).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = sink.send(Message::Close(None)).await;
    };
    let work = async { tokio::join!(serve(ours), outbound) };
    tokio::pin!(work);
    tokio::select! {
        _ = &mut work => {}
        () = inbound => {
            if tokio::time::timeout(CONNECTION_DRAIN, &mut work).await.is_err() {
                tracing::warn!("{label}: connection did not end {CONNECTION_DRAIN:?} after the client left");
            }
        }
    }
}
