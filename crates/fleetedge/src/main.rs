use clap::Parser;

#[tokio::main]
async fn main() {
    let cli = fleetedge::cli::Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("FLEETEDGE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let verbose = matches!(cli.command, fleetedge::cli::Cmd::Run);
    tracing_subscriber::fmt()
        .with_env_filter(if verbose {
            filter
        } else {
            tracing_subscriber::EnvFilter::new("warn")
        })
        .with_writer(std::io::stderr)
        .init();
    std::process::exit(fleetedge::cli::main(cli).await);
}
