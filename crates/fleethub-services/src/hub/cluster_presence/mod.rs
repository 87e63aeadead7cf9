//! The hub's side of a cluster (docs/scale-out.md, "Cross-node delivery"): with a
//! [`ClusterBus`] set, this node records in the store which identities it holds (claims,
//! releases and last activity, written in order by one task), hands events for identities held
//! by another live node to that node, forwards method calls there, broadcasts revocations,
//! closes an older connection elsewhere when an identity connects here (take-over), and applies
//! what other nodes send. Without a bus none of this runs: a single node behaves as before.

use super::auth::AuthKey;
use super::presence::{Features, identity, revoke};
use super::{Hub, HubEvent, MethodError};
use crate::cluster::{ClusterBus, PeerEvent, PeerMethod, PeerMethodReply, node_alive};
use fleethub_storage::Store;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::mpsc;

/// How often the last activity of busy identities is written to the store.
const ACTIVITY_FLUSH: Duration = Duration::from_secs(5);
/// Presence writes waiting for the writer task (claims and releases; bounded).
const WRITE_QUEUE: usize = 65_536;

#[derive(Default)]
pub(crate) struct ClusterState {
    bus: OnceLock<Arc<dyn ClusterBus>>,
    writes: OnceLock<mpsc::Sender<Write>>,
    /// Last activity per identity since the last flush.
    touched: Arc<Mutex<HashMap<String, i64>>>,
}

enum Write {
    Claim {
        device_id: String,
        module_id: Option<String>,
        at_ms: i64,
    },
    Release {
        id: String,
        at_ms: i64,
    },
    Forget {
        id: String,
    },
}

impl Hub {
    /// Joins this hub to a cluster: from now on presence is kept in the store and events,
    /// method calls and revocations reach identities connected to other nodes over `bus`.
    /// Call inside a tokio runtime; only the first bus is kept.
    pub fn set_cluster_bus(&self, bus: Arc<dyn ClusterBus>) {
        if self.cluster.bus.set(bus.clone()).is_err() {
            return;
        }
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let _ = self.cluster.writes.set(tx);
        tokio::spawn(presence_writer(
            self.store.clone(),
            bus.clone(),
            rx,
            self.cluster.touched.clone(),
            self.clock.unix_ms(),
        ));
        self.share_partition_advances(bus);
    }

    /// Whether this hub is a node of a cluster (it has a cluster bus).
    pub fn is_clustered(&self) -> bool {
        self.cluster_bus().is_some()
    }

    pub(crate) fn cluster_bus(&self) -> Option<&Arc<dyn ClusterBus>> {
        self.cluster.bus.get()
    }

    fn queue_write(&self, w: Write) {
        if let Some(tx) = self.cluster.writes.get()
            && tx.try_send(w).is_err()
        {
            tracing::warn!("presence write dropped: the presence queue is full");
        }
    }

    /// An identity attached here at `at_ms` (called by `attach`).
    pub(crate) fn cluster_claim(&self, device_id: &str, module_id: Option<&str>, at_ms: i64) {
        self.queue_write(Write::Claim {
            device_id: device_id.to_string(),
            module_id: module_id.map(str::to_string),
            at_ms,
        });
    }

    /// An identity's connection here ended at `at_ms` (called by `detach`).
    pub(crate) fn cluster_release(&self, id: &str, at_ms: i64) {
        self.queue_write(Write::Release {
            id: id.to_string(),
            at_ms,
        });
    }

    /// An identity was deleted.
    pub(crate) fn cluster_forget(&self, id: &str) {
        self.queue_write(Write::Forget { id: id.to_string() });
    }

    /// An identity did something (flushed to the store every [`ACTIVITY_FLUSH`]).
    pub(crate) fn cluster_touch(&self, id: &str, at_ms: i64) {
        if self.cluster.bus.get().is_some() {
            self.cluster
                .touched
                .lock()
                .expect("touched")
                .insert(id.to_string(), at_ms);
        }
    }

