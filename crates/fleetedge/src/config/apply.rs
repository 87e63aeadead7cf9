//! `fleetedge config apply`: validate the file, copy the key material into the state directory
//! (0600) and record what was applied, so the next apply can say what changed.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{Value, json};

use super::{Config, Provisioning};
use crate::state::{StateDir, write_private};

/// What `apply` did.
#[derive(Debug, Clone, PartialEq)]
pub struct ApplyReport {
    /// `key: old -> new` lines (empty when nothing changed); secrets are never shown.
    pub changes: Vec<String>,
    /// Whether the provisioning settings changed (the daemon will provision again).
    pub provisioning_changed: bool,
    pub key_file: PathBuf,
    pub first_apply: bool,
    /// Things the operator should fix (e.g. file ownership).
    pub warnings: Vec<String>,
}

/// When run as root for a state directory owned by the service user (systemd's
/// `StateDirectory`), hands what apply wrote to that user; warns when the configuration file
/// is not readable by it.
fn fix_ownership(state: &StateDir, config: &Config) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mut warnings = Vec::new();
    let me = std::fs::metadata("/proc/self").map_or(u32::MAX, |m| m.uid());
    let Ok(home) = std::fs::metadata(&state.root) else {
        return warnings;
    };
    if me != 0 || home.uid() == 0 {
        return warnings;
    }
    let (uid, gid) = (home.uid(), home.gid());
    for p in [
        state.keys_dir(),
        state.device_key_file(),
        state.applied_config(),
        state.identities_dir(),
        state.certs_dir(),
        state.logs_dir(),
    ] {
        if p.exists()
            && let Err(e) = std::os::unix::fs::chown(&p, Some(uid), Some(gid))
        {
            warnings.push(format!("cannot hand {} to uid {uid}: {e}", p.display()));
        }
    }
    if let Ok(m) = std::fs::metadata(&config.path)
        && m.uid() != uid
        && m.mode() & 0o044 == 0
        && !(m.gid() == gid && m.mode() & 0o040 != 0)
    {
        warnings.push(format!(
            "{} is not readable by the service user (uid {uid}): run `chown root:{gid} {0} && chmod 0640 {0}`",
            config.path.display()
        ));
    }
    warnings
}

/// A flat, secret-free summary of the settings.
pub fn summary(c: &Config) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        m.insert(k.to_string(), v);
    };
    put("provisioning.source", c.provisioning.source().into());
    match &c.provisioning {
        Provisioning::Manual {
            iothub_hostname,
            device_id,
            ..
        } => {
            put("provisioning.iothub_hostname", iothub_hostname.clone());
            put("provisioning.device_id", device_id.clone());
        }
        Provisioning::Dps {
            endpoint,
            id_scope,
            registration_id,
            payload,
            ..
        } => {
            put("provisioning.global_endpoint", endpoint.url.clone());
            put("provisioning.id_scope", id_scope.clone());
            put(
                "provisioning.attestation.registration_id",
                registration_id.clone(),
            );
            if let Some(p) = payload {
                put("provisioning.payload", p.display().to_string());
            }
        }
    }
    put(
        "provisioning (digest incl. key)",
        c.provisioning.digest()[..16].to_string(),
    );
    put("hostname", c.hostname.clone());
    put(
        "trust_bundle_cert",
        c.trust_bundle_cert
            .as_ref()
            .map_or_else(|| "(system roots)".into(), |p| p.display().to_string()),
    );
    put(
        "auto_reprovisioning_mode",
        format!("{:?}", c.reprovisioning),
    );
    put("homedir", c.homedir.display().to_string());
    put("hub.mqtt_port", c.hub.mqtt_port.to_string());
    put("hub.https_port", c.hub.https_port.to_string());
    put("edge_hub.enabled", c.edge_hub.enabled.to_string());
    put(
        "edge_hub.listen",
        c.edge_hub
            .listen
            .iter()
            .map(std::string::ToString::to_string)
            .collect::<Vec<_>>()
            .join(","),
    );
    put(
        "edge_hub.queue_max_bytes",
        c.edge_hub.queue_max_bytes.to_string(),
    );
    put(
        "edge_hub.default_ttl_secs",
        c.edge_hub.default_ttl.as_secs().to_string(),
    );
    let a = &c.agent;
    put(
        "agent.status_report_interval_secs",
        a.status_report_interval.as_secs_f64().to_string(),
    );
    put(
        "agent.restart_backoff_initial_secs",
        a.restart_backoff_initial.as_secs_f64().to_string(),
    );
    put(
        "agent.restart_backoff_max_secs",
        a.restart_backoff_max.as_secs_f64().to_string(),
    );
    put(
        "agent.stable_after_secs",
        a.stable_after.as_secs_f64().to_string(),
    );
    put("agent.log_max_bytes", a.log_max_bytes.to_string());
    m
}

