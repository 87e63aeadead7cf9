//! DPS over MQTT (docs/protocol-notes.md, "DPS MQTT topics"): CONNECT (clientId = registration ID, SAS password),
//! SUBSCRIBE `$dps/registrations/res/#` at QoS 1, PUBLISH register / poll at QoS 1 with a
//! decimal `$rid` counter, match responses by `$rid`.
//!
//! A registration is a strict request/answer sequence, so this drives the framed stream itself
//! (no connection task, no command channel) and writes as few TLS records as MQTT allows
//! (docs/protocol-notes.md, "DPS over MQTT: packets in one write"):
//! - CONNECT, SUBSCRIBE and the register PUBLISH leave in one write: a client may send packets
//!   after CONNECT without waiting for CONNACK, and a server that refuses the CONNECT processes
//!   none of them;
//! - the PUBACK of an answer leaves with the next request when that follows at once (poll,
//!   repeated register) and with DISCONNECT after the last answer; before a wait it leaves at
//!   once on its own.

use std::time::Duration;

use fleethub_mqtt_codec::{
    ConnectReturnCode, FrameError, Framed, Packet, Publish, QoS, Subscribe, SubscribeReturnCode,
};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Next, ProvisioningClient, ProvisioningError, RegistrationResult, interpret};
use crate::mqtt_client::{DEFAULT_CONNACK_TIMEOUT, DEFAULT_MAX_PACKET_SIZE, MqttError};
use fleethub_iot_protocol::dps::{self, RESPONSE_FILTER as RESPONSE_TOPIC_FILTER, ResponseTopic};
use fleethub_iot_protocol::identity;

/// Keep-alive announced in CONNECT (the Python SDK's default).
const KEEP_ALIVE: Duration = Duration::from_mins(1);
/// Bound on the courtesy DISCONNECT at the end.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The SUBSCRIBE's packet ID; requests use 2, 3, ...
const SUBSCRIBE_PKID: u16 = 1;
/// During a long wait, PINGREQ this often (the server's idle limit is 1.5 keep-alives).
const PING_EVERY: Duration = Duration::from_secs(KEEP_ALIVE.as_secs() / 2);
const SERVER_CLOSED: &str = "server closed the connection";

enum Request {
    Register,
    Poll(String),
}

pub(super) async fn register<S>(
    client: &ProvisioningClient,
    stream: S,
) -> Result<RegistrationResult, ProvisioningError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // Python always sends `"payload": null` when there is none.
    let register_body = serde_json::to_vec(&client.registration_body(true))
        .map_err(|e| ProvisioningError::Config(e.to_string()))?;
    let connect = fleethub_mqtt_codec::Connect {
        protocol_level: fleethub_mqtt_codec::PROTOCOL_LEVEL_3_1_1,
        client_id: client.registration_id.clone(),
        clean_session: true,
        keep_alive: KEEP_ALIVE.as_secs().try_into().unwrap_or(u16::MAX),
        username: Some(identity::dps_username(
            &client.id_scope,
            &client.registration_id,
            dps::MQTT_API_VERSION,
            crate::USER_AGENT,
        )),
        password: Some(client.sas_token()?.into_bytes()),
        will: None,
    };
    let mut conn = Connection {
        framed: Framed::new(stream, DEFAULT_MAX_PACKET_SIZE),
    };
    let subscribe = Subscribe::new(
        SUBSCRIBE_PKID,
        vec![(RESPONSE_TOPIC_FILTER.to_string(), QoS::AtLeastOnce)],
    );
    conn.push(&Packet::Connect(connect))?;
    conn.push(&Packet::Subscribe(subscribe))?;
    conn.push(&request_packet(&Request::Register, 1, &register_body))?;
    conn.flush().await?;
    tokio::time::timeout(DEFAULT_CONNACK_TIMEOUT, conn.connack())
        .await
        .map_err(|_| MqttError::ConnAckTimeout(DEFAULT_CONNACK_TIMEOUT))??;
    let result = run(client, &mut conn, &register_body).await;
    // The last answer's PUBACK leaves with the DISCONNECT.
    let _ = tokio::time::timeout(DISCONNECT_TIMEOUT, conn.disconnect()).await;
    result
}

