//! DPS provisioning client for symmetric keys (individual enrollments and group-derived
//! keys), over MQTT or HTTPS, behaving on the wire like the official SDKs
//! (docs/protocol-notes.md, "DPS HTTPS API" and "DPS MQTT topics").
//!
//! Both transports run the same state machine (`interpret`):
//! - 2xx: `assigning` -> wait retry-after (default 2 s, clamped 1..=60 s) and poll the
//!   operation; `assigned` -> done; `failed`/`disabled` -> [`ProvisioningError::RegistrationFailed`];
//! - >= 429: wait retry-after and repeat the same request;
//! - other statuses: [`ProvisioningError::Service`] with the body's `errorCode`/`message`.
//!
//! Everything is bounded by the client's overall timeout (default 60 s).

mod https;
mod mqtt;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use fleethub_api::{DeviceRegistrationState, RegistrationOperationStatus};
use fleethub_core::keys::{self, KeyError};
use fleethub_iot_protocol::{dps, identity};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::https::HttpsError;
use crate::mqtt_client::{MqttError, connack_reason};
use crate::tls::{ClientTlsConfig, TlsError};

/// Default overall bound on [`ProvisioningClient::register`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Lifetime of the SAS token the client signs (as the Python SDK: one hour).
pub const SAS_TTL: Duration = Duration::from_secs(3600);
/// Global endpoint used when none is configured.
pub const DEFAULT_GLOBAL_ENDPOINT: &str = "global.azure-devices-provisioning.net";

/// DPS device transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Transport {
    /// MQTT 3.1.1 over TLS (default port 8883).
    #[default]
    Mqtt,
    /// HTTPS/1.1 (default port 443).
    Https,
}

impl Transport {
    /// The port the official SDKs hard-code for this transport.
    pub fn default_port(self) -> u16 {
        match self {
            Transport::Mqtt => 8883,
            Transport::Https => 443,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Mqtt => "mqtt",
            Transport::Https => "https",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Transport {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "mqtt" | "mqtts" => Ok(Transport::Mqtt),
            "https" | "http" => Ok(Transport::Https),
            other => Err(format!(
                "unknown transport '{other}': expected mqtt or https"
            )),
        }
    }
}

/// How long to wait before polling an `assigning` operation: the server's retry-after,
/// `default` when absent, clamped to `min..=max`. Throttling / server-error retries
/// (status >= 429) always honour retry-after with the standard 1..=60 s clamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollPolicy {
    pub default: Duration,
    pub min: Duration,
    pub max: Duration,
}

impl Default for PollPolicy {
    /// 2 s when absent, clamped to 1..=60 s (what the official SDKs roughly do).
    fn default() -> Self {
        PollPolicy {
            default: Duration::from_secs(dps::DEFAULT_RETRY_AFTER_SECS),
            min: Duration::from_secs(dps::MIN_RETRY_AFTER_SECS),
            max: Duration::from_secs(dps::MAX_RETRY_AFTER_SECS),
        }
    }
}

impl PollPolicy {
    /// Poll as soon as the previous response arrives (load tests: measures the server, not
    /// the retry-after it asks for).
    pub const IMMEDIATE: PollPolicy = PollPolicy {
        default: Duration::ZERO,
        min: Duration::ZERO,
        max: Duration::ZERO,
    };

    /// The wait before the next poll.
    pub fn delay(&self, retry_after: Option<u64>) -> Duration {
        let wanted = retry_after.map_or(self.default, Duration::from_secs);
        wanted.min(self.max).max(self.min)
    }
}

/// Outcome of a successful registration (`status` is `assigned`).
#[derive(Debug, Clone, PartialEq)]
pub struct RegistrationResult {
    pub status: String,
    pub operation_id: String,
    pub assigned_hub: String,
    pub device_id: String,
    pub substatus: Option<String>,
    /// `registrationState.payload` (e.g. from a custom allocation webhook).
    pub payload: Option<Value>,
    pub registration_state: DeviceRegistrationState,
}

