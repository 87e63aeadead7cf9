//! fleethub's AMQP 1.0 transport. The service plane of an IoT hub: the Event Hubs-compatible
//! built-in endpoint (receivers on `{eventHub}/ConsumerGroups/{group}/Partitions/{n}`,
//! `$management`), the redirect from `messages/events`, service-side cloud-to-device sends
//! (`/messages/devicebound`) and their feedback (`/messages/servicebound/feedback`), with SASL
//! and claims-based security (`$cbs`). The device plane (`device`): devices and modules
//! authenticated with `$cbs` tokens (several per connection), their telemetry, cloud-to-device,
//! twin and method links. DPS registration over AMQP (`dps`).
//!
//! Like the MQTT and HTTP transports it calls `fleethub-services` only; the AMQP codec,
//! connection, session and link state machines are `fe2o3-amqp`'s. Protocol conventions live in
//! small modules (`addresses`, `filters`, `request`, `cbs`, `c2d`, `sasl`); service errors
//! become AMQP conditions in `errors` only. The facts relied on are in
//! `docs/protocol-notes.md` ("AMQP ..." sections).

pub mod addresses;
pub mod c2d;
pub mod cbs;
pub mod claims;
pub mod coalesced_writes;
mod connection;
pub mod device;
pub mod dps;
pub mod errors;
pub mod events;
pub mod filters;
pub mod full_fields;
pub mod late_frames;
mod links;
mod management;
pub mod request;
pub mod rewind;
pub mod sasl;

use fleethub_services::{Clock, Dps, Hub, ServiceAuth};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};

/// Limits and names of the AMQP endpoint.
#[derive(Debug, Clone)]
pub struct AmqpConfig {
    /// The AMQPS port named in redirects (`amqp_port`).
    pub port: u16,
    /// Largest AMQP frame accepted (negotiated in Open); bigger frames close the connection.
    pub max_frame_size: u32,
    /// Most links one connection may have open; further attaches are refused with
    /// `amqp:resource-limit-exceeded`.
    pub max_links_per_connection: usize,
    /// Most sessions one connection may begin.
    pub max_sessions_per_connection: usize,
    /// A connection that sends nothing for this long is closed (heartbeats count), ms.
    pub idle_timeout_ms: u32,
}

impl Default for AmqpConfig {
    fn default() -> Self {
        AmqpConfig {
            port: 5671,
            max_frame_size: 64 * 1024,
            max_links_per_connection: 64,
            max_sessions_per_connection: 16,
            idle_timeout_ms: 240_000,
        }
    }
}

/// The AMQP endpoint: shared by every AMQP connection (AMQPS and AMQP over WebSocket).
pub struct AmqpService {
    hub: Arc<Hub>,
    auth: Arc<ServiceAuth>,
    /// The DPS served on the same listener (`{idScope}/registrations/{id}` links), if any.
    dps: Option<Arc<Dps>>,
    cfg: AmqpConfig,
    clock: Clock,
    shutdown: tokio::sync::watch::Sender<bool>,
    epochs: links::epochs::Epochs,
}

impl AmqpService {
    /// `auth` verifies the hub's service tokens (the hub's shared access policies).
    pub fn new(hub: Arc<Hub>, auth: Arc<ServiceAuth>, cfg: AmqpConfig) -> Arc<AmqpService> {
        Self::new_with_dps(hub, auth, None, cfg)
    }

    /// [`AmqpService::new`] that also serves device registrations over AMQP with `dps`.
    pub fn new_with_dps(
        hub: Arc<Hub>,
        auth: Arc<ServiceAuth>,
        dps: Option<Arc<Dps>>,
        cfg: AmqpConfig,
    ) -> Arc<AmqpService> {
        Arc::new(AmqpService {
            hub,
            auth,
            dps,
            cfg,
            clock: Clock::system(),
            shutdown: tokio::sync::watch::Sender::new(false),
            epochs: links::epochs::Epochs::default(),
        })
    }

    /// Serves one connection (TLS already done) until it closes.
    pub async fn serve<Io>(self: &Arc<Self>, io: Io, peer: String, transport: &'static str)
    where
        Io: AsyncRead + AsyncWrite + std::fmt::Debug + Send + Unpin + 'static,
    {
        connection::serve(self.clone(), io, peer, transport).await;
    }

    /// Closes every connection (`amqp:connection:forced`); new ones are closed at once.
    pub fn shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// The Event Hubs-compatible name (the hub's name).
    fn event_hub_name(&self) -> String {
        self.hub.event_hub_name().to_string()
    }

    /// The hub's host name (this endpoint's host).
    fn host(&self) -> &str {
        &self.hub.config().host
    }
}
