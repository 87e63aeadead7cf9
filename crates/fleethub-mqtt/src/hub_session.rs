//! The hub device plane over MQTT (protocols.md 7): telemetry, twin GET / reported PATCH,
//! desired-property updates, direct methods and cloud-to-device delivery (completed by the
//! device's PUBACK). Module-input subscriptions are refused (SUBACK 0x80) until served.

use crate::Gateway;
use crate::connection::{ConnectionError, PacketWriter};
use crate::topics::{HubFilter, classify_filter};
use bytes::Bytes;
use fleethub_iot_protocol::hub::{self, IotHubRequest, TelemetryTopic, parse_iothub_request};
use fleethub_iot_protocol::property_bag;
use fleethub_mqtt_codec::{Packet, Publish, QoS, SubAck, SubscribeReturnCode};
use fleethub_services::hub::twin::device_view;
use fleethub_services::{DpsError, Features, HubEvent, HubPrincipal, TelemetryIn};
use std::collections::HashMap;
use tokio::io::AsyncWrite;

/// Subscriptions of a client, kept across reconnects for persistent sessions.
pub(crate) type Subscriptions = HashMap<String, QoS>;

/// Stored form: `{"filter": qos, ...}`.
pub(crate) fn encode_subscriptions(s: &Subscriptions) -> String {
    let m: serde_json::Map<String, serde_json::Value> = s
        .iter()
        .map(|(k, q)| (k.clone(), serde_json::json!(*q as u8)))
        .collect();
    serde_json::Value::Object(m).to_string()
}

pub(crate) fn decode_subscriptions(doc: &str) -> Subscriptions {
    let v: serde_json::Value = serde_json::from_str(doc).unwrap_or_default();
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, q)| {
                    (
                        k.clone(),
                        if q.as_u64() == Some(0) {
                            QoS::AtMostOnce
                        } else {
                            QoS::AtLeastOnce
                        },
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) struct HubSession<'a> {
    gw: &'a Gateway,
    principal: HubPrincipal,
    conn: u64,
    pub(crate) subs: Subscriptions,
    next_pkid: u16,
    /// Cloud-to-device messages sent at QoS 1 and not yet acknowledged: pkid -> sequence number.
    c2d_in_flight: HashMap<u16, u64>,
    /// CleanSession=0: subscriptions are saved in the store when they change.
    persistent: bool,
}

impl<'a> HubSession<'a> {
    pub(crate) fn new(
        gw: &'a Gateway,
        principal: HubPrincipal,
        conn: u64,
        subs: Subscriptions,
        persistent: bool,
    ) -> Self {
        let s = HubSession {
            gw,
            principal,
            conn,
            subs,
            next_pkid: 0,
            c2d_in_flight: HashMap::new(),
            persistent,
        };
        s.publish_features();
        s
    }

    pub(crate) fn identity(&self) -> String {
        match &self.principal.module_id {
            Some(m) => format!("{}/{m}", self.principal.device_id),
            None => self.principal.device_id.clone(),
        }
    }

    fn qos_for(&self, f: HubFilter) -> Option<QoS> {
        self.subs
            .iter()
            .find(|(k, _)| classify_filter(k, &self.principal.device_id) == Some(f))
            .map(|(_, q)| *q)
    }

    async fn save_subscriptions(&self) {
        if self.persistent
            && let Err(e) = self
                .gw
                .hub
                .store()
                .put_mqtt_session(&self.identity(), &encode_subscriptions(&self.subs))
                .await
        {
            tracing::warn!(identity = %self.identity(), "cannot save the MQTT session: {e}");
        }
    }

    fn publish_features(&self) {
        let f = Features {
            desired: self.qos_for(HubFilter::DesiredUpdates).is_some(),
            methods: self.qos_for(HubFilter::Methods).is_some(),
            c2d: self.qos_for(HubFilter::CloudToDevice).is_some(),
        };
        self.gw.hub.set_features(
            &self.principal.device_id,
            self.principal.module_id.as_deref(),
            self.conn,
            f,
        );
    }

