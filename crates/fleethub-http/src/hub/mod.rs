//! IoT Hub service REST API (docs/protocol-notes.md, "Service REST API and api-versions"): device and module identities, device and
//! module twins, direct methods, queries, registry statistics, bulk registry operations,
//! cloud-to-device messages and the telemetry read API, authorized with the hub's shared access
//! policies (module identities also with an edge device's own token). Errors carry IoT Hub's
//! names (`ErrorCode:DeviceNotFound;...`).

pub(crate) mod bulk;
pub(crate) mod c2d;
pub(crate) mod configurations;
pub(crate) mod devices;
pub(crate) mod events;
pub(crate) mod methods;
pub(crate) mod modules;

pub(crate) mod statistics;
pub(crate) mod twins;

use fleethub_api::{Capabilities, Twin, X509Thumbprint};
use fleethub_services::Hub;
use fleethub_store::DeviceRecord;

use crate::error::{ApiError, HubResult};

/// The identity + twin of a device, or `DeviceNotFound`.
pub(crate) async fn record(hub: &Hub, device_id: &str) -> HubResult<DeviceRecord> {
    hub.store()
        .get_device(device_id)
        .await
        .map_err(|e| ApiError::from_hub(e.into()))?
        .ok_or_else(|| {
            ApiError::from_hub(fleethub_services::DpsError::NotFound(format!(
                "device '{device_id}' not found"
            )))
            .into()
        })
}

/// The twin as the service API shows it: the twin document with the identity's current status,
/// capabilities, scopes and activity, and the live connection state.
pub(crate) fn twin_view(hub: &Hub, rec: DeviceRecord) -> Twin {
    let DeviceRecord { device, mut twin } = rec;
    twin.device_etag = device.etag.or(twin.device_etag);
    twin.status = device.status.or(twin.status);
    twin.status_update_time = device.status_updated_time.or(twin.status_update_time);
    twin.last_activity_time = device.last_activity_time.or(twin.last_activity_time);
    twin.cloud_to_device_message_count = device.cloud_to_device_message_count;
    twin.capabilities = device.capabilities.or(twin.capabilities);
    twin.device_scope = device.device_scope.or(twin.device_scope);
    twin.parent_scopes = device.parent_scopes.or(twin.parent_scopes);
    if let Some(auth) = device.authentication {
        twin.authentication_type = auth.kind.or(twin.authentication_type);
        twin.x509_thumbprint = twin.x509_thumbprint.or(auth.x509_thumbprint);
    }
    twin.device_id = device.device_id;
    finish_twin(hub, twin)
}

/// Fills what every twin answer carries: live connection state and defaults for fields the
/// SDKs' models expect.
pub(crate) fn finish_twin(hub: &Hub, mut twin: Twin) -> Twin {
    let connected = hub.is_connected(&twin.device_id, twin.module_id.as_deref());
    twin.connection_state = Some(
        if connected {
            "Connected"
        } else {
            "Disconnected"
        }
        .into(),
    );
    twin.etag.get_or_insert_with(|| "AAAAAAAAAAE=".into());
    twin.status.get_or_insert_with(|| "enabled".into());
    twin.authentication_type.get_or_insert_with(|| "sas".into());
    twin.x509_thumbprint
        .get_or_insert_with(X509Thumbprint::default);
    twin.capabilities.get_or_insert_with(Capabilities::default);
    twin
}
