//! Load tools behind `fleethub bench register`, `fleethub bench telemetry` and
//! `fleethub bench saturate` (see [`telemetry`] and [`telemetry::saturate`]).
//!
//! [`run_register_bench`] measures how fast a DPS listener provisions brand-new devices
//! compared with how fast it completes bare TLS handshakes (the floor cost of any new
//! device connection):
//!
//! 1. creates one enrollment group with random symmetric keys through the DPS service
//!    REST API;
//! 2. provisions `count` new devices (`bench-{run}-{i}`, group-derived keys), each over a
//!    new TCP + full TLS handshake (session resumption disabled), `concurrency` at a time,
//!    with the SDK's provisioning client; latency is measured from TCP connect to assigned.
//!    `assigning` operations are polled immediately ([`PollPolicy::IMMEDIATE`]) so that the
//!    numbers measure the server, not the retry-after it asks devices to wait (throttling
//!    and server errors are still retried after their retry-after);
//! 3. runs `handshake_count` bare TLS handshakes (connect, handshake, close) against the
//!    same listener with the same concurrency;
//! 4. deletes the group (best effort).
//!
//! Every operation is bounded by a timeout; failures are counted, never fatal (except
//! failing to create the group).

pub mod consume;
pub mod hub_service;
pub mod procfs;
mod service;
pub mod stats;
pub mod telemetry;

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use fleethub_device::ClientTlsConfig;
use fleethub_device::provisioning::{PollPolicy, ProvisioningClient};
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;

pub use fleethub_service_client::progress::{Progress, ProgressMode};
use tokio::task::JoinSet;

pub use consume::{
    ConsumeBenchOptions, ConsumeBenchReport, Layout as ConsumeLayout, Settle as ConsumeSettle,
    run_consume_bench,
};
pub use fleethub_device::provisioning::Transport;
pub use service::{DpsService, SERVICE_API_VERSION};
pub use telemetry::{
    Launcher, SaturateOptions, SaturateReport, Target, TelemetryBenchOptions, TelemetryBenchReport,
    run_saturate_bench, run_telemetry_bench,
};

/// Bound on one registration (TCP connect to assigned), as the SDK's default.
pub const REGISTRATION_TIMEOUT: Duration = Duration::from_mins(1);
/// Bound on one bare TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on closing a handshake-only connection (not part of the measured latency).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Settings of [`run_register_bench`].
#[derive(Debug, Clone)]
pub struct RegisterBenchOptions {
    /// Devices to provision (at least 1).
    pub count: usize,
    /// Registrations (then handshakes) in flight at once (at least 1).
    pub concurrency: usize,
    pub transport: Transport,
    /// DPS host: dialled, verified in TLS, and used for the service API too.
    pub dps_host: String,
    /// Listener under test (MQTT or HTTPS port, per `transport`).
    pub port: u16,
    pub id_scope: String,
    /// CA certificate (PEM) the server's certificate chains to.
    pub ca_pem_path: PathBuf,
    /// `HostName=...;SharedAccessKeyName=...;SharedAccessKey=...`.
    pub dps_service_connection_string: String,
    /// HTTPS port of the DPS service API.
    pub service_port: u16,
    /// Bare TLS handshakes for the baseline; 0 means `count`.
    pub handshake_count: usize,
    /// Progress of each phase on stderr (default: none).
    pub progress: ProgressMode,
}

impl Default for RegisterBenchOptions {
    fn default() -> Self {
        RegisterBenchOptions {
            count: 100,
            concurrency: 10,
            transport: Transport::Mqtt,
            dps_host: "localhost".into(),
            port: Transport::Mqtt.default_port(),
            id_scope: String::new(),
            ca_pem_path: PathBuf::new(),
            dps_service_connection_string: String::new(),
            service_port: 443,
            handshake_count: 0,
            progress: ProgressMode::Hidden,
        }
    }
}

/// Result of [`run_register_bench`]; serializes in camelCase.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RegisterBenchReport {
    /// Successful registrations per second of the registration phase.
    pub registrations_per_sec: f64,
    /// Successful bare TLS handshakes per second of the baseline phase.
    pub tls_handshakes_per_sec: f64,
    /// `registrationsPerSec / tlsHandshakesPerSec` (0 when no handshake succeeded).
    pub ratio: f64,
    /// Registration latency percentiles (successful registrations only).
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Failed registrations + failed handshakes.
    pub errors: u64,
    pub count: usize,
    pub concurrency: usize,
    pub transport: String,
    pub registered: usize,
    pub registration_errors: u64,
    pub registration_seconds: f64,
    pub handshake_count: usize,
    pub handshakes: usize,
    pub handshake_errors: u64,
    pub handshake_seconds: f64,
    pub handshake_p50_ms: f64,
    pub enrollment_group_id: String,
    /// The first failure seen, to tell what went wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

