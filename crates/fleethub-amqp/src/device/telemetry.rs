//! Device-to-cloud telemetry on `/devices/{d}[/modules/{m}]/messages/events`: each message
//! becomes the same `TelemetryIn` as an MQTT publish (AMQP properties as the system properties
//! MQTT's `$.` keys name, application properties as properties) and is stored through the same
//! `Hub` calls (throttle pacing, the 256 KB limit, durable before acknowledged): the delivery
//! is accepted only after the commit, rejected with the mapped error otherwise (see
//! `docs/protocol-notes.md`, "AMQP device links").

use super::grants::DeviceGrant;
use crate::c2d::{body_bytes, id_text};
use crate::errors;
use crate::links::LinkCtx;
use crate::request::AmqpMessage;
use fe2o3_amqp::Receiver;
use fe2o3_amqp_types::messaging::message::DecodeIntoMessage;
use fe2o3_amqp_types::messaging::{Body, annotations::OwnedKey};
use fe2o3_amqp_types::primitives::{SimpleValue, Value};
use fleethub_services::TelemetryIn;
use fleethub_services::hub::MAX_TELEMETRY_BYTES;
use futures_util::FutureExt;
use serde_amqp::read::SliceReader;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Message annotations a device may set that IoT Hub keeps as system properties.
const ANNOTATED_SYSTEM_PROPERTIES: [&str; 4] = [
    "iothub-interface-id",
    "dt-subject",
    "dt-dataschema",
    "iothub-creation-time-utc",
];

/// A text form of an application property value (property bags carry strings).
fn text(v: &SimpleValue) -> Option<String> {
    Some(match v {
        SimpleValue::String(s) => s.clone(),
        SimpleValue::Symbol(s) => s.as_str().to_string(),
        SimpleValue::Bool(b) => b.to_string(),
        SimpleValue::Ubyte(n) => n.to_string(),
        SimpleValue::Ushort(n) => n.to_string(),
        SimpleValue::Uint(n) => n.to_string(),
        SimpleValue::Ulong(n) => n.to_string(),
        SimpleValue::Byte(n) => n.to_string(),
        SimpleValue::Short(n) => n.to_string(),
        SimpleValue::Int(n) => n.to_string(),
        SimpleValue::Long(n) => n.to_string(),
        SimpleValue::Float(n) => n.to_string(),
        SimpleValue::Double(n) => n.to_string(),
        SimpleValue::Char(c) => c.to_string(),
        SimpleValue::Timestamp(t) => t.milliseconds().to_string(),
        SimpleValue::Uuid(u) => id_text(&fe2o3_amqp_types::messaging::MessageId::Uuid(u.clone())),
        _ => return None,
    })
}

/// The telemetry of one AMQP message, named as MQTT's property bag names it
/// (`property_bag::amqp_name`): `message-id`, `correlation-id`, `user-id`, `content-type`,
/// `content-encoding`, `absolute-expiry-time` (ms) and `to` from the properties; the
/// application properties as they are; the body's data sections.
pub fn telemetry_from_message(m: &AmqpMessage) -> TelemetryIn {
    let mut system = BTreeMap::new();
    if let Some(p) = &m.properties {
        let mut put = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                system.insert(k.to_string(), v);
            }
        };
        put("message-id", p.message_id.as_ref().map(id_text));
        put("correlation-id", p.correlation_id.as_ref().map(id_text));
        put(
            "user-id",
            p.user_id
                .as_ref()
                .map(|u| String::from_utf8_lossy(u).into_owned()),
        );
        put(
            "content-type",
            p.content_type.as_ref().map(|s| s.as_str().to_string()),
        );
        put(
            "content-encoding",
            p.content_encoding.as_ref().map(|s| s.as_str().to_string()),
        );
        put(
            "absolute-expiry-time",
            p.absolute_expiry_time
                .as_ref()
                .map(|t| t.milliseconds().to_string()),
        );
        put("to", p.to.clone());
    }
    if let Some(ann) = &m.message_annotations {
        for key in ANNOTATED_SYSTEM_PROPERTIES {
            let v = ann.0.iter().find_map(|(k, v)| match (k, v) {
                (OwnedKey::Symbol(s), Value::String(v)) if s.as_str() == key => Some(v.clone()),
                _ => None,
            });
            if let Some(v) = v {
                system.insert(key.to_string(), v);
            }
        }
    }
    let mut properties = BTreeMap::new();
    if let Some(app) = &m.application_properties {
        for (k, v) in &app.0 {
            if let Some(t) = text(v) {
                properties.insert(k.clone(), t);
            }
        }
    }
    TelemetryIn {
        system_properties: system,
        properties,
        body: body_bytes(m),
    }
}

