//! Live receivers across the nodes of a cluster (docs/scale-out.md, "Cross-node delivery"):
//! each partition's watch is moved by this node's appends, by other nodes' appends announced
//! over the bus (`PeerEvent::PartitionsAdvanced`: at most one broadcast per
//! [`ADVANCE_COALESCE`] per node, naming each advanced partition's last sequence number) and,
//! since the bus delivers at most once, by a re-read of the partition's last sequence number
//! from the store every `cluster::STORE_RECHECK` while a receiver watches it. Without a bus
//! only this node's appends move the watches (a single node: nobody else appends).

use super::Hub;
use crate::cluster::{ClusterBus, PeerEvent, STORE_RECHECK};
use fleethub_storage::Store;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// The shortest pause between two announcements of this node's appends.
pub const ADVANCE_COALESCE: Duration = Duration::from_millis(50);

/// The partitions' watches, shared with the cluster tasks (which hold them weakly: they end
/// with the hub).
#[derive(Default)]
pub(crate) struct Watches {
    /// Per partition: the last enqueued sequence number (set when the endpoint starts).
    pub last: OnceLock<Vec<watch::Sender<i64>>>,
    /// In a cluster: this node's appends not yet announced.
    advances: OnceLock<Advances>,
}

struct Advances {
    pending: Arc<Mutex<BTreeMap<u32, i64>>>,
    kick: mpsc::Sender<()>,
}

/// Moves a watch forward (never back); wakes its receivers when it moved.
fn advance(tx: &watch::Sender<i64>, seq: i64) {
    tx.send_if_modified(|last| {
        let newer = seq > *last;
        if newer {
            *last = seq;
        }
        newer
    });
}

impl Watches {
    /// This node appended up to `seq` in `partition`.
    pub(crate) fn appended(&self, partition: u32, seq: i64) {
        if let Some(tx) = self.last.get().and_then(|l| l.get(partition as usize)) {
            advance(tx, seq);
        }
        if let Some(a) = self.advances.get() {
            let mut pending = a.pending.lock().expect("advances");
            let e = pending.entry(partition).or_insert(seq);
            *e = (*e).max(seq);
            drop(pending);
            let _ = a.kick.try_send(());
        }
    }

    /// Re-reads the last sequence number of every partition someone watches.
    async fn refresh(&self, store: &dyn Store) {
        let Some(last) = self.last.get() else {
            return;
        };
        for (p, tx) in (0u32..).zip(last) {
            if tx.receiver_count() == 0 {
                continue;
            }
            match store.partition_summary(p).await {
                Ok(s) => advance(tx, s.last_sequence_number),
                Err(e) => tracing::debug!(partition = p, error = %e, "partition not re-read"),
            }
        }
    }
}

impl Hub {
    /// Joins the watches to the cluster (called by `set_cluster_bus`): announces this node's
    /// appends and re-reads watched partitions from the store.
    pub(crate) fn share_partition_advances(&self, bus: Arc<dyn ClusterBus>) {
        let watches = &self.endpoint.watches;
        let (kick, rx) = mpsc::channel(1);
        let pending = Arc::new(Mutex::new(BTreeMap::new()));
        let advances = Advances {
            pending: pending.clone(),
            kick,
        };
        if watches.advances.set(advances).is_err() {
            return;
        }
        tokio::spawn(announce(rx, pending, bus));
        tokio::spawn(recheck(Arc::downgrade(watches), self.store.clone()));
    }

    /// Another node appended: `(partition, last sequence number)`.
    pub(crate) fn partitions_advanced_elsewhere(&self, last: &[(u32, i64)]) {
        let Some(txs) = self.endpoint.watches.last.get() else {
            return;
        };
        for &(p, seq) in last {
            if let Some(tx) = txs.get(p as usize) {
                advance(tx, seq);
            }
        }
    }

    /// Re-reads every watched partition now (after a bus outage).
    pub(crate) async fn refresh_partition_watches(&self) {
        self.endpoint.watches.refresh(self.store.as_ref()).await;
    }
}

/// Broadcasts this node's appends: at once after a quiet spell, then at most once per
/// [`ADVANCE_COALESCE`]. Ends with the hub (its sender is dropped).
async fn announce(
    mut kicks: mpsc::Receiver<()>,
    pending: Arc<Mutex<BTreeMap<u32, i64>>>,
    bus: Arc<dyn ClusterBus>,
) {
    while kicks.recv().await.is_some() {
        let last: Vec<(u32, i64)> = std::mem::take(&mut *pending.lock().expect("advances"))
            .into_iter()
            .collect();
        if !last.is_empty() {
            bus.broadcast(PeerEvent::PartitionsAdvanced { last });
        }
        tokio::time::sleep(ADVANCE_COALESCE).await;
    }
}

/// Every [`STORE_RECHECK`], moves watched partitions to the store's last sequence number
/// (a lost announcement delays a receiver by at most that). Ends with the hub.
async fn recheck(watches: Weak<Watches>, store: Arc<dyn Store>) {
    let mut tick = tokio::time::interval(STORE_RECHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(w) = watches.upgrade() else {
            return;
        };
        w.refresh(store.as_ref()).await;
    }
}
