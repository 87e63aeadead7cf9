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

pub mod device_conn;
mod handle;
mod options;
mod report;
pub mod saturate;
pub mod worker;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use fleethub_device::ClientTlsConfig;
use tokio::time::Instant;

use crate::hub_service::HubService;
use crate::stats::Histogram;
pub use device_conn::DeviceTransport;
use handle::WorkerHandle;
pub use options::{Launcher, MAX_INFLIGHT, Target, TelemetryBenchOptions};
use options::{split, validate};
use report::Sample;
pub use report::{OtherProcess, TelemetryBenchReport, find_server_pid};
pub use saturate::{SaturateOptions, SaturateReport, run_saturate_bench};
pub use worker::{ConnectedReport, WorkerEvent, WorkerResult, WorkerSpec, worker_stdio_main};

/// Bound on waiting for a worker's result after the window closed.
const RESULT_GRACE: Duration = Duration::from_mins(1);

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
        // `fleethub (amqp)` when the devices speak AMQP.
        target: match opts.transport {
            DeviceTransport::Mqtt => opts.target.to_string(),
            DeviceTransport::Amqp => format!("{} (amqp)", opts.target),
        },
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
    let (device_key, service) =
        create_devices(&opts, &tls, &ids, &run, &mut report, &mut first_error).await?;

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
            transport: opts.transport,
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
            max_messages: (u128::from(max_messages) * n as u128 / opts.devices as u128) as u64 + 1,
        };
        workers.push(WorkerHandle::start(&opts.launcher, spec).await?);
    }
    if let Some(e) = await_connected(&mut workers, &opts, &mut report, &mut first_error).await {
        for w in workers {
            let _ = w.finish().await;
        }
        bail!("a worker failed during the connect phase: {e}");
    }
    eprintln!(
        "{} connected ({} errors) in {:.1} s; running {:?} + {:?} warm-up ...",
        report.connected_at_start, report.connect_errors, report.connect_sec, opts.duration, warmup
    );

    // 3. The window.
    let client_pids: Vec<u32> = {
        let mut p: Vec<u32> = workers.iter().filter_map(WorkerHandle::pid).collect();
        p.dedup();
        p
    };
    for w in &mut workers {
        w.go().await;
    }
    let go_at = Instant::now();
    let mut window =
        crate::Progress::with_mode("seconds", (warmup + opts.duration).as_secs(), opts.progress);
    sleep_with_progress(go_at, go_at + warmup, &mut window).await;
    let s0 = Sample::take(opts.server_pid, &client_pids);
    sleep_with_progress(go_at, go_at + warmup + opts.duration, &mut window).await;
    let s1 = Sample::take(opts.server_pid, &client_pids);
    window.finish();

    // 4. Results.
    let latency = collect_results(workers, &mut report, &mut first_error).await;

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
    report.messages_per_sec = crate::stats::rate(report.messages as usize, report.duration_sec);
    report.p50_ms = latency.percentile_ms(50.0);
    report.p99_ms = latency.percentile_ms(99.0);
    report.p999_ms = latency.percentile_ms(99.9);
    report.max_ms = latency.max_ms();
    report.add_figures(&s0, &s1, &client_pids, opts.server_pid);
    report.first_error = first_error;
    Ok(report)
}

/// Phase 1: creates the device identities (fleethub only); returns the device key and the
/// service client that deletes them again.
async fn create_devices(
    opts: &TelemetryBenchOptions,
    tls: &ClientTlsConfig,
    ids: &[String],
    run: &str,
    report: &mut TelemetryBenchReport,
    first_error: &mut Option<String>,
) -> anyhow::Result<(Option<String>, Option<Arc<HubService>>)> {
    if opts.target != Target::Fleethub {
        return Ok((None, None));
    }
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
    let created = svc.create_devices(ids, &k1, &k2).await;
    report.device_create_sec = t.elapsed().as_secs_f64();
    report.device_create_errors = created.failed as u64;
    if created.ok == 0 {
        bail!(
            "no device could be created: {}",
            created.first_error.unwrap_or_default()
        );
    }
    *first_error = first_error.take().or(created.first_error);
    Ok((Some(k1), Some(svc)))
}

/// Sleeps until `until`, moving `progress` to the whole seconds since `start` once a second.
async fn sleep_with_progress(start: Instant, until: Instant, progress: &mut crate::Progress) {
    loop {
        let now = Instant::now();
        progress.set((now - start).as_secs());
        if now >= until {
            return;
        }
        tokio::time::sleep_until(until.min(now + Duration::from_secs(1))).await;
    }
}

/// Phase 2: waits for every worker's connect report; returns the first worker failure.
async fn await_connected(
    workers: &mut [WorkerHandle],
    opts: &TelemetryBenchOptions,
    report: &mut TelemetryBenchReport,
    first_error: &mut Option<String>,
) -> Option<String> {
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
                    *first_error = c.first_error;
                }
            }
            Err(e) => {
                worker_failed.get_or_insert(format!("{e:#}"));
            }
        }
    }
    report.connect_sec = connect_secs;
    report.connects_per_sec = crate::stats::rate(report.connected_at_start, connect_secs);
    report.connect_p50_ms = connect_latency.percentile_ms(50.0);
    report.connect_p99_ms = connect_latency.percentile_ms(99.0);
    worker_failed
}

/// Phase 4: collects the workers' results and ends them; returns the merged latencies.
async fn collect_results(
    mut workers: Vec<WorkerHandle>,
    report: &mut TelemetryBenchReport,
    first_error: &mut Option<String>,
) -> Histogram {
    let result_until = Instant::now() + RESULT_GRACE;
    let mut latency = Histogram::new();
    for w in &mut workers {
        match w.result(result_until).await {
            Ok(r) => {
                report.messages += r.acked;
                report.publish_errors += r.errors;
                report.in_flight_at_end += r.in_flight_at_end;
                report.connected += r.connected_at_end;
                latency.merge(&Histogram::from_sparse(&r.latency));
                if first_error.is_none() {
                    *first_error = r.first_error;
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
    latency
}
