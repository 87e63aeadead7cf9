//! Which device `fleethub device ...` acts as, and how it reaches the hub: a device
//! connection string, a device of the registry (its key read with the hub service connection
//! string, as `az iot device` does), or a DPS registration (individual or group key).

use crate::args::ClientArgs;
use crate::client::{ServiceClient, seg};
use crate::settings::{Defaults, Endpoint, ServerInfo, Service};
use anyhow::{Context, Result, anyhow, bail};
use fleethub_core::connection_string::ConnectionString;
use fleethub_device::provisioning::{ProvisioningClient, Transport};
use fleethub_device::{DeviceClient, DeviceClientOptions};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

/// How to act as a device. One of `--connection-string`, `--device-id` or
/// `--registration-id` (with `--key` or `--group-key`).
#[derive(clap::Args, Debug, Clone, Default, PartialEq)]
pub struct DeviceArgs {
    /// Device connection string (HostName=..;DeviceId=..;SharedAccessKey=..).
    #[arg(
        long,
        global = true,
        visible_alias = "connection-string",
        env = "FLEETHUB_DEVICE_CONNECTION_STRING",
        hide_env_values = true,
        value_name = "CONNECTION_STRING"
    )]
    pub device_connection_string: Option<String>,
    /// A device of the registry: its primary key is read with the hub service connection string.
    #[arg(long, short = 'd', global = true, value_name = "ID")]
    pub device_id: Option<String>,
    /// Provision through DPS with this registration ID first (with --key or --group-key).
    #[arg(long, global = true, value_name = "ID", conflicts_with = "device_id")]
    pub registration_id: Option<String>,
    /// The device's symmetric key (individual enrollment, or already derived from a group key).
    #[arg(
        long,
        global = true,
        env = "FLEETHUB_DEVICE_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub key: Option<String>,
    /// An enrollment group key: the device key is derived from it for --registration-id.
    #[arg(
        long,
        global = true,
        hide_env_values = true,
        value_name = "KEY",
        conflicts_with = "key"
    )]
    pub group_key: Option<String>,
    /// DPS ID scope (default: idScope of server-info.json).
    #[arg(long, global = true, value_name = "SCOPE")]
    pub id_scope: Option<String>,
    /// DPS host (default: dpsHost of server-info.json).
    #[arg(long, global = true, value_name = "HOST")]
    pub dps_host: Option<String>,
    /// MQTT/TLS port of DPS and the hub (default: mqttPort of server-info.json, else 8883).
    #[arg(long, global = true, value_name = "PORT")]
    pub mqtt_port: Option<u16>,
    /// Dial this address instead of the hub host name (the certificate is still checked for
    /// the host name), e.g. 127.0.0.1.
    #[arg(long, global = true, value_name = "ADDRESS")]
    pub hub_address: Option<String>,
}

/// A device identity with its key.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    pub host: String,
    pub device_id: String,
    pub key: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("host", &self.host)
            .field("device_id", &self.device_id)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// Where the hub is: its CA, ports and dial override.
pub(crate) struct Reach {
    pub ca: Option<PathBuf>,
    pub mqtt_port: u16,
    pub https_port: u16,
    pub info: Option<ServerInfo>,
    /// `HOST:PORT` of the HTTPS device API saved in the profile in effect.
    pub server: Option<String>,
}

impl Reach {
    pub(crate) fn resolve(client: &ClientArgs, device: &DeviceArgs) -> Result<Reach> {
        let defaults = Defaults::load(client)?;
        let ca = client.ca_cert.clone().or_else(|| defaults.ca_cert());
        let info = defaults.server_info().cloned();
        Ok(Reach {
            ca,
            mqtt_port: device
                .mqtt_port
                .or_else(|| info.as_ref()?.mqtt_port)
                .unwrap_or(8883),
            https_port: info.as_ref().and_then(|i| i.https_port).unwrap_or(443),
            info,
            server: match defaults {
                Defaults::Profile { profile, .. } => profile.server,
                Defaults::DataDir { .. } => None,
            },
        })
    }

