//! Pure parsers for the MQTT usernames and topics the SDKs use (docs/protocol-notes.md, "DPS MQTT topics" and "Hub MQTT topics").

use percent_encoding::percent_decode_str;

/// What a CONNECT username asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectTarget {
    /// `{idScope}/registrations/{registrationId}/api-version=...`
    Dps {
        id_scope: String,
        registration_id: String,
    },
    /// `{hubHost}/{deviceId}[/{moduleId}]/?api-version=...`
    Hub {
        host: String,
        device_id: String,
        module_id: Option<String>,
    },
}

pub fn parse_username(username: &str) -> Option<ConnectTarget> {
    let parts: Vec<&str> = username.split('/').collect();
    if parts.len() >= 3
        && parts[1] == "registrations"
        && !parts[0].is_empty()
        && !parts[2].is_empty()
    {
        return Some(ConnectTarget::Dps {
            id_scope: parts[0].to_string(),
            registration_id: parts[2].to_string(),
        });
    }
    // hub: cut the query part ("?api-version=..." after the last '/').
    let path = match username.find("/?") {
        Some(i) => &username[..i],
        None => username.trim_end_matches('/'),
    };
    let p: Vec<&str> = path.split('/').collect();
    match p.as_slice() {
        [host, dev] if !host.is_empty() && !dev.is_empty() => Some(ConnectTarget::Hub {
            host: host.to_string(),
            device_id: dev.to_string(),
            module_id: None,
        }),
        [host, dev, module] if !host.is_empty() && !dev.is_empty() && !module.is_empty() => {
            Some(ConnectTarget::Hub {
                host: host.to_string(),
                device_id: dev.to_string(),
                module_id: Some(module.to_string()),
            })
        }
        _ => None,
    }
}

/// A request a device publishes to DPS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DpsRequest {
    /// `$dps/registrations/PUT/iotdps-register/?$rid={rid}`
    Register { rid: String },
    /// `$dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={op}`
    OperationStatus { rid: String, operation_id: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicError(pub String);

impl std::fmt::Display for TopicError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `k=v&k2=v2` -> pairs; the raw (still encoded) value is kept for echoing.
fn query_pairs(q: &str) -> Vec<(String, &str)> {
    q.split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode_str(k).decode_utf8_lossy().into_owned(), v)
        })
        .collect()
}

pub fn parse_dps_topic(topic: &str) -> Result<DpsRequest, TopicError> {
    let rest = topic.strip_prefix("$dps/registrations/").ok_or_else(|| {
        TopicError(format!(
            "topic '{topic}' is not a DPS topic ($dps/registrations/...)"
        ))
    })?;
    let (path, query) = rest
        .split_once("/?")
        .ok_or_else(|| TopicError(format!("topic '{topic}' has no '/?$rid=' part")))?;
    let pairs = query_pairs(query);
    let get = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| *v);
    let rid = get("$rid")
        .filter(|r| !r.is_empty())
        .ok_or_else(|| TopicError(format!("topic '{topic}' has no $rid")))?
        .to_string();
    match path {
        "PUT/iotdps-register" => Ok(DpsRequest::Register { rid }),
        "GET/iotdps-get-operationstatus" => {
            let op = get("operationId")
                .filter(|o| !o.is_empty())
                .ok_or_else(|| TopicError(format!("topic '{topic}' has no operationId")))?;
            Ok(DpsRequest::OperationStatus {
                rid,
                operation_id: percent_decode_str(op).decode_utf8_lossy().into_owned(),
            })
        }
        _ => Err(TopicError(format!(
            "unknown DPS operation '{path}': use PUT/iotdps-register or GET/iotdps-get-operationstatus"
        ))),
    }
}

