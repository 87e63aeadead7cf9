//! Percent-encoding helpers shared by the SAS code.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, percent_encode};

/// Everything except RFC 3986 unreserved characters (`A-Za-z0-9-._~`) is
/// encoded. This matches Python's `quote(s, safe="")`.
pub(crate) const STRICT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-decodes `%xx` (hex digits of either case). `+` stays `+`;
/// malformed escapes are kept literally.
pub(crate) fn decode(s: &str) -> Vec<u8> {
    percent_decode_str(s).collect()
}

/// Percent-decodes and converts to a string (lossy UTF-8).
pub(crate) fn decode_lossy(s: &str) -> String {
    String::from_utf8_lossy(&decode(s)).into_owned()
}

/// Encodes everything but unreserved characters, uppercase hex (`%2F`).
pub(crate) fn encode_upper(bytes: &[u8]) -> String {
    percent_encode(bytes, STRICT).to_string()
}

/// Encodes everything but unreserved characters, lowercase hex (`%2f`),
/// like the Azure C shared utility does.
pub(crate) fn encode_lower(bytes: &[u8]) -> String {
    let upper = encode_upper(bytes);
    let mut out = String::with_capacity(upper.len());
    let mut hex_left = 0;
    for c in upper.chars() {
        if hex_left > 0 {
            out.push(c.to_ascii_lowercase());
            hex_left -= 1;
        } else {
            if c == '%' {
                hex_left = 2;
            }
            out.push(c);
        }
    }
    out
}

/// Makes attacker-controlled text safe for a one-line log message: control
/// characters are escaped and the result is cut to `max` characters.
pub(crate) fn for_log(s: &str, max: usize) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_is_case_insensitive_and_keeps_plus() {
        assert_eq!(decode("a%2Fb%2fc+d"), b"a/b/c+d");
        assert_eq!(decode("bad%zz%"), b"bad%zz%");
        assert_eq!(decode_lossy("%FF"), "\u{FFFD}");
    }

    #[test]
    fn encode_variants() {
        let s = "0ne/regs/dev-01_.~!'()*+= é";
        assert_eq!(
            encode_upper(s.as_bytes()),
            "0ne%2Fregs%2Fdev-01_.~%21%27%28%29%2A%2B%3D%20%C3%A9"
        );
        assert_eq!(
            encode_lower(s.as_bytes()),
            "0ne%2fregs%2fdev-01_.~%21%27%28%29%2a%2b%3d%20%c3%a9"
        );
        assert_eq!(decode(&encode_lower(s.as_bytes())), s.as_bytes());
    }

    #[test]
    fn for_log_escapes_and_truncates() {
        assert_eq!(for_log("a\nb", 10), "a\\nb");
        assert_eq!(for_log("abcdef", 3), "abc…");
        assert_eq!(for_log("abc", 3), "abc");
    }
}
