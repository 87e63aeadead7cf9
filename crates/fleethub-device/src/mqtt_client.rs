//! A small async MQTT 3.1.1 client on `fleethub-mqtt-codec`, over any byte stream
//! (TLS, WebSocket adapter, an in-memory duplex in tests).
//!
//! [`MqttClient::connect`] sends CONNECT and waits for CONNACK, then hands the stream to a
//! background task that:
//! - writes PUBLISH (QoS 0, or QoS 1 completing on PUBACK), SUBSCRIBE (completing on
//!   SUBACK) and DISCONNECT for the [`MqttClient`] handles;
//! - acknowledges and forwards incoming PUBLISH packets to [`MqttIncoming`] (with
//!   [`MqttOptions::manual_acks`], QoS 1 packets are acknowledged only when the
//!   application calls [`MqttClient::ack`]);
//! - sends PINGREQ after `keep_alive` without outgoing traffic and drops the connection
//!   when the PINGRESP does not come within another `keep_alive`.
//!
//! When the connection ends, pending operations fail with [`MqttError::ConnectionLost`]
//! (carrying the reason) and [`MqttIncoming::recv`] returns `None`. Dropping every
//! [`MqttClient`] handle sends DISCONNECT and closes the connection.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use fleethub_mqtt_codec::{
    CodecError, ConnectReturnCode, FrameError, Framed, Packet, PacketIds, Publish, QoS, Subscribe,
    SubscribeReturnCode,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Default largest packet accepted from the server.
pub const DEFAULT_MAX_PACKET_SIZE: usize = 1024 * 1024;
/// Default bound on waiting for CONNACK.
pub const DEFAULT_CONNACK_TIMEOUT: Duration = Duration::from_secs(30);

/// Connection options.
#[derive(Clone)]
pub struct MqttOptions {
    pub client_id: String,
    pub username: Option<String>,
    /// Carries SAS tokens: redacted in `Debug`.
    pub password: Option<Vec<u8>>,
    pub clean_session: bool,
    /// PINGREQ interval without other outgoing traffic; zero disables keep-alive.
    /// Sent in CONNECT rounded down to whole seconds (at most 65535).
    pub keep_alive: Duration,
    pub connack_timeout: Duration,
    pub max_packet_size: usize,
    /// Incoming PUBLISH packets buffered before the connection task waits for the reader.
    pub incoming_capacity: usize,
    /// Do not PUBACK incoming QoS 1 PUBLISH packets automatically: the application calls
    /// [`MqttClient::ack`] once it has taken responsibility for the message.
    pub manual_acks: bool,
}

impl fmt::Debug for MqttOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MqttOptions")
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("clean_session", &self.clean_session)
            .field("keep_alive", &self.keep_alive)
            .field("connack_timeout", &self.connack_timeout)
            .field("max_packet_size", &self.max_packet_size)
            .field("incoming_capacity", &self.incoming_capacity)
            .field("manual_acks", &self.manual_acks)
            .finish()
    }
}

impl MqttOptions {
    /// Clean session, keep-alive 60 s, no credentials.
    pub fn new(client_id: impl Into<String>) -> Self {
        MqttOptions {
            client_id: client_id.into(),
            username: None,
            password: None,
            clean_session: true,
            keep_alive: Duration::from_mins(1),
            connack_timeout: DEFAULT_CONNACK_TIMEOUT,
            max_packet_size: DEFAULT_MAX_PACKET_SIZE,
            incoming_capacity: 256,
            manual_acks: false,
        }
    }

    pub fn with_credentials(
        mut self,
        username: impl Into<String>,
        password: impl Into<Vec<u8>>,
    ) -> Self {
        self.username = Some(username.into());
        self.password = Some(password.into());
        self
    }

    pub fn with_clean_session(mut self, clean: bool) -> Self {
        self.clean_session = clean;
        self
    }

    pub fn with_keep_alive(mut self, keep_alive: Duration) -> Self {
        self.keep_alive = keep_alive;
        self
    }

    pub fn with_connack_timeout(mut self, timeout: Duration) -> Self {
        self.connack_timeout = timeout;
        self
    }

    /// See [`MqttOptions::manual_acks`].
    pub fn with_manual_acks(mut self, manual: bool) -> Self {
        self.manual_acks = manual;
        self
    }
}

