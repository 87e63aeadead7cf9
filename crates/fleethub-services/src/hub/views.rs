//! Twins as the service API shows them: the twin document with the identity's current status,
//! capabilities, scopes and activity, and the live connection state.

use super::twin::TwinTarget;
use super::{Error, Hub};
use fleethub_api::{Capabilities, Twin, X509Thumbprint};
use fleethub_storage::{DeviceRecord, Page, PageRequest};
use serde_json::Value;

impl Hub {
    /// A device or module twin as the service API shows it.
    pub async fn service_twin(&self, target: TwinTarget<'_>) -> Result<Twin, Error> {
        let mut twin = match target {
            TwinTarget::Device(d) => self.twin_view(self.device_record(d).await?),
            TwinTarget::Module(d, m) => self.finish_twin(self.module_record(d, m).await?.twin),
        };
        let mut unused = None;
        self.fill_cluster_state(
            target.device_id(),
            target.module_id(),
            &mut twin.connection_state,
            &mut unused,
            &mut twin.last_activity_time,
        )
        .await;
        Ok(twin)
    }

    /// [`Hub::update_twin`], answered with the twin as [`Hub::service_twin`] shows it.
    pub async fn update_service_twin(
        &self,
        target: TwinTarget<'_>,
        body: &Value,
        if_match: Option<&str>,
        replace: bool,
    ) -> Result<Twin, Error> {
        let twin = self.update_twin(target, body, if_match, replace).await?;
        let TwinTarget::Device(device_id) = target else {
            return Ok(self.finish_twin(twin));
        };
        // The answer shows the identity's fields as a GET does.
        Ok(match self.device_record(device_id).await {
            Ok(mut rec) if rec.twin.version == twin.version => {
                rec.twin = twin;
                self.twin_view(rec)
            }
            _ => self.finish_twin(twin),
        })
    }

    /// A page of the registry's device twins as the service API shows them (what queries
    /// run over); the continuation is the registry's.
    pub async fn list_twins(&self, page: PageRequest) -> Result<Page<Twin>, Error> {
        let p = self.store.list_devices(page).await?;
        Ok(Page {
            items: p.items.into_iter().map(|r| self.twin_view(r)).collect(),
            continuation: p.continuation,
        })
    }

    /// The module twins of a device as the service API shows them, by module ID (what
    /// `FROM devices.modules` runs over).
    pub(crate) async fn module_twins(&self, device_id: &str) -> Result<Vec<Twin>, Error> {
        let mut twins: Vec<Twin> = self
            .store
            .list_modules(device_id)
            .await?
            .into_iter()
            .map(|r| self.finish_twin(r.twin))
            .collect();
        twins.sort_by(|a, b| a.module_id.cmp(&b.module_id));
        Ok(twins)
    }

    fn twin_view(&self, rec: DeviceRecord) -> Twin {
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
        self.finish_twin(twin)
    }

    /// Fills what every twin answer carries: live connection state, last activity and defaults for fields
    /// the SDKs' models expect.
    fn finish_twin(&self, mut twin: Twin) -> Twin {
        let connected = self.is_connected(&twin.device_id, twin.module_id.as_deref());
        twin.connection_state = Some(
            if connected {
                "Connected"
            } else {
                "Disconnected"
            }
            .into(),
        );
        // What the identity last did (kept in memory by `presence`, no store write per
        // message); the stored value (never, or an imported one) otherwise.
        if let Some(a) = self.activity(&twin.device_id, twin.module_id.as_deref()) {
            twin.last_activity_time = Some(a.last_activity_utc());
        }
        twin.etag = Some(super::twin::shown_etag(&twin));
        twin.status.get_or_insert_with(|| "enabled".into());
        twin.authentication_type.get_or_insert_with(|| "sas".into());
        twin.x509_thumbprint
            .get_or_insert_with(X509Thumbprint::default);
        twin.capabilities.get_or_insert_with(Capabilities::default);
        twin
    }
}

#[cfg(test)]
mod tests {
    use crate::clock::TestClock;
    use crate::hub::{HubConfig, TelemetryIn, TwinTarget};
    use crate::{AuthContext, Clock, Hub, Shared};
    use fleethub_api::{Device, Module};
    use fleethub_store::sqlite::SqliteStore;
    use std::sync::Arc;