/// Why a registration did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ProvisioningError {
    #[error("invalid provisioning settings: {0}")]
    Config(String),
    #[error("invalid symmetric key: {0}")]
    Key(#[from] KeyError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Https(#[from] HttpsError),
    #[error(transparent)]
    Mqtt(MqttError),
    /// The MQTT CONNACK refused the connection (4/5: bad credentials / not authorized).
    #[error(
        "DPS refused the MQTT connection: CONNACK code {code} ({reason}); \
         check the ID scope, registration ID and key"
    )]
    ConnectionRefused { code: u8, reason: &'static str },
    /// A non-retryable error status (over MQTT, the `res/{status}` topic).
    #[error("DPS answered {status}{}: {message}", error_code.map(|c| format!(" (errorCode {c})")).unwrap_or_default())]
    Service {
        status: u16,
        error_code: Option<u32>,
        message: String,
        tracking_id: Option<String>,
    },
    /// The operation ended as `failed` or `disabled`.
    #[error("registration {status}{}{}",
        error_code.map(|c| format!(" (errorCode {c})")).unwrap_or_default(),
        error_message.as_ref().map(|m| format!(": {m}")).unwrap_or_default())]
    RegistrationFailed {
        status: String,
        error_code: Option<u32>,
        error_message: Option<String>,
        registration_state: Option<Box<DeviceRegistrationState>>,
    },
    #[error("unexpected DPS response: {0}")]
    InvalidResponse(String),
    #[error("registration did not complete within {0:?}")]
    Timeout(Duration),
}

impl ProvisioningError {
    /// Bad credentials: CONNACK 4/5 or HTTP/MQTT status 401.
    pub fn is_unauthorized(&self) -> bool {
        matches!(
            self,
            ProvisioningError::ConnectionRefused { code: 4 | 5, .. }
                | ProvisioningError::Service { status: 401, .. }
        )
    }
}

impl From<MqttError> for ProvisioningError {
    fn from(e: MqttError) -> Self {
        match e {
            MqttError::Refused(code) => ProvisioningError::ConnectionRefused {
                code: code.as_u8(),
                reason: connack_reason(code),
            },
            other => ProvisioningError::Mqtt(other),
        }
    }
}

/// What to do after a DPS response.
#[derive(Debug, PartialEq)]
pub(crate) enum Next {
    Done(Box<RegistrationResult>),
    /// Poll the operation after the delay.
    Poll {
        operation_id: String,
        after: Duration,
    },
    /// Repeat the same request after the delay (throttled / server error).
    Retry {
        after: Duration,
    },
}

const EXCERPT: usize = 200;

fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text.chars().take(EXCERPT).collect();
    if text.chars().count() > EXCERPT {
        out.push('…');
    }
    out
}

/// The shared response state machine (see the module docs).
pub(crate) fn interpret(
    status: u16,
    body: &[u8],
    retry_after: Option<u64>,
    poll: &PollPolicy,
) -> Result<Next, ProvisioningError> {
    if status >= 429 {
        return Ok(Next::Retry {
            after: dps::retry_delay(retry_after),
        });
    }
    if !(200..300).contains(&status) {
        return Err(service_error(status, body));
    }
    let op: RegistrationOperationStatus = serde_json::from_slice(body).map_err(|e| {
        ProvisioningError::InvalidResponse(format!("status {status}: {e}; body: {}", excerpt(body)))
    })?;
    match op.status.to_ascii_lowercase().as_str() {
        "assigning" => Ok(Next::Poll {
            operation_id: op.operation_id,
            after: poll.delay(retry_after),
        }),
        "assigned" => {
            let state = op.registration_state.ok_or_else(|| {
                ProvisioningError::InvalidResponse("assigned without registrationState".into())
            })?;
            let (Some(hub), Some(device_id)) =
                (state.assigned_hub.clone(), state.device_id.clone())
            else {
                return Err(ProvisioningError::InvalidResponse(
                    "assigned registrationState lacks assignedHub or deviceId".into(),
                ));
            };
            Ok(Next::Done(Box::new(RegistrationResult {
                status: op.status,
                operation_id: op.operation_id,
                assigned_hub: hub,
                device_id,
                substatus: state.substatus.clone(),
                payload: state.payload.clone(),
                registration_state: state,
            })))
        }
        "failed" | "disabled" => {
            let state = op.registration_state;
            Err(ProvisioningError::RegistrationFailed {
                status: op.status,
                error_code: state.as_ref().and_then(|s| s.error_code),
                error_message: state.as_ref().and_then(|s| s.error_message.clone()),
                registration_state: state.map(Box::new),
            })
        }
        other => Err(ProvisioningError::InvalidResponse(format!(
            "unexpected operation status '{other}'"
        ))),
    }
}

