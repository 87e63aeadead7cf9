//! DPS over MQTT (docs/protocol-notes.md, "DPS MQTT topics"): register and operation-status
//! requests on `$dps/registrations/...`, answers on `$dps/registrations/res/{status}/?$rid=..`.
//!
//! [`DpsSession`] is the IO-free state machine (subscriptions, packet ids, the answers);
//! [`serve`] is the CONNECT handshake and the loop that drives it.

mod serve;
#[cfg(test)]
mod tests;

pub(crate) use serve::serve;

use crate::session::{Action, Close, KeepAlive, Session, granted_qos};
use bytes::Bytes;
use fleethub_api::{DeviceRegistration, RegistrationOperationStatus};
use fleethub_iot_protocol::dps as topics;
use fleethub_mqtt_codec::{Packet, PacketIds, Publish, QoS, SubAck, SubscribeReturnCode};
use fleethub_services::DpsPrincipal;
use fleethub_services::dps;
use std::time::Duration;
use tokio::time::Instant;

const RESPONSE_FILTER: &str = "$dps/registrations/res/#";

/// A DPS service call the session needs.
#[derive(Debug)]
pub(crate) enum DpsCall {
    Register {
        rid: String,
        principal: DpsPrincipal,
        body: DeviceRegistration,
    },
    OperationStatus {
        rid: String,
        principal: DpsPrincipal,
        operation_id: String,
    },
}

/// The answer to a [`DpsCall`] (for the request `rid`).
#[derive(Debug)]
pub(crate) struct DpsReply {
    pub rid: String,
    pub result: Result<RegistrationOperationStatus, dps::Error>,
}

pub(crate) struct DpsSession {
    registration_id: String,
    /// An error here (a malformed registration ID) is answered on every request.
    principal: Result<DpsPrincipal, dps::Error>,
    /// `retry-after` of `202 assigning` answers, seconds.
    retry_after_secs: u32,
    /// QoS granted on `$dps/registrations/res/#`, if subscribed.
    response_qos: Option<QoS>,
    packet_ids: PacketIds,
    keep_alive: KeepAlive,
}

impl DpsSession {
    pub(crate) fn new(
        registration_id: String,
        principal: Result<DpsPrincipal, dps::Error>,
        retry_after_secs: u32,
        idle: Duration,
        now: Instant,
    ) -> Self {
        DpsSession {
            registration_id,
            principal,
            retry_after_secs,
            response_qos: None,
            packet_ids: PacketIds::new(),
            keep_alive: KeepAlive::new(idle, now),
        }
    }

    pub(crate) fn registration_id(&self) -> &str {
        &self.registration_id
    }

    /// When [`DpsSession::on_timeout`] is due.
    pub(crate) fn deadline(&self) -> Instant {
        self.keep_alive.deadline()
    }

    pub(crate) fn on_timeout(&mut self, now: Instant) -> Vec<Action<DpsCall>> {
        self.keep_alive
            .check(now)
            .map(Action::Close)
            .into_iter()
            .collect()
    }

    pub(crate) fn on_packet(&mut self, pkt: Packet, now: Instant) -> Vec<Action<DpsCall>> {
        self.keep_alive.packet_seen(now);
        match pkt {
            Packet::Subscribe(s) => {
                let codes = s
                    .filters
                    .iter()
                    .map(|(f, q)| {
                        if f == RESPONSE_FILTER || f == "$dps/registrations/res/+/#" {
                            let granted = granted_qos(*q);
                            self.response_qos = Some(granted);
                            SubscribeReturnCode::Success(granted)
                        } else {
                            tracing::info!(registration = %self.registration_id, filter = %f, "dps: subscription refused");
                            SubscribeReturnCode::Failure
                        }
                    })
                    .collect();
                vec![Action::Send(Packet::SubAck(SubAck {
                    pkid: s.pkid,
                    return_codes: codes,
                }))]
            }
            Packet::Unsubscribe(u) => {
                if u.topics.iter().any(|t| t == RESPONSE_FILTER) {
                    self.response_qos = None;
                }
                vec![Action::Send(Packet::UnsubAck(u.pkid))]
            }
            Packet::Publish(p) => {
                if p.qos == QoS::ExactlyOnce {
                    return vec![Action::Close(Close::Violation(
                        "QoS 2 publish is not supported".into(),
                    ))];
                }
                let mut out = Vec::new();
                if p.qos == QoS::AtLeastOnce {
                    out.push(Action::Send(Packet::PubAck(p.pkid)));
                }
                out.extend(self.on_publish(&p.topic, &p.payload));
                out
            }
            Packet::PubAck(_) => Vec::new(),
            Packet::PingReq => vec![Action::Send(Packet::PingResp)],
            Packet::Disconnect => vec![Action::Close(Close::Disconnect)],
            other => vec![Action::Close(Close::Violation(format!(
                "unexpected {} from a client",
                other.name()
            )))],
        }
    }

