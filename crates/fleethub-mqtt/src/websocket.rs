//! MQTT over WebSocket (`wss://{host}:443/$iothub/websocket`, subprotocol `mqtt`; the C SDK
//! asks for `MQTT`). Binary frames are pumped through an in-memory pipe so that the same
//! connection task serves both transports. The server's WebSocket endpoint selects the
//! subprotocol and bounds the message size before handing the socket here.

use crate::{Gateway, connection::serve_connection};
use axum::extract::ws::{Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Path the SDKs use.
pub const WEBSOCKET_PATH: &str = "/$iothub/websocket";

/// Serves an upgraded WebSocket as an MQTT connection.
pub async fn serve_websocket(gw: Arc<Gateway>, ws: WebSocket, peer: String) {
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let (mut pipe_rd, mut pipe_wr) = tokio::io::split(theirs);
    let (mut sink, mut stream) = ws.split();
    let inbound = async move {
        while let Some(Ok(msg)) = stream.next().await {
            let data = match msg {
                Message::Binary(b) => b,
                Message::Text(t) => bytes::Bytes::copy_from_slice(t.as_str().as_bytes()),
                Message::Close(_) => break,
                Message::Ping(_) | Message::Pong(_) => continue,
            };
            if pipe_wr.write_all(&data).await.is_err() {
                break;
            }
        }
        let _ = pipe_wr.shutdown().await;
    };
    let outbound = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match pipe_rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if sink
                        .send(Message::Binary(bytes::Bytes::copy_from_slice(&buf[..n])))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
        let _ = sink.send(Message::Close(None)).await;
    };
    let session = serve_connection(gw, ours, peer, "mqtt-ws");
    // The session and the outbound pump finish together (the last CONNACK/response must still
    // reach the client); a client that goes away ends everything.
    // When the client goes away first, the session still runs to its end (it reads EOF from the
    // pipe), so that it unregisters the connection: dropping it mid-way would leave the device
    // shown as connected.
    let work = async { tokio::join!(session, outbound) };
    tokio::pin!(work);
    tokio::select! {
        _ = &mut work => {}
        () = inbound => {
            if tokio::time::timeout(SESSION_DRAIN, &mut work).await.is_err() {
                tracing::warn!("mqtt-ws: session did not end {SESSION_DRAIN:?} after the client left");
            }
        }
    }
}

/// How long a session may take to finish after its WebSocket closed.
const SESSION_DRAIN: std::time::Duration = std::time::Duration::from_secs(10);
