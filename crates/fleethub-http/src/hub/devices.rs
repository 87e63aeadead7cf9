//! Hub service API, device identities (docs/protocol-notes.md, "Service REST API and api-versions"): `PUT/GET/DELETE
//! /devices/{id}`, `GET /devices[?top=N]` and the twin query `POST /devices/query`.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use fleethub_api::{Device, QuerySpecification};
use fleethub_services::{Operation, Right};
use fleethub_services::{Page, PageRequest};
use serde_json::Value;

use crate::HttpState;
use crate::auth::hub_service;
use crate::body::{Peer, if_match, ok_json, page_request, page_response, require_json};
use crate::error::{ApiError, HubResult, empty};
use fleethub_services::query::Query;

/// Devices a `GET /devices` returns when `top` is absent, and at most (Azure's limit).
pub(crate) const MAX_LIST: usize = 1000;
/// `PUT /devices/{id}`: create (no `If-Match`) or update (`If-Match`, `"*"` allowed) -> **200**
/// + the stored Device (Python accepts nothing else). Empty or missing keys are generated.
pub(crate) async fn put(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> HubResult<Response> {
    hub_service(&state, &headers, &[Right::RegistryWrite], &peer)?;
    state.hub.admit(Operation::Registry, None)?;
    let device = device_body(&body, &id)?;
    let saved = state
        .hub
        .put_device(&id, device, if_match(&headers))
        .await?;
    Ok(ok_json(&saved))
}

/// The `Device` of a PUT body; `deviceId` may be left out (the path names the device).
fn device_body(body: &[u8], id: &str) -> Result<Device, ApiError> {
    let mut doc: Value = require_json(body, "Device")?;
    let Some(obj) = doc.as_object_mut() else {
        return Err(ApiError::bad_request(
            "the request body must be a Device JSON object",
        ));
    };
    if obj.get("deviceId").is_none_or(Value::is_null) {
        obj.insert("deviceId".into(), Value::String(id.to_string()));
    }
    serde_json::from_value(doc).map_err(|e| {
        ApiError::bad_request(format!("the request body is not a valid Device: {e}"))
            .with_log("request body is not a valid Device document".into())
    })
}

/// `GET /devices/{id}` -> 200 Device.
pub(crate) async fn get(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    peer: Peer,
    headers: HeaderMap,
) -> HubResult<Response> {
    hub_service(&state, &headers, &[Right::RegistryRead], &peer)?;
    state.hub.admit(Operation::Registry, None)?;
    Ok(ok_json(&state.hub.get_device(&id).await?))
}

/// `DELETE /devices/{id}` (If-Match optional, `"*"` allowed) -> 204.
pub(crate) async fn delete(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    peer: Peer,
    headers: HeaderMap,
) -> HubResult<Response> {
    hub_service(&state, &headers, &[Right::RegistryWrite], &peer)?;
    state.hub.admit(Operation::Registry, None)?;
    state.hub.delete_device(&id, if_match(&headers)).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// `GET /devices?top=N` (Python) and `GET /devices/` (Node) -> 200 array of up to `top`
/// (default and maximum 1000) devices in ID order, after the `x-ms-continuation` sent (if
/// any); the answer carries `x-ms-continuation` when more devices follow (Azure's list stops
/// at 1000 without saying so; the SDKs ignore the header).
pub(crate) async fn list(
    State(state): State<HttpState>,
    RawQuery(raw): RawQuery,
    peer: Peer,
    headers: HeaderMap,
) -> HubResult<Response> {
    hub_service(&state, &headers, &[Right::RegistryRead], &peer)?;
    state.hub.admit(Operation::Registry, None)?;
    let top = top(raw.as_deref())?;
    let mut devices: Vec<Device> = Vec::new();
    let mut continuation = page_request(&headers)?.continuation;
    while devices.len() < top {
        let page = state
            .hub
            .list_devices(PageRequest {
                continuation,
                max_items: top - devices.len(),
            })
            .await?;
        devices.extend(page.items);
        continuation = page.continuation;
        if continuation.is_none() {
            break;
        }
    }
    devices.truncate(top);
    let mut resp = ok_json(&devices);
    if let Some(c) = continuation
        && let Ok(v) = axum::http::HeaderValue::from_str(&c)
    {
        resp.headers_mut().insert("x-ms-continuation", v);
    }
    Ok(resp)
}

/// `top` (or `$top`) from the query string: 1..=1000, default 1000 (larger values are capped).
pub(crate) fn top(raw: Option<&str>) -> Result<usize, ApiError> {
    let value = raw
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| k.eq_ignore_ascii_case("top") || k.eq_ignore_ascii_case("%24top"))
        .map(|(_, v)| v);
    match value {
        None | Some("") => Ok(MAX_LIST),
        Some(v) => match v.parse::<usize>() {
            Ok(0) => Ok(MAX_LIST),
            Ok(n) => Ok(n.min(MAX_LIST)),
            Err(_) => Err(ApiError::bad_request(format!(
                "top '{v}' is not a positive integer"
            ))),
        },
    }
}

/// `POST /devices/{id}`: only `POST /devices/query` exists. (The query is routed through the
/// `{id}` route so a device whose ID is "query" stays reachable with GET/PUT/DELETE.)
pub(crate) async fn post(
    state: State<HttpState>,
    Path(id): Path<String>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> HubResult<Response> {
    if !id.eq_ignore_ascii_case("query") {
        return Err(ApiError::from_status(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method POST is not allowed on /devices/{id}"),
        )
        .into());
    }
    query(state, peer, headers, body).await
}

/// `POST /devices/query` body `{"query":"SELECT ... FROM devices|devices.modules [WHERE ...]
/// [GROUP BY ...]"}` -> 200 array of twins (`x-ms-item-type: twin`) or of projected/aggregated
/// rows (`raw`), `x-ms-continuation` only when more pages exist.
async fn query(
    State(state): State<HttpState>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> HubResult<Response> {
    hub_service(
        &state,
        &headers,
        &[Right::RegistryRead, Right::ServiceConnect],
        &peer,
    )?;
    let spec: QuerySpecification = require_json(&body, "QuerySpecification")?;
    let q = Query::parse(&spec.query)
        .map_err(|e| ApiError::bad_request(format!("invalid query: {e}")))?;
    let req = page_request(&headers)?;
    let page = state.hub.query_twins(&q, &req).await?;
    let item_type = page.item_type;
    Ok(page_response(
        Page {
            items: page.items,
            continuation: page.continuation,
        },
        item_type,
        &req,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tops() {
        assert_eq!(top(None).unwrap(), MAX_LIST);
        assert_eq!(top(Some("api-version=2021-04-12&top=5")).unwrap(), 5);
        assert_eq!(top(Some("%24top=7")).unwrap(), 7);
        assert_eq!(top(Some("top=5000")).unwrap(), MAX_LIST);
        assert!(top(Some("top=x")).is_err());
    }

    #[test]
    fn device_bodies() {
        let d = device_body(br#"{"authentication":{"symmetricKey":{}}}"#, "dev-1").unwrap();
        assert_eq!(d.device_id, "dev-1");
        assert!(device_body(b"[]", "dev-1").is_err());
        assert!(device_body(br#"{"cloudToDeviceMessageCount":"x"}"#, "d").is_err());
    }
}
