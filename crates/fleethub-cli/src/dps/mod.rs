//! `fleethub dps ...`: the DPS service REST API, `az iot dps` style.

mod enrollment;
mod fields;
mod group;
mod linked_hub;
mod registration;
mod settings;
mod simulate;

pub use enrollment::EnrollmentCommand;
pub use fields::{EnrollmentFields, ProvisioningStatus};
pub use group::GroupCommand;
pub use linked_hub::LinkedHubCommand;
pub use registration::RegistrationCommand;
pub use settings::SettingsCommand;
pub use simulate::SimulateArgs;

use crate::args::ClientArgs;
use crate::client::{ServiceClient, Transport};
use crate::output::Outcome;
use crate::settings::{Endpoint, Service};
use anyhow::Result;

#[derive(clap::Subcommand, Debug, Clone, PartialEq)]
pub enum DpsCommand {
    /// Individual enrollments (one device each).
    #[command(subcommand)]
    Enrollment(EnrollmentCommand),
    /// Enrollment groups (many devices sharing a group key).
    #[command(subcommand)]
    EnrollmentGroup(GroupCommand),
    /// Device registration records.
    #[command(subcommand)]
    Registration(RegistrationCommand),
    /// The hubs the DPS may assign devices to (the server's own hub is linked by default).
    #[command(subcommand)]
    LinkedHub(LinkedHubCommand),
    /// The instance's settings: its allocation policy for enrollments that name none.
    #[command(subcommand)]
    Settings(SettingsCommand),
    /// Dry run of a registration: which enrollment would match, whether the key is right,
    /// which hub, device ID and initial twin. Nothing is created.
    #[command(after_help = SIMULATE_EXAMPLES)]
    Simulate(SimulateArgs),
}

const SIMULATE_EXAMPLES: &str = "\
Examples:
  fleethub dps simulate --registration-id dev-01
  fleethub dps simulate --registration-id sensor-7 --key \"$DEVICE_KEY\" -o table
  FLEETHUB_DEVICE_KEY=$(fleethub dps enrollment-group compute-device-key --group-id line-3 \\
      --registration-id sensor-7) fleethub dps simulate --registration-id sensor-7";

/// Runs a `dps` subcommand: result on stdout, notes on stderr.
pub async fn run_dps(cmd: DpsCommand, client: &ClientArgs) -> Result<()> {
    // Offline: no connection settings needed.
    if let DpsCommand::EnrollmentGroup(GroupCommand::ComputeDeviceKey {
        key: Some(key),
        registration_id,
        ..
    }) = &cmd
    {
        let outcome = Outcome::Text(group::compute_device_key(key, registration_id)?);
        return crate::emit(&outcome, client.output);
    }
    let endpoint = Endpoint::resolve(client, Service::Dps)?;
    let service = ServiceClient::new(crate::transport::connect(&endpoint)?, endpoint);
    let outcome = dispatch(cmd, &service).await?;
    crate::emit(&outcome, client.output)
}

pub(crate) async fn dispatch<T: Transport>(
    cmd: DpsCommand,
    client: &ServiceClient<T>,
) -> Result<Outcome> {
    match cmd {
        DpsCommand::Enrollment(c) => enrollment::run(c, client).await,
        DpsCommand::EnrollmentGroup(c) => group::run(c, client).await,
        DpsCommand::Registration(c) => registration::run(c, client).await,
        DpsCommand::LinkedHub(c) => linked_hub::run(c, client).await,
        DpsCommand::Settings(c) => settings::run(c, client).await,
        DpsCommand::Simulate(a) => simulate::run(a, client).await,
    }
}

pub(crate) use fields::{child, parse_json_object, update_etag};
#[cfg(test)]
pub(crate) use group::compute_device_key;
