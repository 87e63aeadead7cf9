//! The registry both module runtimes keep: one supervisor task per module, told to restart or
//! stop through a channel, and each module's spec and live state for the synchronous `list`.
//! A runtime supplies only how a supervisor starts (process or container) and how long one may
//! take to stop.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{ModuleSpec, ModuleState, RuntimeError};

/// What a supervisor is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ctl {
    Restart,
    Stop,
}

/// The live state a supervisor updates.
pub(crate) type SharedState = Arc<Mutex<ModuleState>>;

struct Supervisor {
    spec: ModuleSpec,
    ctl: mpsc::UnboundedSender<Ctl>,
    task: JoinHandle<()>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The supervisors of one runtime.
pub(crate) struct Supervisors {
    modules: tokio::sync::Mutex<BTreeMap<String, Supervisor>>,
    /// Spec and state of every module, for the synchronous `list` and `spec`.
    states: Mutex<BTreeMap<String, (ModuleSpec, SharedState)>>,
    /// How long a supervisor told to stop may take before its task is aborted.
    stop_bound: Duration,
}

impl Supervisors {
    pub(crate) fn new(stop_bound: Duration) -> Supervisors {
        Supervisors {
            modules: tokio::sync::Mutex::new(BTreeMap::new()),
            states: Mutex::new(BTreeMap::new()),
            stop_bound,
        }
    }

    /// Runs `spec`: nothing to do when its supervisor runs with the same spec; a changed spec
    /// stops the old supervisor (logging `changed`) and starts a new one with `start`.
    pub(crate) async fn apply(
        &self,
        spec: ModuleSpec,
        changed: &'static str,
        start: impl FnOnce(ModuleSpec, SharedState, mpsc::UnboundedReceiver<Ctl>) -> JoinHandle<()>,
    ) {
        let mut modules = self.modules.lock().await;
        if let Some(s) = modules.get(&spec.name) {
            if s.spec == spec {
                return;
            }
            let old = modules.remove(&spec.name).expect("present");
            tracing::info!(module = spec.name, "{changed}");
            self.stop(old).await;
        }
        let state = Arc::new(Mutex::new(ModuleState::new(&spec)));
        let (tx, rx) = mpsc::unbounded_channel();
        let task = start(spec.clone(), state.clone(), rx);
        lock(&self.states).insert(spec.name.clone(), (spec.clone(), state));
        let name = spec.name.clone();
        modules.insert(
            name,
            Supervisor {
                spec,
                ctl: tx,
                task,
            },
        );
    }

    async fn stop(&self, s: Supervisor) {
        let _ = s.ctl.send(Ctl::Stop);
        let mut task = s.task;
        if tokio::time::timeout(self.stop_bound, &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }

    pub(crate) async fn remove(&self, name: &str) -> Result<(), RuntimeError> {
        let s = self
            .modules
            .lock()
            .await
            .remove(name)
            .ok_or_else(|| RuntimeError::NotFound(name.into()))?;
        self.stop(s).await;
        lock(&self.states).remove(name);
        Ok(())
    }

    pub(crate) async fn restart(&self, name: &str) -> Result<(), RuntimeError> {
        let modules = self.modules.lock().await;
        let s = modules
            .get(name)
            .ok_or_else(|| RuntimeError::NotFound(name.into()))?;
        s.ctl.send(Ctl::Restart).map_err(|_| RuntimeError::Failed {
            module: name.into(),
            reason: "the module's supervisor has ended".into(),
        })
    }

    pub(crate) fn list(&self) -> Vec<ModuleState> {
        lock(&self.states)
            .values()
            .map(|(_, s)| lock(s).clone())
            .collect()
    }

    pub(crate) fn spec(&self, name: &str) -> Option<ModuleSpec> {
        lock(&self.states).get(name).map(|(s, _)| s.clone())
    }

    /// Stops every supervisor (all at once) and forgets the modules.
    pub(crate) async fn shutdown(&self) {
        let all: Vec<Supervisor> = std::mem::take(&mut *self.modules.lock().await)
            .into_values()
            .collect();
        futures_util::future::join_all(all.into_iter().map(|s| self.stop(s))).await;
        lock(&self.states).clear();
    }
}
