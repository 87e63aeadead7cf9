//! The file as written: serde structs with spans, before validation.
//!
//! Azure IoT Edge `config.toml` keys are accepted verbatim; keys that only matter to the
//! Azure daemons (Docker, edge CA, image GC, ...) are known by name, accepted and reported as
//! ignored. Any other key is an error (a typo), with a "did you mean" suggestion.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// The keys of Azure's `config.toml` (the `iotedge config apply` super-config: aziot-edged,
/// -identityd, -keyd, -certd) that fleetedge does not use are listed by name (`AZURE_ONLY`),
/// so every other key is rejected as a typo.
#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub provisioning: Option<Spanned<RawProvisioning>>,
    pub hostname: Option<Spanned<String>>,
    pub trust_bundle_cert: Option<Spanned<String>>,
    pub auto_reprovisioning_mode: Option<Spanned<String>>,
    pub dynamic_reprovisioning: Option<Spanned<bool>>,
    pub homedir: Option<Spanned<String>>,
    pub hub: Option<RawHub>,
    pub edge_hub: Option<RawEdgeHub>,
    pub agent: Option<RawAgent>,
    /// The container engine (IoT Edge's section; fleetedge adds `allow_privileged`).
    pub moby_runtime: Option<RawMobyRuntime>,
    // Azure-only keys (`AZURE_ONLY`): accepted, reported as ignored by the loader.
    pub parent_hostname: Option<toml::Value>,
    pub local_gateway_hostname: Option<toml::Value>,
    pub allow_elevated_docker_permissions: Option<toml::Value>,
    pub imported_master_encryption_key: Option<toml::Value>,
    pub manifest_trust_bundle_cert: Option<toml::Value>,
    pub prefer_module_identity_cache: Option<toml::Value>,
    pub additional_info: Option<toml::Value>,
    pub cloud_timeout_sec: Option<toml::Value>,
    pub cloud_retries: Option<toml::Value>,
    pub iotedge_max_requests: Option<toml::Value>,
    pub aziot_max_requests: Option<toml::Value>,
    pub connect: Option<toml::Value>,
    pub listen: Option<toml::Value>,
    pub watchdog: Option<toml::Value>,
    pub edge_ca: Option<toml::Value>,
    pub cert_issuance: Option<toml::Value>,
    pub aziot_keys: Option<toml::Value>,
    pub preloaded_keys: Option<toml::Value>,
    pub preloaded_certs: Option<toml::Value>,
    pub principal: Option<toml::Value>,
    pub image_garbage_collection: Option<toml::Value>,
    pub localid: Option<toml::Value>,
    pub endpoints: Option<toml::Value>,
    pub tpm: Option<toml::Value>,
}

/// Top-level keys of Azure's `config.toml` that fleetedge accepts and ignores (the
/// `toml::Value` fields of [`RawConfig`]).
pub(crate) const AZURE_ONLY: [&str; 24] = [
    "parent_hostname",
    "local_gateway_hostname",
    "allow_elevated_docker_permissions",
    "imported_master_encryption_key",
    "manifest_trust_bundle_cert",
    "prefer_module_identity_cache",
    "additional_info",
    "cloud_timeout_sec",
    "cloud_retries",
    "iotedge_max_requests",
    "aziot_max_requests",
    "connect",
    "listen",
    "watchdog",
    "edge_ca",
    "cert_issuance",
    "aziot_keys",
    "preloaded_keys",
    "preloaded_certs",
    "principal",
    "image_garbage_collection",
    "localid",
    "endpoints",
    "tpm",
];

/// `[moby_runtime]`: `network` is a name or IoT Edge's table form (`name`, `ipv6`, `ipam`);
/// `content_trust` is accepted and ignored.
#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMobyRuntime {
    pub uri: Option<Spanned<String>>,
    pub network: Option<Spanned<toml::Value>>,
    pub allow_privileged: Option<Spanned<bool>>,
    pub content_trust: Option<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProvisioning {
    pub source: Spanned<String>,
    // manual
    pub connection_string: Option<Spanned<String>>,
    pub iothub_hostname: Option<Spanned<String>>,
    pub device_id: Option<Spanned<String>>,
    pub authentication: Option<Spanned<RawAuthentication>>,
    // dps
    pub global_endpoint: Option<Spanned<String>>,
    pub id_scope: Option<Spanned<String>>,
    pub scope_id: Option<Spanned<String>>,
    pub attestation: Option<Spanned<RawAttestation>>,
    pub payload: Option<Spanned<RawSecret>>,
    pub always_reprovision_on_startup: Option<Spanned<bool>>,
    pub dynamic_reprovisioning: Option<Spanned<bool>>,
}

// Certificate fields are accepted so Azure files parse; the loader refuses their methods.
#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAuthentication {
    pub method: Spanned<String>,
    pub device_id_pk: Option<Spanned<RawSecret>>,
    pub identity_cert: Option<toml::Value>,
    pub identity_pk: Option<toml::Value>,
}

#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAttestation {
    pub method: Spanned<String>,
    pub registration_id: Option<Spanned<String>>,
    pub symmetric_key: Option<Spanned<RawSecret>>,
    pub identity_cert: Option<toml::Value>,
    pub identity_pk: Option<toml::Value>,
}

/// `{ value = "..." }` or `{ uri = "file:///..." }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSecret {
    pub value: Option<Spanned<String>>,
    pub uri: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHub {
    pub mqtt_port: Option<Spanned<u16>>,
    pub https_port: Option<Spanned<u16>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEdgeHub {
    pub enabled: Option<bool>,
    pub listen: Option<Spanned<Vec<Spanned<String>>>>,
    pub queue_max_bytes: Option<Spanned<u64>>,
    pub default_ttl_secs: Option<Spanned<u64>>,
}

// Azure's `[agent]` keys (bootstrap edgeAgent container) are accepted and ignored.
#[allow(dead_code)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAgent {
    pub status_report_interval_secs: Option<Spanned<f64>>,
    pub restart_backoff_initial_secs: Option<Spanned<f64>>,
    pub restart_backoff_max_secs: Option<Spanned<f64>>,
    pub stable_after_secs: Option<Spanned<f64>>,
    pub log_max_bytes: Option<Spanned<u64>>,
    pub env: Option<BTreeMap<String, String>>,
    // Azure's bootstrap edgeAgent container settings: accepted, ignored.
    pub name: Option<toml::Value>,
    #[serde(rename = "type")]
    pub kind: Option<toml::Value>,
    #[serde(rename = "imagePullPolicy")]
    pub image_pull_policy: Option<toml::Value>,
    pub config: Option<toml::Value>,
}
