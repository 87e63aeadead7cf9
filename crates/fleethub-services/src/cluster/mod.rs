//! Several nodes on one store (docs/scale-out.md, "Cross-node delivery"): the boundary to the
//! bus that carries node-to-node messages ([`ClusterBus`], implemented by the NATS crate and
//! set with [`crate::Hub::set_cluster_bus`]), the messages it carries, and the node leases in
//! the store (`lease`) that tell whether a node is alive. Transport-free: nothing here knows NATS.

mod lease;
mod messages;
#[cfg(test)]
pub(crate) mod test_bus;

pub use lease::{LEASE_STALE, Lease, lease_key, node_alive};
pub use messages::{PeerEvent, PeerMethod, PeerMethodReply};
pub(crate) use messages::{key_from_name, key_name};

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// How often a node that waits for other nodes' writes (live Event Hubs receivers, C2D
/// feedback readers) or caches what they change (compiled deployments) looks at the store
/// itself: the bus delivers at most once (docs/protocol-notes.md, "NATS: the cluster bus"), so
/// a lost message delays a reader by at most this.
pub const STORE_RECHECK: Duration = Duration::from_millis(250);

/// Why a call to another node got no answer (the bus is down, the node is gone, no reply in
/// time). The text is safe to log.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct PeerError(pub String);

/// The future of [`ClusterBus::invoke`].
pub type InvokeFuture<'a> =
    Pin<Box<dyn Future<Output = Result<PeerMethodReply, PeerError>> + Send + 'a>>;

/// Messages between the nodes of a cluster, addressed by node id.
pub trait ClusterBus: Send + Sync {
    /// This node's id (`[cluster] node_id`).
    fn node_id(&self) -> &str;

    /// Hands `event` to `node` without waiting; lost (and logged once per outage) when the bus
    /// or the node is down.
    fn send(&self, node: &str, event: PeerEvent);

    /// Hands `event` to every other node without waiting.
    fn broadcast(&self, event: PeerEvent);

    /// Invokes a direct method on an identity connected to `node` and waits for the device's
    /// answer (the remote node applies `call.timeout_secs`; the bus waits a little longer).
    fn invoke<'a>(&'a self, node: &'a str, call: PeerMethod) -> InvokeFuture<'a>;
}
