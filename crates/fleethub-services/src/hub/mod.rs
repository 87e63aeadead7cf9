//! The IoT hub: device authentication on the device plane and the built-in telemetry
//! endpoint. (Twins, methods and C2D build on this.)

mod auth;
pub mod c2d;
mod cluster_presence;
mod cluster_views;
pub mod configurations;
pub mod deployments;
mod error;
pub mod event_hub;
mod event_queue;
pub mod feedback;
mod keys;
mod methods;
pub mod modules;
mod presence;
pub mod registry;
mod sessions;
mod telemetry;
mod throttling;
pub mod twin;
mod views;

pub use auth::{AuthKey, HubPrincipal};
pub use c2d::C2dSend;
pub use error::{Error, Result};
pub use event_hub::{
    ConsumerGroup, DEFAULT_CONSUMER_GROUP, EventHubConfig, EventHubProperties, EventPosition,
    PartitionEvent, PartitionProperties,
};
pub use event_queue::{EventReceiver, SendError, TryRecvError};
pub use feedback::{FeedbackRecord, FeedbackStatus};
/// Queued cloud-to-device messages, as transports deliver them.
pub use fleethub_storage::C2dMessage;
pub use methods::MethodError;
pub use presence::{Activity, Attachment, Features, HubEvent, MethodCall, Revocation};
pub use sessions::SessionSubscriptions;
pub use telemetry::{EventsPage, MAX_TELEMETRY_BYTES, TelemetryIn};
pub use twin::TwinTarget;

use crate::{AuthFailureLog, Clock, Metrics, Policy, Shared};
use fleethub_storage::Store;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct HubConfig {
    /// The hub's host name: device tokens are signed for `{host}/devices/{id}`.
    pub host: String,
    pub token_skew_secs: u64,
}

pub struct Hub {
    store: Arc<dyn Store>,
    cfg: HubConfig,
    policies: Vec<Policy>,
    auth_failures: Arc<AuthFailureLog>,
    metrics: Arc<Metrics>,
    clock: Clock,
    telemetry_tx: tokio::sync::broadcast::Sender<Arc<fleethub_storage::TelemetryMessage>>,
    presence: presence::Presence,
    methods: methods::PendingMethods,
    feedback: feedback::Feedback,
    deployments: deployments::Engine,
    endpoint: event_hub::State,
    throttle: Arc<crate::Throttle>,
    cluster: cluster_presence::ClusterState,
}

impl Hub {
    pub fn new(shared: &Shared, cfg: HubConfig, policies: Vec<Policy>) -> Hub {
        let (telemetry_tx, _) = tokio::sync::broadcast::channel(4096);
        Hub {
            store: shared.store.clone(),
            cfg,
            policies,
            auth_failures: shared.auth_failures.clone(),
            metrics: shared.metrics.clone(),
            clock: shared.clock.clone(),
            telemetry_tx,
            presence: presence::Presence::default(),
            methods: methods::PendingMethods::default(),
            feedback: feedback::Feedback::default(),
            deployments: deployments::Engine::default(),
            endpoint: event_hub::State::default(),
            throttle: shared.throttle.clone(),
            cluster: cluster_presence::ClusterState::default(),
        }
    }

    pub fn config(&self) -> &HubConfig {
        &self.cfg
    }

    pub fn auth_failures(&self) -> &Arc<AuthFailureLog> {
        &self.auth_failures
    }

    /// Live feed of stored telemetry (for `monitor-events`); slow readers miss messages,
    /// the durable log in the store has them all.
    pub fn subscribe_telemetry(
        &self,
    ) -> tokio::sync::broadcast::Receiver<Arc<fleethub_storage::TelemetryMessage>> {
        self.telemetry_tx.subscribe()
    }
}
