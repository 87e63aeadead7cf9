//! `[moby_runtime]`: the container engine that runs `"type": "docker"` modules (Docker Engine
//! API over a unix socket: Docker, or Podman's `podman system service`).
//!
//! ```toml
//! [moby_runtime]
//! uri = "unix:///var/run/docker.sock"   # IoT Edge's default
//! network = "azure-iot-edge"            # or { name = "azure-iot-edge" } as IoT Edge writes it
//! allow_privileged = false              # fleetedge: refuse Privileged, Devices and host binds
//! ```

use std::path::PathBuf;

use serde::Serialize;
use toml::Spanned;

use super::ConfigError;
use super::error::Reporter;
use super::raw::RawConfig;

/// IoT Edge's default engine socket.
pub const DEFAULT_ENGINE_URI: &str = "unix:///var/run/docker.sock";
/// IoT Edge's default module network.
pub const DEFAULT_NETWORK: &str = "azure-iot-edge";

/// Validated `[moby_runtime]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MobySettings {
    /// `uri` as written (`unix:///...`).
    pub uri: String,
    /// The socket path of `uri`.
    pub socket: PathBuf,
    /// The network every container module joins (created when missing).
    pub network: String,
    /// Whether modules may ask for `Privileged`, `Devices`, host bind mounts, `CapAdd` or the
    /// host's namespaces.
    pub allow_privileged: bool,
}

impl Default for MobySettings {
    fn default() -> Self {
        MobySettings {
            uri: DEFAULT_ENGINE_URI.into(),
            socket: PathBuf::from("/var/run/docker.sock"),
            network: DEFAULT_NETWORK.into(),
            allow_privileged: false,
        }
    }
}

pub(super) fn moby(r: &Reporter<'_>, raw: &RawConfig) -> Result<MobySettings, ConfigError> {
    let d = MobySettings::default();
    let Some(m) = &raw.moby_runtime else {
        return Ok(d);
    };
    let (uri, socket) = match &m.uri {
        None => (d.uri, d.socket),
        Some(u) => {
            let path = u
                .get_ref()
                .strip_prefix("unix://")
                .filter(|p| p.starts_with('/'))
                .ok_or_else(|| {
                    r.at(
                        Some(u.span()),
                        "moby_runtime.uri",
                        format!(
                            "'{}' is not a unix socket URI (only unix:// engines are supported)",
                            u.get_ref()
                        ),
                        "use uri = \"unix:///var/run/docker.sock\" (Docker) or the socket of `podman system service`",
                    )
                })?;
            (u.get_ref().clone(), PathBuf::from(path))
        }
    };
    let network = match &m.network {
        None => d.network,
        Some(n) => network_name(n).ok_or_else(|| {
            r.at(
                Some(n.span()),
                "moby_runtime.network",
                "the network must be a name or a table with `name`",
                "use network = \"azure-iot-edge\"",
            )
        })?,
    };
    Ok(MobySettings {
        uri,
        socket,
        network,
        allow_privileged: m.allow_privileged.as_ref().is_some_and(|b| *b.get_ref()),
    })
}

fn network_name(v: &Spanned<toml::Value>) -> Option<String> {
    let name = match v.get_ref() {
        toml::Value::String(s) => s.clone(),
        toml::Value::Table(t) => t.get("name")?.as_str()?.to_string(),
        _ => return None,
    };
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    ok.then_some(name)
}
