//! DPS wire names (`docs/protocol-notes.md`, "DPS MQTT topics" and "DPS HTTPS API"): the topics a
//! device publishes and the responses it gets, the HTTPS paths, retry-after.

use std::time::Duration;

use crate::TopicError;
use crate::encoding::{decode_lossy, encode_component, query_pairs};

/// api-version sent over MQTT (as the Python and Node SDKs do).
pub const MQTT_API_VERSION: &str = "2019-03-31";
/// api-version sent over HTTPS (as the C SDK and IoT Edge do).
pub const HTTPS_API_VERSION: &str = "2021-06-01";
/// The one subscription of the MQTT flow.
pub const RESPONSE_FILTER: &str = "$dps/registrations/res/#";
const RESPONSE_PREFIX: &str = "$dps/registrations/res/";
const REQUEST_PREFIX: &str = "$dps/registrations/";
/// Wait before polling when the server sends no retry-after.
pub const DEFAULT_RETRY_AFTER_SECS: u64 = 2;
/// Bounds the SDKs apply to the server's retry-after.
pub const MIN_RETRY_AFTER_SECS: u64 = 1;
pub const MAX_RETRY_AFTER_SECS: u64 = 60;

/// A request a device publishes to DPS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DpsRequest {
    /// `$dps/registrations/PUT/iotdps-register/?$rid={rid}`
    Register { rid: String },
    /// `$dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={op}`
    OperationStatus { rid: String, operation_id: String },
}

/// Reads a request topic. The `$rid` stays as sent (it is echoed); the operation ID is
/// percent-decoded (Python quotes it).
pub fn parse_request_topic(topic: &str) -> Result<DpsRequest, TopicError> {
    let rest = topic.strip_prefix(REQUEST_PREFIX).ok_or_else(|| {
        TopicError::new(format!(
            "topic '{topic}' is not a DPS topic ($dps/registrations/...)"
        ))
    })?;
    let (path, query) = rest
        .split_once("/?")
        .ok_or_else(|| TopicError::new(format!("topic '{topic}' has no '/?$rid=' part")))?;
    let pairs: Vec<(String, &str)> = query_pairs(query).collect();
    let get = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| *v);
    let rid = get("$rid")
        .filter(|r| !r.is_empty())
        .ok_or_else(|| TopicError::new(format!("topic '{topic}' has no $rid")))?
        .to_string();
    match path {
        "PUT/iotdps-register" => Ok(DpsRequest::Register { rid }),
        "GET/iotdps-get-operationstatus" => {
            let op = get("operationId")
                .filter(|o| !o.is_empty())
                .ok_or_else(|| TopicError::new(format!("topic '{topic}' has no operationId")))?;
            Ok(DpsRequest::OperationStatus {
                rid,
                operation_id: decode_lossy(op),
            })
        }
        _ => Err(TopicError::new(format!(
            "unknown DPS operation '{path}': use PUT/iotdps-register or GET/iotdps-get-operationstatus"
        ))),
    }
}

/// `$dps/registrations/PUT/iotdps-register/?$rid={rid}`.
pub fn register_topic(rid: impl std::fmt::Display) -> String {
    format!("$dps/registrations/PUT/iotdps-register/?$rid={rid}")
}

/// `$dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={opId}`
/// (the operation id percent-quoted, as Python does).
pub fn operation_status_topic(rid: impl std::fmt::Display, operation_id: &str) -> String {
    format!(
        "$dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={}",
        encode_component(operation_id)
    )
}

/// `$dps/registrations/res/{status}/?$rid={rid}[&retry-after={s}]`
pub fn response_topic(status: u16, rid: &str, retry_after: Option<u32>) -> String {
    match retry_after {
        Some(s) => format!("$dps/registrations/res/{status}/?$rid={rid}&retry-after={s}"),
        None => format!("$dps/registrations/res/{status}/?$rid={rid}"),
    }
}

/// A parsed `$dps/registrations/res/{status}/?$rid={rid}[&retry-after={s}]` topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseTopic {
    pub status: u16,
    /// Percent-decoded `$rid` (empty when absent).
    pub rid: String,
    pub retry_after: Option<u64>,
}

/// Parses a DPS response topic; `None` when it is not one (or the status is not a number).
pub fn parse_response_topic(topic: &str) -> Option<ResponseTopic> {
    let rest = topic.strip_prefix(RESPONSE_PREFIX)?;
    let (status, query) = rest.split_once('/').unwrap_or((rest, ""));
    let status = status.parse::<u16>().ok()?;
    let mut parsed = ResponseTopic {
        status,
        rid: String::new(),
        retry_after: None,
    };
    for (key, value) in query_pairs(query) {
        match key.as_str() {
            "$rid" => parsed.rid = decode_lossy(value),
            "retry-after" => parsed.retry_after = parse_retry_after(value),
            _ => {}
        }
    }
    Some(parsed)
}

/// Parses a retry-after value in seconds (MQTT topic property or HTTP `Retry-After` in its
/// delta-seconds form; fractions round up). HTTP dates and junk give `None`.
pub fn parse_retry_after(value: &str) -> Option<u64> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(secs);
    }
    match value.parse::<f64>() {
        Ok(f) if (0.0..1e9).contains(&f) => Some(f.ceil() as u64),
        _ => None,
    }
}

/// How long to wait before the next request: retry-after clamped to 1..=60 s, default 2 s.
pub fn retry_delay(retry_after: Option<u64>) -> Duration {
    Duration::from_secs(
        retry_after
            .unwrap_or(DEFAULT_RETRY_AFTER_SECS)
            .clamp(MIN_RETRY_AFTER_SECS, MAX_RETRY_AFTER_SECS),
    )
}

