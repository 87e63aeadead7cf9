//! The MQTT/TLS listener's connection handler: one gateway session per connection.

use crate::app::MQTT_SHUTDOWN_GRACE;
use crate::listener::{Handler, Shutdown};
use fleethub_mqtt::Gateway;
use fleethub_mqtt::on_wake::OnWake;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// MQTT/TLS connections: one gateway session each; at shutdown a hub session finishes its
/// in-flight telemetry and closes cleanly ([`Gateway::shutdown`]; devices reconnect).
#[derive(Clone)]
pub(crate) struct MqttHandler(pub(crate) Arc<Gateway>);

impl Handler for MqttHandler {
    /// Not an `async fn`: every idle connection keeps this future for its whole life, and a
    /// future keeps room for its arguments (and for what it captures) besides the locals
    /// they are moved into. So the stream (a TLS connection, over a kilobyte) is boxed before
    /// the future exists, and the session's future is created inside it, not captured.
    fn serve(
        &self,
        stream: TlsStream<TcpStream>,
        peer: SocketAddr,
        mut shutdown: Shutdown,
    ) -> impl Future<Output = ()> + Send {
        let gw = self.0.clone();
        let stream = Box::new(stream);
        async move {
            let session =
                fleethub_mqtt::connection::serve_connection(gw, stream, peer.to_string(), "mqtt");
            tokio::pin!(session);
            // Polled only once it woke: this `select!` runs at every wake of the connection's
            // task, twice per telemetry message at one publish in flight.
            let shutting_down = OnWake::new(Box::pin(shutdown.recv()));
            tokio::select! {
                () = &mut session => {}
                () = shutting_down => {
                    if tokio::time::timeout(MQTT_SHUTDOWN_GRACE, session).await.is_err() {
                        tracing::debug!(%peer, "MQTT connection dropped for shutdown");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future `f` returns, without calling it.
    fn future_size<A, F: Future>(_: impl FnOnce(A) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// The handler's future holds the session's future once, and no copy of the TLS stream.
    #[test]
    fn the_handlers_future_holds_one_session_and_no_stream() {
        type Tls = TlsStream<TcpStream>;
        let session = future_size(|(gw, s): (Arc<Gateway>, Box<Tls>)| {
            fleethub_mqtt::connection::serve_connection(gw, s, String::new(), "mqtt")
        });
        let handler =
            future_size(|(h, s, p, d): (&MqttHandler, Tls, SocketAddr, Shutdown)| h.serve(s, p, d));
        let stream = std::mem::size_of::<Tls>();
        assert!(stream > 1000, "a TLS stream is {stream} bytes");
        assert!(
            handler < session + 512,
            "handler {handler} bytes, session {session} bytes"
        );
    }
}
