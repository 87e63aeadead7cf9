//! Connection state across a cluster as the registry shows it (docs/scale-out.md, "Cross-node
//! delivery"): for identities not attached to this node, the presence records in the store,
//! with a node whose lease is stale counted as gone. Outside a cluster nothing changes.

use super::Hub;
use super::presence::{Activity, identity};
use crate::cluster::node_alive;
use std::collections::HashMap;

/// What the store shows about some identities, read once for one answer.
pub(crate) struct ClusterView {
    /// Per identity: connected (on a live node), state changed, last active (unix ms).
    states: HashMap<String, (bool, i64, i64)>,
}

impl Hub {
    /// The cluster's view of the identities `(device, module)` that are not attached here;
    /// `None` outside a cluster or when the store cannot be read.
    pub(crate) async fn cluster_view<'a>(
        &self,
        identities: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    ) -> Option<ClusterView> {
        let bus = self.cluster_bus()?;
        let ids: Vec<String> = identities
            .into_iter()
            .filter(|(d, m)| !self.is_connected(d, *m))
            .map(|(d, m)| identity(d, m))
            .collect();
        if ids.is_empty() {
            return Some(ClusterView {
                states: HashMap::new(),
            });
        }
        let rows = self.store.get_presences(&ids).await.ok()?;
        let mut alive: HashMap<String, bool> = HashMap::new();
        let mut states = HashMap::with_capacity(rows.len());
        let now = self.clock.unix();
        for (id, rec) in rows {
            let connected = match rec.node {
                // This node's record of an identity not attached here: stale.
                Some(n) if n == bus.node_id() => false,
                Some(n) => {
                    if let Some(a) = alive.get(&n) {
                        *a
                    } else {
                        let a = node_alive(self.store.as_ref(), &n, now).await;
                        alive.insert(n, a);
                        a
                    }
                }
                None => false,
            };
            states.insert(id, (connected, rec.state_updated_ms, rec.last_activity_ms));
        }
        Some(ClusterView { states })
    }

    /// How many identities are connected: to this node, and in a cluster to the other live
    /// nodes as the store shows them (`connectedDeviceCount`).
    pub async fn connected_count_everywhere(&self) -> usize {
        let here = self.connected_count();
        let Some(bus) = self.cluster_bus() else {
            return here;
        };
        let Ok(counts) = self.store.count_presence_by_node().await else {
            return here;
        };
        let now = self.clock.unix();
        let mut total = here;
        for (node, n) in counts {
            if node != bus.node_id() && node_alive(self.store.as_ref(), &node, now).await {
                total += n as usize;
            }
        }
        total
    }

    /// Overwrites an identity's `connectionState`, `connectionStateUpdatedTime` and
    /// `lastActivityTime` with what `view` shows (unless the identity is attached here: then
    /// this node's view is the current one).
    pub(crate) fn apply_cluster_view(
        &self,
        view: Option<&ClusterView>,
        device_id: &str,
        module_id: Option<&str>,
        state: &mut Option<String>,
        state_updated: &mut Option<String>,
        last_activity: &mut Option<String>,
    ) {
        let Some(&(connected, state_ms, activity_ms)) =
            view.and_then(|v| v.states.get(&identity(device_id, module_id)))
        else {
            return;
        };
        if self.is_connected(device_id, module_id) {
            return;
        }
        let local = self.activity(device_id, module_id).unwrap_or_default();
        let seen = Activity {
            state_updated_ms: state_ms.max(local.state_updated_ms),
            last_activity_ms: activity_ms.max(local.last_activity_ms),
        };
        *state = Some(
            if connected {
                "Connected"
            } else {
                "Disconnected"
            }
            .into(),
        );
        if seen.state_updated_ms > 0 {
            *state_updated = Some(seen.state_updated_utc());
        }
        if seen.last_activity_ms > 0 {
            *last_activity = Some(seen.last_activity_utc());
        }
    }

    /// [`Hub::apply_cluster_view`] for one identity.
    pub(crate) async fn fill_cluster_state(
        &self,
        device_id: &str,
        module_id: Option<&str>,
        state: &mut Option<String>,
        state_updated: &mut Option<String>,
        last_activity: &mut Option<String>,
    ) {
        let view = self.cluster_view([(device_id, module_id)]).await;
        self.apply_cluster_view(
            view.as_ref(),
            device_id,
            module_id,
            state,
            state_updated,
            last_activity,
        );
    }
}
