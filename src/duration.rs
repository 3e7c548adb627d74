//! Go-style durations (`90s`, `10m`, `1h30m`) as Kubernetes users write them in specs and on
//! command lines (kubectl's `--duration` takes the same form).

use std::time::Duration;

/// A duration string that does not follow the Go format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason}")]
pub struct DurationParseError {
    input: String,
    reason: &'static str,
}

const OUT_OF_RANGE: &str = "out of range";

/// Parses a Go-style duration made of number+unit pairs, with units `ms`, `s`, `m` and `h`.
/// The CRD schema already restricts the format; this also parses command-line flags.
pub fn parse_duration(input: &str) -> Result<Duration, DurationParseError> {
    let err = |reason| DurationParseError {
        input: input.to_owned(),
        reason,
    };
    if input.is_empty() {
        return Err(err("empty"));
    }
    let mut total = 0f64;
    let mut rest = input;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| err("number without a unit"))?;
        if number_len == 0 {
            return Err(err("expected a number"));
        }
        let value: f64 = rest[..number_len]
            .parse()
            .map_err(|_| err("malformed number"))?;
        rest = &rest[number_len..];
        let (seconds_per_unit, unit_len) = if rest.starts_with("ms") {
            (0.001, 2)
        } else if rest.starts_with('s') {
            (1.0, 1)
        } else if rest.starts_with('m') {
            (60.0, 1)
        } else if rest.starts_with('h') {
            (3600.0, 1)
        } else {
            return Err(err("unknown unit (use ms, s, m or h)"));
        };
        total += value * seconds_per_unit;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| err(OUT_OF_RANGE))
}

/// The pattern the CRD schema gives every duration field: the same grammar as
/// [`parse_duration`], so the apiserver refuses what the operator could not read.
pub const PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$";

/// The longest duration a spec field holds: longer values are clamped to it. The schema's
/// pattern admits numbers of any size, and a value the operator could not deserialize would make
/// the watch's whole list fail for every resource; a century is "never" in practice and still
/// adds to an `Instant` without overflow.
pub const MAX: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// A Go-style duration in a spec (`10m`, `1h30m`): parsed once, when the object is read, so code
/// that uses it holds a [`Duration`]. Serialized in Go's canonical form (`1h30m0s`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GoDuration(Duration);

impl GoDuration {
    pub const fn from_secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }

    pub const fn get(self) -> Duration {
        self.0
    }
}

impl From<Duration> for GoDuration {
    fn from(value: Duration) -> Self {
        Self(value.min(MAX))
    }
}

impl From<GoDuration> for Duration {
    fn from(value: GoDuration) -> Self {
        value.0
    }
}

impl std::str::FromStr for GoDuration {
    type Err = DurationParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match parse_duration(s) {
            Ok(d) => Ok(Self::from(d)),
            // Well-formed but beyond `Duration`: clamped like any other long value.
            Err(e) if e.reason == OUT_OF_RANGE => Ok(Self(MAX)),
            Err(e) => Err(e),
        }
    }
}

impl std::fmt::Display for GoDuration {
    /// Go's `time.Duration.String()` form: `250ms`, `1.5s`, `10m0s`, `1h30m0s`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let total = self.0;
        if total.is_zero() {
            return f.write_str("0s");
        }
        if total < Duration::from_secs(1) {
            // From whole nanoseconds: `as_secs_f64() * 1000.0` prints 0.1s as 100.00000000000001ms.
            let ms = total.as_nanos() as f64 / 1e6;
            return write!(f, "{ms}ms");
        }
        let secs = total.as_secs();
        let (h, m) = (secs / 3600, (secs % 3600) / 60);
        let s = (secs % 60) as f64 + f64::from(total.subsec_nanos()) / 1e9;
        if h > 0 {
            write!(f, "{h}h")?;
        }
        if h > 0 || m > 0 {
            write!(f, "{m}m")?;
        }
        write!(f, "{s}s")
    }
}

impl serde::Serialize for GoDuration {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for GoDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for GoDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "GoDuration".into()
    }

    // Inline: structural CRD schemas take no references.
    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "pattern": PATTERN })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_and_compound_units() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
    }

    #[test]
    fn refuses_what_go_would_refuse() {
        for bad in ["", "10", "m", "10d", "1h-5m", " 5s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn displays_in_go_canonical_form_and_reads_it_back() {
        for (text, go) in [
            ("10m", "10m0s"),
            ("1h30m", "1h30m0s"),
            ("90s", "1m30s"),
            ("250ms", "250ms"),
            ("1.5s", "1.5s"),
            ("0s", "0s"),
            ("720h", "720h0m0s"),
        ] {
            let d: GoDuration = text.parse().expect("valid");
            assert_eq!(d.to_string(), go, "{text}");
            assert_eq!(go.parse::<GoDuration>(), Ok(d), "{go} reads back");
        }
    }

    #[test]
    fn serde_round_trips_and_refuses_malformed_values() {
        let d: GoDuration = serde_json::from_str("\"5s\"").expect("valid");
        assert_eq!(d.get(), Duration::from_secs(5));
        assert_eq!(serde_json::to_string(&d).expect("serializes"), "\"5s\"");
        let bad = serde_json::from_str::<GoDuration>("\"5 minutes\"").expect_err("refused");
        assert!(bad.to_string().contains("5 minutes"), "{bad}");
    }

    /// The schema admits digits without bound; a value the operator cannot hold must still
    /// deserialize, or one object would break the watch of all.
    #[test]
    fn huge_values_are_clamped_not_refused() {
        let d: GoDuration = "99999999999999999999999h".parse().expect("clamped");
        assert_eq!(d.get(), MAX);
    }

    #[test]
    fn schema_is_an_inline_string_with_the_pattern() {
        let schema = schemars::schema_for!(GoDuration);
        let value = serde_json::to_value(&schema).expect("schema serializes");
        assert_eq!(value["type"], "string");
        assert_eq!(value["pattern"], PATTERN);
    }

    #[test]
    fn error_names_the_input() {
        let err = parse_duration("10d").unwrap_err();
        assert!(err.to_string().contains("\"10d\""), "{err}");
    }
}
