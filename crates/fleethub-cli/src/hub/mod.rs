//! `fleethub hub ...`: the IoT hub service REST API (api-version 2021-04-12), `az iot hub`
//! style. Authenticated with the hub service connection string (`--hub-connection-string`,
//! `FLEETHUB_HUB_CONNECTION_STRING`, or `hubServiceConnectionString` in server-info.json).

mod c2d;
mod consumer_group;
mod device_identity;
mod method;
mod module_identity;
pub(crate) mod monitor;
mod query;
mod sas;
mod twin;

pub(crate) use c2d::parse_props;
pub use c2d::{Ack, C2dCommand};
pub use consumer_group::ConsumerGroupCommand;
pub use device_identity::{ConnectionStringCommand, DeviceIdentityCommand, DeviceStatus};
pub use method::MethodArgs;
pub use module_identity::ModuleIdentityCommand;
pub use monitor::MonitorArgs;
pub use query::QueryArgs;
pub use sas::SasArgs;
pub use twin::DeviceTwinCommand;

use crate::args::ClientArgs;
use crate::client::{HUB_API_VERSION, ServiceClient, Transport, seg};
use crate::output::Outcome;
use crate::settings::{Endpoint, Service};
use anyhow::{Result, bail};
use serde_json::Value;

#[derive(clap::Subcommand, Debug, Clone, PartialEq)]
pub enum HubCommand {
    /// Device identities in the hub's registry (and their connection strings).
    #[command(subcommand)]
    DeviceIdentity(DeviceIdentityCommand),
    /// Module identities of a device.
    #[command(subcommand)]
    ModuleIdentity(ModuleIdentityCommand),
    /// Device and module twins (tags, desired and reported properties).
    #[command(subcommand)]
    DeviceTwin(DeviceTwinCommand),
    /// Call a direct method on a connected device (or module) and print its answer.
    InvokeDeviceMethod(MethodArgs),
    /// Cloud-to-device messages: queue one, or purge a device's queue.
    #[command(subcommand)]
    C2dMessage(C2dCommand),
    /// Consumer groups of the Event Hub-compatible built-in endpoint.
    #[command(subcommand)]
    ConsumerGroup(ConsumerGroupCommand),
    /// Print device-to-cloud telemetry as it arrives (or from the stored history), one JSON
    /// object per event, until Ctrl-C or --timeout.
    MonitorEvents(MonitorArgs),
    /// Sign a SAS token: a device's or module's (with its key, fetched from the registry), or a
    /// shared access policy's (with the key of the connection string).
    GenerateSasToken(SasArgs),
    /// Run an IoT hub query over device or module twins (projections, COUNT(), GROUP BY,
    /// devices.modules), every page.
    #[command(after_help = QUERY_EXAMPLES)]
    Query(QueryArgs),
}

const QUERY_EXAMPLES: &str = "\
Examples:
  fleethub hub query -q \"SELECT * FROM devices WHERE tags.environment = 'test'\" -o table
  fleethub hub query -q \"SELECT deviceId, properties.reported.fw AS fw FROM devices\" --top 10
  fleethub hub query -q \"SELECT status, COUNT() AS n FROM devices GROUP BY status\" -o table
  fleethub hub query -q \"SELECT * FROM devices.modules WHERE moduleId = '\\$edgeAgent'\"";

/// Which of a device's (or module's) two symmetric keys.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyType {
    #[default]
    Primary,
    Secondary,
}

impl KeyType {
    fn name(self) -> &'static str {
        match self {
            KeyType::Primary => "primary",
            KeyType::Secondary => "secondary",
        }
    }

    fn field(self) -> &'static str {
        match self {
            KeyType::Primary => "primaryKey",
            KeyType::Secondary => "secondaryKey",
        }
    }
}

