//! The identity registry behind the hub service API: create/update/get/delete/list devices.

use super::Hub;
use crate::hub::Error;
use fleethub_api::{
    AuthenticationMechanism, Capabilities, Device, Twin, TwinProperties, time::NEVER,
};
use fleethub_core::ids;
use fleethub_storage::{DeviceRecord, Page, PageRequest, Precondition, StoreError};
use serde_json::json;

/// Registry statistics (`GET /statistics/devices`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistryStatistics {
    pub total_device_count: u64,
    pub enabled_device_count: u64,
    pub disabled_device_count: u64,
}

impl Hub {
    /// Creates (no `If-Match`) or updates (`If-Match`, `*` allowed) a device. Missing or empty
    /// symmetric keys are generated; status defaults to enabled.
    pub async fn put_device(
        &self,
        path_id: &str,
        mut d: Device,
        if_match: Option<&str>,
    ) -> Result<Device, Error> {
        ids::validate_device_id(path_id).map_err(|e| Error::invalid(e.to_string()))?;
        if d.device_id.is_empty() {
            d.device_id = path_id.to_string();
        } else if d.device_id != path_id {
            return Err(Error::invalid(format!(
                "deviceId '{}' in the body does not match '{path_id}' in the URL",
                d.device_id
            )));
        }
        let existing = self.store.get_device(path_id).await?;
        let old_auth = existing
            .as_ref()
            .and_then(|r| r.device.authentication.clone());
        let cond = match (if_match.filter(|m| !m.trim().is_empty()), &existing) {
            (Some(m), _) => Precondition::IfMatch(m.to_string()),
            (None, Some(_)) => {
                return Err(Error::DeviceAlreadyExists {
                    id: path_id.to_string(),
                });
            }
            (None, None) => Precondition::MustNotExist,
        };
        let now = self.clock.now_utc();
        // Authentication: keys generated when absent/empty, validated when given.
        let mut auth = d.authentication.take().unwrap_or_default();
        let kind = auth.kind.clone().unwrap_or_else(|| "sas".into());
        if kind != "sas" {
            return Err(Error::invalid(format!(
                "authentication type '{kind}' is not supported; use \"sas\" (symmetric keys)"
            )));
        }
        let sk = auth.symmetric_key.get_or_insert_with(Default::default);
        super::keys::fill_keys(
            sk,
            existing
                .as_ref()
                .and_then(|r| r.device.authentication.as_ref()),
        )?;
        let (p, s) = (
            sk.primary_key.clone().unwrap_or_default(),
            sk.secondary_key.clone().unwrap_or_default(),
        );
        let mut auth = AuthenticationMechanism::sas(p, s);
        auth.kind = Some("sas".into());
        let status = match d.status.as_deref() {
            None => "enabled",
            Some(s) if s.eq_ignore_ascii_case("enabled") => "enabled",
            Some(s) if s.eq_ignore_ascii_case("disabled") => "disabled",
            Some(s) => {
                return Err(Error::invalid(format!(
                    "status '{s}' is invalid; use \"enabled\" or \"disabled\""
                )));
            }
        };
        if d.status_reason
            .as_deref()
            .is_some_and(|r| r.chars().count() > 128)
        {
            return Err(Error::invalid("statusReason is longer than 128 characters"));
        }
        let iot_edge = d.capabilities.as_ref().is_some_and(|c| c.iot_edge);
        let (mut device, twin) = if let Some(rec) = existing {
            (rec.device, rec.twin)
        } else {
            let device = Device {
                device_id: path_id.to_string(),
                generation_id: Some(format!(
                    "{:018}",
                    uuid::Uuid::new_v4().as_u128() % 1_000_000_000_000_000_000
                )),
                connection_state: Some("Disconnected".into()),
                connection_state_updated_time: Some(NEVER.into()),
                status_updated_time: Some(NEVER.into()),
                last_activity_time: Some(NEVER.into()),
                ..Default::default()
            };
            let twin = Twin {
                device_id: path_id.to_string(),
                version: 1,
                etag: Some("AAAAAAAAAAE=".into()),
                status_update_time: Some(NEVER.into()),
                last_activity_time: Some(NEVER.into()),
                properties: TwinProperties {
                    desired: json!({"$metadata": {"$lastUpdated": now, "$lastUpdatedVersion": 1}, "$version": 1}),
                    reported: json!({"$metadata": {"$lastUpdated": now}, "$version": 1}),
                },
                ..Default::default()
            };
            (device, twin)
        };
        if device.status.as_deref() != Some(status) {
            device.status_updated_time = Some(now.clone());
        }
        device.status = Some(status.into());
        device.status_reason = d.status_reason;
        device.authentication = Some(auth);
        device.capabilities = Some(Capabilities { iot_edge });
        device.device_scope = if iot_edge {
            Some(format!(
                "ms-azure-iot-edge://{}-{}",
                device.device_id,
                device.generation_id.clone().unwrap_or_default()
            ))
        } else {
            d.device_scope.or(device
                .device_scope
                .filter(|s| !s.starts_with("ms-azure-iot-edge://")))
        };
        let mut twin = twin;
        twin.status = device.status.clone();
        twin.capabilities = device.capabilities.clone();
        twin.device_scope = device.device_scope.clone();
        twin.authentication_type = Some("sas".into());
        let saved = self
            .store
            .put_device(DeviceRecord { device, twin }, cond)
            .await
            .map_err(|e| match e {
                StoreError::NotFound { .. } => Error::device_not_found(path_id),
                other => other.into(),
            })?;
        if iot_edge {
            self.ensure_edge_modules(path_id).await?;
        }
        self.deployments_device_changed(path_id);
        if saved.device.status.as_deref() == Some("disabled") {
            self.revoke_device(path_id, "the device is disabled");
        } else {
            let changed = super::presence::changed_keys(
                old_auth.as_ref(),
                saved.device.authentication.as_ref(),
            );
            self.revoke_keys(
                path_id,
                None,
                &changed,
                "the key it authenticated with was regenerated",
            );
        }
        Ok(self.with_connection_state(saved.device))
    }

