//! One task per MQTT connection: wait for CONNECT, authenticate, answer CONNACK, then read
//! packets until the client leaves, misbehaves or goes silent past its keep-alive.

use crate::Gateway;
use crate::dps_session::DpsSession;
use crate::hub_session::HubSession;
use bytes::BytesMut;
use fleethub_iot_protocol::identity::{ConnectTarget, parse_username};
use fleethub_mqtt_codec::{self as codec, ConnAck, ConnectReturnCode, Packet};
use fleethub_services::{AuthContext, DpsError};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Why a connection ended (for logs).
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol violation: {0}")]
    Protocol(String),
    #[error("no CONNECT within {0} s")]
    ConnectTimeout(u64),
    #[error("keep-alive expired (no packet for {0} s)")]
    KeepAlive(u64),
    #[error("connection refused: {0:?}")]
    Refused(ConnectReturnCode),
}

impl From<codec::CodecError> for ConnectionError {
    fn from(e: codec::CodecError) -> Self {
        ConnectionError::Protocol(e.to_string())
    }
}

/// Reads from the transport into `buf` until one packet decodes.
pub(crate) struct PacketReader<R> {
    rd: R,
    buf: BytesMut,
    max: usize,
}

impl<R> PacketReader<R> {
    /// The next packet if it has already arrived in full (no read from the transport).
    pub(crate) fn try_buffered(&mut self) -> Result<Option<Packet>, ConnectionError> {
        Ok(codec::decode(&mut self.buf, self.max)?)
    }
}

impl<R: AsyncRead + Unpin> PacketReader<R> {
    pub(crate) async fn next(&mut self) -> Result<Option<Packet>, ConnectionError> {
        loop {
            if let Some(p) = codec::decode(&mut self.buf, self.max)? {
                return Ok(Some(p));
            }
            if self.rd.read_buf(&mut self.buf).await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(ConnectionError::Protocol(
                        "connection closed inside a packet".into(),
                    ))
                };
            }
        }
    }
}

/// Buffered packet writer.
pub(crate) struct PacketWriter<W> {
    wr: W,
    buf: BytesMut,
}

impl<W: AsyncWrite + Unpin> PacketWriter<W> {
    pub(crate) fn push(&mut self, p: &Packet) -> Result<(), ConnectionError> {
        codec::encode(p, &mut self.buf)?;
        Ok(())
    }

    pub(crate) async fn flush(&mut self) -> Result<(), ConnectionError> {
        if !self.buf.is_empty() {
            self.wr.write_all(&self.buf).await?;
            self.buf.clear();
            self.wr.flush().await?;
        }
        Ok(())
    }
}

/// Serves one client connection to completion. `transport` names it in logs (`mqtt`, `mqtt-ws`).
pub async fn serve_connection<S>(gw: Arc<Gateway>, stream: S, peer: String, transport: &'static str)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    match run(&gw, stream, &peer, transport).await {
        Ok(()) => tracing::debug!(peer, transport, "mqtt connection closed"),
        Err(ConnectionError::Io(e)) => {
            tracing::debug!(peer, transport, "mqtt connection ended: {e}")
        }
        Err(e) => tracing::info!(peer, transport, "mqtt connection closed: {e}"),
    }
}

