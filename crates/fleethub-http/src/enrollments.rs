//! DPS service API, individual enrollments (`/enrollments/...`) and enrollment groups
//! (`/enrollmentGroups/...`) (docs/protocol-notes.md, "Service REST API and api-versions"). Both collections have the same routes;
//! the handlers are written once, generic over [`Collection`].

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use fleethub_api::{
    AttestationMechanism, BulkEnrollmentGroupOperation, BulkEnrollmentOperation,
    BulkEnrollmentOperationError, BulkEnrollmentOperationResult, EnrollmentGroup,
    IndividualEnrollment,
};
use fleethub_services::dps::{BulkFailure, Error};
use fleethub_services::{Dps, Page, PageRequest, Right};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::future::Future;

use crate::HttpState;
use crate::auth::dps_service;
use crate::body::{
    Peer, check_query, if_match, ok_json, page_request, page_response, require_json,
};
use crate::error::{ApiError, ServiceResult, empty};

/// One of the two enrollment collections.
pub(crate) trait Collection: Send + Sync + 'static {
    /// Route prefix, e.g. `/enrollments`.
    const PATH: &'static str;
    /// Name of the document type in error messages.
    const DOC: &'static str;
    /// Name of the bulk operation type in error messages.
    const BULK: &'static str;
    /// What `x-ms-item-type` names in query pages.
    const ITEM_TYPE: &'static str;
    type Doc: Serialize + DeserializeOwned + Send;
    type Bulk: DeserializeOwned + Send;

    fn put(
        dps: &Dps,
        id: &str,
        doc: Self::Doc,
        if_match: Option<&str>,
    ) -> impl Future<Output = Result<Self::Doc, Error>> + Send;
    fn get(dps: &Dps, id: &str) -> impl Future<Output = Result<Self::Doc, Error>> + Send;
    fn delete(
        dps: &Dps,
        id: &str,
        if_match: Option<&str>,
    ) -> impl Future<Output = Result<(), Error>> + Send;
    fn attestation(
        dps: &Dps,
        id: &str,
    ) -> impl Future<Output = Result<AttestationMechanism, Error>> + Send;
    fn query(
        dps: &Dps,
        page: PageRequest,
    ) -> impl Future<Output = Result<Page<Self::Doc>, Error>> + Send;
    fn bulk(
        dps: &Dps,
        op: Self::Bulk,
    ) -> impl Future<Output = Result<Vec<BulkFailure>, Error>> + Send;
    /// A failed bulk item as the wire names it.
    fn bulk_error(id: String, code: u32, status: String) -> BulkEnrollmentOperationError;
}

/// `/enrollments`.
pub(crate) struct Individual;
/// `/enrollmentGroups`.
pub(crate) struct Groups;

impl Collection for Individual {
    const PATH: &'static str = "/enrollments";
    const DOC: &'static str = "IndividualEnrollment";
    const BULK: &'static str = "BulkEnrollmentOperation";
    const ITEM_TYPE: &'static str = "enrollment";
    type Doc = IndividualEnrollment;
    type Bulk = BulkEnrollmentOperation;

    async fn put(
        dps: &Dps,
        id: &str,
        doc: IndividualEnrollment,
        if_match: Option<&str>,
    ) -> Result<IndividualEnrollment, Error> {
        dps.put_enrollment(id, doc, if_match).await
    }
    async fn get(dps: &Dps, id: &str) -> Result<IndividualEnrollment, Error> {
        dps.get_enrollment(id).await
    }
    async fn delete(dps: &Dps, id: &str, if_match: Option<&str>) -> Result<(), Error> {
        dps.delete_enrollment(id, if_match).await
    }
    async fn attestation(dps: &Dps, id: &str) -> Result<AttestationMechanism, Error> {
        dps.enrollment_attestation(id).await
    }
    async fn query(dps: &Dps, page: PageRequest) -> Result<Page<IndividualEnrollment>, Error> {
        dps.query_enrollments(page).await
    }
    async fn bulk(dps: &Dps, op: BulkEnrollmentOperation) -> Result<Vec<BulkFailure>, Error> {
        dps.bulk_enrollments(op).await
    }
    fn bulk_error(id: String, code: u32, status: String) -> BulkEnrollmentOperationError {
        BulkEnrollmentOperationError {
            registration_id: Some(id),
            enrollment_group_id: None,
            error_code: code,
            error_status: status,
        }
    }
}

impl Collection for Groups {
    const PATH: &'static str = "/enrollmentGroups";
    const DOC: &'static str = "EnrollmentGroup";
    const BULK: &'static str = "BulkEnrollmentGroupOperation";
    const ITEM_TYPE: &'static str = "enrollmentGroup";
    type Doc = EnrollmentGroup;
    type Bulk = BulkEnrollmentGroupOperation;

