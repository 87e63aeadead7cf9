//! Typed operations of the IoT hub service API: device and module identities, twins, direct
//! methods, queries, statistics, bulk registry operations, cloud-to-device messages,
//! configurations, telemetry read and diagnostics (see docs/protocol-notes.md,
//! "Service REST API and api-versions").

use crate::client::{Condition, ServiceClient, seg};
use crate::dps::decode_all;
use crate::error::{Error, ServiceError};
use crate::transport::Transport;
use fleethub_api::{Configuration, Device, Module, Twin};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// `CloudToDeviceMethod`: what `POST /twins/{id}[/modules/{mid}]/methods` sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MethodInvocation {
    pub method_name: String,
    pub payload: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_timeout_in_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout_in_seconds: Option<u64>,
}

impl MethodInvocation {
    /// A call of `method_name` with `payload` and the service's default timeouts.
    pub fn new(method_name: impl Into<String>, payload: Value) -> Self {
        MethodInvocation {
            method_name: method_name.into(),
            payload,
            response_timeout_in_seconds: None,
            connect_timeout_in_seconds: None,
        }
    }
}

/// `CloudToDeviceMethodResult`: the device's status and payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodResult {
    pub status: i64,
    #[serde(default)]
    pub payload: Value,
}

/// One item of `BulkRegistryOperationResult.errors`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkRegistryError {
    pub device_id: String,
    pub error_code: String,
    #[serde(default)]
    pub error_status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_id: Option<String>,
    #[serde(default)]
    pub operation: String,
}

/// `BulkRegistryOperationResult`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkRegistryResult {
    pub is_successful: bool,
    #[serde(default)]
    pub errors: Vec<BulkRegistryError>,
    #[serde(default)]
    pub warnings: Vec<Value>,
}

/// Items per `POST /devices` bulk request (the service's limit).
pub const BULK_MAX_ITEMS: usize = 100;

/// `ExportImportDevice` items for `POST /devices` creating `ids` with symmetric keys.
pub fn bulk_create_items(ids: &[String], primary_key: &str, secondary_key: &str) -> Vec<Value> {
    ids.iter()
        .map(|id| {
            json!({
                "id": id,
                "importMode": "create",
                "status": "enabled",
                "authentication": {
                    "type": "sas",
                    "symmetricKey": {"primaryKey": primary_key, "secondaryKey": secondary_key}
                }
            })
        })
        .collect()
}

/// `ExportImportDevice` items for `POST /devices` deleting `ids`.
pub fn bulk_delete_items(ids: &[String]) -> Vec<Value> {
    ids.iter()
        .map(|id| json!({"id": id, "importMode": "delete"}))
        .collect()
}

fn twin_path(device_id: &str, module_id: Option<&str>) -> String {
    match module_id {
        None => format!("/twins/{}", seg(device_id)),
        Some(m) => format!("/twins/{}/modules/{}", seg(device_id), seg(m)),
    }
}

impl<T: Transport> ServiceClient<T> {
    /// `GET /devices/{id}`.
    pub async fn get_device(&self, id: &str) -> Result<Device, Error> {
        self.get_as(&format!("/devices/{}", seg(id))).await
    }

    /// `GET /devices/{id}`, `None` when there is no such device.
    pub async fn find_device(&self, id: &str) -> Result<Option<Device>, Error> {
        self.get_opt_as(&format!("/devices/{}", seg(id))).await
    }

    /// `PUT /devices/{id}`: create (with [`Condition::MustNotExist`]) or update.
    pub async fn put_device(&self, device: &Device, cond: Condition<'_>) -> Result<Device, Error> {
        let path = format!("/devices/{}", seg(&device.device_id));
        self.put_as(&path, device, cond).await
    }

    /// `DELETE /devices/{id}`.
    pub async fn delete_device(&self, id: &str, if_match: Option<&str>) -> Result<(), Error> {
        self.delete(&format!("/devices/{}", seg(id)), if_match)
            .await
    }

    /// `GET /devices?top=N`: device identities.
    pub async fn list_devices(&self, top: Option<usize>) -> Result<Vec<Device>, Error> {
        let query: Vec<(&str, String)> = top.map(|n| ("top", n.to_string())).into_iter().collect();
        let v = self.get("/devices", &query).await?;
        decode_all(as_items(v, "GET /devices")?, "/devices")
    }

    /// `POST /devices`: a bulk registry operation of at most [`BULK_MAX_ITEMS`]
    /// `ExportImportDevice` items. A 400 answer carrying item errors is returned as a result
    /// (`is_successful: false`), not as an error.
    pub async fn bulk_devices(&self, items: &[Value]) -> Result<BulkRegistryResult, Error> {
        let body = Value::Array(items.to_vec());
        let resp = self
            .send("POST", "/devices", &[], vec![], Some(&body))
            .await?;
        let op = "POST /devices";
        if resp.is_success() {
            return resp.json(op);
        }
        if resp.status == 400
            && let Ok(result) = serde_json::from_slice::<BulkRegistryResult>(&resp.body)
            && !result.errors.is_empty()
        {
            return Ok(result);
        }
        Err(ServiceError::from_response(op.to_string(), resp.status, &resp.body).into())
    }

    /// `GET /devices/{id}/modules`.
    pub async fn list_modules(&self, device_id: &str) -> Result<Vec<Module>, Error> {
        self.get_as(&format!("/devices/{}/modules", seg(device_id)))
            .await
    }

    /// `GET /devices/{id}/modules/{mid}`.
    pub async fn get_module(&self, device_id: &str, module_id: &str) -> Result<Module, Error> {
        self.get_as(&format!(
            "/devices/{}/modules/{}",
            seg(device_id),
            seg(module_id)
        ))
        .await
    }

