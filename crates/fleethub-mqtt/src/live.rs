//! One live hub connection per identity: a new CONNECT for the same device (or module)
//! takes over and the older connection is closed, as IoT Hub does.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::oneshot;

#[derive(Default)]
pub(crate) struct LiveConnections {
    next_id: AtomicU64,
    map: Mutex<HashMap<String, (u64, oneshot::Sender<()>)>>,
}

/// Held by a connection; dropping it unregisters the connection.
pub(crate) struct LiveGuard<'a> {
    owner: &'a LiveConnections,
    identity: String,
    pub(crate) id: u64,
    pub(crate) taken_over: oneshot::Receiver<()>,
}

impl LiveConnections {
    pub(crate) fn register(&self, identity: &str) -> LiveGuard<'_> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let old = self
            .map
            .lock()
            .expect("live map")
            .insert(identity.to_string(), (id, tx));
        if let Some((_, old_tx)) = old {
            tracing::info!(
                identity,
                "a new connection for this identity takes over; closing the older one"
            );
            let _ = old_tx.send(());
        }
        LiveGuard {
            owner: self,
            identity: identity.to_string(),
            id,
            taken_over: rx,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.map.lock().expect("live map").len()
    }
}

impl Drop for LiveGuard<'_> {
    fn drop(&mut self) {
        let mut map = self.owner.map.lock().expect("live map");
        if map
            .get(&self.identity)
            .is_some_and(|(id, _)| *id == self.id)
        {
            map.remove(&self.identity);
        }
    }
}
