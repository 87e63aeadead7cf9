//! `fleethub bench saturate`: drives a fleethub server past its throttle limits and shows
//! that it keeps serving at the limit (docs/benchmarks.md, "Saturation").
//!
//! Two groups of devices publish QoS 1 telemetry in the same window:
//! - **over**: `over_devices` devices as fast as PUBACKs come back (`inflight` each), far
//!   above their per-device quota (or together above the global limit);
//! - **under**: `under_devices` devices at `under_rate` messages/s each, below their quota.
//!
//! The server delays the PUBACKs of the over group (it does not drop or disconnect), so
//! their served rate is the limit; the report gives the served rate of each group against
//! the limits the operator configured (`per_device_limit`, `global_limit`: passed in, as the
//! server does not publish its configuration), the under group's latency and errors (a
//! PUBACK later than the worker's 30 s timeout counts as an error), and the server's RSS
//! before the run, at the window's start and end, and its largest value sampled every second
//! in the window (bounded memory under overload).
//!
//! Phases as in [`super::run_telemetry_bench`]; every loop is bounded in time and messages.

use std::time::Duration;

use anyhow::{Context, bail};
use fleethub_device::ClientTlsConfig;
use serde::Serialize;
use tokio::time::Instant;

use super::handle::WorkerHandle;
use super::options::{split, validate};
use super::report::Sample;
use super::{
    TelemetryBenchOptions, TelemetryBenchReport, WorkerSpec, await_connected, collect_results,
    create_devices,
};
use crate::stats::Histogram;

/// Settings of [`run_saturate_bench`].
#[derive(Debug, Clone)]
pub struct SaturateOptions {
    /// Connection settings, payload, window, worker launcher; `inflight` is the over
    /// group's window; `devices`, `rate` and `connect_only` are ignored.
    pub base: TelemetryBenchOptions,
    pub over_devices: usize,
    pub under_devices: usize,
    /// Messages per second of each under device.
    pub under_rate: f64,
    /// The server's `throttle.device_to_cloud.per_device`, for the report.
    pub per_device_limit: Option<f64>,
    /// The server's `throttle.device_to_cloud.global`, for the report.
    pub global_limit: Option<f64>,
}

/// What one group of devices saw.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GroupReport {
    pub devices: usize,
    /// Messages per second each device offered (`None`: as fast as PUBACKs came).
    pub offered_per_device: Option<f64>,
    pub inflight: usize,
    pub connected: usize,
    pub messages: u64,
    pub messages_per_sec: f64,
    pub per_device_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Failed connections and publishes (a PUBACK not within 30 s counts).
    pub errors: u64,
    pub in_flight_at_end: u64,
    pub first_error: Option<String>,
}

/// The outcome of [`run_saturate_bench`].
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SaturateReport {
    pub over: GroupReport,
    pub under: GroupReport,
    /// Both groups together.
    pub served_per_sec: f64,
    pub per_device_limit: Option<f64>,
    pub global_limit: Option<f64>,
    /// What the limits allow for this load: each over device at most `per_device_limit`,
    /// the under devices what they offer, all together at most `global_limit`.
    pub allowed_per_sec: Option<f64>,
    /// `served_per_sec / allowed_per_sec`.
    pub served_vs_allowed: Option<f64>,
    pub duration_sec: f64,
    pub warmup_sec: f64,
    pub payload_bytes: usize,
    pub server_pid: Option<u32>,
    /// Before the devices connected.
    pub server_rss_before_bytes: u64,
    pub server_rss_window_start_bytes: u64,
    pub server_rss_window_end_bytes: u64,
    /// Largest RSS sampled once a second during the window.
    pub server_rss_max_bytes: u64,
    pub server_cpu_cores: f64,
}

impl SaturateReport {
    /// What the configured limits allow for the offered load.
    fn allowed(&self) -> Option<f64> {
        let over = self.per_device_limit.map(|l| l * self.over.devices as f64);
        let under = self.under.offered_per_device.unwrap_or(0.0) * self.under.devices as f64;
        match (over, self.global_limit) {
            (Some(o), Some(g)) => Some((o + under).min(g)),
            (Some(o), None) => Some(o + under),
            (None, Some(g)) => Some(g),
            (None, None) => None,
        }
    }
}