    /// `PUT /devices/{id}/modules/{mid}`: create or update.
    pub async fn put_module(&self, module: &Module, cond: Condition<'_>) -> Result<Module, Error> {
        let path = format!(
            "/devices/{}/modules/{}",
            seg(&module.device_id),
            seg(&module.module_id)
        );
        self.put_as(&path, module, cond).await
    }

    /// `DELETE /devices/{id}/modules/{mid}`.
    pub async fn delete_module(
        &self,
        device_id: &str,
        module_id: &str,
        if_match: Option<&str>,
    ) -> Result<(), Error> {
        let path = format!("/devices/{}/modules/{}", seg(device_id), seg(module_id));
        self.delete(&path, if_match).await
    }

    /// `GET /twins/{id}` or `GET /twins/{id}/modules/{mid}`.
    pub async fn get_twin(&self, device_id: &str, module_id: Option<&str>) -> Result<Twin, Error> {
        self.get_as(&twin_path(device_id, module_id)).await
    }

    /// `PATCH /twins/{id}[/modules/{mid}]`: merges `patch` (tags, desired properties).
    pub async fn update_twin(
        &self,
        device_id: &str,
        module_id: Option<&str>,
        patch: &Value,
        cond: Condition<'_>,
    ) -> Result<Twin, Error> {
        self.patch_as(&twin_path(device_id, module_id), patch, cond)
            .await
    }

    /// `PUT /twins/{id}[/modules/{mid}]`: replaces tags and desired properties.
    pub async fn replace_twin(
        &self,
        device_id: &str,
        module_id: Option<&str>,
        twin: &Value,
        cond: Condition<'_>,
    ) -> Result<Twin, Error> {
        self.put_as(&twin_path(device_id, module_id), twin, cond)
            .await
    }

    /// `POST /twins/{id}[/modules/{mid}]/methods`: a direct method call.
    pub async fn invoke_method(
        &self,
        device_id: &str,
        module_id: Option<&str>,
        call: &MethodInvocation,
    ) -> Result<MethodResult, Error> {
        let path = format!("{}/methods", twin_path(device_id, module_id));
        self.post_as(&path, call).await
    }

    /// `POST /devices/query`: an IoT hub query (`SELECT * FROM devices WHERE ...`, projections,
    /// aggregates, `devices.modules`), all pages.
    pub async fn query_devices(&self, sql: &str) -> Result<Vec<Value>, Error> {
        self.query_pages("/devices/query", &json!({ "query": sql }))
            .await
    }

    /// `GET /statistics/devices`: `{totalDeviceCount, enabledDeviceCount, disabledDeviceCount}`.
    pub async fn device_statistics(&self) -> Result<Value, Error> {
        self.get("/statistics/devices", &[]).await
    }

    /// `GET /statistics/service`: `{connectedDeviceCount}`.
    pub async fn service_statistics(&self) -> Result<Value, Error> {
        self.get("/statistics/service", &[]).await
    }

    /// `POST /devices/{id}/messages/deviceBound`: queues a cloud-to-device message
    /// (`{"body": "...", "messageId": ..., "properties": {..}, "ack": ..}`); returns what was
    /// queued.
    pub async fn send_c2d(&self, device_id: &str, message: &Value) -> Result<Value, Error> {
        let path = format!("/devices/{}/messages/deviceBound", seg(device_id));
        self.post(&path, message).await
    }

    /// `DELETE /devices/{id}/commands`: purges the device's cloud-to-device queue.
    pub async fn purge_c2d(&self, device_id: &str) -> Result<Value, Error> {
        let path = format!("/devices/{}/commands", seg(device_id));
        let op = format!("DELETE {path}");
        self.send_ok("DELETE", &path, &[], vec![], None)
            .await?
            .json(&op)
    }

    /// `GET /configurations`.
    pub async fn list_configurations(&self) -> Result<Vec<Configuration>, Error> {
        self.get_as("/configurations").await
    }

    /// `GET /configurations/{id}`.
    pub async fn get_configuration(&self, id: &str) -> Result<Configuration, Error> {
        self.get_as(&format!("/configurations/{}", seg(id))).await
    }

    /// `PUT /configurations/{id}`: create or update.
    pub async fn put_configuration(
        &self,
        configuration: &Configuration,
        cond: Condition<'_>,
    ) -> Result<Configuration, Error> {
        let path = format!("/configurations/{}", seg(&configuration.id));
        self.put_as(&path, configuration, cond).await
    }

    /// `DELETE /configurations/{id}`.
    pub async fn delete_configuration(
        &self,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<(), Error> {
        self.delete(&format!("/configurations/{}", seg(id)), if_match)
            .await
    }

    /// `GET /messages/events?...`: one page of stored telemetry (`query` e.g.
    /// `[("deviceId", id), ("consumerGroup", g), ("limit", "100")]`).
    pub async fn read_events(&self, query: &[(&str, String)]) -> Result<Value, Error> {
        self.get("/messages/events", query).await
    }

    /// `GET /diagnostics/authFailures?limit=N`: the most recent authentication failures.
    pub async fn auth_failures(&self, limit: usize) -> Result<Vec<Value>, Error> {
        let v = self
            .get("/diagnostics/authFailures", &[("limit", limit.to_string())])
            .await?;
        as_items(v, "GET /diagnostics/authFailures")
    }
}

fn as_items(v: Value, operation: &str) -> Result<Vec<Value>, Error> {
    match v {
        Value::Array(items) => Ok(items),
        other => Err(Error::NotAnArray {
            operation: operation.to_string(),
            kind: crate::client::kind(&other),
        }),
    }
}
