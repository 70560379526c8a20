//! MessagePack ↔ JSON for the fleet tools. Decoding is bounded in depth, and rmpv caps
//! preallocation, so a hostile payload cannot make the tools allocate gigabytes.

use serde_json::{Map, Number, Value as Json};
use thiserror::Error;

/// Nesting beyond this is rejected; no botbus payload comes close.
pub const MAX_DEPTH: usize = 32;

/// Why a payload is not one MessagePack value. `topic echo` prints it after
/// "not MessagePack: ", so the texts are part of its output.
#[derive(Debug, Error)]
pub enum DecodeError {
    /// Malformed, truncated, too deep, or claiming more items than it holds.
    #[error(transparent)]
    Invalid(#[from] rmpv::decode::Error),
    /// A valid value followed by bytes that belong to no value.
    #[error("{0} trailing bytes after the MessagePack value")]
    TrailingBytes(usize),
}

pub fn decode_msgpack(bytes: &[u8]) -> Result<rmpv::Value, DecodeError> {
    let mut rd = bytes;
    let v = rmpv::decode::read_value_with_max_depth(&mut rd, MAX_DEPTH)?;
    if !rd.is_empty() {
        return Err(DecodeError::TrailingBytes(rd.len()));
    }
    Ok(v)
}

fn float(f: f64) -> Json {
    Number::from_f64(f).map(Json::Number).unwrap_or(Json::Null)
}

/// JSON for a MessagePack value: NaN and infinities become `null` (JSON has neither), `bin`
/// becomes a hex string, and `f32` keeps the decimal it was written from.
pub fn to_json(v: &rmpv::Value) -> Json {
    to_json_with(v, crate::messages::hex_encode)
}

/// [`to_json`] with `bytes` writing `bin` and `ext` data as text (viewers want base64).
pub fn to_json_with(v: &rmpv::Value, bytes: fn(&[u8]) -> String) -> Json {
    use rmpv::Value as M;
    let to_json = |v: &rmpv::Value| to_json_with(v, bytes);
    match v {
        M::Nil => Json::Null,
        M::Boolean(b) => Json::Bool(*b),
        M::Integer(i) => match (i.as_u64(), i.as_i64()) {
            (Some(u), _) => Json::Number(u.into()),
            (_, Some(s)) => Json::Number(s.into()),
            _ => Json::Null,
        },
        M::F32(f) => {
            if f.is_finite() {
                float(f.to_string().parse().unwrap_or(*f as f64))
            } else {
                Json::Null
            }
        }
        M::F64(f) => float(*f),
        M::String(s) => Json::String(match s.as_str() {
            Some(s) => s.to_string(),
            None => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        }),
        M::Binary(b) => Json::String(bytes(b)),
        M::Array(items) => Json::Array(items.iter().map(to_json).collect()),
        M::Map(pairs) => {
            let mut m = Map::new();
            for (k, v) in pairs {
                let key = match k {
                    M::String(s) => s
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| k.to_string()),
                    other => other.to_string(),
                };
                m.insert(key, to_json(v));
            }
            Json::Object(m)
        }
        M::Ext(t, data) => {
            let mut m = Map::new();
            m.insert("ext".into(), Json::Number((*t).into()));
            m.insert("data".into(), Json::String(bytes(data)));
            Json::Object(m)
        }
    }
}

/// MessagePack for a JSON value, as named maps. The JSON may come from a user (`topic pub`,
/// `cmd`), so a failure is an error to report, never a panic.
pub fn from_json(v: &Json) -> Result<Vec<u8>, rmp_serde::encode::Error> {
    rmp_serde::to_vec_named(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trips_through_msgpack() {
        let j: Json = serde_json::json!({"id": 7, "linear": {"x": 0.5}, "ok": true, "name": "r1", "l": [1, -2]});
        let back = to_json(&decode_msgpack(&from_json(&j).unwrap()).unwrap());
        assert_eq!(back, j);
    }

    #[test]
    fn hostile_payloads_are_errors_not_allocations() {
        // array32 claiming 4 billion items, then nothing.
        assert!(decode_msgpack(&[0xdd, 0xff, 0xff, 0xff, 0xff]).is_err());
        // 10,000 nested arrays.
        let deep = vec![0x91u8; 10_000];
        assert!(decode_msgpack(&deep).is_err());
        assert!(decode_msgpack(&[0x92, 0x01]).is_err(), "truncated array");
    }

    #[test]
    fn bytes_after_the_value_are_counted_in_the_error() {
        let err = decode_msgpack(&[0x01, 0xc0, 0xc0]).unwrap_err();
        assert!(matches!(err, DecodeError::TrailingBytes(2)), "{err:?}");
        assert_eq!(
            err.to_string(),
            "2 trailing bytes after the MessagePack value"
        );
    }

    #[test]
    fn nan_becomes_null_and_f32_keeps_its_decimal() {
        assert_eq!(to_json(&rmpv::Value::F64(f64::NAN)), Json::Null);
        assert_eq!(to_json(&rmpv::Value::F32(12.4)), serde_json::json!(12.4));
    }
}
