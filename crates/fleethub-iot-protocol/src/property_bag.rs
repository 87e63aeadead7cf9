//! The property bag at the end of telemetry, C2D and module-input topics
//! (`docs/protocol-notes.md`, "Property bags"): `k=v&k2=v2`, names and values
//! percent-encoded; system properties are named `$.x` (sent as `%24.x` by most SDKs, as a
//! literal `$.x` by some), everything else is an application property. A bare `key` has no
//! value. The one encoder and the one parser of the workspace.

use std::collections::BTreeMap;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};

use crate::encoding::{UNRESERVED, decode_strict, escape as escape_str};

/// Message properties by name.
pub type Properties = BTreeMap<String, String>;

/// One decoded property: name and value (`None` for a bare `key` without `=`).
pub type Property = (String, Option<String>);

/// System properties: the short wire name after `$.` and the AMQP-style name the hub's
/// telemetry endpoint uses.
pub const SYSTEM_PROPERTIES: [(&str, &str); 11] = [
    ("mid", "message-id"),
    ("cid", "correlation-id"),
    ("uid", "user-id"),
    ("ct", "content-type"),
    ("ce", "content-encoding"),
    ("exp", "absolute-expiry-time"),
    ("to", "to"),
    ("on", "iothub-outputname"),
    ("ifid", "iothub-interface-id"),
    ("sub", "dt-subject"),
    ("ctime", "iothub-creation-time-utc"),
];

/// The system properties a routing condition names (`$contentType = 'application/json'`),
/// with their short wire names; `cdid`/`cmid` are the sending connection's device/module.
pub const QUERY_SYSTEM_PROPERTIES: [(&str, &str); 8] = [
    ("$contentType", "ct"),
    ("$contentEncoding", "ce"),
    ("$messageId", "mid"),
    ("$correlationId", "cid"),
    ("$userId", "uid"),
    ("$connectionDeviceId", "cdid"),
    ("$connectionModuleId", "cmid"),
    ("$outputName", "on"),
];

/// The AMQP-style name of a system property given by its short name (`ct` ->
/// `content-type`); unknown short names stay as they are.
pub fn amqp_name(short: &str) -> &str {
    SYSTEM_PROPERTIES
        .iter()
        .find(|(s, _)| *s == short)
        .map_or(short, |(_, amqp)| amqp)
}

/// Which characters an encoder escapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// Everything but RFC 3986 unreserved characters (Python's `quote(s, safe="")`): what
    /// the SDKs send and the edge hub forwards.
    Unreserved,
    /// Everything but ASCII letters and digits: what the hub sends on C2D topics.
    AllButAlphanumeric,
}

impl Escape {
    fn set(self) -> &'static AsciiSet {
        match self {
            Escape::Unreserved => UNRESERVED,
            Escape::AllButAlphanumeric => NON_ALPHANUMERIC,
        }
    }
}

/// Encodes a property bag the way the SDKs do ([`Escape::Unreserved`]).
pub fn encode<'a>(props: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    encode_with(props, Escape::Unreserved)
}

/// Encodes a property bag: `name=value` joined by `&`. System properties are given by their
/// `$.x` names and written `%24.x`; `iothub-*` names are written as they are; application
/// property names and every value are escaped with `escape`.
pub fn encode_with<'a>(
    props: impl IntoIterator<Item = (&'a str, &'a str)>,
    escape: Escape,
) -> String {
    let set = escape.set();
    let mut out = String::new();
    for (k, v) in props {
        if !out.is_empty() {
            out.push('&');
        }
        if let Some(short) = k.strip_prefix("$.") {
            out.push_str("%24.");
            out.push_str(&escape_str(short, set));
        } else if k.starts_with("iothub-") {
            out.push_str(&escape_str(k, UNRESERVED));
        } else {
            out.push_str(&escape_str(k, set));
        }
        out.push('=');
        out.push_str(&escape_str(v, set));
    }
    out
}

/// A property bag that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PropertyBagError(pub String);

/// The properties of a bag in order, each decoded (`$.x` and `%24.x` both give `$.x`), or
/// an error for a name or value that is not UTF-8 after percent-decoding or an empty name.
/// Callers that must not fail skip the errors; the hub refuses the whole publish.
pub fn iter(bag: &str) -> impl Iterator<Item = Result<Property, PropertyBagError>> + '_ {
    bag.split('&').filter(|p| !p.is_empty()).map(move |part| {
        let (k, v) = match part.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (part, None),
        };
        let key = decode_strict(k).ok_or_else(|| {
            PropertyBagError(format!(
                "property name '{k}' is not valid UTF-8 after percent-decoding"
            ))
        })?;
        let value = match v {
            Some(v) => Some(decode_strict(v).ok_or_else(|| {
                PropertyBagError(format!(
                    "property '{key}' has a value that is not valid UTF-8"
                ))
            })?),
            None => None,
        };
        if key.is_empty() {
            return Err(PropertyBagError(format!(
                "property bag '{bag}' has an empty property name"
            )));
        }
        Ok((key, value))
    })
}

