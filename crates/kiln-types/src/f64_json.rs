//! MLflow's JSON encoding of doubles: finite values are numbers, NaN is `"NaN"` and the
//! infinities are `"Infinity"`/`"-Infinity"`. Numbers given as strings are accepted.

use serde::{de, Deserializer, Serializer};

pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.is_nan() {
        s.serialize_str("NaN")
    } else if v.is_infinite() {
        s.serialize_str(if *v > 0.0 { "Infinity" } else { "-Infinity" })
    } else {
        s.serialize_f64(*v)
    }
}

/// Parse MLflow's string spellings of a double.
pub fn parse_str(v: &str) -> Option<f64> {
    match v.trim() {
        "NaN" | "nan" => Some(f64::NAN),
        "Infinity" | "inf" | "+Infinity" => Some(f64::INFINITY),
        "-Infinity" | "-inf" => Some(f64::NEG_INFINITY),
        other => other.parse().ok(),
    }
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    struct V;
    impl de::Visitor<'_> for V {
        type Value = f64;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a number, or \"NaN\"/\"Infinity\"/\"-Infinity\"")
        }
        #[allow(clippy::cast_precision_loss)]
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
            Ok(v as f64)
        }
        #[allow(clippy::cast_precision_loss)]
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
            Ok(v as f64)
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
            Ok(v)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
            parse_str(v).ok_or_else(|| E::custom(format!("invalid double value `{v}`")))
        }
    }
    d.deserialize_any(V)
}

/// A JSON number written as a float (`3.0`, `1e3`) taken as an int64 when it is whole and
/// within int64's range; `1e30` or `2^64` is refused rather than clamped to `i64::MAX`.
#[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
pub fn whole_f64_to_i64(v: f64) -> Option<i64> {
    // 2^63 is exactly representable; every f64 below it and at or above -2^63 fits.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    (v.is_finite() && v.fract() == 0.0 && (-LIMIT..LIMIT).contains(&v)).then_some(v as i64)
}

/// Integers that may arrive as JSON numbers or decimal strings (MLflow's int64 convention).
pub mod lenient_i64 {
    use serde::{de, Deserializer, Serializer};

    #[allow(clippy::trivially_copy_pass_by_ref)]
    pub fn serialize<S: Serializer>(v: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(*v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = i64;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an integer or a decimal string")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
                Ok(v)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
                i64::try_from(v).map_err(|_| E::custom("integer out of range"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<i64, E> {
                super::whole_f64_to_i64(v).ok_or_else(|| {
                    E::custom(format!("expected an integer within int64's range, got {v}"))
                })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<i64, E> {
                v.trim().parse().map_err(|_| {
                    E::custom(format!(
                        "expected an integer within int64's range, got `{v}`"
                    ))
                })
            }
            fn visit_unit<E: de::Error>(self) -> Result<i64, E> {
                Ok(0)
            }
        }
        d.deserialize_any(V)
    }
}
