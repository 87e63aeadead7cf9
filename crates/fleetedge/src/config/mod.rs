//! `/etc/fleetedge/config.toml`: the Azure IoT Edge `[provisioning]` blocks verbatim plus
//! fleetedge's own sections (documented in docs/edge.md, "Configuration reference").
//!
//! [`Config::load`] parses and validates; every error names the line, the key and the fix.

pub mod apply;
mod error;
pub mod import;
pub mod init;
mod moby;
mod parse;
mod parse_provisioning;
pub mod provisioning;
mod raw;
pub mod yaml;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

pub use error::{ConfigError, Location};
pub use moby::MobySettings;
pub use provisioning::{Endpoint, KeySource, Provisioning, normalize_key};

use parse::is_valid_hostname;

/// Default configuration file.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/fleetedge/config.toml";
/// Environment variable naming the configuration file.
pub const CONFIG_ENV: &str = "FLEETEDGE_CONFIG";
/// Default state directory.
pub const DEFAULT_HOMEDIR: &str = "/var/lib/fleetedge";

/// When to run DPS again (Azure's `auto_reprovisioning_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ReprovisioningMode {
    /// Use the cached identity at start; reprovision when the hub rejects it (default).
    Dynamic,
    /// Run DPS at every start.
    AlwaysOnStartup,
    /// Use the cached identity; run DPS only when there is no usable cache.
    OnErrorOnly,
}

/// Hub ports (non-standard deployments; Azure always uses 8883 / 443).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HubPorts {
    pub mqtt_port: u16,
    pub https_port: u16,
}

/// The in-process edge hub.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EdgeHubSettings {
    pub enabled: bool,
    pub listen: Vec<SocketAddr>,
    pub queue_max_bytes: u64,
    pub default_ttl: Duration,
}

/// The agent (deployment reconciler) and the process runtime.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentSettings {
    pub status_report_interval: Duration,
    pub restart_backoff_initial: Duration,
    pub restart_backoff_max: Duration,
    pub stable_after: Duration,
    pub log_max_bytes: u64,
}

impl Default for AgentSettings {
    fn default() -> Self {
        AgentSettings {
            status_report_interval: Duration::from_secs(5),
            restart_backoff_initial: Duration::from_secs(10),
            restart_backoff_max: Duration::from_mins(5),
            stable_after: Duration::from_mins(10),
            log_max_bytes: 1024 * 1024,
        }
    }
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    pub path: PathBuf,
    pub provisioning: Provisioning,
    /// The gateway host name modules dial (and the edge hub certificate's name).
    pub hostname: String,
    pub trust_bundle_cert: Option<PathBuf>,
    pub reprovisioning: ReprovisioningMode,
    pub homedir: PathBuf,
    pub hub: HubPorts,
    pub edge_hub: EdgeHubSettings,
    pub agent: AgentSettings,
    /// `[moby_runtime]`: the container engine for `"type": "docker"` modules.
    pub moby: MobySettings,
    /// Accepted but ignored keys (Azure-only settings), for `config apply` and `check`.
    pub ignored: Vec<String>,
}

/// The configuration file to use: `--config`, else `$FLEETEDGE_CONFIG`, else the default.
pub fn config_path(flag: Option<&Path>) -> PathBuf {
    flag.map(Path::to_path_buf)
        .or_else(|| std::env::var_os(CONFIG_ENV).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH))
}

/// The machine's host name (`/proc/sys/kernel/hostname`, `$HOSTNAME`, else `localhost`).
pub fn machine_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "localhost".to_string())
}
/// `file:///abs/path` (or a plain absolute path) -> the path.
pub fn file_uri_path(uri: &str) -> Result<PathBuf, String> {
    let t = uri.trim();
    if let Some(rest) = t.strip_prefix("file://") {
        if !rest.starts_with('/') {
            return Err(format!(
                "'{uri}' is not a file:///absolute/path URI (three slashes)"
            ));
        }
        let decoded = percent_encoding::percent_decode_str(rest)
            .decode_utf8()
            .map_err(|_| format!("'{uri}' is not valid UTF-8 after percent-decoding"))?;
        return Ok(PathBuf::from(decoded.into_owned()));
    }
    if t.starts_with('/') {
        return Ok(PathBuf::from(t));
    }
    if t.starts_with("pkcs11:") {
        return Err("PKCS#11 keys are not supported by fleetedge".into());
    }
    Err(format!("'{uri}' is not a file:/// URI"))
}
impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_path_buf(),
            reason: e.to_string(),
            fix: if e.kind() == std::io::ErrorKind::NotFound {
                "create it with `fleetedge config init ...` (see docs/edge.md) or pass --config"
                    .into()
            } else {
                "make the file readable by the fleetedge user".into()
            },
        })?;
        Self::parse(path, &text)
    }
}

#[cfg(test)]
mod tests;
