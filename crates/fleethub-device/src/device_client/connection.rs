//! Connection and authentication: options, credentials and SAS tokens, the TLS connector,
//! CONNECT, and the supervisor task (dispatch of incoming packets, SAS renewal, reconnection
//! with back-off, re-subscription when the session was not kept).

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use fleethub_core::connection_string::ConnectionString;
use fleethub_mqtt_codec::{Publish, QoS, SubscribeReturnCode};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio::time::Instant;

use super::{Ack, DeviceError, Ids, Shared, TwinReply, lock};
use crate::mqtt_client::{DEFAULT_CONNACK_TIMEOUT, MqttClient, MqttIncoming, MqttOptions};
use crate::tls::ClientTlsConfig;
use fleethub_iot_protocol::hub::{self, HubTopic};
use fleethub_iot_protocol::identity;

/// Default port of MQTT over TLS.
pub const DEFAULT_PORT: u16 = 8883;
/// Default SAS token lifetime (as the SDKs: one hour).
pub const DEFAULT_SAS_TTL: Duration = Duration::from_secs(3600);
/// Default keep-alive (the Python SDK's).
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(60);
/// Default bound on one operation (waiting for the connection included).
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on the courtesy DISCONNECT before a renewal reconnect or on close.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a SAS renewal may wait for operations in flight (PUBACKs, twin responses).
const RENEWAL_GRACE: Duration = Duration::from_secs(10);

/// When to reconnect with a fresh token: 80 % of the token lifetime (the C SDK's
/// `SAS_REFRESH_MULTIPLIER`), so well before the hub drops the connection at expiry.
pub fn renewal_delay(sas_ttl: Duration) -> Duration {
    sas_ttl.mul_f64(0.8)
}

/// Reconnection after a dropped connection: exponential back-off with jitter.
#[derive(Debug, Clone, PartialEq)]
pub struct ReconnectPolicy {
    /// Reconnect at all (default true). When false a dropped connection closes the client.
    pub enabled: bool,
    /// Base delay of the first retry (default 1 s); doubles per failed attempt.
    pub initial_delay: Duration,
    /// Upper bound of a delay (default 60 s).
    pub max_delay: Duration,
    /// Give up (close the client) after this many failed attempts in a row (default: never).
    pub max_attempts: Option<u32>,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        ReconnectPolicy {
            enabled: true,
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            max_attempts: None,
        }
    }
}

impl ReconnectPolicy {
    /// The wait before retry number `attempt` (0 = first retry), for a `jitter` in `[0, 1]`:
    /// `base = min(max_delay, initial_delay * 2^attempt)`, then a uniform pick in
    /// `[base / 2, base]` ("equal jitter": spreads a fleet's reconnects, never exceeds
    /// `max_delay`, never drops below half the base).
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let factor = 2f64.powi(attempt.min(62) as i32);
        let base = (self.initial_delay.as_secs_f64() * factor).min(self.max_delay.as_secs_f64());
        let jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            1.0
        };
        Duration::from_secs_f64(base * (0.5 + 0.5 * jitter))
    }

    fn next_delay(&self, attempt: u32) -> Duration {
        self.delay(attempt, rand::random::<f64>())
    }
}

/// Settings of a [`super::DeviceClient`].
#[derive(Debug, Clone)]
pub struct DeviceClientOptions {
    /// TLS settings (trust store, connect timeout, address overrides). Takes precedence
    /// over `ca_pem_file`.
    pub tls: Option<ClientTlsConfig>,
    /// CA PEM to trust (normally the server's `certs/ca.pem`); without `tls` and
    /// `ca_pem_file`, the system bundle.
    pub ca_pem_file: Option<PathBuf>,
    /// MQTT/TLS port (default 8883).
    pub port: u16,
    /// Keep-alive announced in CONNECT (default 60 s).
    pub keep_alive: Duration,
    /// Lifetime of the SAS tokens the client signs (default 1 h); renewed at 80 %.
    pub sas_ttl: Duration,
    /// Dial this address (`host`, `host:port` or `[v6]:port`) instead of the hub host name,
    /// still verifying the certificate for the hub (or gateway) host name. For tests and
    /// hosts without DNS.
    pub connect_address: Option<String>,
    /// Bound on one call (waiting for a reconnection included; default 60 s).
    pub operation_timeout: Duration,
    pub reconnect: ReconnectPolicy,
    /// Capacity of the receivers returned for desired updates, methods and C2D (default 64).
    pub channel_capacity: usize,
}

