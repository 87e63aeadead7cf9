//! The hub device plane over MQTT (docs/protocol-notes.md, "Hub MQTT topics"): telemetry,
//! twin GET / reported PATCH, desired-property updates, direct methods and cloud-to-device
//! delivery (completed by the device's PUBACK). Module-input subscriptions are refused
//! (SUBACK 0x80) until served.
//!
//! [`HubSession`] is the IO-free state machine holding the policy (granted filters, packet
//! ids, the cloud-to-device in-flight table, telemetry batching, twin replies); [`serve`] is
//! the CONNECT handshake and the loop that drives it.

mod serve;
#[cfg(test)]
mod tests;

pub(crate) use serve::serve;

use crate::session::{Action, Close, KeepAlive, Session, granted_qos, later};
use crate::topics::{self, HubFilter};
use bytes::Bytes;
use fleethub_iot_protocol::hub::{self, IotHubRequest, TelemetryTopic};
use fleethub_iot_protocol::property_bag;
use fleethub_mqtt_codec::{
    ConnAck, ConnectReturnCode, Packet, PacketIds, Publish, QoS, SubAck, SubscribeReturnCode,
};
use fleethub_services::hub::C2dMessage;
use fleethub_services::hub::Error as HubError;
use fleethub_services::hub::MethodCall;
use fleethub_services::hub::c2d::{C2dView, iso_utc};
use fleethub_services::{Features, HubEvent, TelemetryIn};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use tokio::time::Instant;

/// Subscriptions of a client (filter -> granted QoS), kept across reconnects for persistent
/// sessions.
pub(crate) type Subscriptions = BTreeMap<String, QoS>;

/// Most telemetry publishes stored in one store write.
pub(crate) const TELEMETRY_BATCH: usize = 64;

/// A hub service call the session needs.
#[derive(Debug)]
pub(crate) enum HubCall {
    /// Which features the connection has subscribed to (registry view, method routing).
    SetFeatures(Features),
    /// CleanSession=0: the subscriptions changed.
    SaveSubscriptions(Subscriptions),
    /// The device's deliverable cloud-to-device messages.
    PendingC2d,
    /// A message went out at QoS 1 (counts a delivery attempt). Boxed: a message is large,
    /// and every call's future keeps room for the largest call.
    MarkC2dDelivered(Box<C2dMessage>),
    /// A message is done with (PUBACK, or sent at QoS 0): remove it from the queue.
    CompleteC2d(u64),
    /// Store a run of telemetry with one write, then PUBACK `acks` in order.
    StoreTelemetry {
        messages: Vec<TelemetryIn>,
        acks: Vec<u16>,
    },
    GetTwin {
        rid: String,
    },
    PatchReported {
        rid: String,
        patch: serde_json::Value,
    },
    MethodResponse {
        rid: String,
        status: u16,
        payload: Bytes,
    },
}

/// The answer to a [`HubCall`].
#[derive(Debug)]
pub(crate) enum HubReply {
    /// Calls that answer nothing the session needs.
    Done,
    PendingC2d(Result<Vec<C2dMessage>, HubError>),
    TelemetryStored {
        acks: Vec<u16>,
        result: Result<(), HubError>,
    },
    /// The device view of the twin, as JSON.
    Twin {
        rid: String,
        result: Result<Vec<u8>, HubError>,
    },
    /// The new reported-properties version.
    ReportedPatched {
        rid: String,
        result: Result<u64, HubError>,
    },
}

/// Who is connected and how.
#[derive(Debug, Clone)]
pub(crate) struct HubSessionConfig {
    pub device_id: String,
    pub module_id: Option<String>,
    /// CleanSession=0: subscriptions are saved when they change.
    pub persistent: bool,
    /// Keep-alive limit (see [`crate::session::idle_limit`]).
    pub idle: Duration,
    /// Time left on the SAS token (plus the allowed skew): the connection ends then.
    pub token_valid_for: Duration,
}

/// Why a CONNECT is refused: the CONNACK code, and the reason for the auth-failure log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub code: ConnectReturnCode,
    pub reason: String,
}

