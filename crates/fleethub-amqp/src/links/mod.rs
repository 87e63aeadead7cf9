//! Link dispatch: an incoming Attach is inspected (its address names the node, see
//! `addresses`), checked against the connection's grants, then accepted and served by the
//! task of its node, or accepted and closed at once with the error Azure gives (refusals,
//! `amqp:link:redirect`).

pub(crate) mod c2d_send;
pub(crate) mod epochs;
pub(crate) mod feedback;
pub(crate) mod partition;
pub(crate) mod reply;

use crate::addresses::{self, Node};
use crate::connection::{CLOSE_TIMEOUT, ConnCtx};
use crate::errors;
use fe2o3_amqp::acceptor::{
    LinkAcceptor, LinkEndpoint, ListenerSessionHandle, SupportedReceiverSettleModes,
};
use fe2o3_amqp_types::definitions::{Error as AmqpError, ReceiverSettleMode, Role};
use fe2o3_amqp_types::messaging::{Source, Target, TargetArchetype};
use fe2o3_amqp_types::performatives::Attach;
use fe2o3_amqp_types::primitives::Symbol;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// A link task.
pub(crate) type LinkTask = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Counts a link of its connection while it lives.
pub(crate) struct LinkSlot(pub Arc<ConnCtx>);

impl Drop for LinkSlot {
    fn drop(&mut self) {
        self.0.links.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What a link task holds: its connection and its slot.
pub(crate) struct LinkCtx {
    pub conn: Arc<ConnCtx>,
    pub _slot: LinkSlot,
}

/// The address the link is about: the target of a client's sender, the source of a client's
/// receiver.
fn address_of(attach: &Attach) -> Option<String> {
    match attach.role {
        Role::Sender => match attach.target.as_deref() {
            Some(TargetArchetype::Target(t)) => t.address.clone(),
            _ => None,
        },
        Role::Receiver => attach.source.as_ref().and_then(|s| s.address.clone()),
    }
}

/// fe2o3-amqp's link acceptor with its default dynamic-terminus handlers.
type Acceptor = LinkAcceptor<fn(Source) -> Option<Source>, fn(Target) -> Option<Target>>;

/// The link acceptor of every link: receiver-settle-mode `first` only (a delivery is settled by
/// our one disposition, as Azure does; clients asking for `second` get `first`).
pub(crate) fn link_acceptor() -> Acceptor {
    LinkAcceptor::builder()
        .supported_receiver_settle_modes(SupportedReceiverSettleModes::First)
        .fallback_receiver_settle_mode(ReceiverSettleMode::First)
        .properties(crate::connection::product_properties())
        .build()
}

/// Accepts the link and closes it at once with `error`.
pub(crate) async fn refuse(session: &mut ListenerSessionHandle, attach: Attach, error: AmqpError) {
    let name = attach.name.clone();
    match link_acceptor()
        .accept_incoming_attach(attach, session)
        .await
    {
        Ok(LinkEndpoint::Sender(s)) => {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, s.close_with_error(error)).await;
        }
        Ok(LinkEndpoint::Receiver(r)) => {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, r.close_with_error(error)).await;
        }
        Err(e) => tracing::debug!(link = %name, "amqp: attach failed: {e}"),
    }
}

/// How long the redirect's Detach waits after the Attach: the clients that follow redirects
/// (the azure-sdk-for-js `iothubConnectionString` sample, IoT Explorer) register their error
/// handler only once the attach completed, and miss a Detach that arrives in the same read as
/// the Attach (writes are coalesced, `coalesced_writes`). See `docs/protocol-notes.md`,
/// "AMQP: the redirect's timing".
const REDIRECT_DELAY: std::time::Duration = std::time::Duration::from_millis(100);

/// Detaches an accepted receiver with `amqp:link:redirect`, [`REDIRECT_DELAY`] after its Attach.
async fn redirect_later(s: fe2o3_amqp::Sender, error: AmqpError) {
    tokio::time::sleep(REDIRECT_DELAY).await;
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, s.close_with_error(error)).await;
}

/// Accepts the link as a local sender (the client receives).
pub(crate) async fn accept_sender(
    session: &mut ListenerSessionHandle,
    attach: Attach,
) -> Option<fe2o3_amqp::Sender> {
    match link_acceptor()
        .accept_incoming_attach(attach, session)
        .await
    {
        Ok(LinkEndpoint::Sender(s)) => Some(s),
        Ok(LinkEndpoint::Receiver(_)) => None,
        Err(e) => {
            tracing::debug!("amqp: attach failed: {e}");
            None
        }
    }
}

/// Accepts the link as a local receiver (the client sends).
pub(crate) async fn accept_receiver(
    session: &mut ListenerSessionHandle,
    attach: Attach,
) -> Option<fe2o3_amqp::Receiver> {
    match link_acceptor()
        .accept_incoming_attach(attach, session)
        .await
    {
        Ok(LinkEndpoint::Receiver(r)) => Some(r),
        Ok(LinkEndpoint::Sender(_)) => None,
        Err(e) => {
            tracing::debug!("amqp: attach failed: {e}");
            None
        }
    }
}

