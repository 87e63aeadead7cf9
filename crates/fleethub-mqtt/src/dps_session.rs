//! DPS over MQTT (protocols.md 5): register and operation-status requests on
//! `$dps/registrations/...`, answers on `$dps/registrations/res/{status}/?$rid=..`.

use crate::Gateway;
use crate::connection::{ConnectionError, PacketWriter};
use bytes::Bytes;
use fleethub_api::{DeviceRegistration, DpsErrorBody, RegistrationOperationStatus};
use fleethub_iot_protocol::dps::{
    DpsRequest, parse_request_topic as parse_dps_topic, response_topic as dps_response_topic,
};
use fleethub_mqtt_codec::{Packet, Publish, QoS, SubAck, SubscribeReturnCode};
use fleethub_services::{DpsError, DpsPrincipal};
use tokio::io::AsyncWrite;

const RESPONSE_FILTER: &str = "$dps/registrations/res/#";

pub(crate) struct DpsSession<'a> {
    gw: &'a Gateway,
    principal: Result<DpsPrincipal, DpsError>,
    registration_id: String,
    /// QoS granted on `$dps/registrations/res/#`, if subscribed.
    response_qos: Option<QoS>,
    next_pkid: u16,
}

impl<'a> DpsSession<'a> {
    pub(crate) fn new(
        gw: &'a Gateway,
        principal: Result<DpsPrincipal, DpsError>,
        registration_id: String,
    ) -> Self {
        DpsSession {
            gw,
            principal,
            registration_id,
            response_qos: None,
            next_pkid: 0,
        }
    }

    /// Handles one packet; `Ok(false)` ends the session cleanly.
    pub(crate) async fn handle<W: AsyncWrite + Unpin>(
        &mut self,
        pkt: Packet,
        out: &mut PacketWriter<W>,
    ) -> Result<bool, ConnectionError> {
        match pkt {
            Packet::Subscribe(s) => {
                let codes = s
                    .filters
                    .iter()
                    .map(|(f, q)| {
                        if f == RESPONSE_FILTER || f == "$dps/registrations/res/+/#" {
                            let granted = if *q == QoS::AtMostOnce { QoS::AtMostOnce } else { QoS::AtLeastOnce };
                            self.response_qos = Some(granted);
                            SubscribeReturnCode::Success(granted)
                        } else {
                            tracing::info!(registration = %self.registration_id, filter = %f, "dps: subscription refused");
                            SubscribeReturnCode::Failure
                        }
                    })
                    .collect();
                out.push(&Packet::SubAck(SubAck {
                    pkid: s.pkid,
                    return_codes: codes,
                }))?;
            }
            Packet::Unsubscribe(u) => {
                if u.topics.iter().any(|t| t == RESPONSE_FILTER) {
                    self.response_qos = None;
                }
                out.push(&Packet::UnsubAck(u.pkid))?;
            }
            Packet::Publish(p) => {
                if p.qos == QoS::ExactlyOnce {
                    return Err(ConnectionError::Protocol(
                        "QoS 2 publish is not supported".into(),
                    ));
                }
                if p.qos == QoS::AtLeastOnce {
                    out.push(&Packet::PubAck(p.pkid))?;
                }
                self.on_publish(&p.topic, &p.payload, out).await?;
            }
            Packet::PubAck(_) => {}
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

    async fn on_publish<W: AsyncWrite + Unpin>(
        &mut self,
        topic: &str,
        payload: &[u8],
        out: &mut PacketWriter<W>,
    ) -> Result<(), ConnectionError> {
        let req = match parse_dps_topic(topic) {
            Ok(r) => r,
            Err(e) => {
                return Err(ConnectionError::Protocol(format!(
                    "registration {}: {e}",
                    self.registration_id
                )));
            }
        };
        let (rid, result) = match req {
            DpsRequest::Register { rid } => (rid, self.register(payload).await),
            DpsRequest::OperationStatus { rid, operation_id } => {
                (rid, self.status(&operation_id).await)
            }
        };
        let retry_after = self.gw.dps.config().retry_after_secs;
        let (status, body, retry) = match result {
            Ok(op) if op.status == "assigning" => (202, serde_json::to_vec(&op), Some(retry_after)),
            Ok(op) => (200, serde_json::to_vec(&op), None),
            Err(e) => {
                if !matches!(e, DpsError::Unauthorized) {
                    tracing::info!(registration = %self.registration_id, status = e.status(), "dps request failed: {e}");
                }
                let retry = (e.status() >= 429).then_some(retry_after.max(1));
                (
                    e.status(),
                    serde_json::to_vec(&DpsErrorBody::new(e.error_code(), e.to_string())),
                    retry,
                )
            }
        };
        let body =
            body.map_err(|e| ConnectionError::Protocol(format!("encoding a response: {e}")))?;
        self.respond(dps_response_topic(status, &rid, retry), body, out)
    }

    async fn register(&self, payload: &[u8]) -> Result<RegistrationOperationStatus, DpsError> {
        let p = self.principal.as_ref().map_err(clone_err)?;
        let body: DeviceRegistration = if payload.iter().all(u8::is_ascii_whitespace) {
            DeviceRegistration::default()
        } else {
            serde_json::from_slice(payload).map_err(|e| {
                DpsError::bad_request(format!("register body is not valid JSON: {e}"))
            })?
        };
        self.gw.dps.register(p, body).await
    }

    async fn status(&self, operation_id: &str) -> Result<RegistrationOperationStatus, DpsError> {
        let p = self.principal.as_ref().map_err(clone_err)?;
        self.gw.dps.operation_status(p, operation_id).await
    }

    fn respond<W: AsyncWrite + Unpin>(
        &mut self,
        topic: String,
        body: Vec<u8>,
        out: &mut PacketWriter<W>,
    ) -> Result<(), ConnectionError> {
        let Some(qos) = self.response_qos else {
            tracing::info!(registration = %self.registration_id, "dps: dropping a response: the client has not subscribed to {RESPONSE_FILTER}");
            return Ok(());
        };
        let pkid = if qos == QoS::AtLeastOnce {
            self.next_pkid = self.next_pkid.wrapping_add(1).max(1);
            self.next_pkid
        } else {
            0
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
}

fn clone_err(e: &DpsError) -> DpsError {
    match e {
        DpsError::BadRequest { code, message } => DpsError::BadRequest {
            code: *code,
            message: message.clone(),
        },
        _ => DpsError::Unauthorized,
    }
}