/// The CONNECT checks that need no service call: the user name must name this hub, and the
/// client ID must be the identity of the user name.
pub(crate) fn check_connect(
    this_hub: &str,
    host: &str,
    identity: &str,
    client_id: &str,
) -> Result<(), Refusal> {
    if !host.eq_ignore_ascii_case(this_hub) {
        return Err(Refusal {
            code: ConnectReturnCode::NotAuthorized,
            reason: format!("user name names hub '{host}', this hub is '{this_hub}'"),
        });
    }
    if client_id != identity {
        return Err(Refusal {
            code: ConnectReturnCode::IdentifierRejected,
            reason: format!(
                "client ID '{client_id}' must be '{identity}' (the device/module ID of the user name)"
            ),
        });
    }
    Ok(())
}

pub(crate) struct HubSession {
    device_id: String,
    module_id: Option<String>,
    identity: String,
    persistent: bool,
    subs: Subscriptions,
    packet_ids: PacketIds,
    /// Cloud-to-device messages sent at QoS 1 and not yet acknowledged: pkid -> sequence number.
    c2d_in_flight: HashMap<u16, u64>,
    /// Telemetry of the current burst, not stored yet, and the PUBACKs it owes.
    batch: Vec<TelemetryIn>,
    batch_acks: Vec<u16>,
    keep_alive: KeepAlive,
    token_deadline: Instant,
}

impl HubSession {
    /// A session with the subscriptions of a resumed persistent session (or none).
    pub(crate) fn new(cfg: HubSessionConfig, subs: Subscriptions, now: Instant) -> Self {
        let identity = match &cfg.module_id {
            Some(m) => format!("{}/{m}", cfg.device_id),
            None => cfg.device_id.clone(),
        };
        HubSession {
            device_id: cfg.device_id,
            module_id: cfg.module_id,
            identity,
            persistent: cfg.persistent,
            subs,
            packet_ids: PacketIds::new(),
            c2d_in_flight: HashMap::new(),
            batch: Vec::new(),
            batch_acks: Vec::new(),
            keep_alive: KeepAlive::new(cfg.idle, now),
            token_deadline: later(now, cfg.token_valid_for),
        }
    }

    /// `{deviceId}` or `{deviceId}/{moduleId}`.
    pub(crate) fn identity(&self) -> &str {
        &self.identity
    }

    #[cfg(test)]
    pub(crate) fn subscriptions(&self) -> &Subscriptions {
        &self.subs
    }

    /// The accepted CONNECT: announce the features, then CONNACK (so that a method call made
    /// as soon as the device sees CONNACK finds them), then deliver what a resumed session has
    /// waiting.
    pub(crate) fn on_connected(&mut self, session_present: bool) -> Vec<Action<HubCall>> {
        let ack = ConnAck::new(ConnectReturnCode::Accepted, session_present);
        let mut out = vec![
            Action::Call(HubCall::SetFeatures(self.features())),
            Action::Send(Packet::ConnAck(ack)),
        ];
        out.extend(self.deliver_c2d());
        out
    }

    /// When [`HubSession::on_timeout`] is due (keep-alive or token expiry).
    pub(crate) fn deadline(&self) -> Instant {
        self.keep_alive.deadline().min(self.token_deadline)
    }

    pub(crate) fn on_timeout(&mut self, now: Instant) -> Vec<Action<HubCall>> {
        if now >= self.token_deadline {
            return vec![Action::Close(Close::Violation(format!(
                "{}: SAS token expired; the device must reconnect with a new one",
                self.identity
            )))];
        }
        self.keep_alive
            .check(now)
            .map(Action::Close)
            .into_iter()
            .collect()
    }

