//! `fleethub bench telemetry`: device-to-cloud QoS 1 telemetry throughput and latency, and
//! idle-connection capacity (`connect_only`), against fleethub or, as the peer baseline,
//! mosquitto, with the same client code path (the SDK's [`fleethub_device::MqttClient`] over
//! rustls).
//!
//! 1. fleethub: creates `devices` identities through the hub service REST API (bulk
//!    `POST /devices`, 100 per request, one random key pair for the run);
//! 2. splits the devices over `processes` workers (child processes re-executing the same
//!    binary, see [`Launcher`]); each connects its devices over MQTT/TLS (`connect_concurrency`
//!    at a time; device SAS for fleethub, no credentials for mosquitto);
//! 3. once every worker reported, starts them together: each device publishes QoS 1 messages
//!    of `payload_bytes` to `devices/{id}/messages/events/` with `inflight` publishes in flight,
//!    either at its share of the aggregate `rate` or as fast as PUBACKs come back; with
//!    `connect_only`, the connections just stay open (keep-alive pings) for the window;
//! 4. a message counts when its PUBACK arrives inside the measurement window (after
//!    `warmup`, for `duration`); its latency is publish -> PUBACK;
//! 5. samples the server's CPU time and RSS (`/proc`), the workers' CPU time and the
//!    machine's busy/steal time at the window's start and end;
//! 6. fleethub: deletes the devices again (unless `keep_devices`).
//!
//! Every phase is bounded in time, and publishing also in message count.

pub mod worker;

use std::fmt;
use std::path::PathBuf;
use std::process::Stdio;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use fleethub_device::ClientTlsConfig;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::hub_service::HubService;
use crate::procfs::{self, MachineCpu};
use crate::stats::Histogram;
pub use worker::{ConnectedReport, WorkerEvent, WorkerResult, WorkerSpec, worker_stdio_main};

/// Largest per-device window accepted.
pub const MAX_INFLIGHT: usize = 64;
/// Bound on waiting for a worker's result after the window closed.
const RESULT_GRACE: Duration = Duration::from_secs(60);
/// Bound on a worker process exiting after its result.
const EXIT_GRACE: Duration = Duration::from_secs(20);

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
    /// MQTT/TLS port.
    pub port: u16,
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
            connect_timeout: Duration::from_secs(300),
            keep_alive: Duration::from_secs(60),
            max_messages: 0,
            host: "localhost".into(),
            dial: None,
            port: 8883,
            ca_pem_path: PathBuf::new(),
            hub_service_connection_string: None,
            https_port: 443,
            server_pid: None,
            keep_devices: false,
            launcher: Launcher::InProcess,
        }
    }
}

/// Result of [`run_telemetry_bench`]; serializes in camelCase.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TelemetryBenchReport {
    /// PUBACKed messages per second of the window.
    pub messages_per_sec: f64,
    /// Publish -> PUBACK latency of the counted messages.
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Failed device creations, connections and publishes.
    pub errors: u64,
    /// Devices connected when the window closed.
    pub connected: usize,
    /// Server `VmRSS` when the window closed (0 when unknown).
    pub server_rss_bytes: u64,
    pub target: String,
    pub mode: String,
    pub devices: usize,
    pub processes: usize,
    pub inflight: usize,
    /// Offered aggregate rate (`None`: `--max`).
    pub rate: Option<f64>,
    pub payload_bytes: usize,
    pub duration_sec: f64,
    pub warmup_sec: f64,
    pub messages: u64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub publish_errors: u64,
    pub in_flight_at_end: u64,
    pub connect_errors: u64,
    pub device_create_errors: u64,
    pub device_create_sec: f64,
    /// Connections at the end of the connect phase.
    pub connected_at_start: usize,
    pub connect_sec: f64,
    pub connects_per_sec: f64,
    pub connect_p50_ms: f64,
    pub connect_p99_ms: f64,
    pub server_pid: Option<u32>,
    /// Server `VmRSS` before the devices connected.
    pub server_rss_before_bytes: u64,
    /// `(serverRssBytes - serverRssBeforeBytes) / connected`.
    pub server_rss_per_connection_bytes: f64,
    /// `serverRssBytes / connected`.
    pub server_rss_total_per_connection_bytes: f64,
    /// Server CPU (all threads) over the window, in cores.
    pub server_cpu_cores: f64,
    /// Server CPU per counted message (µs).
    pub server_cpu_us_per_msg: f64,
    /// CPU of the load generator (workers) over the window, in cores.
    pub client_cpu_cores: f64,
    pub client_cpu_us_per_msg: f64,
    /// Whole machine over the window: busy cores and cores stolen by the hypervisor.
    pub machine_busy_cores: f64,
    pub machine_steal_cores: f64,
    /// CPU of every other process over the window (other builds and tests skew results).
    pub other_cpu_cores: f64,
    /// The busiest other processes over the window (at least 0.05 cores).
    pub other_cpu_top: Vec<OtherProcess>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

