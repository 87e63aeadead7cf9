//! Modules as containers (deployment module `"type": "docker"`), through the Docker Engine
//! API over a unix socket (`[moby_runtime] uri`: Docker, or Podman's `podman system service`).
//! One supervisor task per module (see [`supervise`]) pulls the image, creates the container
//! (named after the module, labelled as this daemon's), starts it and restarts it per
//! `restartPolicy` with the same back-off as process modules. Containers without this
//! daemon's label are never touched.

pub mod create;
pub mod engine;
pub mod logs;
pub mod spec;
mod supervise;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use spec::{ContainerSpec, PullPolicy, RegistryCredential};

use super::backoff::Backoff;
use super::{ModuleRuntime, ModuleSpec, ModuleState, RuntimeError};
use crate::config::MobySettings;

/// Settings of [`ContainerRuntime`].
#[derive(Debug, Clone)]
pub struct ContainerSettings {
    pub moby: MobySettings,
    /// The daemon's state directory: the owner label of its containers.
    pub owner: String,
    pub gateway_hostname: String,
    /// The edge CA certificate, mounted into every container.
    pub edge_ca: Option<PathBuf>,
    /// The edge hub listens on loopback addresses only: containers use host networking.
    pub edge_hub_on_loopback: bool,
    pub backoff: Backoff,
    /// Grace period between SIGTERM and SIGKILL.
    pub stop_timeout: Duration,
    /// How often a running container's state is read.
    pub poll_interval: Duration,
}

enum Ctl {
    Restart,
    Stop,
}

struct Handle {
    spec: ModuleSpec,
    ctl: mpsc::UnboundedSender<Ctl>,
    task: JoinHandle<()>,
}

type Observed = (ModuleSpec, Arc<Mutex<ModuleState>>);

/// The container [`ModuleRuntime`].
pub struct ContainerRuntime {
    settings: ContainerSettings,
    modules: tokio::sync::Mutex<BTreeMap<String, Handle>>,
    states: Mutex<BTreeMap<String, Observed>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl ContainerRuntime {
    pub fn new(settings: ContainerSettings) -> ContainerRuntime {
        ContainerRuntime {
            settings,
            modules: tokio::sync::Mutex::new(BTreeMap::new()),
            states: Mutex::new(BTreeMap::new()),
        }
    }

    /// At start: removes the containers a previous run of this daemon left (they are created
    /// again from the deployment). Returns how many; an unreachable engine is not an error
    /// here (modules that need it report it).
    pub async fn sweep(&self) -> usize {
        let uri = &self.settings.moby.uri;
        let Ok(docker) = engine::connect(uri, &self.settings.moby.socket) else {
            return 0;
        };
        let ids = match tokio::time::timeout(
            Duration::from_secs(5),
            engine::our_containers(&docker, uri, &self.settings.owner, None),
        )
        .await
        {
            Ok(Ok(ids)) => ids,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "container engine not available at start");
                return 0;
            }
            Err(_) => return 0,
        };
        for id in &ids {
            if let Err(e) = engine::stop_and_remove(&docker, uri, id, 2).await {
                tracing::warn!(container = id, error = %e, "cannot remove a leftover container");
            }
        }
        if !ids.is_empty() {
            tracing::info!(
                count = ids.len(),
                "removed containers left by a previous run"
            );
        }
        ids.len()
    }

    fn start(&self, spec: ModuleSpec) -> Handle {
        let state = Arc::new(Mutex::new(ModuleState::new(&spec)));
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(supervise::run(
            spec.clone(),
            state.clone(),
            rx,
            self.settings.clone(),
        ));
        lock(&self.states).insert(spec.name.clone(), (spec.clone(), state));
        Handle {
            spec,
            ctl: tx,
            task,
        }
    }

    async fn stop_handle(&self, h: Handle) {
        let _ = h.ctl.send(Ctl::Stop);
        let bound = self.settings.stop_timeout + Duration::from_secs(15);
        let mut task = h.task;
        if tokio::time::timeout(bound, &mut task).await.is_err() {
            task.abort();
        }
    }
}

#[async_trait::async_trait]
impl ModuleRuntime for ContainerRuntime {
    async fn apply(&self, spec: ModuleSpec) -> Result<(), RuntimeError> {
        let Some(container) = &spec.container else {
            return Err(RuntimeError::Failed {
                module: spec.name.clone(),
                reason: "not a container module".into(),
            });
        };
        if container.image.trim().is_empty() {
            return Err(RuntimeError::Failed {
                module: spec.name.clone(),
                reason: "settings.image is empty".into(),
            });
        }
        let mut modules = self.modules.lock().await;
        if let Some(h) = modules.get(&spec.name) {
            if h.spec == spec {
                return Ok(());
            }
            let old = modules.remove(&spec.name).expect("present");
            tracing::info!(
                module = spec.name,
                "module changed; replacing its container"
            );
            self.stop_handle(old).await;
        }
        let name = spec.name.clone();
        let handle = self.start(spec);
        modules.insert(name, handle);
        Ok(())
    }

    async fn remove(&self, name: &str) -> Result<(), RuntimeError> {
        let h = self
            .modules
            .lock()
            .await
            .remove(name)
            .ok_or_else(|| RuntimeError::NotFound(name.into()))?;
        self.stop_handle(h).await;
        lock(&self.states).remove(name);
        Ok(())
    }

    async fn restart(&self, name: &str) -> Result<(), RuntimeError> {
        let modules = self.modules.lock().await;
        let h = modules
            .get(name)
            .ok_or_else(|| RuntimeError::NotFound(name.into()))?;
        h.ctl.send(Ctl::Restart).map_err(|_| RuntimeError::Failed {
            module: name.into(),
            reason: "the module's supervisor has ended".into(),
        })
    }

    fn list(&self) -> Vec<ModuleState> {
        lock(&self.states)
            .values()
            .map(|(_, s)| lock(s).clone())
            .collect()
    }

    fn spec(&self, name: &str) -> Option<ModuleSpec> {
        lock(&self.states).get(name).map(|(s, _)| s.clone())
    }

    async fn shutdown(&self) {
        let all: Vec<Handle> = std::mem::take(&mut *self.modules.lock().await)
            .into_values()
            .collect();
        futures_util::future::join_all(all.into_iter().map(|h| self.stop_handle(h))).await;
        lock(&self.states).clear();
    }
}
