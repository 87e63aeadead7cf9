//! `fleethub bench consume`: how fast one Event Hubs-style consumer reads a stored backlog
//! from the hub's built-in endpoint, against the server's own REST read of the same log, and
//! the end-to-end latency from a device's PUBACK to a live consumer.
//!
//! 1. asks the hub service API for the partitions and their sequence numbers; when the
//!    partitions read hold fewer than `backlog` events, creates `devices` bench devices and
//!    publishes the difference over MQTT/TLS (QoS 1, `inflight` per device, as fast as
//!    PUBACKs come back);
//! 2. opens AMQPS connections (CBS put-token with the hub's service policy, sessions): one
//!    per partition (`layout` [`Layout::ConnectionPerPartition`], as the official Python
//!    consumer does), one with a session per partition ([`Layout::SessionPerPartition`], as
//!    the Node consumer does) or one session for all ([`Layout::Shared`]), then reads every partition from its
//!    start to its last sequence number, one receiver per partition with `credit` link credit
//!    each, accepting every delivery ([`Settle::Accept`], as the Python and Node consumers do)
//!    or asking for pre-settled transfers ([`Settle::OnSend`], as the .NET consumer does):
//!    events/s from the first attach to the last partition done;
//! 3. the baseline: `GET /messages/events` in pages of 1000 from the start (a consumer group
//!    of its own), up to the same number of events: events/s;
//! 4. attaches a receiver at `@latest` on every partition, publishes `latency_rate` messages/s
//!    for `latency_secs`, and takes, per message, the instant the consumer got it minus the
//!    instant its PUBACK returned: p50, p99;
//! 5. deletes the bench devices (the stored events stay: a later run reuses them).
//!
//! Every phase is bounded in time (`phase_timeout`, the live window) and in count.

mod devices;
mod event_hubs;
mod report;
mod rest_read;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, anyhow};
use fe2o3_amqp_types::messaging::Body;
use fe2o3_amqp_types::primitives::Value;
use fleethub_device::ClientTlsConfig;
use tokio::task::JoinSet;
use tokio::time::Instant;

use devices::{AckTimes, Fleet};
use event_hubs::{Consumer, Endpoint};
pub use event_hubs::{Layout, Settle};
pub use report::ConsumeBenchReport;

/// How long the live consumer may still get events after publishing stopped.
const DRAIN: Duration = Duration::from_secs(5);

/// Settings of [`run_consume_bench`].
#[derive(Debug, Clone)]
pub struct ConsumeBenchOptions {
    /// Events the partitions must hold before reading (published when missing).
    pub backlog: u64,
    /// Partitions to read, from 0 (`None`: all of the hub's).
    pub partitions: Option<u32>,
    /// Bench devices publishing the backlog and the live messages.
    pub devices: usize,
    /// QoS 1 publishes in flight per device while filling the backlog.
    pub inflight: usize,
    pub payload_bytes: usize,
    /// Live phase: aggregate messages per second, and its length.
    pub latency_rate: f64,
    pub latency_secs: u64,
    /// Link credit of each receiver.
    pub credit: u32,
    /// Connections of the backlog read.
    pub layout: Layout,
    /// How the backlog read's receivers settle.
    pub settle: Settle,
    pub consumer_group: String,
    /// Bound on filling the backlog and on each read.
    pub phase_timeout: Duration,
    /// TLS server name and hub host name.
    pub hub_host: String,
    /// Address dialled instead of `hub_host` (e.g. 127.0.0.1).
    pub dial: Option<String>,
    pub mqtt_port: u16,
    pub https_port: u16,
    pub amqp_port: u16,
    pub ca_pem_path: PathBuf,
    /// `HostName=...;SharedAccessKeyName=...;SharedAccessKey=...` with `ServiceConnect`.
    pub hub_service_connection_string: String,
}

