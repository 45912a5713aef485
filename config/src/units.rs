//! Human-readable value types used in the configuration file: byte sizes
//! (`"16MiB"`) and durations in milliseconds (`"10s"`).
//!
//! It also holds the `""`-means-unset convention for optional strings and
//! paths ([`empty_as_none`]).
//!
//! Both size and duration accept a bare integer too, so that generated configs and old habits
//! (`max_frame_size = 1048576`) keep working, and both serialize back to the
//! largest unit that represents the value exactly, so that
//! `ferromq --print-default-config` reads like the hand-written example.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A size in bytes.
///
/// Parses from an integer (bytes) or a string made of a number and an optional
/// unit, with optional whitespace between: `"1024"`, `"512KiB"`, `"64 MiB"`,
/// `"10GB"`. Binary units (`KiB`, `MiB`, `GiB`, `TiB`) are powers of 1024;
/// decimal units (`KB`, `MB`, `GB`, `TB`) are powers of 1000, as their SI names
/// say. Units are case-insensitive; `B` means bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

const KIB: u64 = 1024;
const MIB: u64 = KIB * 1024;
const GIB: u64 = MIB * 1024;
const TIB: u64 = GIB * 1024;

impl ByteSize {
    /// `n` kibibytes.
    pub const fn kib(n: u64) -> Self {
        Self(n * KIB)
    }

    /// `n` mebibytes.
    pub const fn mib(n: u64) -> Self {
        Self(n * MIB)
    }

    /// `n` gibibytes.
    pub const fn gib(n: u64) -> Self {
        Self(n * GIB)
    }

    /// The size in bytes.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The size in bytes as a `usize`, saturating on 32-bit targets.
    pub fn as_usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }

    /// Parses the string form described on the type.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (number, unit) = split_number(text)?;
        let multiplier = match unit.to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kib" => KIB,
            "mib" => MIB,
            "gib" => GIB,
            "tib" => TIB,
            "kb" => 1000,
            "mb" => 1_000_000,
            "gb" => 1_000_000_000,
            "tb" => 1_000_000_000_000,
            _ => {
                return Err(format!(
                    "`{text}`: unknown size unit `{unit}` (use B, KiB, MiB, GiB, TiB, KB, MB, GB or TB)"
                ))
            }
        };
        number
            .checked_mul(multiplier)
            .map(Self)
            .ok_or_else(|| format!("`{text}` is too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The unit giving the shortest exact number, binary on a tie:
        // 16777216 is "16MiB", 1000000 is "1MB".
        let n = self.0;
        let units = [
            (TIB, "TiB"),
            (1_000_000_000_000, "TB"),
            (GIB, "GiB"),
            (1_000_000_000, "GB"),
            (MIB, "MiB"),
            (1_000_000, "MB"),
            (KIB, "KiB"),
            (1000, "KB"),
            (1, "B"),
        ];
        let (size, unit) = units
            .into_iter()
            .filter(|(size, _)| n != 0 && n % size == 0)
            .min_by_key(|(size, _)| n / size)
            .unwrap_or((1, "B"));
        write!(f, "{}{unit}", n / size)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ByteSizeVisitor;

        impl Visitor<'_> for ByteSizeVisitor {
            type Value = ByteSize;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte count or a size string such as \"16MiB\"")
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("a size cannot be negative ({v})")))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                ByteSize::parse(v).map_err(E::custom)
            }
        }

        deserializer.deserialize_any(ByteSizeVisitor)
    }
}

/// A duration with millisecond resolution.
///
/// Parses from an integer (milliseconds) or a string made of a number and a
/// unit: `"500ms"`, `"10s"`, `"2m"`, `"1h"`. A bare number in a string is
/// milliseconds too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Millis(pub u64);

impl Millis {
    /// `n` seconds.
    pub const fn secs(n: u64) -> Self {
        Self(n * 1000)
    }

    /// The duration in milliseconds.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The duration as a [`Duration`].
    pub const fn as_duration(self) -> Duration {
        Duration::from_millis(self.0)
    }

    /// Parses the string form described on the type.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (number, unit) = split_number(text)?;
        let multiplier = match unit {
            "" | "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => {
                return Err(format!(
                    "`{text}`: unknown duration unit `{unit}` (use ms, s, m or h)"
                ))
            }
        };
        number
            .checked_mul(multiplier)
            .map(Self)
            .ok_or_else(|| format!("`{text}` is too large"))
    }
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (size, unit) in [(3_600_000, "h"), (60_000, "m"), (1000, "s")] {
            if n != 0 && n % size == 0 {
                return write!(f, "{}{unit}", n / size);
            }
        }
        write!(f, "{n}ms")
    }
}

impl Serialize for Millis {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Millis {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MillisVisitor;

