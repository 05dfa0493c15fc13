//! Parsing text into typed values (used by CSV inference and by schema bounds) and formatting
//! typed values back into text (used by profiles and violation examples).

use chrono::{DateTime, NaiveDate, NaiveDateTime};

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Days from 0001-01-01 (chrono's CE day 1) to 1970-01-01.
const UNIX_EPOCH_CE_DAYS: i32 = 719_163;

/// A zero-padded code such as `02134` or `007`: numbers would lose the padding, so such values
/// are not numbers.
fn zero_padded(text: &str) -> bool {
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text).as_bytes();
    digits.len() > 1 && digits[0] == b'0' && digits[1].is_ascii_digit()
}

/// An integer: optional sign and ASCII digits (surrounding whitespace is ignored), not
/// zero-padded.
pub(crate) fn parse_int(text: &str) -> Option<i64> {
    let text = text.trim();
    if zero_padded(text) {
        return None;
    }
    text.parse().ok()
}

/// A decimal number: integers, decimals and exponents (`1.5`, `-2e-3`). Words Rust's parser
/// would take (`inf`, `nan`, `infinity`) are not numbers here: a value needs a digit. Nor are
/// zero-padded codes (`0042`).
pub(crate) fn parse_float(text: &str) -> Option<f64> {
    let text = text.trim();
    if !text.bytes().any(|b| b.is_ascii_digit()) || zero_padded(text) {
        return None;
    }
    // `1e400` overflows to infinity: not a number a column can hold (the column reads as text).
    text.parse().ok().filter(|v: &f64| v.is_finite())
}

/// `true` / `false`, any case.
pub(crate) fn parse_bool(text: &str) -> Option<bool> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("true") {
        Some(true)
    } else if text.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// A calendar date `YYYY-MM-DD`, as days since 1970-01-01.
pub(crate) fn parse_date(text: &str) -> Option<i32> {
    let text = text.trim();
    let b = text.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    // By hand: chrono's format parser costs more than the rest of a CSV read.
    let number = |range: std::ops::Range<usize>| {
        b[range].iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    let year = i32::try_from(number(0..4)?).ok()?;
    let date = NaiveDate::from_ymd_opt(year, number(5..7)?, number(8..10)?)?;
    Some(days_from_date(date))
}

fn days_from_date(date: NaiveDate) -> i32 {
    use chrono::Datelike;
    date.num_days_from_ce() - UNIX_EPOCH_CE_DAYS
}

/// A date and time, as microseconds since 1970-01-01T00:00:00 UTC: RFC 3339 with an offset
/// (`2024-05-01T12:30:00+02:00`, `…Z`), or without one, read as UTC (`2024-05-01T12:30:00`,
/// `2024-05-01 12:30:00.250`, `2024-05-01 12:30`). A plain date is midnight.
pub fn parse_datetime(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Some(days) = parse_date(text) {
        return Some(i64::from(days) * MICROS_PER_DAY);
    }
    let b = text.as_bytes();
    if b.len() < 16 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(text) {
        return Some(dt.timestamp_micros());
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(text, format) {
            return Some(dt.and_utc().timestamp_micros());
        }
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%.f%z"] {
        if let Ok(dt) = DateTime::parse_from_str(text, format) {
            return Some(dt.timestamp_micros());
        }
    }
    None
}

/// `YYYY-MM-DD` for days since 1970-01-01.
pub(crate) fn format_date(days: i32) -> String {
    NaiveDate::from_num_days_from_ce_opt(days.saturating_add(UNIX_EPOCH_CE_DAYS)).map_or_else(
        || format!("{days} days"),
        |d| d.format("%Y-%m-%d").to_string(),
    )
}

/// `YYYY-MM-DDTHH:MM:SS[.ffffff]` (UTC) for microseconds since the epoch.
pub(crate) fn format_timestamp(micros: i64) -> String {
    DateTime::from_timestamp_micros(micros).map_or_else(
        || format!("{micros} µs"),
        |dt| {
            if micros.rem_euclid(1_000_000) == 0 {
                dt.format("%Y-%m-%dT%H:%M:%S").to_string()
            } else {
                dt.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
            }
        },
    )
}

/// Microseconds since the epoch for days since the epoch.
pub(crate) fn date_to_micros(days: i32) -> i64 {
    i64::from(days) * MICROS_PER_DAY
}

/// A float for people: integers without a fraction, others in Rust's shortest round-trip form.
pub(crate) fn format_float(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

/// Cut long text for messages, on a character boundary.
/// `text` for a message: at most `max_chars` characters (then `…`), control characters
/// escaped (`\u{1b}`), so a value from the data cannot move the cursor or recolour a terminal.
pub(crate) fn shorten(text: &str, max_chars: usize) -> String {
    let mut s = String::with_capacity(text.len().min(max_chars * 4));
    for (i, c) in text.chars().enumerate() {
        if i == max_chars {
            s.push('…');
            break;
        }
        if c.is_control() {
            s.extend(c.escape_default());
        } else {
            s.push(c);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortened_text_escapes_control_characters() {
        assert_eq!(shorten("a\u{1b}[31mred\nx", 60), "a\\u{1b}[31mred\\nx");
        assert_eq!(shorten("abcdef", 3), "abc…");
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_int(" 42 "), Some(42));
        assert_eq!(parse_int("-7"), Some(-7));
        assert_eq!(parse_int("4.0"), None);
        assert_eq!(parse_float("4.5e3"), Some(4500.0));
        assert_eq!(parse_float("inf"), None);
        assert_eq!(parse_float("nan"), None);
        assert_eq!(parse_float("1,5"), None);
        assert_eq!(parse_int("02134"), None);
        assert_eq!(parse_float("-007.5"), None);
        assert_eq!(parse_int("0"), Some(0));
        assert_eq!(parse_float("0.5"), Some(0.5));
        assert_eq!(parse_float("-0.5"), Some(-0.5));
        assert_eq!(format_float(3.0), "3");
        assert_eq!(format_float(0.25), "0.25");
    }

    #[test]
    fn booleans() {
        assert_eq!(parse_bool("TRUE"), Some(true));
        assert_eq!(parse_bool("False"), Some(false));
        assert_eq!(parse_bool("1"), None);
        assert_eq!(parse_bool("yes"), None);
    }

    #[test]
    fn dates_and_times() {
        assert_eq!(parse_date("1970-01-02"), Some(1));
        assert_eq!(parse_date("2024-02-30"), None);
        assert_eq!(format_date(parse_date("2024-02-29").unwrap()), "2024-02-29");
        assert_eq!(parse_datetime("1970-01-01T00:00:01Z"), Some(1_000_000));
        assert_eq!(parse_datetime("1970-01-01T01:00:01+01:00"), Some(1_000_000));
        assert_eq!(parse_datetime("1970-01-01 00:00:01.5"), Some(1_500_000));
        assert_eq!(parse_datetime("1970-01-01 00:01"), Some(60_000_000));
        assert_eq!(parse_datetime("1970-01-02"), Some(MICROS_PER_DAY));
        assert_eq!(parse_datetime("yesterday"), None);
        assert_eq!(format_timestamp(1_500_000), "1970-01-01T00:00:01.500000");
        assert_eq!(format_timestamp(MICROS_PER_DAY), "1970-01-02T00:00:00");
    }
}