impl Default for ConsumeBenchOptions {
    fn default() -> Self {
        ConsumeBenchOptions {
            backlog: 1_000_000,
            partitions: None,
            devices: 32,
            inflight: 16,
            payload_bytes: 200,
            latency_rate: 200.0,
            latency_secs: 10,
            credit: 1000,
            layout: Layout::default(),
            settle: Settle::default(),
            consumer_group: "$Default".into(),
            phase_timeout: Duration::from_hours(1),
            hub_host: "localhost".into(),
            dial: None,
            mqtt_port: 8883,
            https_port: 443,
            amqp_port: 5671,
            ca_pem_path: PathBuf::new(),
            hub_service_connection_string: String::new(),
        }
    }
}

fn validate(o: &ConsumeBenchOptions) -> anyhow::Result<()> {
    anyhow::ensure!(o.backlog >= 1, "backlog must be at least 1");
    anyhow::ensure!(
        (1..=10_000).contains(&o.devices),
        "devices must be 1..=10000"
    );
    anyhow::ensure!((1..=64).contains(&o.inflight), "inflight must be 1..=64");
    anyhow::ensure!(
        (1..=100_000).contains(&o.credit),
        "credit must be 1..=100000"
    );
    anyhow::ensure!(
        o.latency_rate > 0.0 && o.latency_rate <= 100_000.0,
        "latency-rate must be in (0, 100000]"
    );
    anyhow::ensure!(
        (1..=3600).contains(&o.latency_secs),
        "latency-secs must be 1..=3600"
    );
    anyhow::ensure!(
        o.payload_bytes <= 256 * 1024,
        "payload-bytes must be at most 262144"
    );
    anyhow::ensure!(o.partitions != Some(0), "partitions must be at least 1");
    Ok(())
}

/// Runs the benchmark (see the module docs).
pub async fn run_consume_bench(opts: ConsumeBenchOptions) -> anyhow::Result<ConsumeBenchReport> {
    validate(&opts)?;
    let mut tls = ClientTlsConfig::with_ca_file(&opts.ca_pem_path)
        .with_context(|| format!("loading the CA {}", opts.ca_pem_path.display()))?;
    if let Some(dial) = &opts.dial {
        tls = tls.with_address_override(opts.hub_host.clone(), dial.clone());
    }
    let rest = rest_read::client(
        &tls,
        &opts.hub_host,
        opts.https_port,
        &opts.hub_service_connection_string,
    )?;
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let mut report = ConsumeBenchReport {
        backlog_requested: opts.backlog,
        devices: opts.devices,
        credit: opts.credit,
        layout: opts.layout,
        settle: opts.settle,
        latency_rate: opts.latency_rate,
        ..Default::default()
    };

    // 1. The backlog.
    let (partitions, mut stored) = partition_counts(&rest, opts.partitions).await?;
    report.partitions = partitions;
    let fleet = Fleet::start(&opts, &tls, &run).await?;
    let result = measure(
        &opts,
        &tls,
        &rest,
        &fleet,
        &run,
        partitions,
        &mut stored,
        &mut report,
    )
    .await;
    fleet.close().await;
    result?;
    Ok(report)
}

