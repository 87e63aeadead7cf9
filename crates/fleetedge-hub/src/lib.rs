//! Local edge hub (`$edgeHub`) for fleetedge.
//!
//! Serves the device's modules over MQTT/TLS ([`listener`], [`session`]), routes their
//! messages according to the `$edgeHub` module twin ([`routes`], [`config`], [`twin`]),
//! stores them durably on disk ([`queue`]) and forwards them upstream ([`upstream`]), one
//! upstream connection per sending module identity. See docs/edge-hub.md.

pub mod config;
mod hub;
pub mod listener;
pub mod message;
pub mod queue;
pub mod routes;
mod session;
pub mod topics;
mod twin;
pub mod upstream;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hub::Hub;

/// Symmetric keys of one module identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleKeys {
    pub primary: String,
    pub secondary: String,
    pub generation_id: String,
}

/// Supplied by the daemon: symmetric keys of this device's module identities (incl. "$edgeHub").
/// Used to verify module SAS tokens locally and to open upstream connections as that module.
pub trait CredentialSource: Send + Sync + 'static {
    fn module_keys(&self, module_id: &str) -> Option<ModuleKeys>;
}

/// Where the upstream IoT hub is.
#[derive(Clone, Debug)]
pub struct UpstreamOptions {
    /// Assigned hub host name (also the name modules put in `sr=` / username).
    pub hub_hostname: String,
    /// Upstream hub MQTT/TLS port (8883 by default; tests use others).
    pub mqtt_port: u16,
    /// Optional IP/host to dial instead of `hub_hostname` (TLS name stays `hub_hostname`).
    pub connect_address: Option<String>,
    /// Trust bundle for the upstream hub's certificate.
    pub ca_pem_path: Option<PathBuf>,
}

/// Configuration of the local edge hub.
#[derive(Clone, Debug)]
pub struct EdgeHubOptions {
    pub device_id: String,
    /// Module-facing MQTT/TLS listeners (e.g. 127.0.0.2:8883).
    pub listen: Vec<SocketAddr>,
    /// TLS identity shown to modules (the daemon issues it from its edge CA).
    pub server_cert_chain_pem: String,
    pub server_key_pem: String,
    pub upstream: UpstreamOptions,
    /// Store-and-forward queue lives here (created 0700).
    pub state_dir: PathBuf,
    /// Bound of the on-disk queue.
    pub queue_max_bytes: u64,
    /// Used until `$edgeHub` desired `storeAndForwardConfiguration.timeToLiveSecs` says otherwise.
    pub default_ttl: Duration,
}

/// A snapshot of the edge hub's state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EdgeHubStatus {
    pub upstream_connected: bool,
    pub connected_modules: Vec<String>,
    pub queued_messages: u64,
    pub queued_bytes: u64,
    /// Route names currently applied.
    pub routes: Vec<String>,
    pub last_error: Option<String>,
    /// Messages dropped because their time to live passed before delivery (since start).
    pub expired_messages: u64,
    /// Messages refused because the queue was full (since start).
    pub rejected_messages: u64,
}

/// Errors starting the edge hub.
#[derive(thiserror::Error, Debug)]
pub enum EdgeHubError {
    #[error("invalid edge hub configuration: {0}")]
    Config(String),
    #[error("TLS configuration: {0}")]
    Tls(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("state directory {path}: {source}")]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("message queue: {0}")]
    Queue(#[from] queue::QueueError),
}

/// The local edge hub.
pub struct EdgeHub;

impl EdgeHub {
    /// Opens the queue in `state_dir`, applies the cached routes (or the default route),
    /// binds the listeners and starts the upstream connections.
    pub async fn start(
        opts: EdgeHubOptions,
        creds: Arc<dyn CredentialSource>,
    ) -> Result<EdgeHubHandle, EdgeHubError> {
        let hub = Hub::start(opts, creds).await?;
        Ok(EdgeHubHandle { hub })
    }
}

/// Handle of a running edge hub.
pub struct EdgeHubHandle {
    hub: Arc<Hub>,
}

impl EdgeHubHandle {
    pub fn status(&self) -> EdgeHubStatus {
        self.hub.status()
    }

    /// Bound listener addresses (with the actual ports when port 0 was asked for).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.hub.local_addrs.clone()
    }

    /// Stops listening, closes module and upstream connections and the queue. Queued
    /// messages stay on disk for the next start.
    pub async fn shutdown(self) {
        self.hub.shutdown().await;
    }
}

impl Drop for EdgeHubHandle {
    /// A handle dropped without [`EdgeHubHandle::shutdown`] still stops the edge hub (without
    /// waiting for its tasks).
    fn drop(&mut self) {
        self.hub.stop();
    }
}
