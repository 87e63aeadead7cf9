//! The AMQPS listener's connections: each TLS stream is one `fleethub-amqp` connection. At
//! shutdown `AmqpService::shutdown` closes them (`amqp:connection:forced`); a connection that
//! does not finish its close handshake within [`AMQP_SHUTDOWN_GRACE`] is dropped.

use crate::config::Config;
use crate::listener::{Handler, Shutdown};
use fleethub_amqp::{AmqpConfig, AmqpService};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// How long an AMQP connection may take to close after shutdown began.
const AMQP_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The AMQP endpoint's settings from the server configuration.
pub fn amqp_config(cfg: &Config) -> AmqpConfig {
    AmqpConfig {
        port: cfg.amqp_port,
        ..AmqpConfig::default()
    }
}

/// AMQPS connections.
#[derive(Clone)]
pub struct AmqpHandler(pub Arc<AmqpService>);

impl Handler for AmqpHandler {
    async fn serve(&self, stream: TlsStream<TcpStream>, peer: SocketAddr, mut shutdown: Shutdown) {
        let connection = self.0.serve(stream, peer.to_string(), "amqps");
        tokio::pin!(connection);
        tokio::select! {
            () = &mut connection => {}
            () = shutdown.recv() => {
                if tokio::time::timeout(AMQP_SHUTDOWN_GRACE, connection).await.is_err() {
                    tracing::debug!(%peer, "AMQP connection dropped for shutdown");
                }
            }
        }
    }
}