async fn run<S>(
    gw: &Gateway,
    stream: S,
    peer: &str,
    transport: &'static str,
) -> Result<(), ConnectionError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let (rd, wr) = tokio::io::split(stream);
    let mut reader = PacketReader {
        rd,
        buf: BytesMut::with_capacity(2048),
        max: gw.cfg.max_packet_bytes,
    };
    let mut writer = PacketWriter {
        wr,
        buf: BytesMut::with_capacity(2048),
    };

    let first = tokio::time::timeout(
        Duration::from_secs(gw.cfg.connect_timeout_secs),
        reader.next(),
    )
    .await
    .map_err(|_| ConnectionError::ConnectTimeout(gw.cfg.connect_timeout_secs))??;
    let connect = match first {
        Some(Packet::Connect(c)) => c,
        Some(other) => {
            return Err(ConnectionError::Protocol(format!(
                "first packet was {}, not CONNECT",
                other.name()
            )));
        }
        None => return Ok(()),
    };
    let refuse = |code| {
        Packet::ConnAck(ConnAck {
            session_present: false,
            code,
        })
    };
    if connect.protocol_level != 4 && connect.protocol_level != 3 {
        writer.push(&refuse(ConnectReturnCode::UnacceptableProtocolVersion))?;
        writer.flush().await?;
        return Err(ConnectionError::Refused(
            ConnectReturnCode::UnacceptableProtocolVersion,
        ));
    }
    let username = connect.username.clone().unwrap_or_default();
    let password = connect
        .password
        .as_deref()
        .map(String::from_utf8_lossy)
        .unwrap_or_default()
        .into_owned();
    let keep_alive = connect.keep_alive as u64;
    let idle = if keep_alive == 0 {
        gw.cfg.idle_timeout_secs
    } else {
        (keep_alive * 3).div_ceil(2).min(1767)
    };

    match parse_username(&username) {
        Some(ConnectTarget::Dps {
            id_scope,
            registration_id,
        }) => {
            if !connect.client_id.is_empty()
                && !connect.client_id.eq_ignore_ascii_case(&registration_id)
            {
                gw.dps.auth_failures().record(
                    "dps",
                    transport,
                    &registration_id,
                    Some(peer.to_string()),
                    &format!(
                        "client ID '{}' differs from the registration ID in the user name",
                        connect.client_id
                    ),
                );
                writer.push(&refuse(ConnectReturnCode::IdentifierRejected))?;
                writer.flush().await?;
                return Err(ConnectionError::Refused(
                    ConnectReturnCode::IdentifierRejected,
                ));
            }
            let ctx = AuthContext {
                transport,
                peer: Some(peer),
            };
            let principal = match gw
                .dps
                .authenticate(&id_scope, &registration_id, &password, ctx)
                .await
            {
                Ok(p) => Ok(p),
                // A malformed registration ID is answered with a 400 on the register topic,
                // where the device can see it; a CONNACK could only say "refused".
                Err(e @ DpsError::BadRequest { .. }) => Err(e),
                Err(_) => {
                    writer.push(&refuse(ConnectReturnCode::NotAuthorized))?;
                    writer.flush().await?;
                    return Err(ConnectionError::Refused(ConnectReturnCode::NotAuthorized));
                }
            };
            writer.push(&Packet::ConnAck(ConnAck {
                session_present: false,
                code: ConnectReturnCode::Accepted,
            }))?;
            writer.flush().await?;
            tracing::debug!(peer, transport, registration = %registration_id, "dps mqtt session started");
            let mut session = DpsSession::new(gw, principal, registration_id);
            loop {
                let pkt = tokio::time::timeout(Duration::from_secs(idle), reader.next())
                    .await
                    .map_err(|_| ConnectionError::KeepAlive(idle))??;
                let Some(pkt) = pkt else { return Ok(()) };
                if !session.handle(pkt, &mut writer).await? {
                    writer.flush().await?;
                    return Ok(());
                }
                writer.flush().await?;
            }
        }
        Some(ConnectTarget::Hub {
            host,
            device_id,
            module_id,
        }) => {
            let identity = match &module_id {
                Some(m) => format!("{device_id}/{m}"),
                None => device_id.clone(),
            };
            let record = |reason: String| {
                gw.hub.auth_failures().record(
                    "hub",
                    transport,
                    &identity,
                    Some(peer.to_string()),
                    &reason,
                );
            };
            if !host.eq_ignore_ascii_case(&gw.hub.config().host) {
                record(format!(
                    "user name names hub '{host}', this hub is '{}'",
                    gw.hub.config().host
                ));
                writer.push(&refuse(ConnectReturnCode::NotAuthorized))?;
                writer.flush().await?;
                return Err(ConnectionError::Refused(ConnectReturnCode::NotAuthorized));
            }
            if connect.client_id != identity {
                record(format!(
                    "client ID '{}' must be '{identity}' (the device/module ID of the user name)",
                    connect.client_id
                ));
                writer.push(&refuse(ConnectReturnCode::IdentifierRejected))?;
                writer.flush().await?;
                return Err(ConnectionError::Refused(
                    ConnectReturnCode::IdentifierRejected,
                ));
            }
            let ctx = AuthContext {
                transport,
                peer: Some(peer),
            };
            let principal = match gw
                .hub
                .authenticate_device(&device_id, module_id.as_deref(), &password, ctx)
                .await
            {
                Ok(p) => p,
                Err(_) => {
                    writer.push(&refuse(ConnectReturnCode::NotAuthorized))?;
                    writer.flush().await?;
                    return Err(ConnectionError::Refused(ConnectReturnCode::NotAuthorized));
                }
            };
            let mut live = gw.live.register(&identity);
            let conn = live.id;
            // Persistent session (CleanSession=0): subscriptions are kept per client identity
            // in the store, so they survive reconnects and server restarts.
            let (session_present, subs) = if connect.clean_session {
                if let Err(e) = gw.hub.store().delete_mqtt_session(&identity).await {
                    tracing::warn!(identity, "cannot clear the MQTT session: {e}");
                }
                (false, Default::default())
            } else {
                match gw.hub.store().get_mqtt_session(&identity).await {
                    Ok(Some(doc)) => (true, crate::hub_session::decode_subscriptions(&doc)),
                    Ok(None) => (false, Default::default()),
                    Err(e) => {
                        tracing::warn!(identity, "cannot load the MQTT session: {e}");
                        (false, Default::default())
                    }
                }
            };
            let mut events = gw.hub.attach(&device_id, module_id.as_deref(), conn);
            // Unregisters the connection however this task ends (also when it is cancelled).
            let _attached = Attached {
                hub: &gw.hub,
                device_id: &device_id,
                module_id: module_id.as_deref(),
                conn,
            };
            writer.push(&Packet::ConnAck(ConnAck {
                session_present,
                code: ConnectReturnCode::Accepted,
            }))?;
            writer.flush().await?;
            tracing::info!(
                peer,
                transport,
                identity,
                session_present,
                "device connected"
            );
            let expires_in = principal
                .token_expiry
                .saturating_sub(fleethub_services::unix_now())
                + gw.hub.config().token_skew_secs;
            let token_deadline = tokio::time::sleep(Duration::from_secs(expires_in));
            tokio::pin!(token_deadline);
            let mut session = HubSession::new(gw, principal, conn, subs, !connect.clean_session);
            session.start(&mut writer).await?;
            writer.flush().await?;
            let result = loop {
                let pkt = tokio::select! {
                    r = tokio::time::timeout(Duration::from_secs(idle), reader.next()) => match r {
                        Ok(Ok(p)) => p,
                        Ok(Err(e)) => break Err(e),
                        Err(_) => break Err(ConnectionError::KeepAlive(idle)),
                    },
                    Some(ev) = events.recv() => {
                        if let Err(e) = session.on_event(ev, &mut writer).await {
                            break Err(e);
                        }
                        if let Err(e) = writer.flush().await {
                            break Err(e);
                        }
                        continue;
                    }
                    _ = &mut live.taken_over => {
                        break Err(ConnectionError::Protocol(format!("{identity}: another connection with the same identity took over")));
                    }
                    _ = &mut token_deadline => {
                        break Err(ConnectionError::Protocol(format!("{identity}: SAS token expired; the device must reconnect with a new one")));
                    }
                };
                let Some(pkt) = pkt else { break Ok(()) };
                match handle_burst(&mut session, pkt, &mut reader, &mut writer).await {
                    Ok(true) => {}
                    Ok(false) => {
                        let _ = writer.flush().await;
                        break Ok(());
                    }
                    Err(e) => break Err(e),
                }
                if let Err(e) = writer.flush().await {
                    break Err(e);
                }
            };
            if !connect.clean_session {
                gw.sessions
                    .lock()
                    .expect("sessions")
                    .insert(identity.clone(), session.subs.clone());
            }
            tracing::info!(identity, "device disconnected");
            result
        }
        None => {
            gw.dps.auth_failures().record(
                "mqtt",
                transport,
                &connect.client_id,
                Some(peer.to_string()),
                &format!(
                    "user name '{username}' is neither a DPS ('{{idScope}}/registrations/{{registrationId}}/api-version=...') nor a hub ('{{host}}/{{deviceId}}/?api-version=...') user name"
                ),
            );
            writer.push(&refuse(ConnectReturnCode::BadUserNamePassword))?;
            writer.flush().await?;
            Err(ConnectionError::Refused(
                ConnectReturnCode::BadUserNamePassword,
            ))
        }
    }
}

