//! Server configuration: defaults <- TOML file <- environment (`FLEETHUB_*`) <- flags.

use crate::logging::LogFormat;
use crate::store_config::StoreConfig;
use anyhow::{Context, Result, bail};
use fleethub_store::Store;
use fleethub_store::sqlite::Durability;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The effective configuration of `fleethub serve` (`fleethub config show` prints it).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default, rename_all = "snake_case")]
pub struct Config {
    /// Directory with the store, certificates and server-info.json.
    pub data_dir: PathBuf,
    /// Address the listeners bind to.
    pub bind: String,
    /// MQTT over TLS (the SDKs dial 8883).
    pub mqtt_port: u16,
    /// HTTPS + MQTT over WebSocket (the SDKs dial 443).
    pub https_port: u16,
    /// AMQP over TLS (AMQPS: Event Hubs and service clients dial 5671).
    pub amqp_port: u16,
    /// Host name devices use for DPS (certificate SAN, service connection string HostName).
    /// Unset: the name stored in the data directory (first start: `localhost`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dps_hostname: Option<String>,
    /// Host name of the hub (assignment target, certificate SAN). The C SDK needs a dot in it.
    /// Unset: the name stored in the data directory (first start: `localhost`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hub_hostname: Option<String>,
    /// Extra names/IPs for the generated server certificate.
    /// Unset: the names stored in the data directory (first start: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extra_sans: Option<Vec<String>>,
    /// User-supplied server certificate chain (PEM) and key; when unset a development CA
    /// in the data directory issues one.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// An operator's CA certificate (PEM) and key that issue the server certificate instead of
    /// the development CA: several servers given the same CA are trusted by one CA file.
    pub ca_cert: Option<PathBuf>,
    pub ca_key: Option<PathBuf>,
    /// More CA certificates (PEM) the DPS trusts when it calls linked hubs, besides the CA of
    /// this server's own certificate (enough when all servers share one CA).
    pub linked_hub_ca_file: Option<PathBuf>,
    /// How long the DPS waits for a custom allocation webhook's answer, seconds.
    pub allocation_webhook_timeout_secs: u64,
    /// Tolerated clock skew for SAS token expiry, seconds.
    pub token_skew_secs: u64,
    /// `retry-after` given to provisioning devices, seconds.
    pub dps_retry_after_secs: u32,
    /// Largest MQTT packet accepted, bytes.
    pub max_mqtt_packet_bytes: usize,
    /// An MQTT connection whose writes make no progress this long (the client stopped
    /// reading) is cut off, seconds.
    pub mqtt_write_stall_timeout_secs: u64,
    /// Longest an MQTT hub connection stays open on one SAS token, seconds: a longer-lived
    /// token is accepted, but the connection closes at this cap and the device reconnects.
    pub max_token_lifetime_secs: u64,
    /// Most concurrent connections per listener (MQTT/TLS and HTTPS each have their own limit).
    pub max_connections: usize,
    /// An HTTPS connection must deliver a complete request head within this many seconds of
    /// opening or of its previous response; otherwise it is closed. Bounds half-sent requests
    /// and idle keep-alive connections alike.
    pub http_header_read_timeout_secs: u64,
    /// Log filter (tracing `EnvFilter` syntax), e.g. `info,fleethub_mqtt=debug`.
    pub log: String,
    /// Log lines as `text` or `json` (one object per line).
    pub log_format: LogFormat,
    /// How long the built-in endpoint keeps telemetry, hours (Azure: 1 day by default).
    pub telemetry_retention_hours: u64,
    /// Partitions of the telemetry log (the Event Hub-compatible endpoint), 1 to 128. Only
    /// honoured when the data directory is created; later the stored count is used and a
    /// different value here logs a warning that names both.
    pub partition_count: u32,
    /// Most consumer groups of the built-in endpoint, `$Default` included (Azure: 20).
    pub max_consumer_groups: usize,
    /// What an acknowledged write survives: `process` (a killed process) or `power` (also a
    /// power loss: every commit is fsynced before it is acknowledged).
    pub durability: Durability,
    /// The web dashboard at `https://{hub host}/ui/` (docs/dashboard.md); `false` turns it off.
    pub ui: bool,
    /// How long a dashboard sign-in lasts, hours.
    pub ui_session_hours: u64,
    /// Overload throttles per operation class (`[throttle.device_to_cloud]`, ...): per device
    /// and global rates, see docs/configuration.md, "Throttling".
    pub throttle: fleethub_services::ThrottleConfig,
    /// This node's place among several sharing a store (`[cluster]`, docs/scale-out.md).
    pub cluster: ClusterConfig,
    /// Where the store is (`[store]`): `backend = "sqlite"` (default, `DATA_DIR/store.db`) or
    /// `"postgres"` with `url` (docs/scale-out.md).
    pub store: StoreConfig,
}

