//! HTTP APIs of fleethub, as axum routers: the DPS device API (register / poll), the DPS
//! service REST API (enrollments, enrollment groups, registration records), the IoT Hub service
//! REST API (devices, modules, device and module twins, direct methods, queries, statistics,
//! bulk registry, cloud-to-device messages, the telemetry read API), the hub's device API over
//! HTTPS (telemetry, C2D receive, an edge device's own module identities) and diagnostics.
//!
//! Handlers only translate HTTP to [`fleethub_services`] calls and errors back to Azure's wire
//! shapes; all routes are listed in one table, [`ROUTES`], which the router is built from and
//! `docs/openapi.json` is checked against. Wire rules this crate guarantees for every response
//! (docs/protocol-notes.md, "SDK quirks"): JSON bodies carry `Content-Type: application/json; charset=utf-8`,
//! errors are Azure-style JSON (never plain text, including 404, 405 and 413),
//! `x-ms-continuation` only appears when more pages exist, any `api-version` (or none) is
//! accepted, and keyword path segments are matched case-insensitively.

mod auth;
mod body;
mod device;
mod diagnostics;
mod enrollments;
mod error;
mod health;
mod hub;
mod hub_device;
mod linked_hubs;
mod normalize;
mod registrations;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{MethodFilter, MethodRouter, on};
use fleethub_services::{AuthFailureLog, Dps, Hub, ServiceAuth};
use std::sync::Arc;

pub use diagnostics::DEFAULT_AUTH_FAILURES_LIMIT;

use enrollments::{Groups, Individual};
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

/// Declares the route table once: [`ROUTES`] (what is served, for docs and the OpenAPI check)
/// and the handlers the router is built from, so the two cannot differ.
macro_rules! route_table {
    ($($method:ident $path:literal $permission:literal => $handler:expr;)*) => {
        /// Every route served, as `(method, path)` in canonical spelling (keyword segments are
        /// also matched case-insensitively and with a trailing slash, see `normalize`).
        /// `docs/openapi.json` describes exactly these.
        pub const ROUTES: &[(&str, &str)] = &[$((stringify!($method), $path)),*];

        /// Who may call each route of [`ROUTES`], as `(method, path, permission)`: alternatives
        /// separated by `|`, each `dps:{Right}` or `hub:{Right}` (a DPS or hub shared access
        /// policy with that right), `public` (anyone: probes and the API description),
        /// `registration` (the DPS registration's own SAS token),
        /// `device` (the hub device's own SAS token) or `edgeDevice` (an edge device's own SAS
        /// token, for its own modules). `docs/openapi.json` repeats it per operation as
        /// `x-fleethub-permission`, and the tests check that the handlers enforce it.
        pub const ROUTE_PERMISSIONS: &[(&str, &str, &str)] =
            &[$((stringify!($method), $path, $permission)),*];

        fn route_handlers() -> Vec<(&'static str, MethodRouter<HttpState>)> {
            vec![$(($path, on(MethodFilter::$method, $handler))),*]
        }
    };
}

