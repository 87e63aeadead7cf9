//! Configurations and IoT Edge deployments at scale (`/configurations`), and a device's own
//! edge content (`applyConfigurationContent`, what `set-modules` sends). Changes wake the
//! deployment engine ([`super::deployments`]).
//!
//! Create is a `PUT` without `If-Match` (409 if the id exists); update is a `PUT` with
//! `If-Match` (its etag, or `*`; 412 on mismatch). As in Azure the content of a configuration
//! cannot change after creation (only labels, target condition, priority and metrics can):
//! create a new deployment instead.

pub mod validate;

use super::Hub;
use crate::hub::Error;
use fleethub_api::{
    Configuration, ConfigurationContent, ConfigurationQueriesTestInput,
    ConfigurationQueriesTestResponse,
};
use fleethub_storage::{Precondition, StoreError};

/// Configurations a hub holds at most (Azure: 100 deployments per hub).
pub const MAX_CONFIGURATIONS: usize = 100;

fn not_found(id: &str) -> Error {
    Error::ConfigurationNotFound { id: id.to_string() }
}

impl Hub {
    /// Creates (no `If-Match`) or updates (`If-Match`) a configuration. Validates everything
    /// before writing; a refused request changes nothing.
    pub async fn put_configuration(
        &self,
        path_id: &str,
        mut cfg: Configuration,
        if_match: Option<&str>,
    ) -> Result<Configuration, Error> {
        if cfg.id.is_empty() {
            cfg.id = path_id.to_string();
        } else if cfg.id != path_id {
            return Err(Error::invalid(format!(
                "id '{}' in the body does not match '{path_id}' in the URL",
                cfg.id
            )));
        }
        let existing = self.store.get_configuration(path_id).await?;
        let if_match = if_match.filter(|m| !m.trim().is_empty());
        let cond = match (if_match, &existing) {
            (Some(m), _) => Precondition::IfMatch(m.to_string()),
            (None, Some(_)) => {
                return Err(Error::ConfigurationAlreadyExists {
                    id: path_id.to_string(),
                });
            }
            (None, None) => Precondition::MustNotExist,
        };
        if let Some(old) = &existing {
            match &cfg.content {
                None => cfg.content = old.content.clone(),
                Some(new) => {
                    let old_wire = old.content.clone().unwrap_or_default().for_wire();
                    if new.for_wire() != old_wire {
                        return Err(Error::invalid(format!(
                            "the content of configuration '{path_id}' cannot change (only labels, targetCondition, priority and metrics can): create a new deployment with a higher priority instead"
                        )));
                    }
                }
            }
        } else if if_match.is_none()
            && self.store.list_configurations(0).await?.len() >= MAX_CONFIGURATIONS
        {
            return Err(Error::invalid(format!(
                "the hub already holds {MAX_CONFIGURATIONS} configurations (the limit); delete one first"
            )));
        }
        validate::validate_configuration(&cfg).map_err(Error::Invalid)?;
        cfg.schema_version.get_or_insert_with(|| "1.0".into());
        cfg.system_metrics = None;
        if let Some(m) = cfg.metrics.as_mut() {
            m.results.clear();
        }
        let saved = self
            .store
            .put_configuration(cfg, cond)
            .await
            .map_err(|e| match e {
                StoreError::NotFound { .. } => not_found(path_id),
                other => other.into(),
            })?;
        self.deployments_changed();
        self.configurations_changed_here().await;
        let mut out = [saved];
        self.fill_configuration_metrics(&mut out).await?;
        let [saved] = out;
        Ok(for_wire(saved))
    }

    /// One configuration with its current metrics.
    pub async fn get_configuration(&self, id: &str) -> Result<Configuration, Error> {
        let cfg = self
            .store
            .get_configuration(id)
            .await?
            .ok_or_else(|| not_found(id))?;
        let mut out = [cfg];
        self.fill_configuration_metrics(&mut out).await?;
        let [cfg] = out;
        Ok(for_wire(cfg))
    }

    /// Up to `top` configurations (0 = all) with their metrics.
    pub async fn list_configurations(&self, top: usize) -> Result<Vec<Configuration>, Error> {
        let mut all = self.store.list_configurations(top).await?;
        self.fill_configuration_metrics(&mut all).await?;
        Ok(all.into_iter().map(for_wire).collect())
    }

    /// Deletes a configuration (`If-Match` optional, `*` allowed); its devices move to the
    /// next deployment.
    pub async fn delete_configuration(
        &self,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<(), Error> {
        match self
            .store
            .delete_configuration(id, Precondition::from_if_match(if_match))
            .await
        {
            Err(StoreError::NotFound { .. }) => return Err(not_found(id)),
            r => r?,
        }
        self.deployments_changed();
        self.configurations_changed_here().await;
        Ok(())
    }

    /// Checks a target condition and custom metric queries without storing anything.
    pub fn test_configuration_queries(
        &self,
        input: &ConfigurationQueriesTestInput,
    ) -> ConfigurationQueriesTestResponse {
        let target_condition_error = input
            .target_condition
            .as_deref()
            .filter(|t| !t.trim().is_empty())
            .and_then(|t| crate::query::Query::parse_condition(t).err());
        let custom_metric_query_errors = input
            .custom_metric_queries
            .iter()
            .filter_map(|(name, q)| {
                crate::query::Query::parse_metric(q)
                    .err()
                    .map(|e| (name.clone(), e))
            })
            .collect();
        ConfigurationQueriesTestResponse {
            target_condition_error,
            custom_metric_query_errors,
        }
    }

    /// Sets an IoT Edge device's own deployment manifest (`set-modules`): stored, and applied at
    /// once unless an automatic deployment targets the device (which takes precedence; the
    /// device falls back to this content when none does).
    pub async fn apply_configuration_content(
        &self,
        device_id: &str,
        content: ConfigurationContent,
    ) -> Result<(), Error> {
        let dev = self
            .store
            .get_device(device_id)
            .await?
            .ok_or_else(|| Error::device_not_found(device_id))?;
        if !dev.device.is_edge() {
            return Err(Error::invalid(format!(
                "device '{device_id}' is not an IoT Edge device (capabilities.iotEdge is false); modules content only applies to edge devices"
            )));
        }
        let modules = content
            .modules_content
            .as_ref()
            .filter(|m| !m.is_empty())
            .ok_or_else(|| {
                Error::invalid(
                    "modulesContent is required: send {\"modulesContent\": {\"$edgeAgent\": ..., \"$edgeHub\": ...}}",
                )
            })?;
        validate::validate_modules_content(modules, true).map_err(Error::Invalid)?;
        let content = ConfigurationContent {
            modules_content: content.modules_content,
            ..Default::default()
        };
        self.store
            .put_manual_content(device_id, content)
            .await
            .map_err(|e| match e {
                StoreError::NotFound { .. } => Error::device_not_found(device_id),
                other => other.into(),
            })?;
        self.apply_deployments_to(device_id).await?;
        Ok(())
    }
}

/// The answer shape: all content sections present.
fn for_wire(mut c: Configuration) -> Configuration {
    c.content = Some(c.content.unwrap_or_default().for_wire());
    c.target_condition.get_or_insert_with(String::new);
    c.labels.get_or_insert_with(Default::default);
    c
}
