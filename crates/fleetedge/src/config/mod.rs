//! `/etc/fleetedge/config.toml`: the Azure IoT Edge `[provisioning]` blocks verbatim plus
//! fleetedge's own sections (documented in docs/edge.md, "Configuration reference").
//!
//! [`Config::load`] parses and validates; every error names the line, the key and the fix.

pub mod apply;
mod error;
pub mod import;
pub mod init;
pub mod provisioning;
mod raw;
pub mod yaml;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use toml::Spanned;

pub use error::{ConfigError, Location};
pub use provisioning::{Endpoint, KeySource, Provisioning, normalize_key};

use error::Reporter;
use raw::{RawConfig, RawProvisioning, RawSecret};

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
            restart_backoff_max: Duration::from_secs(300),
            stable_after: Duration::from_secs(600),
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

fn is_valid_hostname(h: &str) -> bool {
    if h.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
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

fn span<T>(s: &Spanned<T>) -> Option<std::ops::Range<usize>> {
    Some(s.span())
}

fn secs(
    r: &Reporter<'_>,
    v: &Option<Spanned<f64>>,
    key: &str,
    default: Duration,
) -> Result<Duration, ConfigError> {
    // Bounded on both sides: a duration that rounds to zero would make a zero-period timer,
    // and one too large for `Duration` (found by tests/fuzz_config.rs: `1e301`) panicked.
    const MIN: Duration = Duration::from_millis(1);
    const MAX: Duration = Duration::from_hours(365 * 24);
    match v {
        None => Ok(default),
        Some(s) => match Duration::try_from_secs_f64(*s.get_ref()) {
            Ok(d) if (MIN..=MAX).contains(&d) => Ok(d),
            _ => Err(r.at(
                span(s),
                key,
                format!("{} is not a positive number of seconds", s.get_ref()),
                "use a number from 0.001 to 31536000 (a year), e.g. 10 or 0.5",
            )),
        },
    }
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

    /// Validates configuration text (`path` is used in messages only).
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let r = Reporter { path, text };
        let table: toml::Table = toml::from_str(text).map_err(|e| r.parse_error(&e))?;
        let raw: RawConfig = toml::from_str(text).map_err(|e| r.parse_error(&e))?;
        let ignored: Vec<String> = table
            .keys()
            .filter(|k| raw::AZURE_ONLY.contains(&k.as_str()))
            .cloned()
            .collect();

        let Some(prov) = &raw.provisioning else {
            return Err(r.at(
                None,
                "provisioning",
                "there is no [provisioning] section",
                "add [provisioning] with source = \"manual\" or \"dps\" (or run `fleetedge config init`)",
            ));
        };
        let provisioning = resolve_provisioning(&r, prov)?;

        let hostname = match &raw.hostname {
            Some(h) => {
                let v = h.get_ref().trim().to_string();
                if !is_valid_hostname(&v) {
                    return Err(r.at(
                        span(h),
                        "hostname",
                        format!("'{v}' is not a valid host name"),
                        "use letters, digits, '-' and '.', at most 63 characters per label (or an IP address)",
                    ));
                }
                v
            }
            None => machine_hostname(),
        };

        let trust_bundle_cert = match &raw.trust_bundle_cert {
            Some(t) => Some(file_uri_path(t.get_ref()).map_err(|m| {
                r.at(
                    span(t),
                    "trust_bundle_cert",
                    m,
                    "use trust_bundle_cert = \"file:///etc/fleetedge/trust-bundle.pem\"",
                )
            })?),
            None => None,
        };

        let mut reprovisioning = ReprovisioningMode::Dynamic;
        let alias = raw
            .dynamic_reprovisioning
            .as_ref()
            .or(prov.get_ref().dynamic_reprovisioning.as_ref());
        if let Some(d) = alias {
            reprovisioning = if *d.get_ref() {
                ReprovisioningMode::Dynamic
            } else {
                ReprovisioningMode::OnErrorOnly
            };
        }
        if let Some(m) = &raw.auto_reprovisioning_mode {
            reprovisioning = match m.get_ref().as_str() {
                "Dynamic" => ReprovisioningMode::Dynamic,
                "AlwaysOnStartup" => ReprovisioningMode::AlwaysOnStartup,
                "OnErrorOnly" => ReprovisioningMode::OnErrorOnly,
                other => {
                    return Err(r.at(
                        span(m),
                        "auto_reprovisioning_mode",
                        format!("unknown mode '{other}'"),
                        "use \"Dynamic\", \"AlwaysOnStartup\" or \"OnErrorOnly\"",
                    ));
                }
            };
        }
        if let RawProvisioning {
            always_reprovision_on_startup: Some(a),
            ..
        } = prov.get_ref()
            && *a.get_ref()
        {
            reprovisioning = ReprovisioningMode::AlwaysOnStartup;
        }

        let homedir = match &raw.homedir {
            Some(h) if Path::new(h.get_ref()).is_absolute() => PathBuf::from(h.get_ref()),
            Some(h) => {
                return Err(r.at(
                    span(h),
                    "homedir",
                    format!("'{}' is not an absolute path", h.get_ref()),
                    "use an absolute directory, e.g. homedir = \"/var/lib/fleetedge\"",
                ));
            }
            None => PathBuf::from(DEFAULT_HOMEDIR),
        };

        let port = |v: &Option<Spanned<u16>>, key: &str, default: u16| match v {
            Some(p) if *p.get_ref() == 0 => Err(r.at(
                span(p),
                key,
                "port 0 is not a usable port",
                "use the hub's port, e.g. 8883 (MQTT) or 443 (HTTPS)",
            )),
            Some(p) => Ok(*p.get_ref()),
            None => Ok(default),
        };
        let hub = HubPorts {
            mqtt_port: port(
                &raw.hub.as_ref().and_then(|h| h.mqtt_port.clone()),
                "hub.mqtt_port",
                8883,
            )?,
            https_port: port(
                &raw.hub.as_ref().and_then(|h| h.https_port.clone()),
                "hub.https_port",
                443,
            )?,
        };

        let mut edge_hub = EdgeHubSettings {
            enabled: true,
            listen: vec!["0.0.0.0:8883".parse().expect("valid address")],
            queue_max_bytes: 1024 * 1024 * 1024,
            default_ttl: Duration::from_secs(7200),
        };
        if let Some(e) = &raw.edge_hub {
            edge_hub.enabled = e.enabled.unwrap_or(true);
            if let Some(list) = &e.listen {
                if list.get_ref().is_empty() && edge_hub.enabled {
                    return Err(r.at(
                        span(list),
                        "edge_hub.listen",
                        "the edge hub needs at least one listen address",
                        "e.g. listen = [\"0.0.0.0:8883\"], or set enabled = false",
                    ));
                }
                edge_hub.listen = list
                    .get_ref()
                    .iter()
                    .map(|a| {
                        a.get_ref().parse::<SocketAddr>().map_err(|_| {
                            r.at(
                                span(a),
                                "edge_hub.listen",
                                format!("'{}' is not an IP:port address", a.get_ref()),
                                "use e.g. \"0.0.0.0:8883\" or \"[::]:8883\"",
                            )
                        })
                    })
                    .collect::<Result<_, _>>()?;
            }
            if let Some(q) = &e.queue_max_bytes {
                if *q.get_ref() < 1024 * 1024 {
                    return Err(r.at(
                        span(q),
                        "edge_hub.queue_max_bytes",
                        format!("{} bytes is too small for the message queue", q.get_ref()),
                        "use at least 1048576 (1 MiB)",
                    ));
                }
                edge_hub.queue_max_bytes = *q.get_ref();
            }
            if let Some(t) = &e.default_ttl_secs {
                edge_hub.default_ttl = Duration::from_secs(*t.get_ref());
            }
        }

        let d = AgentSettings::default();
        let agent = match &raw.agent {
            None => d,
            Some(a) => {
                let initial = secs(
                    &r,
                    &a.restart_backoff_initial_secs,
                    "agent.restart_backoff_initial_secs",
                    d.restart_backoff_initial,
                )?;
                let max = secs(
                    &r,
                    &a.restart_backoff_max_secs,
                    "agent.restart_backoff_max_secs",
                    d.restart_backoff_max,
                )?;
                if max < initial {
                    return Err(r.at(
                        a.restart_backoff_max_secs.as_ref().and_then(span),
                        "agent.restart_backoff_max_secs",
                        "the maximum back-off is smaller than the initial back-off",
                        "make restart_backoff_max_secs >= restart_backoff_initial_secs",
                    ));
                }
                AgentSettings {
                    status_report_interval: secs(
                        &r,
                        &a.status_report_interval_secs,
                        "agent.status_report_interval_secs",
                        d.status_report_interval,
                    )?,
                    restart_backoff_initial: initial,
                    restart_backoff_max: max,
                    stable_after: secs(
                        &r,
                        &a.stable_after_secs,
                        "agent.stable_after_secs",
                        d.stable_after,
                    )?,
                    log_max_bytes: match &a.log_max_bytes {
                        Some(b) if *b.get_ref() < 4096 => {
                            return Err(r.at(
                                span(b),
                                "agent.log_max_bytes",
                                "module log files need at least 4096 bytes",
                                "use e.g. log_max_bytes = 1048576",
                            ));
                        }
                        Some(b) => *b.get_ref(),
                        None => d.log_max_bytes,
                    },
                }
            }
        };

        Ok(Config {
            path: path.to_path_buf(),
            provisioning,
            hostname,
            trust_bundle_cert,
            reprovisioning,
            homedir,
            hub,
            edge_hub,
            agent,
            ignored,
        })
    }
}

