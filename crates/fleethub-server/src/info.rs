//! What a newcomer (or a script) needs to talk to the server: `fleethub info`.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

pub const INFO_FILE: &str = "server-info.json";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServerInfo {
    pub id_scope: String,
    pub dps_host: String,
    pub hub_host: String,
    pub ca_cert_path: String,
    pub mqtt_port: u16,
    pub https_port: u16,
    pub dps_service_connection_string: String,
    pub hub_service_connection_string: String,
    /// AMQPS port (Event Hubs and service clients). Absent in files of older versions.
    #[serde(default = "default_amqp_port")]
    pub amqp_port: u16,
    /// `sb://{hubHost}/`: the Event Hub-compatible endpoint of the built-in telemetry endpoint.
    #[serde(default)]
    pub event_hub_compatible_endpoint: String,
    /// The Event Hub-compatible name: the hub's name (first label of the hub host name).
    #[serde(default)]
    pub event_hub_compatible_name: String,
    /// `Endpoint=sb://{hubHost}/;SharedAccessKeyName=service;SharedAccessKey=..;EntityPath={name}`
    /// (the `service` policy: `ServiceConnect`), as the Event Hubs SDKs take it.
    #[serde(default)]
    pub event_hub_compatible_connection_string: String,
    /// Every shared access policy of the hub and the DPS with its rights and connection string
    /// (the owner policies above included), as the portal's "Shared access policies" lists
    /// them: the read-only ones (`registryRead`, `enrollmentread`) are here. Absent in files of
    /// older versions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<PolicyInfo>,
}

/// One shared access policy in [`ServerInfo::policies`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PolicyInfo {
    /// `hub` or `dps`.
    pub service: String,
    pub key_name: String,
    /// Azure's right names (`RegistryRead`, `EnrollmentWrite`, ...).
    pub rights: Vec<String>,
    pub connection_string: String,
}

impl PolicyInfo {
    /// The policies of `auth` (`service` is `hub` or `dps`).
    pub fn list(service: &str, auth: &fleethub_services::ServiceAuth) -> Vec<PolicyInfo> {
        auth.policies()
            .iter()
            .map(|p| PolicyInfo {
                service: service.to_string(),
                key_name: p.key_name.clone(),
                rights: p.rights.iter().map(|r| format!("{r:?}")).collect(),
                connection_string: auth.connection_string(&p.key_name).unwrap_or_default(),
            })
            .collect()
    }
}

fn default_amqp_port() -> u16 {
    5671
}

/// The Event Hub-compatible endpoint of a hub host: `sb://{host}/`.
pub fn event_hub_endpoint(hub_host: &str) -> String {
    format!("sb://{hub_host}/")
}

/// The Event Hubs connection string of the built-in endpoint, from a hub policy's connection
/// string (`HostName=h;SharedAccessKeyName=p;SharedAccessKey=k`):
/// `Endpoint=sb://h/;SharedAccessKeyName=p;SharedAccessKey=k;EntityPath={name}`. Empty when
/// `hub_connection_string` is.
pub fn event_hub_connection_string(hub_connection_string: &str, entity_path: &str) -> String {
    if hub_connection_string.is_empty() {
        return String::new();
    }
    let mut parts: Vec<String> = hub_connection_string
        .split(';')
        .filter(|p| !p.is_empty())
        .map(|part| match part.split_once('=') {
            Some(("HostName", host)) => format!("Endpoint={}", event_hub_endpoint(host)),
            _ => part.to_string(),
        })
        .collect();
    parts.push(format!("EntityPath={entity_path}"));
    parts.join(";")
}

impl ServerInfo {
    pub fn write(&self, data_dir: &Path) -> Result<()> {
        crate::certs::write_private(&data_dir.join(INFO_FILE), &serde_json::to_vec_pretty(self)?)
    }

    pub fn read(data_dir: &Path) -> Result<ServerInfo> {
        let p: PathBuf = data_dir.join(INFO_FILE);
        let b = std::fs::read(&p).with_context(|| {
            format!(
                "cannot read {}: start the server once with `fleethub serve --data-dir {}`",
                p.display(),
                data_dir.display()
            )
        })?;
        serde_json::from_slice(&b)
            .with_context(|| format!("{} is not valid server info", p.display()))
    }

    /// The human-readable summary `fleethub info` prints, service keys included.
    pub fn banner(&self) -> String {
        self.render(
            &self.dps_service_connection_string,
            &self.hub_service_connection_string,
            &self.event_hub_compatible_connection_string,
        )
    }

    /// The banner with the service keys left out (what `fleethub serve` prints when its output
    /// may end up in a log): the connection strings without `SharedAccessKey`, and where to find
    /// them.
    pub fn banner_without_keys(&self, data_dir: &Path) -> String {
        let dir = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
        format!(
            "{}\x20 service keys        not printed: `fleethub info --data-dir {}` shows them, \
             as does {} (owner-only); `serve --show-keys` prints them here\n",
            self.render(
                &without_key(&self.dps_service_connection_string),
                &without_key(&self.hub_service_connection_string),
                &without_key(&self.event_hub_compatible_connection_string),
            ),
            dir.display(),
            dir.join(INFO_FILE).display(),
        )
    }

