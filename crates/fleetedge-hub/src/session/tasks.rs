//! The tasks of a module connection: in-order telemetry acknowledgements, twin replies,
//! input delivery from the queue, and the relays of desired-property patches and direct
//! methods from the module's upstream connection.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fleethub_device::{DeviceClient, DeviceError, MethodRequest};
use fleethub_mqtt_codec::{Packet, PacketIds, Publish, QoS};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use super::{INPUT_WINDOW, PendingAck};
use crate::hub::{Hub, module_endpoint};
use crate::topics;
use crate::upstream::{Backoff, pause};

/// Sends telemetry PUBACKs in arrival order, each once its message is durable. A message the
/// queue refuses is not acknowledged: the connection is closed so that the module's SDK
/// retransmits it after reconnecting.
pub(super) async fn ack_in_order(
    mut rx: mpsc::Receiver<PendingAck>,
    out: mpsc::Sender<Packet>,
    fatal: mpsc::Sender<String>,
) {
    while let Some((pkid, done)) = rx.recv().await {
        match done.await {
            Ok(Ok(())) => {
                if out.send(Packet::PubAck(pkid)).await.is_err() {
                    return;
                }
            }
            Ok(Err(e)) => {
                tracing::warn!("edge hub: message not accepted, not acknowledged: {e}");
                let _ = fatal.send(format!("message not accepted: {e}")).await;
                return;
            }
            Err(_) => return,
        }
    }
}

pub(super) async fn respond_twin(
    out: mpsc::Sender<Packet>,
    rid: &str,
    reply: Result<(u16, Option<u64>, String), DeviceError>,
) {
    let (status, version, body) = match reply {
        Ok(r) => r,
        Err(DeviceError::Twin {
            status,
            error_code,
            message,
        }) => (
            status,
            None,
            json!({"errorCode": error_code.unwrap_or(u64::from(status) * 1000), "message": message})
                .to_string(),
        ),
        Err(e) => (
            503,
            None,
            json!({"errorCode": 503000, "message": format!("edge hub: upstream twin request failed: {e}")})
                .to_string(),
        ),
    };
    let p = Publish::new(
        topics::twin_response_topic(status, rid, version),
        QoS::AtMostOnce,
        0,
        body.into_bytes(),
    );
    let _ = out.send(Packet::Publish(p)).await;
}

/// Delivers `module/{module}` rows as input messages at QoS 1, up to [`INPUT_WINDOW`]
/// unacknowledged; a row is deleted on PUBACK. Unacknowledged rows are sent again by the
/// next connection.
pub(super) async fn input_pump(
    hub: Arc<Hub>,
    device: String,
    module: String,
    out: mpsc::Sender<Packet>,
    mut acks: mpsc::UnboundedReceiver<u16>,
) {
    let endpoint = module_endpoint(&module);
    let mut changes = hub.queue.changes();
    let mut inflight: HashMap<u16, i64> = HashMap::new();
    let mut last_seq = 0i64;
    let mut packet_ids = PacketIds::new();
    loop {
        if inflight.len() < INPUT_WINDOW {
            changes.borrow_and_update();
            let rows = match hub
                .queue
                .peek(&endpoint, last_seq, INPUT_WINDOW - inflight.len())
                .await
            {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::error!(module, "edge hub: cannot read the queue: {e}");
                    return;
                }
            };
            for row in rows {
                last_seq = row.seq;
                let input = row.input.as_deref().unwrap_or("input");
                let pkid = packet_ids.next(|id| inflight.contains_key(&id));
                let topic = topics::input_topic(&device, &module, input, &row.msg);
                let p = Publish::new(topic, QoS::AtLeastOnce, pkid, row.msg.body);
                if out.send(Packet::Publish(p)).await.is_err() {
                    return;
                }
                inflight.insert(pkid, row.seq);
            }
        }
        tokio::select! {
            pkid = acks.recv() => {
                let Some(pkid) = pkid else { return };
                let mut done: Vec<i64> = inflight.remove(&pkid).into_iter().collect();
                while let Ok(pkid) = acks.try_recv() {
                    done.extend(inflight.remove(&pkid));
                }
                if !done.is_empty()
                    && let Err(e) = hub.queue.remove(&endpoint, done).await
                {
                    tracing::error!(module, "edge hub: cannot delete delivered input messages: {e}");
                }
            }
            _ = changes.changed(), if inflight.len() < INPUT_WINDOW => {}
        }
    }
}

