//! The DPS side of a connection: the CONNECT handshake, then the loop that drives
//! [`DpsSession`] and performs its calls on [`fleethub_services::Dps`].

use super::{DpsCall, DpsReply, DpsSession};
use crate::Gateway;
use crate::connection::{Client, ConnectionError};
use crate::session::{Services, execute, idle_limit};
use fleethub_mqtt_codec::ConnectReturnCode;
use fleethub_services::AuthContext;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

/// Authenticates a DPS CONNECT (user name `{idScope}/registrations/{registrationId}/...`) and
/// serves the session until it ends.
pub(crate) async fn serve<R, W>(
    gw: &Gateway,
    mut client: Client<'_, R, W>,
    id_scope: &str,
    registration_id: String,
) -> Result<(), ConnectionError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (peer, transport) = (client.peer, client.transport);
    let client_id = &client.connect.client_id;
    if !client_id.is_empty() && !client_id.eq_ignore_ascii_case(&registration_id) {
        gw.dps.auth_failures().record(
            "dps",
            transport,
            &registration_id,
            Some(peer.to_string()),
            &format!("client ID '{client_id}' differs from the registration ID in the user name"),
        );
        return client.refuse(ConnectReturnCode::IdentifierRejected).await;
    }
    let ctx = AuthContext {
        transport,
        peer: Some(peer),
    };
    let password = client.password();
    let principal = match gw
        .dps
        .authenticate(id_scope, &registration_id, &password, ctx)
        .await
    {
        Ok(p) => Ok(p),
        Err(e) => match crate::errors::dps_connect_refusal(&e) {
            None => Err(e),
            Some(code) => return client.refuse(code).await,
        },
    };
    // CONNACK leaves with the answers to whatever the client sent behind its CONNECT.
    client.accept(false)?;
    tracing::debug!(peer, transport, registration = %registration_id, "dps mqtt session started");
    let idle = idle_limit(client.connect.keep_alive, gw.cfg.idle_timeout_secs);
    let retry_after = gw.dps.config().retry_after_secs;
    let mut session = DpsSession::new(
        registration_id,
        principal,
        retry_after,
        idle,
        Instant::now(),
    );
    let mut services = DpsServices { gw };
    // At server shutdown the request in progress is answered (the loop only waits between
    // requests), then the connection closes; the device repeats its request elsewhere or later.
    let mut shutdown = Box::pin(gw.shutting_down());
    loop {
        // Packets that arrived together (a client may send SUBSCRIBE and its register PUBLISH
        // right behind CONNECT) are answered together: the writer is flushed only before
        // waiting for more input (docs/protocol-notes.md, "DPS over MQTT: packets in one write").
        if let Some(p) = client.reader.try_next()? {
            let actions = session.on_packet(p, Instant::now());
            if let Some(close) =
                execute(&mut session, &mut services, &mut client.writer, actions).await?
            {
                let _ = client.writer.flush().await;
                return close.into_result();
            }
            continue;
        }
        client.writer.flush().await?;
        let actions = tokio::select! {
            p = client.reader.next() => match p? {
                Some(p) => session.on_packet(p, Instant::now()),
                None => return Ok(()),
            },
            () = tokio::time::sleep_until(session.deadline()) => session.on_timeout(Instant::now()),
            () = &mut shutdown => {
                let stall = std::time::Duration::from_secs(gw.cfg.write_stall_timeout_secs);
                let _ = tokio::time::timeout(stall, client.writer.shutdown()).await;
                return Err(ConnectionError::Protocol(format!(
                    "registration {}: the server is shutting down",
                    session.registration_id()
                )));
            }
        };
        let close = execute(&mut session, &mut services, &mut client.writer, actions).await?;
        if let Some(close) = close {
            let _ = client.writer.flush().await;
            return close.into_result();
        }
    }
}

struct DpsServices<'a> {
    gw: &'a Gateway,
}

impl Services<DpsSession> for DpsServices<'_> {
    async fn perform(&mut self, call: DpsCall) -> DpsReply {
        match call {
            DpsCall::Register {
                rid,
                principal,
                body,
            } => DpsReply {
                rid,
                result: self.gw.dps.register(&principal, body).await,
            },
            DpsCall::OperationStatus {
                rid,
                principal,
                operation_id,
            } => DpsReply {
                rid,
                result: self
                    .gw
                    .dps
                    .operation_status(&principal, &operation_id)
                    .await,
            },
        }
    }
}
