//! The DPS's client of its linked hubs: creates or updates a device identity on a hub other
//! than this server's own through that hub's service REST API (`fleethub-service-client`, the
//! API the official service SDKs use), as Azure's DPS does before it answers `assigned`
//! (docs/protocol-notes.md, "Linked hubs").

use fleethub_api::{AuthenticationMechanism, Capabilities, Device, InitialTwin, LinkedHub};
use fleethub_service_client::{
    CaTrust, Condition, Credentials, Error, HttpsTransport, ServiceClient,
};
use fleethub_services::dps::{
    ProvisionFuture, ReadTwinFuture, RemoteHubError, RemoteHubs, RemoteIdentity,
};
use serde_json::{Map, Value, json};
use std::time::Duration;

/// How long one call to a linked hub may take (connect, request, whole response).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Reaches linked hubs trusting `trust` for their server certificates.
pub struct LinkedHubClient {
    trust: CaTrust,
}

fn failed(e: &Error) -> RemoteHubError {
    RemoteHubError(e.to_string())
}

/// The twin document (`tags`, `properties.desired`) of an initial twin, without the
/// TwinCollection bookkeeping; `None` when it sets nothing.
fn twin_document(init: Option<&InitialTwin>) -> Option<Value> {
    let init = init?;
    let mut doc = Map::new();
    if let Some(tags) = init.tags.clone().filter(Value::is_object) {
        doc.insert("tags".into(), tags);
    }
    if let Some(Value::Object(mut desired)) =
        init.properties.as_ref().and_then(|p| p.desired.clone())
    {
        for k in ["$version", "$metadata", "version", "count", "metadata"] {
            desired.remove(k);
        }
        doc.insert("properties".into(), json!({ "desired": desired }));
    }
    (!doc.is_empty()).then_some(Value::Object(doc))
}

impl LinkedHubClient {
    pub fn new(trust: CaTrust) -> Self {
        LinkedHubClient { trust }
    }

    fn client(&self, hub: &LinkedHub) -> Result<ServiceClient<HttpsTransport>, RemoteHubError> {
        let credentials =
            Credentials::from_connection_string(&hub.connection_string).map_err(|e| failed(&e))?;
        let dial = hub
            .service_endpoint
            .clone()
            .unwrap_or_else(|| format!("{}:443", hub.name));
        let transport = HttpsTransport::connect(&self.trust, &hub.name, &dial)
            .map_err(|e| failed(&e))?
            .with_timeout(CALL_TIMEOUT);
        Ok(ServiceClient::hub(transport, credentials))
    }

    async fn provision_now(
        &self,
        hub: &LinkedHub,
        id: &RemoteIdentity,
    ) -> Result<(), RemoteHubError> {
        let client = self.client(hub)?;
        let auth = AuthenticationMechanism::sas(id.primary_key.clone(), id.secondary_key.clone());
        let capabilities = Capabilities {
            iot_edge: id.iot_edge,
        };
        let twin = twin_document(id.initial_twin.as_ref());
        let existing = client
            .find_device(&id.device_id)
            .await
            .map_err(|e| failed(&e))?;
        let Some(mut device) = existing else {
            let device = Device {
                device_id: id.device_id.clone(),
                status: Some("enabled".into()),
                authentication: Some(auth),
                capabilities: Some(capabilities),
                ..Default::default()
            };
            client
                .put_device(&device, Condition::MustNotExist)
                .await
                .map_err(|e| failed(&e))?;
            if let Some(doc) = twin
                && let Err(e) = client
                    .update_twin(&id.device_id, None, &doc, Condition::None)
                    .await
            {
                // All or nothing: the device without its initial twin goes again.
                if let Err(undo) = client.delete_device(&id.device_id, None).await {
                    tracing::warn!(hub = %hub.name, device = %id.device_id, error = %undo, "could not remove a half-created device");
                }
                return Err(failed(&e));
            }
            return Ok(());
        };
        device.authentication = Some(auth);
        device.capabilities = Some(capabilities);
        let etag = device.etag.clone();
        let cond = etag.as_deref().map_or(Condition::None, Condition::IfMatch);
        client
            .put_device(&device, cond)
            .await
            .map_err(|e| failed(&e))?;
        if id.reset_twin {
            let doc = twin.unwrap_or_else(|| json!({"tags": {}, "properties": {"desired": {}}}));
            client
                .replace_twin(&id.device_id, None, &doc, Condition::None)
                .await
                .map_err(|e| failed(&e))?;
        }
        Ok(())
    }
}

impl LinkedHubClient {
    async fn read_twin_now(
        &self,
        hub: &LinkedHub,
        device_id: &str,
    ) -> Result<Option<InitialTwin>, RemoteHubError> {
        let client = self.client(hub)?;
        if client
            .find_device(device_id)
            .await
            .map_err(|e| failed(&e))?
            .is_none()
        {
            return Ok(None);
        }
        let twin = client
            .get_twin(device_id, None)
            .await
            .map_err(|e| failed(&e))?;
        Ok(Some(InitialTwin {
            tags: twin.tags,
            properties: Some(fleethub_api::InitialTwinProperties {
                desired: Some(twin.properties.desired),
            }),
        }))
    }

    async fn remove_now(&self, hub: &LinkedHub, device_id: &str) -> Result<(), RemoteHubError> {
        let client = self.client(hub)?;
        if client
            .find_device(device_id)
            .await
            .map_err(|e| failed(&e))?
            .is_none()
        {
            return Ok(());
        }
        client
            .delete_device(device_id, None)
            .await
            .map_err(|e| failed(&e))
    }
}

impl RemoteHubs for LinkedHubClient {
    fn provision<'a>(
        &'a self,
        hub: &'a LinkedHub,
        identity: &'a RemoteIdentity,
    ) -> ProvisionFuture<'a> {
        Box::pin(self.provision_now(hub, identity))
    }

    fn read_twin<'a>(&'a self, hub: &'a LinkedHub, device_id: &'a str) -> ReadTwinFuture<'a> {
        Box::pin(self.read_twin_now(hub, device_id))
    }

    fn remove<'a>(&'a self, hub: &'a LinkedHub, device_id: &'a str) -> ProvisionFuture<'a> {
        Box::pin(self.remove_now(hub, device_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleethub_api::InitialTwinProperties;

    #[test]
    fn initial_twin_without_bookkeeping() {
        assert_eq!(twin_document(None), None);
        let init = InitialTwin {
            tags: Some(json!({"env": "test"})),
            properties: Some(InitialTwinProperties {
                desired: Some(json!({"fw": "1.0", "$metadata": {}, "$version": 3})),
            }),
        };
        assert_eq!(
            twin_document(Some(&init)),
            Some(json!({"tags": {"env": "test"}, "properties": {"desired": {"fw": "1.0"}}}))
        );
    }
}
