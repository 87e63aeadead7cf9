//! The client's sender on `/messages/devicebound`: each message is queued for its device
//! through the same service call as the REST send (queue depth, TTL, size limits and errors);
//! accepted when queued, rejected with the mapped error otherwise.

use super::LinkCtx;
use crate::c2d;
use crate::errors;
use fe2o3_amqp::Receiver;
use fe2o3_amqp_types::messaging::Body;
use fe2o3_amqp_types::primitives::Value;

pub(crate) async fn serve(link: LinkCtx, mut receiver: Receiver, resource: String) {
    let ctx = link.conn.clone();
    let service = ctx.service.clone();
    loop {
        let delivery = tokio::select! {
            d = receiver.recv::<Body<Value>>() => match d {
                Ok(d) => d,
                Err(e) => {
                    tracing::debug!(peer = %ctx.peer, "amqp: C2D link ended: {e}");
                    break;
                }
            },
            () = ctx.claims.wait_expired(&resource, &service.clock) => {
                tracing::info!(peer = %ctx.peer, "amqp: C2D link closed: its token expired");
                let _ = tokio::time::timeout(
                    crate::connection::CLOSE_TIMEOUT,
                    receiver.close_with_error(errors::unauthorized("the token expired and was not renewed")),
                ).await;
                return;
            }
        };
        let outcome = match c2d::c2d_from_message(delivery.message(), service.clock.unix_ms()) {
            Ok((device, send)) => match service.hub.send_c2d(&device, send).await {
                Ok(stored) => {
                    tracing::debug!(peer = %ctx.peer, device = %device, message_id = %stored.message_id, "amqp: C2D queued");
                    Ok(())
                }
                Err(e) => {
                    tracing::info!(peer = %ctx.peer, device = %device, "amqp: C2D refused: {e}");
                    Err(errors::hub_error(&e))
                }
            },
            Err(e) => {
                tracing::info!(peer = %ctx.peer, "amqp: C2D malformed: {e}");
                Err(errors::argument(e.to_string()))
            }
        };
        let settled = match outcome {
            Ok(()) => receiver.accept(&delivery).await,
            Err(err) => receiver.reject(&delivery, err).await,
        };
        if let Err(e) = settled {
            tracing::debug!(peer = %ctx.peer, "amqp: C2D disposition failed: {e}");
        }
    }
    let _ = tokio::time::timeout(crate::connection::CLOSE_TIMEOUT, receiver.close()).await;
}