fn secret(
    r: &Reporter<'_>,
    s: &Spanned<RawSecret>,
    key: &str,
    example: &str,
) -> Result<KeySource, ConfigError> {
    match (&s.get_ref().value, &s.get_ref().uri) {
        (Some(v), None) => normalize_key(v.get_ref())
            .map(KeySource::Value)
            .map_err(|m| {
                r.at(
                    span(v),
                    key,
                    m,
                    "paste the key exactly as the hub or DPS shows it (base64)",
                )
            }),
        (None, Some(u)) => file_uri_path(u.get_ref())
            .map(KeySource::File)
            .map_err(|m| {
                r.at(
                    span(u),
                    key,
                    m,
                    "use { uri = \"file:///etc/fleetedge/device-id.key\" }",
                )
            }),
        _ => Err(r.at(
            span(s),
            key,
            "give exactly one of `value` or `uri`",
            format!("e.g. {key} = {example}"),
        )),
    }
}

fn required<'a>(
    r: &Reporter<'_>,
    v: &'a Option<Spanned<String>>,
    section: &Spanned<impl Sized>,
    key: &str,
    fix: &str,
) -> Result<&'a Spanned<String>, ConfigError> {
    match v {
        Some(s) if !s.get_ref().trim().is_empty() => Ok(s),
        Some(s) => Err(r.at(span(s), key, "must not be empty", fix)),
        None => Err(r.at(span(section), key, "is missing", fix)),
    }
}

