//! Module identities (docs/protocol-notes.md, "Hub HTTPS device API" and "Service REST API and api-versions"): `PUT/GET/DELETE
//! /devices/{id}/modules/{mid}` and `GET /devices/{id}/modules`.
//!
//! Two kinds of caller use the same routes (see [`module_registry`]):
//! - the service API, with a hub policy token (`RegistryRead` to read, `RegistryWrite` to
//!   change), as the SDKs' registry managers send it;
//! - an IoT Edge device managing its own modules with its device SAS token, as the edge
//!   identity daemon (aziot-identityd, `api-version=2017-11-08-preview`) does: create with a
//!   `PUT` without `If-Match`, set the keys it derived with `PUT` + `If-Match: *`, delete with
//!   `If-Match: *`. It reads `generationId` from the answers and the `Message` of error bodies.
//!
//! An edge device always lists `$edgeAgent` and `$edgeHub`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use fleethub_api::Module;
use fleethub_services::{Operation, Right};
use serde_json::Value;

use crate::HttpState;
use crate::auth::{ModuleCaller, module_registry};
use crate::body::{Peer, if_match, ok_json, require_json};
use crate::error::{ApiError, HubResult, empty};

/// `PUT /devices/{id}/modules/{mid}`: create (no `If-Match`) or update (`If-Match`, `"*"`
/// allowed) -> 200 + the stored Module (with `generationId` and keys; empty or missing keys
/// are generated). `moduleId` and `deviceId` may be left out of the body.
pub(crate) async fn put(
    State(state): State<HttpState>,
    Path((id, mid)): Path<(String, String)>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> HubResult<Response> {
    let caller = module_registry(&state, &headers, &id, Right::RegistryWrite, &peer).await?;
    state.hub.admit(Operation::Registry, None)?;
    let module = module_body(&body)?;
    let saved = state
        .hub
        .put_module(&id, &mid, module, if_match(&headers))
        .await?;
    if caller == ModuleCaller::EdgeDevice {
        tracing::info!(
            device_id = id,
            module_id = mid,
            "edge device saved its module"
        );
    }
    Ok(ok_json(&saved))
}

/// The `Module` of a PUT body. `null` members count as absent (the SDKs' models send them).
fn module_body(body: &[u8]) -> Result<Module, ApiError> {
    let mut doc: Value = require_json(body, "Module")?;
    let Some(obj) = doc.as_object_mut() else {
        return Err(ApiError::bad_request(
            "the request body must be a Module JSON object",
        ));
    };
    obj.retain(|_, v| !v.is_null());
    serde_json::from_value(doc).map_err(|e| {
        ApiError::bad_request(format!("the request body is not a valid Module: {e}"))
            .with_log("request body is not a valid Module document".into())
    })
}

/// `GET /devices/{id}/modules/{mid}` -> 200 Module.
pub(crate) async fn get(
    State(state): State<HttpState>,
    Path((id, mid)): Path<(String, String)>,
    peer: Peer,
    headers: HeaderMap,
) -> HubResult<Response> {
    module_registry(&state, &headers, &id, Right::RegistryRead, &peer).await?;
    state.hub.admit(Operation::Registry, None)?;
    Ok(ok_json(&state.hub.get_module(&id, &mid).await?))
}

/// `DELETE /devices/{id}/modules/{mid}` (If-Match optional, `"*"` allowed) -> 204.
pub(crate) async fn delete(
    State(state): State<HttpState>,
    Path((id, mid)): Path<(String, String)>,
    peer: Peer,
    headers: HeaderMap,
) -> HubResult<Response> {
    let caller = module_registry(&state, &headers, &id, Right::RegistryWrite, &peer).await?;
    state.hub.admit(Operation::Registry, None)?;
    state
        .hub
        .delete_module(&id, &mid, if_match(&headers))
        .await?;
    if caller == ModuleCaller::EdgeDevice {
        tracing::info!(
            device_id = id,
            module_id = mid,
            "edge device deleted its module"
        );
    }
    Ok(empty(StatusCode::NO_CONTENT))
}

/// `GET /devices/{id}/modules` -> 200 array of the device's modules in ID order (an edge
/// device always has `$edgeAgent` and `$edgeHub`).
pub(crate) async fn list(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    peer: Peer,
    headers: HeaderMap,
) -> HubResult<Response> {
    module_registry(&state, &headers, &id, Right::RegistryRead, &peer).await?;
    state.hub.admit(Operation::Registry, None)?;
    Ok(ok_json(&state.hub.list_modules(&id).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_bodies() {
        let m = module_body(
            br#"{"moduleId":"m","managedBy":null,"deviceId":"d","generationId":null,
                 "cloudToDeviceMessageCount":null,"authentication":null}"#,
        )
        .unwrap();
        assert_eq!((m.module_id.as_str(), m.device_id.as_str()), ("m", "d"));
        assert!(m.authentication.is_none() && m.managed_by.is_none());
        assert_eq!(module_body(b"{}").unwrap().module_id, "");
        assert!(module_body(b"[]").is_err());
        assert!(module_body(b"").is_err());
        assert!(module_body(br#"{"moduleId":7}"#).is_err());
    }
}