    /// The live node other than this one that holds `id`, if any.
    async fn holder(&self, bus: &Arc<dyn ClusterBus>, id: &str) -> Option<String> {
        let rec = match self.store.get_presence(id).await {
            Ok(r) => r?,
            Err(e) => {
                tracing::debug!(identity = id, error = %e, "presence not readable");
                return None;
            }
        };
        let node = rec.node.filter(|n| n != bus.node_id())?;
        node_alive(self.store.as_ref(), &node, self.clock.unix())
            .await
            .then_some(node)
    }

    /// Pushes an event to the identity's connection: here if it is attached here, else on the
    /// node that holds it (cluster only).
    pub(crate) async fn deliver(&self, device_id: &str, module_id: Option<&str>, ev: HubEvent) {
        if self.is_connected(device_id, module_id) {
            self.notify(device_id, module_id, ev);
            return;
        }
        let Some(bus) = self.cluster_bus() else {
            return;
        };
        let Some(node) = self.holder(bus, &identity(device_id, module_id)).await else {
            return;
        };
        let event = match ev {
            HubEvent::DesiredPatch(patch) => PeerEvent::DesiredPatch {
                device_id: device_id.to_string(),
                module_id: module_id.map(str::to_string),
                patch,
            },
            HubEvent::C2dAvailable => PeerEvent::C2dAvailable {
                device_id: device_id.to_string(),
            },
            HubEvent::MethodRequest(_) | HubEvent::Revoked(_) => return,
        };
        bus.send(&node, event);
    }

    /// Invokes a method on an identity not attached here: on the node that holds it, else it is
    /// offline. A bus that cannot reach that node answers like an offline device.
    pub(crate) async fn invoke_elsewhere(
        &self,
        call: PeerMethod,
    ) -> Result<(u16, Value), MethodError> {
        let who = identity(&call.device_id, call.module_id.as_deref());
        let Some(bus) = self.cluster_bus() else {
            return Err(MethodError::NotOnline(who));
        };
        let Some(node) = self.holder(bus, &who).await else {
            return Err(MethodError::NotOnline(who));
        };
        let timeout = call.timeout_secs;
        match bus.invoke(&node, call).await {
            Ok(reply) => reply.into_result(who, timeout),
            Err(e) => {
                tracing::debug!(identity = %who, node, error = %e, "method call to another node failed");
                Err(MethodError::NotOnline(who))
            }
        }
    }

    /// A method call another node forwards for an identity attached here.
    pub async fn invoke_method_for_peer(&self, call: PeerMethod) -> PeerMethodReply {
        let r = self
            .invoke_here(
                &call.device_id,
                call.module_id.as_deref(),
                &call.name,
                &call.payload,
                call.timeout_secs,
            )
            .await;
        PeerMethodReply::from_result(r)
    }

    /// Tells the other nodes about a revocation made here.
    pub(crate) fn broadcast_revocation(&self, ev: PeerEvent) {
        if let Some(bus) = self.cluster_bus() {
            bus.broadcast(ev);
        }
    }

    /// Closes the live connections of a device and of its modules (it was disabled or deleted),
    /// on every node.
    pub(crate) fn revoke_device(&self, device_id: &str, reason: &str) {
        self.revoke_device_here(device_id, reason);
        self.broadcast_revocation(PeerEvent::RevokeDevice {
            device_id: device_id.to_string(),
            reason: reason.to_string(),
        });
    }

    /// Closes the live connection of one module (it was deleted), on every node.
    pub(crate) fn revoke_module(&self, device_id: &str, module_id: &str, reason: &str) {
        self.revoke_module_here(device_id, module_id, reason);
        self.broadcast_revocation(PeerEvent::RevokeModule {
            device_id: device_id.to_string(),
            module_id: module_id.to_string(),
            reason: reason.to_string(),
        });
    }

