//! fleethub business logic, shared by every transport (MQTT, HTTPS, CLI): DPS registration,
//! enrollment management, the hub identity registry and the authentication-failure log.
//! Transports translate wire <-> these calls and map [`dps::Error`] / [`hub::Error`] to
//! their statuses, each in one place.

pub mod auth_log;
pub mod clock;
pub mod cluster;
pub mod dps;
pub mod hub;
pub mod metrics;
pub mod policies;
pub mod query;
pub mod throttle;
pub mod twin_limits;

pub use auth_log::{AuthFailure, AuthFailureLog};

/// `Retry-After` (seconds) of a request refused because the store cannot be reached.
pub const STORE_RETRY_AFTER_SECS: u64 = 5;
pub use clock::Clock;
pub use dps::{AuthContext, AuthOrigin, Dps, DpsConfig, DpsPrincipal, EnrollmentSource};
/// Records the services hand to transports.
pub use fleethub_storage::{C2dMessage, Page, PageRequest, TelemetryMessage};
pub use hub::{Features, Hub, HubConfig, HubEvent, HubPrincipal, MethodError, TelemetryIn};
pub use metrics::Metrics;
pub use policies::{Policy, Right, ServiceAuth, ServiceAuthError, ServiceGrant};
pub use throttle::{Operation, Throttle, ThrottleConfig};

use fleethub_storage::Store;
use std::sync::Arc;

/// What the services share: the store, the clock, the counters, the log of authentication
/// failures and the throttles. Build one, then the services from it.
#[derive(Clone)]
pub struct Shared {
    pub(crate) store: Arc<dyn Store>,
    pub clock: Clock,
    pub metrics: Arc<Metrics>,
    pub auth_failures: Arc<AuthFailureLog>,
    pub throttle: Arc<Throttle>,
}

impl Shared {
    /// The system clock, fresh counters and an authentication-failure log of 1000 entries.
    pub fn new(store: Arc<dyn Store>) -> Shared {
        Shared::with_clock(store, Clock::system())
    }

    /// Inside a tokio runtime the authentication-failure log is kept in `store` too (the last
    /// 1000 survive a restart).
    pub fn with_clock(store: Arc<dyn Store>, clock: Clock) -> Shared {
        let auth_failures = Arc::new(AuthFailureLog::new(1000).with_clock(clock.clone()));
        auth_failures.persist_to(store.clone());
        Shared {
            store,
            auth_failures,
            throttle: Arc::new(Throttle::new(ThrottleConfig::default(), clock.clone())),
            clock,
            metrics: Arc::default(),
        }
    }

    /// The same, with throttles set by `config` instead of the defaults.
    #[must_use]
    pub fn with_throttle(mut self, config: ThrottleConfig) -> Shared {
        self.throttle = Arc::new(Throttle::new(config, self.clock.clone()));
        self
    }
}
