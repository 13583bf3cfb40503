//! Durations on the command line: `250ms`, `5s`, `1.5s`, `2m`, `1h`, or a bare number of seconds.

use std::fmt;
use std::time::Duration;

/// Why a duration argument was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DurationError {
    /// The text was empty.
    Empty,
    /// The number part was missing or not a decimal number.
    BadNumber(String),
    /// The unit was not one of `ms`, `s`, `m`, `h`.
    BadUnit(String),
    /// The value does not fit in a `Duration` (or is not finite).
    TooLarge(String),
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DurationError::Empty => write!(f, "empty duration (try `5s` or `250ms`)"),
            DurationError::BadNumber(s) => {
                write!(f, "`{s}` is not a duration (try `5s`, `1.5s` or `250ms`)")
            }
            DurationError::BadUnit(u) => {
                write!(f, "unknown duration unit `{u}` (use ms, s, m or h)")
            }
            DurationError::TooLarge(s) => write!(f, "duration `{s}` is too large"),
        }
    }
}

impl std::error::Error for DurationError {}

/// Parses a duration: a decimal number followed by an optional unit (`ms`, `s`, `m`, `h`;
/// no unit means seconds). Surrounding whitespace is ignored.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return Err(DurationError::BadNumber(text.to_string()));
    }
    // Nanoseconds per unit: whole numbers are converted exactly, decimals through f64.
    let nanos_per_unit: u64 = match unit.trim() {
        "ms" => 1_000_000,
        "" | "s" => 1_000_000_000,
        "m" | "min" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        other => return Err(DurationError::BadUnit(other.to_string())),
    };
    if !number.contains('.') {
        let whole: u64 = number
            .parse()
            .map_err(|_| DurationError::TooLarge(text.to_string()))?;
        let nanos = u128::from(whole) * u128::from(nanos_per_unit);
        let secs = u64::try_from(nanos / 1_000_000_000)
            .map_err(|_| DurationError::TooLarge(text.to_string()))?;
        // The remainder is below 1e9, so it always fits in u32.
        let sub = u32::try_from(nanos % 1_000_000_000).unwrap_or(0);
        return Ok(Duration::new(secs, sub));
    }
    let value: f64 = number
        .parse()
        .map_err(|_| DurationError::BadNumber(text.to_string()))?;
    // u64 -> f64 loses precision only above 2^53 ns-per-unit, far beyond the units above.
    Duration::try_from_secs_f64(value * nanos_per_unit as f64 / 1e9)
        .map_err(|_| DurationError::TooLarge(text.to_string()))
}

/// Formats a duration the way [`parse_duration`] reads it back (milliseconds when not whole seconds).
pub fn format_duration(duration: Duration) -> String {
    if duration.subsec_millis() == 0 && duration.subsec_nanos() == 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{}ms", duration.as_millis())
    }
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
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration(" 1h "), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0ms"), Ok(Duration::ZERO));
    }

    #[test]
    fn refusals() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert!(matches!(
            parse_duration("s"),
            Err(DurationError::BadNumber(_))
        ));
        assert!(matches!(
            parse_duration("."),
            Err(DurationError::BadNumber(_))
        ));
        assert!(matches!(
            parse_duration("1.2.3s"),
            Err(DurationError::BadNumber(_))
        ));
        assert!(matches!(
            parse_duration("5 days"),
            Err(DurationError::BadUnit(_))
        ));
        assert!(matches!(
            parse_duration("-5s"),
            Err(DurationError::BadNumber(_))
        ));
        assert!(matches!(
            parse_duration("99999999999999999999999h"),
            Err(DurationError::TooLarge(_))
        ));
    }

    proptest! {
        #[test]
        fn never_panics(text in ".{0,24}") {
            let _ = parse_duration(&text);
        }

        #[test]
        fn format_round_trips(ms in 0u64..10_000_000_000) {
            let d = Duration::from_millis(ms);
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }
}