/// All properties of a bag, or the first error.
pub fn parse(bag: &str) -> Result<Vec<Property>, PropertyBagError> {
    iter(bag).collect()
}

/// Telemetry as the hub stores it: system properties by their AMQP-style names
/// ([`amqp_name`]) and application properties; a bare `key` has an empty value.
pub fn parse_telemetry(bag: &str) -> Result<(Properties, Properties), PropertyBagError> {
    let mut system = Properties::new();
    let mut app = Properties::new();
    for p in iter(bag) {
        let (key, value) = p?;
        let value = value.unwrap_or_default();
        match key.strip_prefix("$.") {
            Some(sys) => {
                system.insert(amqp_name(sys).to_string(), value);
            }
            None => {
                app.insert(key, value);
            }
        }
    }
    Ok((system, app))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_matches_python() {
        // Python: urlencode(quote_via=quote) ->
        // %24.mid=m%201&%24.ct=application%2Fjson&temp%20Alert=tr%2Fue
        assert_eq!(
            encode([
                ("$.mid", "m 1"),
                ("$.ct", "application/json"),
                ("temp Alert", "tr/ue"),
            ]),
            "%24.mid=m%201&%24.ct=application%2Fjson&temp%20Alert=tr%2Fue"
        );
        assert_eq!(
            encode([("a&b", "c=d"), ("é", "~-._")]),
            "a%26b=c%3Dd&%C3%A9=~-._"
        );
        assert_eq!(encode(std::iter::empty()), "");
    }

    #[test]
    fn encoding_as_the_hub_sends_c2d() {
        assert_eq!(
            encode_with(
                [
                    ("$.mid", "id-1"),
                    ("$.to", "/devices/d1/messages/deviceBound"),
                    ("iothub-ack", "full"),
                    ("k-1", "v.2"),
                ],
                Escape::AllButAlphanumeric
            ),
            "%24.mid=id%2D1&%24.to=%2Fdevices%2Fd1%2Fmessages%2FdeviceBound&iothub-ack=full&k%2D1=v%2E2"
        );
    }

    #[test]
    fn parsing() {
        assert_eq!(
            parse("%24.mid=m%201&%24.ct=application%2Fjson&flag&empty=&$.cid=c").unwrap(),
            vec![
                ("$.mid".to_string(), Some("m 1".to_string())),
                ("$.ct".to_string(), Some("application/json".to_string())),
                ("flag".to_string(), None),
                ("empty".to_string(), Some(String::new())),
                ("$.cid".to_string(), Some("c".to_string())),
            ]
        );
        assert!(parse("").unwrap().is_empty());
        // Round trip.
        let bag = encode([("k/1", "v&2"), ("$.exp", "2024-01-01T00:00:00Z")]);
        assert_eq!(
            parse(&bag).unwrap(),
            vec![
                ("k/1".to_string(), Some("v&2".to_string())),
                (
                    "$.exp".to_string(),
                    Some("2024-01-01T00:00:00Z".to_string())
                ),
            ]
        );
        // One bad property does not hide the good ones from callers that skip errors.
        let good: Vec<Property> = iter("a=1&k=%FF&b=2").filter_map(Result::ok).collect();
        assert_eq!(good.len(), 2);
    }

    #[test]
    fn telemetry_bags_of_every_sdk() {
        // Python: %24-encoded system keys, encoded values
        let (sys, app) = parse_telemetry(
            "%24.mid=m%201&%24.ct=application%2Fjson&%24.ce=utf-8&temp%20Alert=tr%2Fue",
        )
        .unwrap();
        assert_eq!(sys["message-id"], "m 1");
        assert_eq!(sys["content-type"], "application/json");
        assert_eq!(sys["content-encoding"], "utf-8");
        assert_eq!(app["temp Alert"], "tr/ue");
        // docs: literal $.ct
        let (sys, _) = parse_telemetry("$.ct=text%2Fplain").unwrap();
        assert_eq!(sys["content-type"], "text/plain");
        // bare key, empty bag
        let (_, app) = parse_telemetry("flag").unwrap();
        assert_eq!(app["flag"], "");
        assert!(parse_telemetry("").unwrap().0.is_empty());
        assert!(parse_telemetry("=x").is_err());
        assert!(parse_telemetry("k=%FF").is_err());
        assert!(parse_telemetry("%FF=k").is_err());
        // unknown system names keep their short name
        let (sys, _) = parse_telemetry("%24.on=o1&%24.xyz=1").unwrap();
        assert_eq!(sys["iothub-outputname"], "o1");
        assert_eq!(sys["xyz"], "1");
    }
}
