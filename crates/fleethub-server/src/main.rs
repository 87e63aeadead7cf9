//! `fleethub`: the DPS + IoT hub server and its admin commands.

use anyhow::Result;
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use fleethub_server::logging::{self, LogFormat};
use fleethub_server::{app, config::Config, info::ServerInfo};
use fleethub_store::sqlite::Durability;
use std::path::PathBuf;

mod bench;

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
pub(crate) enum Output {
    #[default]
    Json,
    Table,
    Text,
    Yaml,
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
    /// AMQPS port (default 5671).
    #[arg(long)]
    amqp_port: Option<u16>,
    /// DPS host name (default: the one stored in the data directory; first start: localhost).
    #[arg(long)]
    dps_hostname: Option<String>,
    /// Hub host name (default: the one stored in the data directory; first start: localhost;
    /// the C SDK needs a dotted name).
    #[arg(long)]
    hub_hostname: Option<String>,
    /// Extra certificate SANs (repeatable; default: the ones stored in the data directory).
    #[arg(long = "san")]
    extra_sans: Vec<String>,
    /// Server certificate chain (PEM); with --tls-key replaces the development CA.
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// Server private key (PEM).
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// A CA certificate (PEM) that issues the server certificate instead of the development CA
    /// (with --ca-key): servers given one CA are all trusted by it.
    #[arg(long, conflicts_with = "tls_cert")]
    ca_cert: Option<PathBuf>,
    /// The private key (PEM) of --ca-cert.
    #[arg(long)]
    ca_key: Option<PathBuf>,
    /// Log filter, e.g. info or debug,fleethub_mqtt=trace.
    #[arg(long)]
    log: Option<String>,
    /// Log lines as text (default) or json (one object per line).
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
    /// What an acknowledged write survives: process (default: a killed process) or power
    /// (also a power loss; every commit is fsynced).
    #[arg(long)]
    durability: Option<Durability>,
    /// This node's id among the nodes sharing a store (unique; a duplicate refuses to start).
    #[arg(long)]
    node_id: Option<String>,
    /// NATS server of the cluster's node-to-node messages (nats://host:4222; needs --node-id).
    #[arg(long)]
    nats_url: Option<String>,
    /// Store backend: sqlite (default: the data directory) or postgres (with --store-url).
    #[arg(long)]
    store_backend: Option<fleethub_server::store_config::Backend>,
    /// PostgreSQL connection string of the store (postgres://user:password@host/db); implies
    /// --store-backend postgres unless a backend is given.
    #[arg(long)]
    store_url: Option<String>,
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
        set!(amqp_port);
        set!(log);
        set!(log_format);
        set!(durability);
        if let Some(url) = &self.store_url {
            cfg.store.url = Some(url.clone());
            if self.store_backend.is_none() {
                cfg.store.backend = fleethub_server::store_config::Backend::Postgres;
            }
        }
        if let Some(b) = self.store_backend {
            cfg.store.backend = b;
        }
        if self.node_id.is_some() {
            cfg.cluster.node_id.clone_from(&self.node_id);
        }
        if self.nats_url.is_some() {
            cfg.cluster.nats_url.clone_from(&self.nats_url);
        }
        if self.dps_hostname.is_some() {
            cfg.dps_hostname.clone_from(&self.dps_hostname);
        }
        if self.hub_hostname.is_some() {
            cfg.hub_hostname.clone_from(&self.hub_hostname);
        }
        if self.tls_cert.is_some() {
            cfg.tls_cert.clone_from(&self.tls_cert);
        }
        if self.tls_key.is_some() {
            cfg.tls_key.clone_from(&self.tls_key);
        }
        if self.ca_cert.is_some() {
            cfg.ca_cert.clone_from(&self.ca_cert);
        }
        if self.ca_key.is_some() {
            cfg.ca_key.clone_from(&self.ca_key);
        }
        if !self.extra_sans.is_empty() {
            cfg.extra_sans
                .get_or_insert_default()
                .extend(self.extra_sans.iter().cloned());
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

const SERVE_EXAMPLES: &str = "\
Examples:
  First start: the host names devices will use (kept in the data directory):
    fleethub serve --data-dir /var/lib/fleethub \\
        --dps-hostname dps.example.com --hub-hostname hub.example.com
  Later starts: the same names, CA, ID scope and service keys:
    fleethub serve --data-dir /var/lib/fleethub
  Move to another hub host name (re-issues the server certificate):
    fleethub serve --data-dir /var/lib/fleethub --hub-hostname hub2.example.com --change-hostnames
  Settings from a file (docs/configuration.md), JSON log lines:
    fleethub serve --config /etc/fleethub/fleethub.toml --log-format json
  Try it without root: other ports, and a demo device provisioned at start:
    fleethub serve --mqtt-port 18883 --https-port 8443 --demo";

const INFO_EXAMPLES: &str = "\
Examples:
  fleethub info --data-dir /var/lib/fleethub
  fleethub info --output json | jq -r .hubServiceConnectionString
  fleethub info -o yaml
  FLEETHUB_DATA_DIR=/var/lib/fleethub fleethub info --output json";

const BACKUP_EXAMPLES: &str = "\
Examples:
  fleethub backup --data-dir /var/lib/fleethub --out /root/fleethub-$(date +%F).db
  systemctl stop fleethub
  fleethub restore --data-dir /var/lib/fleethub --from /root/fleethub-2026-12-01.db
  systemctl start fleethub";

const COMPLETIONS_EXAMPLES: &str = "\
Examples:
  fleethub completions bash | sudo tee /etc/bash_completion.d/fleethub
  fleethub completions zsh > ~/.zfunc/_fleethub    # with fpath+=(~/.zfunc) in ~/.zshrc
  fleethub completions fish > ~/.config/fish/completions/fleethub.fish";

const LOGIN_EXAMPLES: &str = "\
Examples:
  On the server (as root): print the connection strings
    fleethub info --data-dir /var/lib/fleethub
  Anywhere, as an ordinary user: save them once (profile 'default'), then run commands
    fleethub login --hub-connection-string \"$HUB_CS\" --dps-connection-string \"$DPS_CS\" \\
        --ca-cert ca.pem
    fleethub hub device-identity list -o table
  A second server, picked with --profile or FLEETHUB_PROFILE
    fleethub login --profile lab --hub-connection-string \"$LAB_CS\" --server 10.0.0.5:8443
    fleethub hub device-identity list --profile lab
  fleethub login --list
  fleethub logout --profile lab";

#[derive(Subcommand)]
enum Command {
    /// Run the DPS + hub server.
    #[command(after_help = SERVE_EXAMPLES)]
    Serve {
        #[command(flatten)]
        args: ServeArgs,
        /// Create a demo enrollment and provision a demo device through the server at start.
        #[arg(long)]
        demo: bool,
        /// Accept host names (--dps-hostname, --hub-hostname, --san) other than the ones stored
        /// in the data directory: they replace the stored ones and the server certificate is
        /// re-issued. Devices must then use the new names.
        #[arg(long)]
        change_hostnames: bool,
        /// Print the service keys in the start-up banner even when stdout is not a terminal
        /// (by default they are printed on a terminal only: a service's stdout ends up in
        /// journald or log files; `fleethub info` shows them).
        #[arg(long)]
        show_keys: bool,
    },
    /// Print how to reach a server (ID scope, endpoints, CA, service connection strings).
    #[command(after_help = INFO_EXAMPLES)]
    Info {
        #[arg(long, env = "FLEETHUB_DATA_DIR", default_value = "./fleethub-data")]
        data_dir: PathBuf,
        #[arg(long, short = 'o', value_enum, default_value = "text")]
        output: Output,
    },
    /// Write a consistent, owner-only copy of the store (devices, keys, enrollments, twins,
    /// the server identity), also while the server runs.
    #[command(after_help = BACKUP_EXAMPLES)]
    Backup {
        #[arg(long, env = "FLEETHUB_DATA_DIR", default_value = "./fleethub-data")]
        data_dir: PathBuf,
        /// The backup file to create (must not exist yet).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Put a backup back as the store of a stopped server (the replaced store is kept).
    #[command(after_help = BACKUP_EXAMPLES)]
    Restore {
        #[arg(long, env = "FLEETHUB_DATA_DIR", default_value = "./fleethub-data")]
        data_dir: PathBuf,
        /// A file written by `fleethub backup`.
        #[arg(long = "from", value_name = "FILE")]
        from: PathBuf,
    },
    /// Configuration helpers.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    #[command(after_help = COMPLETIONS_EXAMPLES)]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Manage DPS enrollments, enrollment groups and registration records (like `az iot dps`).
    Dps {
        #[command(flatten)]
        client: fleethub_cli::ClientArgs,
        #[command(subcommand)]
        cmd: fleethub_cli::DpsCommand,
    },
    /// Manage IoT hub device and module identities, twins, direct methods, cloud-to-device
    /// messages and telemetry (like `az iot hub`).
    Hub {
        #[command(flatten)]
        client: fleethub_cli::ClientArgs,
        #[command(subcommand)]
        cmd: fleethub_cli::HubCommand,
    },
    /// IoT Edge deployments at scale and per-device modules (like `az iot edge`).
    Edge {
        #[command(flatten)]
        client: fleethub_cli::ClientArgs,
        #[command(subcommand)]
        cmd: fleethub_cli::EdgeCommand,
    },
    /// Device-side tools (like `az iot device`): simulate a device, send device-to-cloud
    /// messages, receive and settle cloud-to-device messages.
    Device {
        #[command(flatten)]
        client: fleethub_cli::ClientArgs,
        #[command(flatten)]
        device: fleethub_cli::DeviceArgs,
        #[command(subcommand)]
        cmd: fleethub_cli::DeviceCommand,
    },
    /// Save a connection (a profile in ~/.config/fleethub/profiles.toml, owner-only) for the
    /// admin commands, or list the saved ones (--list; keys masked).
    #[command(after_help = LOGIN_EXAMPLES)]
    Login(fleethub_cli::LoginArgs),
    /// Delete a saved connection (profile).
    Logout(fleethub_cli::LogoutArgs),
    /// Import enrollments, enrollment groups and devices exported from Azure (`az iot ...`).
    Import {
        #[command(flatten)]
        client: fleethub_cli::ClientArgs,
        #[command(subcommand)]
        cmd: fleethub_cli::ImportCommand,
    },
    /// Load tools that measure a running server.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Server diagnostics (e.g. why devices were refused).
    Diagnostics {
        #[command(flatten)]
        client: fleethub_cli::ClientArgs,
        #[command(subcommand)]
        cmd: fleethub_cli::DiagnosticsCommand,
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
        Command::Serve {
            args,
            demo,
            change_hostnames,
            show_keys,
        } => {
            let cfg = args.config()?;
            logging::init(&cfg.log, cfg.log_format);
            let opts = app::StartOptions {
                demo,
                change_hostnames,
                show_keys,
            };
            let server = app::build(cfg, opts).await?;
            app::run(server).await
        }
        Command::Info { data_dir, output } => {
            let info = ServerInfo::read(&data_dir)?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&info)?),
                Output::Yaml => print!("{}", fleethub_cli::to_yaml(&serde_json::to_value(&info)?)),
                Output::Text | Output::Table => print!("{}", info.banner()),
            }
            Ok(())
        }
        Command::Backup { data_dir, out } => {
            let (size, id_scope) = fleethub_server::backup::backup(&data_dir, &out).await?;
            eprintln!(
                "wrote {} ({size} bytes, owner-only; ID scope {id_scope}); keep it as private as the data directory",
                out.display()
            );
            Ok(())
        }
        Command::Restore { data_dir, from } => {
            let now = fleethub_core::time_util::now_unix();
            let r = fleethub_server::backup::restore(&data_dir, &from, now).await?;
            eprintln!(
                "restored {} into {} (ID scope {}){}",
                from.display(),
                data_dir.display(),
                r.id_scope,
                r.previous
                    .map(|p| format!("; the replaced store is kept as {}", p.display()))
                    .unwrap_or_default()
            );
            Ok(())
        }
        Command::Bench(cmd) => bench::run(cmd).await,
        Command::Import { client, cmd } => fleethub_cli::run_import(cmd, &client).await,
        Command::Login(args) => fleethub_cli::run_login(&args),
        Command::Logout(args) => fleethub_cli::run_logout(&args),
        Command::Dps { client, cmd } => fleethub_cli::run_dps(cmd, &client).await,
        Command::Hub { client, cmd } => fleethub_cli::run_hub(cmd, &client).await,
        Command::Edge { client, cmd } => fleethub_cli::run_edge(cmd, &client).await,
        Command::Device {
            client,
            device,
            cmd,
        } => fleethub_cli::run_device(cmd, &client, &device).await,
        Command::Diagnostics { client, cmd } => fleethub_cli::run_diagnostics(cmd, &client).await,
        Command::Config(ConfigCommand::Show { args }) => {
            print!("{}", toml::to_string_pretty(&args.config()?)?);
            Ok(())
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "fleethub",
                &mut std::io::stdout(),
            );
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