/// Runs the benchmark (see the module docs).
pub async fn run_saturate_bench(opts: SaturateOptions) -> anyhow::Result<SaturateReport> {
    let base = &opts.base;
    anyhow::ensure!(opts.over_devices >= 1, "over-devices must be at least 1");
    anyhow::ensure!(
        opts.under_devices == 0 || (opts.under_rate > 0.0 && opts.under_rate.is_finite()),
        "under-rate must be positive"
    );
    for l in [opts.per_device_limit, opts.global_limit]
        .into_iter()
        .flatten()
    {
        anyhow::ensure!(l > 0.0 && l.is_finite(), "limits must be positive");
    }
    let devices = opts.over_devices + opts.under_devices;
    let checked = TelemetryBenchOptions {
        devices,
        connect_only: false,
        rate: None,
        processes: base.processes.min(opts.over_devices),
        ..base.clone()
    };
    validate(&checked)?;
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let over_ids: Vec<String> = (0..opts.over_devices)
        .map(|i| format!("sat-{run}-o{i}"))
        .collect();
    let under_ids: Vec<String> = (0..opts.under_devices)
        .map(|i| format!("sat-{run}-u{i}"))
        .collect();
    let all_ids: Vec<String> = over_ids.iter().chain(&under_ids).cloned().collect();
    let mut report = SaturateReport {
        per_device_limit: opts.per_device_limit,
        global_limit: opts.global_limit,
        duration_sec: base.duration.as_secs_f64(),
        warmup_sec: base.warmup.as_secs_f64(),
        payload_bytes: base.payload_bytes,
        server_pid: base.server_pid,
        ..Default::default()
    };
    report.over = GroupReport {
        devices: opts.over_devices,
        offered_per_device: None,
        inflight: base.inflight,
        ..Default::default()
    };
    report.under = GroupReport {
        devices: opts.under_devices,
        offered_per_device: (opts.under_devices > 0).then_some(opts.under_rate),
        inflight: 1,
        ..Default::default()
    };

    // 1. Device identities.
    let mut tls = ClientTlsConfig::with_ca_file(&base.ca_pem_path)
        .with_context(|| format!("loading the CA {}", base.ca_pem_path.display()))?;
    if let Some(dial) = &base.dial {
        tls = tls.with_address_override(base.host.clone(), dial.clone());
    }
    let mut scratch = TelemetryBenchReport::default();
    let mut first_error = None;
    let (device_key, service) = create_devices(
        &checked,
        &tls,
        &all_ids,
        &run,
        &mut scratch,
        &mut first_error,
    )
    .await?;

    // 2. Workers connect: the over group over `processes` workers, the under group in one.
    report.server_rss_before_bytes = Sample::take(base.server_pid, &[]).server_rss.unwrap_or(0);
    let spec = |worker: usize, ids: &[String], rate: Option<f64>, inflight: usize| {
        worker_spec(base, device_key.as_ref(), worker, ids, rate, inflight)
    };
    let mut over = Vec::new();
    for (w, range) in split(opts.over_devices, checked.processes)
        .into_iter()
        .enumerate()
    {
        let s = spec(w, &over_ids[range], None, base.inflight);
        over.push(WorkerHandle::start(&base.launcher, s).await?);
    }
    let mut under = Vec::new();
    if !under_ids.is_empty() {
        let s = spec(over.len(), &under_ids, Some(opts.under_rate), 1);
        under.push(WorkerHandle::start(&base.launcher, s).await?);
    }
    eprintln!(
        "connecting {} over-quota and {} under-quota devices ...",
        opts.over_devices, opts.under_devices
    );
    let failed = match await_connected(&mut over, &checked, &mut scratch, &mut first_error).await {
        Some(e) => Some(e),
        None => await_connected(&mut under, &checked, &mut scratch, &mut first_error).await,
    };
    if let Some(e) = failed {
        for w in over.into_iter().chain(under) {
            let _ = w.finish().await;
        }
        bail!("a worker failed during the connect phase: {e}");
    }

    // 3. The window.
    measure(base, &mut over, &mut under, &mut report).await;

    // 4. Results per group.
    let duration = base.duration.as_secs_f64();
    group_results(over, &mut report.over, duration).await;
    group_results(under, &mut report.under, duration).await;
    report.served_per_sec = report.over.messages_per_sec + report.under.messages_per_sec;
    report.allowed_per_sec = report.allowed();
    report.served_vs_allowed = report
        .allowed_per_sec
        .map(|a| report.served_per_sec / a.max(1e-9));
    if report.over.first_error.is_none() {
        report.over.first_error = first_error;
    }

    // 5. Clean up.
    if let Some(svc) = &service
        && !base.keep_devices
    {
        let deleted = svc.delete_devices(&all_ids).await;
        if deleted.failed > 0 {
            eprintln!(
                "warning: {} bench devices not deleted: {}",
                deleted.failed,
                deleted.first_error.unwrap_or_default()
            );
        }
    }
    Ok(report)
}

