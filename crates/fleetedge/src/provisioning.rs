//! Device provisioning (manual or DPS over HTTPS, like aziot-identityd) and the provisioning
//! cache in the state directory, so the daemon starts offline after a reboot and only runs
//! DPS again when the provisioning settings changed, when `AlwaysOnStartup`, or when asked to
//! (the hub rejected the identity, `Dynamic`).

use std::time::Duration;

use fleethub_device::provisioning::{ProvisioningClient, Transport};
use fleethub_device::{ClientTlsConfig, ProvisioningError};
use serde::{Deserialize, Serialize};

use crate::config::{Config, Provisioning, ReprovisioningMode};
use crate::state::{StateDir, write_private};

/// The device identity the daemon runs with.
#[derive(Clone)]
pub struct DeviceIdentity {
    pub device_id: String,
    pub hub_hostname: String,
    /// Base64 device key (never logged).
    pub device_key: String,
    /// `manual`, `dps`, or `dps (cached)`.
    pub origin: String,
}

impl std::fmt::Debug for DeviceIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceIdentity")
            .field("device_id", &self.device_id)
            .field("hub_hostname", &self.hub_hostname)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

/// `provisioning.json` in the state directory. Holds no secret: the key stays in the
/// configuration (or the state copy made by `config apply`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProvisioningCache {
    pub source: String,
    pub device_id: String,
    pub assigned_hub: String,
    /// Where the device key comes from.
    pub credentials: String,
    /// [`Provisioning::digest`] of the settings that produced this result.
    pub config_digest: String,
    pub provisioned_at_utc: String,
}

impl ProvisioningCache {
    pub fn read(state: &StateDir) -> Option<ProvisioningCache> {
        let bytes = std::fs::read(state.provisioning_cache()).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn write(&self, state: &StateDir) -> std::io::Result<()> {
        let text = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        write_private(&state.provisioning_cache(), &text)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("cannot load the device key: {0}")]
    Key(String),
    #[error("cannot read the trust bundle: {0}")]
    TrustBundle(String),
    #[error("DPS settings: {0}")]
    Settings(String),
    #[error("cannot write the provisioning cache: {0}")]
    Cache(std::io::Error),
    #[error("provisioning was cancelled")]
    Cancelled,
}

/// TLS settings for the hub and DPS: the configured trust bundle, else the system roots.
pub fn tls_config(config: &Config) -> Result<ClientTlsConfig, String> {
    match &config.trust_bundle_cert {
        Some(p) => ClientTlsConfig::with_ca_file(p).map_err(|e| e.to_string()),
        None => ClientTlsConfig::with_system_roots().map_err(|e| e.to_string()),
    }
}

/// Should DPS run now?
pub fn needs_dps(
    config: &Config,
    cache: Option<&ProvisioningCache>,
    at_startup: bool,
    forced: bool,
) -> bool {
    if !matches!(config.provisioning, Provisioning::Dps { .. }) {
        return false;
    }
    if forced {
        return true;
    }
    match cache {
        Some(c) if c.source == "dps" && c.config_digest == config.provisioning.digest() => {
            at_startup && config.reprovisioning == ReprovisioningMode::AlwaysOnStartup
        }
        _ => true,
    }
}

/// Back-off between DPS attempts: 1 s doubling to 60 s.
pub fn retry_delay(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.min(6)).min(Duration::from_mins(1))
}

