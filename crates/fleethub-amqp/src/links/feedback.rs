//! The client's receiver on `/messages/servicebound/feedback`: batches of C2D feedback
//! records, one message each; an accepted (or rejected) batch is removed from the store, one
//! the client does not settle goes back to the queue.

use super::LinkCtx;
use crate::c2d;
use crate::errors;
use fe2o3_amqp::Sender;
use fe2o3_amqp_types::messaging::Outcome;

pub(crate) async fn serve(link: LinkCtx, mut sender: Sender, resource: String) {
    let ctx = link.conn.clone();
    let service = ctx.service.clone();
    let hub_name = service.event_hub_name();
    loop {
        let batch = tokio::select! {
            b = service.hub.next_c2d_feedback() => b,
            _ = sender.on_detach() => break,
            () = ctx.claims.wait_expired(&resource, &service.clock) => {
                tracing::info!(peer = %ctx.peer, "amqp: feedback link closed: its token expired");
                let _ = tokio::time::timeout(
                    crate::connection::CLOSE_TIMEOUT,
                    sender.close_with_error(errors::unauthorized("the token expired and was not renewed")),
                ).await;
                return;
            }
        };
        let message = c2d::feedback_message(&batch.records, &hub_name, service.clock.unix_ms());
        let records = batch.records.len();
        // The outcome is awaited beside the link's Detach: a client that goes away without
        // settling gives the batch back (fe2o3-amqp's `send` would wait for the outcome alone).
        // Biased to the outcome: a client that settles and detaches at once sends the
        // Disposition first, and the session hands it to the delivery before the link sees the
        // Detach, so both can be ready together; the settlement wins.
        let outcome = match sender.send_batchable(message).await {
            Ok(delivery) => tokio::select! {
                biased;
                o = delivery => o,
                _ = sender.on_detach() => {
                    tracing::debug!(peer = %ctx.peer, records, "amqp: feedback link detached before settling its batch");
                    service.hub.return_c2d_feedback(batch);
                    break;
                }
            },
            Err(e) => Err(e),
        };
        match outcome {
            Ok(Outcome::Accepted(_)) => {
                tracing::debug!(peer = %ctx.peer, records, "amqp: C2D feedback delivered");
                if let Err(e) = service.hub.accept_c2d_feedback(batch).await {
                    tracing::warn!(peer = %ctx.peer, "amqp: delivered C2D feedback not removed: {e}");
                }
            }
            Ok(Outcome::Rejected(_)) => {
                tracing::info!(peer = %ctx.peer, records, "amqp: C2D feedback rejected by the client: dropped");
                if let Err(e) = service.hub.accept_c2d_feedback(batch).await {
                    tracing::warn!(peer = %ctx.peer, "amqp: rejected C2D feedback not removed: {e}");
                }
            }
            Ok(_) => service.hub.return_c2d_feedback(batch),
            Err(e) => {
                service.hub.return_c2d_feedback(batch);
                tracing::debug!(peer = %ctx.peer, "amqp: feedback link ended: {e}");
                break;
            }
        }
    }
    let _ = tokio::time::timeout(crate::connection::CLOSE_TIMEOUT, sender.close()).await;
}
