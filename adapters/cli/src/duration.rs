//! Durations on the command line: `250ms`, `5s`, `1.5s`, `2m`, `1h`, compound forms such as
//! `1m30s` or `1h2m3.5s`, or a bare number of seconds.

use std::fmt;
use std::time::Duration;

/// Why a duration argument was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DurationError {
    /// The text was empty.
    Empty,
    /// A number was missing or not a decimal number.
    BadNumber(String),
    /// A unit was not one of `ns`, `us` (`µs`), `ms`, `s`, `m` (`min`), `h`.
    BadUnit(String),
    /// A number without a unit in a compound duration (`1m30`): only a lone number means
    /// seconds.
    MissingUnit(String),
    /// The value does not fit in a `Duration`.
    TooLarge(String),
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DurationError::Empty => write!(f, "empty duration (try `5s` or `250ms`)"),
            DurationError::BadNumber(s) => {
                write!(
                    f,
                    "`{s}` is not a duration (try `5s`, `1.5s`, `1m30s` or `250ms`)"
                )
            }
            DurationError::BadUnit(u) => {
                write!(f, "unknown duration unit `{u}` (use ns, us, ms, s, m or h)")
            }
            DurationError::MissingUnit(s) => write!(
                f,
                "`{s}`: every part of a compound duration needs a unit (as in `1m30s`)"
            ),
            DurationError::TooLarge(s) => write!(f, "duration `{s}` is too large"),
        }
    }
}

impl std::error::Error for DurationError {}

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Nanoseconds per unit, `None` for an unknown unit.
fn unit_nanos(unit: &str) -> Option<u128> {
    Some(match unit {
        "ns" => 1,
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "s" => NANOS_PER_SEC,
        "m" | "min" => 60 * NANOS_PER_SEC,
        "h" => 3_600 * NANOS_PER_SEC,
        _ => return None,
    })
}

/// Fraction digits beyond this many change no result: the largest unit is below 10^13 ns, so
/// their weight is below a nanosecond. Ignoring them keeps 10^digits within `u128`.
const MAX_FRACTION_DIGITS: usize = 18;

/// `number` × `per_unit` nanoseconds, exactly (fractions of a nanosecond are dropped); `whole`
/// is the argument, for the error.
fn scaled_nanos(number: &str, per_unit: u128, whole: &str) -> Result<u128, DurationError> {
    let bad = || DurationError::BadNumber(whole.to_string());
    let too_large = || DurationError::TooLarge(whole.to_string());
    let (int_part, frac_part) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number, ""),
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (int_part.is_empty() && frac_part.is_empty())
        || !all_digits(int_part)
        || !all_digits(frac_part)
    {
        return Err(bad());
    }
    let mut int: u128 = 0;
    for digit in int_part.bytes() {
        int = int
            .checked_mul(10)
            .and_then(|v| v.checked_add(u128::from(digit - b'0')))
            .ok_or_else(too_large)?;
    }
    let frac_digits = &frac_part[..frac_part.len().min(MAX_FRACTION_DIGITS)];
    let (mut frac, mut scale): (u128, u128) = (0, 1);
    for digit in frac_digits.bytes() {
        // At most 18 digits: both stay below 10^18.
        frac = frac * 10 + u128::from(digit - b'0');
        scale *= 10;
    }
    let int_nanos = int.checked_mul(per_unit).ok_or_else(too_large)?;
    // frac < scale <= 10^18 and per_unit < 10^13: the product fits in u128.
    int_nanos
        .checked_add(frac * per_unit / scale)
        .ok_or_else(too_large)
}

/// Parses a duration: one or more parts, each a decimal number followed by a unit (`ns`, `us`
/// or `µs`, `ms`, `s`, `m` or `min`, `h`), such as `1h2m3.5s`; or a lone number, which means
/// seconds. Surrounding whitespace is ignored, and so is whitespace between a number and its
/// unit. Values are exact to the nanosecond.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let whole = text.trim();
    if whole.is_empty() {
        return Err(DurationError::Empty);
    }
    let is_number_char = |c: char| c.is_ascii_digit() || c == '.';
    let mut rest = whole;
    let mut total: u128 = 0;
    let mut parts = 0usize;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !is_number_char(c))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_end);
        if number.is_empty() {
            return Err(DurationError::BadNumber(whole.to_string()));
        }
        let unit_end = after.find(is_number_char).unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_end);
        let unit = unit.trim();
        let per_unit = if unit.is_empty() {
            // A lone number is seconds; a number after other parts lacks its unit.
            if parts > 0 {
                return Err(DurationError::MissingUnit(whole.to_string()));
            }
            if !next.is_empty() {
                return Err(DurationError::BadNumber(whole.to_string()));
            }
            NANOS_PER_SEC
        } else {
            unit_nanos(unit).ok_or_else(|| DurationError::BadUnit(unit.to_string()))?
        };
        total = total
            .checked_add(scaled_nanos(number, per_unit, whole)?)
            .ok_or_else(|| DurationError::TooLarge(whole.to_string()))?;
        parts += 1;
        rest = next;
    }
    let secs = u64::try_from(total / NANOS_PER_SEC)
        .map_err(|_| DurationError::TooLarge(whole.to_string()))?;
    // The remainder is below 10^9, so it always fits in u32.
    let sub = u32::try_from(total % NANOS_PER_SEC).unwrap_or(0);
    Ok(Duration::new(secs, sub))
}

