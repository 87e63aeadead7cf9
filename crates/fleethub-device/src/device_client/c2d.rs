//! Cloud-to-device messages over MQTT (docs/protocol-notes.md, "Cloud-to-device"): delivered on
//! `devices/{id}/messages/devicebound/{propertyBag}`; the PUBACK completes the message at the
//! hub, so it is sent only once the message is in the application's receiver.

use std::collections::BTreeMap;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::connection::Feature;
use super::{Ack, DeviceClient, DeviceError, Shared, Sink, lock};
use fleethub_iot_protocol::property_bag;

/// At most this many undelivered C2D messages are kept for a receiver not created yet; the
/// rest stay unacknowledged at the hub (redelivered on the next connection).
const BACKLOG_LIMIT: usize = 1000;

/// A cloud-to-device message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct C2dMessage {
    pub body: Vec<u8>,
    /// `$.mid`.
    pub message_id: Option<String>,
    /// `$.cid`.
    pub correlation_id: Option<String>,
    /// `$.uid`.
    pub user_id: Option<String>,
    /// `$.ct`.
    pub content_type: Option<String>,
    /// `$.ce`.
    pub content_encoding: Option<String>,
    /// `$.exp`: absolute expiry, ISO-8601 UTC.
    pub expiry_time_utc: Option<String>,
    /// `$.to`, e.g. `/devices/{id}/messages/deviceBound`.
    pub to: Option<String>,
    /// `iothub-ack`: the feedback the sender asked for (`none|positive|negative|full`).
    pub ack: Option<String>,
    /// Other system properties (`$.x` keys not listed above), by their `$.x` name.
    pub system_properties: BTreeMap<String, String>,
    /// Application properties (a bare `key` without `=` has an empty value).
    pub properties: BTreeMap<String, String>,
}

impl C2dMessage {
    /// Builds a message from the (still encoded) property bag after `devicebound/` and the
    /// body. Both `%24.x` and literal `$.x` system keys are recognised; a property that does
    /// not decode (not UTF-8, empty name) is skipped.
    pub fn from_wire(bag: &str, body: impl Into<Vec<u8>>) -> C2dMessage {
        let mut m = C2dMessage {
            body: body.into(),
            ..C2dMessage::default()
        };
        for property in property_bag::iter(bag) {
            let (key, value) = match property {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!("C2D message: {e}; property skipped");
                    continue;
                }
            };
            let value = value.unwrap_or_default();
            let slot = match key.as_str() {
                "$.mid" => &mut m.message_id,
                "$.cid" => &mut m.correlation_id,
                "$.uid" => &mut m.user_id,
                "$.ct" => &mut m.content_type,
                "$.ce" => &mut m.content_encoding,
                "$.exp" => &mut m.expiry_time_utc,
                "$.to" => &mut m.to,
                "iothub-ack" => &mut m.ack,
                k if k.starts_with("$.") => {
                    m.system_properties.insert(key, value);
                    continue;
                }
                _ => {
                    m.properties.insert(key, value);
                    continue;
                }
            };
            *slot = Some(value);
        }
        m
    }

    /// The body as text (lossy UTF-8).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Shared {
    pub(crate) fn on_c2d(&self, bag: &str, body: Bytes, ack: Option<Ack>) {
        let message = C2dMessage::from_wire(bag, Vec::from(body));
        let mut sinks = lock(&self.sinks);
        let (message, ack) = match &sinks.c2d {
            Some(sink) => match sink.deliver(message, ack) {
                Ok(()) => return,
                Err(back) => back,
            },
            None => (message, ack),
        };
        if sinks.c2d_backlog.len() < BACKLOG_LIMIT {
            tracing::debug!(
                message_id = ?message.message_id,
                "C2D message kept until c2d_messages() is called"
            );
            sinks.c2d_backlog.push((message, ack));
        } else {
            tracing::warn!(
                message_id = ?message.message_id,
                "C2D message left unacknowledged: no receiver"
            );
        }
    }
}

impl DeviceClient {
    /// Cloud-to-device messages. Subscribes `devices/{id}/messages/devicebound/#` once
    /// (not available to module clients). Each message is acknowledged (completed at the
    /// hub) once it is in this receiver; messages that arrived before the call (a resumed
    /// session delivers the queue right after connecting) are handed over first. Calling it
    /// again replaces the receiver.
    pub async fn c2d_messages(&self) -> Result<mpsc::Receiver<C2dMessage>, DeviceError> {
        if self.shared.ids.module_id.is_some() {
            return Err(DeviceError::Config(
                "modules do not receive cloud-to-device messages".into(),
            ));
        }
        let (sink, rx) = Sink::new(self.shared.options.channel_capacity);
        {
            let mut sinks = lock(&self.shared.sinks);
            for (message, ack) in std::mem::take(&mut sinks.c2d_backlog) {
                // The forwarder task is alive: it holds the receiver end.
                let _ = sink.deliver(message, ack);
            }
            sinks.c2d = Some(sink);
        }
        self.shared
            .bounded("subscribing to cloud-to-device messages", async {
                self.shared.ensure_subscribed(Feature::CloudToDevice).await
            })
            .await?;
        Ok(rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_bag_the_server_sends() {
        let bag = "%24.mid=m%201&%24.to=%2Fdevices%2Fd1%2Fmessages%2FdeviceBound&%24.cid=c1\
                   &%24.ct=application%2Fjson&%24.ce=utf-8&%24.exp=2030-01-01T00%3A00%3A00.000Z\
                   &iothub-ack=full&color=red&with%20space=a%26b&flag&%24.ctime=t";
        let m = C2dMessage::from_wire(bag, b"hi".to_vec());
        assert_eq!(m.body_text(), "hi");
        assert_eq!(m.message_id.as_deref(), Some("m 1"));
        assert_eq!(m.to.as_deref(), Some("/devices/d1/messages/deviceBound"));
        assert_eq!(m.correlation_id.as_deref(), Some("c1"));
        assert_eq!(m.content_type.as_deref(), Some("application/json"));
        assert_eq!(m.content_encoding.as_deref(), Some("utf-8"));
        assert_eq!(
            m.expiry_time_utc.as_deref(),
            Some("2030-01-01T00:00:00.000Z")
        );
        assert_eq!(m.ack.as_deref(), Some("full"));
        assert_eq!(m.properties["color"], "red");
        assert_eq!(m.properties["with space"], "a&b");
        assert_eq!(m.properties["flag"], "");
        assert_eq!(m.system_properties["$.ctime"], "t");
        // Literal `$.` keys (as the docs show them) and an empty bag.
        let m = C2dMessage::from_wire("$.mid=x", Vec::new());
        assert_eq!(m.message_id.as_deref(), Some("x"));
        assert_eq!(C2dMessage::from_wire("", b"b".to_vec()).properties.len(), 0);
    }
}
