//! Service-side cloud-to-device messages over AMQP: what a message sent to
//! `/messages/devicebound` carries (`to` = `/devices/{id}/messages/devicebound`, properties,
//! `iothub-ack`), and the feedback batches read from `/messages/servicebound/feedback`
//! (see `docs/protocol-notes.md`, "C2D over AMQP" and "C2D feedback").

use crate::request::AmqpMessage;
use fe2o3_amqp_types::messaging::{Body, Data, Message, MessageId, Properties};
use fe2o3_amqp_types::primitives::{Binary, SimpleValue, Symbol, Timestamp, Value};
use fleethub_services::hub::{C2dSend, FeedbackRecord};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Content type of a feedback batch.
pub const FEEDBACK_CONTENT_TYPE: &str = "application/vnd.microsoft.iothub.feedback.json";

/// A malformed cloud-to-device message (refused with `com.microsoft:argument-error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum C2dError {
    #[error(
        "the message has no 'to' property: set it to /devices/{{deviceId}}/messages/devicebound"
    )]
    NoTo,
    #[error("'to' is '{0}': it must be /devices/{{deviceId}}/messages/devicebound")]
    BadTo(String),
}

/// The device id of `to` = `/devices/{id}/messages/devicebound` (percent-decoded).
pub fn device_of(to: &str) -> Result<String, C2dError> {
    let bad = || C2dError::BadTo(to.to_string());
    let path = crate::addresses::path_of(to);
    let rest = path.strip_prefix("devices/").ok_or_else(bad)?;
    let (id, tail) = rest.split_once('/').ok_or_else(bad)?;
    if !tail.eq_ignore_ascii_case("messages/devicebound") || id.is_empty() {
        return Err(bad());
    }
    Ok(percent_decode(id))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| s.to_string())
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// A message id as text.
pub fn id_text(id: &MessageId) -> String {
    match id {
        MessageId::String(s) => s.clone(),
        MessageId::Ulong(n) => n.to_string(),
        MessageId::Uuid(u) => uuid_text(u.as_inner()),
        MessageId::Binary(b) => b.iter().fold(String::new(), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        }),
    }
}

fn uuid_text(b: &[u8; 16]) -> String {
    let h: Vec<String> = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        h[0..4].concat(),
        h[4..6].concat(),
        h[6..8].concat(),
        h[8..10].concat(),
        h[10..16].concat()
    )
}

/// An application property value as the device sees it (property bags are strings).
fn simple_text(v: &SimpleValue) -> Option<String> {
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
        _ => return None,
    })
}