/// `[cluster]` in the configuration file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "snake_case")]
pub struct ClusterConfig {
    /// The node's name, unique among the nodes of one store: a second node started with the
    /// same id refuses to start while the first runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// The NATS server that carries events and method calls between the nodes
    /// (`nats://host:4222`; needs `node_id`). Without it a node delivers only to devices
    /// connected to itself. `fleethub config show` prints it without a password.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::store_config::serialize_redacted"
    )]
    pub nats_url: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./fleethub-data"),
            bind: "0.0.0.0".into(),
            mqtt_port: 8883,
            https_port: 443,
            amqp_port: 5671,
            dps_hostname: None,
            hub_hostname: None,
            extra_sans: None,
            tls_cert: None,
            tls_key: None,
            ca_cert: None,
            ca_key: None,
            linked_hub_ca_file: None,
            allocation_webhook_timeout_secs: 10,
            token_skew_secs: 30,
            dps_retry_after_secs: 1,
            max_mqtt_packet_bytes: 256 * 1024 + 4096,
            mqtt_write_stall_timeout_secs: 30,
            max_token_lifetime_secs: 24 * 3600,
            max_connections: 18_000,
            http_header_read_timeout_secs: 30,
            log: "info".into(),
            log_format: LogFormat::Text,
            telemetry_retention_hours: 24,
            partition_count: fleethub_services::hub::event_hub::EventHubConfig::default()
                .partition_count,
            max_consumer_groups: fleethub_services::hub::event_hub::DEFAULT_MAX_CONSUMER_GROUPS,
            durability: Durability::Process,
            throttle: fleethub_services::ThrottleConfig::default(),
            ui: true,
            ui_session_hours: 8,
            store: StoreConfig::default(),
            cluster: ClusterConfig::default(),
        }
    }
}