/// `$dps/registrations/res/{status}/?$rid={rid}[&retry-after={s}]`
pub fn dps_response_topic(status: u16, rid: &str, retry_after: Option<u32>) -> String {
    match retry_after {
        Some(s) => format!("$dps/registrations/res/{status}/?$rid={rid}&retry-after={s}"),
        None => format!("$dps/registrations/res/{status}/?$rid={rid}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_of_every_sdk() {
        let py = "0ne00000A0A/registrations/dev-01/api-version=2019-03-31&ClientVersion=azure-iot-device-provisioning-py%2F2.14.0%28x%29";
        assert_eq!(
            parse_username(py),
            Some(ConnectTarget::Dps {
                id_scope: "0ne00000A0A".into(),
                registration_id: "dev-01".into()
            })
        );
        let c = "0ne00000A0A/registrations/dev-01/api-version=2021-06-01&ClientVersion=1.15.0";
        assert!(matches!(parse_username(c), Some(ConnectTarget::Dps { .. })));
        let hub = "hub.fleethub.local/dev-01/?api-version=2019-10-01&DeviceClientType=azure-iot-device-iothub-py%2F2.14.0";
        assert_eq!(
            parse_username(hub),
            Some(ConnectTarget::Hub {
                host: "hub.fleethub.local".into(),
                device_id: "dev-01".into(),
                module_id: None
            })
        );
        let module = "hub.fleethub.local/dev-01/$edgeAgent/?api-version=2021-04-12";
        assert_eq!(
            parse_username(module),
            Some(ConnectTarget::Hub {
                host: "hub.fleethub.local".into(),
                device_id: "dev-01".into(),
                module_id: Some("$edgeAgent".into())
            })
        );
        assert_eq!(parse_username("garbage"), None);
        assert_eq!(parse_username(""), None);
    }

    #[test]
    fn dps_topics() {
        assert_eq!(
            parse_dps_topic("$dps/registrations/PUT/iotdps-register/?$rid=6f1c-uuid"),
            Ok(DpsRequest::Register {
                rid: "6f1c-uuid".into()
            })
        );
        assert_eq!(
            parse_dps_topic(
                "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=7&operationId=5.abc.def"
            ),
            Ok(DpsRequest::OperationStatus {
                rid: "7".into(),
                operation_id: "5.abc.def".into()
            })
        );
        // Python percent-quotes the query values; C uses a decimal rid
        assert_eq!(
            parse_dps_topic(
                "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=1&operationId=5.a%2Eb"
            ),
            Ok(DpsRequest::OperationStatus {
                rid: "1".into(),
                operation_id: "5.a.b".into()
            })
        );
        assert!(parse_dps_topic("$dps/registrations/PUT/iotdps-register/").is_err());
        assert!(parse_dps_topic("$dps/registrations/PUT/other/?$rid=1").is_err());
        assert!(
            parse_dps_topic("$dps/registrations/GET/iotdps-get-operationstatus/?$rid=1").is_err()
        );
        assert!(parse_dps_topic("devices/x/messages/events/").is_err());
    }

    #[test]
    fn response_topic_has_exactly_two_dollars() {
        let t = dps_response_topic(202, "abc", Some(1));
        assert_eq!(t, "$dps/registrations/res/202/?$rid=abc&retry-after=1");
        assert_eq!(t.matches('$').count(), 2);
        assert_eq!(
            dps_response_topic(200, "abc", None),
            "$dps/registrations/res/200/?$rid=abc"
        );
    }
}

/// Message properties by name.
pub type Properties = std::collections::BTreeMap<String, String>;

/// A property bag (`k=v&k2=v2`, both percent-encoded) split into system properties (keys
/// `$.x`, sent as `%24.x` by the SDKs) mapped to their AMQP-style names, and application
/// properties.
pub fn parse_property_bag(bag: &str) -> Result<(Properties, Properties), TopicError> {
    let mut system = std::collections::BTreeMap::new();
    let mut app = std::collections::BTreeMap::new();
    for part in bag.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        let key = percent_decode_str(k)
            .decode_utf8()
            .map_err(|_| {
                TopicError(format!(
                    "property name '{k}' is not valid UTF-8 after percent-decoding"
                ))
            })?
            .into_owned();
        let value = percent_decode_str(v)
            .decode_utf8()
            .map_err(|_| {
                TopicError(format!(
                    "property '{key}' has a value that is not valid UTF-8"
                ))
            })?
            .into_owned();
        if key.is_empty() {
            return Err(TopicError(format!(
                "property bag '{bag}' has an empty property name"
            )));
        }
        match key.strip_prefix("$.") {
            Some(sys) => {
                let name = match sys {
                    "mid" => "message-id",
                    "cid" => "correlation-id",
                    "uid" => "user-id",
                    "ct" => "content-type",
                    "ce" => "content-encoding",
                    "exp" => "absolute-expiry-time",
                    "to" => "to",
                    "on" => "iothub-outputname",
                    "ifid" => "iothub-interface-id",
                    "sub" => "dt-subject",
                    "ctime" => "iothub-creation-time-utc",
                    other => other,
                };
                system.insert(name.to_string(), value);
            }
            None => {
                app.insert(key, value);
            }
        }
    }
    Ok((system, app))
}

