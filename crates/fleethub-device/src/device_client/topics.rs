//! Hub MQTT wire names (docs/protocol-notes.md, "Hub MQTT user names and client ids"): CONNECT client ID / user name / SAS resource,
//! topics, and property-bag encoding and parsing. Pure functions, no I/O.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// api-version announced in the CONNECT user name (what the Node SDK and the docs use).
pub const API_VERSION: &str = "2021-04-12";
/// Twin responses (`$iothub/twin/res/{status}/?$rid=..`).
pub const TWIN_RESPONSE_FILTER: &str = "$iothub/twin/res/#";
/// Desired-property updates.
pub const DESIRED_FILTER: &str = "$iothub/twin/PATCH/properties/desired/#";
/// Direct-method requests.
pub const METHODS_FILTER: &str = "$iothub/methods/POST/#";
/// Largest telemetry message the hub accepts (body + topic), as the SDKs check it.
pub const MAX_MESSAGE_SIZE: usize = 256 * 1024;

const TWIN_RESPONSE_PREFIX: &str = "$iothub/twin/res/";
const DESIRED_PREFIX: &str = "$iothub/twin/PATCH/properties/desired/";
const METHOD_PREFIX: &str = "$iothub/methods/POST/";

/// Everything but RFC 3986 unreserved characters is escaped (Python's `quote(s, safe="")`):
/// `$.ct` becomes `%24.ct`, `application/json` becomes `application%2Fjson`.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes a property name or value.
pub fn encode_component(s: &str) -> String {
    utf8_percent_encode(s, COMPONENT).to_string()
}

fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// MQTT client ID: `{deviceId}` or `{deviceId}/{moduleId}`.
pub fn client_id(device_id: &str, module_id: Option<&str>) -> String {
    match module_id {
        Some(m) => format!("{device_id}/{m}"),
        None => device_id.to_string(),
    }
}

/// CONNECT user name:
/// `{host}/{deviceId}[/{moduleId}]/?api-version=2021-04-12&DeviceClientType=fleethub-device%2F{ver}`.
pub fn username(host: &str, device_id: &str, module_id: Option<&str>) -> String {
    format!(
        "{host}/{}/?api-version={API_VERSION}&DeviceClientType={}",
        client_id(device_id, module_id),
        encode_component(crate::USER_AGENT)
    )
}

/// SAS `sr` (before encoding): `{host}/devices/{deviceId}[/modules/{moduleId}]`.
pub fn sas_resource(host: &str, device_id: &str, module_id: Option<&str>) -> String {
    match module_id {
        Some(m) => format!("{host}/devices/{device_id}/modules/{m}"),
        None => format!("{host}/devices/{device_id}"),
    }
}

/// `devices/{d}/messages/events/` or `devices/{d}/modules/{m}/messages/events/`
/// (the property bag follows directly).
pub fn telemetry_prefix(device_id: &str, module_id: Option<&str>) -> String {
    match module_id {
        Some(m) => format!("devices/{device_id}/modules/{m}/messages/events/"),
        None => format!("devices/{device_id}/messages/events/"),
    }
}

/// `devices/{d}/messages/devicebound/#`.
pub fn c2d_filter(device_id: &str) -> String {
    format!("devices/{device_id}/messages/devicebound/#")
}

/// `$iothub/twin/GET/?$rid={rid}`.
pub fn twin_get_topic(rid: &str) -> String {
    format!("$iothub/twin/GET/?$rid={rid}")
}

/// `$iothub/twin/PATCH/properties/reported/?$rid={rid}`.
pub fn twin_patch_reported_topic(rid: &str) -> String {
    format!("$iothub/twin/PATCH/properties/reported/?$rid={rid}")
}

/// `$iothub/methods/res/{status}/?$rid={rid}` (the rid echoed exactly as received).
pub fn method_response_topic(status: u16, rid: &str) -> String {
    format!("$iothub/methods/res/{status}/?$rid={rid}")
}

/// Encodes a property bag: every name and value percent-encoded, `k=v` joined by `&`.
/// System properties are given with their `$.x` names (encoded as `%24.x`).
pub fn encode_property_bag<'a>(props: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::new();
    for (k, v) in props {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(&encode_component(k));
        out.push('=');
        out.push_str(&encode_component(v));
    }
    out
}