impl Default for DeviceClientOptions {
    fn default() -> Self {
        DeviceClientOptions {
            tls: None,
            ca_pem_file: None,
            port: DEFAULT_PORT,
            keep_alive: DEFAULT_KEEP_ALIVE,
            sas_ttl: DEFAULT_SAS_TTL,
            connect_address: None,
            operation_timeout: DEFAULT_OPERATION_TIMEOUT,
            reconnect: ReconnectPolicy::default(),
            channel_capacity: 64,
        }
    }
}

impl DeviceClientOptions {
    pub fn with_tls(mut self, tls: ClientTlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    pub fn with_ca_pem_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_pem_file = Some(path.into());
        self
    }

    pub fn with_port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    pub fn with_keep_alive(mut self, keep_alive: Duration) -> Self {
        self.keep_alive = keep_alive;
        self
    }

    pub fn with_sas_ttl(mut self, ttl: Duration) -> Self {
        self.sas_ttl = ttl;
        self
    }

    pub fn with_connect_address(mut self, address: impl Into<String>) -> Self {
        self.connect_address = Some(address.into());
        self
    }

    pub fn with_operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    pub fn with_reconnect(mut self, policy: ReconnectPolicy) -> Self {
        self.reconnect = policy;
        self
    }
}

pub(crate) fn validate(ids: &Ids, options: &DeviceClientOptions) -> Result<(), DeviceError> {
    let bad = |m: String| Err(DeviceError::Config(m));
    if ids.host.trim().is_empty() {
        return bad("the hub host name is empty".into());
    }
    for (what, id) in [
        ("device ID", Some(ids.device_id.as_str())),
        ("module ID", ids.module_id.as_deref()),
    ] {
        if let Some(id) = id
            && (id.is_empty() || id.contains(['/', '#', '+']))
        {
            return bad(format!(
                "{what} '{id}' is empty or contains '/', '#' or '+'"
            ));
        }
    }
    if options.sas_ttl < Duration::from_secs(1) {
        return bad("sas_ttl must be at least 1 s".into());
    }
    if options.port == 0 {
        return bad("port 0".into());
    }
    Ok(())
}

/// How the client authenticates.
#[derive(Clone)]
pub(crate) enum Credentials {
    /// A device/module key: a fresh token per connection.
    Key(String),
    /// A fixed token from the connection string (`SharedAccessSignature=`).
    Token(String),
}

impl Credentials {
    pub(crate) fn renewable(&self) -> bool {
        matches!(self, Credentials::Key(_))
    }
}

pub(crate) fn identity_from_connection_string(
    cs: ConnectionString,
) -> Result<(Ids, Credentials), DeviceError> {
    if cs.x509 {
        return Err(DeviceError::Config(
            "x509=true: X.509 authentication is not supported by this client; use a symmetric key"
                .into(),
        ));
    }
    if let Some(name) = &cs.shared_access_key_name {
        return Err(DeviceError::Config(format!(
            "this is a service connection string (SharedAccessKeyName={name}); \
             a device needs HostName=..;DeviceId=..;SharedAccessKey=.."
        )));
    }
    let device_id = cs
        .device_id
        .ok_or_else(|| DeviceError::Config("the connection string has no DeviceId".into()))?;
    let credentials = match (cs.shared_access_key, cs.shared_access_signature) {
        (Some(key), _) => {
            fleethub_core::keys::decode_key(&key)?;
            Credentials::Key(key)
        }
        (None, Some(sas)) => Credentials::Token(sas),
        (None, None) => {
            return Err(DeviceError::Config(
                "the connection string has neither SharedAccessKey nor SharedAccessSignature"
                    .into(),
            ));
        }
    };
    Ok((
        Ids {
            host: cs.host_name,
            device_id,
            module_id: cs.module_id,
            gateway: cs.gateway_host_name,
        },
        credentials,
    ))
}