/// Most deliveries stored with one write: those that have already arrived behind the first
/// (a device's window of unsettled messages), as the MQTT gateway stores a burst.
const MAX_BATCH: usize = 64;

/// The message format of a batch (Microsoft's): the body's data sections are each one encoded
/// AMQP message. The C SDK sends all its telemetry so (`iothubtransport_amqp_telemetry_messenger.c`
/// `AMQP_BATCHING_FORMAT_CODE`).
pub const BATCH_FORMAT: u32 = 0x8001_3700;

/// The telemetry a delivery carries: one message, or each message of a batch; `Err` for a
/// batch section that does not decode as a message.
pub fn telemetry_of_delivery(
    format: Option<u32>,
    m: &AmqpMessage,
) -> Result<Vec<TelemetryIn>, String> {
    if format != Some(BATCH_FORMAT) {
        return Ok(vec![telemetry_from_message(m)]);
    }
    let Body::Data(sections) = &m.body else {
        return Err("a batched message must carry its messages as data sections".into());
    };
    sections
        .iter()
        .enumerate()
        .map(|(i, d)| {
            <Body<Value> as DecodeIntoMessage>::decode_message_from_reader(SliceReader::new(&d.0))
                .map(|inner| telemetry_from_message(&inner))
                .map_err(|e| format!("message {i} of the batch does not decode: {e}"))
        })
        .collect()
}

