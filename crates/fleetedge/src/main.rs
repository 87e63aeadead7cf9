use std::io::IsTerminal;

use clap::Parser;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[tokio::main]
async fn main() {
    let cli = fleetedge::cli::Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("FLEETEDGE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let verbose = matches!(cli.command, fleetedge::cli::Cmd::Run);
    // Colour codes only on a terminal (not in journald or redirected files).
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_filter(if verbose {
            filter
        } else {
            tracing_subscriber::EnvFilter::new("warn")
        });
    let registry = tracing_subscriber::registry().with(stderr);
    if verbose {
        // the daemon also keeps its lines in <homedir>/logs (`fleetedge logs edgeAgent|edgeHub`)
        registry.with(fleetedge::daemon_log::layers()).init();
    } else {
        registry.init();
    }
    std::process::exit(fleetedge::cli::main(cli).await);
}
