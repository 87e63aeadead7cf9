//! Admin subcommands of the `fleethub` binary, modelled on `az iot dps` and `az iot hub`: a
//! client of the DPS service REST API (docs/protocol-notes.md, "Service REST API and api-versions"), of the IoT hub service REST
//! API (devices, modules, twins, direct methods, cloud-to-device messages, telemetry) and of
//! `GET /diagnostics/authFailures`.
//!
//! Behaviour for scripts: results go to stdout (pretty JSON by default, `--output table` for
//! people); progress notes and errors go to stderr; every failure is an `Err` (exit non-zero).
//!
//! Mounting (in the binary):
//! ```text
//! #[derive(clap::Subcommand)]
//! enum Command {
//!     /// Manage DPS enrollments, enrollment groups and registration records.
//!     Dps {
//!         #[command(flatten)]
//!         client: fleethub_cli::ClientArgs,
//!         #[command(subcommand)]
//!         cmd: fleethub_cli::DpsCommand,
//!     },
//!     /// Manage IoT hub devices, modules, twins, methods, messages and telemetry.
//!     Hub {
//!         #[command(flatten)]
//!         client: fleethub_cli::ClientArgs,
//!         #[command(subcommand)]
//!         cmd: fleethub_cli::HubCommand,
//!     },
//!     /// Server diagnostics.
//!     Diagnostics {
//!         #[command(flatten)]
//!         client: fleethub_cli::ClientArgs,
//!         #[command(subcommand)]
//!         cmd: fleethub_cli::DiagnosticsCommand,
//!     },
//! }
//! // Command::Dps { client, cmd } => fleethub_cli::run_dps(cmd, &client).await,
//! // Command::Hub { client, cmd } => fleethub_cli::run_hub(cmd, &client).await,
//! // Command::Diagnostics { client, cmd } => fleethub_cli::run_diagnostics(cmd, &client).await,
//! ```

mod args;
mod client;
pub(crate) mod device;
mod diagnostics;
mod dps;
mod edge;
mod errors;
mod hub;
mod output;
mod settings;
mod transport;
mod yaml;

pub use args::ClientArgs;
pub use device::{
    DeviceArgs, DeviceC2dCommand, DeviceCommand, SendArgs, SimulateDeviceArgs, run_device,
};
pub use diagnostics::{DiagnosticsCommand, run_diagnostics};
pub use dps::{
    DpsCommand, EnrollmentCommand, EnrollmentFields, GroupCommand, ProvisioningStatus,
    RegistrationCommand, SimulateArgs, run_dps,
};
pub use edge::{DeploymentCommand, EdgeCommand, run_edge};
pub use hub::{
    Ack, C2dCommand, ConnectionStringCommand, ConsumerGroupCommand, DeviceIdentityCommand,
    DeviceStatus, DeviceTwinCommand, HubCommand, KeyType, MethodArgs, ModuleIdentityCommand,
    MonitorArgs, QueryArgs, SasArgs, run_hub,
};
pub use output::OutputFormat;
pub use settings::{Endpoint, SERVER_INFO_FILE, Service};
pub use yaml::to_yaml;

/// Prints a result: the rendering to stdout, a note to stderr. A closed stdout (`| head`) is
/// not an error.
pub(crate) fn emit(outcome: &output::Outcome, format: OutputFormat) -> anyhow::Result<()> {
    use std::io::Write;
    if let Some(note) = outcome.note() {
        eprintln!("{note}");
    }
    let text = outcome.render(format);
    if text.is_empty() {
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::anyhow!("cannot write to stdout: {e}"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
