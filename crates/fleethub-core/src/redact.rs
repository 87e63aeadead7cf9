//! The one redaction of secrets in text that is logged or stored (auth-failure reasons, user
//! names, client IDs, header values): SAS signatures (`sig=...`), shared access keys
//! (`SharedAccessKey=...`) and long padded base64 runs (a key or a signature without its field
//! name, e.g. in JSON) are replaced, keeping at most the first [`KEEP`] characters of a base64 run. Resource URIs,
//! expiries and policy names stay readable.

use std::borrow::Cow;

/// What replaces a secret.
pub const MARK: &str = "<redacted>";
/// Characters of a base64 run that stay visible (enough to tell two keys apart in a log).
pub const KEEP: usize = 4;
/// Shortest base64 run treated as a secret (a 32-byte key or signature is 44 characters).
const MIN_RUN: usize = 20;
/// Field names whose values are always secrets (matched case-insensitively).
const SECRET_FIELDS: &[&str] = &["sig=", "sharedaccesskey="];

/// `text` with every secret replaced by [`MARK`]; borrowed when there was none.
///
/// ```
/// use fleethub_core::redact::redact;
/// assert_eq!(
///     redact("SharedAccessSignature sr=h%2Fdevices%2Fd&sig=AbC%2Bd%3D&se=1"),
///     "SharedAccessSignature sr=h%2Fdevices%2Fd&sig=<redacted>&se=1"
/// );
/// ```
pub fn redact(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut out = String::new();
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        let boundary = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
        if boundary && let Some(field) = secret_field_at(bytes, i) {
            let start = i + field;
            let end = value_end(bytes, start);
            if end > start {
                out.push_str(&text[copied..start]);
                out.push_str(MARK);
                copied = end;
            }
            i = end;
            continue;
        }
        if is_symbol(bytes[i]) && (i == 0 || !is_symbol(bytes[i - 1])) {
            let run = base64_run(bytes, i);
            if run.looks_secret(&bytes[i..run.end]) {
                out.push_str(&text[copied..i]);
                out.push_str(&text[i..i + KEEP]);
                out.push('…');
                out.push_str(MARK);
                copied = run.end;
            }
            i = run.end;
            continue;
        }
        i += 1;
    }
    if copied == 0 {
        Cow::Borrowed(text)
    } else {
        out.push_str(&text[copied..]);
        Cow::Owned(out)
    }
}

/// The length of a secret field name (`sig=`, ...) starting at `i`.
fn secret_field_at(bytes: &[u8], i: usize) -> Option<usize> {
    SECRET_FIELDS
        .iter()
        .find(|f| {
            bytes
                .get(i..i + f.len())
                .is_some_and(|b| b.eq_ignore_ascii_case(f.as_bytes()))
        })
        .map(|f| f.len())
}

/// Where a field value that starts at `start` ends: at a separator of SAS tokens, connection
/// strings, headers or JSON.
fn value_end(bytes: &[u8], start: usize) -> usize {
    bytes[start..]
        .iter()
        .position(|&b| {
            matches!(b, b'&' | b';' | b',' | b'"' | b'\'' | b')' | b'}') || b.is_ascii_whitespace()
        })
        .map_or(bytes.len(), |n| start + n)
}

/// A base64 character other than the `=` padding (percent escapes start with `%`).
fn is_symbol(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'%')
}

struct Run {
    end: usize,
    /// Characters encoded (a percent escape counts once), padding excluded.
    symbols: usize,
    /// Ends in `=` padding (or `%3D`) with nothing base64-like after it.
    padded: bool,
}

impl Run {
    /// A key or signature: long, padded as every base64 key and HMAC-SHA256 signature is, and
    /// mixing upper case, lower case and digits as random base64 does (identifiers, paths and
    /// `api-version=...` do not end that way).
    fn looks_secret(&self, run: &[u8]) -> bool {
        self.padded
            && self.symbols >= MIN_RUN
            && run.len() > KEEP
            && run.iter().any(u8::is_ascii_uppercase)
            && run.iter().any(u8::is_ascii_lowercase)
            && run.iter().any(u8::is_ascii_digit)
    }
}