        impl Visitor<'_> for MillisVisitor {
            type Value = Millis;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("milliseconds or a duration string such as \"10s\"")
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Millis, E> {
                Ok(Millis(v))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Millis, E> {
                u64::try_from(v)
                    .map(Millis)
                    .map_err(|_| E::custom(format!("a duration cannot be negative ({v})")))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Millis, E> {
                Millis::parse(v).map_err(E::custom)
            }
        }

        deserializer.deserialize_any(MillisVisitor)
    }
}

/// Serde adapter for `Option<String>` / `Option<PathBuf>` fields where the
/// file says `""` for "unset" (a disabled listener, no TLS certificate).
///
/// `None` serializes as `""` rather than being left out, because leaving it
/// out would make the re-parsed value fall back to the default (which may be
/// `Some`), so `--print-default-config` output would not round-trip.
pub(crate) mod empty_as_none {
    use std::path::Path;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<T, S>(value: &Option<T>, serializer: S) -> Result<S::Ok, S::Error>
    where
        T: AsRef<Path>,
        S: Serializer,
    {
        match value {
            None => serializer.serialize_str(""),
            Some(v) => match v.as_ref().to_str() {
                Some(text) => serializer.serialize_str(text),
                None => Err(serde::ser::Error::custom(format!(
                    "{} is not valid UTF-8",
                    v.as_ref().display()
                ))),
            },
        }
    }

    pub(crate) fn deserialize<'de, T, D>(deserializer: D) -> Result<Option<T>, D::Error>
    where
        T: From<String>,
        D: Deserializer<'de>,
    {
        let text = String::deserialize(deserializer)?;
        Ok((!text.is_empty()).then(|| T::from(text)))
    }
}

/// Splits `"64 MiB"` into `(64, "MiB")`. Only whole numbers are accepted:
/// fractions of a byte or of a millisecond would be silently rounded.
fn split_number(text: &str) -> Result<(u64, &str), String> {
    let trimmed = text.trim();
    let digits_end = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(digits_end);
    if digits.is_empty() {
        return Err(format!("`{text}` does not start with a whole number"));
    }
    let number = digits
        .parse::<u64>()
        .map_err(|_| format!("`{text}` is too large"))?;
    Ok((number, unit.trim_start()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_size_parses_every_unit_form() {
        assert_eq!(ByteSize::parse("1024"), Ok(ByteSize(1024)));
        assert_eq!(ByteSize::parse("16MiB"), Ok(ByteSize(16 * MIB)));
        assert_eq!(ByteSize::parse("64 MiB"), Ok(ByteSize(64 * MIB)));
        assert_eq!(ByteSize::parse("512KiB"), Ok(ByteSize(512 * KIB)));
        assert_eq!(ByteSize::parse("10GB"), Ok(ByteSize(10_000_000_000)));
        assert_eq!(ByteSize::parse("2 gib"), Ok(ByteSize(2 * GIB)));
        assert_eq!(ByteSize::parse("7B"), Ok(ByteSize(7)));
        assert_eq!(ByteSize::parse("1TiB"), Ok(ByteSize(TIB)));
    }

    #[test]
    fn byte_size_rejects_garbage() {
        assert!(ByteSize::parse("").is_err());
        assert!(ByteSize::parse("MiB").is_err());
        assert!(ByteSize::parse("12 parsecs").is_err());
        assert!(ByteSize::parse("1.5MiB").is_err());
        assert!(ByteSize::parse("-1").is_err());
        assert!(ByteSize::parse("99999999999TiB").is_err());
    }

    #[test]
    fn byte_size_display_round_trips() {
        for n in [
            0,
            1,
            1023,
            1024,
            1536,
            16 * MIB,
            10 * GIB,
            3 * TIB,
            10_000_000_000,
        ] {
            let text = ByteSize(n).to_string();
            assert_eq!(ByteSize::parse(&text), Ok(ByteSize(n)), "{text}");
        }
        assert_eq!(ByteSize(16 * MIB).to_string(), "16MiB");
        assert_eq!(ByteSize(1536).to_string(), "1536B");
        assert_eq!(ByteSize(1_000_000).to_string(), "1MB");
        assert_eq!(ByteSize(10_000_000_000).to_string(), "10GB");
        assert_eq!(ByteSize(0).to_string(), "0B");
    }

    #[test]
    fn millis_parses_every_unit_form() {
        assert_eq!(Millis::parse("500ms"), Ok(Millis(500)));
        assert_eq!(Millis::parse("10s"), Ok(Millis(10_000)));
        assert_eq!(Millis::parse("2m"), Ok(Millis(120_000)));
        assert_eq!(Millis::parse("1h"), Ok(Millis(3_600_000)));
        assert_eq!(Millis::parse("250"), Ok(Millis(250)));
        assert_eq!(Millis::parse("3 s"), Ok(Millis(3000)));
        assert!(Millis::parse("10 fortnights").is_err());
        assert!(Millis::parse("s").is_err());
        assert!(Millis::parse("1.5s").is_err());
    }

    #[test]
    fn millis_display_round_trips() {
        for n in [0, 2, 999, 1000, 1500, 60_000, 90_000, 3_600_000] {
            let text = Millis(n).to_string();
            assert_eq!(Millis::parse(&text), Ok(Millis(n)), "{text}");
        }
        assert_eq!(Millis(5000).to_string(), "5s");
        assert_eq!(Millis(0).to_string(), "0ms");
        assert_eq!(Millis(2).as_duration(), Duration::from_millis(2));
    }
}
