//! The WebSocket endpoint the SDKs dial (`wss://{hub}:443/$iothub/websocket`): picks the
//! subprotocol the client offers and hands the upgraded socket to the transport serving it.
//! An upgrade offering no subprotocol we serve is refused with 400 (see
//! `docs/protocol-notes.md`, "Hub MQTT user names and client ids"); the 101 answer names the selected one in
//! `Sec-WebSocket-Protocol`. AMQP (`AMQPWSB10`) is served on the same path and on
//! `/$servicebus/websocket` (Event Hubs clients), told apart by the subprotocol (see
//! `docs/protocol-notes.md`, "AMQP transport and SASL").

pub mod byte_stream;

use crate::listener::Shutdown;
use axum::Extension;
use axum::extract::{ConnectInfo, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use byte_stream::TextMessages;
use fleethub_amqp::AmqpService;
use fleethub_iot_protocol::websocket as paths;
use fleethub_mqtt::Gateway;
use std::net::SocketAddr;
use std::sync::Arc;

/// A transport served over the WebSocket endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subprotocol {
    /// MQTT 3.1.1 (`mqtt`; the C SDK sends `MQTT`).
    Mqtt,
    /// AMQP 1.0 (`AMQPWSB10`).
    Amqp,
}

impl Subprotocol {
    /// The subprotocol names we serve, in order of preference, with the transport each selects.
    /// Names are compared exactly (RFC 6455 tokens are case-sensitive) and echoed as sent.
    const SERVED: [(&'static str, Subprotocol); 3] = [
        (paths::MQTT_SUBPROTOCOLS[0], Subprotocol::Mqtt),
        (paths::MQTT_SUBPROTOCOLS[1], Subprotocol::Mqtt),
        (paths::AMQP_SUBPROTOCOL, Subprotocol::Amqp),
    ];

    /// The first served subprotocol among those the client offered.
    pub fn select(offered: &[&[u8]]) -> Option<(&'static str, Subprotocol)> {
        Self::SERVED
            .into_iter()
            .find(|(name, _)| offered.contains(&name.as_bytes()))
    }
}

/// What the WebSocket endpoint needs to serve its transports.
#[derive(Clone)]
pub struct Endpoint {
    pub gateway: Arc<Gateway>,
    pub amqp: Arc<AmqpService>,
    /// Largest WebSocket message (and frame) accepted: MQTT's packet bound, so that an
    /// unauthenticated client cannot make us buffer more than one MQTT packet's worth.
    pub max_message_bytes: usize,
}

impl Endpoint {
    /// Adds the WebSocket paths: [`paths::HUB_PATH`] (MQTT and AMQP) and
    /// [`paths::SERVICEBUS_PATH`] (AMQP, the Event Hubs clients' path).
    pub fn routes(self, router: axum::Router) -> axum::Router {
        let other = self.clone();
        router
            .route(
                paths::HUB_PATH,
                axum::routing::get(move |ws, peer, conn| {
                    std::future::ready(self.upgrade(ws, peer, conn))
                }),
            )
            .route(
                paths::SERVICEBUS_PATH,
                axum::routing::get(move |ws, peer, conn| {
                    std::future::ready(other.upgrade(ws, peer, conn))
                }),
            )
    }

    /// The route handler of the WebSocket paths. `conn` is the HTTPS connection's
    /// [`Shutdown`] (see `counted`).
    pub fn upgrade(
        &self,
        ws: WebSocketUpgrade,
        ConnectInfo(peer): ConnectInfo<SocketAddr>,
        conn: Option<Extension<Shutdown>>,
    ) -> Response {
        let offered: Vec<&[u8]> = ws
            .requested_protocols()
            .map(axum::http::HeaderValue::as_bytes)
            .collect();
        let Some((name, proto)) = Subprotocol::select(&offered) else {
            tracing::debug!(%peer, "WebSocket upgrade refused: no subprotocol we serve");
            return (
                StatusCode::BAD_REQUEST,
                "Sec-WebSocket-Protocol must offer a subprotocol this endpoint serves (mqtt, AMQPWSB10)",
            )
                .into_response();
        };
        let ws = ws
            .protocols([name])
            .max_message_size(self.max_message_bytes)
            .max_frame_size(self.max_message_bytes);
        match proto {
            Subprotocol::Mqtt => {
                let gw = self.gateway.clone();
                ws.on_upgrade(move |socket| {
                    let peer = peer.to_string();
                    let session =
                        byte_stream::serve(socket, TextMessages::AsBytes, "mqtt-ws", |io| {
                            fleethub_mqtt::connection::serve_connection(gw, io, peer, "mqtt-ws")
                        });
                    counted(conn, session)
                })
            }
            Subprotocol::Amqp => {
                let amqp = self.amqp.clone();
                ws.on_upgrade(move |socket| {
                    let peer = peer.to_string();
                    let connection = byte_stream::serve(
                        socket,
                        TextMessages::Ignore,
                        "amqp-ws",
                        |io| async move {
                            amqp.serve(io, peer, "amqp-ws").await;
                        },
                    );
                    counted(conn, connection)
                })
            }
        }
    }
}

/// Runs an upgraded session as part of the HTTPS connection it came from: holding that
/// connection's [`Shutdown`], it stays counted by the listener's connection limit and by the
/// shutdown drain, and once shutdown begins it has the MQTT grace period to finish (the hub
/// and DPS sessions close by themselves at shutdown, AMQP connections are closed by the AMQP
/// service's shutdown).
async fn counted(conn: Option<Extension<Shutdown>>, session: impl Future<Output = ()>) {
    let Some(Extension(mut shutdown)) = conn else {
        return session.await;
    };
    tokio::pin!(session);
    tokio::select! {
        () = &mut session => {}
        () = shutdown.recv() => {
            if tokio::time::timeout(crate::app::MQTT_SHUTDOWN_GRACE, session).await.is_err() {
                tracing::debug!("WebSocket session dropped for shutdown");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn select(offered: &[&str]) -> Option<(&'static str, Subprotocol)> {
        let offered: Vec<&[u8]> = offered.iter().map(|s| s.as_bytes()).collect();
        Subprotocol::select(&offered)
    }

    #[test]
    fn selects_a_served_subprotocol_as_offered() {
        assert_eq!(select(&["mqtt"]), Some(("mqtt", Subprotocol::Mqtt)));
        assert_eq!(select(&["MQTT"]), Some(("MQTT", Subprotocol::Mqtt)));
        assert_eq!(
            select(&["AMQPWSB10", "mqtt"]),
            Some(("mqtt", Subprotocol::Mqtt))
        );
        assert_eq!(
            select(&["AMQPWSB10"]),
            Some(("AMQPWSB10", Subprotocol::Amqp))
        );
    }

    #[test]
    fn refuses_when_nothing_served_is_offered() {
        assert_eq!(select(&[]), None);
        assert_eq!(select(&["amqpwsb10"]), None);
        assert_eq!(select(&["Mqtt"]), None);
    }
}