/// Provisions (or loads the cached identity). `forced`: the hub rejected the identity.
/// DPS attempts repeat with back-off until one succeeds or `cancel` fires; when DPS is
/// unreachable and a cache for the same settings exists, the cache is used ("offline").
pub async fn provision(
    config: &Config,
    state: &StateDir,
    at_startup: bool,
    forced: bool,
    mut cancel: tokio::sync::watch::Receiver<bool>,
) -> Result<DeviceIdentity, ProvisionError> {
    let key = config
        .provisioning
        .key()
        .load()
        .map_err(ProvisionError::Key)?;
    let digest = config.provisioning.digest();
    let credentials = match config.provisioning.key() {
        crate::config::KeySource::Value(_) => format!("inline key in {}", config.path.display()),
        crate::config::KeySource::File(p) => format!("file://{}", p.display()),
    };
    let now = chrono::Utc::now().to_rfc3339();
    match &config.provisioning {
        Provisioning::Manual {
            iothub_hostname,
            device_id,
            ..
        } => {
            let cache = ProvisioningCache {
                source: "manual".into(),
                device_id: device_id.clone(),
                assigned_hub: iothub_hostname.clone(),
                credentials,
                config_digest: digest,
                provisioned_at_utc: now,
            };
            if ProvisioningCache::read(state)
                .as_ref()
                .map(|c| (&c.device_id, &c.assigned_hub, &c.config_digest))
                != Some((&cache.device_id, &cache.assigned_hub, &cache.config_digest))
            {
                cache.write(state).map_err(ProvisionError::Cache)?;
            }
            Ok(DeviceIdentity {
                device_id: device_id.clone(),
                hub_hostname: iothub_hostname.clone(),
                device_key: key,
                origin: "manual".into(),
            })
        }
        Provisioning::Dps {
            endpoint,
            id_scope,
            registration_id,
            payload,
            ..
        } => {
            let cached = ProvisioningCache::read(state);
            if !needs_dps(config, cached.as_ref(), at_startup, forced) {
                let c = cached.expect("needs_dps is false only with a cache");
                tracing::info!(
                    device_id = c.device_id,
                    hub = c.assigned_hub,
                    "using the cached provisioning result (DPS skipped)"
                );
                return Ok(DeviceIdentity {
                    device_id: c.device_id,
                    hub_hostname: c.assigned_hub,
                    device_key: key,
                    origin: "dps (cached)".into(),
                });
            }
            let tls = tls_config(config).map_err(ProvisionError::TrustBundle)?;
            let mut builder = ProvisioningClient::builder()
                .global_endpoint(&endpoint.host)
                .port(endpoint.port)
                .id_scope(id_scope)
                .registration_id(registration_id)
                .symmetric_key(&key)
                .transport(Transport::Https)
                .tls_config(tls)
                .timeout(Duration::from_mins(1));
            if let Some(p) = payload {
                let text = std::fs::read(p).map_err(|e| {
                    ProvisionError::Settings(format!("payload {}: {e}", p.display()))
                })?;
                let v = serde_json::from_slice(&text).map_err(|e| {
                    ProvisionError::Settings(format!("payload {} is not JSON: {e}", p.display()))
                })?;
                builder = builder.payload(v);
            }
            let client = builder
                .build()
                .map_err(|e| ProvisionError::Settings(e.to_string()))?;
            let same_settings = cached
                .as_ref()
                .filter(|c| c.source == "dps" && c.config_digest == digest);
            let mut attempt = 0u32;
            loop {
                tracing::info!(
                    endpoint = endpoint.url,
                    registration_id,
                    attempt,
                    "provisioning with DPS"
                );
                match client.register().await {
                    Ok(r) => {
                        let cache = ProvisioningCache {
                            source: "dps".into(),
                            device_id: r.device_id.clone(),
                            assigned_hub: r.assigned_hub.clone(),
                            credentials,
                            config_digest: digest,
                            provisioned_at_utc: now,
                        };
                        cache.write(state).map_err(ProvisionError::Cache)?;
                        tracing::info!(
                            device_id = r.device_id,
                            hub = r.assigned_hub,
                            "provisioned by DPS"
                        );
                        return Ok(DeviceIdentity {
                            device_id: r.device_id,
                            hub_hostname: r.assigned_hub,
                            device_key: key,
                            origin: "dps".into(),
                        });
                    }
                    Err(e) => {
                        let offline = is_network(&e);
                        if offline
                            && !forced
                            && let Some(c) = same_settings
                        {
                            tracing::warn!(
                                error = %e,
                                "DPS is unreachable; using the offline backup from the last run"
                            );
                            return Ok(DeviceIdentity {
                                device_id: c.device_id.clone(),
                                hub_hostname: c.assigned_hub.clone(),
                                device_key: key,
                                origin: "dps (cached)".into(),
                            });
                        }
                        let delay = retry_delay(attempt);
                        tracing::warn!(error = %e, retry_in = ?delay, "DPS provisioning failed");
                        attempt += 1;
                        tokio::select! {
                            () = tokio::time::sleep(delay) => {}
                            _ = cancel.changed() => return Err(ProvisionError::Cancelled),
                        }
                    }
                }
            }
        }
    }
}

fn is_network(e: &ProvisioningError) -> bool {
    matches!(
        e,
        ProvisioningError::Tls(_)
            | ProvisioningError::Https(_)
            | ProvisioningError::Mqtt(_)
            | ProvisioningError::Timeout(_)
    ) || matches!(e, ProvisioningError::Service { status, .. } if *status >= 500)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn dps_config(mode: &str) -> Config {
        let key = fleethub_core::keys::generate_key();
        Config::parse(
            Path::new("c.toml"),
            &format!(
                "auto_reprovisioning_mode = \"{mode}\"\n[provisioning]\nsource = \"dps\"\nid_scope = \"s\"\n[provisioning.attestation]\nmethod = \"symmetric_key\"\nregistration_id = \"r\"\nsymmetric_key = {{ value = \"{key}\" }}\n"
            ),
        )
        .unwrap()
    }

    fn cache_for(c: &Config) -> ProvisioningCache {
        ProvisioningCache {
            source: "dps".into(),
            device_id: "r".into(),
            assigned_hub: "h".into(),
            credentials: "x".into(),
            config_digest: c.provisioning.digest(),
            provisioned_at_utc: String::new(),
        }
    }

    #[test]
    fn dps_runs_only_when_needed() {
        let c = dps_config("Dynamic");
        let cache = cache_for(&c);
        assert!(needs_dps(&c, None, true, false), "no cache");
        assert!(!needs_dps(&c, Some(&cache), true, false), "valid cache");
        assert!(needs_dps(&c, Some(&cache), false, true), "hub rejected");
        let mut stale = cache.clone();
        stale.config_digest = "other".into();
        assert!(needs_dps(&c, Some(&stale), true, false), "config changed");
        let always = dps_config("AlwaysOnStartup");
        let cache = cache_for(&always);
        assert!(needs_dps(&always, Some(&cache), true, false));
        assert!(!needs_dps(&always, Some(&cache), false, false));
    }

    #[test]
    fn back_off_is_bounded() {
        assert_eq!(retry_delay(0), Duration::from_secs(1));
        assert_eq!(retry_delay(3), Duration::from_secs(8));
        assert_eq!(retry_delay(30), Duration::from_mins(1));
    }
}
