//! A node's lease on its id in the store (the setting `cluster_node:{id}`): renewed by the node
//! every few seconds (`fleethub-server`'s `cluster` module), read by the others to tell whether
//! it is alive.

use fleethub_storage::Store;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A lease not renewed for this long belongs to a node that is gone (renewals come every 4 s).
pub const LEASE_STALE: Duration = Duration::from_secs(10);

/// The lease document.
#[derive(Serialize, Deserialize, PartialEq, Eq, Debug, Clone)]
pub struct Lease {
    /// The holder's start (random): a restarted node has another.
    pub instance: String,
    /// Counts the holder's heartbeats: every renewal changes the lease.
    pub beat: u64,
    pub heartbeat_unix: u64,
}

/// The setting that holds `node_id`'s lease.
pub fn lease_key(node_id: &str) -> String {
    format!("cluster_node:{node_id}")
}

/// Whether `node_id` renewed its lease within [`LEASE_STALE`] of `now_unix` (an unreadable
/// store counts as alive: the bus answers for a node that is really gone).
pub async fn node_alive(store: &dyn Store, node_id: &str, now_unix: u64) -> bool {
    match store.get_setting(&lease_key(node_id)).await {
        Ok(Some(doc)) => serde_json::from_str::<Lease>(&doc)
            .is_ok_and(|l| now_unix.saturating_sub(l.heartbeat_unix) < LEASE_STALE.as_secs()),
        Ok(None) => false,
        Err(_) => true,
    }
}
