//! AMQP over WebSocket (subprotocol `AMQPWSB10`, paths `/$servicebus/websocket` and
//! `/$iothub/websocket`): binary messages carry the AMQP byte stream; they are pumped through
//! an in-memory pipe into the same connection handling as AMQPS.

use crate::AmqpService;
use axum::extract::ws::{Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The WebSocket subprotocol of AMQP.
pub const SUBPROTOCOL: &str = "AMQPWSB10";
/// The path Event Hubs clients use.
pub const SERVICEBUS_PATH: &str = "/$servicebus/websocket";

/// Serves an upgraded WebSocket as an AMQP connection.
pub async fn serve_websocket(service: Arc<AmqpService>, ws: WebSocket, peer: String) {
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let (mut pipe_rd, mut pipe_wr) = tokio::io::split(theirs);
    let (mut sink, mut stream) = ws.split();
    let inbound = async move {
        while let Some(Ok(msg)) = stream.next().await {
            let data = match msg {
                Message::Binary(b) => b,
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
    let connection = service.serve(ours, peer, "amqp-ws");
    // The connection ends when the client goes away (it reads EOF from the pipe).
    tokio::join!(connection, inbound, outbound);
}
