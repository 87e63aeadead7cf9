//! `fleethub`: the DPS + IoT hub server and its admin commands.

use anyhow::Result;
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use fleethub_server::logging::{self, LogFormat};
use fleethub_server::{app, config::Config, info::ServerInfo};
use fleethub_store::sqlite::Durability;
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
        #[arg(long, short = 'o', value_enum, default_value = "text")]
        output: Output,
    },
    /// QoS 1 telemetry throughput (publish -> PUBACK) or, with --connect-only, idle
    /// connections held, against fleethub (devices created through the hub service API) or
    /// mosquitto (the peer baseline); reports rate, latency, server RSS and CPU.
    Telemetry {
        /// Devices (one MQTT/TLS connection each).
        #[arg(long, default_value_t = 1000)]
        devices: usize,
        /// Aggregate messages per second.
        #[arg(long, conflicts_with = "max")]
        rate: Option<f64>,
        /// As fast as PUBACKs come back (each device keeps --inflight publishes in flight).
        #[arg(long)]
        max: bool,
        /// QoS 1 publishes in flight per device (1..=64).
        #[arg(long, default_value_t = 1)]
        inflight: usize,
        #[arg(long, default_value_t = 200)]
        payload_bytes: usize,
        /// Measurement window, seconds.
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// Publishing before the window (not counted), seconds.
        #[arg(long, default_value_t = 2)]
        warmup: u64,
        /// Hold idle connections (keep-alive pings only) for --duration.
        #[arg(long)]
        connect_only: bool,
        /// Worker processes the devices are spread over (at most 19,000 each: open-files limit).
        #[arg(long, default_value_t = 1)]
        processes: usize,
        /// Connections being set up at once, per worker process.
        #[arg(long, default_value_t = 32)]
        connect_concurrency: usize,
        /// MQTT keep-alive, seconds.
        #[arg(long, default_value_t = 60)]
        keep_alive: u64,
        /// Hard bound on messages published (default: from the rate, or 1 M/s of run time).
        #[arg(long, default_value_t = 0)]
        max_messages: u64,
        /// fleethub or mosquitto.
        #[arg(long, default_value = "fleethub")]
        target: fleethub_bench::Target,
        /// TLS server name (default: hubHost of server-info.json; mosquitto: localhost).
        #[arg(long)]
        host: Option<String>,
        /// Address dialled instead of --host (default for fleethub: 127.0.0.1).
        #[arg(long)]
        dial: Option<String>,
        /// MQTT/TLS port (default: mqttPort of server-info.json; mosquitto: 8883).
        #[arg(long)]
        port: Option<u16>,
        /// CA certificate (PEM) (default: caCertPath of server-info.json).
        #[arg(long)]
        tls_ca: Option<PathBuf>,
        /// Data directory of the fleethub server under test.
        #[arg(long, env = "FLEETHUB_DATA_DIR", default_value = "./fleethub-data")]
        data_dir: PathBuf,
        /// Server process to sample (default: found via /proc).
        #[arg(long)]
        server_pid: Option<u32>,
        /// Leave the bench devices in the registry.
        #[arg(long)]
        keep_devices: bool,
        #[arg(long, short = 'o', value_enum, default_value = "text")]
        output: Output,
        /// Internal: run as a worker process (spec on stdin).
        #[arg(long, hide = true)]
        worker: bool,
    },
    /// Drive the server past its device-to-cloud throttle (over- and under-quota devices
    /// together); reports the served rate against the limits, the under-quota devices'
    /// latency and errors, and the server's RSS over the window.
    Saturate(fleethub_server::bench_saturate::SaturateArgs),
    /// Read a stored backlog with one Event Hubs-style AMQP consumer against the REST read of
    /// the same log, then the PUBACK -> live consumer latency (p50, p99).
    Consume(fleethub_server::bench_consume::ConsumeArgs),
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
        Command::Bench(cmd) => run_bench(cmd).await,
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

async fn run_bench(cmd: BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Register {
            count,
            concurrency,
            transport,
            handshakes,
            data_dir,
            dps_host,
            output,
        } => {
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
                Output::Yaml => {
                    print!("{}", fleethub_cli::to_yaml(&serde_json::to_value(&report)?));
                }
                Output::Text | Output::Table => println!("{report}"),
            }
            Ok(())
        }
        BenchCommand::Consume(args) => fleethub_server::bench_consume::run(args).await,
        BenchCommand::Saturate(args) => {
            let worker = ["bench", "telemetry", "--worker"]
                .map(String::from)
                .to_vec();
            fleethub_server::bench_saturate::run(args, worker).await
        }
        BenchCommand::Telemetry { worker: true, .. } => {
            fleethub_bench::telemetry::worker_stdio_main().await
        }
        BenchCommand::Telemetry {
            devices,
            rate,
            max,
            inflight,
            payload_bytes,
            duration,
            warmup,
            connect_only,
            processes,
            connect_concurrency,
            keep_alive,
            max_messages,
            target,
            host,
            dial,
            port,
            tls_ca,
            data_dir,
            server_pid,
            keep_devices,
            output,
            worker: false,
        } => {
            use fleethub_bench::Target;
            anyhow::ensure!(
                connect_only || max || rate.is_some(),
                "pass --rate R, --max or --connect-only"
            );
            let mut opts = fleethub_bench::TelemetryBenchOptions {
                target,
                devices,
                rate: if max { None } else { rate },
                inflight,
                payload_bytes,
                duration: std::time::Duration::from_secs(duration),
                warmup: std::time::Duration::from_secs(warmup),
                connect_only,
                processes,
                connect_concurrency,
                keep_alive: std::time::Duration::from_secs(keep_alive),
                max_messages,
                keep_devices,
                launcher: fleethub_bench::Launcher::Exec {
                    program: std::env::current_exe()?,
                    args: vec!["bench".into(), "telemetry".into(), "--worker".into()],
                },
                ..Default::default()
            };
            match target {
                Target::Fleethub => {
                    let info = ServerInfo::read(&data_dir)?;
                    opts.host = host.unwrap_or(info.hub_host.clone());
                    opts.dial = Some(dial.unwrap_or_else(|| "127.0.0.1".into()));
                    opts.port = port.unwrap_or(info.mqtt_port);
                    opts.https_port = info.https_port;
                    opts.ca_pem_path = tls_ca.unwrap_or(PathBuf::from(&info.ca_cert_path));
                    opts.hub_service_connection_string =
                        Some(info.hub_service_connection_string.clone());
                }
                Target::Mosquitto => {
                    opts.host = host.unwrap_or_else(|| "localhost".into());
                    opts.dial = dial;
                    opts.port = port.unwrap_or(8883);
                    opts.ca_pem_path = tls_ca.ok_or_else(|| {
                        anyhow::anyhow!("--tls-ca is required with --target mosquitto")
                    })?;
                }
            }
            opts.server_pid = server_pid.or_else(|| {
                fleethub_bench::telemetry::find_server_pid(target, Some(&data_dir), opts.port)
            });
            let report = fleethub_bench::run_telemetry_bench(opts).await?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
                Output::Yaml => {
                    print!("{}", fleethub_cli::to_yaml(&serde_json::to_value(&report)?));
                }
                Output::Text | Output::Table => println!("{report}"),
            }
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
