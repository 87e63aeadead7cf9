//! One AMQP connection: SASL and Open (fe2o3-amqp's acceptor), then its sessions, each
//! accepting links and handing every link to the task serving its node (`links`).

use crate::AmqpService;
use crate::claims::Claims;
use crate::coalesced_writes::CoalescedWrites;
use crate::errors;
use crate::late_frames::LateFrames;
use crate::links::{self, LinkCtx};
use crate::rewind::{Rewind, SASL_HEADER};
use crate::sasl::HubSasl;
use fe2o3_amqp::acceptor::{ConnectionAcceptor, ListenerSessionHandle, SessionAcceptor};
use fe2o3_amqp_types::definitions::Fields;
use fe2o3_amqp_types::primitives::{Symbol, Value};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinSet;

/// SASL and Open must be done within this time.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a closing handshake (Close, End, Detach) may take.
pub(crate) const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the links of one connection share.
pub(crate) struct ConnCtx {
    pub service: Arc<AmqpService>,
    pub claims: Arc<Claims>,
    pub peer: String,
    /// Open links of this connection.
    pub links: AtomicUsize,
    /// Reply links of the request/response nodes.
    pub replies: links::reply::Replies,
    /// Device identities authenticated on `$cbs` (the device plane).
    pub devices: crate::device::grants::DeviceGrants,
    /// DPS registration over AMQP (SASL PLAIN login, reply link).
    pub dps: Arc<crate::dps::DpsConn>,
}

pub(crate) async fn serve<Io>(
    service: Arc<AmqpService>,
    io: Io,
    peer: String,
    transport: &'static str,
) where
    Io: AsyncRead + AsyncWrite + std::fmt::Debug + Send + Unpin + 'static,
{
    let claims = Arc::new(Claims::default());
    let dps = Arc::new(crate::dps::DpsConn::default());
    let acceptor = ConnectionAcceptor::builder()
        .container_id(service.host().to_string())
        .max_frame_size(service.cfg.max_frame_size)
        .channel_max(
            service
                .cfg
                .max_sessions_per_connection
                .saturating_sub(1)
                .min(u16::MAX as usize) as u16,
        )
        .idle_time_out(service.cfg.idle_timeout_ms)
        // Some clients (Python azure-eventhub's pure-Python AMQP) index every field of Open,
        // Begin and Attach: the properties, the last field, are always sent.
        .properties(product_properties());
    let open = async {
        // SASL or not is the client's choice (its protocol header); without SASL the client
        // is anonymous until it puts a token on $cbs.
        let io = CoalescedWrites::amqp(io);
        let (header, io) = Rewind::read_header(io).await.map_err(|e| e.to_string())?;
        let io = LateFrames::new(io);
        if header == SASL_HEADER {
            let sasl = HubSasl::new(service.auth.clone(), claims.clone(), peer.clone())
                .with_dps(dps.clone());
            acceptor
                .sasl_acceptor(sasl)
                .build()
                .accept(io)
                .await
                .map_err(|e| e.to_string())
        } else {
            acceptor.build().accept(io).await.map_err(|e| e.to_string())
        }
    };
    let mut conn = match tokio::time::timeout(OPEN_TIMEOUT, open).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            return tracing::info!(%peer, transport, "amqp: connection refused during SASL/open: {e}");
        }
        Err(_) => return tracing::info!(%peer, transport, "amqp: SASL/open timed out"),
    };
    tracing::debug!(%peer, transport, "amqp: connection open");
    let ctx = Arc::new(ConnCtx {
        service: service.clone(),
        claims,
        peer: peer.clone(),
        links: AtomicUsize::new(0),
        replies: links::reply::Replies::default(),
        devices: crate::device::grants::DeviceGrants::default(),
        dps,
    });
    let mut shutdown = service.shutdown.subscribe();
    let mut sessions = JoinSet::new();
    let forced = loop {
        if *shutdown.borrow_and_update() {
            break true;
        }
        tokio::select! {
            incoming = conn.next_incoming_session() => {
                let Some(incoming) = incoming else { break false };
                match session_acceptor(&service).accept_incoming_session(incoming, &mut conn).await {
                    Ok(session) => {
                        sessions.spawn(serve_session(ctx.clone(), session));
                    }
                    Err(e) => {
                        tracing::debug!(%peer, "amqp: session refused: {e}");
                        break false;
                    }
                }
            }
            _ = shutdown.changed() => {}
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    };
    let closed = if forced {
        tokio::time::timeout(
            CLOSE_TIMEOUT,
            conn.close_with_error(errors::shutting_down()),
        )
        .await
    } else {
        tokio::time::timeout(CLOSE_TIMEOUT, conn.close()).await
    };
    if closed.is_err() {
        tracing::debug!(%peer, "amqp: close handshake timed out");
    }
    sessions.abort_all();
    tracing::debug!(%peer, transport, "amqp: connection closed");
}

/// Sessions: handle-max is the connection's link limit (sent explicitly: some clients read it
/// as a number and fail on the default's absence), properties as in Open.
fn session_acceptor(service: &AmqpService) -> SessionAcceptor {
    SessionAcceptor::builder()
        .handle_max(u32::try_from(service.cfg.max_links_per_connection).unwrap_or(u32::MAX - 1))
        .properties(product_properties())
        .build()
}

/// `product` and `version`: the properties of our Open, Begin and Attach frames.
pub(crate) fn product_properties() -> Fields {
    let mut f = Fields::new();
    f.insert(Symbol::from("product"), Value::String("fleethub".into()));
    f.insert(
        Symbol::from("version"),
        Value::String(env!("CARGO_PKG_VERSION").into()),
    );
    f
}

/// Accepts the links of one session until it ends.
async fn serve_session(ctx: Arc<ConnCtx>, mut session: ListenerSessionHandle) {
    let mut links = JoinSet::new();
    loop {
        tokio::select! {
            attach = session.next_incoming_attach() => {
                let Some(attach) = attach else { break };
                let n = ctx.links.fetch_add(1, Ordering::SeqCst);
                let link = LinkCtx { conn: ctx.clone(), _slot: links::LinkSlot(ctx.clone()) };
                if n >= ctx.service.cfg.max_links_per_connection {
                    tracing::info!(peer = %ctx.peer, max = ctx.service.cfg.max_links_per_connection, "amqp: link refused: too many links on this connection");
                    links::refuse(&mut session, attach, errors::limit(format!(
                        "a connection may have at most {} links open",
                        ctx.service.cfg.max_links_per_connection
                    ))).await;
                    drop(link);
                    continue;
                }
                if let Some(task) = links::accept(link, &mut session, attach).await {
                    links.spawn(task);
                }
            }
            Some(_) = links.join_next(), if !links.is_empty() => {}
        }
    }
    links.abort_all();
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, session.end()).await;
}