/// Answers until the registration ends; the register request (`$rid` 1) is already sent.
async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    client: &ProvisioningClient,
    conn: &mut Connection<S>,
    register_body: &[u8],
) -> Result<RegistrationResult, ProvisioningError> {
    let mut rid: u64 = 1;
    loop {
        let (response, payload) = conn.answer(&rid.to_string()).await?;
        let (request, after) = match interpret(
            response.status,
            &payload,
            response.retry_after,
            &client.poll,
        )? {
            Next::Done(result) => return Ok(*result),
            Next::Poll {
                operation_id,
                after,
            } => (Request::Poll(operation_id), after),
            Next::Retry { after } => {
                tracing::debug!(status = response.status, ?after, "DPS asked to retry");
                (Request::Register, after)
            }
        };
        if !after.is_zero() {
            conn.wait(after).await?;
        }
        rid += 1;
        conn.push(&request_packet(&request, rid, register_body))?;
        conn.flush().await?;
    }
}

/// The PUBLISH of request `rid` at QoS 1; its packet ID follows the SUBSCRIBE's.
fn request_packet(request: &Request, rid: u64, register_body: &[u8]) -> Packet {
    let (topic, body) = match request {
        Request::Register => (dps::register_topic(rid), register_body.to_vec()),
        Request::Poll(op) => (dps::operation_status_topic(rid, op), b" ".to_vec()),
    };
    // Packet IDs 2, 3, ..., 65535, 1, 2, ... (one request is in flight at a time).
    let pkid = u16::try_from(rid % 65535).unwrap_or(0) + 1;
    Packet::Publish(Publish::new(topic, QoS::AtLeastOnce, pkid, body))
}

struct Connection<S> {
    framed: Framed<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    fn push(&mut self, packet: &Packet) -> Result<(), MqttError> {
        Ok(self.framed.push(packet)?)
    }

    async fn flush(&mut self) -> Result<(), MqttError> {
        Ok(self.framed.flush().await?)
    }

    async fn next(&mut self, eof: &str) -> Result<Packet, MqttError> {
        match self.framed.next().await {
            Ok(Some(packet)) => Ok(packet),
            Ok(None) | Err(FrameError::ClosedInsidePacket) => {
                Err(MqttError::ConnectionLost(eof.into()))
            }
            Err(FrameError::Io(e)) => Err(MqttError::Io(e)),
            Err(FrameError::Codec(e)) => Err(MqttError::Codec(e)),
        }
    }

    /// The CONNACK; a refusing one is [`MqttError::Refused`].
    async fn connack(&mut self) -> Result<(), MqttError> {
        match self
            .next("server closed the connection before CONNACK")
            .await?
        {
            Packet::ConnAck(ack) if ack.code == ConnectReturnCode::Accepted => Ok(()),
            Packet::ConnAck(ack) => Err(MqttError::Refused(ack.code)),
            other => Err(MqttError::UnexpectedPacket(other.name())),
        }
    }

    /// Reads until the answer to `rid` (after the SUBACK); the PUBACK of every QoS 1 PUBLISH
    /// is queued for the next write.
    async fn answer(
        &mut self,
        rid: &str,
    ) -> Result<(ResponseTopic, bytes::Bytes), ProvisioningError> {
        loop {
            match self.next(SERVER_CLOSED).await? {
                Packet::SubAck(ack) if ack.pkid == SUBSCRIBE_PKID => {
                    if ack
                        .return_codes
                        .first()
                        .is_none_or(|c| *c == SubscribeReturnCode::Failure)
                    {
                        return Err(ProvisioningError::InvalidResponse(format!(
                            "SUBSCRIBE {RESPONSE_TOPIC_FILTER} refused"
                        )));
                    }
                }
                Packet::Publish(publish) => {
                    if publish.qos == QoS::AtLeastOnce {
                        self.push(&Packet::PubAck(publish.pkid))?;
                    }
                    match dps::parse_response_topic(&publish.topic) {
                        Some(t) if t.rid == rid => {
                            return Ok((t, publish.payload));
                        }
                        _ => tracing::debug!(topic = %publish.topic, "ignoring unrelated publish"),
                    }
                }
                // The requests' PUBACKs: the answer follows.
                Packet::PubAck(_) | Packet::PingResp => {}
                other => return Err(MqttError::UnexpectedPacket(other.name()).into()),
            }
        }
    }

    /// Sends the queued PUBACK at once (it is not held back for the wait), then waits,
    /// keeping the connection alive through waits longer than the keep-alive.
    async fn wait(&mut self, after: Duration) -> Result<(), MqttError> {
        self.flush().await?;
        let mut left = after;
        while left > PING_EVERY {
            tokio::time::sleep(PING_EVERY).await;
            left -= PING_EVERY;
            self.push(&Packet::PingReq)?;
            self.flush().await?;
        }
        tokio::time::sleep(left).await;
        Ok(())
    }

    async fn disconnect(&mut self) {
        if self.framed.push(&Packet::Disconnect).is_ok() {
            let _ = self.framed.shutdown().await;
        }
    }
}