/// Waits for the module's upstream connection (back-off while the hub is unreachable).
pub(super) async fn upstream_client(
    hub: &Hub,
    module: &str,
) -> Option<fleethub_device::DeviceClient> {
    let mut backoff = Backoff::new();
    loop {
        match hub.upstream.client(module).await {
            Ok(c) => return Some(c),
            Err(e) => {
                let d = backoff.next_delay();
                tracing::warn!(
                    module,
                    "edge hub: upstream connection unavailable ({e}); retrying in {d:?}"
                );
                if !pause(hub, d).await {
                    return None;
                }
            }
        }
    }
}

/// Desired-property patches of the module's twin, from its upstream connection.
pub(super) async fn relay_desired(
    hub: Arc<Hub>,
    module: String,
    out: mpsc::Sender<Packet>,
    ready: oneshot::Sender<()>,
) {
    let upstream = Upstream {
        hub,
        module,
        out,
        ready,
    };
    upstream
        .relay(
            "follow desired properties",
            async |c: &DeviceClient| c.desired_updates().await,
            |patch: Value| {
                let version = patch.get("$version").and_then(Value::as_u64);
                Publish::new(
                    topics::desired_patch_topic(version),
                    QoS::AtMostOnce,
                    0,
                    patch.to_string().into_bytes(),
                )
            },
        )
        .await;
}

/// Direct-method requests for the module, from its upstream connection; the module's
/// response (same `$rid`) goes back through the same connection.
pub(super) async fn relay_methods(
    hub: Arc<Hub>,
    module: String,
    out: mpsc::Sender<Packet>,
    ready: oneshot::Sender<()>,
) {
    let upstream = Upstream {
        hub,
        module,
        out,
        ready,
    };
    upstream
        .relay(
            "receive direct methods",
            async |c: &DeviceClient| c.method_requests().await,
            |req: MethodRequest| {
                let body = if req.payload.is_null() {
                    Vec::new()
                } else {
                    req.payload.to_string().into_bytes()
                };
                Publish::new(
                    topics::method_request_topic(&req.name, &req.rid),
                    QoS::AtMostOnce,
                    0,
                    body,
                )
            },
        )
        .await;
}

/// One module's upstream subscription relayed to the module as publishes.
struct Upstream {
    hub: Arc<Hub>,
    module: String,
    out: mpsc::Sender<Packet>,
    ready: oneshot::Sender<()>,
}

impl Upstream {
    /// Subscribes upstream (signalling `ready` the first time), forwards every item as a
    /// publish, and subscribes again when the upstream connection is replaced; ends when the
    /// module's session or the hub goes away.
    async fn relay<T>(
        self,
        what: &str,
        subscribe: impl AsyncFn(&DeviceClient) -> Result<mpsc::Receiver<T>, DeviceError>,
        to_publish: impl Fn(T) -> Publish,
    ) {
        let Upstream {
            hub,
            module,
            out,
            ready,
        } = self;
        let mut ready = Some(ready);
        loop {
            let Some(client) = upstream_client(&hub, &module).await else {
                return;
            };
            let mut rx = match subscribe(&client).await {
                Ok(rx) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                    rx
                }
                Err(e) => {
                    tracing::warn!(module, "edge hub: cannot {what} upstream: {e}");
                    if !pause(&hub, Duration::from_secs(2)).await {
                        return;
                    }
                    continue;
                }
            };
            while let Some(item) = rx.recv().await {
                if out.send(Packet::Publish(to_publish(item))).await.is_err() {
                    return;
                }
            }
            if !pause(&hub, Duration::from_millis(500)).await {
                return;
            }
        }
    }
}
