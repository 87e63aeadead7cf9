//! `fleethub device ...`: device-side tools like `az iot device ...`, built on the Rust device
//! SDK (`fleethub-device`): simulate a device, send device-to-cloud messages, receive and
//! settle cloud-to-device messages. No SDK installation needed to try a server.

pub(crate) mod c2d;
pub(crate) mod identity;
mod send;
mod simulate;

pub use c2d::DeviceC2dCommand;
pub use identity::DeviceArgs;
pub use send::SendArgs;
pub use simulate::SimulateDeviceArgs;

use crate::args::ClientArgs;
use anyhow::Result;

#[derive(clap::Subcommand, Debug, Clone, PartialEq)]
pub enum DeviceCommand {
    /// Act as a device: send --msg-count messages every --msg-interval seconds, answer direct
    /// methods, print desired-property updates and cloud-to-device messages (JSON lines).
    #[command(after_help = SIMULATE_EXAMPLES)]
    Simulate(SimulateDeviceArgs),
    /// Send device-to-cloud messages as a device.
    SendD2cMessage(SendArgs),
    /// Cloud-to-device messages as the device receives them (HTTPS device API).
    #[command(subcommand)]
    C2dMessage(DeviceC2dCommand),
}

const SIMULATE_EXAMPLES: &str = "\
Examples:
  fleethub device simulate -d dev-01 --msg-count 10 --msg-interval 1
  fleethub device simulate --registration-id sensor-7 --group-key \"$GROUP_KEY\" --msg-count 0
  fleethub device simulate --device-connection-string \"$CS\" --data '{\"t\": 20}'";

/// Runs a `device` subcommand.
pub async fn run_device(
    cmd: DeviceCommand,
    client: &ClientArgs,
    device: &DeviceArgs,
) -> Result<()> {
    match cmd {
        DeviceCommand::Simulate(a) => simulate::run(a, client, device).await,
        DeviceCommand::SendD2cMessage(a) => send::run(a, client, device).await,
        DeviceCommand::C2dMessage(c) => {
            let id = identity::identity(client, device).await?;
            let reach = identity::Reach::resolve(client, device)?;
            let dial = client
                .server
                .clone()
                .or_else(|| reach.server.clone())
                .unwrap_or_else(|| format!("{}:{}", id.host, reach.https_port));
            let endpoint = crate::settings::Endpoint {
                host_name: id.host.clone(),
                key_name: String::new(),
                key: String::new(),
                dial,
                ca_cert: reach.ca.clone(),
                origin: "the device".into(),
            };
            let t = crate::transport::connect(&endpoint)?;
            let outcome = c2d::run(c, &t, &id, fleethub_core::time_util::now_unix()).await?;
            crate::emit(&outcome, client.output)
        }
    }
}
