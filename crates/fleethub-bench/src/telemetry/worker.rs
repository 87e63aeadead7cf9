//! One load-generating worker: connects its share of the devices over MQTT/TLS or AMQPS
//! (`device_conn`), reports how many connected, waits for the go signal, then publishes QoS 1 telemetry (or holds
//! the idle connections) for the measurement window and reports what it saw.
//!
//! The same code runs in the benchmark's own process ([`super::Launcher::InProcess`]) or in
//! a child process ([`worker_stdio_main`]: the spec as one JSON line on stdin, `go` as the
//! next line; events as JSON lines on stdout).

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use fleethub_device::{ClientTlsConfig, MqttClient, MqttOptions};

use super::device_conn::{AmqpDevice, DeviceConn, DeviceTransport};
use fleethub_iot_protocol::{hub, identity};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::Target;
use crate::stats::{Histogram, SparseHistogram};

/// api-version in the hub CONNECT user name.
pub const DEVICE_API_VERSION: &str = hub::DEVICE_API_VERSION;
/// Bound on one PUBACK (a missing one is an error, unless the window ended first).
pub const PUBACK_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on the DISCONNECT of all clients at the end.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Lifetime of the device SAS tokens beyond the run.
const TOKEN_SLACK_SECS: u64 = 3600;

/// What one worker does (sent to a child process as JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerSpec {
    pub worker: usize,
    pub target: Target,
    /// TLS server name (SNI, certificate check) and, for fleethub, the hub host of the SAS.
    pub host: String,
    /// Address dialled instead of `host` (the certificate is still checked for `host`).
    pub dial: Option<String>,
    /// MQTT/TLS port, or the AMQPS port with [`DeviceTransport::Amqp`].
    pub port: u16,
    /// MQTT (default) or AMQP.
    #[serde(default)]
    pub transport: DeviceTransport,
    pub ca_pem_path: PathBuf,
    /// Symmetric key of every device (fleethub); `None`: no credentials (mosquitto).
    pub device_key: Option<String>,
    pub device_ids: Vec<String>,
    /// Messages per second per device; `None`: as fast as the window allows.
    pub rate_per_device: Option<f64>,
    /// QoS 1 publishes in flight per device.
    pub inflight: usize,
    pub payload_bytes: usize,
    pub warmup_ms: u64,
    pub duration_ms: u64,
    pub connect_only: bool,
    pub keep_alive_secs: u64,
    /// Connections being set up at once.
    pub connect_concurrency: usize,
    /// Bound on the whole connect phase.
    pub connect_phase_ms: u64,
    /// Bound on the messages this worker publishes.
    pub max_messages: u64,
}

/// Reported once the connect phase is over.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConnectedReport {
    pub connected: usize,
    pub errors: u64,
    pub first_error: Option<String>,
    pub seconds: f64,
    /// TCP connect to CONNACK.
    pub latency: SparseHistogram,
}

/// Reported after the window.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkerResult {
    /// PUBACKs received inside the measurement window.
    pub acked: u64,
    /// PUBACKs received during the warm-up.
    pub warmup_acked: u64,
    /// Failed publishes (connection lost, no PUBACK within [`PUBACK_TIMEOUT`]).
    pub errors: u64,
    pub first_error: Option<String>,
    /// Publishes still waiting for their PUBACK when the window closed (not errors).
    pub in_flight_at_end: u64,
    /// Clients still connected when the window closed.
    pub connected_at_end: usize,
    /// Publish -> PUBACK of the messages counted in `acked`.
    pub latency: SparseHistogram,
}

/// A line a child worker prints on stdout.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "camelCase")]
pub enum WorkerEvent {
    Connected(ConnectedReport),
    Result(WorkerResult),
}

/// The device's SAS token, valid for the whole run.
fn device_token(spec: &WorkerSpec, id: &str, key: &str) -> anyhow::Result<String> {
    let expiry = fleethub_core::time_util::now_unix()
        + (spec.connect_phase_ms + spec.warmup_ms + spec.duration_ms) / 1000
        + TOKEN_SLACK_SECS;
    fleethub_core::sas::build_token(
        &identity::hub_sas_resource(&spec.host, id, None),
        key,
        expiry,
        None,
    )
    .context("cannot sign a device SAS token")
}

