//! Hub service API, bulk registry operations (docs/protocol-notes.md, "Service REST API and api-versions"): `POST /devices` with a
//! JSON array of `ExportImportDevice` -> `BulkRegistryOperationResult`, 200 when every item
//! succeeded, 400 (same body) when some failed. Items are applied in order; one failing does
//! not stop the others.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use fleethub_api::{AuthenticationMechanism, Capabilities, Device};
use fleethub_services::hub::TwinTarget;
use fleethub_services::{Hub, Operation, Right};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::HttpState;
use crate::auth::hub_service;
use crate::body::{Peer, json_response, require_json};
use crate::error::{ApiError, HubResult};

/// Most items one request may carry (Azure's limit; Node sends at most 100).
pub(crate) const MAX_BULK_ITEMS: usize = 100;

/// `ExportImportDevice` (`importMode` is read from the raw item, so a malformed item still
/// reports it). Python sends `id`; Node renames `deviceId` to `id` (both accepted).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExportImportDevice {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    device_id: Option<String>,
    #[serde(default)]
    module_id: Option<String>,
    #[serde(default, rename = "eTag", alias = "etag")]
    e_tag: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    status_reason: Option<String>,
    #[serde(default)]
    authentication: Option<AuthenticationMechanism>,
    #[serde(default, rename = "twinETag")]
    twin_e_tag: Option<String>,
    #[serde(default)]
    tags: Option<Value>,
    #[serde(default)]
    properties: Option<Value>,
    #[serde(default)]
    capabilities: Option<Capabilities>,
    #[serde(default)]
    device_scope: Option<String>,
    #[serde(default)]
    parent_scopes: Option<Vec<String>>,
}

/// `DeviceRegistryOperationError`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct OperationError {
    device_id: String,
    error_code: &'static str,
    error_status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    module_id: Option<String>,
    operation: String,
}

/// `BulkRegistryOperationResult`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct BulkResult {
    is_successful: bool,
    errors: Vec<OperationError>,
    warnings: Vec<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Create,
    /// `update` / `createOrUpdate`: create, or overwrite whatever the etag.
    Update,
    /// `updateIfMatchETag` / `createOrUpdateIfMatchETag`: create, or overwrite if `eTag` matches.
    UpdateIfMatchETag,
    Delete,
    DeleteIfMatchETag,
    UpdateTwin,
    UpdateTwinIfMatchETag,
}

impl Mode {
    fn parse(s: &str) -> Option<Mode> {
        let m = match s.to_ascii_lowercase().as_str() {
            "create" => Mode::Create,
            "update" | "createorupdate" => Mode::Update,
            "updateifmatchetag" | "createorupdateifmatchetag" => Mode::UpdateIfMatchETag,
            "delete" => Mode::Delete,
            "deleteifmatchetag" => Mode::DeleteIfMatchETag,
            "updatetwin" => Mode::UpdateTwin,
            "updatetwinifmatchetag" => Mode::UpdateTwinIfMatchETag,
            _ => return None,
        };
        Some(m)
    }
}

