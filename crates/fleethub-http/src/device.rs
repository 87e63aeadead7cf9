//! DPS device API over HTTPS (docs/protocol-notes.md, "DPS HTTPS API"): register, operation-status poll and the
//! registration status lookup. Authentication is the device's SAS token in `Authorization`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use fleethub_api::{DeviceRegistration, RegistrationOperationStatus};
use fleethub_services::{AuthContext, DpsPrincipal};

use crate::HttpState;
use crate::body::{Peer, authorization, json_response, ok_json, parse_json};
use crate::error::{ApiError, DeviceResult};

const TRANSPORT: &str = "https";

/// Authenticates the device named in the path with its `Authorization` SAS token.
async fn authenticate(
    state: &HttpState,
    scope: &str,
    registration_id: &str,
    headers: &HeaderMap,
    peer: &Peer,
) -> DeviceResult<DpsPrincipal> {
    let Some(token) = authorization(headers) else {
        fleethub_core::ids::validate_registration_id(registration_id)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        state.auth_failures.record(
            "dps",
            TRANSPORT,
            registration_id,
            peer.0.clone(),
            "no Authorization header: send a SharedAccessSignature signed with the enrollment key \
             (TPM and X.509 attestation are not supported)",
        );
        return Err(ApiError::unauthorized().into());
    };
    let ctx = AuthContext {
        transport: TRANSPORT,
        peer: peer.as_deref(),
    };
    Ok(state
        .dps
        .authenticate(scope, registration_id, token, ctx)
        .await?)
}

/// `RegistrationOperationStatus` with `202 + Retry-After` while assigning, else 200.
fn operation_response(state: &HttpState, op: &RegistrationOperationStatus) -> Response {
    if op.status.eq_ignore_ascii_case("assigning") {
        let mut resp = json_response(StatusCode::ACCEPTED, op);
        resp.headers_mut().insert(
            "retry-after",
            HeaderValue::from(state.dps.config().retry_after_secs),
        );
        resp
    } else {
        ok_json(op)
    }
}

/// `PUT /{idScope}/registrations/{registrationId}/register`: always `202 assigning` (IoT Edge
/// accepts nothing else), the outcome is durable before the answer.
pub(crate) async fn register(
    State(state): State<HttpState>,
    Path((scope, registration_id)): Path<(String, String)>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> DeviceResult<Response> {
    let principal = authenticate(&state, &scope, &registration_id, &headers, &peer).await?;
    let request: DeviceRegistration = parse_json(&body, "DeviceRegistration")?.unwrap_or_default();
    let op = state.dps.register(&principal, request).await?;
    let mut resp = json_response(StatusCode::ACCEPTED, &op);
    resp.headers_mut().insert(
        "retry-after",
        HeaderValue::from(state.dps.config().retry_after_secs),
    );
    Ok(resp)
}

/// `GET /{idScope}/registrations/{registrationId}/operations/{operationId}`. Node sends a `{}`
/// body on this GET: it is never read.
pub(crate) async fn operation_status(
    State(state): State<HttpState>,
    Path((scope, registration_id, operation_id)): Path<(String, String, String)>,
    peer: Peer,
    headers: HeaderMap,
) -> DeviceResult<Response> {
    let principal = authenticate(&state, &scope, &registration_id, &headers, &peer).await?;
    let op = state
        .dps
        .operation_status(&principal, &operation_id)
        .await?;
    Ok(operation_response(&state, &op))
}

/// `POST /{idScope}/registrations/{registrationId}`: the device's own registration state
/// (`DeviceRegistrationResult`). The body (`DeviceRegistration`) is not needed.
pub(crate) async fn status_lookup(
    State(state): State<HttpState>,
    Path((scope, registration_id)): Path<(String, String)>,
    peer: Peer,
    headers: HeaderMap,
) -> DeviceResult<Response> {
    let principal = authenticate(&state, &scope, &registration_id, &headers, &peer).await?;
    let mut reg = state
        .dps
        .get_registration(&principal.registration_id)
        .await?;
    // Service-side bookkeeping; devices see the group in `symmetricKey.enrollmentGroupId`.
    reg.enrollment_group_id = None;
    Ok(ok_json(&reg))
}
