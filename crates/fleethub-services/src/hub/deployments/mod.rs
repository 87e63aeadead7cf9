//! The deployment engine: keeps every IoT Edge device's module twins on the content its
//! deployments (and its own `applyConfigurationContent` content) call for, and its twin's
//! `configurations` field up to date.
//!
//! Work arrives as "device changed" marks (twin tags or reported properties, device or module
//! created, DPS assignment) and "configurations changed" (create/update/delete: re-plan every
//! device); [`Hub::run_deployments`] also sweeps every device periodically. Writes only happen
//! when something changes, so desired `$version`s only move with content.

mod generation;
pub mod metrics;
pub mod plan;

pub use generation::GENERATION_SETTING;

use super::Hub;
use crate::hub::Error;
use crate::hub::TwinTarget;
use fleethub_storage::PageRequest;
use plan::{Compiled, Plan};
use serde_json::{Map, Value, json};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Engine state kept in the [`Hub`].
#[derive(Default)]
pub(crate) struct Engine {
    dirty: Mutex<HashSet<String>>,
    sweep: AtomicBool,
    wake: tokio::sync::Notify,
    /// Compiled IoT Edge deployments; `None` after a change.
    cache: Mutex<Option<Arc<Vec<Compiled>>>>,
    /// Counts the changes that emptied `cache`: a list read before a change must not fill it.
    changes: AtomicU64,
    /// In a cluster: the stored configurations generation the cache was built from.
    seen: Mutex<generation::Seen>,
}

impl Engine {
    /// Empties the cache of compiled deployments (a configuration changed).
    fn invalidate(&self) {
        let mut cache = self.cache.lock().expect("deployments");
        self.changes.fetch_add(1, Ordering::SeqCst);
        *cache = None;
    }

    /// How many changes emptied the cache so far: read before the configurations are listed.
    fn change_count(&self) -> u64 {
        self.changes.load(Ordering::SeqCst)
    }

    /// Caches deployments compiled from a list read after `change` changes, unless another
    /// change came meanwhile: that list may predate it, so it serves the current pass only
    /// (the change asked for another sweep, which reads the list again).
    fn keep(&self, change: u64, compiled: &Arc<Vec<Compiled>>) {
        let mut cache = self.cache.lock().expect("deployments");
        if self.change_count() == change {
            *cache = Some(compiled.clone());
        }
    }
}

/// Desired properties without `$version` / `$metadata`.
fn content_of(desired: &Value) -> Map<String, Value> {
    let mut m = desired.as_object().cloned().unwrap_or_default();
    m.retain(|k, _| !k.starts_with('$'));
    m
}

/// What a desired document looks like once stored: twin merge patches drop `null` values and
/// `$`-prefixed keys, so content is compared (and written) in that form.
fn storable(m: &Map<String, Value>) -> Map<String, Value> {
    m.iter()
        .filter(|(k, v)| !k.starts_with('$') && !v.is_null())
        .map(|(k, v)| {
            let v = match v {
                Value::Object(o) => Value::Object(storable(o)),
                other => other.clone(),
            };
            (k.clone(), v)
        })
        .collect()
}

/// The merge patch turning `old` into `new` (`null` removes).
pub(crate) fn diff(old: &Map<String, Value>, new: &Map<String, Value>) -> Map<String, Value> {
    let mut patch = Map::new();
    for k in old.keys().filter(|k| !new.contains_key(*k)) {
        patch.insert(k.clone(), Value::Null);
    }
    for (k, v) in new {
        match (old.get(k), v) {
            (Some(o), v) if o == v => {}
            (Some(Value::Object(o)), Value::Object(n)) => {
                patch.insert(k.clone(), Value::Object(diff(o, n)));
            }
            _ => {
                patch.insert(k.clone(), v.clone());
            }
        }
    }
    patch
}

impl Hub {
    /// A device may need re-planning (its twin, identity or modules changed).
    pub fn deployments_device_changed(&self, device_id: &str) {
        self.deployments
            .dirty
            .lock()
            .expect("deployments")
            .insert(device_id.to_string());
        self.deployments.wake.notify_one();
    }

    /// Configurations changed: re-plan every device.
    pub fn deployments_changed(&self) {
        self.deployments.invalidate();
        self.deployments.sweep.store(true, Ordering::SeqCst);
        self.deployments.wake.notify_one();
    }

    /// Configurations changed on another node (its `ConfigurationsChanged` event): the same
    /// as a change here.
    pub(crate) fn deployments_changed_elsewhere(&self) {
        self.deployments_changed();
    }

    /// The IoT Edge deployments, compiled (cached until a configuration changes; in a cluster
    /// also until the stored configurations generation changes, see `generation`).
    pub(crate) async fn compiled_deployments(&self) -> Result<Arc<Vec<Compiled>>, Error> {
        // Read before the list: a change between the two only causes one more reload.
        let generation = self.recheck_generation().await?;
        if let Some(c) = self.deployments.cache.lock().expect("deployments").clone() {
            return Ok(c);
        }
        let change = self.deployments.change_count();
        let all = self.store.list_configurations(0).await?;
        let compiled: Arc<Vec<Compiled>> = Arc::new(
            all.into_iter()
                .filter_map(|c| Compiled::new(Arc::new(c)))
                .collect(),
        );
        if let Some(g) = generation {
            self.deployments
                .seen
                .lock()
                .expect("deployments")
                .generation = g;
        }
        self.deployments.keep(change, &compiled);
        Ok(compiled)
    }

