//! Go-style durations for the binary's flags (`90s`, `10m`, `168h`, `1h30m`, `250ms`), as the
//! operator's CRD writes them. A few lines of its own rather than the operator's parser: the
//! simulator depends on nothing of the operator.

use std::time::Duration;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid duration {input:?}: {reason} (write e.g. 90s, 10m, 168h or 1h30m)")]
pub struct DurationError {
    input: String,
    reason: &'static str,
}

/// Whole numbers with the units `ms`, `s`, `m` and `h`, one or more in a row.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let fail = |reason| DurationError {
        input: input.to_owned(),
        reason,
    };
    if input.is_empty() {
        return Err(fail("empty"));
    }
    let mut total = Duration::ZERO;
    let mut rest = input;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return Err(fail("expected a whole number"));
        }
        let value: u64 = rest[..digits]
            .parse()
            .map_err(|_| fail("number too large"))?;
        rest = &rest[digits..];
        let (unit, millis_per_unit) = ["ms", "s", "m", "h"]
            .into_iter()
            .zip([1, 1_000, 60_000, 3_600_000])
            .find(|(unit, _)| rest.starts_with(unit))
            .ok_or_else(|| fail("unknown or missing unit (use ms, s, m or h)"))?;
        let millis = value
            .checked_mul(millis_per_unit)
            .ok_or_else(|| fail("out of range"))?;
        total = total
            .checked_add(Duration::from_millis(millis))
            .ok_or_else(|| fail("out of range"))?;
        rest = &rest[unit.len()..];
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_units_the_flags_use() {
        for (text, secs) in [
            ("90s", 90),
            ("10m", 600),
            ("168h", 604_800),
            ("1h30m", 5_400),
        ] {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs(secs)),
                "{text}"
            );
        }
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn refuses_what_is_not_a_duration() {
        for text in [
            "",
            "10",
            "s",
            "1.5h",
            "-1s",
            "10d",
            "1h 30m",
            "99999999999999999999s",
        ] {
            assert!(parse_duration(text).is_err(), "{text:?} was accepted");
        }
    }
}
