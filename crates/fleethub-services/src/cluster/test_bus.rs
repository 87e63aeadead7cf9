//! Two hubs on one store, joined by an in-process bus that hands each message straight to
//! the other hub (the NATS bus is tested end to end in fleethub-server's
//! `e2e_cluster_nats`). A node taken out of [`Nodes`] cannot be reached: what is sent to it
//! is lost, as on a bus outage.

use super::{ClusterBus, InvokeFuture, Lease, PeerError, PeerEvent, PeerMethod, lease_key};
use crate::Hub;
use crate::hub::HubConfig;
use fleethub_storage::Store;
use fleethub_store::sqlite::SqliteStore;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

/// Delivers to the hubs registered under their node ids; a node not registered is gone.
#[derive(Default)]
pub(crate) struct Nodes(pub Mutex<HashMap<String, Weak<Hub>>>);

pub(crate) struct InProcessBus {
    node: String,
    nodes: Arc<Nodes>,
}

impl InProcessBus {
    fn hub(&self, node: &str) -> Option<Arc<Hub>> {
        self.nodes.0.lock().unwrap().get(node)?.upgrade()
    }
}

impl ClusterBus for InProcessBus {
    fn node_id(&self) -> &str {
        &self.node
    }

    fn send(&self, node: &str, event: PeerEvent) {
        if let Some(h) = self.hub(node) {
            h.apply_peer_event(event);
        }
    }

    fn broadcast(&self, event: PeerEvent) {
        let others: Vec<String> = self.nodes.0.lock().unwrap().keys().cloned().collect();
        for n in others.iter().filter(|n| **n != self.node) {
            self.send(n, event.clone());
        }
    }

    fn invoke<'a>(&'a self, node: &'a str, call: PeerMethod) -> InvokeFuture<'a> {
        Box::pin(async move {
            match self.hub(node) {
                Some(h) => Ok(h.invoke_method_for_peer(call).await),
                None => Err(PeerError(format!("no responders for {node}"))),
            }
        })
    }
}

pub(crate) fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Writes `node`'s lease as renewed at `heartbeat_unix`.
pub(crate) async fn lease(store: &Arc<dyn Store>, node: &str, heartbeat_unix: u64) {
    let doc = serde_json::to_string(&Lease {
        instance: "test".into(),
        beat: heartbeat_unix,
        heartbeat_unix,
    })
    .unwrap();
    store.put_setting(&lease_key(node), &doc).await.unwrap();
}

pub(crate) struct Cluster {
    pub store: Arc<dyn Store>,
    /// Node `a`.
    pub a: Arc<Hub>,
    /// Node `b`.
    pub b: Arc<Hub>,
    pub nodes: Arc<Nodes>,
    pub _dir: tempfile::TempDir,
}

impl Cluster {
    /// Makes `node` unreachable (what is sent to it is lost) until [`Cluster::reconnect`].
    pub(crate) fn disconnect(&self, node: &str) -> Weak<Hub> {
        self.nodes.0.lock().unwrap().remove(node).unwrap()
    }

    pub(crate) fn reconnect(&self, node: &str, hub: Weak<Hub>) {
        self.nodes.0.lock().unwrap().insert(node.to_string(), hub);
    }
}

/// Nodes `a` and `b` on one SQLite store, both with live leases.
pub(crate) async fn two_hubs() -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("s.db")).unwrap());
    let nodes = Arc::new(Nodes::default());
    let hub = |node: &str| {
        let h = Arc::new(Hub::new(
            &crate::Shared::new(store.clone()),
            HubConfig {
                host: "hub.local".into(),
                token_skew_secs: 30,
            },
            vec![],
        ));
        nodes
            .0
            .lock()
            .unwrap()
            .insert(node.to_string(), Arc::downgrade(&h));
        h.set_cluster_bus(Arc::new(InProcessBus {
            node: node.to_string(),
            nodes: nodes.clone(),
        }));
        h
    };
    let (a, b) = (hub("a"), hub("b"));
    lease(&store, "a", now_unix()).await;
    lease(&store, "b", now_unix()).await;
    Cluster {
        store,
        a,
        b,
        nodes,
        _dir: dir,
    }
}
