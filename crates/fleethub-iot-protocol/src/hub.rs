//! IoT hub MQTT topics (`docs/protocol-notes.md`, "Hub MQTT topics"): one builder and one
//! parser per topic, for both sides (the hub and edge hub serve them, the device SDK uses
//! them).

use crate::TopicError;
use crate::encoding::{TOPIC_LEVEL, decode_lossy, escape, query_value};

/// api-version the device SDK announces in its CONNECT user name (Node SDK and the docs).
pub const DEVICE_API_VERSION: &str = "2021-04-12";
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

// ---- device -> hub

/// `devices/{d}/messages/events/` or `devices/{d}/modules/{m}/messages/events/` (the
/// property bag follows directly).
pub fn telemetry_prefix(device_id: &str, module_id: Option<&str>) -> String {
    match module_id {
        Some(m) => format!("devices/{device_id}/modules/{m}/messages/events/"),
        None => format!("devices/{device_id}/messages/events/"),
    }
}

/// A telemetry topic: `devices/{d}[/modules/{m}]/messages/events/{bag}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelemetryTopic<'a> {
    pub device_id: &'a str,
    pub module_id: Option<&'a str>,
    /// The property bag, still encoded (possibly empty).
    pub bag: &'a str,
}

/// Reads a telemetry topic. The Node SDK ends a module output's topic with a '/' after the
/// bag (`$.on=out/`); a '/' inside a value is always percent-encoded, so a trailing one is
/// never data. `.../messages/events` without the '/' has an empty bag.
pub fn parse_telemetry_topic(topic: &str) -> Result<TelemetryTopic<'_>, TopicError> {
    let rest = topic.strip_prefix("devices/").ok_or_else(|| {
        TopicError::new(format!(
            "topic '{topic}' is not a device topic (devices/{{id}}/messages/events/)"
        ))
    })?;
    let incomplete = || TopicError::new(format!("topic '{topic}' is incomplete"));
    let (device_id, rest) = rest.split_once('/').ok_or_else(incomplete)?;
    let (module_id, rest) = match rest.strip_prefix("modules/") {
        Some(r) => {
            let (m, r) = r.split_once('/').ok_or_else(incomplete)?;
            (Some(m), r)
        }
        None => (None, rest),
    };
    let bag = match rest.strip_prefix("messages/events/") {
        Some(bag) => bag.strip_suffix('/').unwrap_or(bag),
        None if rest == "messages/events" => "",
        None => {
            return Err(TopicError::new(format!(
                "topic '{topic}' is not supported: devices publish telemetry to devices/{{id}}/messages/events/"
            )));
        }
    };
    Ok(TelemetryTopic {
        device_id,
        module_id,
        bag,
    })
}

/// A twin or method request a device publishes on `$iothub/...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IotHubRequest {
    /// `$iothub/twin/GET/?$rid={rid}`
    TwinGet { rid: String },
    /// `$iothub/twin/PATCH/properties/reported/?$rid={rid}`
    TwinPatchReported { rid: String },
    /// `$iothub/methods/res/{status}/?$rid={rid}`
    MethodResponse { status: u16, rid: String },
}