/// Serves a telemetry link until it ends, or until the identity's grant ends (closed then
/// with `amqp:unauthorized-access`; nothing after it is stored).
pub(crate) async fn serve(link: LinkCtx, mut receiver: Receiver, grant: Arc<DeviceGrant>) {
    let ctx = link.conn.clone();
    let hub = ctx.service.hub.clone();
    let identity = grant.identity();
    let mut link_ended = false;
    let ended = loop {
        if link_ended {
            break None;
        }
        let first = tokio::select! {
            reason = grant.wait_ended() => break Some(reason),
            d = receiver.recv::<Body<Value>>() => match d {
                Ok(d) => d,
                Err(e) => {
                    tracing::debug!(peer = %ctx.peer, identity, "amqp: telemetry link ended: {e}");
                    break None;
                }
            },
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match receiver.recv::<Body<Value>>().now_or_never() {
                Some(Ok(d)) => batch.push(d),
                Some(Err(e)) => {
                    tracing::debug!(peer = %ctx.peer, identity, "amqp: telemetry link ended: {e}");
                    link_ended = true;
                    break;
                }
                None => break,
            }
        }
        let principal = grant.principal();
        // Over a throttle the acknowledgements wait, as MQTT's PUBACKs do.
        if let Some(wait) = hub.pace_telemetry(&principal, batch.len()) {
            tokio::select! {
                () = wait => {}
                reason = grant.wait_ended() => break Some(reason),
            }
        }
        if let Some(reason) = grant.ended() {
            break Some(reason);
        }
        // A delivery holding a message over the size limit is refused on its own (the hub
        // stores nothing of a batch holding one); the others are stored with one write.
        let mut ok = Vec::with_capacity(batch.len());
        let mut big = Vec::new();
        for d in batch {
            match telemetry_of_delivery(d.message_format().as_ref().copied(), d.message()) {
                Ok(msgs) if msgs.iter().any(|m| m.body.len() > MAX_TELEMETRY_BYTES) => {
                    big.push((msgs, d));
                }
                Ok(msgs) => ok.push((msgs, d)),
                Err(why) => {
                    tracing::info!(peer = %ctx.peer, identity, "amqp: telemetry refused: {why}");
                    let _ = receiver.reject(&d, errors::decode(why)).await;
                }
            }
        }
        for (msgs, d) in big {
            let settled = match hub.send_telemetry_batch(&principal, msgs).await {
                Ok(_) => receiver.accept(&d).await,
                Err(e) => {
                    tracing::info!(peer = %ctx.peer, identity, "amqp: telemetry refused: {e}");
                    receiver.reject(&d, errors::hub_error(&e)).await
                }
            };
            if let Err(e) = settled {
                tracing::debug!(peer = %ctx.peer, identity, "amqp: telemetry disposition failed: {e}");
            }
        }
        if ok.is_empty() {
            continue;
        }
        let (msgs, deliveries): (Vec<Vec<TelemetryIn>>, Vec<_>) = ok.into_iter().unzip();
        let result = hub
            .send_telemetry_batch(&principal, msgs.into_iter().flatten().collect())
            .await;
        if let Err(e) = &result {
            tracing::info!(peer = %ctx.peer, identity, n = deliveries.len(), "amqp: telemetry refused: {e}");
        }
        for d in &deliveries {
            let settled = match &result {
                Ok(_) => receiver.accept(d).await,
                Err(e) => receiver.reject(d, errors::hub_error(e)).await,
            };
            if let Err(e) = settled {
                tracing::debug!(peer = %ctx.peer, identity, "amqp: telemetry disposition failed: {e}");
            }
        }
    };
    super::close_receiver(&ctx.peer, &identity, receiver, ended).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use fe2o3_amqp_types::messaging::{
        ApplicationProperties, Data, Message, MessageAnnotations, MessageId, Properties,
    };
    use fe2o3_amqp_types::primitives::{Binary, Symbol, Timestamp};

    #[test]
    fn properties_as_mqtt_names_them() {
        let mut app = ApplicationProperties::default();
        app.0.insert(
            "temperatureAlert".into(),
            SimpleValue::String("true".into()),
        );
        app.0.insert("level".into(), SimpleValue::Int(3));
        let mut ann = MessageAnnotations::default();
        ann.0.insert(
            OwnedKey::Symbol(Symbol::from("iothub-interface-id")),
            Value::String("dtmi:x;1".into()),
        );
        let m: AmqpMessage = Message {
            header: None,
            delivery_annotations: None,
            message_annotations: Some(ann),
            properties: Some(Properties {
                message_id: Some(MessageId::String("m-1".into())),
                correlation_id: Some(MessageId::Ulong(7)),
                content_type: Some(Symbol::from("application/json")),
                content_encoding: Some(Symbol::from("utf-8")),
                absolute_expiry_time: Some(Timestamp::from_milliseconds(1000)),
                ..Properties::default()
            }),
            application_properties: Some(app),
            body: Body::Data(vec![Data(Binary::from(b"{\"t\":1}".to_vec()))].into()),
            footer: None,
        };
        let t = telemetry_from_message(&m);
        let sys = |k: &str| t.system_properties.get(k).map(String::as_str);
        assert_eq!(sys("message-id"), Some("m-1"));
        assert_eq!(sys("correlation-id"), Some("7"));
        assert_eq!(sys("content-type"), Some("application/json"));
        assert_eq!(sys("content-encoding"), Some("utf-8"));
        assert_eq!(sys("absolute-expiry-time"), Some("1000"));
        assert_eq!(sys("iothub-interface-id"), Some("dtmi:x;1"));
        assert_eq!(sys("user-id"), None);
        assert_eq!(
            t.properties.get("temperatureAlert").map(String::as_str),
            Some("true")
        );
        assert_eq!(t.properties.get("level").map(String::as_str), Some("3"));
        assert_eq!(t.body, b"{\"t\":1}");
    }

    #[test]
    fn batches_as_the_c_sdk_sends_them() {
        use fe2o3_amqp_types::messaging::message::__private::Serializable;
        let inner = |id: &str, body: &[u8]| -> AmqpMessage {
            Message {
                header: None,
                delivery_annotations: None,
                message_annotations: None,
                properties: Some(Properties {
                    message_id: Some(MessageId::String(id.into())),
                    ..Properties::default()
                }),
                application_properties: None,
                body: Body::Data(vec![Data(Binary::from(body.to_vec()))].into()),
                footer: None,
            }
        };
        let section =
            |m: AmqpMessage| Data(Binary::from(serde_amqp::to_vec(&Serializable(m)).unwrap()));
        let outer: AmqpMessage = Message {
            header: None,
            delivery_annotations: None,
            message_annotations: None,
            properties: None,
            application_properties: None,
            body: Body::Data(vec![section(inner("a", b"1")), section(inner("b", b"22"))].into()),
            footer: None,
        };
        let msgs = telemetry_of_delivery(Some(BATCH_FORMAT), &outer).unwrap();
        assert_eq!(msgs.len(), 2);
        assert_eq!(
            msgs[0]
                .system_properties
                .get("message-id")
                .map(String::as_str),
            Some("a")
        );
        assert_eq!(msgs[1].body, b"22");
        // The same message without the batch format is one message with its raw sections.
        assert_eq!(telemetry_of_delivery(None, &outer).unwrap().len(), 1);
        let garbage: AmqpMessage = Message {
            body: Body::Data(vec![Data(Binary::from(vec![0xff, 0x00]))].into()),
            ..outer
        };
        assert!(telemetry_of_delivery(Some(BATCH_FORMAT), &garbage).is_err());
    }
}