fn device_options(spec: &WorkerSpec, id: &str) -> anyhow::Result<MqttOptions> {
    let opts =
        MqttOptions::new(id).with_keep_alive(Duration::from_secs(spec.keep_alive_secs.max(1)));
    Ok(match (&spec.target, &spec.device_key) {
        (Target::Fleethub, Some(key)) => {
            let token = device_token(spec, id, key)?;
            opts.with_credentials(
                identity::hub_username(&spec.host, id, None, DEVICE_API_VERSION, None),
                token.into_bytes(),
            )
        }
        _ => opts,
    })
}

async fn connect_one(
    tls: &ClientTlsConfig,
    spec: &WorkerSpec,
    id: &str,
) -> Result<DeviceConn, String> {
    if spec.transport == DeviceTransport::Amqp {
        let key = spec
            .device_key
            .as_deref()
            .ok_or("AMQP devices need a device key")?;
        let token = device_token(spec, id, key).map_err(|e| format!("{e:#}"))?;
        let d = AmqpDevice::connect(tls, &spec.host, spec.port, id, &token).await?;
        return Ok(DeviceConn::Amqp(Arc::new(d)));
    }
    let opts = device_options(spec, id).map_err(|e| format!("{e:#}"))?;
    let stream = tls
        .connect(&spec.host, spec.port)
        .await
        .map_err(|e| e.to_string())?;
    let (client, _incoming) = MqttClient::connect(stream, opts)
        .await
        .map_err(|e| e.to_string())?;
    Ok(DeviceConn::Mqtt(client))
}

/// Connects every device of the spec, `connect_concurrency` at a time, within
/// `connect_phase_ms`. Returns the clients (in no particular order) and the report.
async fn connect_all(
    spec: &Arc<WorkerSpec>,
    tls: &ClientTlsConfig,
) -> (Vec<(usize, DeviceConn)>, ConnectedReport) {
    let started = Instant::now();
    let phase_end = started + Duration::from_millis(spec.connect_phase_ms);
    let permits = Arc::new(Semaphore::new(spec.connect_concurrency.max(1)));
    let mut tasks = JoinSet::new();
    let mut report = ConnectedReport::default();
    let mut latency = Histogram::new();
    let mut clients = Vec::with_capacity(spec.device_ids.len());
    for i in 0..spec.device_ids.len() {
        let Ok(Ok(permit)) =
            tokio::time::timeout_at(phase_end, permits.clone().acquire_owned()).await
        else {
            let left = (spec.device_ids.len() - i) as u64;
            report.errors += left;
            report
                .first_error
                .get_or_insert(format!("{left} devices not connected: connect phase over"));
            break;
        };
        let (spec, tls) = (spec.clone(), tls.clone());
        tasks.spawn(async move {
            let _permit = permit;
            let id = &spec.device_ids[i];
            let t0 = Instant::now();
            let r = match tokio::time::timeout_at(phase_end, connect_one(&tls, &spec, id)).await {
                Ok(Ok(c)) => Ok((c, t0.elapsed())),
                Ok(Err(e)) => Err(format!("{id}: {e}")),
                Err(_) => Err(format!("{id}: connect phase over")),
            };
            (i, r)
        });
        while let Some(r) = tasks.try_join_next() {
            record_connect(r, &mut clients, &mut report, &mut latency);
        }
    }
    while let Some(r) = tasks.join_next().await {
        record_connect(r, &mut clients, &mut report, &mut latency);
    }
    report.connected = clients.len();
    report.seconds = started.elapsed().as_secs_f64();
    report.latency = latency.to_sparse();
    (clients, report)
}

type ConnectOutcome = (usize, Result<(DeviceConn, Duration), String>);

fn record_connect(
    r: Result<ConnectOutcome, tokio::task::JoinError>,
    clients: &mut Vec<(usize, DeviceConn)>,
    report: &mut ConnectedReport,
    latency: &mut Histogram,
) {
    match r {
        Ok((i, Ok((c, d)))) => {
            latency.record(d);
            clients.push((i, c));
        }
        Ok((_, Err(e))) => {
            report.errors += 1;
            report.first_error.get_or_insert(e);
        }
        Err(e) => {
            report.errors += 1;
            report
                .first_error
                .get_or_insert(format!("connect task failed: {e}"));
        }
    }
}

#[derive(Default)]
struct SlotStats {
    acked: u64,
    warmup_acked: u64,
    errors: u64,
    first_error: Option<String>,
    in_flight_at_end: u64,
    latency: Histogram,
}

struct Window {
    measure_from: Instant,
    end: Instant,
}

