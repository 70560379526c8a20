//! `Scalar`: one loosely typed value read off a device line or a command, before it is
//! converted into a message field.

use serde::de::{Deserialize, Deserializer, Visitor};
use serde::ser::{Serialize, Serializer};
use std::fmt;

/// A single value as a device or a user wrote it. Conversions into message fields are
/// checked: a string must parse, an integer field rejects fractions and out-of-range values.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
}

impl Scalar {
    /// Reads a token from a text protocol as the most specific scalar it spells:
    /// integer, then float, then bool, then string.
    pub fn infer(token: &str) -> Scalar {
        if let Ok(i) = token.parse::<i64>() {
            return Scalar::Int(i);
        }
        if let Ok(f) = token.parse::<f64>() {
            return Scalar::Float(f);
        }
        match token {
            "true" | "True" | "TRUE" => Scalar::Bool(true),
            "false" | "False" | "FALSE" => Scalar::Bool(false),
            _ => Scalar::Str(token.to_string()),
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Scalar::Int(i) => Some(*i as f64),
            Scalar::Float(f) => Some(*f),
            Scalar::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            Scalar::Str(s) => s.trim().parse::<f64>().ok(),
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Scalar::Int(i) => Some(*i),
            Scalar::Float(f) if f.fract() == 0.0 && f.is_finite() && f.abs() < 9.0e15 => {
                Some(*f as i64)
            }
            Scalar::Bool(b) => Some(*b as i64),
            Scalar::Str(s) => {
                let s = s.trim();
                s.parse::<i64>().ok().or_else(|| {
                    s.parse::<f64>()
                        .ok()
                        .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                        .map(|f| f as i64)
                })
            }
            Scalar::Float(_) => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Scalar::Bool(b) => Some(*b),
            Scalar::Int(0) => Some(false),
            Scalar::Int(1) => Some(true),
            Scalar::Float(f) if *f == 0.0 => Some(false),
            Scalar::Float(f) if *f == 1.0 => Some(true),
            Scalar::Str(s) => match s.trim() {
                "true" | "True" | "TRUE" | "1" | "on" | "ON" => Some(true),
                "false" | "False" | "FALSE" | "0" | "off" | "OFF" => Some(false),
                _ => None,
            },
            _ => None,
        }
    }

    /// True for NaN or infinite floats, which commands must never carry.
    pub fn is_non_finite(&self) -> bool {
        matches!(self, Scalar::Float(f) if !f.is_finite())
    }
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Int(i) => write!(f, "{i}"),
            Scalar::Float(x) => write!(f, "{x}"),
            Scalar::Bool(b) => write!(f, "{b}"),
            Scalar::Str(s) => f.write_str(s),
        }
    }
}

impl Serialize for Scalar {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Scalar::Int(i) => s.serialize_i64(*i),
            Scalar::Float(f) => s.serialize_f64(*f),
            Scalar::Bool(b) => s.serialize_bool(*b),
            Scalar::Str(v) => s.serialize_str(v),
        }
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Scalar, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number, bool or string")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar, E> {
                Ok(i64::try_from(v).map_or(Scalar::Float(v as f64), Scalar::Int))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Str(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infer_picks_the_most_specific_kind() {
        assert_eq!(Scalar::infer("12"), Scalar::Int(12));
        assert_eq!(Scalar::infer("-3.5"), Scalar::Float(-3.5));
        assert_eq!(Scalar::infer("true"), Scalar::Bool(true));
        assert_eq!(Scalar::infer("BAT"), Scalar::Str("BAT".into()));
    }

    #[test]
    fn integer_conversion_rejects_fractions() {
        assert_eq!(Scalar::Float(2.0).as_i64(), Some(2));
        assert_eq!(Scalar::Float(2.5).as_i64(), None);
        assert_eq!(Scalar::Str("7".into()).as_i64(), Some(7));
        assert_eq!(Scalar::Str("x".into()).as_i64(), None);
    }
}
