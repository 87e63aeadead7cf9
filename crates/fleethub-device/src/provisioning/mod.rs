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

mod builder;
mod error;
mod https;
mod mqtt;
mod response;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use fleethub_api::DeviceRegistrationState;
use fleethub_iot_protocol::{dps, identity};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::tls::ClientTlsConfig;

pub use builder::ProvisioningClientBuilder;
pub use error::ProvisioningError;
#[cfg(test)]
use response::service_error;
pub(crate) use response::{Next, interpret};

/// Default overall bound on [`ProvisioningClient::register`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_mins(1);
/// Lifetime of the SAS token the client signs (as the Python SDK: one hour).
pub const SAS_TTL: Duration = Duration::from_hours(1);
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
