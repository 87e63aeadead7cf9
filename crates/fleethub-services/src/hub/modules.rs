//! Module identities: created through the service API or by an edge device managing its own
//! modules (aziot-identityd); an edge device always has `$edgeAgent` and `$edgeHub`.

use super::Hub;
use crate::hub::Error;
use fleethub_api::{AuthenticationMechanism, Module, Twin, TwinProperties, time::NEVER};
use fleethub_core::ids;
use fleethub_storage::{ModuleRecord, Precondition, StoreError};
use serde_json::json;

/// Module identities every edge device has.
pub const EDGE_SYSTEM_MODULES: [&str; 2] = ["$edgeAgent", "$edgeHub"];

fn generation_id() -> String {
    format!(
        "{:018}",
        uuid::Uuid::new_v4().as_u128() % 1_000_000_000_000_000_000
    )
}

fn new_twin(device_id: &str, module_id: &str, now: &str) -> Twin {
    Twin {
        device_id: device_id.to_string(),
        module_id: Some(module_id.to_string()),
        version: 1,
        etag: Some("AAAAAAAAAAE=".into()),
        status: Some("enabled".into()),
        status_update_time: Some(NEVER.into()),
        connection_state: Some("Disconnected".into()),
        last_activity_time: Some(NEVER.into()),
        authentication_type: Some("sas".into()),
        properties: TwinProperties {
            desired: json!({"$metadata": {"$lastUpdated": now, "$lastUpdatedVersion": 1}, "$version": 1}),
            reported: json!({"$metadata": {"$lastUpdated": now}, "$version": 1}),
        },
        ..Default::default()
    }
}

impl Hub {
    pub(crate) async fn module_record(
        &self,
        device_id: &str,
        module_id: &str,
    ) -> Result<ModuleRecord, Error> {
        if let Some(r) = self.store.get_module(device_id, module_id).await? {
            return Ok(r);
        }
        if EDGE_SYSTEM_MODULES.contains(&module_id)
            && self.ensure_edge_modules(device_id).await?
            && let Some(r) = self.store.get_module(device_id, module_id).await?
        {
            return Ok(r);
        }
        Err(self.missing_module(device_id, module_id).await)
    }

    /// The error for a module that was not found: `DeviceNotFound` when its device is missing
    /// too, `ModuleNotFound` otherwise.
    pub(crate) async fn missing_module(&self, device_id: &str, module_id: &str) -> Error {
        match self.store.get_device(device_id).await {
            Ok(None) => Error::device_not_found(device_id),
            Ok(Some(_)) => Error::module_not_found(device_id, module_id),
            Err(e) => e.into(),
        }
    }

