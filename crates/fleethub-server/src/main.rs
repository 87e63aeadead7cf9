//! `fleethub`: the DPS + IoT hub server and its admin commands.

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use fleethub_server::{app, config::Config, info::ServerInfo};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "fleethub",
    version,
    about = "Self-hosted device provisioning service and IoT hub"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum, Default)]
enum Output {
    #[default]
    Json,
    Table,
    Text,
}

/// Server settings that flags can override (see docs/configuration.md).
#[derive(clap::Args, Clone, Default)]
struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, env = "FLEETHUB_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (store, certificates, server-info.json). Default ./fleethub-data.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address to bind (default 0.0.0.0).
    #[arg(long)]
    bind: Option<String>,
    /// MQTT/TLS port (default 8883).
    #[arg(long)]
    mqtt_port: Option<u16>,
    /// HTTPS + MQTT/WebSocket port (default 443).
    #[arg(long)]
    https_port: Option<u16>,
    /// DPS host name (default localhost).
    #[arg(long)]
    dps_hostname: Option<String>,
    /// Hub host name (default localhost; the C SDK needs a dotted name).
    #[arg(long)]
    hub_hostname: Option<String>,
    /// Extra certificate SANs (repeatable).
    #[arg(long = "san")]
    extra_sans: Vec<String>,
    /// Server certificate chain (PEM); with --tls-key replaces the development CA.
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// Server private key (PEM).
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// Log filter, e.g. info or debug,fleethub_mqtt=trace.
    #[arg(long)]
    log: Option<String>,
}

impl ServeArgs {
    fn config(&self) -> Result<Config> {
        let mut cfg = match &self.config {
            Some(p) => Config::from_file(p)?,
            None => Config::default(),
        };
        cfg.apply_env(|k| std::env::var(k).ok())?;
        macro_rules! set {
            ($f:ident) => {
                if let Some(v) = &self.$f {
                    cfg.$f = v.clone();
                }
            };
        }
        set!(data_dir);
        set!(bind);
        set!(mqtt_port);
        set!(https_port);
        set!(dps_hostname);
        set!(hub_hostname);
        set!(log);
        if self.tls_cert.is_some() {
            cfg.tls_cert = self.tls_cert.clone();
        }
        if self.tls_key.is_some() {
            cfg.tls_key = self.tls_key.clone();
        }
        cfg.extra_sans.extend(self.extra_sans.iter().cloned());
        cfg.validate()?;
        Ok(cfg)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the DPS + hub server.
    Serve {
        #[command(flatten)]
        args: ServeArgs,
        /// Create a demo enrollment and provision a demo device through the server at start.
        #[arg(long)]
        demo: bool,
    },
    /// Print how to reach a server (ID scope, endpoints, CA, service connection strings).
    Info {
        #[arg(long, env = "FLEETHUB_DATA_DIR", default_value = "./fleethub-data")]
        data_dir: PathBuf,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
    /// Configuration helpers.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Manage DPS enrollments, enrollment groups and registration records (like `az iot dps`).
    Dps {
        #[command(flatten)]
        client: fleethub_cli::ClientArgs,
        #[command(subcommand)]
        cmd: fleethub_cli::DpsCommand,
    },
    /// Load tools that measure a running server.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Server diagnostics (e.g. why devices were refused).
    Diagnostics {
        #[command(flatten)]
        client: fleethub_cli::ClientArgs,
        #[command(subcommand)]
        cmd: fleethub_cli::DiagnosticsCommand,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Provision N new devices (group-derived keys, a full TLS handshake each) and, as the
    /// baseline on the same listener, N bare TLS handshakes; reports both rates and the ratio.
    Register {
        /// Devices to provision.
        #[arg(long, default_value_t = 1000)]
        count: usize,
        /// Registrations in flight at once.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// mqtt (port 8883) or https (port 443).
        #[arg(long, default_value = "mqtt")]
        transport: fleethub_bench::Transport,
        /// Bare TLS handshakes for the baseline (default: --count).
        #[arg(long, default_value_t = 0)]
        handshakes: usize,
        /// Data directory of the server under test (its server-info.json names the endpoints).
        #[arg(long, env = "FLEETHUB_DATA_DIR", default_value = "./fleethub-data")]
        data_dir: PathBuf,
        /// DPS host to dial (default: dpsHost of server-info.json; must be in the certificate).
        #[arg(long)]
        dps_host: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        output: Output,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration (file <- env <- flags) as TOML.
    Show {
        #[command(flatten)]
        args: ServeArgs,
    },
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

#[tokio::main]
async fn main() {
    if let Err(e) = real_main().await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn real_main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { args, demo } => {
            let cfg = args.config()?;
            init_logging(&cfg.log);
            let server = app::build(cfg).await?;
            app::run(server, demo).await
        }
        Command::Info { data_dir, output } => {
            let info = ServerInfo::read(&data_dir)?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&info)?),
                Output::Text | Output::Table => print!("{}", info.banner()),
            }
            Ok(())
        }
        Command::Bench(BenchCommand::Register {
            count,
            concurrency,
            transport,
            handshakes,
            data_dir,
            dps_host,
            output,
        }) => {
            let info = ServerInfo::read(&data_dir)?;
            let port = match transport {
                fleethub_bench::Transport::Mqtt => info.mqtt_port,
                fleethub_bench::Transport::Https => info.https_port,
            };
            let opts = fleethub_bench::RegisterBenchOptions {
                count,
                concurrency,
                transport,
                dps_host: dps_host.unwrap_or(info.dps_host.clone()),
                port,
                id_scope: info.id_scope.clone(),
                ca_pem_path: PathBuf::from(&info.ca_cert_path),
                dps_service_connection_string: info.dps_service_connection_string.clone(),
                service_port: info.https_port,
                handshake_count: handshakes,
            };
            let report = fleethub_bench::run_register_bench(opts).await?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
                Output::Text | Output::Table => println!("{report}"),
            }
            Ok(())
        }
        Command::Dps { client, cmd } => fleethub_cli::run_dps(cmd, &client).await,
        Command::Diagnostics { client, cmd } => fleethub_cli::run_diagnostics(cmd, &client).await,
        Command::Config(ConfigCommand::Show { args }) => {
            print!("{}", toml::to_string_pretty(&args.config()?)?);
            Ok(())
        }
    }
}
