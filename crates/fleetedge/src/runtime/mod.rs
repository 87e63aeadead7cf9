//! The module runtime: a runtime-neutral [`ModuleRuntime`] trait, the OS-process
//! implementation [`process::ProcessRuntime`], the container implementation
//! [`container::ContainerRuntime`] (Docker Engine API) and [`dispatch::Runtimes`], which picks
//! one per module by the deployment's `type`.

pub mod backoff;
pub mod container;
pub mod dispatch;
pub mod logs;
pub mod process;
mod supervisors;

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// `restartPolicy` of a deployment module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    Never,
    OnFailure,
    /// No health probes exist for processes: behaves like `on-failure`.
    OnUnhealthy,
    Always,
}

impl RestartPolicy {
    pub fn parse(s: &str) -> Option<RestartPolicy> {
        match s {
            "never" => Some(RestartPolicy::Never),
            "on-failure" => Some(RestartPolicy::OnFailure),
            "on-unhealthy" => Some(RestartPolicy::OnUnhealthy),
            "always" => Some(RestartPolicy::Always),
            _ => None,
        }
    }
}

/// Desired `status` of a module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DesiredStatus {
    Running,
    Stopped,
}

/// What to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModuleSpec {
    pub name: String,
    pub command: String,
    pub args: Vec<String>,
    pub working_dir: Option<PathBuf>,
    /// Complete environment of the process (besides PATH/HOME/LANG inherited from the daemon).
    pub env: BTreeMap<String, String>,
    pub restart_policy: RestartPolicy,
    pub desired_status: DesiredStatus,
    /// `version` from the deployment (a change restarts the module).
    pub version: Option<String>,
    /// `"type": "docker"`: the container to run (`command` then holds the image name).
    #[serde(default)]
    pub container: Option<container::ContainerSpec>,
}

impl ModuleSpec {
    /// The CONFIG column of `fleetedge list`: the command line.
    pub fn command_line(&self) -> String {
        std::iter::once(self.command.as_str())
            .chain(self.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// `runtimeStatus` values edgeAgent reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeStatus {
    Unknown,
    Backoff,
    Running,
    Stopped,
    Failed,
}

impl RuntimeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeStatus::Unknown => "unknown",
            RuntimeStatus::Backoff => "backoff",
            RuntimeStatus::Running => "running",
            RuntimeStatus::Stopped => "stopped",
            RuntimeStatus::Failed => "failed",
        }
    }
}

/// Observed state of a module.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModuleState {
    pub name: String,
    pub runtime_status: RuntimeStatus,
    pub desired_status: DesiredStatus,
    pub exit_code: Option<i32>,
    pub status_description: Option<String>,
    pub last_start_time_utc: Option<DateTime<Utc>>,
    pub last_exit_time_utc: Option<DateTime<Utc>>,
    pub restart_count: u32,
    pub last_restart_time_utc: Option<DateTime<Utc>>,
    pub pid: Option<u32>,
    /// The command line (containers: the image).
    pub config: String,
    pub version: Option<String>,
    /// Containers: the image as the deployment names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Containers: the engine's image ID (`sha256:...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_hash: Option<String>,
}

impl ModuleState {
    pub fn new(spec: &ModuleSpec) -> ModuleState {
        ModuleState {
            name: spec.name.clone(),
            runtime_status: RuntimeStatus::Unknown,
            desired_status: spec.desired_status,
            exit_code: None,
            status_description: None,
            last_start_time_utc: None,
            last_exit_time_utc: None,
            restart_count: 0,
            last_restart_time_utc: None,
            pid: None,
            config: spec.command_line(),
            version: spec.version.clone(),
            image: spec.container.as_ref().map(|c| c.image.clone()),
            image_hash: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("module '{0}' does not exist")]
    NotFound(String),
    #[error("module '{module}': {reason}")]
    Failed { module: String, reason: String },
}

/// A backend that runs modules and reports their state.
#[async_trait::async_trait]
pub trait ModuleRuntime: Send + Sync {
    /// Creates the module, or updates it (restarting it when the spec changed).
    async fn apply(&self, spec: ModuleSpec) -> Result<(), RuntimeError>;
    /// Stops and forgets the module.
    async fn remove(&self, name: &str) -> Result<(), RuntimeError>;
    /// Stops and starts the module again (resets its back-off).
    async fn restart(&self, name: &str) -> Result<(), RuntimeError>;
    /// Current state of every module, sorted by name.
    fn list(&self) -> Vec<ModuleState>;
    /// The spec a module runs with.
    fn spec(&self, name: &str) -> Option<ModuleSpec>;
    /// Stops every module.
    async fn shutdown(&self);
}