    fn render(&self, dps_service: &str, hub_service: &str, event_hub: &str) -> String {
        let mut s = format!(
            "fleethub is ready\n\
             \x20 ID scope            {}\n\
             \x20 DPS endpoint        {} (MQTT/TLS :{}, HTTPS :{})\n\
             \x20 hub host name       {} (MQTT/TLS :{}, HTTPS + MQTT/WebSocket :{})\n\
             \x20 CA certificate      {}\n\
             \x20 DPS service         {}\n\
             \x20 hub service         {}\n",
            self.id_scope,
            self.dps_host,
            self.mqtt_port,
            self.https_port,
            self.hub_host,
            self.mqtt_port,
            self.https_port,
            self.ca_cert_path,
            dps_service,
            hub_service,
        );
        if !self.event_hub_compatible_endpoint.is_empty() {
            let _ = write!(
                s,
                "\x20 event hub endpoint  {} (AMQPS :{}), name {}\n\
                 \x20 event hub readers   {}\n",
                self.event_hub_compatible_endpoint,
                self.amqp_port,
                self.event_hub_compatible_name,
                event_hub,
            );
        }
        s
    }
}

/// A connection string with its `SharedAccessKey` value replaced.
fn without_key(connection_string: &str) -> String {
    connection_string
        .split(';')
        .map(|part| match part.split_once('=') {
            Some(("SharedAccessKey", _)) => "SharedAccessKey=<not shown>",
            _ => part,
        })
        .collect::<Vec<_>>()
        .join(";")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> ServerInfo {
        ServerInfo {
            id_scope: "0ne00000001".into(),
            dps_host: "dps.x".into(),
            hub_host: "hub.x".into(),
            ca_cert_path: "/d/certs/ca.pem".into(),
            mqtt_port: 8883,
            https_port: 443,
            dps_service_connection_string:
                "HostName=dps.x;SharedAccessKeyName=provisioningserviceowner;SharedAccessKey=c2VjcmV0MQ=="
                    .into(),
            hub_service_connection_string:
                "HostName=hub.x;SharedAccessKeyName=iothubowner;SharedAccessKey=c2VjcmV0Mg==".into(),
            amqp_port: 5671,
            event_hub_compatible_endpoint: "sb://hub.x/".into(),
            event_hub_compatible_name: "hub".into(),
            event_hub_compatible_connection_string: event_hub_connection_string(
                "HostName=hub.x;SharedAccessKeyName=service;SharedAccessKey=c2VjcmV0Mw==",
                "hub",
            ),
            policies: Vec::new(),
        }
    }

    #[test]
    fn event_hub_connection_string_has_the_event_hubs_shape() {
        assert_eq!(
            info().event_hub_compatible_connection_string,
            "Endpoint=sb://hub.x/;SharedAccessKeyName=service;SharedAccessKey=c2VjcmV0Mw==;EntityPath=hub"
        );
        assert_eq!(event_hub_connection_string("", "hub"), "");
        let json = serde_json::to_value(info()).unwrap();
        assert_eq!(json["eventHubCompatibleEndpoint"], "sb://hub.x/");
        assert_eq!(json["eventHubCompatibleName"], "hub");
        assert_eq!(json["amqpPort"], 5671);
    }

    #[test]
    fn files_of_older_versions_still_read() {
        let mut old = serde_json::to_value(info()).unwrap();
        for k in [
            "amqpPort",
            "eventHubCompatibleEndpoint",
            "eventHubCompatibleName",
            "eventHubCompatibleConnectionString",
        ] {
            old.as_object_mut().unwrap().remove(k);
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(INFO_FILE), old.to_string()).unwrap();
        let read = ServerInfo::read(dir.path()).unwrap();
        assert_eq!(read.amqp_port, 5671);
        assert_eq!(read.event_hub_compatible_endpoint, "");
        assert!(!read.banner().contains("event hub"));
    }

    #[test]
    fn banner_without_keys_says_where_they_are() {
        let b = info().banner_without_keys(Path::new("/var/lib/fleethub"));
        assert!(!b.contains("c2VjcmV0"), "{b}");
        assert!(
            b.contains(
                "HostName=hub.x;SharedAccessKeyName=iothubowner;SharedAccessKey=<not shown>"
            ),
            "{b}"
        );
        assert!(
            b.contains("fleethub info --data-dir /var/lib/fleethub")
                && b.contains("/var/lib/fleethub/server-info.json"),
            "{b}"
        );
        assert!(
            b.contains("sb://hub.x/ (AMQPS :5671), name hub")
                && b.contains("Endpoint=sb://hub.x/;SharedAccessKeyName=service;SharedAccessKey=<not shown>;EntityPath=hub"),
            "{b}"
        );
        let full = info().banner();
        assert!(full.contains("SharedAccessKey=c2VjcmV0Mg=="), "{full}");
        assert!(
            full.contains("SharedAccessKey=c2VjcmV0Mw==;EntityPath=hub"),
            "{full}"
        );
    }
}
