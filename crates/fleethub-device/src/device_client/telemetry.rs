//! Device-to-cloud telemetry: [`Message`] and [`DeviceClient::send_event`].

use std::collections::BTreeMap;

use bytes::Bytes;
use fleethub_mqtt_codec::QoS;

use super::{DeviceClient, DeviceError};
use fleethub_iot_protocol::hub::{self, MAX_MESSAGE_SIZE};
use fleethub_iot_protocol::property_bag;

/// A telemetry message: a body, system properties and application properties.
///
/// System properties travel in the topic's property bag as `%24.mid`, `%24.cid`, `%24.uid`,
/// `%24.ct`, `%24.ce`, `%24.exp`, `%24.on`; application properties follow, sorted by name
/// (as the Python SDK sends them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    pub body: Vec<u8>,
    /// `$.ct`, e.g. `application/json` (needed for message routing on the body).
    pub content_type: Option<String>,
    /// `$.ce`, e.g. `utf-8`.
    pub content_encoding: Option<String>,
    /// `$.mid`.
    pub message_id: Option<String>,
    /// `$.cid`.
    pub correlation_id: Option<String>,
    /// `$.uid`.
    pub user_id: Option<String>,
    /// `$.exp`: absolute expiry, ISO-8601 UTC.
    pub expiry_time_utc: Option<String>,
    /// `$.on`: output name (module clients sending to an edge output).
    pub output_name: Option<String>,
    /// Application properties.
    pub properties: BTreeMap<String, String>,
}

impl Message {
    /// A message with this body and no properties.
    pub fn new(body: impl Into<Vec<u8>>) -> Self {
        Message {
            body: body.into(),
            ..Message::default()
        }
    }

    /// A JSON body with `content_type = application/json` and `content_encoding = utf-8`.
    pub fn json(value: &serde_json::Value) -> Self {
        Message::new(value.to_string())
            .with_content_type("application/json")
            .with_content_encoding("utf-8")
    }

    pub fn with_content_type(mut self, v: impl Into<String>) -> Self {
        self.content_type = Some(v.into());
        self
    }

    pub fn with_content_encoding(mut self, v: impl Into<String>) -> Self {
        self.content_encoding = Some(v.into());
        self
    }

    pub fn with_message_id(mut self, v: impl Into<String>) -> Self {
        self.message_id = Some(v.into());
        self
    }

    pub fn with_correlation_id(mut self, v: impl Into<String>) -> Self {
        self.correlation_id = Some(v.into());
        self
    }

    /// `$.on`: the output a module sends to (routed by an edge hub).
    pub fn with_output_name(mut self, v: impl Into<String>) -> Self {
        self.output_name = Some(v.into());
        self
    }

    /// Adds (or replaces) an application property.
    pub fn with_property(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(name.into(), value.into());
        self
    }

    /// The property bag of the telemetry topic (without the topic prefix).
    pub fn property_bag(&self) -> String {
        let system = [
            ("$.mid", &self.message_id),
            ("$.cid", &self.correlation_id),
            ("$.uid", &self.user_id),
            ("$.ct", &self.content_type),
            ("$.ce", &self.content_encoding),
            ("$.exp", &self.expiry_time_utc),
            ("$.on", &self.output_name),
        ];
        let system = system
            .into_iter()
            .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)));
        let app = self
            .properties
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()));
        property_bag::encode(system.chain(app))
    }

    /// The full telemetry topic for this message.
    pub fn topic(&self, device_id: &str, module_id: Option<&str>) -> String {
        let mut t = hub::telemetry_prefix(device_id, module_id);
        t.push_str(&self.property_bag());
        t
    }
}

impl DeviceClient {
    /// Sends a telemetry message at QoS 1 on `devices/{id}/messages/events/{bag}`; returns
    /// once the hub has acknowledged it (PUBACK).
    ///
    /// While the client is reconnecting the call waits for the connection (within the
    /// operation timeout); if the connection drops before the PUBACK it fails with
    /// [`DeviceError::ConnectionLost`] (the message may or may not have been accepted).
    pub async fn send_event(&self, message: Message) -> Result<(), DeviceError> {
        let topic = message.topic(&self.shared.ids.device_id, self.module_id());
        let size = topic.len() + message.body.len();
        if size > MAX_MESSAGE_SIZE {
            return Err(DeviceError::MessageTooLarge {
                size,
                max: MAX_MESSAGE_SIZE,
            });
        }
        let body = Bytes::from(message.body);
        let shared = &self.shared;
        shared
            .bounded("sending telemetry", async {
                let lease = shared.lease().await?;
                lease
                    .mqtt
                    .publish(topic, QoS::AtLeastOnce, body)
                    .await
                    .map_err(DeviceError::from_mqtt)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn telemetry_topic_with_system_and_app_properties() {
        let m = Message::json(&serde_json::json!({"t": 21.5}))
            .with_message_id("m 1")
            .with_correlation_id("c/1")
            .with_property("zeta", "last")
            .with_property("temp Alert", "tr/ue");
        assert_eq!(
            m.topic("dev-01", None),
            "devices/dev-01/messages/events/%24.mid=m%201&%24.cid=c%2F1&%24.ct=application%2Fjson&%24.ce=utf-8&temp%20Alert=tr%2Fue&zeta=last"
        );
        assert_eq!(m.body, br#"{"t":21.5}"#);
        assert_eq!(
            Message::new("x").topic("d", Some("m")),
            "devices/d/modules/m/messages/events/"
        );
        let out = Message {
            output_name: Some("out1".into()),
            user_id: Some("u".into()),
            expiry_time_utc: Some("2030-01-01T00:00:00Z".into()),
            ..Message::new("x")
        };
        assert_eq!(
            out.property_bag(),
            "%24.uid=u&%24.exp=2030-01-01T00%3A00%3A00Z&%24.on=out1"
        );
    }
}
