//! Sizes ("512 KiB", "2 GiB") and durations ("30s", "24h", "30d") as written
//! in the config file.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// A byte count written as a number or as "N unit" (B, KB, KiB, MB, MiB, GB, GiB, TB, TiB).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

/// A duration written as "N unit" (ms, s, m, h, d).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span(pub Duration);

/// Parses a size such as "2 GiB" or "512KiB".
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (write e.g. \"512 KiB\" or \"2 GiB\")"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" | "kB" => 1000,
        "KiB" => 1 << 10,
        "MB" => 1000 * 1000,
        "MiB" => 1 << 20,
        "GB" => 1000 * 1000 * 1000,
        "GiB" => 1 << 30,
        "TB" => 1000 * 1000 * 1000 * 1000,
        "TiB" => 1 << 40,
        other => {
            return Err(format!(
                "unknown size unit {other:?} in {s:?} (use B, KB, KiB, MB, MiB, GB, GiB, TB or TiB)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

/// A rate of events written as "N/unit" (`20/s`, `600/min`; units s,
/// second, min, minute, h, hour, d, day): `max-connection-rate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Events per `per`.
    pub count: u32,
    /// The time unit.
    pub per: RateUnit,
}

/// The time unit of a [`Rate`], as nftables names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateUnit {
    /// Per second.
    Second,
    /// Per minute.
    Minute,
    /// Per hour.
    Hour,
    /// Per day.
    Day,
}

impl RateUnit {
    /// The unit's name in nftables' `limit rate N/UNIT`.
    pub fn as_str(self) -> &'static str {
        match self {
            RateUnit::Second => "second",
            RateUnit::Minute => "minute",
            RateUnit::Hour => "hour",
            RateUnit::Day => "day",
        }
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, self.per.as_str())
    }
}

/// Parses a rate such as "20/s" or "600/minute".
pub fn parse_rate(s: &str) -> Result<Rate, String> {
    let bad = || format!("{s:?} is not a rate (write e.g. \"20/s\" or \"600/min\")");
    let (num, unit) = s.trim().split_once('/').ok_or_else(bad)?;
    let count: u32 = num.trim().parse().map_err(|_| bad())?;
    let per = match unit.trim() {
        "s" | "sec" | "second" => RateUnit::Second,
        "m" | "min" | "minute" => RateUnit::Minute,
        "h" | "hour" => RateUnit::Hour,
        "d" | "day" => RateUnit::Day,
        _ => return Err(bad()),
    };
    if count == 0 {
        return Err(format!(
            "{s:?}: a rate must be at least 1 per {}",
            per.as_str()
        ));
    }
    Ok(Rate { count, per })
}

/// Parses a duration such as "30s", "24h" or "500ms".
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (write e.g. \"30s\", \"24h\" or \"30d\")"))?;
    let secs = |m: u64| {
        n.checked_mul(m)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("duration {s:?} is too large"))
    };
    match unit.trim() {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => secs(1),
        "m" | "min" => secs(60),
        "h" => secs(3600),
        "d" => secs(86400),
        "" => Err(format!("duration {s:?} needs a unit (ms, s, m, h or d)")),
        other => Err(format!(
            "unknown duration unit {other:?} in {s:?} (use ms, s, m, h or d)"
        )),
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"512 KiB\" or \"2 GiB\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                parse_size(v).map(ByteSize).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s).map(Span).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_and_decimal_units() {
        assert_eq!(parse_size("2 GiB"), Ok(2 << 30));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("5 MB"), Ok(5_000_000));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("2 GB2").is_err());
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999 TiB").is_err());
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86400)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("3 fortnights").is_err());
    }

    #[test]
    fn rates_parse_with_units() {
        let r = |count, per| Ok(Rate { count, per });
        assert_eq!(parse_rate("20/s"), r(20, RateUnit::Second));
        assert_eq!(parse_rate("600 / minute"), r(600, RateUnit::Minute));
        assert_eq!(parse_rate("5/h"), r(5, RateUnit::Hour));
        assert_eq!(parse_rate("20/s").unwrap().to_string(), "20/second");
        assert!(parse_rate("0/s").is_err());
        assert!(parse_rate("20").is_err());
        assert!(parse_rate("20/fortnight").is_err());
        assert!(parse_rate("-1/s").is_err());
    }
}
