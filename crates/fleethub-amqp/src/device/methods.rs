//! Direct methods on `/devices/{d}[/modules/{m}]/methods/devicebound`: the server sends each
//! request on the client's receiver (application property `IoThub-methodname`, the request id
//! as `correlation-id`, a UUID as IoT Hub sends it, the payload as a data section); the client
//! answers on its sender of the same address with that `correlation-id` and application
//! property `IoThub-status`. Invocation, timeouts and statuses are the `Hub`'s, as on MQTT
//! (see `docs/protocol-notes.md`, "AMQP device links").

use super::grants::{DeviceGrant, MethodRequest};
use crate::c2d::{body_bytes, id_text};
use crate::links::LinkCtx;
use crate::request::AmqpMessage;
use fe2o3_amqp::{Receiver, Sender};
use fe2o3_amqp_types::messaging::{
    ApplicationProperties, Body, Data, Message, MessageId, Properties,
};
use fe2o3_amqp_types::primitives::{Binary, SimpleValue, Uuid, Value};
use std::sync::Arc;

/// The application property naming the method.
pub const METHOD_NAME: &str = "IoThub-methodname";
/// The application property of a response's status.
pub const METHOD_STATUS: &str = "IoThub-status";

/// The `correlation-id` of a request id: the hub's ids are hexadecimal counters, sent as the
/// UUID `00000000-0000-0000-{id as 16 hex digits}`; any other id is sent as a string.
pub fn correlation_of(rid: &str) -> MessageId {
    match u64::from_str_radix(rid, 16) {
        Ok(n) if !rid.is_empty() && rid.len() <= 16 => {
            let mut b = [0u8; 16];
            b[8..].copy_from_slice(&n.to_be_bytes());
            MessageId::Uuid(Uuid::from(b))
        }
        _ => MessageId::String(rid.to_string()),
    }
}

/// The request id of a response's `correlation-id` (a UUID, or its text form, as the clients
/// echo it back).
pub fn rid_of(id: &MessageId) -> String {
    let text = id_text(id);
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    if hex.len() == 32
        && hex.chars().all(|c| c.is_ascii_hexdigit())
        && hex[..16].chars().all(|c| c == '0')
        && let Ok(n) = u64::from_str_radix(&hex[16..], 16)
    {
        return format!("{n:x}");
    }
    text
}

/// The message of a method request.
pub fn request_message(r: &MethodRequest) -> AmqpMessage {
    let mut app = ApplicationProperties::default();
    app.0
        .insert(METHOD_NAME.into(), SimpleValue::String(r.name.clone()));
    Message {
        header: None,
        delivery_annotations: None,
        message_annotations: None,
        properties: Some(Properties {
            correlation_id: Some(correlation_of(&r.rid)),
            ..Properties::default()
        }),
        application_properties: Some(app),
        body: Body::Data(vec![Data(Binary::from(r.payload.clone()))].into()),
        footer: None,
    }
}

