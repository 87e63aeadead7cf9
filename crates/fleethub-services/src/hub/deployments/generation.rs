//! The configurations generation, for several nodes on one store (docs/scale-out.md,
//! "Cross-node delivery"): a node that creates, updates or deletes a configuration writes a
//! new random generation to the setting [`GENERATION_SETTING`] and broadcasts
//! `PeerEvent::ConfigurationsChanged`; every node compares the stored generation with the one
//! its compiled deployments were built from (at most every `cluster::STORE_RECHECK`), so a
//! lost bus message cannot leave a node planning from a stale list. A single node (no bus)
//! neither writes nor reads it.

use super::Hub;
use crate::cluster::{PeerEvent, STORE_RECHECK};
use crate::hub::Error;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// The setting holding the generation of the configurations.
pub const GENERATION_SETTING: &str = "configurations_generation";

/// What the cache knows about the stored generation.
#[derive(Default)]
pub(crate) struct Seen {
    /// The generation the cached deployments were compiled from (`None`: never written).
    pub generation: Option<String>,
    /// When the store was last asked.
    pub checked: Option<Instant>,
}

impl Hub {
    /// After this node changed a configuration: a new generation for the other nodes, and
    /// the event that tells them at once. A store failure is logged (the configuration is
    /// written; the event still goes out).
    pub(crate) async fn configurations_changed_here(&self) {
        let Some(bus) = self.cluster_bus() else {
            return;
        };
        let generation = uuid::Uuid::new_v4().to_string();
        if let Err(e) = self
            .store
            .put_setting(GENERATION_SETTING, &generation)
            .await
        {
            tracing::warn!(
                "the configurations generation was not written (other nodes see the change through the bus only): {e}"
            );
        }
        bus.broadcast(PeerEvent::ConfigurationsChanged);
    }

    /// In a cluster: reads the stored generation (at most every [`STORE_RECHECK`]); when it is
    /// not the one the cache was built from, drops the cache and re-plans every device (this
    /// node may have written plans from the stale list meanwhile). Returns the generation read,
    /// to be kept with a cache built now (`None` when nothing was read).
    pub(crate) async fn recheck_generation(&self) -> Result<Option<Option<String>>, Error> {
        if self.cluster_bus().is_none() {
            return Ok(None);
        }
        let due = {
            let seen = self.deployments.seen.lock().expect("deployments");
            seen.checked.is_none_or(|t| t.elapsed() >= STORE_RECHECK)
                || self
                    .deployments
                    .cache
                    .lock()
                    .expect("deployments")
                    .is_none()
        };
        if !due {
            return Ok(None);
        }
        let stored = self.store.get_setting(GENERATION_SETTING).await?;
        let mut seen = self.deployments.seen.lock().expect("deployments");
        seen.checked = Some(Instant::now());
        let cached = self
            .deployments
            .cache
            .lock()
            .expect("deployments")
            .is_some();
        if cached && seen.generation != stored {
            tracing::info!("configurations changed on another node: re-planning every device");
            self.deployments.invalidate();
            self.deployments.sweep.store(true, Ordering::SeqCst);
            self.deployments.wake.notify_one();
        }
        Ok(Some(stored))
    }
}
