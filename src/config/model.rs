//! The file formats as serde types: exactly what may be written, nothing more.
//!
//! Every struct denies unknown keys; no `flatten`, no internally tagged enums (both silently
//! defeat `deny_unknown_fields`). Values that validation must point at are [`Spanned`], so an
//! error names `file:line:col`. Turning these into the run-time model happens in `validate`.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use serde_saphyr::Spanned;

// The JSON Schema (`canaryd schema`) is derived from these types: `Spanned<T>` fields say their
// schema with `#[schemars(with = ...)]`, in the words of `schema` (`Text`: a string the decoder
// also reads from a number or boolean; `Flag`, `Count`: likewise for booleans and integers).

/// A humantime duration: `30s`, `5m`, `1h30m`, `250ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as 30s, 5m or 1h30m")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Dur, E> {
                humantime::parse_duration(s.trim()).map(Dur).map_err(|e| {
                    E::custom(format!(
                        "invalid duration {s:?}: {e} (write e.g. 30s, 5m, 1h30m)"
                    ))
                })
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Dur, E> {
                Err(E::custom(format!(
                    "invalid duration {n}: a unit is required (write e.g. {n}s)"
                )))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Dur, E> {
                Err(E::custom(format!(
                    "invalid duration {n}: a unit is required (write e.g. {n}s)"
                )))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Dur, E> {
                Err(E::custom(format!(
                    "invalid duration {n}: a unit is required (write e.g. {n}s)"
                )))
            }
        }
        d.deserialize_any(V)
    }
}

/// A byte size: `1048576`, `512KiB`, `1MiB`, `10MB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size such as 1MiB, 512KiB or a number of bytes")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(n))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<ByteSize, E> {
                let t = s.trim();
                let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
                let (num, unit) = t.split_at(split);
                let mult: u64 = match unit.trim() {
                    "" | "B" => 1,
                    "KB" | "kB" => 1000,
                    "KiB" => 1024,
                    "MB" => 1000 * 1000,
                    "MiB" => 1024 * 1024,
                    "GB" => 1000 * 1000 * 1000,
                    "GiB" => 1024 * 1024 * 1024,
                    other => return Err(E::custom(format!("invalid size {s:?}: unknown unit {other:?} (use B, KiB, MiB, GiB, KB, MB, GB)"))),
                };
                num.parse::<u64>()
                    .ok()
                    .and_then(|n| n.checked_mul(mult))
                    .map(ByteSize)
                    .ok_or_else(|| E::custom(format!("invalid size {s:?}")))
            }
        }
        d.deserialize_any(V)
    }
}

/// One accepted status: `200`, `"2xx"`, `"200-299"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusRange(pub u16, pub u16);

/// `status: 200`, `status: [200, 204]`, `status: "2xx"`, `status: ["200-299", 301]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSpec(pub Vec<StatusRange>);

fn status_from_str<E: de::Error>(s: &str) -> Result<StatusRange, E> {
    let t = s.trim();
    let bad = || {
        E::custom(format!(
            "invalid status {s:?}: use a code (200), a class (2xx) or a range (200-299)"
        ))
    };
    if t.len() == 3 && t.ends_with("xx") {
        let d = t[..1].parse::<u16>().map_err(|_| bad())?;
        if !(1..=5).contains(&d) {
            return Err(bad());
        }
        return Ok(StatusRange(d * 100, d * 100 + 99));
    }
    let (lo, hi) = match t.split_once('-') {
        Some((a, b)) => (
            a.trim().parse::<u16>().map_err(|_| bad())?,
            b.trim().parse::<u16>().map_err(|_| bad())?,
        ),
        None => {
            let n = t.parse::<u16>().map_err(|_| bad())?;
            (n, n)
        }
    };
    status_range(lo, hi, s)
}

fn status_range<E: de::Error>(
    lo: u16,
    hi: u16,
    shown: impl fmt::Display,
) -> Result<StatusRange, E> {
    if !(100..=599).contains(&lo) || !(100..=599).contains(&hi) || lo > hi {
        return Err(E::custom(format!(
            "invalid status {shown}: codes are 100 to 599, ranges low-high"
        )));
    }
    Ok(StatusRange(lo, hi))
}

impl<'de> Deserialize<'de> for StatusSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StatusSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a status code, class (2xx), range (200-299) or a list of them")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<StatusSpec, E> {
                let n = u16::try_from(n).map_err(|_| E::custom(format!("invalid status {n}")))?;
                Ok(StatusSpec(vec![status_range(n, n, n)?]))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<StatusSpec, E> {
                Err(E::custom(format!(
                    "invalid status {n}: codes are 100 to 599"
                )))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<StatusSpec, E> {
                Ok(StatusSpec(vec![status_from_str(s)?]))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<StatusSpec, A::Error> {
                let mut out = Vec::new();
                while let Some(one) = seq.next_element::<StatusSpec>()? {
                    out.extend(one.0);
                }
                if out.is_empty() {
                    return Err(de::Error::custom("empty status list"));
                }
                Ok(StatusSpec(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// One string or a list of strings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OneOrMany(pub Vec<String>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany(vec![s.to_string()]))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(OneOrMany(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// A list of at most `N` entries. Decoding stops at entry `N + 1`: a list of 100,000 queue
/// names would otherwise cost seconds and memory before validation could refuse it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capped<T, const N: usize>(pub Vec<T>);

impl<T, const N: usize> Default for Capped<T, N> {
    fn default() -> Self {
        Capped(Vec::new())
    }
}

impl<T, const N: usize> std::ops::Deref for Capped<T, N> {
    type Target = Vec<T>;
    fn deref(&self) -> &Vec<T> {
        &self.0
    }
}

impl<'de, T: Deserialize<'de>, const N: usize> Deserialize<'de> for Capped<T, N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T, const N: usize>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>, const N: usize> Visitor<'de> for V<T, N> {
            type Value = Capped<T, N>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "a list of at most {N} entries")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Capped<T, N>, A::Error> {
                let mut out = Vec::new();
                while let Some(x) = seq.next_element::<T>()? {
                    if out.len() == N {
                        return Err(de::Error::custom(format!(
                            "more than {N} entries: at most {N} are allowed"
                        )));
                    }
                    out.push(x);
                }
                Ok(Capped(out))
            }
        }
        d.deserialize_seq(V::<T, N>(std::marker::PhantomData))
    }
}

/// A map key that remembers where it was written (ordered by its text).
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct Key(pub Spanned<String>);

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.0.value == other.0.value
    }
}
impl Eq for Key {}
impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Key {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.value.cmp(&other.0.value)
    }
}
