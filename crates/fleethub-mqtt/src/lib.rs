//! The MQTT gateway. One connection task per client ([`connection`]) reads the CONNECT and
//! hands the client to the DPS ([`dps_session`]) or the hub ([`hub_session`]) side by its user
//! name. Each side authenticates the CONNECT, then drives an IO-free session state machine
//! (packets in, [`session::Action`]s out) and performs the service calls it asks for. Topic
//! strings are parsed by `fleethub_iot_protocol`; [`topics`] says which of them the gateway
//! serves. The same task serves MQTT over TLS and, through [`websocket`], MQTT over WebSocket.

pub mod connection;
mod dps_session;
mod errors;
mod hub_session;
mod live;
mod session;
pub mod topics;
pub mod websocket;

use fleethub_services::{Dps, Hub};
use std::sync::Arc;

/// Gateway settings.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Largest packet accepted (remaining length), bytes.
    pub max_packet_bytes: usize,
    /// Time a client has to send CONNECT after the transport is up.
    pub connect_timeout_secs: u64,
    /// Idle limit for clients that ask for no keep-alive (DPS clients are short-lived).
    pub idle_timeout_secs: u64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            max_packet_bytes: 256 * 1024 + 4096,
            connect_timeout_secs: 30,
            idle_timeout_secs: 300,
        }
    }
}

/// Shared state of all MQTT connections.
pub struct Gateway {
    pub dps: Arc<Dps>,
    pub hub: Arc<Hub>,
    pub cfg: GatewayConfig,
    pub(crate) live: live::LiveConnections,
}

impl Gateway {
    pub fn new(dps: Arc<Dps>, hub: Arc<Hub>, cfg: GatewayConfig) -> Arc<Gateway> {
        Arc::new(Gateway {
            dps,
            hub,
            cfg,
            live: live::LiveConnections::default(),
        })
    }

    /// Number of hub device connections currently open.
    pub fn connected_devices(&self) -> usize {
        self.live.len()
    }
}