    /// Fills in the live connection state.
    fn with_connection_state(&self, mut d: Device) -> Device {
        self.fill_live_state(
            &d.device_id,
            None,
            &mut d.connection_state,
            &mut d.connection_state_updated_time,
            &mut d.last_activity_time,
        );
        d
    }

    pub async fn get_device(&self, id: &str) -> Result<Device, Error> {
        let rec = self
            .store
            .get_device(id)
            .await?
            .ok_or_else(|| Error::device_not_found(id))?;
        let mut device = self.with_connection_state(rec.device);
        self.fill_cluster_state(
            id,
            None,
            &mut device.connection_state,
            &mut device.connection_state_updated_time,
            &mut device.last_activity_time,
        )
        .await;
        device.cloud_to_device_message_count =
            self.store.list_c2d(id, super::c2d::MAX_QUEUED).await?.len() as u64;
        Ok(device)
    }

    /// A device identity as stored (no live state), or `None`.
    pub async fn find_device(&self, id: &str) -> Result<Option<Device>, Error> {
        Ok(self.store.get_device(id).await?.map(|r| r.device))
    }

    pub async fn delete_device(&self, id: &str, if_match: Option<&str>) -> Result<(), Error> {
        match self
            .store
            .delete_device(id, Precondition::from_if_match(if_match))
            .await
        {
            Err(StoreError::NotFound { .. }) => Err(Error::device_not_found(id)),
            r => {
                r?;
                self.revoke_device(id, "the device was deleted");
                self.forget_activity(id, None);
                Ok(())
            }
        }
    }

    pub async fn list_devices(&self, page: PageRequest) -> Result<Page<Device>, Error> {
        let p = self.store.list_devices(page).await?;
        Ok(Page {
            items: p
                .items
                .into_iter()
                .map(|r| self.with_connection_state(r.device))
                .collect(),
            continuation: p.continuation,
        })
    }

    /// Whether the store answers a read (the readiness probe).
    pub async fn check_store(&self) -> Result<(), Error> {
        self.store.get_device("$readiness-probe").await?;
        Ok(())
    }

    pub async fn statistics(&self) -> Result<RegistryStatistics, Error> {
        let mut stats = RegistryStatistics {
            total_device_count: 0,
            enabled_device_count: 0,
            disabled_device_count: 0,
        };
        let mut page = PageRequest {
            continuation: None,
            max_items: 1000,
        };
        loop {
            let p = self.store.list_devices(page.clone()).await?;
            for r in &p.items {
                stats.total_device_count += 1;
                if r.device.enabled() {
                    stats.enabled_device_count += 1;
                } else {
                    stats.disabled_device_count += 1;
                }
            }
            match p.continuation {
                Some(c) => page.continuation = Some(c),
                None => return Ok(stats),
            }
        }
    }
}
