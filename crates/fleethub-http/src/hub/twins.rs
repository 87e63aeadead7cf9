//! Hub service API, device twins (protocols.md section 9.2): `GET /twins/{id}`,
//! `PATCH /twins/{id}` (merge tags and desired properties) and `PUT /twins/{id}` (replace them),
//! both honouring `If-Match` against the twin etag and answering with the full twin.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use fleethub_services::{DpsError, Right};
use serde_json::Value;

use crate::HttpState;
use crate::auth::hub_service;
use crate::body::{Peer, if_match, ok_json, require_json};
use crate::error::{ApiError, HubResult};

/// Twins are read with `RegistryRead` or `ServiceConnect` (Azure's `service` policy has only the
/// latter) and written with `RegistryWrite` or `ServiceConnect`.
const READ: &[Right] = &[Right::RegistryRead, Right::ServiceConnect];
const WRITE: &[Right] = &[Right::RegistryWrite, Right::ServiceConnect];

/// `GET /twins/{id}` -> 200 Twin (with the live `connectionState`).
pub(crate) async fn get(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    peer: Peer,
    headers: HeaderMap,
) -> HubResult<Response> {
    hub_service(&state, &headers, READ, &peer)?;
    let rec = super::record(&state.hub, &id).await?;
    Ok(ok_json(&super::twin_view(&state.hub, rec)))
}

/// `PATCH /twins/{id}` (If-Match optional) -> 200 + the full twin.
pub(crate) async fn patch(
    state: State<HttpState>,
    id: Path<String>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> HubResult<Response> {
    update(state, id, peer, headers, body, false).await
}

/// `PUT /twins/{id}` (If-Match optional) -> 200 + the full twin; tags and desired properties
/// are replaced by the body's.
pub(crate) async fn replace(
    state: State<HttpState>,
    id: Path<String>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> HubResult<Response> {
    update(state, id, peer, headers, body, true).await
}

async fn update(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
    replace: bool,
) -> HubResult<Response> {
    hub_service(&state, &headers, WRITE, &peer)?;
    let doc: Value = require_json(&body, "Twin")?;
    if !doc.is_object() {
        return Err(ApiError::bad_request("the request body must be a Twin JSON object").into());
    }
    let twin = state
        .hub
        .update_twin(&id, &doc, if_match(&headers), replace)
        .await
        .map_err(|e| match e {
            // Only left after the hub's retries on concurrent writers: a precondition, not a
            // duplicate device.
            DpsError::Conflict(m) => ApiError::precondition_failed(m),
            e => ApiError::from_hub(e),
        })?;
    // The answer shows the identity's fields as GET does.
    let rec = super::record(&state.hub, &id).await;
    let view = match rec {
        Ok(mut rec) if rec.twin.version == twin.version => {
            rec.twin = twin;
            super::twin_view(&state.hub, rec)
        }
        _ => super::finish_twin(&state.hub, twin),
    };
    Ok(ok_json(&view))
}