    /// Creates `$edgeAgent`/`$edgeHub` for an edge device that lacks them. Returns whether the
    /// device is an edge device.
    pub async fn ensure_edge_modules(&self, device_id: &str) -> Result<bool, Error> {
        let Some(dev) = self.store.get_device(device_id).await? else {
            return Ok(false);
        };
        if !dev.device.is_edge() {
            return Ok(false);
        }
        for m in EDGE_SYSTEM_MODULES {
            if self.store.get_module(device_id, m).await?.is_none() {
                let r = self
                    .put_module(
                        device_id,
                        m,
                        Module {
                            managed_by: Some("iotEdge".into()),
                            ..Default::default()
                        },
                        None,
                    )
                    .await;
                match r {
                    Ok(_) | Err(Error::ModuleAlreadyExists { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(true)
    }

    /// Creates (no `If-Match`) or updates (`If-Match`, `*` allowed) a module identity.
    pub async fn put_module(
        &self,
        device_id: &str,
        module_id: &str,
        mut m: Module,
        if_match: Option<&str>,
    ) -> Result<Module, Error> {
        ids::validate_module_id(module_id).map_err(|e| Error::invalid(e.to_string()))?;
        if !m.module_id.is_empty() && m.module_id != module_id {
            return Err(Error::invalid(format!(
                "moduleId '{}' in the body does not match '{module_id}' in the URL",
                m.module_id
            )));
        }
        if !m.device_id.is_empty() && m.device_id != device_id {
            return Err(Error::invalid(format!(
                "deviceId '{}' in the body does not match '{device_id}' in the URL",
                m.device_id
            )));
        }
        let existing = self.store.get_module(device_id, module_id).await?;
        let old_auth = existing
            .as_ref()
            .and_then(|r| r.module.authentication.clone());
        let cond = match (if_match.filter(|v| !v.trim().is_empty()), &existing) {
            (Some(v), _) => Precondition::IfMatch(v.to_string()),
            (None, Some(_)) => {
                return Err(Error::ModuleAlreadyExists {
                    device: device_id.to_string(),
                    module: module_id.to_string(),
                });
            }
            (None, None) => Precondition::MustNotExist,
        };
        let mut auth = m.authentication.take().unwrap_or_default();
        let sk = auth.symmetric_key.get_or_insert_with(Default::default);
        super::keys::fill_keys(
            sk,
            existing
                .as_ref()
                .and_then(|r| r.module.authentication.as_ref()),
        )?;
        let auth = AuthenticationMechanism::sas(
            sk.primary_key.clone().unwrap_or_default(),
            sk.secondary_key.clone().unwrap_or_default(),
        );
        let now = self.clock.now_utc();
        let (mut module, twin) = match existing {
            Some(r) => (r.module, r.twin),
            None => (
                Module {
                    module_id: module_id.to_string(),
                    device_id: device_id.to_string(),
                    generation_id: Some(generation_id()),
                    connection_state: Some("Disconnected".into()),
                    connection_state_updated_time: Some(NEVER.into()),
                    last_activity_time: Some(NEVER.into()),
                    ..Default::default()
                },
                new_twin(device_id, module_id, &now),
            ),
        };
        module.authentication = Some(auth);
        if m.managed_by.is_some() {
            module.managed_by = m.managed_by;
        }
        let saved = self
            .store
            .put_module(ModuleRecord { module, twin }, cond)
            .await
            .map_err(|e| match e {
                StoreError::NotFound { kind: "device", .. } => Error::device_not_found(device_id),
                StoreError::NotFound { .. } => Error::module_not_found(device_id, module_id),
                other => other.into(),
            })?;
        let changed =
            super::presence::changed_keys(old_auth.as_ref(), saved.module.authentication.as_ref());
        self.revoke_keys(
            device_id,
            Some(module_id),
            &changed,
            "the key it authenticated with was regenerated",
        );
        // A module named in a deployment gets its content once its identity exists.
        self.deployments_device_changed(device_id);
        Ok(self.with_module_state(saved.module))
    }

    fn with_module_state(&self, mut m: Module) -> Module {
        self.fill_live_state(
            &m.device_id,
            Some(&m.module_id),
            &mut m.connection_state,
            &mut m.connection_state_updated_time,
            &mut m.last_activity_time,
        );
        m
    }

    pub async fn get_module(&self, device_id: &str, module_id: &str) -> Result<Module, Error> {
        let mut m = self.with_module_state(self.module_record(device_id, module_id).await?.module);
        self.fill_cluster_state(
            device_id,
            Some(module_id),
            &mut m.connection_state,
            &mut m.connection_state_updated_time,
            &mut m.last_activity_time,
        )
        .await;
        Ok(m)
    }

    pub async fn delete_module(
        &self,
        device_id: &str,
        module_id: &str,
        if_match: Option<&str>,
    ) -> Result<(), Error> {
        match self
            .store
            .delete_module(device_id, module_id, Precondition::from_if_match(if_match))
            .await
        {
            Err(StoreError::NotFound { .. }) => {
                Err(self.missing_module(device_id, module_id).await)
            }
            r => {
                r?;
                self.revoke_module(device_id, module_id, "the module was deleted");
                Ok(())
            }
        }
    }

    pub async fn list_modules(&self, device_id: &str) -> Result<Vec<Module>, Error> {
        if self.store.get_device(device_id).await?.is_none() {
            return Err(Error::device_not_found(device_id));
        }
        self.ensure_edge_modules(device_id).await?;
        Ok(self
            .store
            .list_modules(device_id)
            .await?
            .into_iter()
            .map(|r| self.with_module_state(r.module))
            .collect())
    }
}