/// A byte stream the MQTT client can run on.
pub(crate) trait Transport: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Transport for T {}

pub(crate) type BoxTransport = Box<dyn Transport>;
pub(crate) type ConnectFuture =
    Pin<Box<dyn Future<Output = Result<BoxTransport, DeviceError>> + Send>>;
/// Makes a new transport stream per connection attempt.
pub(crate) type Connector = Arc<dyn Fn() -> ConnectFuture + Send + Sync>;

/// Splits `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_address(address: &str, default_port: u16) -> Result<(String, u16), DeviceError> {
    let bad = || DeviceError::Config(format!("invalid connect_address '{address}'"));
    if let Some(rest) = address.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or_else(bad)?;
        return match after.strip_prefix(':') {
            Some(p) => Ok((h.to_string(), p.parse().map_err(|_| bad())?)),
            None if after.is_empty() => Ok((h.to_string(), default_port)),
            None => Err(bad()),
        };
    }
    match address.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && !h.is_empty() => {
            Ok((h.to_string(), p.parse().map_err(|_| bad())?))
        }
        _ if address.is_empty() => Err(bad()),
        _ => Ok((address.to_string(), default_port)),
    }
}

/// TCP + TLS to the gateway or hub (or `connect_address`), verifying the gateway or hub
/// host name.
pub(crate) fn tls_connector(
    ids: &Ids,
    options: &DeviceClientOptions,
) -> Result<Connector, DeviceError> {
    let tls = match (&options.tls, &options.ca_pem_file) {
        (Some(tls), _) => tls.clone(),
        (None, Some(path)) => ClientTlsConfig::with_ca_file(path)?,
        (None, None) => ClientTlsConfig::with_system_roots()?,
    };
    let server_name = ids.gateway.clone().unwrap_or_else(|| ids.host.clone());
    let dial = options
        .connect_address
        .as_deref()
        .map(|a| split_address(a, options.port))
        .transpose()?;
    let port = options.port;
    Ok(Arc::new(move || {
        let tls = tls.clone();
        let server_name = server_name.clone();
        let dial = dial.clone();
        Box::pin(async move {
            let stream = match dial {
                Some((host, port)) => crate::tls::connect(&tls, &host, port, &server_name).await?,
                None => tls.connect(&server_name, port).await?,
            };
            Ok(Box::new(stream) as BoxTransport)
        })
    }))
}

/// Hub features backed by a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Feature {
    TwinResponses,
    Desired,
    Methods,
    CloudToDevice,
}

/// Connection state, as seen by callers waiting for a connection.
#[derive(Clone)]
pub(crate) enum ConnState {
    Connecting { last_error: Option<String> },
    Connected { mqtt: MqttClient, generation: u64 },
    Closed { reason: String },
}

/// Public view of the connection state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionStatus {
    Connected,
    /// (Re)connecting; `last_error` says why the previous connection or attempt ended.
    Connecting {
        last_error: Option<String>,
    },
    /// Closed for good; calls fail with [`DeviceError::Closed`].
    Closed {
        reason: String,
    },
}

impl From<&ConnState> for ConnectionStatus {
    fn from(s: &ConnState) -> Self {
        match s {
            ConnState::Connecting { last_error } => ConnectionStatus::Connecting {
                last_error: last_error.clone(),
            },
            ConnState::Connected { .. } => ConnectionStatus::Connected,
            ConnState::Closed { reason } => ConnectionStatus::Closed {
                reason: reason.clone(),
            },
        }
    }
}

