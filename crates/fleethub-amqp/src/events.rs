//! A stored telemetry message as an Event Hubs event, with what IoT Hub sets (see
//! `docs/protocol-notes.md`, "Event Hubs receivers"): message annotations
//! `x-opt-sequence-number` (long), `x-opt-offset` (string), `x-opt-enqueued-time` (timestamp),
//! `iothub-connection-device-id`, `iothub-connection-module-id`,
//! `iothub-connection-auth-method`, `iothub-connection-auth-generation-id`,
//! `iothub-enqueuedtime`, `iothub-message-source`; the message's system properties as AMQP
//! properties (message id, correlation id, user id, content type and encoding), its
//! application properties as application properties, its body as one data section.

use crate::request::AmqpMessage;
use fe2o3_amqp_types::messaging::{
    ApplicationProperties, Body, Data, Message, MessageAnnotations, MessageId, Properties,
    annotations::OwnedKey,
};
use fe2o3_amqp_types::primitives::{Binary, OrderedMap, SimpleValue, Symbol, Timestamp, Value};
use fleethub_services::hub::PartitionEvent;
use fleethub_services::hub::event_hub::SenderAuth;
use std::sync::Arc;

/// Room for the annotations every event carries (and the optional ones), so the map is
/// allocated once per event instead of grown (and rehashed) as they are added.
const ANNOTATIONS: usize = 16;

fn annotation(a: &mut MessageAnnotations, key: &str, value: Value) {
    a.0.insert(OwnedKey::Symbol(Symbol::from(key)), value);
}