/// What a device publishes to the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubPublish<'a> {
    /// `devices/{d}/messages/events/{bag}` or `devices/{d}/modules/{m}/messages/events/{bag}`
    Telemetry {
        device_id: &'a str,
        module_id: Option<&'a str>,
        bag: &'a str,
    },
}

pub fn parse_hub_publish(topic: &str) -> Result<HubPublish<'_>, TopicError> {
    let rest = topic.strip_prefix("devices/").ok_or_else(|| {
        TopicError(format!(
            "topic '{topic}' is not a device topic (devices/{{id}}/messages/events/)"
        ))
    })?;
    let (device_id, rest) = rest
        .split_once('/')
        .ok_or_else(|| TopicError(format!("topic '{topic}' is incomplete")))?;
    let (module_id, rest) = match rest.strip_prefix("modules/") {
        Some(r) => {
            let (m, r) = r
                .split_once('/')
                .ok_or_else(|| TopicError(format!("topic '{topic}' is incomplete")))?;
            (Some(m), r)
        }
        None => (None, rest),
    };
    if let Some(bag) = rest.strip_prefix("messages/events/") {
        // The Node SDK ends a module output's topic with a '/' after the bag (`$.on=out/`); a
        // '/' inside a value is always percent-encoded, so a trailing one is never data.
        let bag = bag.strip_suffix('/').unwrap_or(bag);
        return Ok(HubPublish::Telemetry {
            device_id,
            module_id,
            bag,
        });
    }
    if rest == "messages/events" {
        return Ok(HubPublish::Telemetry {
            device_id,
            module_id,
            bag: "",
        });
    }
    Err(TopicError(format!(
        "topic '{topic}' is not supported: devices publish telemetry to devices/{{id}}/messages/events/"
    )))
}

#[cfg(test)]
mod hub_tests {
    use super::*;

    #[test]
    fn node_trailing_slash_after_the_bag_is_not_data() {
        let p =
            parse_hub_publish("devices/d1/modules/m1/messages/events/%24.on=out1&k=v/").unwrap();
        assert_eq!(
            p,
            HubPublish::Telemetry {
                device_id: "d1",
                module_id: Some("m1"),
                bag: "%24.on=out1&k=v"
            }
        );
    }

    #[test]
    fn property_bags_of_every_sdk() {
        // Python: %24-encoded system keys, encoded values
        let (sys, app) = parse_property_bag(
            "%24.mid=m%201&%24.ct=application%2Fjson&%24.ce=utf-8&temp%20Alert=tr%2Fue",
        )
        .unwrap();
        assert_eq!(sys["message-id"], "m 1");
        assert_eq!(sys["content-type"], "application/json");
        assert_eq!(sys["content-encoding"], "utf-8");
        assert_eq!(app["temp Alert"], "tr/ue");
        // docs: literal $.ct
        let (sys, _) = parse_property_bag("$.ct=text%2Fplain").unwrap();
        assert_eq!(sys["content-type"], "text/plain");
        // bare key, empty bag
        let (_, app) = parse_property_bag("flag").unwrap();
        assert_eq!(app["flag"], "");
        assert!(parse_property_bag("").unwrap().0.is_empty());
        assert!(parse_property_bag("=x").is_err());
        assert!(parse_property_bag("k=%FF").is_err());
    }

    #[test]
    fn hub_topics() {
        assert_eq!(
            parse_hub_publish("devices/d1/messages/events/%24.ct=a"),
            Ok(HubPublish::Telemetry {
                device_id: "d1",
                module_id: None,
                bag: "%24.ct=a"
            })
        );
        assert_eq!(
            parse_hub_publish("devices/d1/messages/events/"),
            Ok(HubPublish::Telemetry {
                device_id: "d1",
                module_id: None,
                bag: ""
            })
        );
        assert_eq!(
            parse_hub_publish("devices/d1/modules/m1/messages/events/%24.on=out1"),
            Ok(HubPublish::Telemetry {
                device_id: "d1",
                module_id: Some("m1"),
                bag: "%24.on=out1"
            })
        );
        assert!(parse_hub_publish("devices/d1/messages/devicebound/").is_err());
        assert!(parse_hub_publish("$iothub/twin/GET/?$rid=1").is_err());
    }
}

/// A twin/method request a device publishes on `$iothub/...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IotHubRequest {
    TwinGet { rid: String },
    TwinPatchReported { rid: String },
    MethodResponse { status: u16, rid: String },
}

