//! Timestamps in the format Azure uses (`2024-05-06T18:26:43.8429523Z`).

use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};

/// Current time as an Azure-style UTC timestamp with 7 fractional digits.
pub fn now_utc() -> String {
    format_utc(Utc::now())
}

/// Formats a time the way Azure does: RFC 3339, UTC, `Z` suffix, 7 fractional digits.
/// (Written digit by digit: every stored telemetry message is stamped with it, and chrono's
/// general formatter showed in the server's profile.)
pub fn format_utc(t: DateTime<Utc>) -> String {
    let (date, time) = (t.date_naive(), t.time());
    let nanos = time.nanosecond();
    let Ok(year) = u32::try_from(date.year()) else {
        return format_utc_general(t);
    };
    if year > 9999 || nanos >= 1_000_000_000 {
        // Five-digit years and leap seconds: chrono's spelling.
        return format_utc_general(t);
    }
    let mut out = *b"0000-00-00T00:00:00.0000000Z";
    for (range, v) in [
        (0..4, year),
        (5..7, date.month()),
        (8..10, date.day()),
        (11..13, time.hour()),
        (14..16, time.minute()),
        (17..19, time.second()),
        (20..27, nanos / 100),
    ] {
        let mut v = v;
        for b in out[range].iter_mut().rev() {
            *b = b'0' + (v % 10) as u8;
            v /= 10;
        }
    }
    String::from_utf8(out.to_vec()).unwrap_or_else(|_| format_utc_general(t))
}

fn format_utc_general(t: DateTime<Utc>) -> String {
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
    fn the_digit_writer_spells_times_as_chrono_does() {
        // A spread of instants from 0001 to 9999, with and without fractions.
        let mut secs: i64 = -62_135_596_800; // 0001-01-01T00:00:00Z
        let mut nanos: u32 = 0;
        while secs < 253_402_300_799 {
            let t = DateTime::<Utc>::from_timestamp(secs, nanos).unwrap();
            assert_eq!(format_utc(t), format_utc_general(t), "{secs} s {nanos} ns");
            secs += 86_399_917 + i64::from(nanos % 977);
            nanos = (nanos.wrapping_mul(2_654_435_761).wrapping_add(12_345)) % 1_000_000_000;
        }
        let epoch = DateTime::<Utc>::from_timestamp(0, 0).unwrap();
        assert_eq!(format_utc(epoch), "1970-01-01T00:00:00.0000000Z");
        let far = DateTime::<Utc>::from_timestamp(253_402_300_800, 5).unwrap();
        assert_eq!(
            format_utc(far),
            format_utc_general(far),
            "a five-digit year"
        );
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
