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
    parse_format_utc_ms(s).or_else(|| {
        DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.with_timezone(&Utc).timestamp_millis())
    })
}

/// Days from 0001-01-01 (day 1 of the common era) to 1970-01-01.
const UNIX_EPOCH_DAYS_FROM_CE: i64 = 719_163;

/// [`parse_utc_ms`] of the one spelling [`format_utc`] writes (`YYYY-MM-DDTHH:MM:SS.fffffffZ`),
/// read digit by digit (the telemetry store reads the time of every message it stores);
/// `None` for anything else (chrono's RFC 3339 parser takes it then).
fn parse_format_utc_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 28
        || [
            (4, b'-'),
            (7, b'-'),
            (10, b'T'),
            (13, b':'),
            (16, b':'),
            (19, b'.'),
            (27, b'Z'),
        ]
        .iter()
        .any(|&(i, c)| b[i] != c)
    {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<u32> {
        b[from..to].iter().try_fold(0_u32, |v, &c| {
            c.is_ascii_digit().then(|| v * 10 + u32::from(c - b'0'))
        })
    };
    let year = i32::try_from(num(0, 4)?).ok()?;
    let date = chrono::NaiveDate::from_ymd_opt(year, num(5, 7)?, num(8, 10)?)?;
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if hour > 23 || minute > 59 || second > 59 {
        // A leap second (`:60`) is chrono's to read.
        return None;
    }
    let ticks = num(20, 27)?; // 100 ns
    let days = i64::from(date.num_days_from_ce()) - UNIX_EPOCH_DAYS_FROM_CE;
    let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    Some(secs * 1000 + i64::from(ticks / 10_000))
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
    fn the_digit_reader_reads_times_as_chrono_does() {
        let chrono_ms = |s: &str| {
            DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|t| t.with_timezone(&Utc).timestamp_millis())
        };
        let mut secs: i64 = -62_135_596_800; // 0001-01-01T00:00:00Z
        let mut nanos: u32 = 0;
        while secs < 253_402_300_799 {
            let text = format_utc(DateTime::<Utc>::from_timestamp(secs, nanos).unwrap());
            assert_eq!(parse_format_utc_ms(&text), chrono_ms(&text), "{text}");
            secs += 86_399_917 + i64::from(nanos % 977);
            nanos = (nanos.wrapping_mul(2_654_435_761).wrapping_add(12_345)) % 1_000_000_000;
        }
        for other in [
            "2024-01-01T00:01:00Z",
            "2024-01-01T00:01:00.5+02:00",
            "2024-02-30T00:00:00.0000000Z",
            "2024-01-01T24:00:00.0000000Z",
            "2024-01-01T00:00:00.00000a0Z",
            "2016-12-31T23:59:60.5000000Z",
            "2024-01-01 00:00:00.0000000Z",
        ] {
            assert_eq!(parse_format_utc_ms(other), None, "{other}");
        }
        assert_eq!(
            parse_utc_ms("2016-12-31T23:59:60.5000000Z"),
            chrono_ms("2016-12-31T23:59:60.5000000Z"),
            "a leap second, read by chrono"
        );
        assert_eq!(
            parse_utc_ms("2024-01-01T00:01:00.5+02:00"),
            chrono_ms("2024-01-01T00:01:00.5+02:00")
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