/// Formats a duration the way [`parse_duration`] reads it back, exactly: `1h2m3.5s`, `90s` as
/// `1m30s`, `250ms`, `1.5us`, `0s`.
pub fn format_duration(duration: Duration) -> String {
    /// `value` / `per` as a decimal without trailing zeros.
    fn decimal(value: u128, per: u128) -> String {
        let (int, frac) = (value / per, value % per);
        if frac == 0 {
            return int.to_string();
        }
        let width = per.to_string().len() - 1;
        let digits = format!("{frac:0width$}");
        format!("{int}.{}", digits.trim_end_matches('0'))
    }
    let nanos = duration.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}us", decimal(nanos, 1_000));
    }
    if nanos < NANOS_PER_SEC {
        return format!("{}ms", decimal(nanos, 1_000_000));
    }
    let hours = nanos / (3_600 * NANOS_PER_SEC);
    let minutes = nanos / (60 * NANOS_PER_SEC) % 60;
    let seconds = nanos % (60 * NANOS_PER_SEC);
    let mut text = String::new();
    if hours > 0 {
        text.push_str(&format!("{hours}h"));
    }
    if minutes > 0 {
        text.push_str(&format!("{minutes}m"));
    }
    if seconds > 0 {
        text.push_str(&format!("{}s", decimal(seconds, NANOS_PER_SEC)));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration(".5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("2min"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration(" 1h "), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0ms"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("7ns"), Ok(Duration::from_nanos(7)));
        assert_eq!(parse_duration("1.5us"), Ok(Duration::from_nanos(1500)));
        assert_eq!(parse_duration("3µs"), Ok(Duration::from_micros(3)));
        assert_eq!(parse_duration("5 s"), Ok(Duration::from_secs(5)));
    }

    #[test]
    fn compound_forms() {
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(
            parse_duration("1h2m3.5s"),
            Ok(Duration::from_millis(3_723_500))
        );
        assert_eq!(parse_duration("1s250ms"), Ok(Duration::from_millis(1250)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        // Exact where a binary float is not: 0.1 h is 360 s on the dot.
        assert_eq!(parse_duration("0.1h"), Ok(Duration::from_secs(360)));
    }

    #[test]
    fn refusals() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert_eq!(parse_duration("  "), Err(DurationError::Empty));
        for bad in ["s", ".", "1.2.3s", "-5s", "1..s", "1 2"] {
            assert!(
                matches!(parse_duration(bad), Err(DurationError::BadNumber(_))),
                "{bad}: {:?}",
                parse_duration(bad)
            );
        }
        assert!(matches!(
            parse_duration("5 days"),
            Err(DurationError::BadUnit(_))
        ));
        assert!(matches!(
            parse_duration("1m30x"),
            Err(DurationError::BadUnit(_))
        ));
        assert_eq!(
            parse_duration("1m-30s"),
            Err(DurationError::BadUnit("m-".into()))
        );
        assert_eq!(
            parse_duration("1m30"),
            Err(DurationError::MissingUnit("1m30".into()))
        );
        for huge in [
            "99999999999999999999999h",
            "5124095576030432h",
            "18446744073709551616s",
            "340282366920938463463374607431768211456ns",
            "18446744073709551615s1s",
        ] {
            assert!(
                matches!(parse_duration(huge), Err(DurationError::TooLarge(_))),
                "{huge}: {:?}",
                parse_duration(huge)
            );
        }
        assert_eq!(
            parse_duration("18446744073709551615s"),
            Ok(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn formats() {
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(
            format_duration(Duration::from_millis(3_723_500)),
            "1h2m3.5s"
        );
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::from_nanos(1500)), "1.5us");
        assert_eq!(format_duration(Duration::from_nanos(7)), "7ns");
        assert_eq!(format_duration(Duration::from_secs(1)), "1s");
    }

    proptest! {
        #[test]
        fn never_panics(text in ".{0,40}") {
            let _ = parse_duration(&text);
        }

        #[test]
        fn never_panics_on_duration_like_text(text in "[0-9.µnumshi -]{0,40}") {
            let _ = parse_duration(&text);
        }

        #[test]
        fn format_round_trips(secs: u64, nanos in 0u32..1_000_000_000) {
            let d = Duration::new(secs, nanos);
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }

        #[test]
        fn parts_add_up(h in 0u64..10_000, m in 0u64..600, s in 0u64..600, ms in 0u64..10_000) {
            let text = format!("{h}h{m}m{s}s{ms}ms");
            let expected = Duration::from_secs(h * 3600 + m * 60 + s) + Duration::from_millis(ms);
            prop_assert_eq!(parse_duration(&text), Ok(expected));
        }
    }
}