    fn on_publish(&mut self, topic: &str, payload: &[u8]) -> Vec<Action<DpsCall>> {
        let req = match topics::parse_request_topic(topic) {
            Ok(r) => r,
            Err(e) => {
                return vec![Action::Close(Close::Violation(format!(
                    "registration {}: {e}",
                    self.registration_id
                )))];
            }
        };
        let principal = match &self.principal {
            Ok(p) => p.clone(),
            Err(e) => {
                let (topics::DpsRequest::Register { rid }
                | topics::DpsRequest::OperationStatus { rid, .. }) = req;
                let e = dps::Error::duplicate(e);
                return self.respond(&rid, Err(e));
            }
        };
        match req {
            topics::DpsRequest::Register { rid } => {
                let body = if payload.iter().all(u8::is_ascii_whitespace) {
                    DeviceRegistration::default()
                } else {
                    match serde_json::from_slice(payload) {
                        Ok(b) => b,
                        Err(e) => {
                            let e = dps::Error::Invalid(format!(
                                "register body is not valid JSON: {e}"
                            ));
                            return self.respond(&rid, Err(e));
                        }
                    }
                };
                vec![Action::Call(DpsCall::Register {
                    rid,
                    principal,
                    body,
                })]
            }
            topics::DpsRequest::OperationStatus { rid, operation_id } => {
                vec![Action::Call(DpsCall::OperationStatus {
                    rid,
                    principal,
                    operation_id,
                })]
            }
        }
    }

    /// The answer on `$dps/registrations/res/{status}/?$rid=..` (dropped when the client has
    /// not subscribed to the responses).
    fn respond(
        &mut self,
        rid: &str,
        result: Result<RegistrationOperationStatus, dps::Error>,
    ) -> Vec<Action<DpsCall>> {
        let retry_after = self.retry_after_secs;
        let (status, body, retry) = match result {
            Ok(op) if op.status == "assigning" => (202, serde_json::to_vec(&op), Some(retry_after)),
            Ok(op) => (200, serde_json::to_vec(&op), None),
            Err(e) => {
                let (status, body) = crate::errors::dps_response(&e);
                if !matches!(e, dps::Error::Unauthorized | dps::Error::Throttled { .. }) {
                    tracing::info!(registration = %self.registration_id, status, "dps request failed: {e}");
                }
                let retry = crate::errors::dps_retry_after(&e, retry_after);
                (status, Ok(body), retry)
            }
        };
        let body = match body {
            Ok(b) => b,
            Err(e) => {
                return vec![Action::Close(Close::Violation(format!(
                    "encoding a response: {e}"
                )))];
            }
        };
        let Some(qos) = self.response_qos else {
            tracing::info!(registration = %self.registration_id, "dps: dropping a response: the client has not subscribed to {RESPONSE_FILTER}");
            return Vec::new();
        };
        let pkid = if qos == QoS::AtLeastOnce {
            self.packet_ids.next_unchecked()
        } else {
            0
        };
        vec![Action::Send(Packet::Publish(Publish {
            dup: false,
            qos,
            retain: false,
            topic: topics::response_topic(status, rid, retry),
            pkid,
            payload: Bytes::from(body),
        }))]
    }
}

impl Session for DpsSession {
    type Call = DpsCall;
    type Reply = DpsReply;

    fn on_reply(&mut self, reply: DpsReply, _now: Instant) -> Vec<Action<DpsCall>> {
        self.respond(&reply.rid, reply.result)
    }
}