/// A connection that completed CONNACK.
pub(crate) struct Established {
    mqtt: MqttClient,
    incoming: MqttIncoming,
    /// When to reconnect with a fresh token (key credentials only).
    renew_at: Option<Instant>,
}

/// A live connection lent to one operation (see [`Shared::lease`]).
pub(crate) struct Lease<'a> {
    shared: &'a Shared,
    pub(crate) mqtt: MqttClient,
    pub(crate) generation: u64,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        self.shared.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Why [`Shared::run_connection`] returned.
enum Outcome {
    Renew,
    Dropped(String),
    Close,
}

impl Shared {
    fn filter(&self, f: Feature) -> String {
        match f {
            Feature::TwinResponses => hub::TWIN_RESPONSE_FILTER.to_string(),
            Feature::Desired => hub::DESIRED_FILTER.to_string(),
            Feature::Methods => hub::METHODS_FILTER.to_string(),
            Feature::CloudToDevice => hub::c2d_filter(&self.ids.device_id),
        }
    }

    fn password(&self) -> Result<String, DeviceError> {
        match &self.credentials {
            Credentials::Token(t) => Ok(t.clone()),
            Credentials::Key(key) => {
                let expiry =
                    fleethub_core::time_util::now_unix() + self.options.sas_ttl.as_secs().max(1);
                let resource = identity::hub_sas_resource(
                    &self.ids.host,
                    &self.ids.device_id,
                    self.ids.module_id.as_deref(),
                );
                Ok(fleethub_core::sas::build_token(
                    &resource, key, expiry, None,
                )?)
            }
        }
    }

    /// One connection attempt: transport, CONNECT with a fresh token, CONNACK.
    pub(crate) async fn connect_once(&self) -> Result<Established, DeviceError> {
        let password = self.password()?;
        let stream = (self.connector)().await?;
        let options = MqttOptions::new(identity::client_id(
            &self.ids.device_id,
            self.ids.module_id.as_deref(),
        ))
        .with_credentials(
            identity::hub_username(
                &self.ids.host,
                &self.ids.device_id,
                self.ids.module_id.as_deref(),
                hub::DEVICE_API_VERSION,
                Some(crate::USER_AGENT),
            ),
            password.into_bytes(),
        )
        .with_clean_session(false)
        .with_keep_alive(self.options.keep_alive)
        .with_connack_timeout(DEFAULT_CONNACK_TIMEOUT)
        .with_manual_acks(true);
        let connected_at = Instant::now();
        let (mqtt, incoming) = MqttClient::connect(stream, options)
            .await
            .map_err(DeviceError::from_mqtt)?;
        tracing::debug!(
            device = %self.ids.device_id,
            session_present = mqtt.session_present(),
            "connected to the hub"
        );
        let renew_at = self
            .credentials
            .renewable()
            .then(|| connected_at + renewal_delay(self.options.sas_ttl));
        Ok(Established {
            mqtt,
            incoming,
            renew_at,
        })
    }

    fn set_state(&self, state: ConnState) {
        self.state.send_replace(state);
    }

    pub(crate) fn status(&self) -> ConnectionStatus {
        ConnectionStatus::from(&*self.state.borrow())
    }

