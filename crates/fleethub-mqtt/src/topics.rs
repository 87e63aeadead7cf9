//! What the gateway serves of the hub topics. The topic grammar itself (user names, DPS and
//! hub topics, property bags) is `fleethub_iot_protocol` (`docs/protocol-notes.md`, "Hub MQTT
//! topics"); this module only says which subscriptions the gateway serves and how a queued
//! C2D message becomes its topic.

use fleethub_iot_protocol::hub::{self, Subscription};
use fleethub_iot_protocol::property_bag::{self, Escape};

/// Subscription filters the hub serves, with what they enable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HubFilter {
    TwinResponses,
    DesiredUpdates,
    Methods,
    /// `devices/{id}/messages/devicebound/#` (the device's own ID only).
    CloudToDevice,
}

/// Which served feature a filter subscribes to, for the device `device_id` (module inputs
/// are not served).
pub fn classify_filter(filter: &str, device_id: &str) -> Option<HubFilter> {
    match hub::classify_filter(filter, device_id, None)? {
        Subscription::TwinResponses => Some(HubFilter::TwinResponses),
        Subscription::DesiredPatches => Some(HubFilter::DesiredUpdates),
        Subscription::Methods => Some(HubFilter::Methods),
        Subscription::CloudToDevice => Some(HubFilter::CloudToDevice),
        Subscription::ModuleInputs => None,
    }
}

/// The topic a cloud-to-device message is delivered on: system properties as `%24.x`,
/// everything but letters and digits in names and values encoded.
pub fn c2d_topic(m: &fleethub_services::hub::c2d::C2dView<'_>) -> String {
    let to = format!("/devices/{}/messages/deviceBound", m.device_id);
    let system = [
        ("$.mid", Some(m.message_id)),
        ("$.to", Some(to.as_str())),
        ("$.cid", m.correlation_id),
        ("$.ct", m.content_type),
        ("$.ce", m.content_encoding),
        ("$.exp", Some(m.expiry_utc)),
        ("iothub-ack", m.ack),
    ];
    let bag = property_bag::encode_with(
        system
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .chain(m.properties.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
        Escape::AllButAlphanumeric,
    );
    hub::c2d_topic(m.device_id, &bag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_filters() {
        assert_eq!(
            classify_filter("$iothub/twin/res/#", "d1"),
            Some(HubFilter::TwinResponses)
        );
        assert_eq!(
            classify_filter("$iothub/twin/PATCH/properties/desired/#", "d1"),
            Some(HubFilter::DesiredUpdates)
        );
        assert_eq!(
            classify_filter("$iothub/methods/POST/#", "d1"),
            Some(HubFilter::Methods)
        );
        assert_eq!(
            classify_filter("devices/d1/messages/devicebound/#", "d1"),
            Some(HubFilter::CloudToDevice)
        );
        assert_eq!(
            classify_filter("devices/d2/messages/devicebound/#", "d1"),
            None
        );
        assert_eq!(classify_filter("devices/d1/modules/m/inputs/#", "d1"), None);
    }

    #[test]
    fn c2d_topic_bytes() {
        let props = std::collections::BTreeMap::from([("k-1".to_string(), "a b".to_string())]);
        let view = fleethub_services::hub::c2d::C2dView {
            device_id: "d1",
            message_id: "m-1",
            correlation_id: None,
            content_type: Some("application/json"),
            content_encoding: None,
            expiry_utc: "2024-01-01T00:00:00Z",
            ack: Some("full"),
            properties: &props,
        };
        assert_eq!(
            c2d_topic(&view),
            "devices/d1/messages/devicebound/%24.mid=m%2D1&%24.to=%2Fdevices%2Fd1%2Fmessages%2FdeviceBound\
             &%24.ct=application%2Fjson&%24.exp=2024%2D01%2D01T00%3A00%3A00Z&iothub-ack=full&k%2D1=a%20b"
        );
    }
}