fn resolve_provisioning(
    r: &Reporter<'_>,
    section: &Spanned<RawProvisioning>,
) -> Result<Provisioning, ConfigError> {
    let p = section.get_ref();
    match p.source.get_ref().as_str() {
        "manual" => {
            if let Some(cs) = &p.connection_string {
                let parsed =
                    fleethub_core::connection_string::ConnectionString::parse(cs.get_ref())
                        .map_err(|e| {
                            r.at(
                                span(cs),
                                "provisioning.connection_string",
                                e.to_string(),
                                "use HostName=<hub>;DeviceId=<device>;SharedAccessKey=<base64 key>",
                            )
                        })?;
                let bad = |m: &str| {
                    r.at(
                        span(cs),
                        "provisioning.connection_string",
                        m.to_string(),
                        "use the device connection string: HostName=<hub>;DeviceId=<device>;SharedAccessKey=<base64 key>",
                    )
                };
                if parsed.shared_access_key_name.is_some() {
                    return Err(bad(
                        "this is a service (policy) connection string, not a device's",
                    ));
                }
                if parsed.module_id.is_some() {
                    return Err(bad("this is a module connection string, not a device's"));
                }
                let device_id = parsed
                    .device_id
                    .ok_or_else(|| bad("the connection string has no DeviceId"))?;
                let key = parsed
                    .shared_access_key
                    .ok_or_else(|| bad("the connection string has no SharedAccessKey"))?;
                let key = normalize_key(&key).map_err(|m| bad(&format!("SharedAccessKey: {m}")))?;
                return Ok(Provisioning::Manual {
                    iothub_hostname: parsed.host_name,
                    device_id,
                    key: KeySource::Value(key),
                });
            }
            let hub = required(
                r,
                &p.iothub_hostname,
                section,
                "provisioning.iothub_hostname",
                "set connection_string, or iothub_hostname + device_id + [provisioning.authentication]",
            )?;
            let device = required(
                r,
                &p.device_id,
                section,
                "provisioning.device_id",
                "add device_id = \"<device id>\"",
            )?;
            let Some(auth) = &p.authentication else {
                return Err(r.at(
                    span(section),
                    "provisioning.authentication",
                    "is missing",
                    "add [provisioning.authentication] with method = \"sas\" and device_id_pk = { value = \"<base64>\" }",
                ));
            };
            if auth.get_ref().method.get_ref() != "sas" {
                return Err(r.at(
                    span(&auth.get_ref().method),
                    "provisioning.authentication.method",
                    format!(
                        "method '{}' is not supported (only symmetric keys)",
                        auth.get_ref().method.get_ref()
                    ),
                    "use method = \"sas\" with device_id_pk",
                ));
            }
            let Some(pk) = &auth.get_ref().device_id_pk else {
                return Err(r.at(
                    span(auth),
                    "provisioning.authentication.device_id_pk",
                    "is missing",
                    "add device_id_pk = { value = \"<base64 key>\" }",
                ));
            };
            Ok(Provisioning::Manual {
                iothub_hostname: hub.get_ref().trim().to_string(),
                device_id: device.get_ref().trim().to_string(),
                key: secret(
                    r,
                    pk,
                    "provisioning.authentication.device_id_pk",
                    "{ value = \"<base64>\" }",
                )?,
            })
        }
        "dps" => {
            let endpoint = match &p.global_endpoint {
                Some(g) => Endpoint::parse(g.get_ref()).map_err(|m| {
                    r.at(
                        span(g),
                        "provisioning.global_endpoint",
                        m,
                        "use global_endpoint = \"https://<dps host>[:port]\"",
                    )
                })?,
                None => Endpoint::parse("https://global.azure-devices-provisioning.net")
                    .expect("valid default"),
            };
            let scope = p.id_scope.as_ref().or(p.scope_id.as_ref());
            let scope = required(
                r,
                &scope.cloned(),
                section,
                "provisioning.id_scope",
                "add id_scope = \"<ID scope>\" (`fleethub info` shows it)",
            )?
            .get_ref()
            .trim()
            .to_string();
            let Some(att) = &p.attestation else {
                return Err(r.at(
                    span(section),
                    "provisioning.attestation",
                    "is missing",
                    "add [provisioning.attestation] with method = \"symmetric_key\", registration_id and symmetric_key",
                ));
            };
            let a = att.get_ref();
            if a.method.get_ref() != "symmetric_key" {
                return Err(r.at(
                    span(&a.method),
                    "provisioning.attestation.method",
                    format!(
                        "attestation method '{}' is not supported",
                        a.method.get_ref()
                    ),
                    "use method = \"symmetric_key\"",
                ));
            }
            let reg = required(
                r,
                &a.registration_id,
                att,
                "provisioning.attestation.registration_id",
                "add registration_id = \"<registration id>\"",
            )?;
            if reg.get_ref().contains(['/', '#', '+']) {
                return Err(r.at(
                    span(reg),
                    "provisioning.attestation.registration_id",
                    "must not contain '/', '#' or '+'",
                    "use letters, digits, '-', '.', '_' and ':'",
                ));
            }
            let Some(sk) = &a.symmetric_key else {
                return Err(r.at(
                    span(att),
                    "provisioning.attestation.symmetric_key",
                    "is missing",
                    "add symmetric_key = { value = \"<base64 key>\" } (for a group enrollment: the derived device key)",
                ));
            };
            let payload = match &p.payload {
                Some(pl) => match &pl.get_ref().uri {
                    Some(u) => Some(file_uri_path(u.get_ref()).map_err(|m| {
                        r.at(
                            span(u),
                            "provisioning.payload",
                            m,
                            "use payload = { uri = \"file:///etc/fleetedge/dps-payload.json\" }",
                        )
                    })?),
                    None => {
                        return Err(r.at(
                            span(pl),
                            "provisioning.payload",
                            "needs `uri`",
                            "use payload = { uri = \"file:///etc/fleetedge/dps-payload.json\" }",
                        ));
                    }
                },
                None => None,
            };
            Ok(Provisioning::Dps {
                endpoint,
                id_scope: scope,
                registration_id: reg.get_ref().trim().to_string(),
                key: secret(
                    r,
                    sk,
                    "provisioning.attestation.symmetric_key",
                    "{ value = \"<base64>\" }",
                )?,
                payload,
            })
        }
        other => Err(r.at(
            span(&p.source),
            "provisioning.source",
            format!("unknown provisioning source '{other}'"),
            "use source = \"manual\" or source = \"dps\"",
        )),
    }
}

#[cfg(test)]
mod tests;
