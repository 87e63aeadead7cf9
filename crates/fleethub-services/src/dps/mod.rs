//! The Device Provisioning Service: device authentication, registration/assignment, and the
//! enrollment / registration-record management behind the service REST API.

mod allocation;
mod assign;
mod auth;
mod enrollments;
mod error;
mod groups_cache;
mod linked_hubs;
mod recent;
mod remote;
mod reprovision;
mod settings;
mod simulate;
mod validate;
mod webhook;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod webhook_tests;

use crate::{AuthFailureLog, Clock, Metrics, Shared};
use fleethub_api::{EnrollmentGroup, IndividualEnrollment, LinkedHub};
use fleethub_storage::Store;
use std::sync::Arc;

pub use auth::{AuthContext, AuthOrigin, DpsPrincipal};
pub use enrollments::BulkFailure;
pub use error::{Error, Result};
pub use remote::{ProvisionFuture, ReadTwinFuture, RemoteHubError, RemoteHubs, RemoteIdentity};
pub use settings::DpsSettings;
pub use simulate::{EnrollmentMatch, Simulation};
pub use validate::MAX_PAYLOAD_BYTES;
pub use webhook::{
    AllocationWebhooks, DEFAULT_WEBHOOK_TIMEOUT, WebhookError, WebhookFuture, WebhookReply,
};

/// Settings of the DPS instance.
#[derive(Debug, Clone)]
pub struct DpsConfig {
    /// This instance's ID scope (e.g. `0ne0001A2B3`); compared case-insensitively.
    pub id_scope: String,
    /// Host names of this server's own hub(s), linked by default (the first is the local hub);
    /// the hubs an operator links are in the store.
    pub linked_hubs: Vec<String>,
    /// Tolerated clock skew when checking token expiry.
    pub token_skew_secs: u64,
    /// `retry-after` the device is told to wait before polling.
    pub retry_after_secs: u32,
}

/// Where a device's registration rights come from.
#[derive(Debug, Clone, PartialEq)]
pub enum EnrollmentSource {
    Individual(Box<IndividualEnrollment>),
    /// The group and the device key derived from the group key that the device proved.
    Group {
        group: Box<EnrollmentGroup>,
        derived_primary: String,
        derived_secondary: String,
    },
}

/// The DPS service. Cheap to share (`Arc`).
pub struct Dps {
    store: Arc<dyn Store>,
    cfg: DpsConfig,
    groups: groups_cache::GroupCache,
    auth_failures: Arc<AuthFailureLog>,
    metrics: Arc<Metrics>,
    clock: Clock,
    /// Outcomes of recent registrations by operation ID, so that the device's poll does not
    /// need a store read (another instance's poll falls back to the store).
    recent: recent::RecentOperations,
    /// Called with the device id after each assignment (the hub re-plans its deployments).
    assigned_hook: std::sync::OnceLock<AssignedHook>,
    /// The stored linked hubs, read once and refreshed by this instance's changes.
    linked: std::sync::RwLock<Option<Arc<Vec<LinkedHub>>>>,
    /// Creates identities on linked hubs other than the local one.
    remote_hubs: std::sync::OnceLock<Arc<dyn RemoteHubs>>,
    throttle: Arc<crate::Throttle>,
    /// The instance's allocation policy, read once and refreshed by this instance's changes.
    policy: std::sync::RwLock<Option<String>>,
    /// The local hub, which removes devices that moved to another hub (and disconnects them).
    local_hub_registry: std::sync::OnceLock<std::sync::Weak<crate::hub::Hub>>,
    /// Calls custom allocation webhooks, with the bound on one call.
    webhooks: std::sync::OnceLock<(Arc<dyn AllocationWebhooks>, std::time::Duration)>,
}

/// See [`Dps::on_device_assigned`].
pub type AssignedHook = Box<dyn Fn(&str) + Send + Sync>;

impl Dps {
    pub fn new(shared: &Shared, cfg: DpsConfig) -> Dps {
        Dps {
            groups: groups_cache::GroupCache::new(shared.store.clone()),
            store: shared.store.clone(),
            cfg,
            auth_failures: shared.auth_failures.clone(),
            metrics: shared.metrics.clone(),
            clock: shared.clock.clone(),
            recent: recent::RecentOperations::default(),
            assigned_hook: std::sync::OnceLock::default(),
            linked: std::sync::RwLock::default(),
            remote_hubs: std::sync::OnceLock::default(),
            throttle: shared.throttle.clone(),
            webhooks: std::sync::OnceLock::default(),
            local_hub_registry: std::sync::OnceLock::default(),
            policy: std::sync::RwLock::default(),
        }
    }

    /// Sets what creates device identities on linked hubs other than the local one; without
    /// it, a registration that chooses such a hub fails (retryably). Only the first is kept.
    pub fn set_remote_hubs(&self, remote: Arc<dyn RemoteHubs>) {
        let _ = self.remote_hubs.set(remote);
    }

    /// The local hub: a device that moves away from it is deleted through it (its connections
    /// are closed); without it, only from the store. Only the first is kept.
    pub fn set_local_hub(&self, hub: std::sync::Weak<crate::hub::Hub>) {
        let _ = self.local_hub_registry.set(hub);
    }

    /// Registers what to call with the device id whenever a registration assigns (creates or
    /// updates) a device the deployment engine may have to plan: an IoT Edge device, or one
    /// whose twin holds `configurations` statuses. Only the first hook is kept.
    pub fn on_device_assigned(&self, hook: AssignedHook) {
        let _ = self.assigned_hook.set(hook);
    }

    pub fn config(&self) -> &DpsConfig {
        &self.cfg
    }

    pub fn auth_failures(&self) -> &Arc<AuthFailureLog> {
        &self.auth_failures
    }

    /// The device's request of class `op` passes the DPS throttles (per registration ID,
    /// case-insensitive like the ID, and per instance) or is refused with
    /// [`Error::Throttled`].
    fn admit(&self, op: crate::Operation, p: &DpsPrincipal) -> Result<(), Error> {
        let id = p.registration_id.to_ascii_lowercase();
        self.throttle.admit(op, Some(&id)).map_err(|t| {
            crate::metrics::inc(&self.metrics.throttled);
            Error::from(t)
        })
    }
}