/// Parses `$iothub/twin/GET/?$rid=..`, `$iothub/twin/PATCH/properties/reported/?$rid=..`,
/// `$iothub/methods/res/{status}/?$rid=..`.
pub fn parse_iothub_request(topic: &str) -> Result<IotHubRequest, TopicError> {
    let rest = topic
        .strip_prefix("$iothub/")
        .ok_or_else(|| TopicError(format!("topic '{topic}' is not an $iothub topic")))?;
    let (path, query) = rest
        .split_once("/?")
        .ok_or_else(|| TopicError(format!("topic '{topic}' has no '/?$rid=' part")))?;
    let rid = query_pairs(query)
        .into_iter()
        .find(|(k, _)| k == "$rid")
        .map(|(_, v)| v.to_string())
        .filter(|r| !r.is_empty())
        .ok_or_else(|| TopicError(format!("topic '{topic}' has no $rid")))?;
    match path {
        "twin/GET" => Ok(IotHubRequest::TwinGet { rid }),
        "twin/PATCH/properties/reported" => Ok(IotHubRequest::TwinPatchReported { rid }),
        _ => {
            if let Some(status) = path.strip_prefix("methods/res/") {
                let status = status.parse::<u16>().map_err(|_| {
                    TopicError(format!("method response status '{status}' is not a number"))
                })?;
                return Ok(IotHubRequest::MethodResponse { status, rid });
            }
            Err(TopicError(format!(
                "topic '{topic}' is not a known $iothub operation"
            )))
        }
    }
}

/// Subscription filters the hub serves, with what they enable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HubFilter {
    TwinResponses,
    DesiredUpdates,
    Methods,
    /// `devices/{id}/messages/devicebound/#` (the device's own ID only).
    CloudToDevice,
}

/// Which served feature a filter subscribes to, for the device `device_id`.
pub fn classify_filter(filter: &str, device_id: &str) -> Option<HubFilter> {
    match filter {
        "$iothub/twin/res/#" => Some(HubFilter::TwinResponses),
        "$iothub/twin/PATCH/properties/desired/#" => Some(HubFilter::DesiredUpdates),
        "$iothub/methods/POST/#" => Some(HubFilter::Methods),
        f if f
            .strip_prefix("devices/")
            .and_then(|r| r.strip_suffix("/messages/devicebound/#"))
            == Some(device_id) =>
        {
            Some(HubFilter::CloudToDevice)
        }
        _ => None,
    }
}

/// The topic a cloud-to-device message is delivered on (docs/protocol-notes.md, "Property bags"): system
/// properties as `%24.x`, `/` inside values encoded.
pub fn c2d_topic(m: &fleethub_services::hub::c2d::C2dView<'_>) -> String {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    let enc = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
    let mut t = format!(
        "devices/{}/messages/devicebound/%24.mid={}&%24.to={}",
        m.device_id,
        enc(m.message_id),
        enc(&format!("/devices/{}/messages/deviceBound", m.device_id))
    );
    for (k, v) in [
        ("%24.cid", m.correlation_id),
        ("%24.ct", m.content_type),
        ("%24.ce", m.content_encoding),
    ] {
        if let Some(v) = v {
            t.push_str(&format!("&{k}={}", enc(v)));
        }
    }
    t.push_str(&format!("&%24.exp={}", enc(m.expiry_utc)));
    if let Some(a) = m.ack {
        t.push_str(&format!("&iothub-ack={}", enc(a)));
    }
    for (k, v) in m.properties {
        t.push_str(&format!("&{}={}", enc(k), enc(v)));
    }
    t
}

#[cfg(test)]
mod iothub_tests {
    use super::*;

    #[test]
    fn iothub_requests() {
        assert_eq!(
            parse_iothub_request("$iothub/twin/GET/?$rid=1"),
            Ok(IotHubRequest::TwinGet { rid: "1".into() })
        );
        assert_eq!(
            parse_iothub_request("$iothub/twin/PATCH/properties/reported/?$rid=ab-cd"),
            Ok(IotHubRequest::TwinPatchReported {
                rid: "ab-cd".into()
            })
        );
        assert_eq!(
            parse_iothub_request("$iothub/methods/res/200/?$rid=7f"),
            Ok(IotHubRequest::MethodResponse {
                status: 200,
                rid: "7f".into()
            })
        );
        assert!(parse_iothub_request("$iothub/methods/res/abc/?$rid=1").is_err());
        assert!(parse_iothub_request("$iothub/twin/GET/").is_err());
        assert!(parse_iothub_request("$iothub/other/?$rid=1").is_err());
    }
}
