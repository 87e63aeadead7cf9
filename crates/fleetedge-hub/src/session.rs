//! One module connection: CONNECT authentication (module SAS verified locally), then
//! telemetry (routed, durable before PUBACK), input delivery (QoS 1 until PUBACK, also after
//! reconnects), and the twin/method proxy through the module's upstream connection.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use fleethub_core::sas::{SasToken, describe_resource_mismatch};
use fleethub_device::DeviceError;
use fleethub_mqtt_codec::{
    ConnAck, Connect, ConnectReturnCode, FrameError, FramedRead, FramedWrite, Packet, Publish, QoS,
    SubAck, SubscribeReturnCode,
};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::hub::{Hub, SubKey};
use crate::queue::QueueError;
use crate::topics::{self, ModulePublish, classify_filter};
use crate::twin::EDGE_HUB_MODULE;

/// Largest packet a module may send (Azure's 256 KiB message limit plus topic and header).
pub const MAX_PACKET_BYTES: usize = 256 * 1024 + 8 * 1024;
/// Bound on waiting for CONNECT.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Unacknowledged input messages per module connection.
const INPUT_WINDOW: usize = 16;
/// Telemetry messages of one connection waiting for the disk before reading more.
const MAX_PENDING_ACKS: usize = 256;
/// Bound on subscribing upstream before answering a module's SUBSCRIBE.
const UPSTREAM_SUBSCRIBE_WAIT: Duration = Duration::from_secs(10);
/// Keep-alive cap (the hub's).
const MAX_IDLE_SECS: u64 = 1767;

mod tasks;
use tasks::{ack_in_order, input_pump, relay_desired, relay_methods, respond_twin};

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol violation: {0}")]
    Protocol(String),
}

impl From<FrameError> for SessionError {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::Io(e) => SessionError::Io(e),
            other => SessionError::Protocol(other.to_string()),
        }
    }
}

/// Writes packets from a channel, everything queued at once in one write; ends when the
/// channel closes or the peer is gone.
async fn write_loop<W: AsyncWrite + Unpin>(wr: W, mut rx: mpsc::Receiver<Packet>) {
    let mut out = FramedWrite::new(wr);
    while let Some(p) = rx.recv().await {
        let mut next = Some(p);
        while let Some(p) = next {
            if let Err(e) = out.push(&p) {
                tracing::warn!("edge hub: cannot encode {}: {e}", p.name());
            }
            next = rx.try_recv().ok();
        }
        if out.flush().await.is_err() {
            return;
        }
    }
    let _ = out.shutdown().await;
}

/// Why a CONNECT is refused (logged; never includes the token).
struct Refusal {
    code: ConnectReturnCode,
    reason: String,
}

fn refuse(code: ConnectReturnCode, reason: impl Into<String>) -> Refusal {
    Refusal {
        code,
        reason: reason.into(),
    }
}

/// Authenticates a module CONNECT; returns the module ID and the token's expiry (unix s).
fn authenticate(hub: &Hub, connect: &Connect) -> Result<(String, u64), Refusal> {
    let not_authorized = |r: String| refuse(ConnectReturnCode::NotAuthorized, r);
    let Some((device, module)) = connect.client_id.split_once('/') else {
        return Err(refuse(
            ConnectReturnCode::IdentifierRejected,
            format!(
                "client ID '{}' is not '{{deviceId}}/{{moduleId}}': only modules of this device connect to the edge hub",
                connect.client_id
            ),
        ));
    };
    if device != hub.opts.device_id {
        return Err(not_authorized(format!(
            "device '{device}' is not this edge device ('{}')",
            hub.opts.device_id
        )));
    }
    if module.is_empty() || module.contains('/') || module == EDGE_HUB_MODULE {
        return Err(not_authorized(format!(
            "module ID '{module}' may not connect here"
        )));
    }
    let password = connect
        .password
        .as_deref()
        .map(String::from_utf8_lossy)
        .unwrap_or_default();
    if password.is_empty() {
        return Err(not_authorized(
            "no SAS token in the password (X.509 is not supported)".into(),
        ));
    }
    let token = SasToken::parse(&password).map_err(|e| not_authorized(e.to_string()))?;
    let now = fleethub_core::time_util::now_unix();
    token
        .check_expiry(now, 0)
        .map_err(|e| not_authorized(e.to_string()))?;
    let resource = format!(
        "{}/devices/{device}/modules/{module}",
        hub.opts.upstream.hub_hostname
    );
    if !token.covers(&resource) {
        return Err(not_authorized(describe_resource_mismatch(
            &token, &resource,
        )));
    }
    let keys = hub.creds.module_keys(module).ok_or_else(|| {
        not_authorized(format!(
            "module '{module}' is not a module identity of this device"
        ))
    })?;
    let mut ok = false;
    for key in [&keys.primary, &keys.secondary] {
        if !key.is_empty() {
            ok |= token.verify_signature(key).unwrap_or(false);
        }
    }
    if !ok {
        return Err(not_authorized(format!(
            "the SAS token signature does not match the keys of module '{module}'"
        )));
    }
    Ok((module.to_string(), token.expiry))
}