    async fn put(
        dps: &Dps,
        id: &str,
        doc: EnrollmentGroup,
        if_match: Option<&str>,
    ) -> Result<EnrollmentGroup, Error> {
        dps.put_group(id, doc, if_match).await
    }
    async fn get(dps: &Dps, id: &str) -> Result<EnrollmentGroup, Error> {
        dps.get_group(id).await
    }
    /// Registration records of the group are kept.
    async fn delete(dps: &Dps, id: &str, if_match: Option<&str>) -> Result<(), Error> {
        dps.delete_group(id, if_match).await
    }
    async fn attestation(dps: &Dps, id: &str) -> Result<AttestationMechanism, Error> {
        dps.group_attestation(id).await
    }
    async fn query(dps: &Dps, page: PageRequest) -> Result<Page<EnrollmentGroup>, Error> {
        dps.query_groups(page).await
    }
    async fn bulk(dps: &Dps, op: BulkEnrollmentGroupOperation) -> Result<Vec<BulkFailure>, Error> {
        dps.bulk_groups(op).await
    }
    fn bulk_error(id: String, code: u32, status: String) -> BulkEnrollmentOperationError {
        BulkEnrollmentOperationError {
            registration_id: None,
            enrollment_group_id: Some(id),
            error_code: code,
            error_status: status,
        }
    }
}

/// `PUT {collection}/{id}` (If-Match optional) -> 200 + the stored document.
pub(crate) async fn put<C: Collection>(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> ServiceResult<Response> {
    dps_service(&state, &headers, Right::EnrollmentWrite, &peer)?;
    let doc: C::Doc = require_json(&body, C::DOC)?;
    let saved = C::put(&state.dps, &id, doc, if_match(&headers)).await?;
    Ok(ok_json(&saved))
}

/// `GET {collection}/{id}` -> 200.
pub(crate) async fn get<C: Collection>(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    peer: Peer,
    headers: HeaderMap,
) -> ServiceResult<Response> {
    dps_service(&state, &headers, Right::EnrollmentRead, &peer)?;
    Ok(ok_json(&C::get(&state.dps, &id).await?))
}

/// `DELETE {collection}/{id}` (If-Match optional) -> 204.
pub(crate) async fn delete<C: Collection>(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    peer: Peer,
    headers: HeaderMap,
) -> ServiceResult<Response> {
    dps_service(&state, &headers, Right::EnrollmentWrite, &peer)?;
    C::delete(&state.dps, &id, if_match(&headers)).await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// `POST {collection}/{id}/attestationmechanism` -> 200 AttestationMechanism (with keys).
pub(crate) async fn attestation<C: Collection>(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    peer: Peer,
    headers: HeaderMap,
) -> ServiceResult<Response> {
    dps_service(&state, &headers, Right::EnrollmentRead, &peer)?;
    Ok(ok_json(&C::attestation(&state.dps, &id).await?))
}

/// `POST {collection}/{id}`: only `POST {collection}/query` exists. (The query is routed
/// through the `{id}` route so a document whose ID is "query" stays reachable with
/// GET/PUT/DELETE.)
pub(crate) async fn post<C: Collection>(
    state: State<HttpState>,
    Path(id): Path<String>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> ServiceResult<Response> {
    if !id.eq_ignore_ascii_case("query") {
        return Err(ApiError::from_status(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method POST is not allowed on {}/{id}", C::PATH),
        )
        .into());
    }
    query::<C>(state, peer, headers, body).await
}

/// `POST {collection}/query` -> 200 array, `x-ms-continuation` only when more pages exist.
async fn query<C: Collection>(
    State(state): State<HttpState>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> ServiceResult<Response> {
    dps_service(&state, &headers, Right::EnrollmentRead, &peer)?;
    check_query(&body)?;
    let req = page_request(&headers)?;
    let page = C::query(&state.dps, req.clone()).await?;
    Ok(page_response(page, C::ITEM_TYPE, &req))
}

/// `POST {collection}` (bulk operation) -> 200 BulkEnrollmentOperationResult.
pub(crate) async fn bulk<C: Collection>(
    State(state): State<HttpState>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> ServiceResult<Response> {
    dps_service(&state, &headers, Right::EnrollmentWrite, &peer)?;
    let op: C::Bulk = require_json(&body, C::BULK)?;
    let errors: Vec<_> = C::bulk(&state.dps, op)
        .await?
        .into_iter()
        .map(|BulkFailure { id, error }| {
            let status = error.to_string();
            C::bulk_error(id, ApiError::from(error).code, status)
        })
        .collect();
    Ok(ok_json(&BulkEnrollmentOperationResult {
        is_successful: errors.is_empty(),
        errors,
    }))
}
