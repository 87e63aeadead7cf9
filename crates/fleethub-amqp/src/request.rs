//! Request/response messages on the `$cbs` and `$management` nodes: the request's application
//! properties name the operation, the reply carries `status-code` (int) and
//! `status-description` in its application properties and the request's `message-id` as its
//! `correlation-id` (see `docs/protocol-notes.md`, "AMQP claims-based security").

use fe2o3_amqp_types::messaging::{
    AmqpValue, ApplicationProperties, Body, Message, MessageId, Properties,
};
use fe2o3_amqp_types::primitives::{SimpleValue, Value};

/// Messages as the links carry them.
pub type AmqpMessage = Message<Body<Value>>;

/// A string application property (also accepts a symbol).
pub fn app_prop<'a>(m: &'a AmqpMessage, key: &str) -> Option<&'a str> {
    match m.application_properties.as_ref()?.0.get(key)? {
        SimpleValue::String(s) => Some(s.as_str()),
        SimpleValue::Symbol(s) => Some(s.as_str()),
        _ => None,
    }
}

/// The body as text: an amqp-value string, or UTF-8 data.
pub fn body_text(m: &AmqpMessage) -> Option<String> {
    match &m.body {
        Body::Value(AmqpValue(Value::String(s))) => Some(s.clone()),
        Body::Data(batch) => {
            let bytes: Vec<u8> = batch.iter().flat_map(|d| d.0.iter().copied()).collect();
            String::from_utf8(bytes).ok()
        }
        _ => None,
    }
}

/// The address replies go to (`reply-to`), if the request names one.
pub fn reply_to(m: &AmqpMessage) -> Option<&str> {
    m.properties.as_ref()?.reply_to.as_deref()
}

/// The reply to `request`: status in the application properties, `correlation-id` = the
/// request's `message-id` (its `correlation-id` when it has no message id), `to` = its
/// `reply-to`.
pub fn reply(
    request: &AmqpMessage,
    status: i32,
    description: &str,
    body: Body<Value>,
) -> AmqpMessage {
    let props = request.properties.as_ref();
    let correlation: Option<MessageId> =
        props.and_then(|p| p.message_id.clone().or_else(|| p.correlation_id.clone()));
    let properties = Properties {
        correlation_id: correlation,
        to: props.and_then(|p| p.reply_to.clone()),
        ..Properties::default()
    };
    let mut app = ApplicationProperties::default();
    app.0.insert("status-code".into(), SimpleValue::Int(status));
    app.0.insert(
        "status-description".into(),
        SimpleValue::String(description.to_string()),
    );
    Message {
        header: None,
        delivery_annotations: None,
        message_annotations: None,
        properties: Some(properties),
        application_properties: Some(app),
        body,
        footer: None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A request as the clients send it.
    pub(crate) fn request(props: &[(&str, &str)], body: &str) -> AmqpMessage {
        let mut app = ApplicationProperties::default();
        for (k, v) in props {
            app.0
                .insert((*k).to_string(), SimpleValue::String((*v).to_string()));
        }
        Message {
            header: None,
            delivery_annotations: None,
            message_annotations: None,
            properties: Some(Properties {
                message_id: Some(MessageId::String("m-1".into())),
                reply_to: Some("cbs-reply".into()),
                ..Properties::default()
            }),
            application_properties: Some(app),
            body: Body::Value(AmqpValue(Value::String(body.into()))),
            footer: None,
        }
    }

    #[test]
    fn replies_correlate() {
        let req = request(&[("operation", "put-token")], "tok");
        assert_eq!(app_prop(&req, "operation"), Some("put-token"));
        assert_eq!(body_text(&req).as_deref(), Some("tok"));
        let r = reply(&req, 200, "OK", Body::Empty);
        let p = r.properties.as_ref().unwrap();
        assert_eq!(p.correlation_id, Some(MessageId::String("m-1".into())));
        assert_eq!(p.to.as_deref(), Some("cbs-reply"));
        let app = &r.application_properties.as_ref().unwrap().0;
        assert_eq!(app.get("status-code"), Some(&SimpleValue::Int(200)));
    }
}