/// Splits a property bag into decoded `(name, value)` pairs in order. A bare `key` (a null
/// value on the wire) has the value `None`; `key=` has `Some("")`.
pub fn parse_property_bag(bag: &str) -> Vec<(String, Option<String>)> {
    bag.split('&')
        .filter(|p| !p.is_empty())
        .map(|part| match part.split_once('=') {
            Some((k, v)) => (decode(k), Some(decode(v))),
            None => (decode(part), None),
        })
        .collect()
}

/// `k=v&...` query pairs with raw (undecoded) values.
fn query_pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

fn query_value<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query_pairs(query)
        .find(|(k, _)| *k == name || decode(k) == name)
        .map(|(_, v)| v)
}

/// What a PUBLISH from the hub is, by its topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubTopic {
    /// `$iothub/twin/res/{status}/?$rid={rid}[&$version={v}]`
    TwinResponse {
        status: u16,
        rid: String,
        version: Option<u64>,
    },
    /// `$iothub/twin/PATCH/properties/desired/?$version={v}`
    DesiredPatch { version: Option<u64> },
    /// `$iothub/methods/POST/{name}/?$rid={rid}`; `name` is percent-decoded, `rid` is kept
    /// as sent (it is echoed in the response topic).
    MethodRequest { name: String, rid: String },
    /// `devices/{d}/messages/devicebound/{bag}` (the bag still encoded).
    CloudToDevice { bag: String },
    /// Anything else.
    Other,
}