/// Differences between two summaries, as `key: old -> new` lines.
pub fn diff(old: &BTreeMap<String, String>, new: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in new {
        match old.get(k) {
            Some(o) if o == v => {}
            Some(o) => out.push(format!("{k}: {o} -> {v}")),
            None => out.push(format!("{k}: (unset) -> {v}")),
        }
    }
    for (k, o) in old {
        if !new.contains_key(k) {
            out.push(format!("{k}: {o} -> (unset)"));
        }
    }
    out
}

/// Every file the configuration names must exist and hold what it should, before anything
/// is applied: the trust bundle (PEM certificates), the key file, the DPS payload.
pub fn check_files(config: &Config) -> Result<(), String> {
    if let Some(p) = &config.trust_bundle_cert {
        fleethub_device::tls::load_ca_file(p).map_err(|e| {
            format!(
                "`trust_bundle_cert` {}: {e}\n  fix: copy the server's CA certificate there (`fleethub info` shows caCertPath) or correct the path",
                p.display()
            )
        })?;
    }
    if let super::KeySource::File(p) = config.provisioning.key() {
        config.provisioning.key().load().map_err(|e| {
            format!(
                "the key file {} named in [provisioning]: {e}\n  fix: put the device key (base64) there, or correct the uri",
                p.display()
            )
        })?;
    }
    if let Provisioning::Dps {
        payload: Some(p), ..
    } = &config.provisioning
    {
        std::fs::read(p).map_err(|e| {
            format!(
                "`provisioning.payload` {}: {e}\n  fix: create the JSON payload file or correct the uri",
                p.display()
            )
        })?;
    }
    Ok(())
}

/// Applies `config`; see the module docs.
pub fn apply(config: &Config) -> Result<ApplyReport, String> {
    check_files(config)?;
    let state = StateDir::new(&config.homedir);
    state.create().map_err(|e| {
        format!(
            "cannot create the state directory {}: {e} (run as root or as the fleetedge user)",
            state.root.display()
        )
    })?;
    let key = config.provisioning.key().load()?;
    let key_file = state.device_key_file();
    write_private(&key_file, key.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", key_file.display()))?;

    let new = summary(config);
    let old: Option<BTreeMap<String, String>> = std::fs::read(state.applied_config())
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| serde_json::from_value(v["settings"].clone()).ok());
    let changes = match &old {
        Some(old) => diff(old, &new),
        None => new.iter().map(|(k, v)| format!("{k}: {v}")).collect(),
    };
    let provisioning_changed = changes.iter().any(|c| c.starts_with("provisioning"));
    let doc = json!({
        "config": config.path.display().to_string(),
        "appliedAtUtc": chrono::Utc::now().to_rfc3339(),
        "settings": new,
    });
    write_private(
        &state.applied_config(),
        serde_json::to_string_pretty(&doc)
            .unwrap_or_default()
            .as_bytes(),
    )
    .map_err(|e| format!("cannot record the applied configuration: {e}"))?;
    let warnings = fix_ownership(&state, config);
    Ok(ApplyReport {
        warnings,
        changes,
        provisioning_changed: old.is_none() || provisioning_changed,
        key_file,
        first_apply: old.is_none(),
    })
}
