//! The publishing side of `bench consume`: bench devices created through the hub service API
//! (the telemetry benchmark's [`HubService`]) and connected over MQTT/TLS with the SDK's
//! [`MqttClient`]; they store the backlog as fast as PUBACKs come back, or publish at a paced
//! rate while recording when each PUBACK returned.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use fleethub_device::{ClientTlsConfig, MqttClient, MqttOptions};
use fleethub_iot_protocol::{hub, identity};
use fleethub_mqtt_codec::QoS;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::ConsumeBenchOptions;
use crate::hub_service::HubService;

/// Bound on one PUBACK.
const PUBACK_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on one device's TCP + TLS + MQTT connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Lifetime of the device SAS tokens.
const TOKEN_SECS: u64 = 4 * 3600;
/// Publish failures after which a phase gives up.
const MAX_ERRORS: u64 = 100;

/// When each paced message's PUBACK came back, by its sequence number.
pub(super) type AckTimes = Arc<Mutex<HashMap<u64, Instant>>>;

/// Connected bench devices.
pub(super) struct Fleet {
    service: Arc<HubService>,
    ids: Vec<String>,
    clients: Vec<(String, MqttClient)>,
}

/// What a publishing phase did.
#[derive(Debug, Default)]
pub(super) struct Published {
    pub acked: u64,
    pub errors: u64,
    pub seconds: f64,
    pub first_error: Option<String>,
}

impl Fleet {
    /// Creates `opts.devices` identities (`cb-{run}-{i}`) and connects each over MQTT/TLS.
    pub(super) async fn start(
        opts: &ConsumeBenchOptions,
        tls: &ClientTlsConfig,
        run: &str,
    ) -> anyhow::Result<Fleet> {
        let service = Arc::new(HubService::new(
            tls.clone(),
            &opts.hub_host,
            opts.https_port,
            &opts.hub_service_connection_string,
        )?);
        let ids: Vec<String> = (0..opts.devices).map(|i| format!("cb-{run}-{i}")).collect();
        let key = fleethub_core::keys::generate_key();
        let created = service
            .create_devices(&ids, &key, &fleethub_core::keys::generate_key())
            .await;
        if created.failed > 0 {
            let _ = service.delete_devices(&ids).await;
            bail!(
                "{} bench devices could not be created: {}",
                created.failed,
                created.first_error.unwrap_or_default()
            );
        }
        let mut fleet = Fleet {
            service,
            ids,
            clients: Vec::new(),
        };
        let mut tasks = JoinSet::new();
        for id in fleet.ids.clone() {
            let (tls, host, key, port) = (
                tls.clone(),
                opts.hub_host.clone(),
                key.clone(),
                opts.mqtt_port,
            );
            tasks.spawn(async move {
                let r =
                    tokio::time::timeout(CONNECT_TIMEOUT, connect(&tls, &host, port, &id, &key))
                        .await
                        .unwrap_or_else(|_| {
                            Err(anyhow::anyhow!("no CONNACK within {CONNECT_TIMEOUT:?}"))
                        });
                (id, r)
            });
        }
        let mut failure = None;
        while let Some(r) = tasks.join_next().await {
            match r {
                Ok((id, Ok(c))) => fleet.clients.push((id, c)),
                Ok((id, Err(e))) => {
                    failure.get_or_insert(format!("{id}: {e:#}"));
                }
                Err(e) => {
                    failure.get_or_insert(format!("connect task failed: {e}"));
                }
            }
        }
        if let Some(e) = failure {
            fleet.close().await;
            bail!("a bench device could not connect: {e}");
        }
        Ok(fleet)
    }

    /// Publishes exactly `count` messages of `payload` (fewer on errors), `inflight` at a
    /// time per device, as fast as PUBACKs come back; gives up at `deadline`.
    pub(super) async fn publish_backlog(
        &self,
        count: u64,
        inflight: usize,
        payload: Bytes,
        deadline: Instant,
    ) -> Published {
        let tickets = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let mut lanes = JoinSet::new();
        for (id, client) in &self.clients {
            for _ in 0..inflight.max(1) {
                let (client, topic, payload) = (client.clone(), topic(id), payload.clone());
                let (tickets, errors) = (tickets.clone(), errors.clone());
                lanes.spawn(async move {
                    let mut out = Published::default();
                    while tickets.fetch_add(1, Ordering::Relaxed) < count
                        && errors.load(Ordering::Relaxed) < MAX_ERRORS
                        && Instant::now() < deadline
                    {
                        let publish =
                            client.publish(topic.clone(), QoS::AtLeastOnce, payload.clone());
                        match tokio::time::timeout(PUBACK_TIMEOUT, publish).await {
                            Ok(Ok(())) => out.acked += 1,
                            Ok(Err(e)) => out.fail(&errors, e.to_string()),
                            Err(_) => {
                                out.fail(&errors, format!("no PUBACK within {PUBACK_TIMEOUT:?}"));
                            }
                        }
                    }
                    out
                });
            }
        }
        let mut total = collect(lanes).await;
        total.seconds = started.elapsed().as_secs_f64();
        total
    }

