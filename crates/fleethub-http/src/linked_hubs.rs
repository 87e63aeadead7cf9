//! DPS service API, the hubs linked to the instance (`/linkedHubs`; a fleethub route: Azure
//! manages them on the resource, `az iot dps linked-hub`) and the instance's settings
//! (`/settings`: its allocation policy; Azure: `az iot dps update`). docs/protocol-notes.md,
//! "Linked hubs" and "Allocation policies".

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use fleethub_api::LinkedHub;
use fleethub_services::Right;
use fleethub_services::dps::DpsSettings;

use crate::HttpState;
use crate::auth::dps_service;
use crate::body::{Peer, ok_json, require_json};
use crate::error::{ApiError, ServiceResult, empty};

/// `GET /linkedHubs` -> 200 [LinkedHub] (the local hub first; keys masked).
pub(crate) async fn list(
    State(state): State<HttpState>,
    peer: Peer,
    headers: HeaderMap,
) -> ServiceResult<Response> {
    dps_service(&state, &headers, Right::ServiceConfig, &peer)?;
    Ok(ok_json(&state.dps.list_linked_hubs().await?))
}

/// `PUT /linkedHubs/{name}` (LinkedHub) -> 200 LinkedHub: links a hub or replaces its link.
pub(crate) async fn put(
    State(state): State<HttpState>,
    Path(name): Path<String>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> ServiceResult<Response> {
    dps_service(&state, &headers, Right::ServiceConfig, &peer)?;
    let mut hub: LinkedHub = require_json(&body, "LinkedHub")?;
    if hub.name.is_empty() {
        hub.name.clone_from(&name);
    } else if !hub.name.eq_ignore_ascii_case(&name) {
        return Err(ApiError::bad_request(format!(
            "the body names linked hub '{}' but the path '{name}'",
            hub.name
        ))
        .into());
    }
    Ok(ok_json(&state.dps.put_linked_hub(hub).await?))
}

/// `DELETE /linkedHubs/{name}` -> 204.
pub(crate) async fn delete(
    State(state): State<HttpState>,
    Path(name): Path<String>,
    peer: Peer,
    headers: HeaderMap,
) -> ServiceResult<Response> {
    dps_service(&state, &headers, Right::ServiceConfig, &peer)?;
    state.dps.delete_linked_hub(&name).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// `GET /settings` -> 200 `{"allocationPolicy": ...}`.
pub(crate) async fn get_settings(
    State(state): State<HttpState>,
    peer: Peer,
    headers: HeaderMap,
) -> ServiceResult<Response> {
    dps_service(&state, &headers, Right::ServiceConfig, &peer)?;
    Ok(ok_json(&state.dps.settings().await?))
}

/// `PUT /settings` (`{"allocationPolicy": ...}`) -> 200 with the settings now in force.
pub(crate) async fn put_settings(
    State(state): State<HttpState>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> ServiceResult<Response> {
    dps_service(&state, &headers, Right::ServiceConfig, &peer)?;
    let settings: DpsSettings = require_json(&body, "DpsSettings")?;
    Ok(ok_json(&state.dps.put_settings(settings).await?))
}
