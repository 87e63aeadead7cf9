//! Timestamps in the format Azure uses (`2024-05-06T18:26:43.8429523Z`).

use chrono::{DateTime, SecondsFormat, Utc};

/// Current time as an Azure-style UTC timestamp with 7 fractional digits.
pub fn now_utc() -> String {
    format_utc(Utc::now())
}

/// Formats a time the way Azure does: RFC 3339, UTC, `Z` suffix, 7 fractional digits.
pub fn format_utc(t: DateTime<Utc>) -> String {
    // chrono offers 3/6/9 digits; Azure uses 7 (100 ns ticks). Trim nanoseconds to 7 digits.
    let s = t.to_rfc3339_opts(SecondsFormat::Nanos, true);
    // s = "2024-05-06T18:26:43.842952312Z"
    match s.rfind('.') {
        Some(dot) if s.len() >= dot + 8 => format!("{}Z", &s[..dot + 8]),
        _ => s,
    }
}

/// Unix milliseconds of an RFC 3339 timestamp (`None` if it does not parse).
pub fn parse_utc_ms(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc).timestamp_millis())
}

/// Formats Unix milliseconds the way Azure does (see [`format_utc`]).
pub fn format_utc_ms(ms: i64) -> String {
    format_utc(DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default())
}

/// The value Azure uses for a timestamp that was never set.
pub const NEVER: &str = "0001-01-01T00:00:00Z";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seven_digits() {
        let t = DateTime::parse_from_rfc3339("2024-05-06T18:26:43.842952312Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(format_utc(t), "2024-05-06T18:26:43.8429523Z");
    }

    #[test]
    fn milliseconds() {
        assert_eq!(
            parse_utc_ms("2024-05-06T18:26:43.8429523Z"),
            Some(1_715_020_003_842)
        );
        assert_eq!(parse_utc_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_utc_ms("yesterday"), None);
        assert_eq!(
            format_utc_ms(1_715_020_003_842),
            "2024-05-06T18:26:43.8420000Z"
        );
    }
}
