//! [`Config::parse`]: the top-level keys and fleetedge's own sections.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::error::Reporter;
use super::parse_provisioning::resolve_provisioning;
use super::raw::{self, RawConfig, RawProvisioning};
use super::{
    AgentSettings, Config, ConfigError, DEFAULT_HOMEDIR, EdgeHubSettings, HubPorts,
    ReprovisioningMode, file_uri_path, machine_hostname,
};

pub(super) fn is_valid_hostname(h: &str) -> bool {
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

fn secs(
    r: &Reporter<'_>,
    v: Option<&Spanned<f64>>,
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
                Some(s.span()),
                key,
                format!("{} is not a positive number of seconds", s.get_ref()),
                "use a number from 0.001 to 31536000 (a year), e.g. 10 or 0.5",
            )),
        },
    }
}

impl Config {
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
        let hostname = hostname(&r, &raw)?;

        let trust_bundle_cert = match &raw.trust_bundle_cert {
            Some(t) => Some(file_uri_path(t.get_ref()).map_err(|m| {
                r.at(
                    Some(t.span()),
                    "trust_bundle_cert",
                    m,
                    "use trust_bundle_cert = \"file:///etc/fleetedge/trust-bundle.pem\"",
                )
            })?),
            None => None,
        };
        let reprovisioning = reprovisioning(&r, &raw, prov)?;

        let homedir = match &raw.homedir {
            Some(h) if Path::new(h.get_ref()).is_absolute() => PathBuf::from(h.get_ref()),
            Some(h) => {
                return Err(r.at(
                    Some(h.span()),
                    "homedir",
                    format!("'{}' is not an absolute path", h.get_ref()),
                    "use an absolute directory, e.g. homedir = \"/var/lib/fleetedge\"",
                ));
            }
            None => PathBuf::from(DEFAULT_HOMEDIR),
        };

        let port = |v: &Option<Spanned<u16>>, key: &str, default: u16| match v {
            Some(p) if *p.get_ref() == 0 => Err(r.at(
                Some(p.span()),
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
        let edge_hub = edge_hub(&r, &raw)?;
        let agent = agent(&r, &raw)?;
        let moby = super::moby::moby(&r, &raw)?;

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
            moby,
            ignored,
        })
    }
}

fn hostname(r: &Reporter<'_>, raw: &RawConfig) -> Result<String, ConfigError> {
    Ok(match &raw.hostname {
        Some(h) => {
            let v = h.get_ref().trim().to_string();
            if !is_valid_hostname(&v) {
                return Err(r.at(
                    Some(h.span()),
                    "hostname",
                    format!("'{v}' is not a valid host name"),
                    "use letters, digits, '-' and '.', at most 63 characters per label (or an IP address)",
                ));
            }
            v
        }
        None => machine_hostname(),
    })
}

fn reprovisioning(
    r: &Reporter<'_>,
    raw: &RawConfig,
    prov: &Spanned<RawProvisioning>,
) -> Result<ReprovisioningMode, ConfigError> {
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
                    Some(m.span()),
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
    Ok(reprovisioning)
}

fn edge_hub(r: &Reporter<'_>, raw: &RawConfig) -> Result<EdgeHubSettings, ConfigError> {
    let mut edge_hub = EdgeHubSettings {
        enabled: true,
        listen: vec!["0.0.0.0:8883".parse().expect("valid address")],
        queue_max_bytes: 1024 * 1024 * 1024,
        default_ttl: Duration::from_hours(2),
    };
    if let Some(e) = &raw.edge_hub {
        edge_hub.enabled = e.enabled.unwrap_or(true);
        if let Some(list) = &e.listen {
            if list.get_ref().is_empty() && edge_hub.enabled {
                return Err(r.at(
                    Some(list.span()),
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
                            Some(a.span()),
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
                    Some(q.span()),
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
    Ok(edge_hub)
}

fn agent(r: &Reporter<'_>, raw: &RawConfig) -> Result<AgentSettings, ConfigError> {
    let d = AgentSettings::default();
    Ok(match &raw.agent {
        None => d,
        Some(a) => {
            let initial = secs(
                r,
                a.restart_backoff_initial_secs.as_ref(),
                "agent.restart_backoff_initial_secs",
                d.restart_backoff_initial,
            )?;
            let max = secs(
                r,
                a.restart_backoff_max_secs.as_ref(),
                "agent.restart_backoff_max_secs",
                d.restart_backoff_max,
            )?;
            if max < initial {
                return Err(r.at(
                    a.restart_backoff_max_secs.as_ref().map(Spanned::span),
                    "agent.restart_backoff_max_secs",
                    "the maximum back-off is smaller than the initial back-off",
                    "make restart_backoff_max_secs >= restart_backoff_initial_secs",
                ));
            }
            AgentSettings {
                status_report_interval: secs(
                    r,
                    a.status_report_interval_secs.as_ref(),
                    "agent.status_report_interval_secs",
                    d.status_report_interval,
                )?,
                restart_backoff_initial: initial,
                restart_backoff_max: max,
                stable_after: secs(
                    r,
                    a.stable_after_secs.as_ref(),
                    "agent.stable_after_secs",
                    d.stable_after,
                )?,
                log_max_bytes: match &a.log_max_bytes {
                    Some(b) if *b.get_ref() < 4096 => {
                        return Err(r.at(
                            Some(b.span()),
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
    })
}
