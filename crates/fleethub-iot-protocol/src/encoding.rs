//! Percent-encoding as the SDKs do it (`docs/protocol-notes.md`, "Property bags"), and the
//! `k=v&k2=v2` query part of topics.

use percent_encoding::{
    AsciiSet, CONTROLS, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode,
};

/// Everything but RFC 3986 unreserved characters is escaped (Python's `quote(s, safe="")`):
/// `$.ct` becomes `%24.ct`, `application/json` becomes `application%2Fjson`.
pub(crate) const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// What cannot stand inside one topic level: `/`, the MQTT wildcards, space and controls
/// (non-ASCII is always escaped); and `%` itself, since readers percent-decode the level
/// (a method named `50%` must not arrive as `5` + an escape).
pub(crate) const TOPIC_LEVEL: &AsciiSet =
    &CONTROLS.add(b' ').add(b'/').add(b'#').add(b'+').add(b'%');

/// Percent-encodes a property name or value (RFC 3986 unreserved characters stay).
pub fn encode_component(s: &str) -> String {
    utf8_percent_encode(s, UNRESERVED).to_string()
}

pub(crate) fn escape(s: &str, set: &'static AsciiSet) -> String {
    utf8_percent_encode(s, set).to_string()
}

/// Percent-decodes; invalid UTF-8 becomes U+FFFD.
pub fn decode_lossy(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// Percent-decodes; `None` when the bytes are not UTF-8.
pub(crate) fn decode_strict(s: &str) -> Option<String> {
    percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(std::borrow::Cow::into_owned)
}

/// The query part of a topic (`$rid=1&$version=2`, after the `?`): pairs of the decoded
/// name and the raw (still encoded) value, so a `$rid` can be echoed exactly as received.
/// A bare `name` has an empty value.
pub(crate) fn query_pairs(query: &str) -> impl Iterator<Item = (String, &str)> {
    query
        .trim_start_matches('?')
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode_lossy(k), v)
        })
}

/// The raw value of `name` in a topic query (`$rid` also matches `%24rid`).
pub(crate) fn query_value<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query_pairs(query).find(|(k, _)| k == name).map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components() {
        assert_eq!(encode_component("$.ct"), "%24.ct");
        assert_eq!(encode_component("a/b c~-._é"), "a%2Fb%20c~-._%C3%A9");
        assert_eq!(escape("re boot/#+!*", TOPIC_LEVEL), "re%20boot%2F%23%2B!*");
        // Found by tests/fuzz_protocol.rs: an unescaped '%' did not survive decoding.
        assert_eq!(escape("50%a0", TOPIC_LEVEL), "50%25a0");
        assert_eq!(decode_lossy(&escape("50%a0", TOPIC_LEVEL)), "50%a0");
        assert_eq!(decode_lossy("m%201"), "m 1");
        assert_eq!(decode_lossy("%FF"), "\u{FFFD}");
        assert_eq!(decode_strict("%FF"), None);
    }

    #[test]
    fn topic_queries() {
        let q = "$rid=a%2Db&%24version=4&flag";
        assert_eq!(query_value(q, "$rid"), Some("a%2Db"));
        assert_eq!(query_value(q, "$version"), Some("4"));
        assert_eq!(query_value(q, "flag"), Some(""));
        assert_eq!(query_value(q, "x"), None);
        assert_eq!(query_value("?$rid=1", "$rid"), Some("1"));
    }
}
