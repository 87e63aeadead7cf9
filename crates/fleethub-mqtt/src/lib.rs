//! The MQTT gateway. One connection task per client ([`connection`]) reads the CONNECT and
//! hands the client to the DPS ([`dps_session`]) or the hub ([`hub_session`]) side by its user
//! name. Each side authenticates the CONNECT, then drives an IO-free session state machine
//! (packets in, [`session::Action`]s out) and performs the service calls it asks for. Topic
//! strings are parsed by `fleethub_iot_protocol`; [`topics`] says which of them the gateway
//! serves. The same task serves MQTT over TLS and MQTT over WebSocket (the server pipes the
//! WebSocket's bytes into it).

pub mod connection;
mod dps_session;
mod errors;
mod hub_session;
mod live;
pub mod on_wake;
mod session;
pub mod topics;

/// The size of the future `f` returns, without calling it (the tests that pin the sizes of
/// the futures every connection keeps).
#[cfg(test)]
fn future_size<A, F: Future>(_: impl FnOnce(A) -> F) -> usize {
    std::mem::size_of::<F>()
}

use fleethub_services::{Dps, Hub};
use std::sync::Arc;
use tokio::sync::watch;

/// Gateway settings.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Largest packet accepted (remaining length), bytes.
    pub max_packet_bytes: usize,
    /// Time a client has to send CONNECT after the transport is up.
    pub connect_timeout_secs: u64,
    /// Idle limit for clients that ask for no keep-alive (DPS clients are short-lived).
    pub idle_timeout_secs: u64,
    /// A connection whose writes make no progress for this long (the client stopped reading
    /// its socket) is cut off.
    pub write_stall_timeout_secs: u64,
    /// Longest a hub connection stays open on one SAS token: a token valid for longer is
    /// accepted, but the connection is closed at this cap and the device reconnects (and is
    /// authenticated against the registry again). Azure's SDKs renew tokens hourly.
    pub max_token_lifetime_secs: u64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            max_packet_bytes: 256 * 1024 + 4096,
            connect_timeout_secs: 30,
            idle_timeout_secs: 300,
            write_stall_timeout_secs: 30,
            max_token_lifetime_secs: 24 * 3600,
        }
    }
}

/// Shared state of all MQTT connections.
pub struct Gateway {
    pub dps: Arc<Dps>,
    pub hub: Arc<Hub>,
    pub cfg: GatewayConfig,
    pub(crate) live: live::LiveConnections,
    /// Set once when the server shuts down: hub sessions finish what they are doing (telemetry
    /// commit, PUBACKs), then close.
    shutdown: watch::Sender<bool>,
}

impl Gateway {
    pub fn new(dps: Arc<Dps>, hub: Arc<Hub>, cfg: GatewayConfig) -> Arc<Gateway> {
        Arc::new(Gateway {
            dps,
            hub,
            cfg,
            live: live::LiveConnections::default(),
            shutdown: watch::Sender::new(false),
        })
    }

    /// Asks every session to finish its in-flight work and close (server shutdown). New
    /// connections that still arrive are closed after their CONNECT.
    pub fn shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Resolves once [`Gateway::shutdown`] was called.
    pub(crate) fn shutting_down(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.shutdown.subscribe();
        async move {
            let _ = rx.wait_for(|down| *down).await;
        }
    }

    /// Number of hub device connections currently open.
    pub fn connected_devices(&self) -> usize {
        self.live.len()
    }
}
