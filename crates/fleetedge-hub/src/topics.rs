//! Module-facing MQTT topics: which of the hub topics (`fleethub_iot_protocol::hub`,
//! `docs/protocol-notes.md`, "Hub MQTT topics") a module may publish and subscribe to, and
//! how its messages become [`EdgeMessage`]s and back. Pure functions, no I/O.

use std::collections::BTreeMap;

use fleethub_iot_protocol::hub::{self, IotHubRequest, Subscription};
use fleethub_iot_protocol::property_bag;

use crate::message::EdgeMessage;

pub use fleethub_iot_protocol::TopicError;
pub use fleethub_iot_protocol::hub::{
    desired_patch_topic, method_request_topic, twin_response_topic,
};

/// What a module publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModulePublish<'a> {
    /// `devices/{d}/modules/{m}/messages/events/{bag}` (bag possibly empty).
    Telemetry { bag: &'a str },
    /// `$iothub/twin/GET/?$rid={rid}`
    TwinGet { rid: String },
    /// `$iothub/twin/PATCH/properties/reported/?$rid={rid}`
    TwinPatchReported { rid: String },
    /// `$iothub/methods/res/{status}/?$rid={rid}`
    MethodResponse { status: u16, rid: String },
}

/// What a module subscribes to (the subscriptions the edge hub serves).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleSubscription {
    /// `devices/{d}/modules/{m}/inputs/#` (Python, Node) or `devices/{d}/modules/{m}/#` (C).
    Inputs,
    /// `$iothub/twin/res/#`
    TwinResponses,
    /// `$iothub/twin/PATCH/properties/desired/#`
    DesiredPatches,
    /// `$iothub/methods/POST/#`
    Methods,
}

/// Classifies a PUBLISH of module `{device}/{module}`; other identities' topics are refused.
pub fn parse_module_publish<'a>(
    topic: &'a str,
    device: &str,
    module: &str,
) -> Result<ModulePublish<'a>, TopicError> {
    if topic.starts_with("$iothub/") {
        return Ok(match hub::parse_iothub_request(topic)? {
            IotHubRequest::TwinGet { rid } => ModulePublish::TwinGet { rid },
            IotHubRequest::TwinPatchReported { rid } => ModulePublish::TwinPatchReported { rid },
            IotHubRequest::MethodResponse { status, rid } => {
                ModulePublish::MethodResponse { status, rid }
            }
        });
    }
    let t = hub::parse_telemetry_topic(topic)?;
    if t.device_id != device || t.module_id != Some(module) {
        return Err(TopicError(format!(
            "module '{device}/{module}' may not publish to '{topic}' (only to {}...)",
            hub::telemetry_prefix(device, Some(module))
        )));
    }
    Ok(ModulePublish::Telemetry { bag: t.bag })
}

/// Classifies a SUBSCRIBE filter of module `{device}/{module}`; `None` for filters it may not use.
pub fn classify_filter(filter: &str, device: &str, module: &str) -> Option<ModuleSubscription> {
    match hub::classify_filter(filter, device, Some(module))? {
        Subscription::ModuleInputs => Some(ModuleSubscription::Inputs),
        Subscription::TwinResponses => Some(ModuleSubscription::TwinResponses),
        Subscription::DesiredPatches => Some(ModuleSubscription::DesiredPatches),
        Subscription::Methods => Some(ModuleSubscription::Methods),
        Subscription::CloudToDevice => None,
    }
}

/// Builds the message a module published on its telemetry topic: `$.x` (also sent as
/// `%24.x`) are system properties, the rest application properties; a property that does not
/// decode is skipped; a retained PUBLISH gets `mqtt-retain=true` as the hub does.
pub fn message_from_publish(
    device: &str,
    module: &str,
    bag: &str,
    body: Vec<u8>,
    retain: bool,
) -> EdgeMessage {
    let mut system = BTreeMap::new();
    let mut properties = BTreeMap::new();
    for property in property_bag::iter(bag) {
        let (k, v) = match property {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(device, module, "{e}; property skipped");
                continue;
            }
        };
        let v = v.unwrap_or_default();
        match k.strip_prefix("$.") {
            // Connection ids are set by the edge hub, never taken from the module.
            Some("cdid" | "cmid") => {}
            Some(sys) => {
                system.insert(sys.to_string(), v);
            }
            None => {
                properties.insert(k, v);
            }
        }
    }
    if retain {
        properties.insert("mqtt-retain".into(), "true".into());
    }
    EdgeMessage {
        source_device: device.to_string(),
        source_module: module.to_string(),
        system,
        properties,
        body,
    }
}