/// One worker's spec: `rate` messages/s per device (`None`: as fast as PUBACKs come).
fn worker_spec(
    base: &TelemetryBenchOptions,
    device_key: Option<&String>,
    worker: usize,
    ids: &[String],
    rate: Option<f64>,
    inflight: usize,
) -> WorkerSpec {
    let run_secs = (base.warmup + base.duration).as_secs_f64();
    WorkerSpec {
        worker,
        target: base.target,
        host: base.host.clone(),
        dial: base.dial.clone(),
        port: base.port,
        transport: base.transport,
        ca_pem_path: base.ca_pem_path.clone(),
        device_key: device_key.cloned(),
        device_ids: ids.to_vec(),
        rate_per_device: rate,
        inflight,
        payload_bytes: base.payload_bytes,
        warmup_ms: base.warmup.as_millis() as u64,
        duration_ms: base.duration.as_millis() as u64,
        connect_only: false,
        keep_alive_secs: base.keep_alive.as_secs().max(1),
        connect_concurrency: base.connect_concurrency,
        connect_phase_ms: base.connect_timeout.as_millis() as u64,
        max_messages: match rate {
            Some(r) => (r * run_secs * 1.2) as u64 * ids.len() as u64 + ids.len() as u64,
            None => (1_000_000.0 * run_secs) as u64,
        },
    }
}

/// Phase 3: starts every worker, waits out the warm-up, then samples the server over the
/// window (RSS once a second).
async fn measure(
    base: &TelemetryBenchOptions,
    over: &mut [WorkerHandle],
    under: &mut [WorkerHandle],
    report: &mut SaturateReport,
) {
    let client_pids: Vec<u32> = over
        .iter()
        .chain(under.iter())
        .filter_map(WorkerHandle::pid)
        .collect();
    for w in over.iter_mut().chain(under.iter_mut()) {
        w.go().await;
    }
    let go_at = Instant::now();
    tokio::time::sleep_until(go_at + base.warmup).await;
    let s0 = Sample::take(base.server_pid, &client_pids);
    let end = go_at + base.warmup + base.duration;
    let mut rss_max = s0.server_rss.unwrap_or(0);
    while Instant::now() + Duration::from_secs(1) < end {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Some(rss) = base.server_pid.and_then(crate::procfs::rss_bytes) {
            rss_max = rss_max.max(rss);
        }
    }
    tokio::time::sleep_until(end).await;
    let s1 = Sample::take(base.server_pid, &client_pids);
    report.server_rss_window_start_bytes = s0.server_rss.unwrap_or(0);
    report.server_rss_window_end_bytes = s1.server_rss.unwrap_or(0);
    report.server_rss_max_bytes = rss_max.max(report.server_rss_window_end_bytes);
    if let (Some(a), Some(b)) = (s0.server_cpu_ns, s1.server_cpu_ns) {
        let window = s1.at.duration_since(s0.at).as_secs_f64().max(1e-9);
        report.server_cpu_cores = b.saturating_sub(a) as f64 / 1e9 / window;
    }
}

