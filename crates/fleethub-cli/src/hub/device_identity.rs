//! `fleethub hub device-identity create|list|show|update|delete` and
//! `... connection-string show`: device identities (`/devices/{id}`).

use super::{KeyType, device_path, get_identity};
use crate::client::{Condition, ServiceClient, Transport};
use crate::dps::child;
use crate::output::{Column, Outcome, col, col_or};
use anyhow::{Result, bail};
use serde_json::{Value, json};
use std::fmt::Write as _;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceStatus {
    Enabled,
    Disabled,
}

impl DeviceStatus {
    fn as_str(self) -> &'static str {
        match self {
            DeviceStatus::Enabled => "enabled",
            DeviceStatus::Disabled => "disabled",
        }
    }
}

#[derive(clap::Subcommand, Debug, Clone, PartialEq)]
pub enum DeviceIdentityCommand {
    /// Create a device identity (symmetric key; keys are generated unless given).
    Create {
        #[arg(long, short = 'd')]
        device_id: String,
        /// Mark the device as an IoT Edge device; `--edge-enabled` alone = true.
        #[arg(
            long,
            visible_alias = "ee",
            value_name = "true|false",
            num_args = 0..=1,
            default_missing_value = "true"
        )]
        edge_enabled: Option<bool>,
        /// Primary symmetric key (base64 of 16-64 bytes); with --secondary-key.
        #[arg(long, value_name = "KEY", requires = "secondary_key")]
        primary_key: Option<String>,
        /// Secondary symmetric key (base64 of 16-64 bytes); with --primary-key.
        #[arg(long, value_name = "KEY", requires = "primary_key")]
        secondary_key: Option<String>,
        /// Whether the device may connect (default enabled).
        #[arg(long, value_enum)]
        status: Option<DeviceStatus>,
        /// Why the status was set (free text, up to 128 characters).
        #[arg(long, value_name = "TEXT")]
        status_reason: Option<String>,
    },
    /// List device identities (with their keys), in ID order: all of them, 1000 per request.
    List {
        /// At most this many devices (default: all).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        top: Option<u32>,
    },
    /// Show one device identity (with its keys).
    Show {
        #[arg(long, short = 'd')]
        device_id: String,
    },
    /// Change the given fields of a device identity (read, modify, write with If-Match).
    Update {
        #[arg(long, short = 'd')]
        device_id: String,
        #[arg(long, value_enum)]
        status: Option<DeviceStatus>,
        #[arg(long, value_name = "TEXT")]
        status_reason: Option<String>,
        #[arg(long, value_name = "KEY")]
        primary_key: Option<String>,
        #[arg(long, value_name = "KEY")]
        secondary_key: Option<String>,
        /// IoT Edge device or not; `--edge-enabled` alone = true.
        #[arg(
            long,
            visible_alias = "ee",
            value_name = "true|false",
            num_args = 0..=1,
            default_missing_value = "true"
        )]
        edge_enabled: Option<bool>,
        /// Only update if the identity still has this etag (default: the etag just read).
        #[arg(long)]
        etag: Option<String>,
    },
    /// Delete a device identity (and its twin, modules and queued messages).
    Delete {
        #[arg(long, short = 'd')]
        device_id: String,
        /// Only delete if the identity still has this etag (default: whatever it is).
        #[arg(long)]
        etag: Option<String>,
    },
    /// A device's (or module's) connection string.
    #[command(subcommand)]
    ConnectionString(ConnectionStringCommand),
}

#[derive(clap::Subcommand, Debug, Clone, PartialEq)]
pub enum ConnectionStringCommand {
    /// Print `HostName=..;DeviceId=..;SharedAccessKey=..` for a device or module (formatted
    /// here from the identity the registry returns).
    Show {
        #[arg(long, short = 'd')]
        device_id: String,
        /// Which key to put in the connection string.
        #[arg(long, value_enum, default_value_t = KeyType::Primary)]
        key_type: KeyType,
        /// A module of the device instead of the device itself.
        #[arg(long, short = 'm')]
        module_id: Option<String>,
    },
}

/// Devices per `GET /devices` (the server's maximum).
const LIST_PAGE: usize = 1000;

pub(crate) const LIST_COLUMNS: &[Column] = &[
    col("DEVICE ID", "/deviceId"),
    col_or("STATUS", "/status", "enabled"),
    col("CONNECTION", "/connectionState"),
    col_or("EDGE", "/capabilities/iotEdge", "false"),
    col("AUTH", "/authentication/type"),
    col_or("C2D QUEUED", "/cloudToDeviceMessageCount", "0"),
    col("LAST ACTIVITY", "/lastActivityTime"),
];

/// Settable fields of a device identity.
#[derive(Debug, Clone, Default, PartialEq)]
struct Fields {
    status: Option<DeviceStatus>,
    status_reason: Option<String>,
    primary_key: Option<String>,
    secondary_key: Option<String>,
    edge_enabled: Option<bool>,
}

