//! Quantities with units: a rate, a size and a length of time.
//!
//! Rates use tc's bit units with decimal multipliers (`kbit` = 1000 bit/s);
//! sizes use tc's byte units with binary multipliers (`kb` = 1024 bytes), so
//! a value copied from a `tc` command line means the same thing here.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::ValueError;
use crate::macros::serde_via_str;

/// Splits `"20mbit"` into `(20, "mbit")`; `None` if there are no leading digits.
fn split_number(text: &str) -> Option<(u64, &str)> {
    let end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let number = text[..end].parse().ok()?;
    Some((number, &text[end..]))
}

/// Why `unit` is not one of `units`: a known unit in the wrong case says
/// that units are case-sensitive (`"Mbit"` for `"mbit"`), as `tc` reads
/// them; anything else is simply unknown.
fn unknown_unit(unit: &str, units: &[(&str, u64)]) -> String {
    match units.iter().find(|(u, _)| u.eq_ignore_ascii_case(unit)) {
        Some((known, _)) => format!(
            "unit {unit:?} is written in the wrong case: units are case-sensitive, write {known:?}"
        ),
        None => format!("unknown unit {unit:?}"),
    }
}

/// Writes `value` with the largest unit that divides it exactly.
fn write_scaled(f: &mut fmt::Formatter<'_>, value: u64, units: &[(&str, u64)]) -> fmt::Result {
    for &(unit, scale) in units.iter().rev() {
        if value % scale == 0 && (value != 0 || scale == 1) {
            return write!(f, "{}{unit}", value / scale);
        }
    }
    write!(f, "{value}{}", units[0].0)
}

/// A contracted rate in bits per second, written `"500kbit"`, `"20mbit"`, `"1gbit"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rate(u64);

const RATE_UNITS: &[(&str, u64)] = &[
    ("bit", 1),
    ("kbit", 1_000),
    ("mbit", 1_000_000),
    ("gbit", 1_000_000_000),
];

impl Rate {
    /// A rate of `bits_per_second`; `None` for zero.
    pub fn from_bits_per_second(bits_per_second: u64) -> Option<Self> {
        (bits_per_second > 0).then_some(Self(bits_per_second))
    }

    /// Bits per second.
    pub fn bits_per_second(self) -> u64 {
        self.0
    }

    /// Bytes per second, rounded down.
    pub fn bytes_per_second(self) -> u64 {
        self.0 / 8
    }

    /// How many bytes this rate carries in `period`, rounded down.
    pub fn bytes_in(self, period: Duration) -> u64 {
        let bytes = u128::from(self.0) * period.as_nanos() / 8 / 1_000_000_000;
        u64::try_from(bytes).unwrap_or(u64::MAX)
    }
}

impl FromStr for Rate {
    type Err = ValueError;
    fn from_str(text: &str) -> Result<Self, ValueError> {
        let fail = |why: &str| {
            ValueError::new(format_args!(
                "{text:?} is not a rate: {why} (units: bit, kbit, mbit, gbit; example: \"20mbit\")"
            ))
        };
        let (number, unit) =
            split_number(text).ok_or_else(|| fail("it must start with a whole number"))?;
        let scale = match unit {
            "" => return Err(fail("it has no unit")),
            "bps" | "kbps" | "mbps" | "gbps" => {
                return Err(fail(
                    "tc reads \"bps\" as bytes per second; write bits, e.g. \"mbit\"",
                ));
            }
            _ => match RATE_UNITS.iter().find(|(u, _)| *u == unit) {
                Some((_, s)) => *s,
                None => return Err(fail(&unknown_unit(unit, RATE_UNITS))),
            },
        };
        let bits = number
            .checked_mul(scale)
            .ok_or_else(|| fail("it is too large"))?;
        Self::from_bits_per_second(bits).ok_or_else(|| fail("it must be above zero"))
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_scaled(f, self.0, RATE_UNITS)
    }
}

serde_via_str!(Rate);

/// A size in bytes, written `"1500b"`, `"64kb"` (64 × 1024), `"1mb"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(u64);

