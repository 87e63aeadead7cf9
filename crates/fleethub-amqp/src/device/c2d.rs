//! Cloud-to-device messages on `/devices/{d}/messages/devicebound` (the client receives):
//! each message is taken with the same lock as an HTTPS receive (`Hub::receive_c2d`: delivery
//! count, dead-lettering after the maximum, one lock of `LOCK_TIMEOUT`) and settled by the
//! device's disposition: `accepted` completes it, `rejected` rejects it (dead-lettered),
//! `released` and `modified` abandon it (deliverable again). One message is in flight at a
//! time (bounded: nothing is buffered for a device that grants no credit); one the device
//! does not settle within the lock timeout is delivered again (see `docs/protocol-notes.md`,
//! "AMQP device links").

use super::grants::DeviceGrant;
use crate::links::LinkCtx;
use crate::request::AmqpMessage;
use fe2o3_amqp::Sender;
use fe2o3_amqp_types::messaging::{
    ApplicationProperties, Body, Data, Header, Message, MessageId, Outcome, Properties,
};
use fe2o3_amqp_types::primitives::{Binary, SimpleValue, Symbol, Timestamp};
use fleethub_services::C2dMessage;
use fleethub_services::hub::c2d::{LOCK_TIMEOUT, Settle};
use std::sync::Arc;
use std::time::Duration;

/// How often an idle link looks for messages that became deliverable without a wake-up
/// (an expired lock elsewhere).
const POLL: Duration = Duration::from_secs(5);

/// The AMQP message of a queued cloud-to-device message, as IoT Hub delivers it: message id,
/// correlation id, `to`, content type and encoding, absolute expiry time, the properties as
/// application properties, the body as one data section; the header's delivery count is the
/// number of earlier deliveries.
pub fn c2d_message(m: &C2dMessage) -> AmqpMessage {
    let properties = Properties {
        message_id: Some(MessageId::String(m.message_id.clone())),
        correlation_id: m.correlation_id.clone().map(MessageId::String),
        to: Some(format!("/devices/{}/messages/devicebound", m.device_id)),
        content_type: m.content_type.as_deref().map(Symbol::from),
        content_encoding: m.content_encoding.as_deref().map(Symbol::from),
        absolute_expiry_time: i64::try_from(m.expiry_unix.saturating_mul(1000))
            .ok()
            .map(Timestamp::from_milliseconds),
        ..Properties::default()
    };
    let mut app = ApplicationProperties::default();
    for (k, v) in &m.properties {
        app.0.insert(k.clone(), SimpleValue::String(v.clone()));
    }
    Message {
        header: Some(Header {
            durable: true,
            delivery_count: m.delivery_count.saturating_sub(1),
            ..Header::default()
        }),
        delivery_annotations: None,
        message_annotations: None,
        properties: Some(properties),
        application_properties: Some(app),
        body: Body::Data(vec![Data(Binary::from(m.body.clone()))].into()),
        footer: None,
    }
}

/// How a disposition settles a locked message.
pub fn settle_of(outcome: &Outcome) -> Settle {
    match outcome {
        Outcome::Accepted(_) => Settle::Complete,
        Outcome::Rejected(_) => Settle::Reject,
        Outcome::Released(_) | Outcome::Modified(_) => Settle::Abandon,
    }
}

