//! fleethub device SDK.
//!
//! Building blocks for devices talking to a fleethub (or Azure IoT Hub / DPS) server:
//!
//! - [`tls`]: rustls client configuration from a CA bundle and a bounded TLS connect helper.
//! - [`https`]: a minimal HTTPS/1.1 client (hyper 1) with keep-alive reuse.
//! - [`mqtt_client`]: a small MQTT 3.1.1 client (QoS 0/1, SUBSCRIBE, keep-alive) on any stream.
//! - [`provisioning`]: the DPS symmetric-key provisioning client, over MQTT or HTTPS, with the
//!   same wire behaviour as the official SDKs.
//! - [`module_identity`]: an IoT Edge device's own module identities (device-scoped module
//!   API with the device SAS token).
//! - [`device_client`]: the IoT Hub device client over MQTT (telemetry, twin, direct
//!   methods, cloud-to-device messages, SAS renewal and reconnection).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use fleethub_device::provisioning::{ProvisioningClient, Transport};
//!
//! let client = ProvisioningClient::builder()
//!     .global_endpoint("dps.fleethub.local")
//!     .id_scope("0ne00000A0A")
//!     .registration_id("dev-01")
//!     .symmetric_key("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
//!     .transport(Transport::Mqtt)
//!     .ca_pem_file("fleethub-data/certs/ca.pem")
//!     .build()?;
//! let result = client.register().await?;
//! println!("assigned to {} as {}", result.assigned_hub, result.device_id);
//! # Ok(()) }
//! ```

pub mod device_client;
pub mod https;
pub mod module_identity;
pub mod mqtt_client;
pub mod provisioning;
pub mod tls;

#[cfg(test)]
pub(crate) mod test_support;

pub use device_client::{
    C2dMessage, ConnectionStatus, DeviceClient, DeviceClientOptions, DeviceError, Message,
    MethodRequest, MethodResponse, ReconnectPolicy,
};
pub use https::{HttpsClient, HttpsError, HttpsRequest, HttpsResponse};
pub use module_identity::{ModuleIdentityClient, ModuleIdentityError};
pub use mqtt_client::{MqttClient, MqttError, MqttIncoming, MqttOptions};
pub use provisioning::{
    PollPolicy, ProvisioningClient, ProvisioningClientBuilder, ProvisioningError,
    RegistrationResult, Transport,
};
pub use tls::{ClientTlsConfig, TlsError};

/// `User-Agent` / `ClientVersion` product token of this SDK.
pub const USER_AGENT: &str = concat!("fleethub-device/", env!("CARGO_PKG_VERSION"));