impl fmt::Display for RegisterBenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "registrations: {}/{} over {} in {:.2} s = {:.1}/s (p50 {:.1} ms, p99 {:.1} ms), concurrency {}",
            self.registered,
            self.count,
            self.transport,
            self.registration_seconds,
            self.registrations_per_sec,
            self.p50_ms,
            self.p99_ms,
            self.concurrency
        )?;
        writeln!(
            f,
            "TLS handshakes: {}/{} in {:.2} s = {:.1}/s (p50 {:.1} ms)",
            self.handshakes,
            self.handshake_count,
            self.handshake_seconds,
            self.tls_handshakes_per_sec,
            self.handshake_p50_ms
        )?;
        write!(
            f,
            "ratio registrations/handshakes: {:.3}; errors: {}",
            self.ratio, self.errors
        )?;
        if let Some(e) = &self.first_error {
            write!(f, "\nfirst error: {e}")?;
        }
        Ok(())
    }
}

/// Outcome of one phase.
struct Phase {
    ok_latencies_ms: Vec<f64>,
    errors: u64,
    first_error: Option<String>,
    seconds: f64,
}

fn record(phase: &mut Phase, r: Result<Result<Duration, String>, tokio::task::JoinError>) {
    match r {
        Ok(Ok(latency)) => phase.ok_latencies_ms.push(latency.as_secs_f64() * 1e3),
        Ok(Err(e)) => {
            phase.errors += 1;
            phase.first_error.get_or_insert(e);
        }
        Err(e) => {
            phase.errors += 1;
            phase.first_error.get_or_insert(format!("task failed: {e}"));
        }
    }
}

/// Runs `n` operations, at most `concurrency` at a time; `op(i)` returns the measured
/// latency or an error text. Panicking tasks count as errors.
async fn run_phase<F, Fut>(n: usize, concurrency: usize, progress: Progress, op: F) -> Phase
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<Duration, String>> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = JoinSet::new();
    let mut progress = progress;
    let mut phase = Phase {
        ok_latencies_ms: Vec::with_capacity(n),
        errors: 0,
        first_error: None,
        seconds: 0.0,
    };
    let started = Instant::now();
    for i in 0..n {
        // The semaphore is never closed, so acquiring cannot fail.
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let fut = op(i);
        tasks.spawn(async move {
            let r = fut.await;
            drop(permit);
            r
        });
        // Reap finished tasks as we go so the set stays small.
        while let Some(r) = tasks.try_join_next() {
            record(&mut phase, r);
            progress.inc(1);
        }
    }
    while let Some(r) = tasks.join_next().await {
        record(&mut phase, r);
        progress.inc(1);
    }
    progress.finish();
    phase.seconds = started.elapsed().as_secs_f64();
    phase
        .ok_latencies_ms
        .sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    phase
}

