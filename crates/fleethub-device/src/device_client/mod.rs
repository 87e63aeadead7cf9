//! IoT Hub device client over MQTT 3.1.1, wire-compatible with the official device SDKs
//! (docs/protocol-notes.md, "Hub MQTT topics").
//!
//! - Connection: TLS to port 8883, client ID `{deviceId}` (`{deviceId}/{moduleId}` for
//!   modules), user name `{host}/{deviceId}/?api-version=2021-04-12&DeviceClientType=..`,
//!   password a SAS token for `{host}/devices/{deviceId}` signed with the device key,
//!   `clean_session = false`, keep-alive 60 s.
//! - Telemetry: [`DeviceClient::send_event`] publishes at QoS 1 and returns after PUBACK.
//! - Twin: [`DeviceClient::get_twin`], [`DeviceClient::patch_reported`],
//!   [`DeviceClient::desired_updates`].
//! - Direct methods: [`DeviceClient::method_requests`] + [`DeviceClient::respond`], or
//!   [`DeviceClient::on_method`].
//! - Cloud-to-device: [`DeviceClient::c2d_messages`]; a message is acknowledged (PUBACK,
//!   which completes it at the hub) only once it has been handed to the receiver.
//!
//! Subscriptions are made lazily, once per feature, and relied upon across reconnects: the
//! hub keeps them in the persistent session and answers `session-present = 1`. When it
//! answers 0 the client subscribes again to everything it had.
//!
//! Connection upkeep runs in a background task:
//! - SAS renewal: at 80 % of the token lifetime (48 min of the default hour, like the C
//!   SDK) the client disconnects and reconnects with a fresh token;
//! - dropped connections are re-established with exponential back-off and jitter
//!   ([`ReconnectPolicy`]); requests in flight when the connection drops fail with
//!   [`DeviceError::ConnectionLost`]; new requests wait for the connection (bounded by
//!   [`DeviceClientOptions::operation_timeout`]);
//! - a refused reconnection (CONNACK 1, 2, 4, 5: bad credentials, disabled device) is final:
//!   the client closes and every call fails with [`DeviceError::Closed`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), fleethub_device::DeviceError> {
//! use fleethub_device::{DeviceClient, DeviceClientOptions, Message};
//!
//! let options = DeviceClientOptions::default().with_ca_pem_file("fleethub-data/certs/ca.pem");
//! let client = DeviceClient::from_connection_string(
//!     "HostName=hub.fleethub.local;DeviceId=dev-01;SharedAccessKey=...",
//!     options,
//! )
//! .await?;
//! client.send_event(Message::json(&serde_json::json!({"temperature": 21.5}))).await?;
//! let version = client.patch_reported(serde_json::json!({"firmware": "1.0"})).await?;
//! println!("reported properties now at version {version}");
//! client.close().await;
//! # Ok(()) }
//! ```

mod c2d;
mod connection;
mod methods;
mod telemetry;
mod twin;

#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fleethub_core::connection_string::{ConnectionString, ConnectionStringError};
use fleethub_core::keys::KeyError;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::mqtt_client::{MqttClient, MqttError, connack_reason};
use crate::provisioning::RegistrationResult;
use crate::tls::TlsError;

pub use c2d::C2dMessage;
pub use connection::{
    ConnectionStatus, DEFAULT_OPERATION_TIMEOUT, DEFAULT_SAS_TTL, DeviceClientOptions,
    ReconnectPolicy, renewal_delay,
};
pub use methods::{MethodRequest, MethodResponse};
pub use telemetry::Message;

use connection::{ConnState, Connector, Credentials, Feature};

/// Why a device client call failed.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("invalid device client settings: {0}")]
    Config(String),
    #[error("invalid connection string: {0}")]
    ConnectionString(#[from] ConnectionStringError),
    #[error("invalid device key: {0}")]
    Key(#[from] KeyError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Mqtt(MqttError),
    /// The hub refused the MQTT connection (4/5: bad SAS token, unknown or disabled device).
    #[error(
        "the hub refused the MQTT connection: CONNACK code {code} ({reason}){}",
        if matches!(code, 4 | 5) { "; check the host name, device ID and key" } else { "" }
    )]
    Refused { code: u8, reason: &'static str },
    /// The connection dropped while the request was in flight (its outcome is unknown).
    #[error("MQTT connection lost while the request was in flight: {0}")]
    ConnectionLost(String),
    /// The client was closed ([`DeviceClient::close`], all handles dropped, or a refused
    /// reconnection).
    #[error("the device client is closed: {0}")]
    Closed(String),
    #[error("{what} did not complete within {after:?}")]
    Timeout { what: &'static str, after: Duration },
    /// A twin request answered with a non-2xx status.
    #[error("twin request failed with status {status}{}: {message}",
        error_code.map(|c| format!(" (errorCode {c})")).unwrap_or_default())]
    Twin {
        status: u16,
        error_code: Option<u64>,
        message: String,
    },
    #[error("the hub refused the subscription to '{0}'")]
    SubscribeRefused(String),
    #[error("message of {size} bytes (topic + body) exceeds the hub's {max}-byte limit")]
    MessageTooLarge { size: usize, max: usize },
    #[error("invalid JSON from the hub: {0}")]
    InvalidResponse(String),
}