/// MQTT client errors.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error("MQTT I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("MQTT protocol error: {0}")]
    Codec(#[from] CodecError),
    #[error("no CONNACK within {0:?}")]
    ConnAckTimeout(Duration),
    #[error("server refused the connection: CONNACK code {} ({})", .0.as_u8(), connack_reason(*.0))]
    Refused(ConnectReturnCode),
    #[error("unexpected {0} from the server")]
    UnexpectedPacket(&'static str),
    #[error("no PINGRESP within {0:?}: connection considered dead")]
    KeepAliveTimeout(Duration),
    #[error("QoS 2 publishing is not supported")]
    UnsupportedQoS,
    #[error("MQTT connection lost: {0}")]
    ConnectionLost(String),
}

/// Human-readable meaning of a CONNACK return code.
pub fn connack_reason(code: ConnectReturnCode) -> &'static str {
    match code {
        ConnectReturnCode::Accepted => "accepted",
        ConnectReturnCode::UnacceptableProtocolVersion => "unacceptable protocol version",
        ConnectReturnCode::IdentifierRejected => "identifier rejected",
        ConnectReturnCode::ServerUnavailable => "server unavailable",
        ConnectReturnCode::BadUserNamePassword => "bad user name or password",
        ConnectReturnCode::NotAuthorized => "not authorized",
    }
}

enum Command {
    Publish {
        publish: Publish,
        done: oneshot::Sender<()>,
    },
    Subscribe {
        filters: Vec<(String, QoS)>,
        done: oneshot::Sender<Vec<SubscribeReturnCode>>,
    },
    Disconnect {
        done: oneshot::Sender<()>,
    },
}

type CloseReason = Arc<Mutex<Option<String>>>;

/// Handle to a connected client; cheap to clone.
#[derive(Clone)]
pub struct MqttClient {
    commands: mpsc::Sender<Command>,
    /// PUBACKs requested with [`MqttClient::ack`]; unbounded so that acknowledging never
    /// waits for the connection task (which may itself wait for the incoming reader).
    acks: mpsc::UnboundedSender<u16>,
    session_present: bool,
    close_reason: CloseReason,
}

impl fmt::Debug for MqttClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MqttClient")
            .field("session_present", &self.session_present)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

/// Receiver of the PUBLISH packets the server sends.
#[derive(Debug)]
pub struct MqttIncoming {
    rx: mpsc::Receiver<Publish>,
    close_reason: CloseReason,
}

impl MqttIncoming {
    /// The next PUBLISH; `None` once the connection is gone.
    pub async fn recv(&mut self) -> Option<Publish> {
        self.rx.recv().await
    }

