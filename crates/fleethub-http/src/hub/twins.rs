//! Hub service API, device and module twins (docs/protocol-notes.md, "Twin"): `GET /twins/{id}`,
//! `PATCH /twins/{id}` (merge tags and desired properties) and `PUT /twins/{id}` (replace them),
//! both honouring `If-Match` against the twin etag and answering with the full twin; and the
//! same for module twins under `/twins/{id}/modules/{mid}`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use fleethub_services::hub::TwinTarget;
use fleethub_services::{Operation, Right};
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
    state.hub.admit_for(Operation::TwinRead, &id, None)?;
    Ok(ok_json(
        &state.hub.service_twin(TwinTarget::Device(&id)).await?,
    ))
}

/// `PATCH /twins/{id}` (If-Match optional) -> 200 + the full twin.
pub(crate) async fn patch(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> HubResult<Response> {
    update(&state, &id, None, &peer, &headers, &body, false).await
}

/// `PUT /twins/{id}` (If-Match optional) -> 200 + the full twin; tags and desired properties
/// are replaced by the body's.
pub(crate) async fn replace(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> HubResult<Response> {
    update(&state, &id, None, &peer, &headers, &body, true).await
}

/// `GET /twins/{id}/modules/{mid}` -> 200 module twin (with the live `connectionState`);
/// 404 `ModuleNotFound` or `DeviceNotFound`.
pub(crate) async fn get_module(
    State(state): State<HttpState>,
    Path((id, mid)): Path<(String, String)>,
    peer: Peer,
    headers: HeaderMap,
) -> HubResult<Response> {
    hub_service(&state, &headers, READ, &peer)?;
    state.hub.admit_for(Operation::TwinRead, &id, Some(&mid))?;
    Ok(ok_json(
        &state
            .hub
            .service_twin(TwinTarget::Module(&id, &mid))
            .await?,
    ))
}

/// `PATCH /twins/{id}/modules/{mid}` (If-Match optional) -> 200 + the full module twin.
pub(crate) async fn patch_module(
    State(state): State<HttpState>,
    Path((id, mid)): Path<(String, String)>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> HubResult<Response> {
    update(&state, &id, Some(&mid), &peer, &headers, &body, false).await
}

/// `PUT /twins/{id}/modules/{mid}` (If-Match optional) -> 200 + the full module twin; tags
/// and desired properties are replaced by the body's.
pub(crate) async fn replace_module(
    State(state): State<HttpState>,
    Path((id, mid)): Path<(String, String)>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> HubResult<Response> {
    update(&state, &id, Some(&mid), &peer, &headers, &body, true).await
}

/// PATCH (`replace = false`) or PUT of a device twin (`module = None`) or a module twin.
async fn update(
    state: &HttpState,
    id: &str,
    module: Option<&str>,
    peer: &Peer,
    headers: &HeaderMap,
    body: &[u8],
    replace: bool,
) -> HubResult<Response> {
    hub_service(state, headers, WRITE, peer)?;
    state.hub.admit_for(Operation::TwinUpdate, id, module)?;
    let doc: Value = require_json(body, "Twin")?;
    if !doc.is_object() {
        return Err(ApiError::bad_request("the request body must be a Twin JSON object").into());
    }
    let twin = state
        .hub
        .update_service_twin(
            TwinTarget::new(id, module),
            &doc,
            if_match(headers),
            replace,
        )
        .await?;
    Ok(ok_json(&twin))
}
