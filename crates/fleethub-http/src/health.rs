//! Probes and the API description, open to anyone (no secrets in them): `GET /healthz` (the
//! process answers), `GET /readyz` (and its store answers too: 503 otherwise), `GET
//! /openapi.json` (`docs/openapi.json`, every route this server serves).

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::HttpState;
use crate::body::ok_json;

/// The OpenAPI document, as committed (checked against the route table by the tests).
pub const OPENAPI_JSON: &str = include_str!("../../../docs/openapi.json");

/// `GET /healthz` -> 200 `{"status":"ok"}` while the process serves HTTP.
pub(crate) async fn healthz() -> Response {
    ok_json(&json!({"status": "ok"}))
}

/// `GET /readyz` -> 200 `{"status":"ready"}` when a store read succeeds, else 503
/// `{"status":"unavailable","reason":..}` (the reason names no secret).
pub(crate) async fn readyz(State(state): State<HttpState>) -> Response {
    match state.hub.check_store().await {
        Ok(()) => ok_json(&json!({"status": "ready"})),
        Err(e) => {
            tracing::warn!("readiness probe: the store does not answer: {e}");
            let mut r =
                ok_json(&json!({"status": "unavailable", "reason": "the store does not answer"}));
            *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            r
        }
    }
}

/// `GET /openapi.json` -> the OpenAPI 3 document of this server's HTTP API.
pub(crate) async fn openapi() -> Response {
    let mut r = OPENAPI_JSON.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}