/// Phases 1-4 with the devices connected.
#[allow(clippy::too_many_arguments)]
async fn measure(
    opts: &ConsumeBenchOptions,
    tls: &ClientTlsConfig,
    rest: &fleethub_service_client::ServiceClient<fleethub_service_client::HttpsTransport>,
    fleet: &Fleet,
    run: &str,
    partitions: u32,
    stored: &mut HashMap<u32, (i64, i64)>,
    report: &mut ConsumeBenchReport,
) -> anyhow::Result<()> {
    let held: u64 = stored.values().map(|&(b, l)| count(b, l)).sum();
    if held < opts.backlog {
        let missing = opts.backlog - held;
        eprintln!(
            "publishing {missing} events from {} devices ...",
            opts.devices
        );
        let p = fleet
            .publish_backlog(
                missing,
                opts.inflight,
                crate::telemetry::worker::payload(opts.payload_bytes),
                Instant::now() + opts.phase_timeout,
            )
            .await;
        report.backlog_published = p.acked;
        report.backlog_publish_sec = p.seconds;
        report.backlog_publish_per_sec = crate::stats::rate(p.acked as usize, p.seconds);
        report.publish_errors = p.errors;
        report.first_error = p.first_error;
        *stored = partition_counts(rest, Some(partitions)).await?.1;
    }
    report.backlog_events = stored.values().map(|&(b, l)| count(b, l)).sum();

    // 2. The Event Hubs-style read.
    let endpoint = Endpoint {
        tls,
        hub_host: &opts.hub_host,
        amqp_port: opts.amqp_port,
        connection_string: &opts.hub_service_connection_string,
        consumer_group: &opts.consumer_group,
        credit: opts.credit,
        settle: opts.settle,
    };
    eprintln!("reading {} events over AMQP ...", report.backlog_events);
    let (connections, sessions) = match opts.layout {
        Layout::ConnectionPerPartition => (partitions.max(1), 1),
        Layout::SessionPerPartition => (1, partitions.max(1)),
        Layout::Shared => (1, 1),
    };
    let mut consumers = Vec::new();
    for _ in 0..connections {
        let mut consumer = Consumer::open(&endpoint).await?;
        consumer.sessions(sessions as usize).await?;
        consumers.push(consumer);
    }
    let last: HashMap<u32, i64> = stored.iter().map(|(&p, &(_, l))| (p, l)).collect();
    let started = Instant::now();
    let read = tokio::time::timeout(
        opts.phase_timeout,
        event_hubs::read_backlog(&mut consumers, &last),
    )
    .await
    .map_err(|_| anyhow!("the AMQP read was not done within {:?}", opts.phase_timeout))??;
    report.consume_sec = started.elapsed().as_secs_f64();
    report.events_read = read;
    report.events_per_sec = crate::stats::rate(read as usize, report.consume_sec);

    // 3. The baseline.
    eprintln!("reading {} events over REST ...", report.backlog_events);
    let group = format!("bench-consume-{run}");
    let (n, secs) = rest_read::read_all(
        rest,
        &group,
        report.backlog_events,
        Instant::now() + opts.phase_timeout,
    )
    .await?;
    report.baseline = format!("GET /messages/events, pages of {}", rest_read::PAGE);
    report.baseline_events = n;
    report.baseline_sec = secs;
    report.baseline_events_per_sec = crate::stats::rate(n as usize, secs);
    if report.baseline_events_per_sec > 0.0 {
        report.ratio = report.events_per_sec / report.baseline_events_per_sec;
    }

    // 4. The live latency.
    eprintln!(
        "live: {} msg/s for {} s to @latest receivers ...",
        opts.latency_rate, opts.latency_secs
    );
    let result = live_latency(opts, &mut consumers[0], fleet, run, partitions, report).await;
    for consumer in consumers {
        consumer.close().await;
    }
    result
}