    /// Runs the engine until the process ends: marked devices at once, every device after a
    /// configuration change and every `sweep_every`.
    pub async fn run_deployments(self: Arc<Self>, sweep_every: Duration) {
        let mut tick = tokio::time::interval(sweep_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.deployments.wake.notified() => {}
                _ = tick.tick() => self.deployments.sweep.store(true, Ordering::SeqCst),
            }
            if self.deployments.sweep.swap(false, Ordering::SeqCst) {
                self.deployments.dirty.lock().expect("deployments").clear();
                if let Err(e) = self.apply_deployments_all().await {
                    tracing::warn!("deployment sweep failed: {e}");
                }
                continue;
            }
            let dirty: Vec<String> = self
                .deployments
                .dirty
                .lock()
                .expect("deployments")
                .drain()
                .collect();
            for id in dirty {
                if let Err(e) = self.apply_deployments_to(&id).await {
                    tracing::warn!(device = %id, "applying deployments failed: {e}");
                }
            }
        }
    }

    /// Re-plans every device; returns how many were examined.
    pub async fn apply_deployments_all(&self) -> Result<usize, Error> {
        let mut page = PageRequest {
            continuation: None,
            max_items: 500,
        };
        let mut n = 0;
        loop {
            let p = self.store.list_devices(page.clone()).await?;
            for rec in &p.items {
                n += 1;
                if let Err(e) = self.apply_deployments_to(&rec.device.device_id).await {
                    tracing::warn!(device = %rec.device.device_id, "applying deployments failed: {e}");
                }
            }
            match p.continuation {
                Some(c) => page.continuation = Some(c),
                None => return Ok(n),
            }
        }
    }

    /// Plans one device and writes what changed: module twins' desired properties and the
    /// device twin's `configurations`. Returns the plan (`None`: no such device).
    pub async fn apply_deployments_to(&self, device_id: &str) -> Result<Option<Plan>, Error> {
        let Some(rec) = self.store.get_device(device_id).await? else {
            return Ok(None);
        };
        let plan = if rec.device.is_edge() {
            let deployments = self.compiled_deployments().await?;
            let manual = self.store.get_manual_content(device_id).await?;
            let doc = query_view(&rec);
            plan::plan(&doc, &deployments, manual.as_ref())
        } else {
            Plan::default()
        };
        if !plan.modules.is_empty() {
            self.ensure_edge_modules(device_id).await?;
        }
        for (module, desired) in &plan.modules {
            self.replace_module_desired(device_id, module, desired)
                .await?;
        }
        let want = plan.statuses_value();
        let have = rec.twin.configurations.clone().unwrap_or_else(|| json!({}));
        if want != have {
            self.modify_twin(TwinTarget::Device(device_id), |t| {
                t.configurations = (!plan.statuses.is_empty()).then(|| want.clone());
                Ok(())
            })
            .await?;
        }
        Ok(Some(plan))
    }

    /// Makes a module twin's desired properties exactly `desired` (if the module exists),
    /// bumping `$version` and notifying the module only when they differ. Returns whether
    /// anything was written.
    async fn replace_module_desired(
        &self,
        device_id: &str,
        module_id: &str,
        desired: &Map<String, Value>,
    ) -> Result<bool, Error> {
        let Some(current) = self.store.get_module(device_id, module_id).await? else {
            // Applied when the module identity is created (put_module marks the device).
            return Ok(false);
        };
        let desired = &storable(desired);
        if &content_of(&current.twin.properties.desired) == desired {
            return Ok(false);
        }
        let now = self.clock.now_utc();
        let mut pushed = None;
        self.modify_twin(TwinTarget::Module(device_id, module_id), |t| {
            let patch = diff(&content_of(&t.properties.desired), desired);
            if patch.is_empty() {
                // Another node's engine wrote the same content meanwhile (both planned after a
                // configuration change): no new desired version, nothing to push.
                pushed = None;
                return Ok(());
            }
            let v = super::twin::apply_section(&mut t.properties.desired, &patch, &now, true);
            let mut notify = Value::Object(patch);
            notify["$version"] = json!(v);
            pushed = Some(notify);
            Ok(())
        })
        .await?;
        let Some(p) = pushed else {
            return Ok(false);
        };
        self.deliver(device_id, Some(module_id), super::HubEvent::DesiredPatch(p))
            .await;
        tracing::info!(device = %device_id, module = %module_id, "deployment content written");
        Ok(true)
    }
}

/// The device twin as target conditions and metric queries see it (identity fields included).
pub(crate) fn query_view(rec: &fleethub_storage::DeviceRecord) -> Value {
    let mut twin = rec.twin.clone();
    twin.device_id.clone_from(&rec.device.device_id);
    twin.status = rec.device.status.clone().or(twin.status);
    twin.capabilities = rec.device.capabilities.clone().or(twin.capabilities);
    twin.device_scope = rec.device.device_scope.clone().or(twin.device_scope);
    serde_json::to_value(twin).unwrap_or(Value::Null)
}

#[cfg(test)]
mod cluster_tests;
#[cfg(test)]
mod tests;