/// The base64 (standard or percent-encoded) run at `start`.
fn base64_run(bytes: &[u8], start: usize) -> Run {
    let escape = |i: usize| -> Option<u8> {
        let hex = bytes.get(i + 1..i + 3)?;
        let hex = std::str::from_utf8(hex).ok()?;
        u8::from_str_radix(hex, 16).ok()
    };
    let mut i = start;
    let mut symbols = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => match escape(i) {
                Some(b'+' | b'/') => i += 3,
                _ => break,
            },
            b if is_symbol(b) => i += 1,
            _ => break,
        }
        symbols += 1;
    }
    let mut pads = 0;
    while pads < 2 && i < bytes.len() {
        if bytes[i] == b'=' {
            i += 1;
        } else if bytes[i] == b'%' && escape(i) == Some(b'=') {
            i += 3;
        } else {
            break;
        }
        pads += 1;
    }
    let clean_end = bytes.get(i).is_none_or(|&b| !is_symbol(b) && b != b'=');
    Run {
        end: i.max(start + 1),
        symbols,
        padded: pads > 0 && clean_end,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "q6Gm0Ek2Nf4rZ8yT1bXcV3sLwP9hJ5uD7aQeR0tYiOk=";

    #[test]
    fn sas_signature_is_removed_and_the_rest_stays() {
        let token = format!(
            "SharedAccessSignature sr=hub.local%2Fdevices%2Fd1&sig={}&se=1700000000&skn=service",
            KEY.replace('=', "%3D").replace('+', "%2B")
        );
        let r = redact(&token);
        assert_eq!(
            r,
            "SharedAccessSignature sr=hub.local%2Fdevices%2Fd1&sig=<redacted>&se=1700000000&skn=service"
        );
        // in a user name, a log line, or any case
        let line = format!("user name 'hub/d1/?api-version=1&{token}' is bad");
        assert!(!redact(&line).contains(&KEY[..10]));
        assert_eq!(redact("SIG=abc"), "SIG=<redacted>");
        assert_eq!(redact("x&sig=&se=1"), "x&sig=&se=1");
    }

    #[test]
    fn connection_string_keys_are_removed() {
        let cs = format!("HostName=h;DeviceId=d;SharedAccessKey={KEY}");
        assert_eq!(
            redact(&cs),
            "HostName=h;DeviceId=d;SharedAccessKey=<redacted>"
        );
        let json = format!(r#"{{"primaryKey":"{KEY}"}}"#);
        assert_eq!(
            redact(&json),
            format!(r#"{{"primaryKey":"{}…{MARK}"}}"#, &KEY[..KEEP])
        );
    }

    #[test]
    fn bare_base64_runs_keep_a_few_characters() {
        // a token missing `sig=`: the signature is a field of its own
        let t = format!("SharedAccessSignature sr=a&{KEY}&se=1");
        let r = redact(&t);
        assert_eq!(
            r,
            format!("SharedAccessSignature sr=a&{}…{MARK}&se=1", &KEY[..KEEP])
        );
        let pct = KEY.replace('=', "%3D");
        assert!(!redact(&pct).contains(&pct[..10]));
    }

    #[test]
    fn ordinary_text_is_untouched() {
        for s in [
            "",
            "device 'sensor-0042' is disabled",
            "0ne0000ABCD/registrations/dev-01/api-version=2019-03-31",
            "token expired 40 s ago: check the device clock",
            "0123456789abcdef0123456789abcdef",
            "hub.fleethub.test/devices/dev%201/modules/m1",
            "ünïcödé and SharedAccessSignature without fields",
        ] {
            assert!(matches!(redact(s), Cow::Borrowed(_)), "{s}");
        }
    }
}