/// Keeps a hub connection registered as live for as long as it exists.
struct Attached<'a> {
    hub: &'a fleethub_services::Hub,
    device_id: &'a str,
    module_id: Option<&'a str>,
    conn: u64,
}

impl Drop for Attached<'_> {
    fn drop(&mut self) {
        self.hub.detach(self.device_id, self.module_id, self.conn);
    }
}

/// Most telemetry publishes stored in one store write.
const TELEMETRY_BATCH: usize = 64;

/// Handles `first` and every packet that has already arrived behind it: runs of telemetry
/// publishes are stored with one write (and acknowledged in order once durable), so a client
/// with several publishes in flight costs one store round trip, not one each.
async fn handle_burst<R, W>(
    session: &mut HubSession<'_>,
    first: Packet,
    reader: &mut PacketReader<R>,
    writer: &mut PacketWriter<W>,
) -> Result<bool, ConnectionError>
where
    W: AsyncWrite + Unpin,
{
    let mut batch = Vec::new();
    let mut next = Some(first);
    while let Some(pkt) = next.take() {
        if let Packet::Publish(p) = &pkt {
            tracing::trace!(identity = %session.identity(), topic = %p.topic, "received PUBLISH");
        } else {
            tracing::trace!(identity = %session.identity(), packet = pkt.name(), "received");
        }
        if HubSession::is_telemetry(&pkt) && batch.len() < TELEMETRY_BATCH {
            batch.push(pkt);
        } else {
            if !batch.is_empty() {
                session
                    .on_telemetry_batch(std::mem::take(&mut batch), writer)
                    .await?;
            }
            if HubSession::is_telemetry(&pkt) {
                batch.push(pkt);
            } else if !session.handle(pkt, writer).await? {
                return Ok(false);
            }
        }
        next = reader.try_buffered()?;
    }
    if !batch.is_empty() {
        session.on_telemetry_batch(batch, writer).await?;
    }
    Ok(true)
}
