//! The admin commands mounted the way the `fleethub` binary mounts them, for trying them
//! without the server binary: `cargo run -p fleethub-cli --example admin -- dps enrollment list`.

use clap::{Parser, Subcommand};
use fleethub_cli::{ClientArgs, DiagnosticsCommand, DpsCommand, HubCommand};

#[derive(Parser)]
#[command(name = "fleethub")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Manage DPS enrollments, enrollment groups and registration records.
    Dps {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        cmd: DpsCommand,
    },
    /// Manage IoT hub devices, modules, twins, methods, messages and telemetry.
    Hub {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        cmd: HubCommand,
    },
    /// Server diagnostics.
    Diagnostics {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        cmd: DiagnosticsCommand,
    },
}

#[tokio::main]
async fn main() {
    let result = match Cli::parse().command {
        Command::Dps { client, cmd } => fleethub_cli::run_dps(cmd, &client).await,
        Command::Hub { client, cmd } => fleethub_cli::run_hub(cmd, &client).await,
        Command::Diagnostics { client, cmd } => fleethub_cli::run_diagnostics(cmd, &client).await,
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