pub(crate) async fn serve<S>(hub: Arc<Hub>, stream: S, peer: SocketAddr)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (rd, wr) = tokio::io::split(stream);
    let mut reader = FramedRead::new(rd, MAX_PACKET_BYTES);
    let (out_tx, out_rx) = mpsc::channel::<Packet>(256);
    let writer = tokio::spawn(write_loop(wr, out_rx));
    let connect = match tokio::time::timeout(CONNECT_TIMEOUT, reader.next()).await {
        Ok(Ok(Some(Packet::Connect(c)))) => c,
        Ok(Ok(Some(other))) => {
            tracing::info!(%peer, "edge hub: first packet was {}, not CONNECT", other.name());
            return;
        }
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            tracing::info!(%peer, "edge hub: bad CONNECT: {e}");
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "edge hub: no CONNECT within {CONNECT_TIMEOUT:?}");
            return;
        }
    };
    let answer = |code, session_present| {
        Packet::ConnAck(ConnAck {
            session_present,
            code,
        })
    };
    if connect.protocol_level != 4 && connect.protocol_level != 3 {
        let _ = out_tx
            .send(answer(
                ConnectReturnCode::UnacceptableProtocolVersion,
                false,
            ))
            .await;
        drop(out_tx);
        let _ = writer.await;
        return;
    }
    let (module, token_expiry) = match authenticate(&hub, &connect) {
        Ok(m) => m,
        Err(r) => {
            tracing::warn!(
                %peer,
                client_id = connect.client_id,
                "edge hub: refused module connection (CONNACK {}): {}",
                r.code.as_u8(),
                r.reason
            );
            let _ = out_tx.send(answer(r.code, false)).await;
            drop(out_tx);
            let _ = writer.await;
            return;
        }
    };
    let clean = connect.clean_session;
    let session_present = !clean && hub.has_session(&module);
    let restored = hub.session_subscriptions(&module, clean);
    hub.mark_session(&module, clean);
    let (conn_id, close_rx) = hub.register_session(&module);
    tracing::info!(%peer, module, "edge hub: module connected");
    let _ = out_tx
        .send(answer(ConnectReturnCode::Accepted, session_present))
        .await;
    let mut session = Session {
        hub: hub.clone(),
        device: hub.opts.device_id.clone(),
        module: module.clone(),
        clean,
        out: out_tx,
        tasks: Vec::new(),
        input_acks: None,
        ack_order: None,
        close_rx,
        started: BTreeSet::new(),
    };
    for sub in restored {
        session.start(sub);
    }
    let keep_alive = u64::from(connect.keep_alive);
    let idle = if keep_alive == 0 {
        MAX_IDLE_SECS
    } else {
        (keep_alive * 3).div_ceil(2).min(MAX_IDLE_SECS)
    };
    // As the hub does, the connection ends when its SAS token expires (the SDKs reconnect
    // with a fresh token before that).
    let token_left =
        Duration::from_secs(token_expiry.saturating_sub(fleethub_core::time_util::now_unix()));
    let result = session
        .run(&mut reader, Duration::from_secs(idle), token_left)
        .await;
    match result {
        Ok(reason) => tracing::info!(%peer, module, "edge hub: module disconnected ({reason})"),
        Err(e) => tracing::info!(%peer, module, "edge hub: module connection closed: {e}"),
    }
    for t in &session.tasks {
        t.abort();
    }
    hub.unregister_session(&module, conn_id);
    drop(session);
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
}

/// A PUBACK that waits for its message to be durable, in arrival order.
type PendingAck = (u16, oneshot::Receiver<Result<(), QueueError>>);

struct Session {
    hub: Arc<Hub>,
    device: String,
    module: String,
    clean: bool,
    out: mpsc::Sender<Packet>,
    tasks: Vec<JoinHandle<()>>,
    /// PUBACKs from the module for input deliveries.
    input_acks: Option<mpsc::UnboundedSender<u16>>,
    /// Telemetry acknowledgements in order.
    ack_order: Option<mpsc::Sender<PendingAck>>,
    close_rx: watch::Receiver<bool>,
    started: BTreeSet<SubKey>,
}

