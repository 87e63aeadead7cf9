//! `fleetedge config init`: writes a starting configuration (validated before it is written).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::{Config, ConfigError};

/// What `config init` was asked for.
#[derive(Debug, Clone, Default)]
pub struct InitOptions {
    /// `--manual-connection-string`
    pub connection_string: Option<String>,
    /// `--dps-symmetric-key` with these:
    pub scope_id: Option<String>,
    pub registration_id: Option<String>,
    pub symmetric_key: Option<String>,
    pub global_endpoint: Option<String>,
    pub trust_bundle: Option<PathBuf>,
    pub hostname: Option<String>,
    pub homedir: Option<PathBuf>,
    pub hub_mqtt_port: Option<u16>,
    pub hub_https_port: Option<u16>,
    pub edge_hub_listen: Vec<String>,
}

/// TOML basic string.
fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// The configuration text for `opts`.
pub fn render(opts: &InitOptions) -> Result<String, String> {
    let mut out = String::from(
        "# fleetedge configuration (see docs/edge.md, \"Configuration reference\").\n",
    );
    out.push_str("# After editing, run `fleetedge config apply`.\n\n");
    if let Some(h) = &opts.hostname {
        let _ = writeln!(out, "hostname = {}", q(h));
    } else {
        out.push_str("# hostname = \"my-gateway.local\"   # default: the machine's host name\n");
    }
    if let Some(t) = &opts.trust_bundle {
        let abs = std::path::absolute(t).map_err(|e| format!("--trust-bundle: {e}"))?;
        let _ = writeln!(
            out,
            "trust_bundle_cert = {}",
            q(&format!("file://{}", abs.display()))
        );
    }
    if let Some(h) = &opts.homedir {
        let _ = writeln!(out, "homedir = {}", q(&h.display().to_string()));
    }
    out.push_str("auto_reprovisioning_mode = \"Dynamic\"\n\n");
    match (&opts.connection_string, &opts.scope_id) {
        (Some(cs), None) => {
            out.push_str("[provisioning]\nsource = \"manual\"\n");
            let _ = writeln!(out, "connection_string = {}", q(cs));
        }
        (None, Some(scope)) => {
            let reg = opts
                .registration_id
                .as_deref()
                .ok_or("--registration-id is required with --dps-symmetric-key")?;
            let key = opts
                .symmetric_key
                .as_deref()
                .ok_or("--symmetric-key is required with --dps-symmetric-key")?;
            out.push_str("[provisioning]\nsource = \"dps\"\n");
            let _ = writeln!(
                out,
                "global_endpoint = {}",
                q(opts
                    .global_endpoint
                    .as_deref()
                    .unwrap_or("https://global.azure-devices-provisioning.net"))
            );
            let _ = write!(out, "id_scope = {}\n\n", q(scope));
            out.push_str("[provisioning.attestation]\nmethod = \"symmetric_key\"\n");
            let _ = writeln!(out, "registration_id = {}", q(reg));
            let _ = writeln!(out, "symmetric_key = {{ value = {} }}", q(key));
        }
        (Some(_), Some(_)) => {
            return Err(
                "give either --manual-connection-string or --dps-symmetric-key, not both".into(),
            );
        }
        (None, None) => {
            return Err(
                "give --manual-connection-string CS, or --dps-symmetric-key --scope-id S --registration-id R --symmetric-key K"
                    .into(),
            );
        }
    }
    if opts.hub_mqtt_port.is_some() || opts.hub_https_port.is_some() {
        out.push_str("\n[hub]\n");
        if let Some(p) = opts.hub_mqtt_port {
            let _ = writeln!(out, "mqtt_port = {p}");
        }
        if let Some(p) = opts.hub_https_port {
            let _ = writeln!(out, "https_port = {p}");
        }
    }
    if !opts.edge_hub_listen.is_empty() {
        let list: Vec<String> = opts.edge_hub_listen.iter().map(|a| q(a)).collect();
        let _ = write!(out, "\n[edge_hub]\nlisten = [{}]\n", list.join(", "));
    }
    Ok(out)
}

/// Renders, validates and writes the configuration to `path` (0600). Refuses to overwrite
/// an existing file unless `force`.
pub fn write(path: &Path, opts: &InitOptions, force: bool) -> Result<Config, String> {
    let text = render(opts)?;
    let config = Config::parse(path, &text).map_err(|e: ConfigError| e.to_string())?;
    if path.exists() && !force {
        return Err(format!(
            "{} already exists; pass --force to replace it, or edit it and run `fleetedge config apply`",
            path.display()
        ));
    }
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    crate::state::write_private(path, text.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(config)
}