async fn group_results(workers: Vec<WorkerHandle>, group: &mut GroupReport, duration: f64) {
    if workers.is_empty() {
        return;
    }
    let mut r = TelemetryBenchReport::default();
    let mut first_error = None;
    let latency: Histogram = collect_results(workers, &mut r, &mut first_error).await;
    group.connected = r.connected;
    group.messages = r.messages;
    group.messages_per_sec = crate::stats::rate(r.messages as usize, duration);
    group.per_device_per_sec = group.messages_per_sec / group.devices.max(1) as f64;
    group.p50_ms = latency.percentile_ms(50.0);
    group.p99_ms = latency.percentile_ms(99.0);
    group.max_ms = latency.max_ms();
    group.errors = r.publish_errors + (group.devices.saturating_sub(r.connected)) as u64;
    group.in_flight_at_end = r.in_flight_at_end;
    group.first_error = first_error;
}

impl std::fmt::Display for GroupReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let offered = match self.offered_per_device {
            Some(r) => format!("{r:.1}/s each"),
            None => format!("max, {} in flight each", self.inflight),
        };
        write!(
            f,
            "{} devices ({offered}), {} connected at the end: {:.0} msg/s served ({:.1}/s per device), p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, errors {}",
            self.devices,
            self.connected,
            self.messages_per_sec,
            self.per_device_per_sec,
            self.p50_ms,
            self.p99_ms,
            self.max_ms,
            self.errors
        )
    }
}

impl std::fmt::Display for SaturateReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mib = |b: u64| b as f64 / 1_048_576.0;
        writeln!(f, "over quota:  {}", self.over)?;
        writeln!(f, "under quota: {}", self.under)?;
        let limit = |l: Option<f64>| l.map_or_else(|| "-".to_string(), |l| format!("{l}/s"));
        writeln!(
            f,
            "served {:.0} msg/s; limits: per device {}, global {}; allowed {}; served/allowed {}",
            self.served_per_sec,
            limit(self.per_device_limit),
            limit(self.global_limit),
            self.allowed_per_sec
                .map_or_else(|| "-".into(), |a| format!("{a:.0}/s")),
            self.served_vs_allowed
                .map_or_else(|| "-".into(), |r| format!("{r:.2}")),
        )?;
        write!(
            f,
            "server: RSS {:.1} MiB before, {:.1} MiB at the window's start, {:.1} MiB at its end (max {:.1} MiB); CPU {:.2} cores",
            mib(self.server_rss_before_bytes),
            mib(self.server_rss_window_start_bytes),
            mib(self.server_rss_window_end_bytes),
            mib(self.server_rss_max_bytes),
            self.server_cpu_cores
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_rate_combines_the_limits() {
        let mut r = SaturateReport {
            per_device_limit: Some(100.0),
            global_limit: Some(3000.0),
            ..Default::default()
        };
        r.over.devices = 20;
        r.under.devices = 10;
        r.under.offered_per_device = Some(5.0);
        assert_eq!(r.allowed(), Some(2050.0));
        r.over.devices = 40;
        assert_eq!(r.allowed(), Some(3000.0), "the global limit caps");
        r.per_device_limit = None;
        assert_eq!(r.allowed(), Some(3000.0));
        r.global_limit = None;
        assert_eq!(r.allowed(), None);
    }

    #[tokio::test]
    async fn invalid_options_are_rejected() {
        let base = TelemetryBenchOptions::default();
        for opts in [
            SaturateOptions {
                base: base.clone(),
                over_devices: 0,
                under_devices: 1,
                under_rate: 1.0,
                per_device_limit: None,
                global_limit: None,
            },
            SaturateOptions {
                base: base.clone(),
                over_devices: 1,
                under_devices: 1,
                under_rate: 0.0,
                per_device_limit: None,
                global_limit: None,
            },
            SaturateOptions {
                base,
                over_devices: 1,
                under_devices: 0,
                under_rate: 1.0,
                per_device_limit: Some(-1.0),
                global_limit: None,
            },
        ] {
            assert!(run_saturate_bench(opts).await.is_err());
        }
    }
}