/// Runs a `hub` subcommand: result on stdout, notes on stderr.
pub async fn run_hub(cmd: HubCommand, client: &ClientArgs) -> Result<()> {
    let endpoint = Endpoint::resolve(client, Service::Hub)?;
    let mut transport = crate::transport::connect(&endpoint)?;
    if let HubCommand::InvokeDeviceMethod(args) = &cmd {
        transport = transport.with_timeout(args.request_timeout());
    }
    let service = ServiceClient::new(transport, endpoint).with_api_version(HUB_API_VERSION);
    if let HubCommand::MonitorEvents(args) = cmd {
        return monitor::run(args, &service, client.output).await;
    }
    let outcome = dispatch(cmd, &service).await?;
    crate::emit(&outcome, client.output)
}

pub(crate) async fn dispatch<T: Transport>(
    cmd: HubCommand,
    client: &ServiceClient<T>,
) -> Result<Outcome> {
    match cmd {
        HubCommand::DeviceIdentity(c) => device_identity::run(c, client).await,
        HubCommand::ModuleIdentity(c) => module_identity::run(c, client).await,
        HubCommand::DeviceTwin(c) => twin::run(c, client).await,
        HubCommand::InvokeDeviceMethod(a) => method::run(a, client).await,
        HubCommand::C2dMessage(c) => c2d::run(c, client).await,
        HubCommand::ConsumerGroup(c) => consumer_group::run(c, client).await,
        HubCommand::GenerateSasToken(a) => sas::run(a, client).await,
        HubCommand::Query(a) => query::run(a, client).await,
        HubCommand::MonitorEvents(_) => {
            bail!("monitor-events streams its output; it has no single result")
        }
    }
}

/// `/devices/{id}`.
pub(crate) fn device_path(device_id: &str) -> String {
    format!("/devices/{}", seg(device_id))
}

/// `/devices/{id}/modules/{mid}`.
pub(crate) fn module_path(device_id: &str, module_id: &str) -> String {
    format!("{}/modules/{}", device_path(device_id), seg(module_id))
}

/// `/twins/{id}[/modules/{mid}]`.
pub(crate) fn twin_path(device_id: &str, module_id: Option<&str>) -> String {
    match module_id {
        Some(m) => format!("/twins/{}/modules/{}", seg(device_id), seg(m)),
        None => format!("/twins/{}", seg(device_id)),
    }
}

/// The device (or module) identity: `GET /devices/{id}[/modules/{mid}]`.
pub(crate) async fn get_identity<T: Transport>(
    client: &ServiceClient<T>,
    device_id: &str,
    module_id: Option<&str>,
) -> Result<Value> {
    let path = match module_id {
        Some(m) => module_path(device_id, m),
        None => device_path(device_id),
    };
    client.get(&path, &[]).await
}

/// The symmetric key of an identity, or why there is none (X.509 identities have no key).
pub(crate) fn identity_key(identity: &Value, key_type: KeyType, what: &str) -> Result<String> {
    let auth = identity.get("authentication");
    let kind = auth
        .and_then(|a| a.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("sas");
    if !kind.eq_ignore_ascii_case("sas") {
        bail!(
            "{what} authenticates with '{kind}', not a symmetric key: it has no key to sign with or to put in a connection string"
        );
    }
    match auth
        .and_then(|a| a.pointer(&format!("/symmetricKey/{}", key_type.field())))
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|k| !k.is_empty())
    {
        Some(k) => Ok(k.to_string()),
        None => bail!("{what} has no {} key", key_type.name()),
    }
}

/// Value parser for JSON object flags (`--tags`, `--desired`).
pub(crate) fn parse_json_object(s: &str) -> Result<Value, String> {
    crate::dps::parse_json_object(s)
}

/// Value parser for JSON values of any kind (`--method-payload`).
pub(crate) fn parse_json_value(s: &str) -> Result<Value, String> {
    serde_json::from_str::<Value>(s)
        .map_err(|e| format!("invalid JSON ({e}); a text payload needs JSON quotes, e.g. '\"on\"'"))
}

#[cfg(test)]
pub(crate) use device_identity::connection_string as device_identity_connection_string;
#[cfg(test)]
pub(crate) use monitor::*;