    /// Closes the live connection of an identity if one of `keys` authenticated it (they were
    /// regenerated), on every node. Connections authenticated with a policy key are not
    /// affected.
    pub(crate) fn revoke_keys(
        &self,
        device_id: &str,
        module_id: Option<&str>,
        keys: &[AuthKey],
        reason: &str,
    ) {
        if keys.is_empty() {
            return;
        }
        self.revoke_keys_here(device_id, module_id, keys, reason);
        self.broadcast_revocation(PeerEvent::RevokeKeys {
            device_id: device_id.to_string(),
            module_id: module_id.map(str::to_string),
            keys: keys
                .iter()
                .filter_map(|k| crate::cluster::key_name(k).map(str::to_string))
                .collect(),
            reason: reason.to_string(),
        });
    }

    /// Another node took the identity over at `at_ms`: closes its connection here if it
    /// attached before that. If the connection here is the newer one, the other node's claim
    /// reached the store after this node's (its presence write came late): this node claims
    /// again, and the other node, told in turn, closes its older connection.
    pub(crate) fn take_over_here(
        &self,
        device_id: &str,
        module_id: Option<&str>,
        node: &str,
        at_ms: i64,
    ) {
        let id = identity(device_id, module_id);
        let newer_here = {
            let map = self.presence.map.lock().expect("presence");
            match map.get(&id) {
                Some(a) if a.since_ms <= at_ms => {
                    revoke(
                        &id,
                        a,
                        &format!("a new connection for this identity on node '{node}' takes over"),
                    );
                    None
                }
                Some(a) => Some(a.since_ms),
                None => None,
            }
        };
        if let Some(since_ms) = newer_here {
            tracing::debug!(identity = %id, node, "an older connection's claim came late: claiming again");
            self.cluster_claim(device_id, module_id, since_ms);
        }
    }

    /// Makes up for what other nodes sent while the bus was down (it was lost): closes the
    /// connections of identities disabled or deleted meanwhile, has every connection that
    /// receives C2D look at its queue, recompiles the deployments (and re-plans every device)
    /// and wakes live Event Hubs receivers and feedback readers. Call when the bus is
    /// connected again.
    pub async fn after_bus_outage(&self) {
        self.deployments_changed_elsewhere();
        self.feedback_available_elsewhere();
        self.refresh_partition_watches().await;
        let attached: Vec<(String, Features)> = self
            .presence
            .map
            .lock()
            .expect("presence")
            .iter()
            .map(|(id, a)| (id.clone(), a.features))
            .collect();
        for (id, features) in attached {
            let (device_id, module_id) = match id.split_once('/') {
                Some((d, m)) => (d, Some(m)),
                None => (id.as_str(), None),
            };
            let device = match self.store.get_device(device_id).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::debug!(identity = %id, error = %e, "cannot re-check a connection");
                    continue;
                }
            };
            let Some(device) = device else {
                self.revoke_device_here(device_id, "the device was deleted");
                continue;
            };
            if device.device.status.as_deref() == Some("disabled") {
                self.revoke_device_here(device_id, "the device is disabled");
                continue;
            }
            if let Some(m) = module_id
                && matches!(self.store.get_module(device_id, m).await, Ok(None))
            {
                self.revoke_module_here(device_id, m, "the module was deleted");
                continue;
            }
            if module_id.is_none() && features.c2d {
                self.notify(device_id, None, HubEvent::C2dAvailable);
            }
        }
    }

    /// Applies what another node sent.
    pub fn apply_peer_event(&self, ev: PeerEvent) {
        match ev {
            PeerEvent::DesiredPatch {
                device_id,
                module_id,
                patch,
            } => {
                self.notify(
                    &device_id,
                    module_id.as_deref(),
                    HubEvent::DesiredPatch(patch),
                );
            }
            PeerEvent::C2dAvailable { device_id } => {
                self.notify(&device_id, None, HubEvent::C2dAvailable);
            }
            PeerEvent::RevokeDevice { device_id, reason } => {
                self.revoke_device_here(&device_id, &reason);
            }
            PeerEvent::RevokeModule {
                device_id,
                module_id,
                reason,
            } => self.revoke_module_here(&device_id, &module_id, &reason),
            PeerEvent::RevokeKeys {
                device_id,
                module_id,
                keys,
                reason,
            } => {
                let keys: Vec<AuthKey> = keys
                    .iter()
                    .filter_map(|k| crate::cluster::key_from_name(k))
                    .collect();
                self.revoke_keys_here(&device_id, module_id.as_deref(), &keys, &reason);
            }
            PeerEvent::TakeOver {
                device_id,
                module_id,
                node,
                at_ms,
            } => self.take_over_here(&device_id, module_id.as_deref(), &node, at_ms),
            PeerEvent::ConfigurationsChanged => self.deployments_changed_elsewhere(),
            PeerEvent::PartitionsAdvanced { last } => self.partitions_advanced_elsewhere(&last),
            PeerEvent::FeedbackAvailable => self.feedback_available_elsewhere(),
        }
    }
}

