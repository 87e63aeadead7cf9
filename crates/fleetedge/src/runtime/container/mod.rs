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

use std::path::PathBuf;

use std::time::Duration;

pub use spec::{ContainerSpec, PullPolicy, RegistryCredential};

use super::backoff::Backoff;
use super::supervisors::Supervisors;
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

/// The container [`ModuleRuntime`].
pub struct ContainerRuntime {
    settings: ContainerSettings,
    supervisors: Supervisors,
}

impl ContainerRuntime {
    pub fn new(settings: ContainerSettings) -> ContainerRuntime {
        // Stopping a container (the engine's stop with the grace period, then removal) takes
        // longer than stopping a process.
        let stop_bound = settings.stop_timeout + Duration::from_secs(15);
        ContainerRuntime {
            settings,
            supervisors: Supervisors::new(stop_bound),
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
        let settings = self.settings.clone();
        self.supervisors
            .apply(
                spec,
                "module changed; replacing its container",
                |spec, state, ctl| tokio::spawn(supervise::run(spec, state, ctl, settings)),
            )
            .await;
        Ok(())
    }

    async fn remove(&self, name: &str) -> Result<(), RuntimeError> {
        self.supervisors.remove(name).await
    }

    async fn restart(&self, name: &str) -> Result<(), RuntimeError> {
        self.supervisors.restart(name).await
    }

    fn list(&self) -> Vec<ModuleState> {
        self.supervisors.list()
    }

    fn spec(&self, name: &str) -> Option<ModuleSpec> {
        self.supervisors.spec(name)
    }

    async fn shutdown(&self) {
        self.supervisors.shutdown().await;
    }
}
