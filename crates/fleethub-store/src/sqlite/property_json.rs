//! The JSON text of a telemetry message's property bags (`{"name":"value",...}`), written
//! straight into a reused buffer: byte for byte what `serde_json::to_string` writes for a
//! `BTreeMap<String, String>` (checked by the tests below), without its per-bag allocations
//! and byte-by-byte escaping of text that needs none. Two bags are encoded for every stored
//! message, which made `serde_json` a visible share of the writer's time per message.

use std::collections::BTreeMap;

/// Replaces `out` with the JSON object of `bag` (keys in order, as `BTreeMap` iterates).
pub(super) fn encode_into(bag: &BTreeMap<String, String>, out: &mut String) {
    out.clear();
    out.push('{');
    for (i, (name, value)) in bag.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_string(name, out);
        out.push(':');
        push_string(value, out);
    }
    out.push('}');
}

/// `s` as a JSON string, escaped as `serde_json` escapes it: `"`, `\` and the control
/// characters below U+0020 (`\b \t \n \f \r` by name, the others as `\u00XX`); everything
/// else, U+007F and non-ASCII included, as it is.
fn push_string(s: &str, out: &mut String) {
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b >= 0x20 && b != b'"' && b != b'\\' {
            continue;
        }
        // Every byte that needs escaping is ASCII, so `start..i` ends on a char boundary.
        out.push_str(&s[start..i]);
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x08 => out.push_str("\\b"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            0x0c => out.push_str("\\f"),
            b'\r' => out.push_str("\\r"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push_str("\\u00");
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xf)]));
            }
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same_as_serde_json(bag: &BTreeMap<String, String>) {
        let mut out = String::from("left over from the last bag");
        encode_into(bag, &mut out);
        assert_eq!(out, serde_json::to_string(bag).unwrap(), "{bag:?}");
    }

    #[test]
    fn empty_and_plain_bags() {
        same_as_serde_json(&BTreeMap::new());
        let bag: BTreeMap<String, String> = [
            ("iothub-connection-device-id", "dev-1"),
            ("iothub-message-source", "Telemetry"),
            ("message-id", ""),
            ("$.ct", "application/json"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        same_as_serde_json(&bag);
    }

    #[test]
    fn every_character_that_needs_escaping_and_some_that_do_not() {
        let mut tricky: Vec<String> = (0_u8..0x80).map(|b| char::from(b).to_string()).collect();
        tricky.extend(
            [
                "a\"b\\c",
                "\u{7f}\u{80}é€😀",
                "line\nbreak\r\n\ttab",
                "\\\"",
                "ends with \\",
                "\"starts",
                "\u{1}\u{1f}mixed é \u{8}\u{c}",
            ]
            .map(String::from),
        );
        for (i, s) in tricky.iter().enumerate() {
            let bag = BTreeMap::from([
                (s.clone(), format!("v{i}{s}")),
                (format!("k{i}"), s.clone()),
            ]);
            same_as_serde_json(&bag);
        }
    }
}
