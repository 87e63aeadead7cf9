//! The daemon's local management API (`<homedir>/mgmt.sock`, HTTP/1.1 + JSON, mode 0660) the
//! CLI uses:
//!
//! - `GET /status` -> [`DaemonStatus`];
//! - `GET /modules` -> `[ModuleRow]` (edgeAgent, edgeHub and the deployment's modules);
//! - `POST /modules/{name}/restart`;
//! - `POST /reload` (re-read the configuration), `POST /reprovision` (run DPS again).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::mpsc;

use crate::agent::AgentStatus;
use crate::runtime::{ModuleRuntime, ModuleState, RuntimeStatus};
use crate::uds::{self, ApiRequest, ApiResponse, Handler};

/// A request from the CLI to the daemon's main loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Reload,
    Reprovision,
}

/// `GET /status`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct DaemonStatus {
    pub pid: u32,
    pub version: String,
    pub started_at_utc: String,
    pub config_path: String,
    pub homedir: String,
    pub device_id: String,
    pub hub_hostname: String,
    pub provisioning: String,
    pub gateway_hostname: String,
    pub agent: serde_json::Value,
    /// The agent's device-level hub connection ([`crate::agent::device_link`]).
    #[serde(default)]
    pub device_connection: crate::agent::device_link::DeviceLinkStatus,
    pub edge_hub: serde_json::Value,
}

/// One row of `GET /modules`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ModuleRow {
    pub name: String,
    pub runtime_status: String,
    pub exit_code: Option<i32>,
    pub status_description: Option<String>,
    pub last_start_time_utc: Option<chrono::DateTime<chrono::Utc>>,
    pub last_exit_time_utc: Option<chrono::DateTime<chrono::Utc>>,
    pub restart_count: u32,
    pub config: String,
}

impl ModuleRow {
    pub fn from_state(s: &ModuleState) -> ModuleRow {
        ModuleRow {
            name: s.name.clone(),
            runtime_status: s.runtime_status.as_str().into(),
            exit_code: s.exit_code,
            status_description: s.status_description.clone(),
            last_start_time_utc: s.last_start_time_utc,
            last_exit_time_utc: s.last_exit_time_utc,
            restart_count: s.restart_count,
            config: s.config.clone(),
        }
    }
}

/// What the management API reads and controls.
pub struct Management {
    pub status: Arc<dyn Fn() -> DaemonStatus + Send + Sync>,
    /// Rows of the system modules (edgeAgent, edgeHub).
    pub system_rows: Arc<dyn Fn() -> Vec<ModuleRow> + Send + Sync>,
    pub runtime: Arc<dyn ModuleRuntime>,
    pub commands: mpsc::UnboundedSender<Command>,
    pub agent: Arc<Mutex<AgentStatus>>,
}

impl Management {
    pub fn handler(self) -> Handler {
        let this = Arc::new(self);
        Arc::new(move |req| {
            let this = this.clone();
            Box::pin(async move { this.handle(req).await })
        })
    }

    async fn handle(&self, req: ApiRequest) -> ApiResponse {
        let segs: Vec<String> = req
            .path
            .trim_matches('/')
            .split('/')
            .map(|s| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .collect();
        let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
        match (&req.method, segs.as_slice()) {
            (&Method::GET, ["status"]) => {
                ApiResponse::ok(serde_json::to_value((self.status)()).unwrap_or_default())
            }
            (&Method::GET, ["modules"]) => {
                let mut rows = (self.system_rows)();
                rows.extend(self.runtime.list().iter().map(ModuleRow::from_state));
                rows.sort_by(|a, b| a.name.cmp(&b.name));
                ApiResponse::ok(serde_json::to_value(rows).unwrap_or_default())
            }
            (&Method::POST, ["modules", name, "restart"]) => {
                match self.runtime.restart(name).await {
                    Ok(()) => ApiResponse::ok(json!({"restarted": name})),
                    Err(e) => ApiResponse::error(StatusCode::NOT_FOUND, e.to_string()),
                }
            }
            (&Method::POST, ["reload"]) => self.command(Command::Reload),
            (&Method::POST, ["reprovision"]) => self.command(Command::Reprovision),
            _ => ApiResponse::error(
                StatusCode::NOT_FOUND,
                format!("no management route for {} {}", req.method, req.path),
            ),
        }
    }

    fn command(&self, c: Command) -> ApiResponse {
        match self.commands.send(c) {
            Ok(()) => ApiResponse::ok(json!({"accepted": format!("{c:?}").to_lowercase()})),
            Err(_) => ApiResponse::error(StatusCode::SERVICE_UNAVAILABLE, "the daemon is stopping"),
        }
    }
}

/// Row of a system module.
pub fn system_row(
    name: &str,
    status: RuntimeStatus,
    description: Option<String>,
    started: Option<chrono::DateTime<chrono::Utc>>,
) -> ModuleRow {
    ModuleRow {
        name: name.into(),
        runtime_status: status.as_str().into(),
        exit_code: None,
        status_description: description,
        last_start_time_utc: started,
        last_exit_time_utc: None,
        restart_count: 0,
        config: concat!("fleetedge:", env!("CARGO_PKG_VERSION")).into(),
    }
}

/// CLI side: one call to the daemon; a clear error when it is not running.
pub async fn call(
    socket: &std::path::Path,
    method: Method,
    path: &str,
) -> Result<serde_json::Value, String> {
    let (status, body) = uds::request(socket, method, path, None, Duration::from_secs(10))
        .await
        .map_err(|e| match e {
            uds::ClientError::Connect { path, source }
                if source.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                format!(
                    "permission denied on {}: run the command as root, as the fleetedge user or as a member of its group",
                    path.display()
                )
            }
            uds::ClientError::Connect { path, source } => format!(
                "the fleetedge daemon is not running (cannot connect to {}: {source}); start it with `systemctl start fleetedge` or `fleetedge run`",
                path.display()
            ),
            other => other.to_string(),
        })?;
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if status.is_success() {
        Ok(v)
    } else {
        Err(v["message"]
            .as_str()
            .map_or_else(|| format!("the daemon answered {status}"), str::to_string))
    }
}
