//! DPS service API, individual enrollments (docs/protocol-notes.md, "Service REST API and api-versions"): `/enrollments/...`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use fleethub_api::{BulkEnrollmentOperation, IndividualEnrollment};
use fleethub_services::Right;

use crate::HttpState;
use crate::auth::dps_service;
use crate::body::{
    Peer, check_query, if_match, ok_json, page_request, page_response, require_json,
};
use crate::error::{ApiError, ServiceResult, empty};

/// `PUT /enrollments/{id}` (If-Match optional) -> 200 + the stored enrollment.
pub(crate) async fn put(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> ServiceResult<Response> {
    dps_service(&state, &headers, Right::EnrollmentWrite, &peer)?;
    let enrollment: IndividualEnrollment = require_json(&body, "IndividualEnrollment")?;
    let saved = state
        .dps
        .put_enrollment(&id, enrollment, if_match(&headers))
        .await?;
    Ok(ok_json(&saved))
}

/// `GET /enrollments/{id}` -> 200.
pub(crate) async fn get(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    peer: Peer,
    headers: HeaderMap,
) -> ServiceResult<Response> {
    dps_service(&state, &headers, Right::EnrollmentRead, &peer)?;
    Ok(ok_json(&state.dps.get_enrollment(&id).await?))
}

/// `DELETE /enrollments/{id}` (If-Match optional) -> 204.
pub(crate) async fn delete(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    peer: Peer,
    headers: HeaderMap,
) -> ServiceResult<Response> {
    dps_service(&state, &headers, Right::EnrollmentWrite, &peer)?;
    state.dps.delete_enrollment(&id, if_match(&headers)).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// `POST /enrollments/{id}/attestationmechanism` -> 200 AttestationMechanism (with keys).
pub(crate) async fn attestation(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    peer: Peer,
    headers: HeaderMap,
) -> ServiceResult<Response> {
    dps_service(&state, &headers, Right::EnrollmentRead, &peer)?;
    Ok(ok_json(&state.dps.enrollment_attestation(&id).await?))
}

/// `POST /enrollments/{id}`: only `POST /enrollments/query` exists. (The query is routed through
/// the `{id}` route so an enrollment whose ID is "query" stays reachable with GET/PUT/DELETE.)
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
            format!("method POST is not allowed on /enrollments/{id}"),
        )
        .into());
    }
    query(state, peer, headers, body).await
}

/// `POST /enrollments/query` -> 200 array, `x-ms-continuation` only when more pages exist.
async fn query(
    State(state): State<HttpState>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> ServiceResult<Response> {
    dps_service(&state, &headers, Right::EnrollmentRead, &peer)?;
    check_query(&body)?;
    let req = page_request(&headers)?;
    let page = state.dps.query_enrollments(req.clone()).await?;
    Ok(page_response(page, "enrollment", &req))
}

/// `POST /enrollments` (BulkEnrollmentOperation) -> 200 BulkEnrollmentOperationResult.
pub(crate) async fn bulk(
    State(state): State<HttpState>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> ServiceResult<Response> {
    dps_service(&state, &headers, Right::EnrollmentWrite, &peer)?;
    let op: BulkEnrollmentOperation = require_json(&body, "BulkEnrollmentOperation")?;
    Ok(ok_json(&state.dps.bulk_enrollments(op).await?))
}