impl DeviceError {
    pub(crate) fn from_mqtt(e: MqttError) -> Self {
        match e {
            MqttError::Refused(code) => DeviceError::Refused {
                code: code.as_u8(),
                reason: connack_reason(code),
            },
            MqttError::ConnectionLost(reason) => DeviceError::ConnectionLost(reason),
            other => DeviceError::Mqtt(other),
        }
    }

    /// Bad credentials: CONNACK 4 or 5.
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, DeviceError::Refused { code: 4 | 5, .. })
    }

    /// Errors that retrying the connection cannot fix.
    pub(crate) fn is_fatal(&self) -> bool {
        match self {
            DeviceError::Refused { code, .. } => *code != 3,
            DeviceError::Config(_)
            | DeviceError::ConnectionString(_)
            | DeviceError::Key(_)
            | DeviceError::Tls(TlsError::InvalidServerName(_)) => true,
            _ => false,
        }
    }
}

/// Hub identity of the client.
#[derive(Debug, Clone)]
pub(crate) struct Ids {
    pub(crate) host: String,
    pub(crate) device_id: String,
    pub(crate) module_id: Option<String>,
    /// `GatewayHostName`: dialled (and verified) instead of `host`.
    pub(crate) gateway: Option<String>,
}

/// A twin response matched to its request.
#[derive(Debug)]
pub(crate) struct TwinReply {
    pub(crate) status: u16,
    pub(crate) version: Option<u64>,
    pub(crate) body: bytes::Bytes,
}

type TwinWaiter = oneshot::Sender<Result<TwinReply, DeviceError>>;

/// An incoming PUBLISH still to be acknowledged, tied to the connection it came on.
pub(crate) struct Ack {
    mqtt: MqttClient,
    pkid: u16,
}

impl Ack {
    fn send(self) {
        // A dead connection cannot acknowledge: the hub redelivers on the next one.
        let _ = self.mqtt.ack(self.pkid);
    }
}

/// Hands items to an application receiver through an unbounded internal queue, so that
/// routing never waits for the application; the PUBACK (if any) follows the hand-over.
pub(crate) struct Sink<T> {
    tx: mpsc::UnboundedSender<(T, Option<Ack>)>,
}

impl<T: Send + 'static> Sink<T> {
    pub(crate) fn new(capacity: usize) -> (Sink<T>, mpsc::Receiver<T>) {
        let (user_tx, user_rx) = mpsc::channel(capacity.max(1));
        let (tx, mut rx) = mpsc::unbounded_channel::<(T, Option<Ack>)>();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    next = rx.recv() => {
                        let Some((item, ack)) = next else { return };
                        if user_tx.send(item).await.is_err() {
                            return;
                        }
                        if let Some(ack) = ack {
                            ack.send();
                        }
                    }
                    () = user_tx.closed() => return,
                }
            }
        });
        (Sink { tx }, user_rx)
    }

    /// Queues an item; gives it back when nobody listens any more.
    pub(crate) fn deliver(&self, item: T, ack: Option<Ack>) -> Result<(), (T, Option<Ack>)> {
        self.tx.send((item, ack)).map_err(|e| e.0)
    }
}

#[derive(Default)]
pub(crate) struct Sinks {
    desired: Option<Sink<Value>>,
    methods: Option<Sink<MethodRequest>>,
    c2d: Option<Sink<C2dMessage>>,
    /// C2D messages that arrived before anyone asked for them (a resumed session delivers
    /// the queue right after CONNACK): handed over by [`DeviceClient::c2d_messages`].
    c2d_backlog: Vec<(C2dMessage, Option<Ack>)>,
}

/// State shared by the client handles, the connection supervisor and helper tasks.
pub(crate) struct Shared {
    ids: Ids,
    credentials: Credentials,
    options: DeviceClientOptions,
    connector: Connector,
    state: watch::Sender<ConnState>,
    next_rid: AtomicU64,
    /// Operations holding a lease of the connection (`Shared::lease`).
    in_flight: AtomicUsize,
    twin_pending: Mutex<HashMap<String, TwinWaiter>>,
    /// Features subscribed on the hub; the lock also orders subscribing against
    /// re-subscribing after a reconnect.
    subscribed: tokio::sync::Mutex<BTreeSet<Feature>>,
    sinks: Mutex<Sinks>,
    /// Highest desired-properties `$version` seen (patches and full twins).
    last_desired_version: AtomicU64,
    close_tx: watch::Sender<bool>,
    supervisor: Mutex<Option<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Closes the connection when the last [`DeviceClient`] handle is dropped.
struct CloseOnDrop(Arc<Shared>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close_tx.send_replace(true);
    }
}

