//! DPS service API, registration records (docs/protocol-notes.md, "Service REST API and api-versions"): `/registrations/...`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use fleethub_services::Right;

use crate::HttpState;
use crate::auth::dps_service;
use crate::body::{Peer, check_query, if_match, ok_json, page_request, page_response};
use crate::error::{ServiceResult, empty};

/// `GET /registrations/{id}` -> 200 DeviceRegistrationState.
pub(crate) async fn get(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    peer: Peer,
    headers: HeaderMap,
) -> ServiceResult<Response> {
    dps_service(&state, &headers, Right::RegistrationStatusRead, &peer)?;
    Ok(ok_json(&state.dps.get_registration(&id).await?))
}

/// `DELETE /registrations/{id}` (If-Match optional) -> 204.
pub(crate) async fn delete(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    peer: Peer,
    headers: HeaderMap,
) -> ServiceResult<Response> {
    dps_service(&state, &headers, Right::RegistrationStatusWrite, &peer)?;
    state
        .dps
        .delete_registration(&id, if_match(&headers))
        .await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// `POST /registrations/{enrollmentGroupId}/query` -> 200 array of the group's registration
/// states. The body is optional (Python's provisioningserviceclient sends none, Node a
/// QuerySpecification); continuation as for enrollment queries.
pub(crate) async fn query(
    State(state): State<HttpState>,
    Path(group_id): Path<String>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> ServiceResult<Response> {
    dps_service(&state, &headers, Right::RegistrationStatusRead, &peer)?;
    check_query(&body)?;
    let req = page_request(&headers)?;
    let page = state
        .dps
        .query_registrations(Some(&group_id), req.clone())
        .await?;
    Ok(page_response(page, "deviceRegistration", &req))
}

/// Body of `POST /registrations/{id}/simulate` (optional): the device key to check.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SimulateRequest {
    #[serde(default)]
    key: Option<String>,
}

/// `POST /registrations/{registrationId}/simulate` (fleethub), body `{"key": "..."}` or none
/// -> 200 the dry run of a registration (which enrollment, whether the key is right, hub,
/// device ID, initial twin); nothing is written. The key travels in the body, never the URL.
pub(crate) async fn simulate(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> ServiceResult<Response> {
    dps_service(&state, &headers, Right::EnrollmentRead, &peer)?;
    let req: SimulateRequest =
        crate::body::parse_json(&body, "SimulateRequest")?.unwrap_or_default();
    Ok(ok_json(&state.dps.simulate(&id, req.key.as_deref()).await?))
}