    fn send<W: AsyncWrite + Unpin>(
        &mut self,
        out: &mut PacketWriter<W>,
        topic: String,
        qos: QoS,
        body: Vec<u8>,
    ) -> Result<(), ConnectionError> {
        let pkid = if qos == QoS::AtMostOnce {
            0
        } else {
            self.next_pkid = self.next_pkid.wrapping_add(1).max(1);
            self.next_pkid
        };
        out.push(&Packet::Publish(Publish {
            dup: false,
            qos,
            retain: false,
            topic,
            pkid,
            payload: Bytes::from(body),
        }))
    }

    /// Delivers an event pushed by the hub.
    pub(crate) async fn on_event<W: AsyncWrite + Unpin>(
        &mut self,
        ev: HubEvent,
        out: &mut PacketWriter<W>,
    ) -> Result<(), ConnectionError> {
        match ev {
            HubEvent::DesiredPatch(patch) => {
                if let Some(qos) = self.qos_for(HubFilter::DesiredUpdates) {
                    let v = patch.get("$version").and_then(|v| v.as_u64()).unwrap_or(0);
                    let body = serde_json::to_vec(&patch).unwrap_or_default();
                    tracing::debug!(identity = %self.identity(), version = v, "pushing a desired-properties patch");
                    self.send(out, hub::desired_patch_topic(Some(v)), qos, body)?;
                }
            }
            HubEvent::MethodRequest { rid, name, payload } => {
                if self.qos_for(HubFilter::Methods).is_some() {
                    // The hub sends method requests at QoS 0.
                    self.send(
                        out,
                        hub::method_request_topic(&name, &rid),
                        QoS::AtMostOnce,
                        payload,
                    )?;
                }
            }
            HubEvent::C2dAvailable => self.deliver_c2d(out).await?,
            HubEvent::Revoked(reason) => {
                return Err(ConnectionError::Protocol(format!(
                    "{}: {reason}; connection closed",
                    self.identity()
                )));
            }
        }
        Ok(())
    }

    /// Called once after CONNACK: a resumed session may have queued messages waiting.
    pub(crate) async fn start<W: AsyncWrite + Unpin>(
        &mut self,
        out: &mut PacketWriter<W>,
    ) -> Result<(), ConnectionError> {
        self.deliver_c2d(out).await
    }