/// `POST /devices` -> 200 or 400 `BulkRegistryOperationResult`.
pub(crate) async fn bulk(
    State(state): State<HttpState>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> HubResult<Response> {
    hub_service(&state, &headers, &[Right::RegistryWrite], &peer)?;
    // One bulk request is one registry operation (Azure counts each device).
    state.hub.admit(Operation::Registry, None)?;
    let items: Vec<Value> = require_json(&body, "array of ExportImportDevice")?;
    if items.len() > MAX_BULK_ITEMS {
        return Err(ApiError::bad_request(format!(
            "{} devices in one bulk operation; at most {MAX_BULK_ITEMS} are allowed",
            items.len()
        ))
        .into());
    }
    let mut errors = Vec::new();
    for item in items {
        let (device_id, operation, outcome) = apply_item(&state.hub, item).await;
        if let Err(e) = outcome {
            errors.push(OperationError {
                device_id,
                error_code: e.name,
                error_status: e.message,
                module_id: None,
                operation,
            });
        }
    }
    let result = BulkResult {
        is_successful: errors.is_empty(),
        errors,
        warnings: Vec::new(),
    };
    let status = if result.is_successful {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    Ok(json_response(status, &result))
}

/// Applies one item; returns its device ID and import mode as sent, and the outcome.
async fn apply_item(hub: &Hub, item: Value) -> (String, String, Result<(), ApiError>) {
    let raw_id = |k: &str| item.get(k).and_then(Value::as_str).map(str::to_string);
    let device_id = raw_id("id")
        .or_else(|| raw_id("deviceId"))
        .unwrap_or_default();
    let operation = raw_id("importMode").unwrap_or_else(|| "createOrUpdate".into());
    let item: ExportImportDevice = match serde_json::from_value(item) {
        Ok(d) => d,
        Err(e) => {
            let e = ApiError::bad_request(format!("not a valid ExportImportDevice: {e}"));
            return (device_id, operation, Err(e));
        }
    };
    let outcome = apply(hub, item, &device_id, &operation).await;
    (device_id, operation, outcome)
}

async fn apply(
    hub: &Hub,
    item: ExportImportDevice,
    id: &str,
    operation: &str,
) -> Result<(), ApiError> {
    if id.is_empty() {
        return Err(ApiError::bad_request("the item has no id (device ID)"));
    }
    if item.id.is_some()
        && let Some(other) = item.device_id.as_deref().filter(|d| *d != id)
    {
        return Err(ApiError::bad_request(format!(
            "id '{id}' and deviceId '{other}' differ"
        )));
    }
    if item.module_id.as_deref().is_some_and(|m| !m.is_empty()) {
        return Err(ApiError::bad_request(
            "modules are not supported in bulk registry operations",
        ));
    }
    let mode = Mode::parse(operation).ok_or_else(|| {
        ApiError::bad_request(format!(
            "importMode '{operation}' is invalid; use create, update, updateIfMatchETag, delete, \
             deleteIfMatchETag, updateTwin or updateTwinIfMatchETag"
        ))
    })?;
    let etag = |name: &str, v: &Option<String>| {
        v.clone()
            .filter(|e| !e.trim().is_empty())
            .ok_or_else(|| ApiError::bad_request(format!("importMode {operation} needs {name}")))
    };
    let hub_err = ApiError::from;
    match mode {
        Mode::Create | Mode::Update | Mode::UpdateIfMatchETag => {
            let if_match = match mode {
                Mode::Create => None,
                _ if !exists(hub, id).await? => None,
                Mode::Update => Some("*".to_string()),
                _ => Some(etag("eTag", &item.e_tag)?),
            };
            let twin = twin_patch(&item);
            let device = Device {
                device_id: id.to_string(),
                status: item.status,
                status_reason: item.status_reason,
                authentication: item.authentication,
                capabilities: item.capabilities,
                device_scope: item.device_scope,
                parent_scopes: item.parent_scopes,
                ..Default::default()
            };
            hub.put_device(id, device, if_match.as_deref())
                .await
                .map_err(hub_err)?;
            if let Some(patch) = twin {
                hub.update_twin(TwinTarget::Device(id), &patch, None, false)
                    .await
                    .map_err(hub_err)?;
            }
        }
        Mode::Delete => hub.delete_device(id, None).await.map_err(hub_err)?,
        Mode::DeleteIfMatchETag => {
            let want = etag("eTag", &item.e_tag)?;
            hub.delete_device(id, Some(&want)).await.map_err(hub_err)?;
        }
        Mode::UpdateTwin | Mode::UpdateTwinIfMatchETag => {
            let if_match = match mode {
                Mode::UpdateTwin => None,
                _ => Some(etag("twinETag", &item.twin_e_tag)?),
            };
            let patch = twin_patch(&item).unwrap_or_else(|| json!({}));
            hub.update_twin(TwinTarget::Device(id), &patch, if_match.as_deref(), false)
                .await
                .map_err(hub_err)?;
        }
    }
    Ok(())
}

async fn exists(hub: &Hub, id: &str) -> Result<bool, ApiError> {
    hub.find_device(id)
        .await
        .map(|d| d.is_some())
        .map_err(ApiError::from)
}

/// The item's tags and desired properties as a twin patch, if it has any.
fn twin_patch(item: &ExportImportDevice) -> Option<Value> {
    let desired = item
        .properties
        .as_ref()
        .and_then(|p| p.get("desired"))
        .filter(|d| !d.is_null());
    let tags = item.tags.as_ref().filter(|t| !t.is_null());
    if desired.is_none() && tags.is_none() {
        return None;
    }
    let mut patch = json!({});
    if let Some(t) = tags {
        patch["tags"] = t.clone();
    }
    if let Some(d) = desired {
        patch["properties"] = json!({ "desired": d });
    }
    Some(patch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(Mode::parse("Create"), Some(Mode::Create));
        assert_eq!(
            Mode::parse("updateIfMatchETag"),
            Some(Mode::UpdateIfMatchETag)
        );
        assert_eq!(Mode::parse("createOrUpdate"), Some(Mode::Update));
        assert_eq!(
            Mode::parse("deleteIfMatchETag"),
            Some(Mode::DeleteIfMatchETag)
        );
        assert_eq!(Mode::parse("export"), None);
    }

    #[test]
    fn twin_patches() {
        let item: ExportImportDevice =
            serde_json::from_value(json!({"id": "d", "tags": {"a": 1}})).unwrap();
        assert_eq!(twin_patch(&item), Some(json!({"tags": {"a": 1}})));
        let item: ExportImportDevice = serde_json::from_value(
            json!({"id": "d", "properties": {"desired": {"x": 1}, "reported": {}}}),
        )
        .unwrap();
        assert_eq!(
            twin_patch(&item),
            Some(json!({"properties": {"desired": {"x": 1}}}))
        );
        assert_eq!(twin_patch(&ExportImportDevice::default()), None);
    }
}
