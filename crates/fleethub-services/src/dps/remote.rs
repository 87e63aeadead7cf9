//! Device identities on linked hubs other than this server's own: the DPS creates or updates
//! them through the hub's service REST API before the device hears `assigned`
//! (docs/protocol-notes.md, "Linked hubs"). The client that does it lives with the server (it
//! needs the network); the services only see this trait.

use fleethub_api::{InitialTwin, LinkedHub};
use std::future::Future;
use std::pin::Pin;

/// The identity the DPS makes on a linked hub for one registration.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteIdentity {
    pub device_id: String,
    pub primary_key: String,
    pub secondary_key: String,
    pub iot_edge: bool,
    pub initial_twin: Option<InitialTwin>,
    /// Set the twin's tags and desired properties from the initial twin even when the device
    /// exists already (`deviceDataReset`); a device created now always gets the initial twin.
    pub reset_twin: bool,
}

/// Why a linked hub could not take the identity; the text is safe to show (no keys).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct RemoteHubError(pub String);

/// The future of [`RemoteHubs::provision`].
pub type ProvisionFuture<'a> =
    Pin<Box<dyn Future<Output = Result<(), RemoteHubError>> + Send + 'a>>;

/// The future of [`RemoteHubs::read_twin`]: the twin's tags and desired properties, `None`
/// when the hub has no such device.
pub type ReadTwinFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Option<InitialTwin>, RemoteHubError>> + Send + 'a>>;

/// Creates, reads and removes device identities on linked hubs.
pub trait RemoteHubs: Send + Sync {
    /// Creates the device on `hub` with the identity's keys, edge flag and initial twin, or
    /// updates an existing device's keys and edge flag. All or nothing: a device created here
    /// is deleted again when a later step fails.
    fn provision<'a>(
        &'a self,
        hub: &'a LinkedHub,
        identity: &'a RemoteIdentity,
    ) -> ProvisionFuture<'a>;

    /// The tags and desired properties of a device's twin on `hub` (for `migrateDeviceData`).
    fn read_twin<'a>(&'a self, hub: &'a LinkedHub, device_id: &'a str) -> ReadTwinFuture<'a>;

    /// Deletes a device that moved away from `hub` (absent already: fine).
    fn remove<'a>(&'a self, hub: &'a LinkedHub, device_id: &'a str) -> ProvisionFuture<'a>;
}