impl Config {
    /// Reads a TOML file; unknown keys are errors that name the key and line.
    pub fn from_file(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("config file {}: {e}", path.display()))
    }

    /// Applies `FLEETHUB_*` environment variables.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<()> {
        macro_rules! env_set {
            ($name:literal, $field:ident, parse) => {
                if let Some(v) = get($name) {
                    self.$field = v
                        .parse()
                        .map_err(|e| anyhow::anyhow!("{}={v:?}: {e}", $name))?;
                }
            };
            ($name:literal, $field:ident) => {
                if let Some(v) = get($name) {
                    self.$field = v.into();
                }
            };
        }
        env_set!("FLEETHUB_DATA_DIR", data_dir);
        env_set!("FLEETHUB_BIND", bind);
        env_set!("FLEETHUB_MQTT_PORT", mqtt_port, parse);
        env_set!("FLEETHUB_HTTPS_PORT", https_port, parse);
        env_set!("FLEETHUB_AMQP_PORT", amqp_port, parse);
        env_set!("FLEETHUB_DPS_HOSTNAME", dps_hostname);
        env_set!("FLEETHUB_HUB_HOSTNAME", hub_hostname);
        env_set!("FLEETHUB_LOG", log);
        env_set!("FLEETHUB_LOG_FORMAT", log_format, parse);
        env_set!("FLEETHUB_DURABILITY", durability, parse);
        env_set!("FLEETHUB_PARTITION_COUNT", partition_count, parse);
        env_set!("FLEETHUB_UI", ui, parse);
        if let Some(v) = get("FLEETHUB_STORE_BACKEND") {
            self.store.backend = v
                .parse()
                .map_err(|e| anyhow::anyhow!("FLEETHUB_STORE_BACKEND={v:?}: {e}"))?;
        }
        if let Some(v) = get("FLEETHUB_STORE_URL") {
            self.store.url = Some(v);
            // A url alone means PostgreSQL (the only backend with one).
            if get("FLEETHUB_STORE_BACKEND").is_none() {
                self.store.backend = crate::store_config::Backend::Postgres;
            }
        }
        if let Some(v) = get("FLEETHUB_NODE_ID") {
            self.cluster.node_id = Some(v);
        }
        if let Some(v) = get("FLEETHUB_NATS_URL") {
            self.cluster.nats_url = Some(v);
        }
        if let Some(v) = get("FLEETHUB_TLS_CERT") {
            self.tls_cert = Some(v.into());
        }
        if let Some(v) = get("FLEETHUB_TLS_KEY") {
            self.tls_key = Some(v.into());
        }
        Ok(())
    }

    /// Opens the configured store: SQLite in the data directory with the configured
    /// durability, or PostgreSQL (retried while it cannot be reached).
    pub async fn open_store(&self) -> Result<Arc<dyn Store>> {
        self.store.open(&self.data_dir, self.durability).await
    }

    pub fn validate(&self) -> Result<()> {
        for (name, host) in [
            ("dps_hostname", &self.dps_hostname),
            ("hub_hostname", &self.hub_hostname),
        ] {
            let Some(host) = host else { continue };
            if host.is_empty() || host.contains(['/', ':', ' ', ';']) {
                bail!(
                    "{name} '{host}' is not a host name: give a name like hub.fleethub.local (no scheme, port or path)"
                );
            }
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            bail!(
                "tls_cert and tls_key must be given together (PEM certificate chain and its private key)"
            );
        }
        if self.ca_cert.is_some() != self.ca_key.is_some() {
            bail!(
                "ca_cert and ca_key must be given together (PEM CA certificate and its private key)"
            );
        }
        if self.ca_cert.is_some() && self.tls_cert.is_some() {
            bail!(
                "give either tls_cert/tls_key (a ready server certificate) or ca_cert/ca_key (a CA that issues one), not both"
            );
        }
        if self.max_connections == 0 {
            bail!("max_connections must be at least 1");
        }
        if self.ui && !(1..=24 * 30).contains(&self.ui_session_hours) {
            bail!("ui_session_hours must be between 1 and 720 (30 days)");
        }
        if self.http_header_read_timeout_secs == 0 {
            bail!("http_header_read_timeout_secs must be at least 1");
        }
        if !(1..=fleethub_services::hub::event_hub::MAX_PARTITION_COUNT)
            .contains(&self.partition_count)
        {
            bail!(
                "partition_count must be 1 to {}, not {}",
                fleethub_services::hub::event_hub::MAX_PARTITION_COUNT,
                self.partition_count
            );
        }
        if self.max_consumer_groups == 0 {
            bail!("max_consumer_groups must be at least 1 ($Default)");
        }
        self.throttle.validate().map_err(anyhow::Error::msg)?;
        self.store.validate()?;
        if let Some(id) = &self.cluster.node_id {
            crate::cluster::validate_node_id(id)?;
        }
        if let Some(url) = &self.cluster.nats_url {
            if self.cluster.node_id.is_none() {
                bail!(
                    "nats_url needs a node_id: set node_id in [cluster] (or FLEETHUB_NODE_ID, --node-id)"
                );
            }
            if !url.starts_with("nats://") {
                bail!(
                    "nats_url '{}' is not a NATS URL: it must start with nats://",
                    crate::store_config::redact(url)
                );
            }
        }
        if self.mqtt_port == self.https_port && self.mqtt_port != 0 {
            bail!(
                "mqtt_port and https_port are both {}: use two ports (8883 and 443)",
                self.mqtt_port
            );
        }
        if self.amqp_port != 0 && [self.mqtt_port, self.https_port].contains(&self.amqp_port) {
            bail!(
                "amqp_port {} is also the MQTT or HTTPS port: AMQPS needs its own port (5671)",
                self.amqp_port
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_with_unknown_key_is_rejected_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "mqtt_port = 1883\nhub_hostnme = \"x\"\n").unwrap();
        let e = Config::from_file(&p).unwrap_err().to_string();
        assert!(e.contains("hub_hostnme"), "{e}");
    }

    #[test]
    fn layering() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(
            &p,
            "mqtt_port = 18883\nhub_hostname = \"hub.fleethub.local\"\n",
        )
        .unwrap();
        let mut c = Config::from_file(&p).unwrap();
        assert_eq!(c.https_port, 443);
        c.apply_env(|k| (k == "FLEETHUB_HTTPS_PORT").then(|| "8443".to_string()))
            .unwrap();
        assert_eq!((c.mqtt_port, c.https_port), (18883, 8443));
        assert_eq!(c.hub_hostname.as_deref(), Some("hub.fleethub.local"));
        c.validate().unwrap();
        assert!(
            c.apply_env(|k| (k == "FLEETHUB_MQTT_PORT").then(|| "x".to_string()))
                .is_err()
        );
    }

    #[test]
    fn log_format_from_file_env_and_its_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "log_format = \"json\"\n").unwrap();
        let mut c = Config::from_file(&p).unwrap();
        assert_eq!(c.log_format, LogFormat::Json);
        c.apply_env(|k| (k == "FLEETHUB_LOG_FORMAT").then(|| "text".to_string()))
            .unwrap();
        assert_eq!(c.log_format, LogFormat::Text);
        let e = c
            .apply_env(|k| (k == "FLEETHUB_LOG_FORMAT").then(|| "yaml".to_string()))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("FLEETHUB_LOG_FORMAT") && e.contains("text or json"),
            "{e}"
        );
        std::fs::write(&p, "log_format = \"xml\"\n").unwrap();
        assert!(Config::from_file(&p).is_err());
    }

    #[test]
    fn durability_from_file_env_and_its_errors() {
        assert_eq!(Config::default().durability, Durability::Process);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "durability = \"power\"\n").unwrap();
        let mut c = Config::from_file(&p).unwrap();
        assert_eq!(c.durability, Durability::Power);
        c.apply_env(|k| (k == "FLEETHUB_DURABILITY").then(|| "process".to_string()))
            .unwrap();
        assert_eq!(c.durability, Durability::Process);
        let e = c
            .apply_env(|k| (k == "FLEETHUB_DURABILITY").then(|| "disk".to_string()))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("FLEETHUB_DURABILITY") && e.contains("power"),
            "{e}"
        );
        std::fs::write(&p, "durability = \"fsync\"\n").unwrap();
        assert!(Config::from_file(&p).is_err());
        // `fleethub config show` prints it so that it reads back.
        let shown = toml::to_string(&Config {
            durability: Durability::Power,
            ..Config::default()
        })
        .unwrap();
        assert!(shown.contains("durability = \"power\""), "{shown}");
    }

    #[test]
    fn operator_ca_keys_come_together_and_exclude_a_ready_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "ca_cert = \"/etc/ca.pem\"\nca_key = \"/etc/ca.key\"\n").unwrap();
        let c = Config::from_file(&p).unwrap();
        c.validate().unwrap();
        assert_eq!(c.ca_cert.as_deref(), Some(Path::new("/etc/ca.pem")));
        let e = Config {
            ca_key: None,
            ..c.clone()
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(e.contains("together"), "{e}");
        let e = Config {
            tls_cert: Some("/s.pem".into()),
            tls_key: Some("/s.key".into()),
            ..c
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(e.contains("not both"), "{e}");
    }

    #[test]
    fn event_hub_settings_from_file_env_and_their_checks() {
        let c = Config::default();
        assert_eq!(
            (c.partition_count, c.max_consumer_groups, c.amqp_port),
            (4, 20, 5671)
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "partition_count = 8\nmax_consumer_groups = 5\n").unwrap();
        let mut c = Config::from_file(&p).unwrap();
        assert_eq!((c.partition_count, c.max_consumer_groups), (8, 5));
        c.apply_env(|k| (k == "FLEETHUB_PARTITION_COUNT").then(|| "2".to_string()))
            .unwrap();
        assert_eq!(c.partition_count, 2);
        c.validate().unwrap();
        for (count, groups) in [(0, 20), (129, 20), (4, 0)] {
            let bad = Config {
                partition_count: count,
                max_consumer_groups: groups,
                ..Config::default()
            };
            let e = bad.validate().unwrap_err().to_string();
            assert!(
                e.contains("partition_count") || e.contains("max_consumer_groups"),
                "{e}"
            );
        }
    }

    #[test]
    fn throttle_tables_from_file_and_their_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(
            &p,
            "[throttle.device_to_cloud]\nper_device = 5\n[throttle.dps_registrations]\nglobal = 16.7\nburst_secs = 60\n",
        )
        .unwrap();
        let c = Config::from_file(&p).unwrap();
        let d = fleethub_services::ThrottleConfig::default();
        let d2c = d.device_to_cloud;
        assert_eq!(
            c.throttle.device_to_cloud,
            fleethub_services::throttle::Limit::new(5.0, d2c.global, d2c.burst_secs)
        );
        let dps = d.dps_registrations;
        assert_eq!(
            c.throttle.dps_registrations,
            fleethub_services::throttle::Limit::new(dps.per_device, 16.7, 60.0)
        );
        assert_eq!(c.throttle.twin_reads, d.twin_reads);
        // `fleethub config show` prints every limit, and that reads back.
        let shown = toml::to_string(&c).unwrap();
        assert!(shown.contains("[throttle.twin_reads]"), "{shown}");
        std::fs::write(&p, &shown).unwrap();
        assert_eq!(Config::from_file(&p).unwrap(), c);
        std::fs::write(&p, "[throttle.twin_reads]\nper_device = -2\n").unwrap();
        let e = format!("{:#}", Config::from_file(&p).unwrap_err());
        assert!(e.contains("throttle.twin_reads.per_device"), "{e}");
        std::fs::write(&p, "[throttle.telemetry]\nper_device = 2\n").unwrap();
        let e = format!("{:#}", Config::from_file(&p).unwrap_err());
        assert!(e.contains("telemetry"), "{e}");
    }

    #[test]
    fn amqp_port_from_env_and_its_own_port() {
        let mut c = Config::default();
        c.apply_env(|k| (k == "FLEETHUB_AMQP_PORT").then(|| "15671".to_string()))
            .unwrap();
        assert_eq!(c.amqp_port, 15671);
        c.validate().unwrap();
        let clash = Config {
            amqp_port: 443,
            ..Config::default()
        };
        let e = clash.validate().unwrap_err().to_string();
        assert!(e.contains("amqp_port 443"), "{e}");
    }

    #[test]
    fn nats_url_from_file_and_env_needs_a_node_id_and_is_shown_without_password() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(
            &p,
            "[cluster]\nnode_id = \"n1\"\nnats_url = \"nats://fh:s3cret@nats:4222\"\n",
        )
        .unwrap();
        let c = Config::from_file(&p).unwrap();
        c.validate().unwrap();
        let shown = toml::to_string(&c).unwrap();
        assert!(
            shown.contains("nats://fh:***@nats:4222") && !shown.contains("s3cret"),
            "{shown}"
        );
        let mut c = Config::default();
        c.apply_env(|k| (k == "FLEETHUB_NATS_URL").then(|| "nats://127.0.0.1:4222".to_string()))
            .unwrap();
        assert_eq!(c.cluster.nats_url.as_deref(), Some("nats://127.0.0.1:4222"));
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("needs a node_id"), "{e}");
        c.cluster.node_id = Some("n1".into());
        c.validate().unwrap();
        c.cluster.nats_url = Some("http://nats:4222".into());
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("not a NATS URL"), "{e}");
    }

    #[test]
    fn store_from_file_env_and_show() {
        use crate::store_config::Backend;
        assert_eq!(Config::default().store.backend, Backend::Sqlite);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(
            &p,
            "[store]\nbackend = \"postgres\"\nurl = \"postgres://fh:s3cret@db:5432/fh\"\n",
        )
        .unwrap();
        let c = Config::from_file(&p).unwrap();
        c.validate().unwrap();
        assert_eq!(c.store.backend, Backend::Postgres);
        // `fleethub config show` never prints the password.
        let shown = toml::to_string(&c).unwrap();
        assert!(
            shown.contains("postgres://fh:***@db:5432/fh") && !shown.contains("s3cret"),
            "{shown}"
        );
        // A url from the environment alone selects PostgreSQL.
        let mut c = Config::default();
        c.apply_env(|k| (k == "FLEETHUB_STORE_URL").then(|| "postgres://db/fh".to_string()))
            .unwrap();
        assert_eq!(c.store.backend, Backend::Postgres);
        c.validate().unwrap();
        // ... unless the environment names the backend too.
        let mut c = Config::default();
        c.apply_env(|k| match k {
            "FLEETHUB_STORE_URL" => Some("postgres://db/fh".to_string()),
            "FLEETHUB_STORE_BACKEND" => Some("sqlite".to_string()),
            _ => None,
        })
        .unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("backend"));
        std::fs::write(&p, "[store]\nbackend = \"mysql\"\n").unwrap();
        assert!(Config::from_file(&p).is_err());
    }

    #[test]
    fn bad_hostname() {
        let c = Config {
            hub_hostname: Some("https://hub".into()),
            ..Default::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("hub_hostname")
        );
    }
}