/// Input delivery topic `devices/{d}/modules/{m}/inputs/{input}/{bag}`: the source's system
/// properties (`%24.x`), `$.cdid`/`$.cmid` (the sending connection) and its application
/// properties.
pub fn input_topic(device: &str, module: &str, input: &str, msg: &EdgeMessage) -> String {
    let system: Vec<(String, &str)> = msg
        .system
        .iter()
        .map(|(k, v)| (format!("$.{k}"), v.as_str()))
        .chain([
            ("$.cdid".to_string(), msg.source_device.as_str()),
            ("$.cmid".to_string(), msg.source_module.as_str()),
        ])
        .collect();
    let bag = property_bag::encode(
        system
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .chain(msg.properties.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
    );
    hub::module_input_topic(device, module, input, &bag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn telemetry_topics_and_ownership() {
        assert_eq!(
            parse_module_publish("devices/d/modules/A/messages/events/", "d", "A"),
            Ok(ModulePublish::Telemetry { bag: "" })
        );
        assert_eq!(
            parse_module_publish("devices/d/modules/A/messages/events", "d", "A"),
            Ok(ModulePublish::Telemetry { bag: "" })
        );
        assert_eq!(
            parse_module_publish(
                "devices/d/modules/A/messages/events/%24.on=o1&k=v",
                "d",
                "A"
            ),
            Ok(ModulePublish::Telemetry {
                bag: "%24.on=o1&k=v"
            })
        );
        let err =
            parse_module_publish("devices/d/modules/B/messages/events/", "d", "A").unwrap_err();
        assert!(err.0.contains("may not publish"), "{err}");
        assert!(parse_module_publish("devices/d/messages/events/", "d", "A").is_err());
        assert!(parse_module_publish("other/topic", "d", "A").is_err());
    }

    #[test]
    fn twin_and_method_topics() {
        assert_eq!(
            parse_module_publish("$iothub/twin/GET/?$rid=7", "d", "A"),
            Ok(ModulePublish::TwinGet { rid: "7".into() })
        );
        assert_eq!(
            parse_module_publish("$iothub/twin/PATCH/properties/reported/?$rid=ab", "d", "A"),
            Ok(ModulePublish::TwinPatchReported { rid: "ab".into() })
        );
        assert_eq!(
            parse_module_publish("$iothub/methods/res/200/?$rid=5", "d", "A"),
            Ok(ModulePublish::MethodResponse {
                status: 200,
                rid: "5".into()
            })
        );
        assert!(parse_module_publish("$iothub/twin/GET/", "d", "A").is_err());
        assert!(parse_module_publish("$iothub/methods/res/xx/?$rid=1", "d", "A").is_err());
        assert_eq!(
            twin_response_topic(204, "3", Some(9)),
            "$iothub/twin/res/204/?$rid=3&$version=9"
        );
        assert_eq!(
            desired_patch_topic(Some(4)),
            "$iothub/twin/PATCH/properties/desired/?$version=4"
        );
        assert_eq!(
            method_request_topic("do it", "1"),
            "$iothub/methods/POST/do%20it/?$rid=1"
        );
    }

    #[test]
    fn subscriptions() {
        use ModuleSubscription::*;
        assert_eq!(
            classify_filter("devices/d/modules/A/inputs/#", "d", "A"),
            Some(Inputs)
        );
        assert_eq!(
            classify_filter("devices/d/modules/A/#", "d", "A"),
            Some(Inputs)
        );
        assert_eq!(classify_filter("devices/d/modules/B/#", "d", "A"), None);
        assert_eq!(
            classify_filter("$iothub/twin/res/#", "d", "A"),
            Some(TwinResponses)
        );
        assert_eq!(
            classify_filter("$iothub/twin/PATCH/properties/desired/#", "d", "A"),
            Some(DesiredPatches)
        );
        assert_eq!(
            classify_filter("$iothub/methods/POST/#", "d", "A"),
            Some(Methods)
        );
        assert_eq!(classify_filter("#", "d", "A"), None);
    }

    #[test]
    fn property_bags_both_spellings() {
        let m = message_from_publish(
            "d",
            "A",
            "%24.on=output1&%24.mid=m%201&$.ct=application%2Fjson&%24.cmid=forged&temp%20Alert=tr%2Fue",
            b"x".to_vec(),
            true,
        );
        assert_eq!(m.output_name(), Some("output1"));
        assert_eq!(m.system["mid"], "m 1");
        assert_eq!(m.system["ct"], "application/json");
        assert!(!m.system.contains_key("cmid"));
        assert_eq!(m.properties["temp Alert"], "tr/ue");
        assert_eq!(m.properties["mqtt-retain"], "true");
        assert_eq!(m.source_module, "A");

        let t = input_topic("d", "B", "input1", &m);
        assert!(t.starts_with("devices/d/modules/B/inputs/input1/"), "{t}");
        let bag = t.rsplit('/').next().unwrap();
        let parsed = property_bag::parse(bag).unwrap();
        let get = |k: &str| {
            parsed
                .iter()
                .find(|(n, _)| n == k)
                .and_then(|(_, v)| v.clone())
        };
        assert_eq!(get("$.cdid").as_deref(), Some("d"));
        assert_eq!(get("$.cmid").as_deref(), Some("A"));
        assert_eq!(get("$.mid").as_deref(), Some("m 1"));
        assert_eq!(get("temp Alert").as_deref(), Some("tr/ue"));
        // Python splits input topics on '/': the bag must not contain one.
        assert_eq!(t.split('/').count(), 7);
    }
}