    pub(crate) fn status_changes(&self) -> watch::Receiver<ConnectionStatus> {
        let mut states = self.state.subscribe();
        let (tx, rx) = watch::channel(ConnectionStatus::from(&*states.borrow_and_update()));
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    changed = states.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        let status = ConnectionStatus::from(&*states.borrow_and_update());
                        let closed = matches!(status, ConnectionStatus::Closed { .. });
                        tx.send_if_modified(|s| {
                            let modified = *s != status;
                            *s = status;
                            modified
                        });
                        if closed {
                            return;
                        }
                    }
                    _ = tx.closed() => return,
                }
            }
        });
        rx
    }

    fn generation(&self) -> Option<u64> {
        match &*self.state.borrow() {
            ConnState::Connected { generation, .. } => Some(*generation),
            _ => None,
        }
    }

    /// Re-subscribes when the hub did not keep the session, then publishes the connection.
    pub(crate) async fn activate(
        self: &Arc<Self>,
        est: &Established,
        generation: u64,
    ) -> Result<(), DeviceError> {
        let subscribed = self.subscribed.lock().await;
        if !est.mqtt.session_present() && !subscribed.is_empty() {
            let filters: Vec<(String, QoS)> = subscribed
                .iter()
                .map(|f| (self.filter(*f), QoS::AtLeastOnce))
                .collect();
            tracing::info!(
                device = %self.ids.device_id,
                ?filters,
                "the hub did not keep the MQTT session: subscribing again"
            );
            let codes = tokio::time::timeout(
                self.options.operation_timeout,
                est.mqtt.subscribe(filters.clone()),
            )
            .await
            .map_err(|_| DeviceError::Timeout {
                what: "re-subscribing",
                after: self.options.operation_timeout,
            })?
            .map_err(DeviceError::from_mqtt)?;
            for ((filter, _), code) in filters.iter().zip(codes) {
                if code == SubscribeReturnCode::Failure {
                    tracing::warn!(filter, "the hub refused a re-subscription");
                }
            }
        }
        self.set_state(ConnState::Connected {
            mqtt: est.mqtt.clone(),
            generation,
        });
        drop(subscribed);
        if generation > 1 {
            self.resync_desired();
        }
        Ok(())
    }

    /// Waits (unbounded: callers use [`Shared::bounded`]) for a live connection.
    pub(crate) async fn wait_connected(&self) -> Result<(MqttClient, u64), DeviceError> {
        let lease = self.lease().await?;
        Ok((lease.mqtt.clone(), lease.generation))
    }

    /// Waits for a live connection and counts the caller as in flight on it until the lease
    /// is dropped: a SAS renewal lets leased operations finish before it disconnects.
    pub(crate) async fn lease(&self) -> Result<Lease<'_>, DeviceError> {
        let mut rx = self.state.subscribe();
        loop {
            // Count first, then look: the renewal switches the state first, then waits for
            // the count, so an operation either is counted or sees "connecting".
            self.in_flight.fetch_add(1, Ordering::SeqCst);
            let seen = match &*rx.borrow_and_update() {
                ConnState::Connected { mqtt, generation } if !mqtt.is_closed() => {
                    Ok(Some((mqtt.clone(), *generation)))
                }
                ConnState::Closed { reason } => Err(DeviceError::Closed(reason.clone())),
                _ => Ok(None),
            };
            match seen {
                Ok(Some((mqtt, generation))) => {
                    return Ok(Lease {
                        shared: self,
                        mqtt,
                        generation,
                    });
                }
                Ok(None) => {
                    self.in_flight.fetch_sub(1, Ordering::SeqCst);
                }
                Err(e) => {
                    self.in_flight.fetch_sub(1, Ordering::SeqCst);
                    return Err(e);
                }
            }
            if rx.changed().await.is_err() {
                return Err(DeviceError::Closed("the client is gone".into()));
            }
        }
    }

    /// Runs `fut` within the operation timeout.
    pub(crate) async fn bounded<T>(
        &self,
        what: &'static str,
        fut: impl Future<Output = Result<T, DeviceError>>,
    ) -> Result<T, DeviceError> {
        let after = self.options.operation_timeout;
        tokio::time::timeout(after, fut)
            .await
            .map_err(|_| DeviceError::Timeout { what, after })?
    }

    /// Subscribes the feature's filter once for the client's lifetime.
    pub(crate) async fn ensure_subscribed(&self, feature: Feature) -> Result<(), DeviceError> {
        loop {
            let (mqtt, generation) = self.wait_connected().await?;
            let mut subscribed = self.subscribed.lock().await;
            if subscribed.contains(&feature) {
                return Ok(());
            }
            if self.generation() != Some(generation) {
                // Reconnected meanwhile: use the new connection.
                continue;
            }
            let filter = self.filter(feature);
            let codes = mqtt
                .subscribe(vec![(filter.clone(), QoS::AtLeastOnce)])
                .await
                .map_err(DeviceError::from_mqtt)?;
            return match codes.first() {
                Some(SubscribeReturnCode::Success(_)) => {
                    subscribed.insert(feature);
                    Ok(())
                }
                _ => Err(DeviceError::SubscribeRefused(filter)),
            };
        }
    }

    /// Fails the requests waiting for a response on the connection that ended.
    fn fail_pending(&self, reason: &str) {
        let waiting: Vec<_> = lock(&self.twin_pending).drain().collect();
        for (_, tx) in waiting {
            let _ = tx.send(Err(DeviceError::ConnectionLost(reason.to_string())));
        }
        // Unacknowledged C2D messages nobody took are redelivered on the next connection.
        lock(&self.sinks).c2d_backlog.clear();
    }

    /// Final state: every waiter and receiver ends.
    fn shut_down(&self, reason: String) {
        tracing::debug!(device = %self.ids.device_id, reason, "device client closed");
        self.fail_pending(&reason);
        self.set_state(ConnState::Closed { reason });
        *lock(&self.sinks) = Default::default();
    }

    /// Routes one incoming PUBLISH.
    fn route(&self, p: Publish, mqtt: &MqttClient) {
        let ack = || {
            if p.qos == QoS::AtLeastOnce {
                let _ = mqtt.ack(p.pkid);
            }
        };
        match hub::classify(&p.topic, &self.ids.device_id) {
            HubTopic::TwinResponse {
                status,
                rid,
                version,
            } => {
                ack();
                let waiter = lock(&self.twin_pending).remove(&rid);
                match waiter {
                    Some(tx) => {
                        let _ = tx.send(Ok(TwinReply {
                            status,
                            version,
                            body: p.payload,
                        }));
                    }
                    None => tracing::debug!(rid, "twin response for no pending request"),
                }
            }
            HubTopic::DesiredPatch { version } => {
                ack();
                self.on_desired_patch(version, &p.payload);
            }
            HubTopic::MethodRequest { name, rid } => {
                ack();
                self.on_method_request(name, rid, &p.payload);
            }
            HubTopic::CloudToDevice { bag } => {
                let ack = (p.qos == QoS::AtLeastOnce).then(|| Ack {
                    mqtt: mqtt.clone(),
                    pkid: p.pkid,
                });
                self.on_c2d(&bag, p.payload, ack);
            }
            HubTopic::Other => {
                ack();
                tracing::debug!(topic = %p.topic, "ignoring a PUBLISH on an unknown topic");
            }
        }
    }

    /// Dispatches incoming packets until the connection drops, the token is due for
    /// renewal or the client closes.
    ///
    /// Renewal first drains: new operations wait (the state says "connecting"), operations
    /// already in flight get their PUBACK or response (at most [`RENEWAL_GRACE`]), then the
    /// client disconnects and reconnects with a fresh token.
    async fn run_connection(
        &self,
        est: &mut Established,
        close_rx: &mut watch::Receiver<bool>,
    ) -> Outcome {
        let mut drain_until: Option<Instant> = None;
        loop {
            if let Some(until) = drain_until
                && (self.in_flight.load(Ordering::SeqCst) == 0 || Instant::now() >= until)
            {
                return Outcome::Renew;
            }
            let renew_sleep = tokio::time::sleep_until(est.renew_at.unwrap_or_else(Instant::now));
            tokio::select! {
                p = est.incoming.recv() => match p {
                    Some(p) => self.route(p, &est.mqtt),
                    None => {
                        let reason = est
                            .incoming
                            .close_reason()
                            .unwrap_or_else(|| "connection closed".into());
                        return Outcome::Dropped(reason);
                    }
                },
                _ = renew_sleep, if est.renew_at.is_some() && drain_until.is_none() => {
                    self.set_state(ConnState::Connecting {
                        last_error: Some("renewing the SAS token".into()),
                    });
                    drain_until = Some(Instant::now() + RENEWAL_GRACE);
                }
                _ = tokio::time::sleep(Duration::from_millis(20)), if drain_until.is_some() => {}
                _ = close_rx.wait_for(|closing| *closing) => return Outcome::Close,
            }
        }
    }
}