/// Dispatches one Attach; returns the task serving the link, if it was accepted.
pub(crate) async fn accept(
    link: LinkCtx,
    session: &mut ListenerSessionHandle,
    attach: Attach,
) -> Option<LinkTask> {
    let ctx = link.conn.clone();
    let service = &ctx.service;
    let event_hub = service.event_hub_name();
    let Some(address) = address_of(&attach) else {
        refuse(
            session,
            attach,
            errors::not_found("the link has no address"),
        )
        .await;
        return None;
    };
    // DPS registration over AMQP (`{idScope}/registrations/{id}`).
    if let Some(reg) = crate::dps::parse(&address) {
        return crate::dps::links::accept(link, session, attach, reg).await;
    }
    // The device plane (`/devices/{d}/...`): identities authenticated on $cbs.
    if let Some(device) = crate::device::address::parse(&address) {
        return crate::device::accept(link, session, attach, device).await;
    }
    let node = addresses::parse(&address, &event_hub);
    let role = attach.role.clone();
    tracing::debug!(peer = %ctx.peer, link = %attach.name, %address, ?role, "amqp: attach");
    // Nodes that need a grant: the token must cover the address.
    let needs_grant = matches!(
        (&node, &role),
        (Node::C2dSend, Role::Sender)
            | (Node::C2dFeedback | Node::Partition { .. }, Role::Receiver)
    );
    let resource = addresses::resource(service.host(), &address);
    if needs_grant
        && ctx
            .claims
            .expiry_for(&resource, service.clock.unix())
            .is_none()
    {
        tracing::info!(peer = %ctx.peer, %address, "amqp: link refused: no token covers it");
        refuse(
            session,
            attach,
            errors::unauthorized(format!(
                "no valid token covers '{address}': put a SAS token on $cbs first (or use SASL PLAIN)"
            )),
        )
        .await;
        return None;
    }
    match (node, role) {
        (Node::Cbs, Role::Sender) => {
            let r = accept_receiver(session, attach).await?;
            Some(Box::pin(reply::serve_requests(link, r, reply::Kind::Cbs)))
        }
        (Node::Management, Role::Sender) => {
            let r = accept_receiver(session, attach).await?;
            Some(Box::pin(reply::serve_requests(
                link,
                r,
                reply::Kind::Management,
            )))
        }
        (Node::Cbs | Node::Management, Role::Receiver) => {
            let kind = if matches!(addresses::parse(&address, &event_hub), Node::Cbs) {
                reply::Kind::Cbs
            } else {
                reply::Kind::Management
            };
            let client_address = match attach.target.as_deref() {
                Some(TargetArchetype::Target(t)) => t.address.clone(),
                _ => None,
            };
            let s = accept_sender(session, attach).await?;
            Some(Box::pin(reply::serve_replies(
                link,
                s,
                kind,
                client_address,
            )))
        }
        (Node::C2dSend, Role::Sender) => {
            let r = accept_receiver(session, attach).await?;
            Some(Box::pin(c2d_send::serve(link, r, resource)))
        }
        (Node::C2dFeedback, Role::Receiver) => {
            let s = accept_sender(session, attach).await?;
            Some(Box::pin(feedback::serve(link, s, resource)))
        }
        (Node::HubEvents { rest }, Role::Receiver) => {
            let target = format!(
                "amqps://{}:{}/{}{}",
                service.host(),
                service.cfg.port,
                event_hub,
                rest
            );
            tracing::debug!(peer = %ctx.peer, %address, %target, "amqp: redirecting to the Event Hubs-compatible endpoint");
            let error = errors::redirect(service.host(), service.cfg.port, &target);
            let s = accept_sender(session, attach).await?;
            Some(Box::pin(redirect_later(s, error)))
        }
        (
            Node::Partition {
                event_hub,
                consumer_group,
                partition,
            },
            Role::Receiver,
        ) => {
            let target = PartitionTarget {
                event_hub: &event_hub,
                consumer_group: &consumer_group,
                partition: &partition,
                address: &address,
                resource,
            };
            accept_partition(link, session, attach, target).await
        }
        (node, role) => {
            tracing::info!(peer = %ctx.peer, %address, ?role, "amqp: link refused: no such node ({node:?})");
            let what = match role {
                Role::Sender => "sending to",
                Role::Receiver => "receiving from",
            };
            refuse(
                session,
                attach,
                errors::not_found(format!("{what} '{address}' is not supported here")),
            )
            .await;
            None
        }
    }
}

/// What a partition receiver names.
struct PartitionTarget<'a> {
    event_hub: &'a str,
    consumer_group: &'a str,
    partition: &'a str,
    address: &'a str,
    resource: String,
}

/// A receiver on `{eventHub}/ConsumerGroups/{group}/Partitions/{n}`: checked (`partition::prepare`),
/// then accepted (offering the runtime metric when the client desires it) or refused.
async fn accept_partition(
    link: LinkCtx,
    session: &mut ListenerSessionHandle,
    attach: Attach,
    t: PartitionTarget<'_>,
) -> Option<LinkTask> {
    let prepared = match partition::prepare(
        &link,
        &attach,
        t.event_hub,
        t.consumer_group,
        t.partition,
        t.resource,
    )
    .await
    {
        Ok(p) => p,
        Err(error) => {
            tracing::info!(peer = %link.conn.peer, address = %t.address, condition = ?error.condition,
                "amqp: receiver refused: {}", error.description.as_deref().unwrap_or(""));
            refuse(session, attach, error).await;
            return None;
        }
    };
    let acceptor = if prepared.runtime_metric {
        link_acceptor()
            .into_builder()
            .add_offered_capabilities(Symbol::from(partition::RUNTIME_METRIC))
            .build()
    } else {
        link_acceptor()
    };
    let Ok(LinkEndpoint::Sender(s)) = acceptor.accept_incoming_attach(attach, session).await else {
        return None;
    };
    Some(Box::pin(partition::serve(link, s, prepared)))
}