    /// Why the connection ended (once `recv` returned `None`).
    pub fn close_reason(&self) -> Option<String> {
        self.close_reason
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl MqttClient {
    /// Sends CONNECT on `stream`, waits for CONNACK (bounded by `connack_timeout`) and
    /// starts the connection task. A refusing CONNACK is [`MqttError::Refused`].
    pub async fn connect<S>(
        stream: S,
        options: MqttOptions,
    ) -> Result<(MqttClient, MqttIncoming), MqttError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let keep_alive_secs = options.keep_alive.as_secs().min(u64::from(u16::MAX)) as u16;
        let connect = fleethub_mqtt_codec::Connect {
            protocol_level: fleethub_mqtt_codec::PROTOCOL_LEVEL_3_1_1,
            client_id: options.client_id.clone(),
            clean_session: options.clean_session,
            keep_alive: keep_alive_secs,
            username: options.username.clone(),
            password: options.password.clone(),
            will: None,
        };
        let mut framed = Framed::new(stream, options.max_packet_size);
        let handshake = async {
            let lost = |e| lost_on_eof(e, "server closed the connection before CONNACK");
            framed.send(&Packet::Connect(connect)).await.map_err(lost)?;
            match framed.next().await.map_err(lost)? {
                Some(Packet::ConnAck(ack)) => Ok(ack),
                Some(other) => Err(MqttError::UnexpectedPacket(other.name())),
                None => Err(lost(FrameError::ClosedInsidePacket)),
            }
        };
        let ack = tokio::time::timeout(options.connack_timeout, handshake)
            .await
            .map_err(|_| MqttError::ConnAckTimeout(options.connack_timeout))??;
        if ack.code != ConnectReturnCode::Accepted {
            return Err(MqttError::Refused(ack.code));
        }

        let (cmd_tx, cmd_rx) = mpsc::channel(64);
        let (ack_tx, ack_rx) = mpsc::unbounded_channel();
        let (pub_tx, pub_rx) = mpsc::channel(options.incoming_capacity.max(1));
        let close_reason: CloseReason = Arc::default();
        let keep_alive = Duration::from_secs(u64::from(keep_alive_secs));
        let conn = Connection {
            framed,
            keep_alive,
            last_sent: Instant::now(),
            ping_sent: None,
            packet_ids: PacketIds::new(),
            pending_pubs: HashMap::new(),
            pending_subs: HashMap::new(),
            incoming: pub_tx,
            manual_acks: options.manual_acks,
            acks: ack_rx,
        };
        let reason = close_reason.clone();
        tokio::spawn(async move {
            let (mut conn, mut cmd_rx) = (conn, cmd_rx);
            let text = match conn.run(&mut cmd_rx).await {
                Ok(()) => "disconnected".to_string(),
                Err(e) => {
                    tracing::debug!("MQTT connection ended: {e}");
                    e.to_string()
                }
            };
            // Record why before pending callers and the incoming receiver see the end.
            *reason
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(text);
            drop(cmd_rx);
            drop(conn);
        });
        Ok((
            MqttClient {
                commands: cmd_tx,
                acks: ack_tx,
                session_present: ack.session_present,
                close_reason: close_reason.clone(),
            },
            MqttIncoming {
                rx: pub_rx,
                close_reason,
            },
        ))
    }

    /// CONNACK's session-present flag.
    pub fn session_present(&self) -> bool {
        self.session_present
    }

    /// Has the connection ended?
    pub fn is_closed(&self) -> bool {
        self.commands.is_closed()
    }

    fn lost(&self) -> MqttError {
        let reason = self
            .close_reason
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        MqttError::ConnectionLost(reason.unwrap_or_else(|| "connection closed".into()))
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, MqttError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| self.lost())?;
        rx.await.map_err(|_| self.lost())
    }

    /// Publishes; QoS 0 completes once written, QoS 1 once the server's PUBACK arrives.
    pub async fn publish(
        &self,
        topic: impl Into<String>,
        qos: QoS,
        payload: impl Into<Bytes>,
    ) -> Result<(), MqttError> {
        if qos == QoS::ExactlyOnce {
            return Err(MqttError::UnsupportedQoS);
        }
        // The packet id is assigned by the connection task.
        let publish = Publish::new(topic, qos, 0, payload);
        self.call(|done| Command::Publish { publish, done }).await
    }

    /// Subscribes; returns the SUBACK return codes (one per filter, in order).
    pub async fn subscribe(
        &self,
        filters: Vec<(String, QoS)>,
    ) -> Result<Vec<SubscribeReturnCode>, MqttError> {
        self.call(|done| Command::Subscribe { filters, done }).await
    }

    /// Sends DISCONNECT and closes the connection.
    pub async fn disconnect(&self) -> Result<(), MqttError> {
        self.call(|done| Command::Disconnect { done }).await
    }

    /// PUBACKs an incoming QoS 1 PUBLISH (only meaningful with
    /// [`MqttOptions::manual_acks`]). Never waits; fails only when the connection is gone
    /// (the server then redelivers the message on a persistent session).
    pub fn ack(&self, pkid: u16) -> Result<(), MqttError> {
        self.acks.send(pkid).map_err(|_| self.lost())
    }
}

/// A framing error as the client reports it: the server closing the stream is
/// [`MqttError::ConnectionLost`] with `eof`.
fn lost_on_eof(e: FrameError, eof: &str) -> MqttError {
    match e {
        FrameError::Io(e) => MqttError::Io(e),
        FrameError::Codec(e) => MqttError::Codec(e),
        FrameError::ClosedInsidePacket => MqttError::ConnectionLost(eof.into()),
    }
}

const SERVER_CLOSED: &str = "server closed the connection";