/// A connected hub device (or module) client. Cheap to clone; the connection closes when
/// [`DeviceClient::close`] is called or the last handle is dropped.
#[derive(Clone)]
pub struct DeviceClient {
    shared: Arc<Shared>,
    _guard: Arc<CloseOnDrop>,
}

impl fmt::Debug for DeviceClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceClient")
            .field("host", &self.shared.ids.host)
            .field("device_id", &self.shared.ids.device_id)
            .field("module_id", &self.shared.ids.module_id)
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

impl DeviceClient {
    /// Connects with a device or module connection string
    /// (`HostName=..;DeviceId=..[;ModuleId=..];SharedAccessKey=..`, or
    /// `SharedAccessSignature=..` instead of the key: such a token cannot be renewed, and
    /// the client closes once the hub refuses it). `GatewayHostName` is dialled instead of
    /// `HostName`. The first connection attempt is not retried: its error is returned.
    pub async fn from_connection_string(
        connection_string: &str,
        options: DeviceClientOptions,
    ) -> Result<DeviceClient, DeviceError> {
        let cs = ConnectionString::parse(connection_string)?;
        let (ids, credentials) = connection::identity_from_connection_string(cs)?;
        Self::connect(ids, credentials, options).await
    }

    /// Connects to the hub a DPS registration assigned, with the device key used to
    /// register (for a group enrollment: the derived key, `ProvisioningClient::device_key`).
    pub async fn from_provisioning(
        registration: &RegistrationResult,
        device_key: &str,
        options: DeviceClientOptions,
    ) -> Result<DeviceClient, DeviceError> {
        fleethub_core::keys::decode_key(device_key)?;
        let ids = Ids {
            host: registration.assigned_hub.clone(),
            device_id: registration.device_id.clone(),
            module_id: None,
            gateway: None,
        };
        Self::connect(
            ids,
            Credentials::Key(device_key.trim().to_string()),
            options,
        )
        .await
    }

    async fn connect(
        ids: Ids,
        credentials: Credentials,
        options: DeviceClientOptions,
    ) -> Result<DeviceClient, DeviceError> {
        let connector = connection::tls_connector(&ids, &options)?;
        Self::connect_with(ids, credentials, options, connector).await
    }

    /// Connects over streams made by `connector` (TLS normally; in-memory in tests).
    pub(crate) async fn connect_with(
        ids: Ids,
        credentials: Credentials,
        options: DeviceClientOptions,
        connector: Connector,
    ) -> Result<DeviceClient, DeviceError> {
        connection::validate(&ids, &options)?;
        let (close_tx, close_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            ids,
            credentials,
            options,
            connector,
            state: watch::Sender::new(ConnState::Connecting { last_error: None }),
            next_rid: AtomicU64::new(1),
            in_flight: AtomicUsize::new(0),
            twin_pending: Mutex::new(HashMap::new()),
            subscribed: tokio::sync::Mutex::new(BTreeSet::new()),
            sinks: Mutex::new(Sinks::default()),
            last_desired_version: AtomicU64::new(0),
            close_tx,
            supervisor: Mutex::new(None),
        });
        let established = shared.connect_once().await?;
        shared.activate(&established, 1).await?;
        let task = tokio::spawn(connection::supervise(shared.clone(), established, close_rx));
        *lock(&shared.supervisor) = Some(task);
        Ok(DeviceClient {
            _guard: Arc::new(CloseOnDrop(shared.clone())),
            shared,
        })
    }

    /// The hub host name (`HostName`, or the DPS-assigned hub).
    pub fn host(&self) -> &str {
        &self.shared.ids.host
    }

    pub fn device_id(&self) -> &str {
        &self.shared.ids.device_id
    }

    pub fn module_id(&self) -> Option<&str> {
        self.shared.ids.module_id.as_deref()
    }

    /// Current connection state.
    pub fn status(&self) -> ConnectionStatus {
        self.shared.status()
    }

    /// Watches connection state changes (connected, reconnecting, closed).
    pub fn status_changes(&self) -> watch::Receiver<ConnectionStatus> {
        self.shared.status_changes()
    }

    /// Disconnects (DISCONNECT) and stops reconnecting. Requests in flight fail, receivers
    /// end after the items already handed over. Idempotent.
    pub async fn close(&self) {
        self.shared.close_tx.send_replace(true);
        let task = lock(&self.shared.supervisor).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}
