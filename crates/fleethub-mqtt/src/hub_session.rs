//! The hub device plane over MQTT (protocols.md 7): telemetry now; twins, methods and C2D
//! subscriptions are refused (SUBACK 0x80) until they are served.

use crate::Gateway;
use crate::connection::{ConnectionError, PacketWriter};
use crate::topics::{HubPublish, parse_hub_publish, parse_property_bag};
use fleethub_mqtt_codec::{Packet, QoS, SubAck, SubscribeReturnCode};
use fleethub_services::{DpsError, HubPrincipal, TelemetryIn};
use tokio::io::AsyncWrite;

pub(crate) struct HubSession<'a> {
    gw: &'a Gateway,
    principal: HubPrincipal,
}

impl<'a> HubSession<'a> {
    pub(crate) fn new(gw: &'a Gateway, principal: HubPrincipal) -> Self {
        HubSession { gw, principal }
    }

    fn identity(&self) -> String {
        match &self.principal.module_id {
            Some(m) => format!("{}/{m}", self.principal.device_id),
            None => self.principal.device_id.clone(),
        }
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
                    return Err(ConnectionError::Protocol(format!("{}: QoS 2 publish is not supported", self.identity())));
                }
                let topic = parse_hub_publish(&p.topic)
                    .map_err(|e| ConnectionError::Protocol(format!("{}: {e}", self.identity())))?;
                match topic {
                    HubPublish::Telemetry { device_id, module_id, bag } => {
                        if device_id != self.principal.device_id || module_id != self.principal.module_id.as_deref() {
                            return Err(ConnectionError::Protocol(format!(
                                "{} may not publish as another identity (topic {})",
                                self.identity(),
                                p.topic
                            )));
                        }
                        let (system_properties, properties) = parse_property_bag(bag)
                            .map_err(|e| ConnectionError::Protocol(format!("{}: bad property bag: {e}", self.identity())))?;
                        let msg = TelemetryIn { system_properties, properties, body: p.payload.to_vec() };
                        match self.gw.hub.send_telemetry(&self.principal, msg).await {
                            Ok(_) => {}
                            Err(e @ DpsError::PayloadTooLarge(_)) => {
                                return Err(ConnectionError::Protocol(format!("{}: {e}", self.identity())));
                            }
                            Err(e) => {
                                // Not acknowledged: the device will resend.
                                return Err(ConnectionError::Protocol(format!("{}: telemetry not stored: {e}", self.identity())));
                            }
                        }
                        if p.qos == QoS::AtLeastOnce {
                            out.push(&Packet::PubAck(p.pkid))?;
                        }
                    }
                }
            }
            Packet::Subscribe(s) => {
                let codes = s
                    .filters
                    .iter()
                    .map(|(f, _)| {
                        tracing::info!(identity = %self.identity(), filter = %f, "hub: subscription refused: not served by this build yet");
                        SubscribeReturnCode::Failure
                    })
                    .collect();
                out.push(&Packet::SubAck(SubAck { pkid: s.pkid, return_codes: codes }))?;
            }
            Packet::Unsubscribe(u) => out.push(&Packet::UnsubAck(u.pkid))?,
            Packet::PubAck(_) => {}
            Packet::PingReq => out.push(&Packet::PingResp)?,
            Packet::Disconnect => return Ok(false),
            other => {
                return Err(ConnectionError::Protocol(format!("unexpected {} from a client", other.name())));
            }
        }
        Ok(true)
    }
}
