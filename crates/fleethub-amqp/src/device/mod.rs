//! The device plane of the AMQP endpoint, as the official device SDKs use it (C SDK
//! `AMQP_Protocol`, Node `azure-iot-device-amqp`): identities authenticated by `$cbs`
//! put-token (`cbs`, held per connection in `grants`: several devices per connection), and
//! their links (`address`): telemetry, cloud-to-device, twin and methods, each served on the
//! same `Hub` calls as the MQTT gateway (see `docs/protocol-notes.md`, "AMQP device links"
//! and "AMQP device authentication").

pub mod address;
pub(crate) mod c2d;
pub(crate) mod cbs;
pub(crate) mod grants;
pub(crate) mod methods;
pub(crate) mod telemetry;
pub(crate) mod twin;

use crate::connection::CLOSE_TIMEOUT;
use crate::errors;
use crate::links::{self, LinkCtx, LinkTask};
use address::{DeviceAddress, DeviceLink};
use fe2o3_amqp::acceptor::ListenerSessionHandle;
use fe2o3_amqp::{Receiver, Sender};
use fe2o3_amqp_types::definitions::Role;
use fe2o3_amqp_types::performatives::Attach;

/// Largest message a device may send on its links: Azure's 256 KB body limit plus room for
/// properties and annotations. A bigger message detaches the link with
/// `amqp:link:message-size-exceeded` as soon as its transfers pass this (nothing larger is
/// buffered); a body over 256 KB within it is rejected by the hub's own check.
pub const MAX_DEVICE_MESSAGE_BYTES: u64 = 256 * 1024 + 64 * 1024;

/// Accepts the link as a local receiver (the device sends) advertising
/// [`MAX_DEVICE_MESSAGE_BYTES`].
async fn accept_receiver(session: &mut ListenerSessionHandle, attach: Attach) -> Option<Receiver> {
    let acceptor = links::link_acceptor()
        .into_builder()
        .max_message_size(MAX_DEVICE_MESSAGE_BYTES)
        .build();
    match acceptor.accept_incoming_attach(attach, session).await {
        Ok(fe2o3_amqp::acceptor::LinkEndpoint::Receiver(r)) => Some(r),
        Ok(fe2o3_amqp::acceptor::LinkEndpoint::Sender(_)) => None,
        Err(e) => {
            tracing::debug!("amqp: attach failed: {e}");
            None
        }
    }
}

/// Accepts a device-plane link when the connection holds a live grant of its identity (a
/// device token opens the device's links, a module token its module's); refuses it with
/// `amqp:unauthorized-access` otherwise, and with `amqp:not-found` for a role the node does
/// not serve.
pub(crate) async fn accept(
    link: LinkCtx,
    session: &mut ListenerSessionHandle,
    attach: Attach,
    addr: DeviceAddress,
) -> Option<LinkTask> {
    let ctx = link.conn.clone();
    let identity = addr.identity();
    let grant = match ctx.devices.get(&identity) {
        Ok(g) => g,
        Err(why) => {
            tracing::info!(peer = %ctx.peer, identity, link = ?addr.link, "amqp: device link refused: {why}");
            links::refuse(
                session,
                attach,
                errors::unauthorized(format!("not authorized for '{identity}': {why}")),
            )
            .await;
            return None;
        }
    };
    let role = attach.role.clone();
    tracing::debug!(peer = %ctx.peer, identity, link = ?addr.link, ?role, "amqp: device link");
    match (addr.link, role) {
        (DeviceLink::Telemetry, Role::Sender) => {
            let r = accept_receiver(session, attach).await?;
            Some(Box::pin(telemetry::serve(link, r, grant)))
        }
        (DeviceLink::C2d, Role::Receiver) if addr.module_id.is_none() => {
            let s = links::accept_sender(session, attach).await?;
            Some(Box::pin(c2d::serve(link, s, grant)))
        }
        (DeviceLink::Twin, Role::Sender) => {
            let r = accept_receiver(session, attach).await?;
            Some(Box::pin(twin::serve_requests(link, r, grant)))
        }
        (DeviceLink::Twin, Role::Receiver) => {
            let s = links::accept_sender(session, attach).await?;
            Some(Box::pin(twin::serve_replies(link, s, grant)))
        }
        (DeviceLink::Methods, Role::Receiver) => {
            let s = links::accept_sender(session, attach).await?;
            Some(Box::pin(methods::serve_requests(link, s, grant)))
        }
        (DeviceLink::Methods, Role::Sender) => {
            let r = accept_receiver(session, attach).await?;
            Some(Box::pin(methods::serve_responses(link, r, grant)))
        }
        (kind, role) => {
            tracing::info!(peer = %ctx.peer, identity, link = ?kind, ?role, "amqp: device link refused: not served");
            links::refuse(
                session,
                attach,
                errors::not_found(format!(
                    "{role:?} links on {kind:?} of '{identity}' are not supported"
                )),
            )
            .await;
            None
        }
    }
}

/// Closes a link the server ends: with `amqp:unauthorized-access` when its grant `ended`
/// (revoked or expired), plainly otherwise.
async fn close_receiver(peer: &str, identity: &str, r: Receiver, ended: Option<String>) {
    match ended {
        Some(reason) => {
            tracing::info!(peer, identity, "amqp: device link closed: {reason}");
            let _ = tokio::time::timeout(
                CLOSE_TIMEOUT,
                r.close_with_error(errors::unauthorized(reason)),
            )
            .await;
        }
        None => {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, r.close()).await;
        }
    }
}

/// As [`close_receiver`], for the server's sending links.
async fn close_sender(peer: &str, identity: &str, s: Sender, ended: Option<String>) {
    match ended {
        Some(reason) => {
            tracing::info!(peer, identity, "amqp: device link closed: {reason}");
            let _ = tokio::time::timeout(
                CLOSE_TIMEOUT,
                s.close_with_error(errors::unauthorized(reason)),
            )
            .await;
        }
        None => {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, s.close()).await;
        }
    }
}