/// The AMQP message of one event; `generation_id` is the sending device's, when known. The
/// event is consumed: its strings and body move into the message (one event is sent once).
pub fn event_message(ev: PartitionEvent, generation_id: Option<String>) -> AmqpMessage {
    let PartitionEvent {
        sequence_number,
        offset,
        enqueued_time_utc_ms,
        message,
        ..
    } = ev;
    let m = Arc::try_unwrap(message).unwrap_or_else(|shared| (*shared).clone());
    let mut sys = m.system_properties;
    let enqueued = Timestamp::from_milliseconds(enqueued_time_utc_ms);
    let mut ann = MessageAnnotations(OrderedMap::with_capacity(ANNOTATIONS));
    annotation(
        &mut ann,
        "x-opt-sequence-number",
        Value::Long(sequence_number),
    );
    annotation(&mut ann, "x-opt-offset", Value::String(offset.to_string()));
    annotation(
        &mut ann,
        "x-opt-enqueued-time",
        Value::Timestamp(enqueued.clone()),
    );
    annotation(
        &mut ann,
        "iothub-connection-device-id",
        Value::String(m.device_id),
    );
    let module = m.module_id.is_some();
    if let Some(module) = m.module_id {
        annotation(
            &mut ann,
            "iothub-connection-module-id",
            Value::String(module),
        );
    }
    // Recorded when the message was stored (how the identity authenticated); older messages
    // have none: they came from SAS-authenticated identities.
    let auth = sys
        .remove(fleethub_services::hub::event_hub::AUTH_METHOD_PROPERTY)
        .unwrap_or_else(|| {
            let auth = if module {
                SenderAuth::Module
            } else {
                SenderAuth::Device
            };
            auth.auth_method().to_string()
        });
    annotation(
        &mut ann,
        "iothub-connection-auth-method",
        Value::String(auth),
    );
    if let Some(g) = generation_id {
        annotation(
            &mut ann,
            "iothub-connection-auth-generation-id",
            Value::String(g),
        );
    }
    annotation(&mut ann, "iothub-enqueuedtime", Value::Timestamp(enqueued));
    // Not forwarded as anything else (only annotated), so it moves out of the map.
    let source = sys
        .remove("iothub-message-source")
        .unwrap_or_else(|| "Telemetry".to_string());
    annotation(&mut ann, "iothub-message-source", Value::String(source));
    for (k, v) in &sys {
        // Routing-related system properties IoT Hub also forwards as annotations.
        if matches!(
            k.as_str(),
            "iothub-outputname" | "iothub-interface-id" | "dt-subject" | "iothub-creation-time-utc"
        ) {
            annotation(&mut ann, k, Value::String(v.clone()));
        }
    }
    let properties = Properties {
        message_id: sys.remove("message-id").map(MessageId::String),
        correlation_id: sys.remove("correlation-id").map(MessageId::String),
        user_id: sys.remove("user-id").map(|u| Binary::from(u.into_bytes())),
        content_type: sys.remove("content-type").map(Symbol::from),
        content_encoding: sys.remove("content-encoding").map(Symbol::from),
        to: sys.remove("to"),
        ..Properties::default()
    };
    let mut app = ApplicationProperties(OrderedMap::with_capacity(m.properties.len()));
    for (k, v) in m.properties {
        app.0.insert(k, SimpleValue::String(v));
    }
    Message {
        header: None,
        delivery_annotations: None,
        message_annotations: Some(ann),
        properties: Some(properties),
        application_properties: Some(app),
        body: Body::Data(vec![Data(Binary::from(m.body))].into()),
        footer: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleethub_services::TelemetryMessage;

    fn get<'a>(m: &'a AmqpMessage, key: &str) -> Option<&'a Value> {
        m.message_annotations
            .as_ref()?
            .0
            .get(&OwnedKey::Symbol(Symbol::from(key)))
    }

    fn ev_message() -> TelemetryMessage {
        TelemetryMessage {
            sequence_number: 1,
            device_id: "d1".into(),
            module_id: None,
            partition: 0,
            partition_sequence_number: 0,
            enqueued_time_utc: "2026-01-01T00:00:00.000Z".into(),
            system_properties: std::collections::BTreeMap::new(),
            properties: std::collections::BTreeMap::new(),
            body: Vec::new(),
            sender: None,
        }
    }

    #[test]
    fn annotations_and_properties_as_iot_hub_sets_them() {
        let mut msg = TelemetryMessage {
            sequence_number: 77,
            device_id: "d1".into(),
            module_id: Some("m1".into()),
            partition: 2,
            partition_sequence_number: 5,
            enqueued_time_utc: "2026-01-01T00:00:00.000Z".into(),
            system_properties: std::collections::BTreeMap::new(),
            properties: std::collections::BTreeMap::new(),
            body: b"{\"t\":1}".to_vec(),
            sender: None,
        };
        msg.system_properties
            .insert("message-id".into(), "mid-1".into());
        msg.system_properties
            .insert("content-type".into(), "application/json".into());
        msg.system_properties
            .insert("content-encoding".into(), "utf-8".into());
        msg.system_properties
            .insert("iothub-message-source".into(), "Telemetry".into());
        msg.properties.insert("alert".into(), "yes".into());
        let ev = PartitionEvent {
            partition: 2,
            sequence_number: 5,
            offset: 77,
            enqueued_time_utc_ms: 1_767_225_600_000,
            message: Arc::new(msg),
        };
        let m = event_message(ev, Some("gen-1".into()));
        assert_eq!(get(&m, "x-opt-sequence-number"), Some(&Value::Long(5)));
        assert_eq!(get(&m, "x-opt-offset"), Some(&Value::String("77".into())));
        assert_eq!(
            get(&m, "x-opt-enqueued-time"),
            Some(&Value::Timestamp(Timestamp::from_milliseconds(
                1_767_225_600_000
            )))
        );
        assert_eq!(
            get(&m, "iothub-connection-device-id"),
            Some(&Value::String("d1".into()))
        );
        assert_eq!(
            get(&m, "iothub-connection-module-id"),
            Some(&Value::String("m1".into()))
        );
        assert_eq!(
            get(&m, "iothub-connection-auth-generation-id"),
            Some(&Value::String("gen-1".into()))
        );
        assert_eq!(
            get(&m, "iothub-message-source"),
            Some(&Value::String("Telemetry".into()))
        );
        let auth = match get(&m, "iothub-connection-auth-method") {
            Some(Value::String(s)) => serde_json::from_str::<serde_json::Value>(s).unwrap(),
            other => panic!("{other:?}"),
        };
        assert_eq!(auth["scope"], "module");
        // A recorded auth method (how the identity authenticated) is passed on, not as a property.
        let mut recorded = ev_message();
        recorded.system_properties.insert(
            fleethub_services::hub::event_hub::AUTH_METHOD_PROPERTY.into(),
            r#"{"scope":"hub","type":"sas","issuer":"iothub","acceptingIpFilterRule":null}"#.into(),
        );
        let hub_scoped = event_message(
            PartitionEvent {
                partition: 0,
                sequence_number: 0,
                offset: 1,
                enqueued_time_utc_ms: 0,
                message: Arc::new(recorded),
            },
            None,
        );
        match get(&hub_scoped, "iothub-connection-auth-method") {
            Some(Value::String(s)) => assert!(s.contains(r#""scope":"hub""#), "{s}"),
            other => panic!("{other:?}"),
        }
        let p = m.properties.as_ref().unwrap();
        assert_eq!(p.message_id, Some(MessageId::String("mid-1".into())));
        assert_eq!(
            p.content_type.as_ref().map(Symbol::as_str),
            Some("application/json")
        );
        assert_eq!(
            p.content_encoding.as_ref().map(Symbol::as_str),
            Some("utf-8")
        );
        let app = &m.application_properties.as_ref().unwrap().0;
        assert_eq!(app.get("alert"), Some(&SimpleValue::String("yes".into())));
        match &m.body {
            Body::Data(d) => assert_eq!(d.iter().next().unwrap().0.as_ref(), b"{\"t\":1}"),
            other => panic!("{other:?}"),
        }
    }
}
