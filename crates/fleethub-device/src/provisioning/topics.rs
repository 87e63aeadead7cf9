//! DPS wire names: MQTT username and topics, HTTPS paths, SAS resource, retry-after
//! (docs/protocol-notes.md, "DPS MQTT topics").

use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// api-version sent over MQTT (as the Python and Node SDKs do).
pub const MQTT_API_VERSION: &str = "2019-03-31";
/// api-version sent over HTTPS (as the C SDK and IoT Edge do).
pub const HTTPS_API_VERSION: &str = "2021-06-01";
/// The one subscription of the MQTT flow.
pub const RESPONSE_TOPIC_FILTER: &str = "$dps/registrations/res/#";
const RESPONSE_TOPIC_PREFIX: &str = "$dps/registrations/res/";
/// `skn` of device SAS tokens.
pub const SAS_KEY_NAME: &str = "registration";
/// Wait before polling when the server sends no retry-after.
pub const DEFAULT_RETRY_AFTER_SECS: u64 = 2;
/// Bounds applied to the server's retry-after.
pub const MIN_RETRY_AFTER_SECS: u64 = 1;
pub const MAX_RETRY_AFTER_SECS: u64 = 60;

/// Everything but RFC 3986 unreserved characters is escaped (Python's `quote(s, safe="")`).
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn enc(s: &str) -> String {
    utf8_percent_encode(s, COMPONENT).to_string()
}

/// SAS `sr` (before encoding): `{idScope}/registrations/{registrationId}`.
pub fn sas_resource(id_scope: &str, registration_id: &str) -> String {
    format!("{id_scope}/registrations/{registration_id}")
}

/// MQTT CONNECT username:
/// `{scope}/registrations/{regId}/api-version=2019-03-31&ClientVersion=fleethub-device%2F{ver}`.
pub fn mqtt_username(id_scope: &str, registration_id: &str) -> String {
    format!(
        "{id_scope}/registrations/{registration_id}/api-version={MQTT_API_VERSION}&ClientVersion={}",
        enc(crate::USER_AGENT)
    )
}

/// `$dps/registrations/PUT/iotdps-register/?$rid={rid}`.
pub fn register_topic(rid: u64) -> String {
    format!("$dps/registrations/PUT/iotdps-register/?$rid={rid}")
}

/// `$dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={opId}`
/// (the operation id percent-quoted, as Python does).
pub fn operation_status_topic(rid: u64, operation_id: &str) -> String {
    format!(
        "$dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={}",
        enc(operation_id)
    )
}

/// HTTPS register target: `/{scope}/registrations/{regId}/register?api-version=2021-06-01`.
pub fn register_path(id_scope: &str, registration_id: &str) -> String {
    format!(
        "/{}/registrations/{}/register?api-version={HTTPS_API_VERSION}",
        enc(id_scope),
        enc(registration_id)
    )
}

/// HTTPS poll target: `/{scope}/registrations/{regId}/operations/{opId}?api-version=2021-06-01`.
pub fn operation_status_path(id_scope: &str, registration_id: &str, operation_id: &str) -> String {
    format!(
        "/{}/registrations/{}/operations/{}?api-version={HTTPS_API_VERSION}",
        enc(id_scope),
        enc(registration_id),
        enc(operation_id)
    )
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
    let rest = topic.strip_prefix(RESPONSE_TOPIC_PREFIX)?;
    let (status, query) = match rest.split_once('/') {
        Some((status, query)) => (status, query.strip_prefix('?').unwrap_or(query)),
        None => (rest, ""),
    };
    let status = status.parse::<u16>().ok()?;
    let mut parsed = ResponseTopic {
        status,
        rid: String::new(),
        retry_after: None,
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "$rid" => parsed.rid = percent_decode_str(value).decode_utf8_lossy().into_owned(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn username_and_topics() {
        assert_eq!(
            mqtt_username("0ne00000A0A", "dev-01"),
            format!(
                "0ne00000A0A/registrations/dev-01/api-version=2019-03-31&ClientVersion=fleethub-device%2F{}",
                env!("CARGO_PKG_VERSION")
            )
        );
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
        assert_eq!(sas_resource("0ne1", "dev-01"), "0ne1/registrations/dev-01");
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
        assert_eq!(retry_delay(Some(3600)), Duration::from_secs(60));
    }
}