/// The (request id, status, payload) of a response; `None` when it lacks its correlation id
/// or a status.
pub fn parse_response(m: &AmqpMessage) -> Option<(String, u16, Vec<u8>)> {
    let rid = rid_of(m.properties.as_ref()?.correlation_id.as_ref()?);
    let status = match m.application_properties.as_ref()?.0.get(METHOD_STATUS)? {
        SimpleValue::Int(n) => u16::try_from(*n).ok()?,
        SimpleValue::Long(n) => u16::try_from(*n).ok()?,
        SimpleValue::Uint(n) => u16::try_from(*n).ok()?,
        SimpleValue::Short(n) => u16::try_from(*n).ok()?,
        SimpleValue::Ushort(n) => *n,
        SimpleValue::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    Some((rid, status, body_bytes(m)))
}

/// Serves the client's method receiver: sends it the requests the hub routes here.
pub(crate) async fn serve_requests(link: LinkCtx, mut sender: Sender, grant: Arc<DeviceGrant>) {
    let identity = grant.identity();
    let mut rx = grant.route_methods();
    let ended = loop {
        let req = tokio::select! {
            reason = grant.wait_ended() => break Some(reason),
            _ = sender.on_detach() => break None,
            r = rx.recv() => match r {
                Some(r) => r,
                None => break None,
            },
        };
        tracing::debug!(peer = %link.conn.peer, identity, method = %req.name, "amqp: method request");
        // The disposition is not waited on (the answer is the client's response message);
        // credit is, but not past the grant (a request nobody takes times out at the hub).
        let sent = tokio::select! {
            sent = sender.send_batchable(request_message(&req)) => sent,
            reason = grant.wait_ended() => break Some(reason),
        };
        if let Err(e) = sent {
            tracing::debug!(peer = %link.conn.peer, identity, "amqp: method request not sent: {e}");
            break None;
        }
    };
    grant.unroute(super::address::DeviceLink::Methods);
    super::close_sender(&link.conn.peer, &identity, sender, ended).await;
}

/// Serves the client's method sender: its responses go to the waiting invocations.
pub(crate) async fn serve_responses(
    link: LinkCtx,
    mut receiver: Receiver,
    grant: Arc<DeviceGrant>,
) {
    let identity = grant.identity();
    let hub = link.conn.service.hub.clone();
    let ended = loop {
        let delivery = tokio::select! {
            reason = grant.wait_ended() => break Some(reason),
            d = receiver.recv::<Body<Value>>() => match d {
                Ok(d) => d,
                Err(e) => {
                    tracing::debug!(peer = %link.conn.peer, identity, "amqp: method response link ended: {e}");
                    break None;
                }
            },
        };
        let settled = if let Some((rid, status, payload)) = parse_response(delivery.message()) {
            hub.touch(&grant.device_id, grant.module_id.as_deref());
            hub.method_response(&rid, status, &payload);
            receiver.accept(&delivery).await
        } else {
            tracing::info!(peer = %link.conn.peer, identity, "amqp: method response without correlation-id or IoThub-status");
            receiver
                .reject(
                    &delivery,
                    crate::errors::argument(
                        "a method response needs the request's correlation-id and an IoThub-status application property",
                    ),
                )
                .await
        };
        if let Err(e) = settled {
            tracing::debug!(peer = %link.conn.peer, identity, "amqp: method response disposition failed: {e}");
        }
    };
    super::close_receiver(&link.conn.peer, &identity, receiver, ended).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_round_trip() {
        let id = correlation_of("2a");
        assert!(matches!(id, MessageId::Uuid(_)));
        assert_eq!(id_text(&id), "00000000-0000-0000-0000-00000000002a");
        assert_eq!(rid_of(&id), "2a");
        assert_eq!(
            rid_of(&MessageId::String(
                "00000000-0000-0000-0000-00000000002a".into()
            )),
            "2a"
        );
        assert_eq!(correlation_of("r-1"), MessageId::String("r-1".into()));
        assert_eq!(rid_of(&MessageId::String("r-1".into())), "r-1");
    }

    #[test]
    fn responses() {
        let req = request_message(&MethodRequest {
            rid: "7".into(),
            name: "reboot".into(),
            payload: b"{}".to_vec(),
        });
        assert_eq!(
            req.application_properties
                .as_ref()
                .unwrap()
                .0
                .get(METHOD_NAME),
            Some(&SimpleValue::String("reboot".into()))
        );
        let mut resp = req.clone();
        resp.application_properties = Some(ApplicationProperties::default());
        assert_eq!(parse_response(&resp), None, "no status");
        resp.application_properties
            .as_mut()
            .unwrap()
            .0
            .insert(METHOD_STATUS.into(), SimpleValue::Int(200));
        assert_eq!(
            parse_response(&resp),
            Some(("7".into(), 200, b"{}".to_vec()))
        );
    }
}
