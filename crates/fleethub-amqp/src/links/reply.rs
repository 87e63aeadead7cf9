//! The request/response nodes `$cbs` and `$management`: the client attaches a sender (its
//! requests) and a receiver (our replies, addressed by the request's `reply-to`). Replies are
//! routed to the receiver link whose target address is the `reply-to`, else to the newest
//! reply link of the node.

use super::LinkCtx;
use crate::request::{self, AmqpMessage};
use fe2o3_amqp::{Receiver, Sender};
use fe2o3_amqp_types::messaging::Body;
use fe2o3_amqp_types::primitives::Value;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::mpsc;

/// Which node a request/response pair belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Cbs,
    Management,
}

struct Route {
    id: u64,
    kind: Kind,
    address: Option<String>,
    tx: mpsc::Sender<AmqpMessage>,
}

/// The reply links of one connection.
#[derive(Default)]
pub(crate) struct Replies {
    routes: Mutex<(u64, Vec<Route>)>,
    added: tokio::sync::Notify,
}

/// Replies waiting for a slow reply link, per link.
const REPLY_QUEUE: usize = 16;
/// How long a request waits for its reply link to be attached.
const ROUTE_WAIT: Duration = Duration::from_secs(5);

impl Replies {
    fn routes(&self) -> std::sync::MutexGuard<'_, (u64, Vec<Route>)> {
        self.routes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn register(&self, kind: Kind, address: Option<String>) -> (u64, mpsc::Receiver<AmqpMessage>) {
        let (tx, rx) = mpsc::channel(REPLY_QUEUE);
        let mut r = self.routes();
        r.0 += 1;
        let id = r.0;
        r.1.push(Route {
            id,
            kind,
            address,
            tx,
        });
        drop(r);
        self.added.notify_waiters();
        (id, rx)
    }

    fn unregister(&self, id: u64) {
        self.routes().1.retain(|r| r.id != id);
    }

    fn find(&self, kind: Kind, reply_to: Option<&str>) -> Option<mpsc::Sender<AmqpMessage>> {
        let r = self.routes();
        let of_kind = || r.1.iter().rev().filter(|x| x.kind == kind);
        reply_to
            .and_then(|to| of_kind().find(|x| x.address.as_deref() == Some(to)))
            .or_else(|| of_kind().next())
            .map(|x| x.tx.clone())
    }

    /// The reply link for a request, waiting a little for one attached just after.
    async fn route(&self, kind: Kind, reply_to: Option<&str>) -> Option<mpsc::Sender<AmqpMessage>> {
        let deadline = tokio::time::Instant::now() + ROUTE_WAIT;
        loop {
            let added = self.added.notified();
            if let Some(tx) = self.find(kind, reply_to) {
                return Some(tx);
            }
            if tokio::time::timeout_at(deadline, added).await.is_err() {
                return None;
            }
        }
    }
}

/// Serves a client's request link: each request is accepted, answered, and the answer sent on
/// the reply link.
pub(crate) async fn serve_requests(link: LinkCtx, mut receiver: Receiver, kind: Kind) {
    let ctx = link.conn.clone();
    loop {
        let delivery = match receiver.recv::<Body<Value>>().await {
            Ok(d) => d,
            Err(e) => {
                tracing::debug!(peer = %ctx.peer, ?kind, "amqp: request link ended: {e}");
                break;
            }
        };
        let _ = receiver.accept(&delivery).await;
        let req = delivery.into_message();
        let reply = match kind {
            Kind::Cbs if let Some(target) = crate::device::cbs::device_target(&req) => {
                let (status, description) = crate::device::cbs::put_token(&ctx, &req, target).await;
                request::reply(&req, status, &description, Body::Empty)
            }
            Kind::Cbs => {
                let out = crate::cbs::handle(&req, &ctx.service.auth, &ctx.peer);
                if let Some(grant) = out.grant {
                    ctx.claims.add(grant);
                }
                request::reply(&req, out.status, &out.description, Body::Empty)
            }
            Kind::Management => crate::management::handle(&ctx, &req).await,
        };
        match ctx.replies.route(kind, request::reply_to(&req)).await {
            Some(tx) => {
                if tx.send(reply).await.is_err() {
                    tracing::debug!(peer = %ctx.peer, ?kind, "amqp: reply link closed before the reply");
                }
            }
            None => {
                tracing::info!(peer = %ctx.peer, ?kind, "amqp: no reply link for a request: reply dropped");
            }
        }
    }
    let _ = tokio::time::timeout(crate::connection::CLOSE_TIMEOUT, receiver.close()).await;
}

/// Serves a client's reply link: sends the replies routed to it.
pub(crate) async fn serve_replies(
    link: LinkCtx,
    mut sender: Sender,
    kind: Kind,
    address: Option<String>,
) {
    let ctx = link.conn.clone();
    let (id, mut rx) = ctx.replies.register(kind, address);
    loop {
        let reply = tokio::select! {
            reply = rx.recv() => reply,
            _ = sender.on_detach() => None,
        };
        let Some(reply) = reply else { break };
        // Replies are not waited on: a client settles them when it likes.
        if let Err(e) = sender.send_batchable(reply).await {
            tracing::debug!(peer = %ctx.peer, ?kind, "amqp: reply not sent: {e}");
            break;
        }
    }
    ctx.replies.unregister(id);
    let _ = tokio::time::timeout(crate::connection::CLOSE_TIMEOUT, sender.close()).await;
}