const SIZE_UNITS: &[(&str, u64)] = &[("b", 1), ("kb", 1 << 10), ("mb", 1 << 20), ("gb", 1 << 30)];

impl ByteSize {
    /// A size of `bytes`; `None` for zero.
    pub fn from_bytes(bytes: u64) -> Option<Self> {
        (bytes > 0).then_some(Self(bytes))
    }

    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for ByteSize {
    type Err = ValueError;
    fn from_str(text: &str) -> Result<Self, ValueError> {
        let fail = |why: &str| {
            ValueError::new(format_args!(
                "{text:?} is not a size: {why} (units: b, kb, mb, gb, where kb = 1024 bytes; example: \"64kb\")"
            ))
        };
        let (number, unit) =
            split_number(text).ok_or_else(|| fail("it must start with a whole number"))?;
        if unit.is_empty() {
            return Err(fail("it has no unit"));
        }
        let scale = match SIZE_UNITS.iter().find(|(u, _)| *u == unit) {
            Some((_, s)) => *s,
            None => return Err(fail(&unknown_unit(unit, SIZE_UNITS))),
        };
        let bytes = number
            .checked_mul(scale)
            .ok_or_else(|| fail("it is too large"))?;
        Self::from_bytes(bytes).ok_or_else(|| fail("it must be above zero"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_scaled(f, self.0, SIZE_UNITS)
    }
}

serde_via_str!(ByteSize);

/// A length of time above zero, written `"500ms"`, `"30s"`, `"5m"`, `"1h"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Period(Duration);

const PERIOD_UNITS: &[(&str, u64)] = &[("ms", 1), ("s", 1_000), ("m", 60_000), ("h", 3_600_000)];

impl Period {
    /// `seconds` seconds (the defaults are written with it).
    pub const fn from_secs(seconds: u64) -> Self {
        Self(Duration::from_secs(seconds))
    }

    /// `millis` milliseconds.
    pub const fn from_millis(millis: u64) -> Self {
        Self(Duration::from_millis(millis))
    }

    /// The length as a `Duration`.
    pub fn duration(self) -> Duration {
        self.0
    }
}

impl FromStr for Period {
    type Err = ValueError;
    fn from_str(text: &str) -> Result<Self, ValueError> {
        let fail = |why: &str| {
            ValueError::new(format_args!(
                "{text:?} is not a duration: {why} (units: ms, s, m, h; example: \"30s\")"
            ))
        };
        let (number, unit) =
            split_number(text).ok_or_else(|| fail("it must start with a whole number"))?;
        if unit.is_empty() {
            return Err(fail("it has no unit"));
        }
        let scale = match PERIOD_UNITS.iter().find(|(u, _)| *u == unit) {
            Some((_, s)) => *s,
            None => return Err(fail(&unknown_unit(unit, PERIOD_UNITS))),
        };
        let millis = number
            .checked_mul(scale)
            .ok_or_else(|| fail("it is too large"))?;
        if millis == 0 {
            return Err(fail("it must be above zero"));
        }
        Ok(Self(Duration::from_millis(millis)))
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let millis = u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX);
        write_scaled(f, millis, PERIOD_UNITS)
    }
}

serde_via_str!(Period);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unit_in_the_wrong_case_says_units_are_case_sensitive_and_lists_them() {
        let err = "20Mbit".parse::<Rate>().unwrap_err().to_string();
        assert!(err.contains("case-sensitive"), "{err}");
        assert!(err.contains("write \"mbit\""), "{err}");
        assert!(err.contains("units: bit, kbit, mbit, gbit"), "{err}");
        let err = "64KB".parse::<ByteSize>().unwrap_err().to_string();
        assert!(err.contains("case-sensitive, write \"kb\""), "{err}");
        let err = "30S".parse::<Period>().unwrap_err().to_string();
        assert!(err.contains("case-sensitive, write \"s\""), "{err}");
        // A unit that is wrong in any case is just unknown.
        let err = "20mbits".parse::<Rate>().unwrap_err().to_string();
        assert!(err.contains("unknown unit \"mbits\""), "{err}");
        assert!(!err.contains("case"), "{err}");
    }

    #[test]
    fn rates() {
        let cases = [
            ("20mbit", 20_000_000),
            ("1gbit", 1_000_000_000),
            ("500kbit", 500_000),
            ("1bit", 1),
            ("1500kbit", 1_500_000),
        ];
        for (text, bits) in cases {
            let rate: Rate = text.parse().unwrap();
            assert_eq!(rate.bits_per_second(), bits, "{text}");
            assert_eq!(rate.to_string().parse::<Rate>().unwrap(), rate);
        }
        assert_eq!("1500kbit".parse::<Rate>().unwrap().to_string(), "1500kbit");
        assert_eq!(
            "20mbit".parse::<Rate>().unwrap().bytes_per_second(),
            2_500_000
        );
        let rate: Rate = "20mbit".parse().unwrap();
        assert_eq!(rate.bytes_in(Duration::from_millis(10)), 25_000);
    }

    #[test]
    fn rate_errors_name_value_and_fix() {
        let err = |t: &str| t.parse::<Rate>().unwrap_err().to_string();
        assert_eq!(
            err("20"),
            "\"20\" is not a rate: it has no unit (units: bit, kbit, mbit, gbit; example: \"20mbit\")"
        );
        assert!(err("20mbps").contains("bytes per second"));
        assert!(err("0mbit").contains("above zero"));
        assert!(err("mbit").contains("whole number"));
        assert!(err("1.5mbit").contains("unknown unit"));
        assert!(err("20Mbit").contains("case-sensitive"));
        assert!(err("99999999999999gbit").contains("too large"));
        assert!(err("-5mbit").contains("whole number"));
    }

    #[test]
    fn sizes() {
        assert_eq!("64kb".parse::<ByteSize>().unwrap().bytes(), 65_536);
        assert_eq!("1500b".parse::<ByteSize>().unwrap().bytes(), 1500);
        assert_eq!("2mb".parse::<ByteSize>().unwrap().bytes(), 2 << 20);
        assert_eq!("1gb".parse::<ByteSize>().unwrap().bytes(), 1 << 30);
        assert_eq!(ByteSize::from_bytes(65_536).unwrap().to_string(), "64kb");
        assert_eq!(ByteSize::from_bytes(3000).unwrap().to_string(), "3000b");
        let err = "64k".parse::<ByteSize>().unwrap_err().to_string();
        assert_eq!(
            err,
            "\"64k\" is not a size: unknown unit \"k\" (units: b, kb, mb, gb, where kb = 1024 bytes; example: \"64kb\")"
        );
        assert!(
            "64".parse::<ByteSize>()
                .unwrap_err()
                .to_string()
                .contains("no unit")
        );
        assert!(
            "0kb"
                .parse::<ByteSize>()
                .unwrap_err()
                .to_string()
                .contains("above zero")
        );
        assert!(ByteSize::from_bytes(0).is_none());
    }

    #[test]
    fn periods() {
        assert_eq!(
            "30s".parse::<Period>().unwrap().duration(),
            Duration::from_secs(30)
        );
        assert_eq!(
            "5m".parse::<Period>().unwrap().duration(),
            Duration::from_secs(300)
        );
        assert_eq!(
            "1h".parse::<Period>().unwrap().duration(),
            Duration::from_secs(3600)
        );
        assert_eq!(
            "250ms".parse::<Period>().unwrap().duration(),
            Duration::from_millis(250)
        );
        assert_eq!(Period::from_secs(3600).to_string(), "1h");
        assert_eq!(Period::from_secs(90).to_string(), "90s");
        let err = "30".parse::<Period>().unwrap_err().to_string();
        assert_eq!(
            err,
            "\"30\" is not a duration: it has no unit (units: ms, s, m, h; example: \"30s\")"
        );
        assert!(
            "0s".parse::<Period>()
                .unwrap_err()
                .to_string()
                .contains("above zero")
        );
        assert!(
            "1d".parse::<Period>()
                .unwrap_err()
                .to_string()
                .contains("unknown unit")
        );
        assert!(
            "1h30m"
                .parse::<Period>()
                .unwrap_err()
                .to_string()
                .contains("unknown unit")
        );
    }
}
