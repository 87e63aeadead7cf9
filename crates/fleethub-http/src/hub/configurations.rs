//! Hub service API, configurations and IoT Edge deployments at scale: `PUT/GET/DELETE
//! /configurations/{id}`, `GET /configurations[?top=N]`, `POST /configurations/testQueries`
//! and `POST /devices/{id}/applyConfigurationContent` (what `set-modules` and the SDKs'
//! `apply_configuration_on_edge_device` / `applyConfigurationContentOnDevice` send).
//! Reads need `RegistryRead`, writes `RegistryWrite`.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use fleethub_api::{Configuration, ConfigurationContent, ConfigurationQueriesTestInput};
use fleethub_services::Right;
use serde_json::Value;

use crate::HttpState;
use crate::auth::hub_service;
use crate::body::{Peer, if_match, ok_json, require_json};
use crate::error::{ApiError, HubResult, empty};

/// The body as a JSON object of type `what`.
fn object_body<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, ApiError> {
    let doc: Value = require_json(body, what)?;
    if !doc.is_object() {
        return Err(ApiError::bad_request(format!(
            "the request body must be a {what} JSON object"
        )));
    }
    serde_json::from_value(doc)
        .map_err(|e| ApiError::bad_request(format!("the request body is not a valid {what}: {e}")))
}

/// `PUT /configurations/{id}`: create (no `If-Match`; 409 if it exists) or update (`If-Match`
/// etag or `*`; 412 on mismatch) -> 200 + the stored Configuration.
pub(crate) async fn put(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> HubResult<Response> {
    hub_service(&state, &headers, &[Right::RegistryWrite], &peer)?;
    let cfg: Configuration = object_body(&body, "Configuration")?;
    let saved = state
        .hub
        .put_configuration(&id, cfg, if_match(&headers))
        .await?;
    Ok(ok_json(&saved))
}

/// `GET /configurations/{id}` -> 200 Configuration with current metrics.
pub(crate) async fn get(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    peer: Peer,
    headers: HeaderMap,
) -> HubResult<Response> {
    hub_service(&state, &headers, &[Right::RegistryRead], &peer)?;
    let cfg = state.hub.get_configuration(&id).await?;
    Ok(ok_json(&cfg))
}

/// `DELETE /configurations/{id}` (If-Match optional, `*` allowed) -> 204.
pub(crate) async fn delete(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    peer: Peer,
    headers: HeaderMap,
) -> HubResult<Response> {
    hub_service(&state, &headers, &[Right::RegistryWrite], &peer)?;
    state
        .hub
        .delete_configuration(&id, if_match(&headers))
        .await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// `GET /configurations?top=N` -> 200 array of up to `top` configurations in id order.
pub(crate) async fn list(
    State(state): State<HttpState>,
    RawQuery(raw): RawQuery,
    peer: Peer,
    headers: HeaderMap,
) -> HubResult<Response> {
    hub_service(&state, &headers, &[Right::RegistryRead], &peer)?;
    let top = super::devices::top(raw.as_deref())?;
    let all = state.hub.list_configurations(top).await?;
    Ok(ok_json(&all))
}

/// `POST /configurations/{id}`: only `POST /configurations/testQueries` exists (routed through
/// the `{id}` route, which serves GET/PUT/DELETE of configurations).
pub(crate) async fn post(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> HubResult<Response> {
    hub_service(&state, &headers, &[Right::RegistryRead], &peer)?;
    if !id.eq_ignore_ascii_case("testQueries") {
        return Err(ApiError::from_status(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method POST is not allowed on /configurations/{id} (only /configurations/testQueries)"),
        )
        .into());
    }
    let input: ConfigurationQueriesTestInput = object_body(&body, "ConfigurationQueriesTestInput")?;
    Ok(ok_json(&state.hub.test_configuration_queries(&input)))
}

/// `POST /devices/{id}/applyConfigurationContent` body `{"modulesContent": {...}}` -> 204.
pub(crate) async fn apply_content(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> HubResult<Response> {
    hub_service(&state, &headers, &[Right::RegistryWrite], &peer)?;
    let content: ConfigurationContent = object_body(&body, "ConfigurationContent")?;
    state.hub.apply_configuration_content(&id, content).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}