impl fmt::Display for TelemetryBenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} {}: {} devices over {} process(es), connected {}/{} ({:.1} s, {:.0}/s, p50 {:.1} ms)",
            self.target,
            self.mode,
            self.devices,
            self.processes,
            self.connected,
            self.devices,
            self.connect_sec,
            self.connects_per_sec,
            self.connect_p50_ms
        )?;
        if self.mode != "connect-only" {
            writeln!(
                f,
                "messages: {} in {:.1} s = {:.0}/s (p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms), {} B payload, inflight {}",
                self.messages,
                self.duration_sec,
                self.messages_per_sec,
                self.p50_ms,
                self.p99_ms,
                self.max_ms,
                self.payload_bytes,
                self.inflight
            )?;
        }
        writeln!(
            f,
            "server: RSS {:.1} MiB ({:.1} KiB/connection over the idle server, {:.1} KiB total/connection), CPU {:.2} cores ({:.1} µs/msg)",
            self.server_rss_bytes as f64 / 1048576.0,
            self.server_rss_per_connection_bytes / 1024.0,
            self.server_rss_total_per_connection_bytes / 1024.0,
            self.server_cpu_cores,
            self.server_cpu_us_per_msg
        )?;
        write!(
            f,
            "load generator CPU {:.2} cores ({:.1} µs/msg); machine busy {:.2} cores, steal {:.2}, other processes {:.2}; errors {}",
            self.client_cpu_cores,
            self.client_cpu_us_per_msg,
            self.machine_busy_cores,
            self.machine_steal_cores,
            self.other_cpu_cores,
            self.errors
        )?;
        for o in &self.other_cpu_top {
            write!(f, "\n  other: {} ({}) {:.2} cores", o.name, o.pid, o.cores)?;
        }
        if let Some(e) = &self.first_error {
            write!(f, "\nfirst error: {e}")?;
        }
        Ok(())
    }
}

/// A process that used CPU during the window without being part of the benchmark.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OtherProcess {
    pub pid: u32,
    pub name: String,
    pub cores: f64,
}

/// A running worker.
enum WorkerHandle {
    InProcess {
        connected: Option<oneshot::Receiver<ConnectedReport>>,
        go: Option<oneshot::Sender<()>>,
        result: Option<oneshot::Receiver<WorkerResult>>,
        task: tokio::task::JoinHandle<anyhow::Result<()>>,
    },
    Exec {
        child: Box<Child>,
        stdin: Option<ChildStdin>,
        lines: Lines<BufReader<ChildStdout>>,
    },
}

impl WorkerHandle {
    async fn start(launcher: &Launcher, spec: WorkerSpec) -> anyhow::Result<WorkerHandle> {
        match launcher {
            Launcher::InProcess => {
                let (ctx, crx) = oneshot::channel();
                let (gtx, grx) = oneshot::channel::<()>();
                let (rtx, rrx) = oneshot::channel();
                let task = tokio::spawn(worker::run_worker(
                    spec,
                    ctx,
                    async move { grx.await.is_ok() },
                    rtx,
                ));
                Ok(WorkerHandle::InProcess {
                    connected: Some(crx),
                    go: Some(gtx),
                    result: Some(rrx),
                    task,
                })
            }
            Launcher::Exec { program, args } => {
                let mut child = tokio::process::Command::new(program)
                    .args(args)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    .kill_on_drop(true)
                    .spawn()
                    .with_context(|| format!("starting worker {}", program.display()))?;
                let mut stdin = child.stdin.take().context("worker stdin")?;
                let stdout = child.stdout.take().context("worker stdout")?;
                let mut line = serde_json::to_vec(&spec)?;
                line.push(b'\n');
                stdin.write_all(&line).await?;
                stdin.flush().await?;
                Ok(WorkerHandle::Exec {
                    child: Box::new(child),
                    stdin: Some(stdin),
                    lines: BufReader::new(stdout).lines(),
                })
            }
        }
    }

