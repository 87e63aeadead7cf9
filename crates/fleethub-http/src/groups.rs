//! DPS service API, enrollment groups (docs/protocol-notes.md, "Service REST API and api-versions"): `/enrollmentGroups/...`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use fleethub_api::{BulkEnrollmentGroupOperation, EnrollmentGroup};
use fleethub_services::Right;

use crate::HttpState;
use crate::auth::dps_service;
use crate::body::{
    Peer, check_query, if_match, ok_json, page_request, page_response, require_json,
};
use crate::error::{ApiError, ServiceResult, empty};

/// `PUT /enrollmentGroups/{id}` (If-Match optional) -> 200 + the stored group.
pub(crate) async fn put(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> ServiceResult<Response> {
    dps_service(&state, &headers, Right::EnrollmentWrite, &peer)?;
    let group: EnrollmentGroup = require_json(&body, "EnrollmentGroup")?;
    let saved = state.dps.put_group(&id, group, if_match(&headers)).await?;
    Ok(ok_json(&saved))
}

/// `GET /enrollmentGroups/{id}` -> 200.
pub(crate) async fn get(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    peer: Peer,
    headers: HeaderMap,
) -> ServiceResult<Response> {
    dps_service(&state, &headers, Right::EnrollmentRead, &peer)?;
    Ok(ok_json(&state.dps.get_group(&id).await?))
}

/// `DELETE /enrollmentGroups/{id}` (If-Match optional) -> 204; registration records are kept.
pub(crate) async fn delete(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    peer: Peer,
    headers: HeaderMap,
) -> ServiceResult<Response> {
    dps_service(&state, &headers, Right::EnrollmentWrite, &peer)?;
    state.dps.delete_group(&id, if_match(&headers)).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// `POST /enrollmentGroups/{id}/attestationmechanism` -> 200 AttestationMechanism (with keys).
pub(crate) async fn attestation(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    peer: Peer,
    headers: HeaderMap,
) -> ServiceResult<Response> {
    dps_service(&state, &headers, Right::EnrollmentRead, &peer)?;
    Ok(ok_json(&state.dps.group_attestation(&id).await?))
}

/// `POST /enrollmentGroups/{id}`: only `POST /enrollmentGroups/query` exists. (The query is routed through
/// the `{id}` route so an enrollment group whose ID is "query" stays reachable with GET/PUT/DELETE.)
pub(crate) async fn post(
    state: State<HttpState>,
    Path(id): Path<String>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> ServiceResult<Response> {
    if !id.eq_ignore_ascii_case("query") {
        return Err(ApiError::from_status(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method POST is not allowed on /enrollmentGroups/{id}"),
        )
        .into());
    }
    query(state, peer, headers, body).await
}

/// `POST /enrollmentGroups/query` -> 200 array, `x-ms-continuation` only when more pages exist.
async fn query(
    State(state): State<HttpState>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> ServiceResult<Response> {
    dps_service(&state, &headers, Right::EnrollmentRead, &peer)?;
    check_query(&body)?;
    let req = page_request(&headers)?;
    let page = state.dps.query_groups(req.clone()).await?;
    Ok(page_response(page, "enrollmentGroup", &req))
}

/// `POST /enrollmentGroups` (BulkEnrollmentGroupOperation) -> 200 BulkEnrollmentOperationResult.
pub(crate) async fn bulk(
    State(state): State<HttpState>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> ServiceResult<Response> {
    dps_service(&state, &headers, Right::EnrollmentWrite, &peer)?;
    let op: BulkEnrollmentGroupOperation = require_json(&body, "BulkEnrollmentGroupOperation")?;
    Ok(ok_json(&state.dps.bulk_groups(op).await?))
}
