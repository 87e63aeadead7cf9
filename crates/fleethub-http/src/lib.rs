//! HTTP APIs of fleethub, as axum routers: the DPS device API (register / poll), the DPS
//! service REST API (enrollments, enrollment groups, registration records), the IoT Hub service
//! REST API (devices, twins, direct methods, queries, statistics, bulk registry) and
//! diagnostics.
//!
//! Handlers only translate HTTP to [`fleethub_services`] calls and errors back to Azure's wire
//! shapes; all routes are listed in [`router`]. Wire rules this crate guarantees for every
//! response (protocols.md section 1): JSON bodies carry
//! `Content-Type: application/json; charset=utf-8`, errors are Azure-style JSON (never plain
//! text, including 404, 405 and 413), `x-ms-continuation` only appears when more pages exist,
//! any `api-version` (or none) is accepted, and keyword path segments are matched
//! case-insensitively.

mod auth;
mod body;
mod device;
mod diagnostics;
mod enrollments;
mod error;
mod groups;
mod hub;
mod normalize;
mod registrations;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post, put};
use fleethub_services::{AuthFailureLog, Dps, Hub, ServiceAuth};
use std::sync::Arc;

pub use diagnostics::DEFAULT_AUTH_FAILURES_LIMIT;

use error::Shape;

/// Largest request body accepted (larger ones get 413 with an Azure-style body).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// What the handlers need. Cheap to clone.
#[derive(Clone)]
pub struct HttpState {
    pub dps: Arc<Dps>,
    pub hub: Arc<Hub>,
    /// Shared access policies of the DPS host (service API, diagnostics).
    pub dps_service_auth: Arc<ServiceAuth>,
    /// Shared access policies of the hub host (hub service API, diagnostics).
    pub hub_service_auth: Arc<ServiceAuth>,
    pub auth_failures: Arc<AuthFailureLog>,
}

/// All HTTP routes. The server may add more routes (e.g. the MQTT WebSocket) and serves it over
/// TLS; it should insert `ConnectInfo<SocketAddr>` (as an extension) so auth failures name the
/// peer. Without it everything still works.
pub fn router(state: HttpState) -> Router {
    let routes = routes(state);
    let retry = routes.clone().fallback(normalize::not_found_handler);
    routes
        .fallback(move |req: Request| normalize::fallback(retry.clone(), req))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(log_request))
}

/// The route table, in canonical path spelling.
fn routes(state: HttpState) -> Router {
    let device = Router::new()
        .route(
            "/{idScope}/registrations/{registrationId}/register",
            put(device::register),
        )
        .route(
            "/{idScope}/registrations/{registrationId}/operations/{operationId}",
            get(device::operation_status),
        )
        .route(
            "/{idScope}/registrations/{registrationId}",
            post(device::status_lookup),
        )
        .layer(middleware::from_fn(|req: Request, next: Next| {
            error::json_errors(Shape::Device, req, next)
        }));

    let service = Router::new()
        .route("/enrollments", post(enrollments::bulk))
        .route("/enrollments/query", post(enrollments::query))
        .route(
            "/enrollments/{id}",
            get(enrollments::get)
                .put(enrollments::put)
                .delete(enrollments::delete),
        )
        .route(
            "/enrollments/{id}/attestationmechanism",
            post(enrollments::attestation),
        )
        .route("/enrollmentGroups", post(groups::bulk))
        .route("/enrollmentGroups/query", post(groups::query))
        .route(
            "/enrollmentGroups/{id}",
            get(groups::get).put(groups::put).delete(groups::delete),
        )
        .route(
            "/enrollmentGroups/{id}/attestationmechanism",
            post(groups::attestation),
        )
        .route(
            "/registrations/{id}",
            get(registrations::get).delete(registrations::delete),
        )
        .route("/registrations/{id}/query", post(registrations::query))
        .route("/diagnostics/authFailures", get(diagnostics::auth_failures))
        .layer(middleware::from_fn(|req: Request, next: Next| {
            error::json_errors(Shape::Service, req, next)
        }));

    // IoT Hub service API. Node lists and bulk-posts to `/devices/` (trailing slash): the
    // fallback retries without it.
    let hub = Router::new()
        .route("/devices", get(hub::devices::list).post(hub::bulk::bulk))
        .route(
            "/devices/{id}",
            get(hub::devices::get)
                .put(hub::devices::put)
                .delete(hub::devices::delete)
                // `POST /devices/query` (a device named "query" keeps GET/PUT/DELETE)
                .post(hub::devices::post),
        )
        .route(
            "/twins/{id}",
            get(hub::twins::get)
                .patch(hub::twins::patch)
                .put(hub::twins::replace),
        )
        .route("/twins/{id}/methods", post(hub::methods::invoke))
        .route("/statistics/devices", get(hub::statistics::devices))
        .route("/statistics/service", get(hub::statistics::service))
        .layer(middleware::from_fn(|req: Request, next: Next| {
            error::json_errors(Shape::Service, req, next)
        }));

    device.merge(service).merge(hub).with_state(state)
}

/// Logs every request at debug level (method, path, status, time; never headers or query).
async fn log_request(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let started = std::time::Instant::now();
    let resp = next.run(req).await;
    tracing::debug!(
        %method,
        path,
        status = resp.status().as_u16(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "http request"
    );
    resp
}
