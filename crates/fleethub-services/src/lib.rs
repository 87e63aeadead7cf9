//! fleethub business logic, shared by every transport (MQTT, HTTPS, CLI): DPS registration,
//! enrollment management, the hub identity registry and the authentication-failure log.
//! Transports translate wire <-> these calls and map [`DpsError`] / [`HubError`] to statuses.

pub mod auth_log;
pub mod dps;
pub mod error;
pub mod hub;
pub mod metrics;
pub mod policies;
pub mod query;

pub use auth_log::{AuthFailure, AuthFailureLog};
pub use dps::{AuthContext, Dps, DpsConfig, DpsPrincipal, EnrollmentSource};
pub use error::DpsError;
pub use hub::{Features, Hub, HubConfig, HubEvent, HubPrincipal, MethodError, TelemetryIn};
pub use policies::{Policy, Right, ServiceAuth, ServiceAuthError};

/// Current unix time in seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