struct Connection<S> {
    framed: Framed<S>,
    keep_alive: Duration,
    last_sent: Instant,
    ping_sent: Option<Instant>,
    packet_ids: PacketIds,
    pending_pubs: HashMap<u16, oneshot::Sender<()>>,
    pending_subs: HashMap<u16, oneshot::Sender<Vec<SubscribeReturnCode>>>,
    incoming: mpsc::Sender<Publish>,
    manual_acks: bool,
    acks: mpsc::UnboundedReceiver<u16>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    async fn run(&mut self, commands: &mut mpsc::Receiver<Command>) -> Result<(), MqttError> {
        loop {
            let deadline = match self.ping_sent {
                Some(sent) => sent + self.keep_alive,
                None => self.last_sent + self.keep_alive,
            };
            tokio::select! {
                p = self.framed.next() => match p.map_err(|e| lost_on_eof(e, SERVER_CLOSED))? {
                    Some(packet) => self.handle(packet).await?,
                    None => return Err(MqttError::ConnectionLost(SERVER_CLOSED.into())),
                },
                command = commands.recv() => match command {
                    Some(Command::Publish { publish, done }) => self.publish(publish, done).await?,
                    Some(Command::Subscribe { filters, done }) => {
                        let pkid = self.alloc_pkid();
                        self.pending_subs.insert(pkid, done);
                        self.write(&Packet::Subscribe(Subscribe::new(pkid, filters))).await?;
                    }
                    Some(Command::Disconnect { done }) => {
                        self.close().await;
                        let _ = done.send(());
                        return Ok(());
                    }
                    None => {
                        self.close().await;
                        return Ok(());
                    }
                },
                Some(pkid) = self.acks.recv() => self.write(&Packet::PubAck(pkid)).await?,
                () = tokio::time::sleep_until(deadline), if !self.keep_alive.is_zero() => {
                    if self.ping_sent.is_some() {
                        return Err(MqttError::KeepAliveTimeout(self.keep_alive));
                    }
                    self.write(&Packet::PingReq).await?;
                    self.ping_sent = Some(Instant::now());
                }
            }
        }
    }

    async fn close(&mut self) {
        let _ = self.write(&Packet::Disconnect).await;
        let _ = self.framed.shutdown().await;
    }

    fn alloc_pkid(&mut self) -> u16 {
        let (pubs, subs) = (&self.pending_pubs, &self.pending_subs);
        self.packet_ids
            .next(|id| pubs.contains_key(&id) || subs.contains_key(&id))
    }

    async fn publish(
        &mut self,
        mut publish: Publish,
        done: oneshot::Sender<()>,
    ) -> Result<(), MqttError> {
        if publish.qos == QoS::AtMostOnce {
            self.write(&Packet::Publish(publish)).await?;
            let _ = done.send(());
        } else {
            let pkid = self.alloc_pkid();
            publish.pkid = pkid;
            self.pending_pubs.insert(pkid, done);
            self.write(&Packet::Publish(publish)).await?;
        }
        Ok(())
    }

    async fn handle(&mut self, packet: Packet) -> Result<(), MqttError> {
        match packet {
            Packet::Publish(publish) => {
                match publish.qos {
                    QoS::AtLeastOnce if !self.manual_acks => {
                        self.write(&Packet::PubAck(publish.pkid)).await?;
                    }
                    QoS::AtMostOnce | QoS::AtLeastOnce => {}
                    QoS::ExactlyOnce => self.write(&Packet::PubRec(publish.pkid)).await?,
                }
                // A dropped receiver just means nobody listens any more.
                let _ = self.incoming.send(publish).await;
            }
            Packet::PubAck(pkid) => {
                if let Some(done) = self.pending_pubs.remove(&pkid) {
                    let _ = done.send(());
                }
            }
            Packet::PubRel(pkid) => self.write(&Packet::PubComp(pkid)).await?,
            Packet::SubAck(ack) => {
                if let Some(done) = self.pending_subs.remove(&ack.pkid) {
                    let _ = done.send(ack.return_codes);
                }
            }
            Packet::PingResp => self.ping_sent = None,
            Packet::UnsubAck(_) | Packet::PubRec(_) | Packet::PubComp(_) => {}
            other @ (Packet::Connect(_)
            | Packet::ConnAck(_)
            | Packet::Subscribe(_)
            | Packet::Unsubscribe(_)
            | Packet::PingReq
            | Packet::Disconnect) => return Err(MqttError::UnexpectedPacket(other.name())),
        }
        Ok(())
    }

    async fn write(&mut self, packet: &Packet) -> Result<(), MqttError> {
        self.framed
            .send(packet)
            .await
            .map_err(|e| lost_on_eof(e, SERVER_CLOSED))?;
        self.last_sent = Instant::now();
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests;