/// Reads an `$iothub/...` request; the `$rid` stays as sent (it is echoed in the response).
pub fn parse_iothub_request(topic: &str) -> Result<IotHubRequest, TopicError> {
    let rest = topic
        .strip_prefix("$iothub/")
        .ok_or_else(|| TopicError::new(format!("topic '{topic}' is not an $iothub topic")))?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let rid = || {
        query_value(query, "$rid")
            .filter(|r| !r.is_empty())
            .map(str::to_string)
            .ok_or_else(|| TopicError::new(format!("topic '{topic}' has no $rid")))
    };
    match path.trim_end_matches('/') {
        "twin/GET" => Ok(IotHubRequest::TwinGet { rid: rid()? }),
        "twin/PATCH/properties/reported" => Ok(IotHubRequest::TwinPatchReported { rid: rid()? }),
        p => match p.strip_prefix("methods/res/") {
            Some(status) => Ok(IotHubRequest::MethodResponse {
                status: status.parse().map_err(|_| {
                    TopicError::new(format!("method response status '{status}' is not a number"))
                })?,
                rid: rid()?,
            }),
            None => Err(TopicError::new(format!(
                "topic '{topic}' is not a known $iothub operation"
            ))),
        },
    }
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

// ---- hub -> device

/// `$iothub/twin/res/{status}/?$rid={rid}[&$version={v}]`
pub fn twin_response_topic(status: u16, rid: &str, version: Option<u64>) -> String {
    match version {
        Some(v) => format!("$iothub/twin/res/{status}/?$rid={rid}&$version={v}"),
        None => format!("$iothub/twin/res/{status}/?$rid={rid}"),
    }
}

/// `$iothub/twin/PATCH/properties/desired/?$version={v}` (without a version, nothing after
/// the '/').
pub fn desired_patch_topic(version: Option<u64>) -> String {
    match version {
        Some(v) => format!("$iothub/twin/PATCH/properties/desired/?$version={v}"),
        None => "$iothub/twin/PATCH/properties/desired/".to_string(),
    }
}

/// `$iothub/methods/POST/{name}/?$rid={rid}`. The name is written as it is, except what
/// cannot stand in one topic level (`/`, `#`, `+`, space, controls, non-ASCII), which is
/// percent-encoded.
pub fn method_request_topic(name: &str, rid: &str) -> String {
    format!(
        "$iothub/methods/POST/{}/?$rid={rid}",
        escape(name, TOPIC_LEVEL)
    )
}

/// `devices/{d}/messages/devicebound/#`.
pub fn c2d_filter(device_id: &str) -> String {
    format!("devices/{device_id}/messages/devicebound/#")
}

/// `devices/{d}/messages/devicebound/{bag}` (the bag already encoded).
pub fn c2d_topic(device_id: &str, bag: &str) -> String {
    format!("devices/{device_id}/messages/devicebound/{bag}")
}

/// `devices/{d}/modules/{m}/inputs/{input}/{bag}` (the bag already encoded).
pub fn module_input_topic(device_id: &str, module_id: &str, input: &str, bag: &str) -> String {
    format!("devices/{device_id}/modules/{module_id}/inputs/{input}/{bag}")
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

/// Classifies a topic the hub publishes to the device `device_id`.
pub fn classify(topic: &str, device_id: &str) -> HubTopic {
    if let Some(rest) = topic.strip_prefix(TWIN_RESPONSE_PREFIX) {
        let (status, query) = rest.split_once('/').unwrap_or((rest, ""));
        let Ok(status) = status.parse::<u16>() else {
            return HubTopic::Other;
        };
        return HubTopic::TwinResponse {
            status,
            rid: query_value(query, "$rid")
                .map(decode_lossy)
                .unwrap_or_default(),
            version: query_value(query, "$version").and_then(|v| v.parse().ok()),
        };
    }
    if let Some(query) = topic.strip_prefix(DESIRED_PREFIX) {
        return HubTopic::DesiredPatch {
            version: query_value(query, "$version").and_then(|v| v.parse().ok()),
        };
    }
    if let Some(rest) = topic.strip_prefix(METHOD_PREFIX) {
        let (name, query) = rest.split_once('/').unwrap_or((rest, ""));
        if name.is_empty() {
            return HubTopic::Other;
        }
        return HubTopic::MethodRequest {
            name: decode_lossy(name),
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

// ---- subscriptions

/// What a SUBSCRIBE filter asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscription {
    /// `$iothub/twin/res/#`
    TwinResponses,
    /// `$iothub/twin/PATCH/properties/desired/#`
    DesiredPatches,
    /// `$iothub/methods/POST/#`
    Methods,
    /// `devices/{d}/messages/devicebound/#` of a device identity, for its own ID.
    CloudToDevice,
    /// `devices/{d}/modules/{m}/inputs/#` (Python, Node) or `devices/{d}/modules/{m}/#` (C)
    /// of a module identity, for its own IDs.
    ModuleInputs,
}

/// Classifies a filter of the identity `device_id` / `module_id`; `None` for filters it may
/// not use (another identity's topics, wildcards, unknown topics).
pub fn classify_filter(
    filter: &str,
    device_id: &str,
    module_id: Option<&str>,
) -> Option<Subscription> {
    match filter {
        TWIN_RESPONSE_FILTER => return Some(Subscription::TwinResponses),
        DESIRED_FILTER => return Some(Subscription::DesiredPatches),
        METHODS_FILTER => return Some(Subscription::Methods),
        _ => {}
    }
    let own = filter
        .strip_prefix("devices/")?
        .strip_prefix(device_id)?
        .strip_prefix('/')?;
    match module_id {
        None => (own == "messages/devicebound/#").then_some(Subscription::CloudToDevice),
        Some(m) => matches!(
            own.strip_prefix("modules/")?.strip_prefix(m)?,
            "/#" | "/inputs/#"
        )
        .then_some(Subscription::ModuleInputs),
    }
}

#[cfg(test)]
mod tests;