    /// One packet from the device. Telemetry is collected until [`HubSession::on_burst_end`]
    /// (or the next other packet, or a full batch) so that a burst is stored with one write.
    pub(crate) fn on_packet(&mut self, pkt: Packet, now: Instant) -> Vec<Action<HubCall>> {
        self.keep_alive.packet_seen(now);
        if let Packet::Publish(p) = &pkt {
            tracing::trace!(identity = %self.identity, topic = %p.topic, "received PUBLISH");
        } else {
            tracing::trace!(identity = %self.identity, packet = pkt.name(), "received");
        }
        let mut out = Vec::new();
        if let Packet::Publish(p) = &pkt
            && is_telemetry(p)
        {
            if self.batch.len() >= TELEMETRY_BATCH {
                out.extend(self.store_batch());
            }
            match self.parse_telemetry(p) {
                Ok(m) => {
                    self.batch.push(m);
                    if p.qos == QoS::AtLeastOnce {
                        self.batch_acks.push(p.pkid);
                    }
                }
                // The ones before it are stored and acknowledged first.
                Err(e) => {
                    out.extend(self.store_batch());
                    out.push(Action::Close(Close::Violation(e)));
                }
            }
            return out;
        }
        out.extend(self.store_batch());
        match pkt {
            Packet::Publish(p) => {
                if p.qos == QoS::ExactlyOnce {
                    out.push(self.violation("QoS 2 publish is not supported"));
                    return out;
                }
                if p.qos == QoS::AtLeastOnce {
                    out.push(Action::Send(Packet::PubAck(p.pkid)));
                }
                out.extend(self.on_iothub(&p.topic, p.payload));
            }
            Packet::Subscribe(s) => {
                let mut codes = Vec::with_capacity(s.filters.len());
                for (f, q) in &s.filters {
                    match topics::classify_filter(f, &self.device_id) {
                        Some(HubFilter::CloudToDevice) if self.module_id.is_some() => {
                            tracing::info!(identity = %self.identity, filter = %f, "hub: subscription refused: not a served topic filter");
                            codes.push(SubscribeReturnCode::Failure);
                        }
                        Some(_) => {
                            let granted = granted_qos(*q);
                            self.subs.insert(f.clone(), granted);
                            codes.push(SubscribeReturnCode::Success(granted));
                        }
                        None => {
                            tracing::info!(identity = %self.identity, filter = %f, "hub: subscription refused: not a served topic filter");
                            codes.push(SubscribeReturnCode::Failure);
                        }
                    }
                }
                out.extend(self.subscriptions_changed());
                out.push(Action::Send(Packet::SubAck(SubAck {
                    pkid: s.pkid,
                    return_codes: codes,
                })));
                out.extend(self.deliver_c2d());
            }
            Packet::Unsubscribe(u) => {
                for t in &u.topics {
                    self.subs.remove(t);
                }
                out.extend(self.subscriptions_changed());
                out.push(Action::Send(Packet::UnsubAck(u.pkid)));
            }
            Packet::PubAck(pkid) => {
                if let Some(seq) = self.c2d_in_flight.remove(&pkid) {
                    out.push(Action::Call(HubCall::CompleteC2d(seq)));
                }
            }
            Packet::PingReq => out.push(Action::Send(Packet::PingResp)),
            Packet::Disconnect => out.push(Action::Close(Close::Disconnect)),
            other => out.push(Action::Close(Close::Violation(format!(
                "unexpected {} from a client",
                other.name()
            )))),
        }
        out
    }

    /// No more packets have arrived: store the telemetry collected so far.
    pub(crate) fn on_burst_end(&mut self) -> Vec<Action<HubCall>> {
        self.store_batch()
    }

    /// Something the hub pushes to this connection.
    pub(crate) fn on_event(&mut self, ev: HubEvent) -> Vec<Action<HubCall>> {
        match ev {
            HubEvent::DesiredPatch(patch) => {
                let Some(qos) = self.qos_for(HubFilter::DesiredUpdates) else {
                    return Vec::new();
                };
                let v = patch
                    .get("$version")
                    .and_then(serde_json::Value::as_u64)
                    .unwrap_or(0);
                let body = serde_json::to_vec(&patch).unwrap_or_default();
                tracing::debug!(identity = %self.identity, version = v, "pushing a desired-properties patch");
                let topic = hub::desired_patch_topic(Some(v));
                vec![self.publish(topic, qos, body)]
            }
            HubEvent::MethodRequest(call) => {
                if self.qos_for(HubFilter::Methods).is_none() {
                    return Vec::new();
                }
                let MethodCall { rid, name, payload } = *call;
                // The hub sends method requests at QoS 0.
                let topic = hub::method_request_topic(&name, &rid);
                vec![self.publish(topic, QoS::AtMostOnce, payload)]
            }
            HubEvent::C2dAvailable => self.deliver_c2d(),
            HubEvent::Revoked(reason) => {
                vec![self.violation(&format!("{reason}; connection closed"))]
            }
        }
    }

