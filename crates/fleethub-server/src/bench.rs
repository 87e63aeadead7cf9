//! `fleethub bench ...`: the load tools of `fleethub-bench`, wired to the command line.

use crate::Output;
use anyhow::Result;
use clap::Subcommand;
use fleethub_server::info::ServerInfo;
use std::path::PathBuf;

#[derive(Subcommand)]
pub(crate) enum BenchCommand {
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
        /// MQTT/TLS port (default: mqttPort of server-info.json, amqpPort with --transport
        /// amqp; mosquitto: 8883).
        #[arg(long)]
        port: Option<u16>,
        /// The devices' protocol: mqtt, or amqp (fleethub: `$cbs` put-token and a sender on
        /// /devices/{id}/messages/events, acknowledged by the disposition).
        #[arg(long, default_value = "mqtt")]
        transport: fleethub_bench::telemetry::DeviceTransport,
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
    /// Read a stored backlog as one Event Hubs-style consumer over AMQP (against the server's
    /// REST read of the same events), then the latency from a device's PUBACK to a live
    /// consumer.
    Consume(fleethub_server::bench_consume::ConsumeArgs),
}

pub(crate) async fn run(cmd: BenchCommand) -> Result<()> {
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
                progress: fleethub_bench::ProgressMode::detect(),
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
            transport,
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
                progress: fleethub_bench::ProgressMode::detect(),
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
                    opts.transport = transport;
                    opts.port = port.unwrap_or(match transport {
                        fleethub_bench::telemetry::DeviceTransport::Mqtt => info.mqtt_port,
                        fleethub_bench::telemetry::DeviceTransport::Amqp => info.amqp_port,
                    });
                    opts.https_port = info.https_port;
                    opts.ca_pem_path = tls_ca.unwrap_or(PathBuf::from(&info.ca_cert_path));
                    opts.hub_service_connection_string =
                        Some(info.hub_service_connection_string.clone());
                }
                Target::Mosquitto => {
                    opts.transport = transport;
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
