//! Payloads for viewers: MessagePack to JSON (NaN as `null`, `bin` as base64, and
//! Foxglove's `nsec` beside `nanosec`), and back again, guided by the schema, for `play`.

use crate::fleet::json::{decode_msgpack, to_json_with, DecodeError};
use base64::Engine;
use rmpv::Value as Msg;
use serde_json::{json, Value as Json};
use thiserror::Error;

/// The JSON a viewer gets for a MessagePack payload.
pub fn viewer_json(payload: &[u8]) -> Result<Json, DecodeError> {
    let mut v = to_json_with(&decode_msgpack(payload)?, base64_encode);
    add_nsec(&mut v, 0);
    Ok(v)
}

fn base64_encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Foxglove reads a timestamp as `{sec, nsec}`; ROS 2 names it `{sec, nanosec}`. Both are
/// given, so plot paths keep the payload's names and Foxglove still finds the time.
fn add_nsec(v: &mut Json, depth: usize) {
    let Json::Object(obj) = v else {
        return;
    };
    if obj.len() == 2 && obj.contains_key("sec") {
        if let Some(n) = obj.get("nanosec").cloned() {
            obj.insert("nsec".into(), n);
            return;
        }
    }
    // Timestamps sit at most in `header.stamp`; no need to walk deep payloads.
    if depth < 2 {
        obj.values_mut().for_each(|c| add_nsec(c, depth + 1));
    }
}

/// `header.stamp` in nanoseconds since the Unix epoch, when the payload has one.
pub fn stamp_ns(v: &Json) -> Option<u64> {
    let stamp = v.get("header")?.get("stamp")?;
    let sec = u64::try_from(stamp.get("sec")?.as_i64()?).ok()?;
    let nanosec = stamp.get("nanosec")?.as_u64()?;
    sec.checked_mul(1_000_000_000)?.checked_add(nanosec)
}

#[derive(Debug, Error)]
pub enum EncodeError {
    #[error("{0} is not valid JSON: {1}")]
    Json(&'static str, serde_json::Error),
    #[error("message encoding `{0}` is not json or msgpack")]
    Unsupported(String),
    #[error("cannot encode MessagePack: {0}")]
    Msgpack(rmpv::encode::Error),
}

/// MessagePack for a recorded JSON payload, with the widths its schema gives: `float` is
/// f32 and `double` f64 (`null` is NaN in either), `base64` strings are `bin`, and the
/// `nsec` added for viewers is dropped. So a typed message comes back byte for byte.
pub fn to_msgpack(value: &Json, schema: &Json) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, &from_json(value, Some(schema)))
        .map_err(EncodeError::Msgpack)?;
    Ok(out)
}

fn types(schema: Option<&Json>) -> Vec<&str> {
    match schema.and_then(|s| s.get("type")) {
        Some(Json::String(t)) => vec![t.as_str()],
        Some(Json::Array(ts)) => ts.iter().filter_map(Json::as_str).collect(),
        _ => Vec::new(),
    }
}

fn from_json(v: &Json, schema: Option<&Json>) -> Msg {
    let format = schema.and_then(|s| s.get("format")).and_then(Json::as_str);
    let number = types(schema).contains(&"number");
    match v {
        Json::Null if number && format == Some("float") => Msg::F32(f32::NAN),
        Json::Null if number => Msg::F64(f64::NAN),
        Json::Null => Msg::Nil,
        Json::Bool(b) => Msg::Boolean(*b),
        Json::Number(n) => {
            if let (true, Some(f)) = (format == Some("float"), n.as_f64()) {
                Msg::F32(f as f32)
            } else if let (true, Some(f)) = (format == Some("double"), n.as_f64()) {
                Msg::F64(f)
            } else if let Some(u) = n.as_u64() {
                Msg::from(u)
            } else if let Some(i) = n.as_i64() {
                Msg::from(i)
            } else {
                Msg::F64(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Json::String(s) => {
            let b64 = schema.and_then(|s| s.get("contentEncoding")) == Some(&json!("base64"));
            let bytes = b64
                .then(|| base64::engine::general_purpose::STANDARD.decode(s).ok())
                .flatten();
            match bytes {
                Some(bytes) => Msg::Binary(bytes),
                None => Msg::from(s.as_str()),
            }
        }
        Json::Array(items) => {
            let item = schema.and_then(|s| s.get("items"));
            Msg::Array(items.iter().map(|i| from_json(i, item)).collect())
        }
        Json::Object(obj) => {
            let props = schema.and_then(|s| s.get("properties"));
            let extra = schema.and_then(|s| s.get("additionalProperties"));
            let is_time = obj.contains_key("sec") && obj.contains_key("nanosec");
            Msg::Map(
                obj.iter()
                    .filter(|(k, _)| !(is_time && *k == "nsec"))
                    .map(|(k, v)| {
                        let sub = props.and_then(|p| p.get(k)).or(extra);
                        (Msg::from(k.as_str()), from_json(v, sub))
                    })
                    .collect(),
            )
        }
    }
}

#[cfg(test)]
mod tests;
