//! `fleethub bench saturate`: the command line of [`fleethub_bench::run_saturate_bench`]
//! against the server of a data directory.

use crate::info::ServerInfo;
use anyhow::Result;
use std::path::PathBuf;
use std::time::Duration;

/// Drive the server past its device-to-cloud throttle: over-quota devices publish as fast as
/// PUBACKs come, under-quota devices at a steady rate; reports the served rate against the
/// limits, the under-quota devices' latency and errors, and the server's RSS over the window.
#[derive(clap::Args)]
pub struct SaturateArgs {
    /// Devices publishing as fast as PUBACKs come back (each keeps --inflight in flight).
    #[arg(long, default_value_t = 50)]
    over_devices: usize,
    /// QoS 1 publishes in flight per over-quota device (1..=64).
    #[arg(long, default_value_t = 8)]
    inflight: usize,
    /// Devices publishing at --under-rate each (below their quota).
    #[arg(long, default_value_t = 50)]
    under_devices: usize,
    /// Messages per second of each under-quota device.
    #[arg(long, default_value_t = 5.0)]
    under_rate: f64,
    /// The server's `throttle.device_to_cloud.per_device` (for the report).
    #[arg(long)]
    per_device_limit: Option<f64>,
    /// The server's `throttle.device_to_cloud.global` (for the report).
    #[arg(long)]
    global_limit: Option<f64>,
    #[arg(long, default_value_t = 200)]
    payload_bytes: usize,
    /// Measurement window, seconds.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Publishing before the window (not counted), seconds.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Worker processes the over-quota devices are spread over.
    #[arg(long, default_value_t = 1)]
    processes: usize,
    /// Data directory of the server under test (its server-info.json names the endpoints).
    #[arg(long, env = "FLEETHUB_DATA_DIR", default_value = "./fleethub-data")]
    data_dir: PathBuf,
    /// Server process to sample (default: found via /proc).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs the saturation benchmark; worker processes re-run this binary with `worker_args`.
pub async fn run(args: SaturateArgs, worker_args: Vec<String>) -> Result<()> {
    let info = ServerInfo::read(&args.data_dir)?;
    let base = fleethub_bench::TelemetryBenchOptions {
        inflight: args.inflight,
        payload_bytes: args.payload_bytes,
        duration: Duration::from_secs(args.duration),
        warmup: Duration::from_secs(args.warmup),
        processes: args.processes,
        host: info.hub_host.clone(),
        dial: Some("127.0.0.1".into()),
        port: info.mqtt_port,
        https_port: info.https_port,
        ca_pem_path: PathBuf::from(&info.ca_cert_path),
        hub_service_connection_string: Some(info.hub_service_connection_string.clone()),
        server_pid: args.server_pid.or_else(|| {
            fleethub_bench::telemetry::find_server_pid(
                fleethub_bench::Target::Fleethub,
                Some(&args.data_dir),
                info.mqtt_port,
            )
        }),
        launcher: fleethub_bench::Launcher::Exec {
            program: std::env::current_exe()?,
            args: worker_args,
        },
        ..Default::default()
    };
    let report = fleethub_bench::run_saturate_bench(fleethub_bench::SaturateOptions {
        base,
        over_devices: args.over_devices,
        under_devices: args.under_devices,
        under_rate: args.under_rate,
        per_device_limit: args.per_device_limit,
        global_limit: args.global_limit,
    })
    .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report}");
    }
    Ok(())
}