    fn pid(&self) -> Option<u32> {
        match self {
            WorkerHandle::InProcess { .. } => Some(std::process::id()),
            WorkerHandle::Exec { child, .. } => child.id(),
        }
    }

    async fn next_event(
        lines: &mut Lines<BufReader<ChildStdout>>,
        until: Instant,
    ) -> anyhow::Result<WorkerEvent> {
        let line = tokio::time::timeout_at(until, lines.next_line())
            .await
            .context("the worker did not report in time")??
            .context("the worker exited without reporting (see its stderr)")?;
        serde_json::from_str(&line).with_context(|| format!("bad worker line: {line}"))
    }

    async fn connected(&mut self, until: Instant) -> anyhow::Result<ConnectedReport> {
        match self {
            WorkerHandle::InProcess { connected, .. } => {
                let rx = connected.take().context("already waited")?;
                tokio::time::timeout_at(until, rx)
                    .await
                    .context("the worker did not report in time")?
                    .context("the worker failed before connecting")
            }
            WorkerHandle::Exec { lines, .. } => match Self::next_event(lines, until).await? {
                WorkerEvent::Connected(r) => Ok(r),
                other => bail!("unexpected worker event {other:?}"),
            },
        }
    }

    async fn go(&mut self) {
        match self {
            WorkerHandle::InProcess { go, .. } => {
                if let Some(go) = go.take() {
                    let _ = go.send(());
                }
            }
            WorkerHandle::Exec { stdin, .. } => {
                if let Some(s) = stdin.as_mut() {
                    let _ = s.write_all(b"go\n").await;
                    let _ = s.flush().await;
                }
            }
        }
    }

    async fn result(&mut self, until: Instant) -> anyhow::Result<WorkerResult> {
        match self {
            WorkerHandle::InProcess { result, .. } => {
                let rx = result.take().context("already waited")?;
                tokio::time::timeout_at(until, rx)
                    .await
                    .context("the worker did not report in time")?
                    .context("the worker failed before reporting")
            }
            WorkerHandle::Exec { lines, .. } => match Self::next_event(lines, until).await? {
                WorkerEvent::Result(r) => Ok(r),
                other => bail!("unexpected worker event {other:?}"),
            },
        }
    }

    /// Waits (bounded) for the worker to disconnect and end; kills a late child.
    async fn finish(self) -> Option<String> {
        match self {
            WorkerHandle::InProcess { task, .. } => {
                match tokio::time::timeout(EXIT_GRACE, task).await {
                    Ok(Ok(Ok(()))) => None,
                    Ok(Ok(Err(e))) => Some(format!("worker failed: {e:#}")),
                    Ok(Err(e)) => Some(format!("worker task failed: {e}")),
                    Err(_) => Some("worker did not end in time".into()),
                }
            }
            WorkerHandle::Exec {
                mut child, stdin, ..
            } => {
                drop(stdin);
                match tokio::time::timeout(EXIT_GRACE, child.wait()).await {
                    Ok(Ok(s)) if s.success() => None,
                    Ok(Ok(s)) => Some(format!("worker exited with {s}")),
                    Ok(Err(e)) => Some(format!("waiting for the worker: {e}")),
                    Err(_) => {
                        let _ = child.kill().await;
                        Some("worker did not exit in time: killed".into())
                    }
                }
            }
        }
    }
}

/// CPU and memory counters at one instant.
struct Sample {
    at: Instant,
    server_cpu_ns: Option<u64>,
    server_rss: Option<u64>,
    client_cpu_ns: u64,
    machine: Option<MachineCpu>,
    processes: Vec<(u32, String, u64)>,
}

impl Sample {
    fn take(server: Option<u32>, clients: &[u32]) -> Sample {
        Sample {
            at: Instant::now(),
            server_cpu_ns: server.and_then(procfs::cpu_ns),
            server_rss: server.and_then(procfs::rss_bytes),
            client_cpu_ns: clients.iter().filter_map(|p| procfs::cpu_ns(*p)).sum(),
            machine: MachineCpu::read(),
            processes: procfs::all_process_ticks(),
        }
    }
}

/// The process to sample: for fleethub the `fleethub serve` of `data_dir`, else (and for
/// mosquitto) whatever listens on `port`.
pub fn find_server_pid(
    target: Target,
    data_dir: Option<&std::path::Path>,
    port: u16,
) -> Option<u32> {
    let by_dir = match (target, data_dir) {
        (Target::Fleethub, Some(d)) => procfs::find_fleethub_server(d),
        _ => None,
    };
    by_dir.or_else(|| procfs::pid_listening_on(port))
}

