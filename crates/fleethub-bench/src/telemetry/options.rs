//! Settings of the telemetry benchmark and their validation.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::DeviceTransport;

#[cfg(doc)]
use super::run_telemetry_bench;
#[cfg(doc)]
use super::worker_stdio_main;

/// Largest per-device window accepted.
pub const MAX_INFLIGHT: usize = 64;

/// The broker under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Fleethub,
    Mosquitto,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Target::Fleethub => "fleethub",
            Target::Mosquitto => "mosquitto",
        })
    }
}

impl FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "fleethub" => Ok(Target::Fleethub),
            "mosquitto" => Ok(Target::Mosquitto),
            other => Err(format!(
                "unknown target '{other}': use fleethub or mosquitto"
            )),
        }
    }
}

/// How the workers run.
#[derive(Debug, Clone, PartialEq)]
pub enum Launcher {
    /// Tasks in this process (tests; `processes` is then only a split of the devices).
    InProcess,
    /// `program args...` per worker, speaking [`worker_stdio_main`]'s protocol.
    Exec { program: PathBuf, args: Vec<String> },
}

/// Settings of [`run_telemetry_bench`].
#[derive(Debug, Clone)]
pub struct TelemetryBenchOptions {
    pub target: Target,
    pub devices: usize,
    /// Aggregate messages per second; `None`: as fast as possible (`--max`).
    pub rate: Option<f64>,
    /// QoS 1 publishes in flight per device (1..=[`MAX_INFLIGHT`]).
    pub inflight: usize,
    pub payload_bytes: usize,
    /// Measurement window.
    pub duration: Duration,
    /// Publishing before the window (not counted).
    pub warmup: Duration,
    /// Hold idle connections instead of publishing.
    pub connect_only: bool,
    pub processes: usize,
    /// Connections being set up at once, per worker.
    pub connect_concurrency: usize,
    /// Bound on each worker's connect phase.
    pub connect_timeout: Duration,
    pub keep_alive: Duration,
    /// Hard bound on messages published (0: derived from the rate or 1 M/s of run time).
    pub max_messages: u64,
    /// TLS server name (and hub host of the SAS tokens for fleethub).
    pub host: String,
    /// Address dialled instead of `host` (e.g. 127.0.0.1).
    pub dial: Option<String>,
    /// MQTT/TLS port, or the AMQPS port with [`DeviceTransport::Amqp`].
    pub port: u16,
    /// The devices' protocol (fleethub only for AMQP).
    pub transport: DeviceTransport,
    pub ca_pem_path: PathBuf,
    /// fleethub: `HostName=...;SharedAccessKeyName=...;SharedAccessKey=...` of the hub.
    pub hub_service_connection_string: Option<String>,
    /// fleethub: HTTPS port of the hub service API.
    pub https_port: u16,
    /// Process whose CPU and RSS are sampled.
    pub server_pid: Option<u32>,
    /// fleethub: leave the bench devices in the registry.
    pub keep_devices: bool,
    pub launcher: Launcher,
    /// Progress of the measurement window on stderr (default: none).
    pub progress: crate::ProgressMode,
}

impl Default for TelemetryBenchOptions {
    fn default() -> Self {
        TelemetryBenchOptions {
            target: Target::Fleethub,
            devices: 100,
            rate: None,
            inflight: 1,
            payload_bytes: 200,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            connect_only: false,
            processes: 1,
            connect_concurrency: 32,
            connect_timeout: Duration::from_mins(5),
            keep_alive: Duration::from_mins(1),
            max_messages: 0,
            host: "localhost".into(),
            dial: None,
            port: 8883,
            transport: DeviceTransport::Mqtt,
            ca_pem_path: PathBuf::new(),
            hub_service_connection_string: None,
            https_port: 443,
            server_pid: None,
            keep_devices: false,
            launcher: Launcher::InProcess,
            progress: crate::ProgressMode::Hidden,
        }
    }
}

/// Splits `n` into `parts` contiguous ranges whose sizes differ by at most one.
pub(super) fn split(n: usize, parts: usize) -> Vec<std::ops::Range<usize>> {
    let parts = parts.clamp(1, n.max(1));
    (0..parts)
        .map(|p| (n * p / parts)..(n * (p + 1) / parts))
        .collect()
}

pub(super) fn validate(opts: &TelemetryBenchOptions) -> anyhow::Result<()> {
    anyhow::ensure!(opts.devices >= 1, "devices must be at least 1");
    anyhow::ensure!(
        (1..=MAX_INFLIGHT).contains(&opts.inflight),
        "inflight must be 1..={MAX_INFLIGHT}"
    );
    anyhow::ensure!(opts.processes >= 1, "processes must be at least 1");
    anyhow::ensure!(
        opts.processes <= opts.devices,
        "more processes than devices"
    );
    anyhow::ensure!(
        opts.devices.div_ceil(opts.processes) <= 19_000,
        "at most 19,000 connections per worker process (the 20,000 open-files limit): use --processes {}",
        opts.devices.div_ceil(19_000)
    );
    anyhow::ensure!(
        !opts.duration.is_zero() && opts.duration <= Duration::from_hours(1),
        "duration must be 1 s..1 h"
    );
    anyhow::ensure!(
        opts.warmup <= Duration::from_mins(10),
        "warmup must be at most 600 s"
    );
    if let Some(r) = opts.rate {
        anyhow::ensure!(r > 0.0 && r.is_finite(), "rate must be positive");
    }
    anyhow::ensure!(
        opts.payload_bytes <= 256 * 1024,
        "payload-bytes must be at most 262144"
    );
    anyhow::ensure!(
        opts.transport == DeviceTransport::Mqtt || opts.target == Target::Fleethub,
        "AMQP devices need --target fleethub"
    );
    if opts.target == Target::Fleethub {
        anyhow::ensure!(
            opts.hub_service_connection_string.is_some(),
            "fleethub needs the hub service connection string (server-info.json)"
        );
    }
    Ok(())
}