/// Serves the client's C2D receiver until it detaches or the grant ends.
pub(crate) async fn serve(link: LinkCtx, mut sender: Sender, grant: Arc<DeviceGrant>) {
    let ctx = link.conn.clone();
    let hub = ctx.service.hub.clone();
    let device = grant.device_id.clone();
    let mut wake = grant.route_c2d();
    let ended = 'link: loop {
        if let Some(reason) = grant.ended() {
            break Some(reason);
        }
        let locked = match hub.receive_c2d(&device).await {
            Ok(Some(l)) => l,
            Ok(None) => {
                tokio::select! {
                    _ = wake.recv() => {}
                    () = tokio::time::sleep(POLL) => {}
                    reason = grant.wait_ended() => break Some(reason),
                    _ = sender.on_detach() => break None,
                }
                continue;
            }
            Err(e) => {
                tracing::warn!(peer = %ctx.peer, device, "amqp: cannot read the C2D queue: {e}");
                tokio::time::sleep(POLL).await;
                continue;
            }
        };
        let msg = c2d_message(&locked.message);
        // Waits for credit: a device that grants none holds this one message, locked.
        let fut = tokio::select! {
            f = sender.send_batchable(msg) => f,
            reason = grant.wait_ended() => break Some(reason),
        };
        let outcome = match fut {
            Ok(fut) => tokio::select! {
                o = tokio::time::timeout(LOCK_TIMEOUT, fut) => o,
                reason = grant.wait_ended() => break 'link Some(reason),
            },
            Err(e) => {
                tracing::debug!(peer = %ctx.peer, device, "amqp: C2D send failed: {e}");
                let _ = hub
                    .settle_c2d(&device, &locked.lock_token, Settle::Abandon)
                    .await;
                break None;
            }
        };
        let how = match outcome {
            Ok(Ok(o)) => settle_of(&o),
            Ok(Err(e)) => {
                tracing::debug!(peer = %ctx.peer, device, "amqp: C2D delivery not settled: {e}");
                let _ = hub
                    .settle_c2d(&device, &locked.lock_token, Settle::Abandon)
                    .await;
                break None;
            }
            Err(_) => {
                tracing::info!(peer = %ctx.peer, device, message_id = %locked.message.message_id,
                    "amqp: C2D message not settled within the lock timeout: deliverable again");
                continue;
            }
        };
        match hub.settle_c2d(&device, &locked.lock_token, how).await {
            Ok(()) => {
                tracing::debug!(peer = %ctx.peer, device, message_id = %locked.message.message_id, ?how, "amqp: C2D settled");
            }
            Err(e) => {
                tracing::info!(peer = %ctx.peer, device, "amqp: C2D settle refused: {e}");
            }
        }
    };
    grant.unroute(super::address::DeviceLink::C2d);
    super::close_sender(&ctx.peer, &grant.identity(), sender, ended).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use fe2o3_amqp_types::messaging::{Accepted, Modified, Rejected, Released};
    use std::collections::BTreeMap;

    #[test]
    fn message_and_dispositions() {
        let m = C2dMessage {
            sequence_number: 3,
            device_id: "d1".into(),
            message_id: "m-1".into(),
            correlation_id: Some("c-1".into()),
            content_type: Some("application/json".into()),
            content_encoding: None,
            expiry_unix: 2,
            enqueued_time_utc: String::new(),
            delivery_count: 2,
            ack: Some("full".into()),
            properties: BTreeMap::from([("k".to_string(), "v".to_string())]),
            body: b"hi".to_vec(),
        };
        let a = c2d_message(&m);
        let p = a.properties.as_ref().unwrap();
        assert_eq!(p.message_id, Some(MessageId::String("m-1".into())));
        assert_eq!(p.correlation_id, Some(MessageId::String("c-1".into())));
        assert_eq!(p.to.as_deref(), Some("/devices/d1/messages/devicebound"));
        assert_eq!(
            p.absolute_expiry_time,
            Some(Timestamp::from_milliseconds(2000))
        );
        assert_eq!(a.header.as_ref().unwrap().delivery_count, 1);
        assert_eq!(
            a.application_properties.as_ref().unwrap().0.get("k"),
            Some(&SimpleValue::String("v".into()))
        );
        assert_eq!(crate::c2d::body_bytes(&a), b"hi");
        assert_eq!(settle_of(&Outcome::Accepted(Accepted {})), Settle::Complete);
        assert_eq!(
            settle_of(&Outcome::Rejected(Rejected { error: None })),
            Settle::Reject
        );
        assert_eq!(settle_of(&Outcome::Released(Released {})), Settle::Abandon);
        assert_eq!(
            settle_of(&Outcome::Modified(Modified {
                delivery_failed: Some(true),
                undeliverable_here: None,
                message_annotations: None,
            })),
            Settle::Abandon
        );
    }
}