    /// Publishes `rate` messages per second in all for `duration`, each device on its own
    /// schedule; the body of message `n` is `{"consumeBench":"{run}","seq":n}` and the
    /// instant its PUBACK returned goes into `acks`.
    pub(super) async fn publish_paced(
        &self,
        rate: f64,
        duration: Duration,
        run: &str,
        acks: &AckTimes,
    ) -> Published {
        let interval = Duration::from_secs_f64(self.clients.len() as f64 / rate);
        let seq = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let end = started + duration;
        let mut lanes = JoinSet::new();
        for (i, (id, client)) in self.clients.iter().enumerate() {
            let (client, topic, run) = (client.clone(), topic(id), run.to_string());
            let (seq, errors, acks) = (seq.clone(), errors.clone(), acks.clone());
            // Spread the devices' first publishes over one interval.
            let mut at = started + interval.mul_f64(i as f64 / self.clients.len() as f64);
            lanes.spawn(async move {
                let mut out = Published::default();
                while at < end && errors.load(Ordering::Relaxed) < MAX_ERRORS {
                    tokio::time::sleep_until(at).await;
                    at += interval;
                    let n = seq.fetch_add(1, Ordering::Relaxed);
                    let body = Bytes::from(format!(r#"{{"consumeBench":"{run}","seq":{n}}}"#));
                    let publish = client.publish(topic.clone(), QoS::AtLeastOnce, body);
                    match tokio::time::timeout(PUBACK_TIMEOUT, publish).await {
                        Ok(Ok(())) => {
                            let now = Instant::now();
                            acks.lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .insert(n, now);
                            out.acked += 1;
                        }
                        Ok(Err(e)) => out.fail(&errors, e.to_string()),
                        Err(_) => out.fail(&errors, format!("no PUBACK within {PUBACK_TIMEOUT:?}")),
                    }
                }
                out
            });
        }
        let mut total = collect(lanes).await;
        total.seconds = started.elapsed().as_secs_f64();
        total
    }

    /// Disconnects the devices and deletes their identities (best effort, bounded).
    pub(super) async fn close(self) {
        for (_, c) in &self.clients {
            let _ = tokio::time::timeout(Duration::from_secs(5), c.disconnect()).await;
        }
        let deleted = self.service.delete_devices(&self.ids).await;
        if deleted.failed > 0 {
            eprintln!(
                "warning: {} bench devices not deleted: {}",
                deleted.failed,
                deleted.first_error.unwrap_or_default()
            );
        }
    }
}

impl Published {
    fn fail(&mut self, errors: &AtomicU64, e: String) {
        self.errors += 1;
        errors.fetch_add(1, Ordering::Relaxed);
        self.first_error.get_or_insert(e);
    }
}

async fn collect(mut lanes: JoinSet<Published>) -> Published {
    let mut total = Published::default();
    while let Some(r) = lanes.join_next().await {
        match r {
            Ok(p) => {
                total.acked += p.acked;
                total.errors += p.errors;
                if total.first_error.is_none() {
                    total.first_error = p.first_error;
                }
            }
            Err(e) => {
                total.errors += 1;
                total
                    .first_error
                    .get_or_insert(format!("publish task failed: {e}"));
            }
        }
    }
    total
}

fn topic(id: &str) -> String {
    format!("devices/{id}/messages/events/")
}

async fn connect(
    tls: &ClientTlsConfig,
    host: &str,
    port: u16,
    id: &str,
    key: &str,
) -> anyhow::Result<MqttClient> {
    let expiry = fleethub_core::time_util::now_unix() + TOKEN_SECS;
    let token = fleethub_core::sas::build_token(
        &identity::hub_sas_resource(host, id, None),
        key,
        expiry,
        None,
    )
    .context("cannot sign a device SAS token")?;
    let opts = MqttOptions::new(id).with_credentials(
        identity::hub_username(host, id, None, hub::DEVICE_API_VERSION, None),
        token.into_bytes(),
    );
    let stream = tls.connect(host, port).await?;
    let (client, _incoming) = MqttClient::connect(stream, opts).await?;
    Ok(client)
}