/// The body bytes: data sections concatenated, or an amqp-value string/binary.
pub fn body_bytes(m: &AmqpMessage) -> Vec<u8> {
    match &m.body {
        Body::Data(batch) => batch.iter().flat_map(|d| d.0.iter().copied()).collect(),
        Body::Value(v) => match &v.0 {
            Value::String(s) => s.clone().into_bytes(),
            Value::Binary(b) => b.to_vec(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// The device and the send request of one message; `now_ms` turns an absolute expiry into a
/// time to live.
pub fn c2d_from_message(m: &AmqpMessage, now_ms: i64) -> Result<(String, C2dSend), C2dError> {
    let props = m.properties.clone().unwrap_or_default();
    let to = props.to.as_deref().ok_or(C2dError::NoTo)?;
    let device = device_of(to)?;
    let mut properties = BTreeMap::new();
    let mut ack = None;
    if let Some(app) = &m.application_properties {
        for (k, v) in &app.0 {
            let Some(text) = simple_text(v) else { continue };
            if k.eq_ignore_ascii_case("iothub-ack") {
                ack = Some(text.to_ascii_lowercase());
            } else {
                properties.insert(k.clone(), text);
            }
        }
    }
    let ttl_from_expiry = props
        .absolute_expiry_time
        .as_ref()
        .map(|t| ((t.milliseconds() - now_ms).max(1000) / 1000) as u64);
    let ttl_from_header = m
        .header
        .as_ref()
        .and_then(|h| h.ttl)
        .map(|ms| u64::from(ms / 1000).max(1));
    Ok((
        device,
        C2dSend {
            body: body_bytes(m),
            message_id: props.message_id.as_ref().map(id_text),
            correlation_id: props.correlation_id.as_ref().map(id_text),
            content_type: props.content_type.map(|s| s.as_str().to_string()),
            content_encoding: props.content_encoding.map(|s| s.as_str().to_string()),
            ttl_secs: ttl_from_expiry.or(ttl_from_header),
            ack,
            properties,
        },
    ))
}

/// Azure's JSON of a feedback batch.
pub fn feedback_json(batch: &[FeedbackRecord]) -> String {
    let records: Vec<serde_json::Value> = batch
        .iter()
        .map(|r| {
            serde_json::json!({
                "originalMessageId": r.original_message_id,
                "description": r.status.as_str(),
                "statusCode": r.status.as_str(),
                "deviceGenerationId": r.device_generation_id,
                "deviceId": r.device_id,
                "enqueuedTimeUtc": r.enqueued_time_utc,
            })
        })
        .collect();
    serde_json::Value::Array(records).to_string()
}

/// The feedback message of a batch (data body, Azure's content type and `user-id`).
pub fn feedback_message(batch: &[FeedbackRecord], hub_name: &str, now_ms: i64) -> AmqpMessage {
    Message {
        header: None,
        delivery_annotations: None,
        message_annotations: None,
        properties: Some(Properties {
            message_id: Some(MessageId::String(uuid::Uuid::new_v4().to_string())),
            user_id: Some(Binary::from(hub_name.as_bytes().to_vec())),
            content_type: Some(Symbol::from(FEEDBACK_CONTENT_TYPE)),
            content_encoding: Some(Symbol::from("utf-8")),
            creation_time: Some(Timestamp::from_milliseconds(now_ms)),
            ..Properties::default()
        }),
        application_properties: None,
        body: Body::Data(vec![Data(Binary::from(feedback_json(batch).into_bytes()))].into()),
        footer: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fe2o3_amqp_types::messaging::{AmqpValue, ApplicationProperties};
    use fleethub_services::hub::FeedbackStatus;

    #[test]
    fn device_ids_from_to() {
        assert_eq!(
            device_of("/devices/d1/messages/devicebound"),
            Ok("d1".into())
        );
        assert_eq!(
            device_of("/devices/a%20b%2Fc/messages/deviceBound"),
            Ok("a b/c".into())
        );
        assert_eq!(
            device_of("amqps://h/devices/d1/messages/devicebound"),
            Ok("d1".into())
        );
        assert!(device_of("/devices/d1/messages/events").is_err());
        assert!(device_of("/devices//messages/devicebound").is_err());
        assert!(device_of("d1").is_err());
    }

    #[test]
    fn c2d_message_fields() {
        let mut app = ApplicationProperties::default();
        app.0
            .insert("iothub-ack".into(), SimpleValue::String("Full".into()));
        app.0
            .insert("colour".into(), SimpleValue::String("red".into()));
        app.0.insert("n".into(), SimpleValue::Int(3));
        let m: AmqpMessage = Message {
            header: None,
            delivery_annotations: None,
            message_annotations: None,
            properties: Some(Properties {
                to: Some("/devices/d1/messages/devicebound".into()),
                message_id: Some(MessageId::String("m1".into())),
                correlation_id: Some(MessageId::Ulong(7)),
                content_type: Some(Symbol::from("application/json")),
                absolute_expiry_time: Some(Timestamp::from_milliseconds(1_000_000 + 60_000)),
                ..Properties::default()
            }),
            application_properties: Some(app),
            body: Body::Value(AmqpValue(Value::String("hello".into()))),
            footer: None,
        };
        let (device, send) = c2d_from_message(&m, 1_000_000).unwrap();
        assert_eq!(device, "d1");
        assert_eq!(send.body, b"hello");
        assert_eq!(send.ack.as_deref(), Some("full"));
        assert_eq!(send.message_id.as_deref(), Some("m1"));
        assert_eq!(send.correlation_id.as_deref(), Some("7"));
        assert_eq!(send.content_type.as_deref(), Some("application/json"));
        assert_eq!(send.ttl_secs, Some(60));
        assert_eq!(
            send.properties.get("colour").map(String::as_str),
            Some("red")
        );
        assert_eq!(send.properties.get("n").map(String::as_str), Some("3"));
        assert!(!send.properties.contains_key("iothub-ack"));
    }

    #[test]
    fn feedback_batches_in_azure_json() {
        let batch = [FeedbackRecord {
            original_message_id: "m1".into(),
            device_id: "d1".into(),
            device_generation_id: "g1".into(),
            status: FeedbackStatus::Success,
            enqueued_time_utc: "2026-01-01T00:00:00.000Z".into(),
        }];
        let v: serde_json::Value = serde_json::from_str(&feedback_json(&batch)).unwrap();
        assert_eq!(
            v,
            serde_json::json!([{"originalMessageId": "m1", "description": "Success", "statusCode": "Success",
                "deviceGenerationId": "g1", "deviceId": "d1", "enqueuedTimeUtc": "2026-01-01T00:00:00.000Z"}])
        );
        let m = feedback_message(&batch, "hub", 5);
        assert_eq!(
            m.properties.unwrap().content_type.unwrap().as_str(),
            FEEDBACK_CONTENT_TYPE
        );
    }
}