/// Runs the registration benchmark (see the crate docs).
pub async fn run_register_bench(opts: RegisterBenchOptions) -> anyhow::Result<RegisterBenchReport> {
    anyhow::ensure!(opts.count >= 1, "count must be at least 1");
    anyhow::ensure!(opts.concurrency >= 1, "concurrency must be at least 1");
    anyhow::ensure!(!opts.id_scope.trim().is_empty(), "the ID scope is required");
    let handshake_count = if opts.handshake_count == 0 {
        opts.count
    } else {
        opts.handshake_count
    };

    let trusted = ClientTlsConfig::with_ca_file(&opts.ca_pem_path)
        .with_context(|| format!("loading the CA {}", opts.ca_pem_path.display()))?;
    // Devices: a full handshake on every connection.
    let device_tls = trusted
        .clone()
        .without_resumption()
        .with_connect_timeout(HANDSHAKE_TIMEOUT);
    let service = DpsService::new(
        trusted,
        &opts.dps_host,
        opts.service_port,
        &opts.dps_service_connection_string,
    )?;

    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let group_id = format!("bench-{run}");
    let group_key = fleethub_core::keys::generate_key();
    service
        .create_group(&group_id, &group_key, &fleethub_core::keys::generate_key())
        .await?;
    tracing::info!(%group_id, count = opts.count, concurrency = opts.concurrency,
        transport = %opts.transport, "registration phase");

    let template = ProvisioningClient::builder()
        .global_endpoint(opts.dps_host.clone())
        .port(opts.port)
        .id_scope(opts.id_scope.clone())
        .transport(opts.transport)
        .tls_config(device_tls.clone())
        .timeout(REGISTRATION_TIMEOUT)
        .poll_policy(PollPolicy::IMMEDIATE);
    let registrations = run_phase(
        opts.count,
        opts.concurrency,
        Progress::with_mode("registrations", opts.count as u64, opts.progress),
        |i| {
            let builder = template
                .clone()
                .registration_id(format!("bench-{run}-{i}"))
                .group_key(group_key.clone());
            async move {
                let client = builder.build().map_err(|e| e.to_string())?;
                let started = Instant::now();
                match tokio::time::timeout(
                    REGISTRATION_TIMEOUT + Duration::from_secs(5),
                    client.register(),
                )
                .await
                {
                    Ok(Ok(_)) => Ok(started.elapsed()),
                    Ok(Err(e)) => Err(format!("{}: {e}", client.registration_id())),
                    Err(_) => Err(format!("{}: timed out", client.registration_id())),
                }
            }
        },
    )
    .await;

    tracing::info!(count = handshake_count, "TLS handshake phase");
    let handshakes = run_phase(
        handshake_count,
        opts.concurrency,
        Progress::with_mode("TLS handshakes", handshake_count as u64, opts.progress),
        |_| {
            let tls = device_tls.clone();
            let host = opts.dps_host.clone();
            let port = opts.port;
            async move {
                let started = Instant::now();
                // ClientTlsConfig::connect is bounded by HANDSHAKE_TIMEOUT.
                let mut stream = tls.connect(&host, port).await.map_err(|e| e.to_string())?;
                let latency = started.elapsed();
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, stream.shutdown()).await;
                Ok(latency)
            }
        },
    )
    .await;

    if let Err(e) = service.delete_group(&group_id).await {
        tracing::warn!("could not delete enrollment group {group_id}: {e:#}");
    }

    let registrations_per_sec =
        stats::rate(registrations.ok_latencies_ms.len(), registrations.seconds);
    let tls_handshakes_per_sec = stats::rate(handshakes.ok_latencies_ms.len(), handshakes.seconds);
    Ok(RegisterBenchReport {
        registrations_per_sec,
        tls_handshakes_per_sec,
        ratio: if tls_handshakes_per_sec > 0.0 {
            registrations_per_sec / tls_handshakes_per_sec
        } else {
            0.0
        },
        p50_ms: stats::percentile(&registrations.ok_latencies_ms, 50.0),
        p99_ms: stats::percentile(&registrations.ok_latencies_ms, 99.0),
        errors: registrations.errors + handshakes.errors,
        count: opts.count,
        concurrency: opts.concurrency,
        transport: opts.transport.to_string(),
        registered: registrations.ok_latencies_ms.len(),
        registration_errors: registrations.errors,
        registration_seconds: registrations.seconds,
        handshake_count,
        handshakes: handshakes.ok_latencies_ms.len(),
        handshake_errors: handshakes.errors,
        handshake_seconds: handshakes.seconds,
        handshake_p50_ms: stats::percentile(&handshakes.ok_latencies_ms, 50.0),
        enrollment_group_id: group_id,
        first_error: registrations.first_error.or(handshakes.first_error),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn phase_bounds_concurrency_and_counts_errors() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let in_flight = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let phase = run_phase(
            20,
            3,
            Progress::with_mode("t", 20, ProgressMode::Hidden),
            |i| {
                let in_flight = in_flight.clone();
                let peak = peak.clone();
                async move {
                    let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    match i {
                        7 => Err("boom".to_string()),
                        8 => panic!("task panics are counted, not propagated"),
                        _ => Ok(Duration::from_millis(i as u64)),
                    }
                }
            },
        )
        .await;
        assert_eq!(peak.load(Ordering::SeqCst), 3);
        assert_eq!(phase.ok_latencies_ms.len(), 18);
        assert_eq!(phase.errors, 2);
        assert!(phase.first_error.is_some());
        assert!(phase.ok_latencies_ms.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn report_serializes_camel_case() {
        let report = RegisterBenchReport {
            registrations_per_sec: 10.0,
            tls_handshakes_per_sec: 20.0,
            ratio: 0.5,
            p50_ms: 1.0,
            p99_ms: 2.0,
            errors: 0,
            count: 5,
            concurrency: 2,
            transport: "mqtt".into(),
            registered: 5,
            registration_errors: 0,
            registration_seconds: 0.5,
            handshake_count: 5,
            handshakes: 5,
            handshake_errors: 0,
            handshake_seconds: 0.25,
            handshake_p50_ms: 0.5,
            enrollment_group_id: "bench-x".into(),
            first_error: None,
        };
        let v = serde_json::to_value(&report).unwrap();
        for key in [
            "registrationsPerSec",
            "tlsHandshakesPerSec",
            "ratio",
            "p50Ms",
            "p99Ms",
            "errors",
            "count",
            "concurrency",
            "transport",
        ] {
            assert!(v.get(key).is_some(), "{key}");
        }
        assert!(v.get("firstError").is_none());
        assert!(
            report
                .to_string()
                .contains("ratio registrations/handshakes: 0.500")
        );
    }

    #[tokio::test]
    async fn invalid_options_are_rejected_before_any_io() {
        for opts in [
            RegisterBenchOptions {
                count: 0,
                ..Default::default()
            },
            RegisterBenchOptions {
                concurrency: 0,
                id_scope: "s".into(),
                ..Default::default()
            },
            RegisterBenchOptions::default(),
        ] {
            assert!(run_register_bench(opts).await.is_err());
        }
        let err = run_register_bench(RegisterBenchOptions {
            id_scope: "s".into(),
            ca_pem_path: "/nonexistent/ca.pem".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("/nonexistent/ca.pem"),
            "{err:#}"
        );
    }
}