route_table! {
    // DPS device API (DPS error shape).
    PUT "/{idScope}/registrations/{registrationId}/register" "registration" => device::register;
    GET "/{idScope}/registrations/{registrationId}/operations/{operationId}" "registration" => device::operation_status;
    POST "/{idScope}/registrations/{registrationId}" "registration" => device::status_lookup;

    // DPS service API.
    POST "/enrollments" "dps:EnrollmentWrite" => enrollments::bulk::<Individual>;
    GET "/enrollments/{id}" "dps:EnrollmentRead" => enrollments::get::<Individual>;
    PUT "/enrollments/{id}" "dps:EnrollmentWrite" => enrollments::put::<Individual>;
    DELETE "/enrollments/{id}" "dps:EnrollmentWrite" => enrollments::delete::<Individual>;
    // `POST /enrollments/query` (an enrollment named "query" keeps GET/PUT/DELETE)
    POST "/enrollments/{id}" "dps:EnrollmentRead" => enrollments::post::<Individual>;
    POST "/enrollments/{id}/attestationmechanism" "dps:EnrollmentRead" => enrollments::attestation::<Individual>;
    POST "/enrollmentGroups" "dps:EnrollmentWrite" => enrollments::bulk::<Groups>;
    GET "/enrollmentGroups/{id}" "dps:EnrollmentRead" => enrollments::get::<Groups>;
    PUT "/enrollmentGroups/{id}" "dps:EnrollmentWrite" => enrollments::put::<Groups>;
    DELETE "/enrollmentGroups/{id}" "dps:EnrollmentWrite" => enrollments::delete::<Groups>;
    POST "/enrollmentGroups/{id}" "dps:EnrollmentRead" => enrollments::post::<Groups>;
    POST "/enrollmentGroups/{id}/attestationmechanism" "dps:EnrollmentRead" => enrollments::attestation::<Groups>;
    GET "/registrations/{id}" "dps:RegistrationStatusRead" => registrations::get;
    DELETE "/registrations/{id}" "dps:RegistrationStatusWrite" => registrations::delete;
    POST "/registrations/{id}/query" "dps:RegistrationStatusRead" => registrations::query;
    // fleethub: a dry run of a registration (`fleethub dps simulate`).
    POST "/registrations/{id}/simulate" "dps:EnrollmentRead" => registrations::simulate;
    // fleethub: the hubs linked to the instance (Azure: on the resource, `az iot dps linked-hub`).
    GET "/linkedHubs" "dps:ServiceConfig" => linked_hubs::list;
    PUT "/linkedHubs/{name}" "dps:ServiceConfig" => linked_hubs::put;
    DELETE "/linkedHubs/{name}" "dps:ServiceConfig" => linked_hubs::delete;
    // fleethub: the instance's settings (Azure: on the resource, `az iot dps update`).
    GET "/settings" "dps:ServiceConfig" => linked_hubs::get_settings;
    PUT "/settings" "dps:ServiceConfig" => linked_hubs::put_settings;

    // Probes and the API description: open (`public`).
    GET "/healthz" "public" => health::healthz;
    GET "/readyz" "public" => health::readyz;
    GET "/openapi.json" "public" => health::openapi;

    // Diagnostics (DPS or hub service token).
    GET "/diagnostics/authFailures" "dps:ServiceConfig|hub:RegistryRead" => diagnostics::auth_failures;

    // IoT Hub service API. Node lists and bulk-posts to `/devices/` (trailing slash).
    GET "/devices" "hub:RegistryRead" => hub::devices::list;
    POST "/devices" "hub:RegistryWrite" => hub::bulk::bulk;
    GET "/devices/{id}" "hub:RegistryRead" => hub::devices::get;
    PUT "/devices/{id}" "hub:RegistryWrite" => hub::devices::put;
    DELETE "/devices/{id}" "hub:RegistryWrite" => hub::devices::delete;
    // `POST /devices/query` (a device named "query" keeps GET/PUT/DELETE)
    POST "/devices/{id}" "hub:RegistryRead|hub:ServiceConnect" => hub::devices::post;
    GET "/twins/{id}" "hub:RegistryRead|hub:ServiceConnect" => hub::twins::get;
    PATCH "/twins/{id}" "hub:RegistryWrite|hub:ServiceConnect" => hub::twins::patch;
    PUT "/twins/{id}" "hub:RegistryWrite|hub:ServiceConnect" => hub::twins::replace;
    POST "/twins/{id}/methods" "hub:ServiceConnect" => hub::methods::invoke;
    // Module identities: a hub policy token, or (IoT Edge identity daemon) the edge device's
    // own SAS token for its own modules.
    GET "/devices/{id}/modules" "hub:RegistryRead|edgeDevice" => hub::modules::list;
    GET "/devices/{id}/modules/{mid}" "hub:RegistryRead|edgeDevice" => hub::modules::get;
    PUT "/devices/{id}/modules/{mid}" "hub:RegistryWrite|edgeDevice" => hub::modules::put;
    DELETE "/devices/{id}/modules/{mid}" "hub:RegistryWrite|edgeDevice" => hub::modules::delete;
    GET "/twins/{id}/modules/{mid}" "hub:RegistryRead|hub:ServiceConnect" => hub::twins::get_module;
    PATCH "/twins/{id}/modules/{mid}" "hub:RegistryWrite|hub:ServiceConnect" => hub::twins::patch_module;
    PUT "/twins/{id}/modules/{mid}" "hub:RegistryWrite|hub:ServiceConnect" => hub::twins::replace_module;
    POST "/twins/{id}/modules/{mid}/methods" "hub:ServiceConnect" => hub::methods::invoke_module;
    GET "/statistics/devices" "hub:RegistryRead" => hub::statistics::devices;
    GET "/statistics/service" "hub:RegistryRead|hub:ServiceConnect" => hub::statistics::service;
    POST "/devices/{id}/messages/deviceBound" "hub:ServiceConnect" => hub::c2d::send;
    DELETE "/devices/{id}/commands" "hub:ServiceConnect" => hub::c2d::purge;
    // Configurations / IoT Edge deployments at scale. `POST /configurations/testQueries`
    // goes through the `{id}` route.
    GET "/configurations" "hub:RegistryRead" => hub::configurations::list;
    GET "/configurations/{id}" "hub:RegistryRead" => hub::configurations::get;
    PUT "/configurations/{id}" "hub:RegistryWrite" => hub::configurations::put;
    DELETE "/configurations/{id}" "hub:RegistryWrite" => hub::configurations::delete;
    POST "/configurations/{id}" "hub:RegistryRead" => hub::configurations::post;
    POST "/devices/{id}/applyConfigurationContent" "hub:RegistryWrite" => hub::configurations::apply_content;
    GET "/messages/events" "hub:ServiceConnect" => hub::events::read;
    GET "/messages/events/live" "hub:ServiceConnect" => hub::events::live;
    PUT "/messages/events/consumerGroups/{group}/checkpoint" "hub:ServiceConnect" => hub::events::checkpoint;
    // The Event Hub-compatible endpoint: consumer groups and partitions.
    GET "/messages/events/consumerGroups" "hub:ServiceConnect|hub:RegistryRead" => hub::consumer_groups::list;
    GET "/messages/events/consumerGroups/{group}" "hub:ServiceConnect|hub:RegistryRead" => hub::consumer_groups::get;
    PUT "/messages/events/consumerGroups/{group}" "hub:RegistryWrite" => hub::consumer_groups::put;
    DELETE "/messages/events/consumerGroups/{group}" "hub:RegistryWrite" => hub::consumer_groups::delete;
    GET "/messages/events/partitions" "hub:ServiceConnect" => hub::partitions::list;
    GET "/messages/events/partitions/{id}" "hub:ServiceConnect" => hub::partitions::get;

    // IoT Hub device API over HTTPS (device SAS). SDKs spell `devicebound`.
    POST "/devices/{id}/messages/events" "device" => hub_device::send_event;
    GET "/devices/{id}/messages/deviceBound" "device" => hub_device::receive;
    DELETE "/devices/{id}/messages/deviceBound/{lockToken}" "device" => hub_device::complete;
    POST "/devices/{id}/messages/deviceBound/{lockToken}/abandon" "device" => hub_device::abandon;
}

/// The routes of [`ROUTES`], each group behind the middleware that gives its errors their
/// shape (the DPS device API answers in the DPS shape, everything else in the hub shape).
fn routes(state: HttpState) -> Router {
    let mut device = Router::new();
    let mut other = Router::new();
    for (path, handler) in route_handlers() {
        match normalize::shape_for(path) {
            Shape::Device => device = device.route(path, handler),
            Shape::Service => other = other.route(path, handler),
        }
    }
    let device = device.layer(middleware::from_fn(|req: Request, next: Next| {
        error::json_errors(Shape::Device, req, next)
    }));
    let other = other.layer(middleware::from_fn(|req: Request, next: Next| {
        error::json_errors(Shape::Service, req, next)
    }));
    device.merge(other).with_state(state)
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
