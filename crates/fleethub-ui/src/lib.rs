//! fleethub's web dashboard (`docs/dashboard.md`): server-rendered HTML pages of the DPS and
//! the hub under `/ui/` on the HTTPS listener, for the steps operators otherwise do in the
//! Azure portal: look at the fleet, manage enrollment groups and their registration records,
//! find devices, read and edit twins, invoke direct methods, send cloud-to-device messages, see
//! IoT Edge devices' module status and manage deployments.
//!
//! Like the other transports it calls `fleethub-services` only. Sign-in is with a service
//! policy's connection string (hub and/or DPS); the policy's rights decide what a page shows
//! and which actions it offers, and every action checks them again. Sessions are signed
//! cookies (`session`); every state-changing request carries the session's CSRF token. HTML is
//! built with `maud`, which escapes every value it interpolates. Pages work without
//! JavaScript except the live-telemetry tail; the CSS is embedded (no external requests at
//! build or run time).

mod error;
mod login;
mod page;
pub mod rate;
pub mod session;
mod viewer;
mod views;

use axum::Router;
use axum::routing::{get, post};
use fleethub_services::{AuthFailureLog, Clock, Dps, Hub, ServiceAuth};
use std::sync::Arc;

pub use session::SessionKey;

/// How long a session lasts unless configured otherwise.
pub const DEFAULT_SESSION_SECS: u64 = 8 * 3600;

/// What the dashboard's handlers need. Cheap to clone.
#[derive(Clone)]
pub struct UiState {
    pub dps: Arc<Dps>,
    pub hub: Arc<Hub>,
    /// The DPS's shared access policies (sign-in with a DPS connection string).
    pub dps_auth: Arc<ServiceAuth>,
    /// The hub's shared access policies (sign-in with a hub connection string).
    pub hub_auth: Arc<ServiceAuth>,
    /// Where failed sign-ins are recorded (with the other authentication failures).
    pub auth_failures: Arc<AuthFailureLog>,
    /// Signs the session cookies.
    pub session_key: SessionKey,
    /// Session lifetime in seconds.
    pub session_secs: u64,
    pub clock: Clock,
    /// Telemetry per minute over the last hour (the overview's chart).
    pub rate: Arc<rate::TelemetryRate>,
}

/// The dashboard's routes, all under `/ui`.
pub fn router(state: UiState) -> Router {
    Router::new()
        .route("/ui", get(page::to_home))
        .route("/ui/", get(views::overview::show))
        .route("/ui/style.css", get(page::stylesheet))
        .route("/ui/login", get(login::form).post(login::submit))
        .route("/ui/logout", post(login::logout))
        .route("/ui/enrollments", get(views::enrollments::list))
        .route(
            "/ui/enrollments/new",
            get(views::individuals::new_form).post(views::individuals::create),
        )
        .route("/ui/enrollments/{id}", get(views::individuals::show))
        .route(
            "/ui/enrollments/{id}/delete",
            post(views::individuals::delete),
        )
        .route(
            "/ui/groups/new",
            get(views::groups::new_form).post(views::groups::create),
        )
        .route("/ui/groups/{id}", get(views::groups::show))
        .route("/ui/groups/{id}/delete", post(views::groups::delete))
        .route(
            "/ui/groups/{id}/edit",
            post(views::enrollment_edit::edit_group),
        )
        .route(
            "/ui/enrollments/{id}/edit",
            post(views::enrollment_edit::edit_enrollment),
        )
        .route(
            "/ui/groups/{id}/registrations/{reg}/delete",
            post(views::groups::delete_registration),
        )
        .route("/ui/telemetry", get(views::telemetry::show))
        .route("/ui/telemetry/stream", get(views::telemetry::stream))
        .route("/ui/devices", get(views::devices::list))
        .route("/ui/devices/{id}", get(views::devices::show))
        .route("/ui/devices/{id}/twin", post(views::devices::update_twin))
        .route(
            "/ui/devices/{id}/method",
            post(views::devices::invoke_method),
        )
        .route("/ui/devices/{id}/c2d", post(views::devices::send_c2d))
        .route("/ui/devices/{id}/modules", post(views::edge::set_modules))
        .route("/ui/edge", get(views::edge::list))
        .route("/ui/devices/{id}/modules/{m}", get(views::modules::show))
        .route(
            "/ui/devices/{id}/modules/{m}/twin",
            post(views::modules::update_twin),
        )
        .route("/ui/deployments", get(views::deployments::list))
        .route(
            "/ui/deployments/new",
            get(views::deployments::new_form).post(views::deployments::create),
        )
        .route("/ui/deployments/{id}", get(views::deployments::show))
        .route(
            "/ui/deployments/{id}/delete",
            post(views::deployments::delete),
        )
        .with_state(state)
}
