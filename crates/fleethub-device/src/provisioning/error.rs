//! [`ProvisioningError`]: why a registration did not succeed.

use std::time::Duration;

use fleethub_api::DeviceRegistrationState;
use fleethub_core::keys::KeyError;

use crate::https::HttpsError;
use crate::mqtt_client::{MqttError, connack_reason};
use crate::tls::TlsError;

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