impl Fields {
    /// Writes the given fields into a Device object; everything else stays as it is.
    fn apply(&self, device: &mut Value) -> Result<()> {
        let Some(root) = device.as_object_mut() else {
            bail!("the server sent a device that is not a JSON object")
        };
        if let Some(s) = self.status {
            root.insert("status".into(), Value::String(s.as_str().into()));
        }
        if let Some(r) = &self.status_reason {
            root.insert("statusReason".into(), Value::String(r.clone()));
        }
        if let Some(edge) = self.edge_enabled {
            child(root, "capabilities")?.insert("iotEdge".into(), Value::Bool(edge));
        }
        if self.primary_key.is_some() || self.secondary_key.is_some() {
            let auth = child(root, "authentication")?;
            let kind = auth
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("sas")
                .to_string();
            if !kind.eq_ignore_ascii_case("sas") {
                bail!(
                    "--primary-key/--secondary-key apply to symmetric-key (sas) devices; this one authenticates with '{kind}'"
                );
            }
            auth.insert("type".into(), Value::String(kind));
            let keys = child(auth, "symmetricKey")?;
            if let Some(k) = &self.primary_key {
                keys.insert("primaryKey".into(), Value::String(k.trim().to_string()));
            }
            if let Some(k) = &self.secondary_key {
                keys.insert("secondaryKey".into(), Value::String(k.trim().to_string()));
            }
        }
        Ok(())
    }
}

/// The Device a `create` sends: symmetric-key authentication (empty keys = generated).
fn new_device(device_id: &str, fields: &Fields) -> Result<Value> {
    let mut device = json!({
        "deviceId": device_id,
        "status": "enabled",
        "authentication": {
            "type": "sas",
            "symmetricKey": { "primaryKey": "", "secondaryKey": "" },
        },
        "capabilities": { "iotEdge": false },
    });
    fields.apply(&mut device)?;
    Ok(device)
}

pub(crate) async fn run<T: Transport>(
    cmd: DeviceIdentityCommand,
    client: &ServiceClient<T>,
) -> Result<Outcome> {
    match cmd {
        DeviceIdentityCommand::Create {
            device_id,
            edge_enabled,
            primary_key,
            secondary_key,
            status,
            status_reason,
        } => {
            let fields = Fields {
                status,
                status_reason,
                primary_key,
                secondary_key,
                edge_enabled,
            };
            let body = new_device(&device_id, &fields)?;
            // No If-Match: the hub answers 409 DeviceAlreadyExists instead of overwriting.
            let created = client
                .put(&device_path(&device_id), &body, Condition::None)
                .await
                .map_err(|e| already_exists(e, &device_id))?;
            Ok(Outcome::Object(created))
        }
        DeviceIdentityCommand::List { top } => {
            let limit = top.map(|n| n as usize);
            let items = client.get_pages("/devices", limit, LIST_PAGE).await?;
            Ok(Outcome::List(items, LIST_COLUMNS))
        }
        DeviceIdentityCommand::Show { device_id } => Ok(Outcome::Object(
            get_identity(client, &device_id, None).await?,
        )),
        DeviceIdentityCommand::Update {
            device_id,
            status,
            status_reason,
            primary_key,
            secondary_key,
            edge_enabled,
            etag,
        } => {
            let fields = Fields {
                status,
                status_reason,
                primary_key,
                secondary_key,
                edge_enabled,
            };
            if fields == Fields::default() {
                bail!(
                    "nothing to update: pass at least one of --status, --status-reason, --primary-key, --secondary-key, --edge-enabled"
                );
            }
            let path = device_path(&device_id);
            let mut current = client.get(&path, &[]).await?;
            let if_match = crate::dps::update_etag(etag.as_deref(), &current);
            fields.apply(&mut current)?;
            let cond = if_match
                .as_deref()
                .map_or(Condition::IfMatch("*"), Condition::IfMatch);
            Ok(Outcome::Object(client.put(&path, &current, cond).await?))
        }
        DeviceIdentityCommand::Delete { device_id, etag } => {
            client
                .delete(
                    &device_path(&device_id),
                    Some(etag.as_deref().unwrap_or("*")),
                )
                .await?;
            Ok(Outcome::Done(format!("deleted device '{device_id}'")))
        }
        DeviceIdentityCommand::ConnectionString(ConnectionStringCommand::Show {
            device_id,
            key_type,
            module_id,
        }) => {
            let identity = get_identity(client, &device_id, module_id.as_deref()).await?;
            let cs = connection_string(
                &client.endpoint().host_name,
                &device_id,
                module_id.as_deref(),
                &identity,
                key_type,
            )?;
            Ok(Outcome::Field("connectionString", cs))
        }
    }
}

/// A 409 on create says which command changes an existing device.
fn already_exists(e: anyhow::Error, device_id: &str) -> anyhow::Error {
    match e.downcast_ref::<crate::errors::ServiceError>() {
        Some(se) if se.status == 409 => e.context(format!(
            "device '{device_id}' already exists; use `fleethub hub device-identity update` to change it"
        )),
        _ => e,
    }
}

/// `HostName=..;DeviceId=..[;ModuleId=..];SharedAccessKey=..` from an identity the registry
/// returned; X.509 identities get `;x509=true` instead of a key (as `az` prints them).
pub(crate) fn connection_string(
    host_name: &str,
    device_id: &str,
    module_id: Option<&str>,
    identity: &Value,
    key_type: KeyType,
) -> Result<String> {
    let mut cs = format!("HostName={host_name};DeviceId={device_id}");
    if let Some(m) = module_id {
        let _ = write!(cs, ";ModuleId={m}");
    }
    let kind = identity
        .pointer("/authentication/type")
        .and_then(Value::as_str)
        .unwrap_or("sas");
    if kind.eq_ignore_ascii_case("selfSigned") || kind.eq_ignore_ascii_case("certificateAuthority")
    {
        cs.push_str(";x509=true");
        return Ok(cs);
    }
    let what = match module_id {
        Some(m) => format!("module '{m}' of device '{device_id}'"),
        None => format!("device '{device_id}'"),
    };
    let key = super::identity_key(identity, key_type, &what)?;
    let _ = write!(cs, ";SharedAccessKey={key}");
    Ok(cs)
}
