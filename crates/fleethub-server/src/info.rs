//! What a newcomer (or a script) needs to talk to the server: `fleethub info`.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
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

    /// The human-readable banner `fleethub serve` prints at start.
    pub fn banner(&self) -> String {
        format!(
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
            self.dps_service_connection_string,
            self.hub_service_connection_string,
        )
    }
}