/// HTTPS register target: `/{scope}/registrations/{regId}/register?api-version=2021-06-01`.
pub fn register_path(id_scope: &str, registration_id: &str) -> String {
    format!(
        "/{}/registrations/{}/register?api-version={HTTPS_API_VERSION}",
        encode_component(id_scope),
        encode_component(registration_id)
    )
}

/// HTTPS poll target: `/{scope}/registrations/{regId}/operations/{opId}?api-version=2021-06-01`.
pub fn operation_status_path(id_scope: &str, registration_id: &str, operation_id: &str) -> String {
    format!(
        "/{}/registrations/{}/operations/{}?api-version={HTTPS_API_VERSION}",
        encode_component(id_scope),
        encode_component(registration_id),
        encode_component(operation_id)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_topics() {
        assert_eq!(
            parse_request_topic("$dps/registrations/PUT/iotdps-register/?$rid=6f1c-uuid"),
            Ok(DpsRequest::Register {
                rid: "6f1c-uuid".into()
            })
        );
        assert_eq!(
            parse_request_topic(
                "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=7&operationId=5.abc.def"
            ),
            Ok(DpsRequest::OperationStatus {
                rid: "7".into(),
                operation_id: "5.abc.def".into()
            })
        );
        // Python percent-quotes the query values; C uses a decimal rid
        assert_eq!(
            parse_request_topic(
                "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=1&operationId=5.a%2Eb"
            ),
            Ok(DpsRequest::OperationStatus {
                rid: "1".into(),
                operation_id: "5.a.b".into()
            })
        );
        assert!(parse_request_topic("$dps/registrations/PUT/iotdps-register/").is_err());
        assert!(parse_request_topic("$dps/registrations/PUT/other/?$rid=1").is_err());
        assert!(
            parse_request_topic("$dps/registrations/GET/iotdps-get-operationstatus/?$rid=1")
                .is_err()
        );
        assert!(parse_request_topic("devices/x/messages/events/").is_err());
    }

    #[test]
    fn request_topics_we_build_we_read() {
        assert_eq!(
            register_topic(1),
            "$dps/registrations/PUT/iotdps-register/?$rid=1"
        );
        assert_eq!(
            operation_status_topic(2, "5.316aac5bdc130deb.b1e02da8-c3a0"),
            "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=2&operationId=5.316aac5bdc130deb.b1e02da8-c3a0"
        );
        assert_eq!(
            operation_status_topic(3, "a&b=c d"),
            "$dps/registrations/GET/iotdps-get-operationstatus/?$rid=3&operationId=a%26b%3Dc%20d"
        );
        assert_eq!(
            parse_request_topic(&operation_status_topic(3, "a&b=c d")),
            Ok(DpsRequest::OperationStatus {
                rid: "3".into(),
                operation_id: "a&b=c d".into()
            })
        );
    }

    #[test]
    fn response_topic_has_exactly_two_dollars() {
        let t = response_topic(202, "abc", Some(1));
        assert_eq!(t, "$dps/registrations/res/202/?$rid=abc&retry-after=1");
        assert_eq!(t.matches('$').count(), 2);
        assert_eq!(
            response_topic(200, "abc", None),
            "$dps/registrations/res/200/?$rid=abc"
        );
    }

    #[test]
    fn https_paths() {
        assert_eq!(
            register_path("0ne00000A0A", "dev-01"),
            "/0ne00000A0A/registrations/dev-01/register?api-version=2021-06-01"
        );
        assert_eq!(
            operation_status_path("0ne1", "dev:01", "5.a.b"),
            "/0ne1/registrations/dev%3A01/operations/5.a.b?api-version=2021-06-01"
        );
    }

    #[test]
    fn response_topic_parsing() {
        assert_eq!(
            parse_response_topic("$dps/registrations/res/202/?$rid=6f1c&retry-after=3"),
            Some(ResponseTopic {
                status: 202,
                rid: "6f1c".into(),
                retry_after: Some(3)
            })
        );
        assert_eq!(
            parse_response_topic("$dps/registrations/res/200/?$rid=91ab"),
            Some(ResponseTopic {
                status: 200,
                rid: "91ab".into(),
                retry_after: None
            })
        );
        // Order-independent, encoded rid, unknown properties ignored.
        let t = parse_response_topic("$dps/registrations/res/429/?retry-after=10&x=1&$rid=a%2Db")
            .unwrap();
        assert_eq!(
            (t.status, t.rid.as_str(), t.retry_after),
            (429, "a-b", Some(10))
        );
        // No query at all.
        let t = parse_response_topic("$dps/registrations/res/500").unwrap();
        assert_eq!((t.status, t.rid.as_str(), t.retry_after), (500, "", None));
        assert_eq!(
            parse_response_topic("$dps/registrations/res/abc/?$rid=1"),
            None
        );
        assert_eq!(parse_response_topic("$iothub/twin/res/200/?$rid=1"), None);
        // What the server sends, the device reads.
        assert_eq!(
            parse_response_topic(&response_topic(202, "9", Some(2))),
            Some(ResponseTopic {
                status: 202,
                rid: "9".into(),
                retry_after: Some(2)
            })
        );
    }

    #[test]
    fn retry_after_parsing_and_clamping() {
        assert_eq!(parse_retry_after("3"), Some(3));
        assert_eq!(parse_retry_after(" 0 "), Some(0));
        assert_eq!(parse_retry_after("1.2"), Some(2));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after(""), None);
        assert_eq!(retry_delay(None), Duration::from_secs(2));
        assert_eq!(retry_delay(Some(0)), Duration::from_secs(1));
        assert_eq!(retry_delay(Some(5)), Duration::from_secs(5));
        assert_eq!(retry_delay(Some(3600)), Duration::from_mins(1));
    }
}