    fn violation(&self, what: &str) -> Action<HubCall> {
        Action::Close(Close::Violation(format!("{}: {what}", self.identity)))
    }

    fn qos_for(&self, f: HubFilter) -> Option<QoS> {
        self.subs
            .iter()
            .find(|(k, _)| topics::classify_filter(k, &self.device_id) == Some(f))
            .map(|(_, q)| *q)
    }

    fn features(&self) -> Features {
        Features {
            desired: self.qos_for(HubFilter::DesiredUpdates).is_some(),
            methods: self.qos_for(HubFilter::Methods).is_some(),
            c2d: self.qos_for(HubFilter::CloudToDevice).is_some(),
        }
    }

    fn subscriptions_changed(&self) -> Vec<Action<HubCall>> {
        let mut out = vec![Action::Call(HubCall::SetFeatures(self.features()))];
        if self.persistent {
            out.push(Action::Call(HubCall::SaveSubscriptions(self.subs.clone())));
        }
        out
    }

    /// A PUBLISH to the device; QoS 1 ones get the next packet id not held by an
    /// unacknowledged cloud-to-device message.
    fn publish(&mut self, topic: String, qos: QoS, body: Vec<u8>) -> Action<HubCall> {
        let pkid = if qos == QoS::AtMostOnce {
            0
        } else {
            let in_flight = &self.c2d_in_flight;
            self.packet_ids.next(|id| in_flight.contains_key(&id))
        };
        Action::Send(Packet::Publish(Publish {
            dup: false,
            qos,
            retain: false,
            topic,
            pkid,
            payload: Bytes::from(body),
        }))
    }

    /// Asks for the queue when the device has subscribed to cloud-to-device messages.
    fn deliver_c2d(&self) -> Vec<Action<HubCall>> {
        match self.qos_for(HubFilter::CloudToDevice) {
            Some(_) => vec![Action::Call(HubCall::PendingC2d)],
            None => Vec::new(),
        }
    }

    /// Sends the queued messages that are not in flight yet.
    fn on_pending_c2d(&mut self, pending: Vec<C2dMessage>) -> Vec<Action<HubCall>> {
        let Some(qos) = self.qos_for(HubFilter::CloudToDevice) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for m in pending {
            if self.c2d_in_flight.values().any(|s| *s == m.sequence_number) {
                continue;
            }
            let send = self.publish(c2d_topic(&m), qos, m.body.clone());
            let pkid = match &send {
                Action::Send(Packet::Publish(p)) => p.pkid,
                _ => 0,
            };
            out.push(send);
            if qos == QoS::AtMostOnce {
                // Nothing will acknowledge it: delivered is done.
                out.push(Action::Call(HubCall::CompleteC2d(m.sequence_number)));
            } else {
                self.c2d_in_flight.insert(pkid, m.sequence_number);
                out.push(Action::Call(HubCall::MarkC2dDelivered(Box::new(m))));
            }
        }
        out
    }

    fn store_batch(&mut self) -> Vec<Action<HubCall>> {
        if self.batch.is_empty() {
            return Vec::new();
        }
        vec![Action::Call(HubCall::StoreTelemetry {
            messages: std::mem::take(&mut self.batch),
            acks: std::mem::take(&mut self.batch_acks),
        })]
    }

    fn parse_telemetry(&self, p: &Publish) -> Result<TelemetryIn, String> {
        let TelemetryTopic {
            device_id,
            module_id,
            bag,
        } = hub::parse_telemetry_topic(&p.topic).map_err(|e| format!("{}: {e}", self.identity))?;
        if device_id != self.device_id || module_id != self.module_id.as_deref() {
            return Err(format!(
                "{} may not publish as another identity (topic {})",
                self.identity, p.topic
            ));
        }
        let (system_properties, properties) = property_bag::parse_telemetry(bag)
            .map_err(|e| format!("{}: bad property bag: {e}", self.identity))?;
        Ok(TelemetryIn {
            system_properties,
            properties,
            body: p.payload.to_vec(),
        })
    }