/// Phase 4 (see the module docs).
async fn live_latency(
    opts: &ConsumeBenchOptions,
    consumer: &mut Consumer,
    fleet: &Fleet,
    run: &str,
    partitions: u32,
    report: &mut ConsumeBenchReport,
) -> anyhow::Result<()> {
    let received: AckTimes = Arc::new(Mutex::new(HashMap::new()));
    let mut receivers = JoinSet::new();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let marker = format!(r#""consumeBench":"{run}""#);
    for p in 0..partitions {
        let mut rx = consumer
            .receiver(p, "amqp.annotation.x-opt-offset > '@latest'")
            .await?;
        let (received, marker, mut stop) = (received.clone(), marker.clone(), stop_rx.clone());
        receivers.spawn(async move {
            loop {
                let d = tokio::select! {
                    d = rx.recv::<Body<Value>>() => d,
                    _ = stop.changed() => break,
                };
                let Ok(d) = d else { break };
                let now = Instant::now();
                if let Some(seq) =
                    event_hubs::body_bytes(d.message()).and_then(|b| live_seq(b, &marker))
                {
                    received
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert(seq, now);
                }
            }
            let _ = tokio::time::timeout(Duration::from_secs(10), rx.close()).await;
        });
    }
    let acks: AckTimes = Arc::new(Mutex::new(HashMap::new()));
    let duration = Duration::from_secs(opts.latency_secs);
    let p = fleet
        .publish_paced(opts.latency_rate, duration, run, &acks)
        .await;
    report.latency_secs = p.seconds;
    report.publish_errors += p.errors;
    if report.first_error.is_none() {
        report.first_error = p.first_error;
    }
    // Bounded wait for the last events.
    let until = Instant::now() + DRAIN;
    loop {
        let got = received
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len();
        if got as u64 >= p.acked || Instant::now() >= until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop_tx.send(true);
    while receivers.join_next().await.is_some() {}
    let acks = acks
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let received = received
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut ms: Vec<f64> = acks
        .iter()
        .filter_map(|(seq, acked)| {
            let got = *received.get(seq)?;
            Some(if got >= *acked {
                (got - *acked).as_secs_f64() * 1000.0
            } else {
                -((*acked - got).as_secs_f64() * 1000.0)
            })
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    report.latency_sent = acks.len() as u64;
    report.latency_received = ms.len() as u64;
    report.latency_p50_ms = crate::stats::percentile(&ms, 50.0);
    report.latency_p99_ms = crate::stats::percentile(&ms, 99.0);
    report.latency_max_ms = ms.last().copied().unwrap_or(0.0);
    Ok(())
}

/// The `seq` of a live-phase body of this run (`{"consumeBench":"{run}","seq":n}`).
fn live_seq(body: &[u8], marker: &str) -> Option<u64> {
    let text = std::str::from_utf8(body).ok()?;
    if !text.contains(marker) {
        return None;
    }
    serde_json::from_str::<serde_json::Value>(text).ok()?["seq"].as_u64()
}

/// Events stored between two sequence numbers (-1: none ever stored).
fn count(begin: i64, last: i64) -> u64 {
    if last < 0 || begin < 0 || last < begin {
        0
    } else {
        (last - begin + 1).unsigned_abs()
    }
}

/// The partitions to read (`want`, or all) and each one's (begin, last) sequence numbers.
async fn partition_counts(
    rest: &fleethub_service_client::ServiceClient<fleethub_service_client::HttpsTransport>,
    want: Option<u32>,
) -> anyhow::Result<(u32, HashMap<u32, (i64, i64)>)> {
    let info = rest
        .event_hub_info()
        .await
        .map_err(|e| anyhow!("GET /messages/events/partitions failed: {e}"))?;
    let n = want.unwrap_or(info.partition_count);
    anyhow::ensure!(
        n <= info.partition_count,
        "the hub has {} partitions, not {n}",
        info.partition_count
    );
    let mut out = HashMap::new();
    for p in info.partitions {
        let id: u32 = p
            .partition_id
            .parse()
            .context("a partition id is not a number")?;
        if id < n {
            let empty = p.is_empty;
            out.insert(
                id,
                if empty {
                    (-1, -1)
                } else {
                    (p.begin_sequence_number, p.last_enqueued_sequence_number)
                },
            );
        }
    }
    Ok((n, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_between_sequence_numbers() {
        assert_eq!(count(-1, -1), 0);
        assert_eq!(count(0, 0), 1);
        assert_eq!(count(5, 104), 100);
    }

    #[test]
    fn live_bodies_of_this_run_only() {
        let m = r#""consumeBench":"ab12""#;
        assert_eq!(live_seq(br#"{"consumeBench":"ab12","seq":7}"#, m), Some(7));
        assert_eq!(live_seq(br#"{"consumeBench":"zz99","seq":7}"#, m), None);
        assert_eq!(live_seq(b"\xff", m), None);
    }

    #[test]
    fn options_are_checked() {
        assert!(validate(&ConsumeBenchOptions::default()).is_ok());
        let bad = ConsumeBenchOptions {
            backlog: 0,
            ..Default::default()
        };
        assert!(validate(&bad).is_err());
        let bad = ConsumeBenchOptions {
            partitions: Some(0),
            ..Default::default()
        };
        assert!(validate(&bad).is_err());
    }
}