/// Splits `n` into `parts` contiguous ranges whose sizes differ by at most one.
fn split(n: usize, parts: usize) -> Vec<std::ops::Range<usize>> {
    let parts = parts.clamp(1, n.max(1));
    (0..parts)
        .map(|p| (n * p / parts)..(n * (p + 1) / parts))
        .collect()
}

fn validate(opts: &TelemetryBenchOptions) -> anyhow::Result<()> {
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
        !opts.duration.is_zero() && opts.duration <= Duration::from_secs(3600),
        "duration must be 1 s..1 h"
    );
    anyhow::ensure!(
        opts.warmup <= Duration::from_secs(600),
        "warmup must be at most 600 s"
    );
    if let Some(r) = opts.rate {
        anyhow::ensure!(r > 0.0 && r.is_finite(), "rate must be positive");
    }
    anyhow::ensure!(
        opts.payload_bytes <= 256 * 1024,
        "payload-bytes must be at most 262144"
    );
    if opts.target == Target::Fleethub {
        anyhow::ensure!(
            opts.hub_service_connection_string.is_some(),
            "fleethub needs the hub service connection string (server-info.json)"
        );
    }
    Ok(())
}

/// Runs the benchmark (see the module docs).
pub async fn run_telemetry_bench(
    opts: TelemetryBenchOptions,
) -> anyhow::Result<TelemetryBenchReport> {
    validate(&opts)?;
    let warmup = if opts.connect_only {
        Duration::ZERO
    } else {
        opts.warmup
    };
    let run_secs = (warmup + opts.duration).as_secs_f64();
    let max_messages = match (opts.max_messages, opts.rate) {
        (0, Some(r)) => (r * run_secs * 1.2) as u64 + (opts.devices * opts.inflight) as u64,
        (0, None) => (1_000_000.0 * run_secs) as u64,
        (m, _) => m,
    };
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let ids: Vec<String> = (0..opts.devices).map(|i| format!("tb-{run}-{i}")).collect();
    let mut report = TelemetryBenchReport {
        target: opts.target.to_string(),
        mode: match (opts.connect_only, opts.rate) {
            (true, _) => "connect-only".into(),
            (false, Some(_)) => "rate".into(),
            (false, None) => "max".into(),
        },
        devices: opts.devices,
        processes: opts.processes,
        inflight: opts.inflight,
        rate: if opts.connect_only { None } else { opts.rate },
        payload_bytes: opts.payload_bytes,
        duration_sec: opts.duration.as_secs_f64(),
        warmup_sec: warmup.as_secs_f64(),
        server_pid: opts.server_pid,
        ..Default::default()
    };
    let mut first_error: Option<String> = None;

    // 1. Device identities (fleethub).
    let mut tls = ClientTlsConfig::with_ca_file(&opts.ca_pem_path)
        .with_context(|| format!("loading the CA {}", opts.ca_pem_path.display()))?;
    if let Some(dial) = &opts.dial {
        tls = tls.with_address_override(opts.host.clone(), dial.clone());
    }
    let mut device_key = None;
    let mut service = None;
    if opts.target == Target::Fleethub {
        let cs = opts.hub_service_connection_string.as_deref().unwrap_or("");
        let svc = Arc::new(HubService::new(
            tls.clone(),
            &opts.host,
            opts.https_port,
            cs,
        )?);
        let (k1, k2) = (
            fleethub_core::keys::generate_key(),
            fleethub_core::keys::generate_key(),
        );
        let t = Instant::now();
        eprintln!("creating {} devices tb-{run}-* ...", opts.devices);
        let created = svc.create_devices(&ids, &k1, &k2).await;
        report.device_create_sec = t.elapsed().as_secs_f64();
        report.device_create_errors = created.failed as u64;
        if created.ok == 0 {
            bail!(
                "no device could be created: {}",
                created.first_error.unwrap_or_default()
            );
        }
        first_error = first_error.or(created.first_error);
        device_key = Some(k1);
        service = Some(svc);
    }

    // 2. Workers connect.
    let before = Sample::take(opts.server_pid, &[]);
    report.server_rss_before_bytes = before.server_rss.unwrap_or(0);
    let rate_per_device = if opts.connect_only {
        None
    } else {
        opts.rate.map(|r| r / opts.devices as f64)
    };
    let ranges = split(opts.devices, opts.processes);
    let mut workers = Vec::with_capacity(ranges.len());
    eprintln!(
        "connecting {} devices from {} worker(s) ...",
        opts.devices,
        ranges.len()
    );
    for (w, range) in ranges.into_iter().enumerate() {
        let n = range.len();
        let spec = WorkerSpec {
            worker: w,
            target: opts.target,
            host: opts.host.clone(),
            dial: opts.dial.clone(),
            port: opts.port,
            ca_pem_path: opts.ca_pem_path.clone(),
            device_key: device_key.clone(),
            device_ids: ids[range].to_vec(),
            rate_per_device,
            inflight: opts.inflight,
            payload_bytes: opts.payload_bytes,
            warmup_ms: warmup.as_millis() as u64,
            duration_ms: opts.duration.as_millis() as u64,
            connect_only: opts.connect_only,
            keep_alive_secs: opts.keep_alive.as_secs().max(1),
            connect_concurrency: opts.connect_concurrency,
            connect_phase_ms: opts.connect_timeout.as_millis() as u64,
            max_messages: (max_messages as u128 * n as u128 / opts.devices as u128) as u64 + 1,
        };
        workers.push(WorkerHandle::start(&opts.launcher, spec).await?);
    }
    let connect_until = Instant::now() + opts.connect_timeout + Duration::from_secs(30);
    let mut connect_latency = Histogram::new();
    let mut connect_secs: f64 = 0.0;
    let mut worker_failed = None;
    for w in workers.iter_mut() {
        match w.connected(connect_until).await {
            Ok(c) => {
                report.connected_at_start += c.connected;
                report.connect_errors += c.errors;
                connect_secs = connect_secs.max(c.seconds);
                connect_latency.merge(&Histogram::from_sparse(&c.latency));
                if first_error.is_none() {
                    first_error = c.first_error;
                }
            }
            Err(e) => {
                worker_failed.get_or_insert(format!("{e:#}"));
            }
        }
    }
    if let Some(e) = worker_failed {
        for w in workers {
            let _ = w.finish().await;
        }
        bail!("a worker failed during the connect phase: {e}");
    }
    report.connect_sec = connect_secs;
    report.connects_per_sec = crate::stats::rate(report.connected_at_start, connect_secs);
    report.connect_p50_ms = connect_latency.percentile_ms(50.0);
    report.connect_p99_ms = connect_latency.percentile_ms(99.0);
    eprintln!(
        "{} connected ({} errors) in {:.1} s; running {:?} + {:?} warm-up ...",
        report.connected_at_start, report.connect_errors, connect_secs, opts.duration, warmup
    );

    // 3. The window.
    let client_pids: Vec<u32> = {
        let mut p: Vec<u32> = workers.iter().filter_map(WorkerHandle::pid).collect();
        p.dedup();
        p
    };
    for w in workers.iter_mut() {
        w.go().await;
    }
    let go_at = Instant::now();
    tokio::time::sleep_until(go_at + warmup).await;
    let s0 = Sample::take(opts.server_pid, &client_pids);
    tokio::time::sleep_until(go_at + warmup + opts.duration).await;
    let s1 = Sample::take(opts.server_pid, &client_pids);

    // 4. Results.
    let result_until = Instant::now() + RESULT_GRACE;
    let mut latency = Histogram::new();
    for w in workers.iter_mut() {
        match w.result(result_until).await {
            Ok(r) => {
                report.messages += r.acked;
                report.publish_errors += r.errors;
                report.in_flight_at_end += r.in_flight_at_end;
                report.connected += r.connected_at_end;
                latency.merge(&Histogram::from_sparse(&r.latency));
                if first_error.is_none() {
                    first_error = r.first_error;
                }
            }
            Err(e) => {
                report.publish_errors += 1;
                first_error.get_or_insert(format!("{e:#}"));
            }
        }
    }
    for w in workers {
        if let Some(e) = w.finish().await {
            first_error.get_or_insert(e);
        }
    }

    // 5. Clean up.
    if let Some(svc) = &service
        && !opts.keep_devices
    {
        let deleted = svc.delete_devices(&ids).await;
        if deleted.failed > 0 {
            eprintln!(
                "warning: {} bench devices not deleted: {}",
                deleted.failed,
                deleted.first_error.unwrap_or_default()
            );
        }
    }

    // 6. Figures.
    let window = s1.at.duration_since(s0.at).as_secs_f64();
    report.messages_per_sec = crate::stats::rate(report.messages as usize, report.duration_sec);
    report.p50_ms = latency.percentile_ms(50.0);
    report.p99_ms = latency.percentile_ms(99.0);
    report.p999_ms = latency.percentile_ms(99.9);
    report.max_ms = latency.max_ms();
    report.server_rss_bytes = s1.server_rss.unwrap_or(0);
    if report.connected > 0 && report.server_rss_bytes > 0 {
        report.server_rss_per_connection_bytes = report
            .server_rss_bytes
            .saturating_sub(report.server_rss_before_bytes)
            as f64
            / report.connected as f64;
        report.server_rss_total_per_connection_bytes =
            report.server_rss_bytes as f64 / report.connected as f64;
    }
    let per_msg = |ns: f64| {
        if report.messages > 0 {
            ns / 1e3 / report.messages as f64
        } else {
            0.0
        }
    };
    if let (Some(a), Some(b)) = (s0.server_cpu_ns, s1.server_cpu_ns) {
        let ns = b.saturating_sub(a) as f64;
        report.server_cpu_cores = ns / 1e9 / window.max(1e-9);
        report.server_cpu_us_per_msg = per_msg(ns);
    }
    let client_ns = s1.client_cpu_ns.saturating_sub(s0.client_cpu_ns) as f64;
    report.client_cpu_cores = client_ns / 1e9 / window.max(1e-9);
    report.client_cpu_us_per_msg = per_msg(client_ns);
    if let (Some(a), Some(b)) = (s0.machine, s1.machine) {
        (report.machine_busy_cores, report.machine_steal_cores) = a.cores_until(&b, window);
    }
    let ours: Vec<u32> = client_pids
        .iter()
        .copied()
        .chain(opts.server_pid)
        .chain([std::process::id()])
        .collect();
    let before: std::collections::HashMap<u32, u64> =
        s0.processes.iter().map(|(p, _, t)| (*p, *t)).collect();
    let mut others: Vec<OtherProcess> = s1
        .processes
        .iter()
        .filter(|(p, _, _)| !ours.contains(p))
        .map(|(pid, name, t)| OtherProcess {
            pid: *pid,
            name: name.clone(),
            cores: t.saturating_sub(before.get(pid).copied().unwrap_or(0)) as f64
                / 100.0
                / window.max(1e-9),
        })
        .filter(|o| o.cores > 0.0)
        .collect();
    others.sort_by(|a, b| b.cores.total_cmp(&a.cores));
    report.other_cpu_cores = others.iter().map(|o| o.cores).sum();
    others.retain(|o| o.cores >= 0.05);
    others.truncate(5);
    report.other_cpu_top = others;
    report.errors = report.device_create_errors + report.connect_errors + report.publish_errors;
    report.first_error = first_error;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_evenly() {
        assert_eq!(split(10, 3), vec![0..3, 3..6, 6..10]);
        assert_eq!(split(2, 5), vec![0..1, 1..2]);
        assert_eq!(split(7, 1), vec![0..7]);
        let total: usize = split(15_000, 4).iter().map(|r| r.len()).sum();
        assert_eq!(total, 15_000);
    }

    #[test]
    fn targets_parse() {
        assert_eq!("Mosquitto".parse::<Target>(), Ok(Target::Mosquitto));
        assert_eq!(Target::Fleethub.to_string(), "fleethub");
        assert!("rumqttd".parse::<Target>().is_err());
    }

    #[tokio::test]
    async fn invalid_options_are_rejected() {
        for opts in [
            TelemetryBenchOptions {
                devices: 0,
                ..Default::default()
            },
            TelemetryBenchOptions {
                inflight: 0,
                ..Default::default()
            },
            TelemetryBenchOptions {
                devices: 40_000,
                processes: 2,
                ..Default::default()
            },
            TelemetryBenchOptions {
                rate: Some(0.0),
                ..Default::default()
            },
            TelemetryBenchOptions {
                target: Target::Fleethub,
                hub_service_connection_string: None,
                ..Default::default()
            },
        ] {
            assert!(run_telemetry_bench(opts).await.is_err());
        }
    }

    #[test]
    fn report_serializes_the_headline_fields() {
        let v = serde_json::to_value(TelemetryBenchReport::default()).unwrap();
        for k in [
            "messagesPerSec",
            "p50Ms",
            "p99Ms",
            "errors",
            "connected",
            "serverRssBytes",
            "serverRssPerConnectionBytes",
            "serverCpuUsPerMsg",
        ] {
            assert!(v.get(k).is_some(), "{k}");
        }
    }
}