    fn on_iothub(&mut self, topic: &str, payload: Bytes) -> Vec<Action<HubCall>> {
        let req = match hub::parse_iothub_request(topic) {
            Ok(r) => r,
            Err(e) => return vec![self.violation(&e.to_string())],
        };
        match req {
            IotHubRequest::TwinGet { rid } => vec![Action::Call(HubCall::GetTwin { rid })],
            IotHubRequest::TwinPatchReported { rid } => {
                match serde_json::from_slice::<serde_json::Value>(&payload) {
                    Ok(patch) => vec![Action::Call(HubCall::PatchReported { rid, patch })],
                    Err(e) => {
                        let e = HubError::Invalid(format!(
                            "reported properties patch is not valid JSON: {e}"
                        ));
                        vec![self.twin_reply(&rid, Err(e))]
                    }
                }
            }
            IotHubRequest::MethodResponse { status, rid } => {
                vec![Action::Call(HubCall::MethodResponse {
                    rid,
                    status,
                    payload,
                })]
            }
        }
    }

    /// `$iothub/twin/res/{status}/?$rid={rid}[&$version={v}]`, at the QoS of the device's
    /// `$iothub/twin/res/#` subscription (QoS 0 without one).
    fn twin_reply(
        &mut self,
        rid: &str,
        r: Result<(u16, Option<u64>, Vec<u8>), HubError>,
    ) -> Action<HubCall> {
        let qos = self.qos_for(HubFilter::TwinResponses);
        if qos.is_none() {
            tracing::info!(identity = %self.identity, "twin response sent although $iothub/twin/res/# is not subscribed");
        }
        let (topic, body) = match r {
            Ok((status, version, body)) => (hub::twin_response_topic(status, rid, version), body),
            Err(e) => {
                if matches!(e, fleethub_services::hub::Error::Throttled { .. }) {
                    tracing::debug!(identity = %self.identity, "twin request throttled: {e}");
                } else {
                    tracing::info!(identity = %self.identity, "twin request failed: {e}");
                }
                let (status, body) = crate::errors::twin_response(&e);
                (hub::twin_response_topic(status, rid, None), body)
            }
        };
        self.publish(topic, qos.unwrap_or(QoS::AtMostOnce), body)
    }
}

impl Session for HubSession {
    type Call = HubCall;
    type Reply = HubReply;

    fn on_reply(&mut self, reply: HubReply, _now: Instant) -> Vec<Action<HubCall>> {
        match reply {
            HubReply::Done => Vec::new(),
            HubReply::PendingC2d(Ok(pending)) => self.on_pending_c2d(pending),
            HubReply::PendingC2d(Err(e)) => {
                tracing::warn!(identity = %self.identity, "cannot read the cloud-to-device queue: {e}");
                Vec::new()
            }
            HubReply::TelemetryStored { acks, result } => match result {
                Ok(()) => acks
                    .into_iter()
                    .map(|pkid| Action::Send(Packet::PubAck(pkid)))
                    .collect(),
                // Oversize: Azure closes the connection. Storage failure: not acknowledged,
                // the device resends after reconnecting.
                Err(e) => vec![self.violation(&format!("telemetry not accepted: {e}"))],
            },
            HubReply::Twin { rid, result } => {
                vec![self.twin_reply(&rid, result.map(|body| (200, None, body)))]
            }
            HubReply::ReportedPatched { rid, result } => {
                vec![self.twin_reply(&rid, result.map(|v| (204, Some(v), Vec::new())))]
            }
        }
    }
}

/// `devices/{id}/messages/devicebound/{property bag}` of a queued message.
fn c2d_topic(m: &C2dMessage) -> String {
    let expiry = iso_utc(m.expiry_unix);
    topics::c2d_topic(&C2dView {
        device_id: &m.device_id,
        message_id: &m.message_id,
        correlation_id: m.correlation_id.as_deref(),
        content_type: m.content_type.as_deref(),
        content_encoding: m.content_encoding.as_deref(),
        expiry_utc: &expiry,
        ack: m.ack.as_deref(),
        properties: &m.properties,
    })
}

/// A device-to-cloud telemetry publish (QoS 0 or 1, not an `$iothub/` topic).
fn is_telemetry(p: &Publish) -> bool {
    p.qos != QoS::ExactlyOnce && !p.topic.starts_with("$iothub/")
}