    #[tokio::test]
    async fn the_etag_a_twin_is_shown_with_matches_if_match() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("s.db")).unwrap());
        // A twin as DPS writes it at assignment: version 1, no stored etag yet.
        let provisioned = fleethub_storage::DeviceRecord {
            device: Device {
                device_id: "d2".into(),
                ..Device::default()
            },
            twin: fleethub_api::Twin {
                device_id: "d2".into(),
                version: 1,
                ..fleethub_api::Twin::default()
            },
        };
        fleethub_storage::RegistryStore::put_device(
            &*store,
            provisioned,
            fleethub_storage::Precondition::MustNotExist,
        )
        .await
        .unwrap();
        let shared = Shared::new(store);
        let hub = Hub::new(
            &shared,
            HubConfig {
                host: "hub.local".into(),
                token_skew_secs: 30,
            },
            vec![],
        );
        hub.put_device("d1", Device::default(), None).await.unwrap();
        hub.put_module("d1", "m1", Module::default(), None)
            .await
            .unwrap();
        let patch = serde_json::json!({"tags": {"k": 1}, "properties": {"desired": {"p": 2}}});
        let targets = [
            TwinTarget::Device("d1"),
            TwinTarget::Module("d1", "m1"),
            TwinTarget::Device("d2"),
        ];
        for target in targets {
            let shown = hub.service_twin(target).await.unwrap();
            let etag = shown.etag.clone().expect("an etag is always shown");
            let updated = hub
                .update_service_twin(target, &patch, Some(&format!("\"{etag}\"")), false)
                .await
                .unwrap_or_else(|e| panic!("{target:?}: If-Match {etag}: {e}"));
            assert_ne!(updated.etag, Some(etag.clone()));
            let stale = hub
                .update_service_twin(target, &patch, Some(&etag), false)
                .await;
            assert!(stale.is_err(), "{target:?}: a stale etag is refused");
        }
    }

    #[tokio::test]
    async fn twins_show_when_the_identity_last_sent() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("s.db")).unwrap());
        let start = chrono::DateTime::parse_from_rfc3339("2026-03-01T10:00:00Z")
            .unwrap()
            .to_utc();
        let clock = TestClock::new(start);
        let shared = Shared::with_clock(store, Clock::from_source(clock.clone()));
        let hub = Hub::new(
            &shared,
            HubConfig {
                host: "hub.local".into(),
                token_skew_secs: 30,
            },
            vec![],
        );
        let d = hub.put_device("d1", Device::default(), None).await.unwrap();
        let m = hub
            .put_module("d1", "m1", Module::default(), None)
            .await
            .unwrap();
        let twin = hub.service_twin(TwinTarget::Device("d1")).await.unwrap();
        assert_eq!(
            twin.last_activity_time.as_deref(),
            Some("0001-01-01T00:00:00Z")
        );

        let ctx = AuthContext {
            transport: "test",
            peer: None,
        };
        let token = |module: Option<&str>, key: &str| {
            let resource =
                fleethub_iot_protocol::identity::hub_sas_resource("hub.local", "d1", module);
            fleethub_core::sas::build_token(&resource, key, clock_unix(&hub) + 3600, None).unwrap()
        };
        let key = d.authentication.unwrap().keys()[0].to_string();
        let p = hub
            .authenticate_device("d1", None, &token(None, &key), ctx)
            .await
            .unwrap();
        clock.advance(chrono::Duration::seconds(90));
        hub.send_telemetry(&p, TelemetryIn::default())
            .await
            .unwrap();
        let twin = hub.service_twin(TwinTarget::Device("d1")).await.unwrap();
        assert_eq!(
            twin.last_activity_time.as_deref(),
            Some("2026-03-01T10:01:30.0000000Z")
        );
        // Queries run over the same view.
        let listed = hub
            .list_twins(fleethub_storage::PageRequest::default())
            .await
            .unwrap();
        assert_eq!(listed.items[0].last_activity_time, twin.last_activity_time);

        // A module's twin shows the module's own activity.
        let mkey = m.authentication.unwrap().keys()[0].to_string();
        let pm = hub
            .authenticate_device("d1", Some("m1"), &token(Some("m1"), &mkey), ctx)
            .await
            .unwrap();
        clock.advance(chrono::Duration::seconds(30));
        hub.send_telemetry(&pm, TelemetryIn::default())
            .await
            .unwrap();
        let mt = hub
            .service_twin(TwinTarget::Module("d1", "m1"))
            .await
            .unwrap();
        assert_eq!(
            mt.last_activity_time.as_deref(),
            Some("2026-03-01T10:02:00.0000000Z")
        );
    }

    fn clock_unix(hub: &Hub) -> u64 {
        hub.clock.unix()
    }
}