/// The background task owning the connection after the first CONNACK.
pub(crate) async fn supervise(
    shared: Arc<Shared>,
    mut est: Established,
    mut close_rx: watch::Receiver<bool>,
) {
    let policy = shared.options.reconnect.clone();
    let mut generation = 1u64;
    loop {
        let outcome = shared.run_connection(&mut est, &mut close_rx).await;
        let reason = match &outcome {
            Outcome::Renew => "reconnecting to renew the SAS token".to_string(),
            Outcome::Dropped(r) => r.clone(),
            Outcome::Close => "closed by the application".to_string(),
        };
        if !matches!(outcome, Outcome::Dropped(_)) {
            let _ = tokio::time::timeout(DISCONNECT_TIMEOUT, est.mqtt.disconnect()).await;
        }
        shared.fail_pending(&reason);
        match outcome {
            Outcome::Close => return shared.shut_down(reason),
            Outcome::Dropped(_) if !policy.enabled => {
                return shared.shut_down(format!("connection lost: {reason}"));
            }
            Outcome::Dropped(_) => {
                tracing::warn!(device = %shared.ids.device_id, reason, "hub connection lost; reconnecting");
            }
            Outcome::Renew => {
                tracing::debug!(device = %shared.ids.device_id, "renewing the SAS token");
            }
        }
        shared.set_state(ConnState::Connecting {
            last_error: Some(reason),
        });

        // A renewal reconnects at once; a drop waits first (a server that kicks the
        // device, e.g. for a duplicate connection, is not hammered).
        let mut wait = matches!(outcome, Outcome::Dropped(_));
        let mut failures = 0u32;
        est = loop {
            if wait {
                let delay = policy.next_delay(failures);
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = close_rx.wait_for(|c| *c) => {
                        return shared.shut_down("closed by the application".into());
                    }
                }
            }
            wait = true;
            let attempt = tokio::select! {
                r = shared.connect_once() => r,
                _ = close_rx.wait_for(|c| *c) => {
                    return shared.shut_down("closed by the application".into());
                }
            };
            let attempt = match attempt {
                Ok(e) => match shared.activate(&e, generation + 1).await {
                    Ok(()) => Ok(e),
                    Err(err) => {
                        let _ = tokio::time::timeout(DISCONNECT_TIMEOUT, e.mqtt.disconnect()).await;
                        Err(err)
                    }
                },
                Err(e) => Err(e),
            };
            match attempt {
                Ok(e) => break e,
                Err(e) if e.is_fatal() => {
                    return shared.shut_down(format!("reconnection refused: {e}"));
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!(device = %shared.ids.device_id, attempt = failures, "reconnection failed: {e}");
                    if policy.max_attempts.is_some_and(|max| failures >= max) {
                        return shared.shut_down(format!(
                            "gave up reconnecting after {failures} attempts: {e}"
                        ));
                    }
                    shared.set_state(ConnState::Connecting {
                        last_error: Some(e.to_string()),
                    });
                }
            }
        };
        generation += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_exponential_bounded_and_jittered() {
        let p = ReconnectPolicy::default();
        assert_eq!(p.delay(0, 1.0), Duration::from_secs(1));
        assert_eq!(p.delay(0, 0.0), Duration::from_millis(500));
        assert_eq!(p.delay(1, 1.0), Duration::from_secs(2));
        assert_eq!(p.delay(3, 1.0), Duration::from_secs(8));
        assert_eq!(p.delay(3, 0.0), Duration::from_secs(4));
        // Capped at max_delay from attempt 6 (64 s) on, whatever the jitter.
        for attempt in [6, 7, 30, 62, 63, 1000, u32::MAX] {
            assert_eq!(p.delay(attempt, 1.0), Duration::from_secs(60), "{attempt}");
            assert_eq!(p.delay(attempt, 0.0), Duration::from_secs(30), "{attempt}");
        }
        // Out-of-range jitter is clamped.
        assert_eq!(p.delay(0, 7.0), Duration::from_secs(1));
        assert_eq!(p.delay(0, -1.0), Duration::from_millis(500));
        assert_eq!(p.delay(0, f64::NAN), Duration::from_secs(1));
        // Random picks stay within [base/2, base] and are not all equal.
        let picks: Vec<Duration> = (0..200).map(|_| p.next_delay(2)).collect();
        assert!(
            picks
                .iter()
                .all(|d| *d >= Duration::from_secs(2) && *d <= Duration::from_secs(4))
        );
        assert!(picks.iter().any(|d| *d != picks[0]));
    }

    #[test]
    fn renewal_at_eighty_percent() {
        assert_eq!(renewal_delay(DEFAULT_SAS_TTL), Duration::from_secs(48 * 60));
        assert_eq!(
            renewal_delay(Duration::from_secs(100)),
            Duration::from_secs(80)
        );
    }

    #[test]
    fn connect_address_forms() {
        assert_eq!(
            split_address("127.0.0.1", 8883).unwrap(),
            ("127.0.0.1".into(), 8883)
        );
        assert_eq!(
            split_address("127.0.0.1:29883", 8883).unwrap(),
            ("127.0.0.1".into(), 29883)
        );
        assert_eq!(split_address("[::1]:9", 8883).unwrap(), ("::1".into(), 9));
        assert_eq!(split_address("[::1]", 8883).unwrap(), ("::1".into(), 8883));
        assert_eq!(split_address("::1", 8883).unwrap(), ("::1".into(), 8883));
        assert!(split_address("h:x", 8883).is_err());
        assert!(split_address("", 8883).is_err());
    }

    #[test]
    fn connection_string_identities() {
        let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
        let parse = |s: &str| identity_from_connection_string(ConnectionString::parse(s).unwrap());
        let (ids, creds) = parse(&format!(
            "HostName=h.example;DeviceId=d;SharedAccessKey={key}"
        ))
        .unwrap();
        assert_eq!(
            (ids.host.as_str(), ids.device_id.as_str(), ids.module_id),
            ("h.example", "d", None)
        );
        assert!(creds.renewable());
        let (ids, _) = parse(&format!(
            "HostName=h;DeviceId=d;ModuleId=m;SharedAccessKey={key};GatewayHostName=gw"
        ))
        .unwrap();
        assert_eq!(
            (ids.module_id.as_deref(), ids.gateway.as_deref()),
            (Some("m"), Some("gw"))
        );
        let (_, creds) = parse(
            "HostName=h;DeviceId=d;SharedAccessSignature=SharedAccessSignature sr=x&sig=y&se=1",
        )
        .unwrap();
        assert!(!creds.renewable());
        for bad in [
            format!("HostName=h;SharedAccessKeyName=iothubowner;SharedAccessKey={key}"),
            format!("HostName=h;SharedAccessKey={key}"),
            "HostName=h;DeviceId=d".to_string(),
            "HostName=h;DeviceId=d;x509=true".to_string(),
            "HostName=h;DeviceId=d;SharedAccessKey=not-base64!".to_string(),
        ] {
            assert!(parse(&bad).is_err(), "{bad}");
        }
    }
}