/// One publishing lane of a device: publish, wait for the PUBACK, repeat (on a schedule
/// when rate-limited); `inflight` lanes per device make its window.
async fn publish_lane(
    client: DeviceConn,
    topic: String,
    payload: Bytes,
    schedule: Option<(Instant, Duration)>,
    w: Arc<Window>,
    max: u64,
) -> SlotStats {
    let mut st = SlotStats::default();
    let mut next = schedule.map(|(first, _)| first);
    for _ in 0..max {
        if let (Some(at), Some((_, interval))) = (next.as_mut(), schedule) {
            if *at >= w.end {
                break;
            }
            tokio::time::sleep_until(*at).await;
            *at += interval;
        }
        let t0 = Instant::now();
        if t0 >= w.end {
            break;
        }
        let deadline = (t0 + PUBACK_TIMEOUT).min(w.end);
        let publish = client.send(&topic, payload.clone());
        match tokio::time::timeout_at(deadline, publish).await {
            Ok(Ok(())) => {
                let t1 = Instant::now();
                if t1 < w.measure_from {
                    st.warmup_acked += 1;
                } else if t1 <= w.end {
                    st.acked += 1;
                    st.latency.record(t1 - t0);
                } else {
                    st.in_flight_at_end += 1;
                }
            }
            Ok(Err(e)) => {
                st.errors += 1;
                st.first_error.get_or_insert(e);
                if client.is_closed() {
                    break;
                }
            }
            Err(_) if deadline >= w.end => {
                st.in_flight_at_end += 1;
                break;
            }
            Err(_) => {
                st.errors += 1;
                st.first_error
                    .get_or_insert(format!("no PUBACK within {PUBACK_TIMEOUT:?}"));
            }
        }
    }
    st
}

/// A payload of exactly `n` bytes: a small JSON document padded with spaces (truncated when
/// `n` is smaller than the document).
pub fn payload(n: usize) -> Bytes {
    let mut body = br#"{"temperature":21.5,"humidity":40,"pad":""}"#.to_vec();
    body.truncate(n);
    body.resize(n, b' ');
    Bytes::from(body)
}

/// Runs one worker: connect, report through `connected`, wait for `go` (false: stop), run
/// the window, disconnect. The result is ready before the clients are disconnected.
pub async fn run_worker<G>(
    spec: WorkerSpec,
    connected: oneshot::Sender<ConnectedReport>,
    go: G,
    result: oneshot::Sender<WorkerResult>,
) -> anyhow::Result<()>
where
    G: Future<Output = bool>,
{
    let mut tls = ClientTlsConfig::with_ca_file(&spec.ca_pem_path)
        .with_context(|| format!("loading the CA {}", spec.ca_pem_path.display()))?
        .without_resumption()
        .with_connect_timeout(Duration::from_secs(30));
    if let Some(dial) = &spec.dial {
        tls = tls.with_address_override(spec.host.clone(), dial.clone());
    }
    let spec = Arc::new(spec);
    let (clients, report) = connect_all(&spec, &tls).await;
    let _ = connected.send(report);
    if !go.await {
        return Ok(());
    }
    let started = Instant::now();
    let (warmup, duration) = if spec.connect_only {
        (Duration::ZERO, Duration::from_millis(spec.duration_ms))
    } else {
        (
            Duration::from_millis(spec.warmup_ms),
            Duration::from_millis(spec.duration_ms),
        )
    };
    let w = Arc::new(Window {
        measure_from: started + warmup,
        end: started + warmup + duration,
    });
    let mut out = WorkerResult::default();
    if spec.connect_only {
        // Idle: the clients' own tasks answer keep-alive; bounded by the window.
        tokio::time::sleep_until(w.end).await;
    } else {
        let body = payload(spec.payload_bytes);
        let inflight = spec.inflight.max(1);
        let lanes = (clients.len() * inflight).max(1) as u64;
        let per_lane_max = spec.max_messages.div_ceil(lanes).max(1);
        let mut tasks = JoinSet::new();
        for (n, (i, client)) in clients.iter().enumerate() {
            let topic = hub::telemetry_prefix(&spec.device_ids[*i], None);
            for k in 0..inflight {
                // Lanes of a rate-limited device start spread over one interval.
                let schedule = spec.rate_per_device.map(|r| {
                    let interval = Duration::from_secs_f64(inflight as f64 / r.max(1e-6));
                    let phase = ((n * inflight + k) as f64 * 0.618_033_988_75).fract();
                    (started + interval.mul_f64(phase), interval)
                });
                tasks.spawn(publish_lane(
                    client.clone(),
                    topic.clone(),
                    body.clone(),
                    schedule,
                    w.clone(),
                    per_lane_max,
                ));
            }
        }
        let mut latency = Histogram::new();
        while let Some(r) = tasks.join_next().await {
            match r {
                Ok(st) => {
                    out.acked += st.acked;
                    out.warmup_acked += st.warmup_acked;
                    out.errors += st.errors;
                    out.in_flight_at_end += st.in_flight_at_end;
                    if out.first_error.is_none() {
                        out.first_error = st.first_error;
                    }
                    latency.merge(&st.latency);
                }
                Err(e) => {
                    out.errors += 1;
                    out.first_error
                        .get_or_insert(format!("publish task failed: {e}"));
                }
            }
        }
        out.latency = latency.to_sparse();
    }
    out.connected_at_end = clients.iter().filter(|(_, c)| !c.is_closed()).count();
    let _ = result.send(out);
    disconnect_all(clients).await;
    Ok(())
}