/// Maps an error status and its body (DPS `{errorCode, message, trackingId}` or hub-style
/// `{Message, ExceptionMessage}`; anything else is quoted) to [`ProvisioningError::Service`].
pub(crate) fn service_error(status: u16, body: &[u8]) -> ProvisioningError {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let field = |names: &[&str]| -> Option<&Value> {
        let obj = json.as_ref()?.as_object()?;
        names.iter().find_map(|n| obj.get(*n))
    };
    let error_code = field(&["errorCode", "ErrorCode", "code"]).and_then(|v| match v {
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Value::String(s) => s.parse().ok(),
        _ => None,
    });
    let message = field(&["message", "Message", "errorMessage"])
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| {
            if body.is_empty() {
                "(empty body)".to_string()
            } else {
                excerpt(body)
            }
        });
    let tracking_id = field(&["trackingId", "TrackingId"])
        .and_then(Value::as_str)
        .map(str::to_string);
    ProvisioningError::Service {
        status,
        error_code,
        message,
        tracking_id,
    }
}

#[derive(Clone)]
enum KeySource {
    Device(String),
    Group(String),
}

#[derive(Clone)]
enum TlsSource {
    Config(ClientTlsConfig),
    CaFile(PathBuf),
    CaPem(Vec<u8>),
}

/// Builder of [`ProvisioningClient`]; see [`ProvisioningClient::builder`].
#[derive(Clone, Default)]
pub struct ProvisioningClientBuilder {
    host: Option<String>,
    port: Option<u16>,
    id_scope: Option<String>,
    registration_id: Option<String>,
    key: Option<KeySource>,
    transport: Transport,
    payload: Option<Value>,
    tls: Option<TlsSource>,
    timeout: Option<Duration>,
    poll: PollPolicy,
}

impl fmt::Debug for ProvisioningClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProvisioningClientBuilder")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("id_scope", &self.id_scope)
            .field("registration_id", &self.registration_id)
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

impl ProvisioningClientBuilder {
    /// DPS device endpoint host name (default `global.azure-devices-provisioning.net`).
    pub fn global_endpoint(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }

    /// Alias of [`Self::global_endpoint`].
    pub fn host(self, host: impl Into<String>) -> Self {
        self.global_endpoint(host)
    }

    /// Port (default: 8883 for MQTT, 443 for HTTPS).
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    pub fn id_scope(mut self, id_scope: impl Into<String>) -> Self {
        self.id_scope = Some(id_scope.into());
        self
    }

    pub fn registration_id(mut self, registration_id: impl Into<String>) -> Self {
        self.registration_id = Some(registration_id.into());
        self
    }

    /// The device's own symmetric key (individual enrollment, or an already derived key).
    pub fn symmetric_key(mut self, key_b64: impl Into<String>) -> Self {
        self.key = Some(KeySource::Device(key_b64.into()));
        self
    }

    /// An enrollment group key: the device key is derived from it and the registration ID.
    pub fn group_key(mut self, group_key_b64: impl Into<String>) -> Self {
        self.key = Some(KeySource::Group(group_key_b64.into()));
        self
    }

    pub fn transport(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }

    /// Custom `payload` sent with the registration (echoed to allocation webhooks).
    pub fn payload(mut self, payload: Value) -> Self {
        self.payload = Some(payload);
        self
    }

    /// Trust the CA certificates in this PEM file (normally the server's `certs/ca.pem`).
    pub fn ca_pem_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.tls = Some(TlsSource::CaFile(path.into()));
        self
    }

    /// Trust the CA certificates in this PEM text.
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls = Some(TlsSource::CaPem(pem.into()));
        self
    }

    /// Use a prepared TLS configuration (shared trust store, resumption off, overrides...).
    pub fn tls_config(mut self, tls: ClientTlsConfig) -> Self {
        self.tls = Some(TlsSource::Config(tls));
        self
    }

    /// Overall bound on `register()` (default 60 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Wait between `assigning` polls (default [`PollPolicy::default`]).
    pub fn poll_policy(mut self, poll: PollPolicy) -> Self {
        self.poll = poll;
        self
    }

    /// Validates the settings, derives the key if needed and loads the trust store
    /// (without a CA, the system bundle).
    pub fn build(self) -> Result<ProvisioningClient, ProvisioningError> {
        let required = |v: Option<String>, what: &str| -> Result<String, ProvisioningError> {
            match v {
                Some(v) if !v.trim().is_empty() => Ok(v.trim().to_string()),
                _ => Err(ProvisioningError::Config(format!("{what} is required"))),
            }
        };
        let id_scope = required(self.id_scope, "the ID scope")?;
        let registration_id = required(self.registration_id, "the registration ID")?;
        if registration_id.contains(['/', '#', '+']) {
            return Err(ProvisioningError::Config(format!(
                "registration ID '{registration_id}' contains '/', '#' or '+'"
            )));
        }
        let host = self
            .host
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|| DEFAULT_GLOBAL_ENDPOINT.to_string());
        if host.is_empty() {
            return Err(ProvisioningError::Config("the DPS host is empty".into()));
        }
        let device_key = match self.key {
            Some(KeySource::Device(k)) => {
                keys::decode_key(&k)?;
                k.trim().to_string()
            }
            Some(KeySource::Group(k)) => keys::derive_device_key(&k, &registration_id)?,
            None => {
                return Err(ProvisioningError::Config(
                    "a symmetric key or a group key is required".into(),
                ));
            }
        };
        let tls = match self.tls {
            Some(TlsSource::Config(c)) => c,
            Some(TlsSource::CaFile(p)) => ClientTlsConfig::with_ca_file(p)?,
            Some(TlsSource::CaPem(pem)) => ClientTlsConfig::with_ca_pem(pem)?,
            None => ClientTlsConfig::with_system_roots()?,
        };
        Ok(ProvisioningClient {
            port: self.port.unwrap_or(self.transport.default_port()),
            host,
            id_scope,
            registration_id,
            device_key,
            transport: self.transport,
            payload: self.payload,
            tls,
            timeout: self.timeout.unwrap_or(DEFAULT_TIMEOUT),
            poll: self.poll,
        })
    }
}