    /// Sends queued cloud-to-device messages that are not in flight yet.
    async fn deliver_c2d<W: AsyncWrite + Unpin>(
        &mut self,
        out: &mut PacketWriter<W>,
    ) -> Result<(), ConnectionError> {
        let Some(qos) = self.qos_for(HubFilter::CloudToDevice) else {
            return Ok(());
        };
        let pending = match self.gw.hub.pending_c2d(&self.principal.device_id).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(identity = %self.identity(), "cannot read the cloud-to-device queue: {e}");
                return Ok(());
            }
        };
        for m in pending {
            if self.c2d_in_flight.values().any(|s| *s == m.sequence_number) {
                continue;
            }
            let expiry = fleethub_services::hub::c2d::iso_utc(m.expiry_unix);
            let view = fleethub_services::hub::c2d::C2dView {
                device_id: &m.device_id,
                message_id: &m.message_id,
                correlation_id: m.correlation_id.as_deref(),
                content_type: m.content_type.as_deref(),
                content_encoding: m.content_encoding.as_deref(),
                expiry_utc: &expiry,
                ack: m.ack.as_deref(),
                properties: &m.properties,
            };
            let topic = crate::topics::c2d_topic(&view);
            self.send(out, topic, qos, m.body.clone())?;
            if qos == QoS::AtMostOnce {
                // Nothing will acknowledge it: delivered is done.
                let _ = self.gw.hub.complete_c2d(m.sequence_number).await;
            } else {
                self.c2d_in_flight.insert(self.next_pkid, m.sequence_number);
                let _ = self.gw.hub.mark_c2d_delivered(&m).await;
            }
        }
        Ok(())
    }

    /// Handles one packet; `Ok(false)` ends the session cleanly.
    pub(crate) async fn handle<W: AsyncWrite + Unpin>(
        &mut self,
        pkt: Packet,
        out: &mut PacketWriter<W>,
    ) -> Result<bool, ConnectionError> {
        match pkt {
            Packet::Publish(p) => {
                if p.qos == QoS::ExactlyOnce {
                    return Err(ConnectionError::Protocol(format!(
                        "{}: QoS 2 publish is not supported",
                        self.identity()
                    )));
                }
                if p.topic.starts_with("$iothub/") {
                    if p.qos == QoS::AtLeastOnce {
                        out.push(&Packet::PubAck(p.pkid))?;
                    }
                    self.on_iothub(&p.topic, &p.payload, out).await?;
                } else {
                    self.on_telemetry_batch(vec![Packet::Publish(p)], out)
                        .await?;
                }
            }
            Packet::Subscribe(s) => {
                let mut codes = Vec::with_capacity(s.filters.len());
                for (f, q) in &s.filters {
                    if classify_filter(f, &self.principal.device_id).is_some()
                        && (self.principal.module_id.is_none()
                            || classify_filter(f, &self.principal.device_id)
                                != Some(HubFilter::CloudToDevice))
                    {
                        let granted = if *q == QoS::AtMostOnce {
                            QoS::AtMostOnce
                        } else {
                            QoS::AtLeastOnce
                        };
                        self.subs.insert(f.clone(), granted);
                        codes.push(SubscribeReturnCode::Success(granted));
                    } else {
                        tracing::info!(identity = %self.identity(), filter = %f, "hub: subscription refused: not a served topic filter");
                        codes.push(SubscribeReturnCode::Failure);
                    }
                }
                self.publish_features();
                self.save_subscriptions().await;
                out.push(&Packet::SubAck(SubAck {
                    pkid: s.pkid,
                    return_codes: codes,
                }))?;
                self.deliver_c2d(out).await?;
            }
            Packet::Unsubscribe(u) => {
                for t in &u.topics {
                    self.subs.remove(t);
                }
                self.publish_features();
                self.save_subscriptions().await;
                out.push(&Packet::UnsubAck(u.pkid))?;
            }
            Packet::PubAck(pkid) => {
                if let Some(seq) = self.c2d_in_flight.remove(&pkid)
                    && let Err(e) = self.gw.hub.complete_c2d(seq).await
                {
                    tracing::warn!(identity = %self.identity(), "cannot complete a cloud-to-device message: {e}");
                }
            }
            Packet::PingReq => out.push(&Packet::PingResp)?,
            Packet::Disconnect => return Ok(false),
            other => {
                return Err(ConnectionError::Protocol(format!(
                    "unexpected {} from a client",
                    other.name()
                )));
            }
        }
        Ok(true)
    }

    /// A device-to-cloud telemetry publish (QoS 0 or 1, not an `$iothub/` topic).
    pub(crate) fn is_telemetry(pkt: &Packet) -> bool {
        matches!(pkt, Packet::Publish(p) if p.qos != QoS::ExactlyOnce && !p.topic.starts_with("$iothub/"))
    }

    /// Stores a run of telemetry publishes with one store write, then acknowledges the QoS 1
    /// ones in order. A malformed one ends the connection after the ones before it are stored
    /// and acknowledged.
    pub(crate) async fn on_telemetry_batch<W: AsyncWrite + Unpin>(
        &mut self,
        pkts: Vec<Packet>,
        out: &mut PacketWriter<W>,
    ) -> Result<(), ConnectionError> {
        let mut msgs = Vec::with_capacity(pkts.len());
        let mut acks = Vec::with_capacity(pkts.len());
        let mut failure = None;
        for pkt in pkts {
            let Packet::Publish(p) = pkt else { continue };
            match self.parse_telemetry(&p.topic, &p.payload) {
                Ok(m) => {
                    msgs.push(m);
                    acks.push((p.qos == QoS::AtLeastOnce).then_some(p.pkid));
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if !msgs.is_empty() {
            if let Err(e) = self
                .gw
                .hub
                .send_telemetry_batch(&self.principal, msgs)
                .await
            {
                // Oversize: Azure closes the connection. Storage failure: not acknowledged,
                // the device resends after reconnecting.
                return Err(ConnectionError::Protocol(format!(
                    "{}: telemetry not accepted: {e}",
                    self.identity()
                )));
            }
            for pkid in acks.into_iter().flatten() {
                out.push(&Packet::PubAck(pkid))?;
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn parse_telemetry(
        &self,
        topic: &str,
        payload: &Bytes,
    ) -> Result<TelemetryIn, ConnectionError> {
        let parsed = hub::parse_telemetry_topic(topic)
            .map_err(|e| ConnectionError::Protocol(format!("{}: {e}", self.identity())))?;
        let TelemetryTopic {
            device_id,
            module_id,
            bag,
        } = parsed;
        if device_id != self.principal.device_id || module_id != self.principal.module_id.as_deref()
        {
            return Err(ConnectionError::Protocol(format!(
                "{} may not publish as another identity (topic {topic})",
                self.identity()
            )));
        }
        let (system_properties, properties) = property_bag::parse_telemetry(bag).map_err(|e| {
            ConnectionError::Protocol(format!("{}: bad property bag: {e}", self.identity()))
        })?;
        Ok(TelemetryIn {
            system_properties,
            properties,
            body: payload.to_vec(),
        })
    }

    async fn on_iothub<W: AsyncWrite + Unpin>(
        &mut self,
        topic: &str,
        payload: &[u8],
        out: &mut PacketWriter<W>,
    ) -> Result<(), ConnectionError> {
        let req = parse_iothub_request(topic)
            .map_err(|e| ConnectionError::Protocol(format!("{}: {e}", self.identity())))?;
        let device = self.principal.device_id.clone();
        let module = self.principal.module_id.clone();
        match req {
            IotHubRequest::TwinGet { rid } => {
                let r = self
                    .gw
                    .hub
                    .get_twin_of(&device, module.as_deref())
                    .await
                    .map(|t| serde_json::to_vec(&device_view(&t)).unwrap_or_default());
                self.twin_reply(out, &rid, r.map(|b| (200, None, b)))
            }
            IotHubRequest::TwinPatchReported { rid } => {
                let r = match serde_json::from_slice::<serde_json::Value>(payload) {
                    Ok(patch) => self
                        .gw
                        .hub
                        .patch_reported_of(&device, module.as_deref(), &patch)
                        .await
                        .map(|v| (204, Some(v), Vec::new())),
                    Err(e) => Err(DpsError::bad_request(format!(
                        "reported properties patch is not valid JSON: {e}"
                    ))),
                };
                self.twin_reply(out, &rid, r)
            }
            IotHubRequest::MethodResponse { status, rid } => {
                self.gw.hub.method_response(&rid, status, payload);
                Ok(())
            }
        }
    }

    fn twin_reply<W: AsyncWrite + Unpin>(
        &mut self,
        out: &mut PacketWriter<W>,
        rid: &str,
        r: Result<(u16, Option<u64>, Vec<u8>), DpsError>,
    ) -> Result<(), ConnectionError> {
        let qos = self
            .qos_for(HubFilter::TwinResponses)
            .unwrap_or(QoS::AtMostOnce);
        if self.qos_for(HubFilter::TwinResponses).is_none() {
            tracing::info!(identity = %self.identity(), "twin response sent although $iothub/twin/res/# is not subscribed");
        }
        let (topic, body) = match r {
            Ok((status, version, body)) => (hub::twin_response_topic(status, rid, version), body),
            Err(e) => {
                tracing::info!(identity = %self.identity(), "twin request failed: {e}");
                let body =
                    serde_json::json!({"errorCode": e.error_code(), "message": e.to_string()});
                (
                    hub::twin_response_topic(e.status(), rid, None),
                    serde_json::to_vec(&body).unwrap_or_default(),
                )
            }
        };
        self.send(out, topic, qos, body)
    }
}