async fn disconnect_all(clients: Vec<(usize, DeviceConn)>) {
    let mut tasks = JoinSet::new();
    for (_, c) in clients {
        tasks.spawn(async move {
            let _ = tokio::time::timeout(DISCONNECT_TIMEOUT, c.disconnect()).await;
        });
    }
    let _ = tokio::time::timeout(DISCONNECT_TIMEOUT + Duration::from_secs(1), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
}

async fn print_event(ev: &WorkerEvent) -> anyhow::Result<()> {
    let mut line = serde_json::to_vec(ev)?;
    line.push(b'\n');
    let mut out = tokio::io::stdout();
    out.write_all(&line).await?;
    out.flush().await?;
    Ok(())
}

/// Entry point of a child worker process (`fleethub bench telemetry --worker`): reads the
/// [`WorkerSpec`] as one JSON line on stdin, prints [`WorkerEvent::Connected`], waits for a
/// `go` line, prints [`WorkerEvent::Result`], disconnects and returns.
pub async fn worker_stdio_main() -> anyhow::Result<()> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let first = tokio::time::timeout(Duration::from_mins(1), lines.next_line())
        .await
        .context("no worker spec on stdin within 60 s")??
        .context("stdin closed before the worker spec")?;
    let spec: WorkerSpec = serde_json::from_str(&first).context("invalid worker spec")?;
    let go_timeout = Duration::from_millis(spec.connect_phase_ms) + Duration::from_mins(2);
    let (ctx, crx) = oneshot::channel();
    let (rtx, rrx) = oneshot::channel();
    let printer = async {
        if let Ok(report) = crx.await {
            print_event(&WorkerEvent::Connected(report)).await?;
        }
        if let Ok(result) = rrx.await {
            print_event(&WorkerEvent::Result(result)).await?;
        }
        anyhow::Ok(())
    };
    let go = async move {
        matches!(
            tokio::time::timeout(go_timeout, lines.next_line()).await,
            Ok(Ok(Some(l))) if l.trim() == "go"
        )
    };
    let (worker, printed) = tokio::join!(run_worker(spec, ctx, go, rtx), printer);
    worker?;
    printed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_has_the_requested_size() {
        for n in [0, 1, 10, 43, 200, 4096] {
            assert_eq!(payload(n).len(), n);
        }
        assert!(payload(200).starts_with(b"{\"temperature\""));
    }

    #[test]
    fn fleethub_credentials() {
        let spec = WorkerSpec {
            worker: 0,
            target: Target::Fleethub,
            host: "hub.test".into(),
            dial: None,
            port: 1,
            transport: DeviceTransport::Mqtt,
            ca_pem_path: PathBuf::new(),
            device_key: Some(fleethub_core::keys::generate_key()),
            device_ids: vec!["d1".into()],
            rate_per_device: None,
            inflight: 1,
            payload_bytes: 10,
            warmup_ms: 0,
            duration_ms: 1000,
            connect_only: false,
            keep_alive_secs: 30,
            connect_concurrency: 1,
            connect_phase_ms: 1000,
            max_messages: 10,
        };
        let o = device_options(&spec, "d1").unwrap();
        assert_eq!(
            o.username.as_deref(),
            Some("hub.test/d1/?api-version=2021-04-12")
        );
        let token = String::from_utf8(o.password.unwrap()).unwrap();
        assert!(token.starts_with("SharedAccessSignature sr=hub.test%2Fdevices%2Fd1&sig="));
        assert_eq!(o.keep_alive, Duration::from_secs(30));
        let spec = WorkerSpec {
            target: Target::Mosquitto,
            device_key: None,
            ..spec
        };
        let o = device_options(&spec, "d1").unwrap();
        assert!(o.username.is_none() && o.password.is_none());
    }
}
