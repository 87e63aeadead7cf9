//! One task per MQTT connection: wait for CONNECT, then hand the client to the DPS or the hub
//! session by the CONNECT user name ([`crate::dps_session::serve`],
//! [`crate::hub_session::serve`]), which authenticate it and drive their state machine.

use crate::{Gateway, dps_session, hub_session};
use fleethub_iot_protocol::identity::{ConnectTarget, parse_username};
use fleethub_mqtt_codec::{
    CodecError, ConnAck, Connect, ConnectReturnCode, FrameError, FramedRead, FramedWrite, Packet,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

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
    #[error("writes made no progress for {0} s (the client does not read)")]
    WriteStalled(u64),
    #[error("connection refused: {0:?}")]
    Refused(ConnectReturnCode),
}

impl From<CodecError> for ConnectionError {
    fn from(e: CodecError) -> Self {
        ConnectionError::Protocol(e.to_string())
    }
}

impl From<FrameError> for ConnectionError {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::Io(e) => ConnectionError::Io(e),
            other => ConnectionError::Protocol(other.to_string()),
        }
    }
}

/// A client that has sent CONNECT and waits for its CONNACK.
pub(crate) struct Client<'a, R, W> {
    pub reader: FramedRead<R>,
    pub writer: FramedWrite<W>,
    pub connect: Connect,
    pub peer: &'a str,
    /// `mqtt` or `mqtt-ws`, for logs.
    pub transport: &'static str,
}

impl<R, W: AsyncWrite + Unpin> Client<'_, R, W> {
    /// The CONNECT password as text (a SAS token).
    pub(crate) fn password(&self) -> String {
        let p = self.connect.password.as_deref().unwrap_or_default();
        String::from_utf8_lossy(p).into_owned()
    }

    /// Answers CONNACK `code` and ends the connection with [`ConnectionError::Refused`].
    pub(crate) async fn refuse(&mut self, code: ConnectReturnCode) -> Result<(), ConnectionError> {
        self.writer
            .send(&Packet::ConnAck(ConnAck::new(code, false)))
            .await?;
        Err(ConnectionError::Refused(code))
    }

    /// Queues CONNACK 0: it leaves with the next flush (with the answers to packets the
    /// client sent behind its CONNECT).
    pub(crate) fn accept(&mut self, session_present: bool) -> Result<(), ConnectionError> {
        let ack = ConnAck::new(ConnectReturnCode::Accepted, session_present);
        Ok(self.writer.push(&Packet::ConnAck(ack))?)
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
            tracing::debug!(peer, transport, "mqtt connection ended: {e}");
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
    // Boxed: the CONNECT phase's state is freed once it is done instead of sizing the
    // connection's future for as long as the session lives.
    let Some((client, target)) = Box::pin(read_connect(gw, stream, peer, transport)).await? else {
        return Ok(());
    };
    match target {
        ConnectTarget::Dps {
            id_scope,
            registration_id,
        } => {
            // Boxed: a DPS session's future is larger than a hub session's, and every hub
            // connection's future would otherwise keep room for it while it lives.
            Box::pin(dps_session::serve(gw, client, &id_scope, registration_id)).await
        }
        ConnectTarget::Hub {
            host,
            device_id,
            module_id,
        } => hub_session::serve(gw, client, &host, device_id, module_id).await,
    }
}

/// Reads the CONNECT and tells the DPS from the hub side by its user name; `None` when the
/// client closed the stream first. Refuses (and ends with an error) a CONNECT neither side
/// takes.
async fn read_connect<'a, S>(
    gw: &Gateway,
    stream: S,
    peer: &'a str,
    transport: &'static str,
) -> Result<Option<ConnectedClient<'a, S>>, ConnectionError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let (rd, wr) = tokio::io::split(stream);
    let mut reader = FramedRead::new(rd, gw.cfg.max_packet_bytes);
    let wait = Duration::from_secs(gw.cfg.connect_timeout_secs);
    let first = tokio::time::timeout(wait, reader.next())
        .await
        .map_err(|_| ConnectionError::ConnectTimeout(gw.cfg.connect_timeout_secs))??;
    let connect = match first {
        Some(Packet::Connect(c)) => c,
        Some(other) => {
            let what = format!("first packet was {}, not CONNECT", other.name());
            return Err(ConnectionError::Protocol(what));
        }
        None => return Ok(None),
    };
    let username = connect.username.clone().unwrap_or_default();
    let mut client = Client {
        reader,
        writer: FramedWrite::new(wr),
        connect,
        peer,
        transport,
    };
    if ![3, 4].contains(&client.connect.protocol_level) {
        let code = ConnectReturnCode::UnacceptableProtocolVersion;
        return client.refuse(code).await.map(|()| None);
    }
    if let Some(target) = parse_username(&username) {
        return Ok(Some((client, target)));
    }
    gw.dps.auth_failures().record(
        "mqtt",
        transport,
        &client.connect.client_id,
        Some(peer.to_string()),
        &format!(
            "user name '{username}' is neither a DPS ('{{idScope}}/registrations/{{registrationId}}/api-version=...') nor a hub ('{{host}}/{{deviceId}}/?api-version=...') user name"
        ),
    );
    client
        .refuse(ConnectReturnCode::BadUserNamePassword)
        .await
        .map(|()| None)
}

/// A client whose CONNECT names a side, and that side.
type ConnectedClient<'a, S> = (
    Client<'a, tokio::io::ReadHalf<S>, tokio::io::WriteHalf<S>>,
    ConnectTarget,
);

#[cfg(test)]
mod tests {
    use super::*;

    use crate::future_size;

    /// Every idle connection keeps its whole future, sized for the largest state it may be
    /// in: the CONNECT phase, the store calls and the DPS session are boxed, and the stream
    /// (a TLS connection is over a kilobyte) is not copied into it. Before they were, this
    /// future was 4.9 KB in a test build (and the TLS stream came on top, twice).
    #[test]
    fn an_idle_connections_future_stays_small() {
        type S = tokio::io::DuplexStream;
        type Large = tokio::io::Join<tokio::io::BufReader<S>, S>;
        let size = future_size(|(gw, s): (Arc<Gateway>, Box<S>)| {
            serve_connection(gw, s, String::new(), "mqtt")
        });
        assert!(size < 2800, "the connection's future is {size} bytes");
        // A larger stream adds only its own size once per `async fn` it passes (two).
        let large = future_size(|(gw, s): (Arc<Gateway>, Large)| {
            serve_connection(gw, s, String::new(), "mqtt")
        });
        let extra = std::mem::size_of::<Large>() - std::mem::size_of::<Box<S>>();
        assert!(large <= size + 2 * extra, "{large} vs {size} + 2 x {extra}");
    }
}