/// Classifies an incoming topic for the device `device_id`.
pub fn classify(topic: &str, device_id: &str) -> HubTopic {
    if let Some(rest) = topic.strip_prefix(TWIN_RESPONSE_PREFIX) {
        let (status, query) = rest.split_once('/').unwrap_or((rest, ""));
        let query = query.strip_prefix('?').unwrap_or(query);
        let Ok(status) = status.parse::<u16>() else {
            return HubTopic::Other;
        };
        return HubTopic::TwinResponse {
            status,
            rid: query_value(query, "$rid").map(decode).unwrap_or_default(),
            version: query_value(query, "$version").and_then(|v| v.parse().ok()),
        };
    }
    if let Some(rest) = topic.strip_prefix(DESIRED_PREFIX) {
        let query = rest.strip_prefix('?').unwrap_or(rest);
        return HubTopic::DesiredPatch {
            version: query_value(query, "$version").and_then(|v| v.parse().ok()),
        };
    }
    if let Some(rest) = topic.strip_prefix(METHOD_PREFIX) {
        let (name, query) = rest.split_once('/').unwrap_or((rest, ""));
        let query = query.strip_prefix('?').unwrap_or(query);
        if name.is_empty() {
            return HubTopic::Other;
        }
        return HubTopic::MethodRequest {
            name: decode(name),
            rid: query_value(query, "$rid").unwrap_or_default().to_string(),
        };
    }
    if let Some(bag) = topic
        .strip_prefix("devices/")
        .and_then(|r| r.strip_prefix(device_id))
        .and_then(|r| r.strip_prefix("/messages/devicebound"))
    {
        // `devicebound/{bag}`; tolerate a missing trailing slash.
        let bag = bag.strip_prefix('/').unwrap_or(bag);
        return HubTopic::CloudToDevice {
            bag: bag.to_string(),
        };
    }
    HubTopic::Other
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_names() {
        let ver = env!("CARGO_PKG_VERSION");
        assert_eq!(
            username("hub.fleethub.local", "dev-01", None),
            format!(
                "hub.fleethub.local/dev-01/?api-version=2021-04-12&DeviceClientType=fleethub-device%2F{ver}"
            )
        );
        assert_eq!(
            username("h", "d", Some("m")),
            format!("h/d/m/?api-version=2021-04-12&DeviceClientType=fleethub-device%2F{ver}")
        );
        assert_eq!(client_id("d", None), "d");
        assert_eq!(client_id("d", Some("m")), "d/m");
        assert_eq!(sas_resource("h", "d", None), "h/devices/d");
        assert_eq!(sas_resource("h", "d", Some("m")), "h/devices/d/modules/m");
    }

    #[test]
    fn topics() {
        assert_eq!(telemetry_prefix("d", None), "devices/d/messages/events/");
        assert_eq!(
            telemetry_prefix("d", Some("m")),
            "devices/d/modules/m/messages/events/"
        );
        assert_eq!(c2d_filter("d1"), "devices/d1/messages/devicebound/#");
        assert_eq!(twin_get_topic("7"), "$iothub/twin/GET/?$rid=7");
        assert_eq!(
            twin_patch_reported_topic("8"),
            "$iothub/twin/PATCH/properties/reported/?$rid=8"
        );
        assert_eq!(
            method_response_topic(200, "ab-1"),
            "$iothub/methods/res/200/?$rid=ab-1"
        );
    }

    #[test]
    fn property_bag_encoding_matches_python() {
        // Python: urlencode(quote_via=quote) ->
        // %24.mid=m%201&%24.ct=application%2Fjson&temp%20Alert=tr%2Fue
        assert_eq!(
            encode_property_bag([
                ("$.mid", "m 1"),
                ("$.ct", "application/json"),
                ("temp Alert", "tr/ue"),
            ]),
            "%24.mid=m%201&%24.ct=application%2Fjson&temp%20Alert=tr%2Fue"
        );
        assert_eq!(
            encode_property_bag([("a&b", "c=d"), ("é", "~-._")]),
            "a%26b=c%3Dd&%C3%A9=~-._"
        );
        assert_eq!(encode_property_bag(std::iter::empty()), "");
    }

    #[test]
    fn property_bag_parsing() {
        assert_eq!(
            parse_property_bag("%24.mid=m%201&%24.ct=application%2Fjson&flag&empty=&$.cid=c"),
            vec![
                ("$.mid".to_string(), Some("m 1".to_string())),
                ("$.ct".to_string(), Some("application/json".to_string())),
                ("flag".to_string(), None),
                ("empty".to_string(), Some(String::new())),
                ("$.cid".to_string(), Some("c".to_string())),
            ]
        );
        assert!(parse_property_bag("").is_empty());
        // Round trip.
        let bag = encode_property_bag([("k/1", "v&2"), ("$.exp", "2024-01-01T00:00:00Z")]);
        assert_eq!(
            parse_property_bag(&bag),
            vec![
                ("k/1".to_string(), Some("v&2".to_string())),
                (
                    "$.exp".to_string(),
                    Some("2024-01-01T00:00:00Z".to_string())
                ),
            ]
        );
    }

    #[test]
    fn classify_hub_topics() {
        assert_eq!(
            classify("$iothub/twin/res/204/?$rid=12&$version=3", "d"),
            HubTopic::TwinResponse {
                status: 204,
                rid: "12".into(),
                version: Some(3)
            }
        );
        assert_eq!(
            classify("$iothub/twin/res/200/?$rid=1", "d"),
            HubTopic::TwinResponse {
                status: 200,
                rid: "1".into(),
                version: None
            }
        );
        assert_eq!(
            classify("$iothub/twin/res/abc/?$rid=1", "d"),
            HubTopic::Other
        );
        assert_eq!(
            classify("$iothub/twin/PATCH/properties/desired/?$version=8", "d"),
            HubTopic::DesiredPatch { version: Some(8) }
        );
        assert_eq!(
            classify("$iothub/methods/POST/re%20boot/?$rid=a1", "d"),
            HubTopic::MethodRequest {
                name: "re boot".into(),
                rid: "a1".into()
            }
        );
        assert_eq!(
            classify(
                "devices/d1/messages/devicebound/%24.mid=1&%24.to=%2Fdevices%2Fd1%2Fmessages%2FdeviceBound",
                "d1"
            ),
            HubTopic::CloudToDevice {
                bag: "%24.mid=1&%24.to=%2Fdevices%2Fd1%2Fmessages%2FdeviceBound".into()
            }
        );
        assert_eq!(
            classify("devices/d1/messages/devicebound/", "d1"),
            HubTopic::CloudToDevice { bag: String::new() }
        );
        // Another device's C2D, other topics.
        assert_eq!(
            classify("devices/d2/messages/devicebound/", "d1"),
            HubTopic::Other
        );
        assert_eq!(
            classify("devices/d10/messages/devicebound/", "d1"),
            HubTopic::Other
        );
        assert_eq!(
            classify("$dps/registrations/res/200/?$rid=1", "d1"),
            HubTopic::Other
        );
    }
}