impl Session {
    async fn run<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut FramedRead<R>,
        idle: Duration,
        token_left: Duration,
    ) -> Result<&'static str, SessionError> {
        let token_expired = tokio::time::sleep(token_left);
        tokio::pin!(token_expired);
        let (fatal_tx, mut fatal_rx) = mpsc::channel::<String>(1);
        let (ack_tx, ack_rx) = mpsc::channel(MAX_PENDING_ACKS);
        self.ack_order = Some(ack_tx);
        self.tasks.push(tokio::spawn(ack_in_order(
            ack_rx,
            self.out.clone(),
            fatal_tx,
        )));
        let mut close_rx = self.close_rx.clone();
        loop {
            let packet = tokio::select! {
                p = tokio::time::timeout(idle, reader.next()) => match p {
                    Err(_) => return Err(SessionError::Protocol(format!("keep-alive expired (no packet for {} s)", idle.as_secs()))),
                    Ok(p) => p?,
                },
                _ = close_rx.wait_for(|c| *c) => return Ok("replaced by a newer connection of the module, or shutdown"),
                reason = fatal_rx.recv() => return Err(SessionError::Protocol(reason.unwrap_or_default())),
                () = &mut token_expired => return Ok("its SAS token expired"),
            };
            let Some(packet) = packet else {
                return Ok("connection closed by the module");
            };
            match packet {
                Packet::Publish(p) => self.on_publish(p).await?,
                Packet::PubAck(pkid) => {
                    if let Some(tx) = &self.input_acks {
                        let _ = tx.send(pkid);
                    }
                }
                Packet::Subscribe(s) => {
                    let mut codes = Vec::with_capacity(s.filters.len());
                    let mut started = Vec::new();
                    for (filter, qos) in &s.filters {
                        if let Some(kind) = classify_filter(filter, &self.device, &self.module) {
                            codes.push(if *qos == QoS::AtMostOnce {
                                SubscribeReturnCode::Success(QoS::AtMostOnce)
                            } else {
                                SubscribeReturnCode::Success(QoS::AtLeastOnce)
                            });
                            started.push(SubKey::from(kind));
                        } else {
                            tracing::info!(
                                module = self.module,
                                "edge hub: refused subscription to '{filter}'"
                            );
                            codes.push(SubscribeReturnCode::Failure);
                        }
                    }
                    // Desired patches and methods are subscribed upstream before the SUBACK,
                    // so that nothing sent right after it is missed (bounded wait: when the
                    // hub is unreachable the relay keeps trying in the background).
                    let mut ready = Vec::new();
                    for sub in &started {
                        self.hub
                            .remember_subscription(&self.module, self.clean, *sub);
                        if *sub != SubKey::Inputs {
                            ready.extend(self.start(*sub));
                        }
                    }
                    for r in ready {
                        let _ = tokio::time::timeout(UPSTREAM_SUBSCRIBE_WAIT, r).await;
                    }
                    self.send(Packet::SubAck(SubAck::new(s.pkid, codes)))
                        .await?;
                    // Inputs flow after the SUBACK.
                    if started.contains(&SubKey::Inputs) {
                        self.start(SubKey::Inputs);
                    }
                }
                Packet::Unsubscribe(u) => self.send(Packet::UnsubAck(u.pkid)).await?,
                Packet::PingReq => self.send(Packet::PingResp).await?,
                Packet::Disconnect => return Ok("DISCONNECT"),
                Packet::PubRec(_) | Packet::PubRel(_) | Packet::PubComp(_) => {
                    return Err(SessionError::Protocol("QoS 2 is not supported".into()));
                }
                other => {
                    return Err(SessionError::Protocol(format!(
                        "unexpected {} from a client",
                        other.name()
                    )));
                }
            }
        }
    }

    async fn send(&self, p: Packet) -> Result<(), SessionError> {
        self.out
            .send(p)
            .await
            .map_err(|_| SessionError::Protocol("writer closed".into()))
    }

    async fn on_publish(&mut self, p: Publish) -> Result<(), SessionError> {
        if p.qos == QoS::ExactlyOnce {
            return Err(SessionError::Protocol(format!(
                "QoS 2 PUBLISH to '{}' (the hub supports QoS 0 and 1)",
                p.topic
            )));
        }
        let kind = topics::parse_module_publish(&p.topic, &self.device, &self.module)
            .map_err(|e| SessionError::Protocol(e.0))?;
        match kind {
            ModulePublish::Telemetry { bag } => {
                let msg = topics::message_from_publish(
                    &self.device,
                    &self.module,
                    bag,
                    p.payload.to_vec(),
                    p.retain,
                );
                // Durable before acknowledged: the PUBACK waits for the commit. Submitting
                // here, in arrival order, keeps the module's messages in order.
                let durable = self.hub.submit_message(&msg);
                if p.qos == QoS::AtLeastOnce
                    && let Some(order) = &self.ack_order
                {
                    // Bounded: a module that outruns the disk waits (back-pressure).
                    let _ = order.send((p.pkid, durable)).await;
                } else if p.qos == QoS::AtMostOnce {
                    let module = self.module.clone();
                    tokio::spawn(async move {
                        if let Ok(Err(e)) = durable.await {
                            tracing::warn!(module, "edge hub: QoS 0 message dropped: {e}");
                        }
                    });
                }
                return Ok(());
            }
            ModulePublish::TwinGet { rid } => {
                let (hub, module, out) = (self.hub.clone(), self.module.clone(), self.out.clone());
                tokio::spawn(async move {
                    let reply = match hub.upstream.client(&module).await {
                        Ok(c) => c.get_twin().await.map(|t| (200, None, t.to_string())),
                        Err(e) => Err(DeviceError::ConnectionLost(e.to_string())),
                    };
                    respond_twin(out, &rid, reply).await;
                });
            }
            ModulePublish::TwinPatchReported { rid } => {
                let patch: Result<Value, _> = serde_json::from_slice(&p.payload);
                let (hub, module, out) = (self.hub.clone(), self.module.clone(), self.out.clone());
                tokio::spawn(async move {
                    let reply = match patch {
                        Err(e) => Err(DeviceError::Twin {
                            status: 400,
                            error_code: Some(400004),
                            message: format!("the reported patch is not JSON: {e}"),
                        }),
                        Ok(patch) => match hub.upstream.client(&module).await {
                            Ok(c) => c
                                .patch_reported(patch)
                                .await
                                .map(|v| (204, Some(v), String::new())),
                            Err(e) => Err(DeviceError::ConnectionLost(e.to_string())),
                        },
                    };
                    respond_twin(out, &rid, reply).await;
                });
            }
            ModulePublish::MethodResponse { status, rid } => {
                let payload: Value = if p.payload.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_slice(&p.payload).unwrap_or_else(|_| {
                        Value::String(String::from_utf8_lossy(&p.payload).into_owned())
                    })
                };
                let (hub, module) = (self.hub.clone(), self.module.clone());
                tokio::spawn(async move {
                    let r = match hub.upstream.client(&module).await {
                        Ok(c) => c
                            .respond(&rid, status, payload)
                            .await
                            .map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    };
                    if let Err(e) = r {
                        tracing::warn!(
                            module,
                            "edge hub: cannot forward a method response upstream: {e}"
                        );
                    }
                });
            }
        }
        if p.qos == QoS::AtLeastOnce {
            self.send(Packet::PubAck(p.pkid)).await?;
        }
        Ok(())
    }

    /// Starts serving a subscription (once per connection: a second relay would take the
    /// upstream receiver away from the first).
    /// Returns, for upstream relays, a signal that the upstream subscription is in place.
    fn start(&mut self, sub: SubKey) -> Option<oneshot::Receiver<()>> {
        if !self.started.insert(sub) {
            return None;
        }
        let (ready_tx, ready_rx) = oneshot::channel();
        match sub {
            SubKey::TwinResponses => return None,
            SubKey::Inputs => {
                let (tx, rx) = mpsc::unbounded_channel();
                self.input_acks = Some(tx);
                self.tasks.push(tokio::spawn(input_pump(
                    self.hub.clone(),
                    self.device.clone(),
                    self.module.clone(),
                    self.out.clone(),
                    rx,
                )));
                return None;
            }
            SubKey::Desired => self.tasks.push(tokio::spawn(relay_desired(
                self.hub.clone(),
                self.module.clone(),
                self.out.clone(),
                ready_tx,
            ))),
            SubKey::Methods => self.tasks.push(tokio::spawn(relay_methods(
                self.hub.clone(),
                self.module.clone(),
                self.out.clone(),
                ready_tx,
            ))),
        }
        Some(ready_rx)
    }
}