/// Whether a connection with these features wants an event (used by `notify`).
pub(crate) fn wanted(features: Features, ev: &HubEvent) -> bool {
    match ev {
        HubEvent::DesiredPatch(_) => features.desired,
        HubEvent::MethodRequest(_) => features.methods,
        HubEvent::C2dAvailable => features.c2d,
        HubEvent::Revoked(_) => true,
    }
}

/// Writes claims, releases and activity in the order they happened; on a claim that took the
/// identity from another live node, tells that node to close its connection. Store failures
/// are logged once per outage.
async fn presence_writer(
    store: Arc<dyn Store>,
    bus: Arc<dyn ClusterBus>,
    mut rx: mpsc::Receiver<Write>,
    touched: Arc<Mutex<HashMap<String, i64>>>,
    started_ms: i64,
) {
    // What this node held before it (re)started is gone.
    match store.release_node_presence(bus.node_id(), started_ms).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            identities = n,
            "released the presence this node held before it started"
        ),
        Err(e) => {
            tracing::warn!(error = %e, "cannot release the presence this node held before it started");
        }
    }
    let mut tick = tokio::time::interval(ACTIVITY_FLUSH);
    let failing = AtomicBool::new(false);
    let report = |r: Result<(), fleethub_storage::StoreError>| match r {
        Ok(()) => {
            if failing.swap(false, Ordering::Relaxed) {
                tracing::info!("presence is written to the store again");
            }
        }
        Err(e) => {
            if !failing.swap(true, Ordering::Relaxed) {
                tracing::warn!(error = %e, "cannot write presence to the store");
            }
        }
    };
    loop {
        tokio::select! {
            w = rx.recv() => {
                let Some(w) = w else { return };
                match w {
                    Write::Claim { device_id, module_id, at_ms } => {
                        let id = identity(&device_id, module_id.as_deref());
                        match store.claim_presence(&id, bus.node_id(), at_ms).await {
                            Ok(Some(prev)) => {
                                report(Ok(()));
                                bus.send(&prev, PeerEvent::TakeOver {
                                    device_id,
                                    module_id,
                                    node: bus.node_id().to_string(),
                                    at_ms,
                                });
                            }
                            Ok(None) => report(Ok(())),
                            Err(e) => report(Err(e)),
                        }
                    }
                    Write::Release { id, at_ms } => {
                        report(store.release_presence(&id, bus.node_id(), at_ms).await.map(|_| ()));
                    }
                    Write::Forget { id } => report(store.forget_presence(&id).await),
                }
            }
            _ = tick.tick() => {
                let batch: Vec<(String, i64)> =
                    std::mem::take(&mut *touched.lock().expect("touched")).into_iter().collect();
                if !batch.is_empty() {
                    report(store.touch_presence(batch).await);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