/// A configured DPS registration for one device. Cheap to clone; `register` may be called
/// repeatedly (each call is a new connection and a new registration).
#[derive(Clone)]
pub struct ProvisioningClient {
    host: String,
    port: u16,
    id_scope: String,
    registration_id: String,
    device_key: String,
    transport: Transport,
    payload: Option<Value>,
    tls: ClientTlsConfig,
    timeout: Duration,
    poll: PollPolicy,
}

impl fmt::Debug for ProvisioningClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProvisioningClient")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("id_scope", &self.id_scope)
            .field("registration_id", &self.registration_id)
            .field("device_key", &"<redacted>")
            .field("transport", &self.transport)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl ProvisioningClient {
    pub fn builder() -> ProvisioningClientBuilder {
        ProvisioningClientBuilder::default()
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn id_scope(&self) -> &str {
        &self.id_scope
    }

    pub fn registration_id(&self) -> &str {
        &self.registration_id
    }

    pub fn transport(&self) -> Transport {
        self.transport
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The device key in use (derived when built from a group key): what the device needs
    /// later to connect to the hub.
    pub fn device_key(&self) -> &str {
        &self.device_key
    }

    /// A fresh device SAS token: `sr={scope}%2Fregistrations%2F{regId}`, `skn=registration`,
    /// valid for [`SAS_TTL`].
    pub fn sas_token(&self) -> Result<String, ProvisioningError> {
        let expiry = fleethub_core::time_util::now_unix() + SAS_TTL.as_secs();
        Ok(fleethub_core::sas::build_token(
            &identity::dps_sas_resource(&self.id_scope, &self.registration_id),
            &self.device_key,
            expiry,
            Some(identity::DPS_SAS_KEY_NAME),
        )?)
    }

    /// Registers over a new TCP + TLS connection (its own keep-alive connection for HTTPS)
    /// and waits for the assignment, within the overall timeout.
    pub async fn register(&self) -> Result<RegistrationResult, ProvisioningError> {
        self.bounded(async {
            match self.transport {
                Transport::Mqtt => {
                    let stream = self.tls.connect(&self.host, self.port).await?;
                    mqtt::register(self, stream).await
                }
                Transport::Https => https::register(self).await,
            }
        })
        .await
    }

    /// Runs the MQTT flow over an already connected stream (TLS, WebSocket, test duplex),
    /// within the overall timeout. The transport setting is ignored.
    pub async fn register_mqtt_over<S>(
        &self,
        stream: S,
    ) -> Result<RegistrationResult, ProvisioningError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        self.bounded(mqtt::register(self, stream)).await
    }

    async fn bounded(
        &self,
        work: impl Future<Output = Result<RegistrationResult, ProvisioningError>>,
    ) -> Result<RegistrationResult, ProvisioningError> {
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| ProvisioningError::Timeout(self.timeout))?
    }

    /// The register request body: `{"registrationId": .., "payload": ..}`.
    fn registration_body(&self, payload_null: bool) -> Value {
        let mut body = serde_json::json!({ "registrationId": self.registration_id });
        match &self.payload {
            Some(p) => body["payload"] = p.clone(),
            None if payload_null => body["payload"] = Value::Null,
            None => {}
        }
        body
    }
}

#[cfg(test)]
mod tests;