    pub(crate) fn options(&self, device: &DeviceArgs) -> DeviceClientOptions {
        let mut o = DeviceClientOptions::default().with_port(self.mqtt_port);
        if let Some(ca) = &self.ca {
            o = o.with_ca_pem_file(ca.clone());
        }
        if let Some(a) = &device.hub_address {
            o = o.with_connect_address(a.clone());
        }
        o
    }
}

/// The identity of `--device-connection-string` or `--device-id` (not DPS).
pub(crate) async fn identity(client: &ClientArgs, device: &DeviceArgs) -> Result<Identity> {
    if let Some(cs) = &device.device_connection_string {
        let cs = ConnectionString::parse(cs).context("--device-connection-string")?;
        let (Some(device_id), Some(key)) = (cs.device_id, cs.shared_access_key) else {
            bail!(
                "--device-connection-string must hold DeviceId and SharedAccessKey (a device's, not a service policy's)"
            );
        };
        return Ok(Identity {
            host: cs.host_name,
            device_id,
            key,
        });
    }
    let Some(id) = &device.device_id else {
        bail!(
            "say which device: --device-connection-string CS, -d/--device-id ID (key read from the registry), \
             or --registration-id ID --key KEY (provision through DPS; `device simulate` only)"
        );
    };
    let endpoint = Endpoint::resolve(client, Service::Hub)?;
    let host = endpoint.host_name.clone();
    let service = ServiceClient::new(crate::transport::connect(&endpoint)?, endpoint)
        .with_api_version(crate::client::HUB_API_VERSION);
    let d = service.get(&format!("/devices/{}", seg(id)), &[]).await?;
    let key = d
        .pointer("/authentication/symmetricKey/primaryKey")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| anyhow!("device '{id}' has no symmetric key (an X.509 device?)"))?;
    Ok(Identity {
        host,
        device_id: id.clone(),
        key: key.to_string(),
    })
}

/// Connects as the device: provisions through DPS first with `--registration-id`.
pub(crate) async fn connect(
    client: &ClientArgs,
    device: &DeviceArgs,
    reach: &Reach,
) -> Result<DeviceClient> {
    let options = reach.options(device);
    if let Some(reg) = &device.registration_id {
        let info = reach.info.as_ref();
        let scope = device
            .id_scope
            .clone()
            .or_else(|| info?.id_scope.clone())
            .ok_or_else(|| anyhow!("pass --id-scope (no server-info.json in --data-dir)"))?;
        let host = device
            .dps_host
            .clone()
            .or_else(|| info?.dps_host.clone())
            .ok_or_else(|| anyhow!("pass --dps-host (no server-info.json in --data-dir)"))?;
        let mut b = ProvisioningClient::builder()
            .global_endpoint(host)
            .id_scope(scope)
            .registration_id(reg.clone())
            .transport(Transport::Mqtt)
            .port(reach.mqtt_port)
            .timeout(Duration::from_mins(1));
        b = match (&device.key, &device.group_key) {
            (Some(k), _) => b.symmetric_key(k.trim()),
            (None, Some(g)) => b.group_key(g.trim()),
            (None, None) => bail!("--registration-id needs --key KEY or --group-key KEY"),
        };
        if let Some(ca) = &reach.ca {
            b = b.ca_pem_file(ca.clone());
        }
        let p = b.build()?;
        eprintln!("Provisioning '{reg}' through {}:{} ...", p.host(), p.port());
        let r = p.register().await?;
        eprintln!(
            "Assigned to {} as device '{}' ({})",
            r.assigned_hub,
            r.device_id,
            r.substatus.as_deref().unwrap_or("-")
        );
        return Ok(DeviceClient::from_provisioning(&r, p.device_key(), options).await?);
    }
    let id = identity(client, device).await?;
    let cs = format!(
        "HostName={};DeviceId={};SharedAccessKey={}",
        id.host, id.device_id, id.key
    );
    Ok(DeviceClient::from_connection_string(&cs, options).await?)
}
