//! Decoding a command payload into its declared type, without trusting it: size and depth
//! caps first, then finiteness, then serde with unknown fields rejected.

use crate::messages::{MapMessage, Message, MessageType, Scalar, Time};
use serde::de::DeserializeOwned;

/// rmpv's depth budget: each map level costs about two (the map and its keys), so 32
/// allows a dozen levels. A Twist with its header needs four.
pub const MAX_DEPTH: usize = 32;

/// A command that decoded as its type.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedCommand {
    /// Echoed in the ack, whatever the sender put there.
    pub id: rmpv::Value,
    pub message: Message,
    /// From `header.stamp`, when the sender gave one.
    pub stamp: Option<Time>,
}

/// Walks a decoded value for NaN and infinities, naming the first one found.
fn first_non_finite(v: &rmpv::Value, path: &mut String) -> Option<String> {
    first_bad(v, path, true)
}

/// As [`first_non_finite`]; `nan` says whether NaN counts (types whose unset fields are
/// NaN by definition, like BatteryState, are checked for infinities only).
fn first_bad(v: &rmpv::Value, path: &mut String, nan: bool) -> Option<String> {
    let bad = |f: f64| f.is_infinite() || (nan && f.is_nan());
    match v {
        rmpv::Value::F32(f) if bad(*f as f64) => Some(path.clone()),
        rmpv::Value::F64(f) if bad(*f) => Some(path.clone()),
        rmpv::Value::Array(items) => {
            let len = path.len();
            for (i, item) in items.iter().enumerate() {
                path.push_str(&format!("[{i}]"));
                if let Some(p) = first_bad(item, path, nan) {
                    return Some(p);
                }
                path.truncate(len);
            }
            None
        }
        rmpv::Value::Map(pairs) => {
            let len = path.len();
            for (k, item) in pairs {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k.as_str().unwrap_or("?"));
                if let Some(p) = first_bad(item, path, nan) {
                    return Some(p);
                }
                path.truncate(len);
            }
            None
        }
        _ => None,
    }
}

fn typed<T: DeserializeOwned>(v: rmpv::Value) -> Result<T, String> {
    rmpv::ext::from_value(v).map_err(|e| format!("does not decode as the command type: {e}"))
}

fn map_message(pairs: Vec<(rmpv::Value, rmpv::Value)>) -> Result<MapMessage, String> {
    let mut m = MapMessage::default();
    for (k, v) in pairs {
        let key = k
            .as_str()
            .ok_or_else(|| "map keys must be strings".to_string())?
            .to_string();
        let value = match v {
            rmpv::Value::Boolean(b) => Scalar::Bool(b),
            rmpv::Value::Integer(i) => match i.as_i64() {
                Some(i) => Scalar::Int(i),
                None => Scalar::Float(i.as_f64().unwrap_or(f64::MAX)),
            },
            rmpv::Value::F32(f) => Scalar::Float(f as f64),
            rmpv::Value::F64(f) => Scalar::Float(f),
            rmpv::Value::String(s) => {
                let text = s
                    .into_str()
                    .ok_or_else(|| format!("`{key}` is not UTF-8 text"))?;
                // A number sent as text is a number, so the finite and limit checks see it.
                match text.trim().parse::<f64>() {
                    Ok(f) if !f.is_finite() => return Err(format!("`{key}` is NaN or infinite")),
                    Ok(f) => Scalar::Float(f),
                    Err(_) => Scalar::Str(text),
                }
            }
            _ => return Err(format!("`{key}` must be a number, bool or string")),
        };
        m.insert(&key, value);
    }
    Ok(m)
}

/// Refuses what serde would read leniently: map keys that are not strings (an integer
/// key reads as a field index) and arrays where the type has no array (an array reads
/// as a positional struct, `{"linear": [0.5]}` as `linear.x = 0.5`).
fn check_shape(v: &rmpv::Value, path: &mut String, msg_type: MessageType) -> Result<(), String> {
    match v {
        rmpv::Value::Map(pairs) => {
            let len = path.len();
            for (k, item) in pairs {
                let Some(k) = k.as_str() else {
                    return Err(format!(
                        "`{}`: field names must be strings, not {k}",
                        if path.is_empty() {
                            "(top)"
                        } else {
                            path.as_str()
                        }
                    ));
                };
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                check_shape(item, path, msg_type)?;
                path.truncate(len);
            }
            Ok(())
        }
        rmpv::Value::Array(items) => {
            if msg_type.kind_of(path) == Some(crate::messages::FieldKind::Bytes) {
                return Ok(());
            }
            if msg_type.kind_of(&format!("{path}[0]")).is_none() {
                return Err(format!("`{path}` is not a list in {}", msg_type.name()));
            }
            let len = path.len();
            for (i, item) in items.iter().enumerate() {
                path.push_str(&format!("[{i}]"));
                check_shape(item, path, msg_type)?;
                path.truncate(len);
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Decodes `payload` as a command of `msg_type`. Every failure is a reason for the ack.
pub fn decode_command(
    payload: &[u8],
    msg_type: MessageType,
    max_bytes: usize,
) -> Result<DecodedCommand, String> {
    if payload.len() > max_bytes {
        return Err(format!(
            "payload of {} bytes exceeds the limit of {max_bytes}",
            payload.len()
        ));
    }
    let mut rd = payload;
    let value =
        rmpv::decode::read_value_with_max_depth(&mut rd, MAX_DEPTH).map_err(|e| match e {
            rmpv::decode::Error::DepthLimitExceeded => {
                "not a valid command: nested too deeply".to_string()
            }
            e => format!("not valid MessagePack: {e}"),
        })?;
    if !rd.is_empty() {
        return Err(format!("{} bytes after the MessagePack value", rd.len()));
    }
    let rmpv::Value::Map(mut pairs) = value else {
        return Err("a command must be a MessagePack map".into());
    };
    let mut id = rmpv::Value::Nil;
    // A type with its own `id` field (can_msgs/Frame: the CAN identifier) keeps it; the
    // ack then echoes that value.
    let id_is_a_field = msg_type.kind_of("id").is_some();
    pairs.retain(|(k, v)| {
        if k.as_str() == Some("id") {
            id = v.clone();
            id_is_a_field
        } else {
            true
        }
    });
    let raw = rmpv::Value::Map(pairs.clone());
    let mut path = String::new();
    check_shape(&raw, &mut path, msg_type)?;
    let mut header_stamp = None;
    if msg_type == MessageType::Map {
        // `map` commands carry their header beside the values.
        if let Some(pos) = pairs.iter().position(|(k, _)| k.as_str() == Some("header")) {
            let (_, h) = pairs.remove(pos);
            let header: crate::messages::Header = typed(h)?;
            header_stamp = Some(header.stamp);
        }
    }
    let has_header = pairs.iter().any(|(k, _)| k.as_str() == Some("header"));
    let v = rmpv::Value::Map(pairs);
    let message = match msg_type {
        MessageType::NavSatFix => Message::NavSatFix(typed(v)?),
        MessageType::Imu => Message::Imu(typed(v)?),
        MessageType::JointState => Message::JointState(typed(v)?),
        MessageType::BatteryState => Message::BatteryState(typed(v)?),
        MessageType::Temperature => Message::Temperature(typed(v)?),
        MessageType::Range => Message::Range(typed(v)?),
        MessageType::Twist => Message::Twist(typed(v)?),
        MessageType::Float64 => Message::Float64(typed(v)?),
        MessageType::Bool => Message::Bool(typed(v)?),
        MessageType::String => Message::String(typed(v)?),
        MessageType::Frame => Message::Frame(typed(v)?),
        MessageType::Map => {
            let rmpv::Value::Map(pairs) = v else {
                unreachable!("built as a map above")
            };
            Message::Map(map_message(pairs)?)
        }
    };
    // Decoded as the type first, then finite: the order DESIGN.md section 5 gives.
    let mut path = String::new();
    if let Some(p) = first_non_finite(&raw, &mut path) {
        return Err(format!("`{p}` is NaN or infinite"));
    }
    // A finite f64 can still overflow an f32 field (BatteryState, Range) into infinity.
    let named = rmp_serde::to_vec_named(&message).unwrap_or_default();
    if let Ok(v) = rmpv::decode::read_value(&mut &named[..]) {
        let mut path = String::new();
        if let Some(p) = first_bad(&v, &mut path, false) {
            return Err(format!("`{p}` does not fit its 32-bit field"));
        }
    }
    let stamp = if msg_type == MessageType::Map {
        header_stamp
    } else if has_header {
        Some(message.header().stamp)
    } else {
        None
    };
    // A zero stamp is ROS's "not set" (and what a default-built header carries): such a
    // command has no stamp to check, rather than one from 1970.
    let stamp = stamp.filter(|t| *t != Time::default());
    Ok(DecodedCommand { id, message, stamp })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn enc(v: serde_json::Value) -> Vec<u8> {
        rmp_serde::to_vec_named(&v).unwrap()
    }

    #[test]
    fn arrays_for_structs_and_integer_keys_are_refused_not_read_positionally() {
        let e = decode_command(
            &enc(serde_json::json!({"linear": [0.5]})),
            MessageType::Twist,
            1024,
        )
        .unwrap_err();
        assert!(e.contains("`linear` is not a list"), "{e}");
        // {1: {0: 0.5}}
        let p = [0x81, 0x01, 0x81, 0x00, 0xcb, 0x3f, 0xe0, 0, 0, 0, 0, 0, 0];
        let e = decode_command(&p, MessageType::Twist, 1024).unwrap_err();
        assert!(e.contains("field names must be strings"), "{e}");
        // Real lists still decode.
        let c = decode_command(
            &enc(serde_json::json!({"name": ["a"], "position": [0.5]})),
            MessageType::JointState,
            1024,
        )
        .unwrap();
        assert_eq!(c.message.get_path("position[0]"), Some(Scalar::Float(0.5)));
    }

    #[test]
    fn a_payload_that_does_not_decode_as_the_type_is_refused_for_that_before_its_nan() {
        let mut p = vec![0x82];
        p.extend(rmp_serde::to_vec("linear").unwrap());
        p.extend([0x81, 0xa1, b'x', 0xcb]);
        p.extend(f64::NAN.to_be_bytes());
        p.extend(rmp_serde::to_vec("bogus").unwrap());
        p.push(0x01);
        let e = decode_command(&p, MessageType::Twist, 1024).unwrap_err();
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn a_partial_twist_decodes_with_defaults_and_keeps_its_id() {
        let c = decode_command(
            &enc(serde_json::json!({"id": 7, "linear": {"x": 0.5}, "angular": {"z": 1}})),
            MessageType::Twist,
            1024,
        )
        .unwrap();
        assert_eq!(c.id, rmpv::Value::from(7));
        assert_eq!(c.message.get_path("linear.x"), Some(Scalar::Float(0.5)));
        assert_eq!(c.message.get_path("angular.z"), Some(Scalar::Float(1.0)));
        assert_eq!(c.message.get_path("linear.y"), Some(Scalar::Float(0.0)));
        assert_eq!(c.stamp, None);
    }

    #[test]
    fn wrong_types_unknown_fields_and_non_maps_are_rejected() {
        let err = |j| decode_command(&enc(j), MessageType::Twist, 1024).unwrap_err();
        assert!(err(serde_json::json!({"linear": {"x": "fast"}})).contains("invalid type"));
        assert!(err(serde_json::json!({"linear": {"q": 1.0}})).contains("unknown field"));
        assert!(err(serde_json::json!({"speed": 1.0})).contains("unknown field"));
        assert!(err(serde_json::json!([1, 2])).contains("must be a MessagePack map"));
    }

    #[test]
    fn nan_and_infinity_are_rejected_with_their_path() {
        let mut buf = Vec::new();
        rmp::encode::write_map_len(&mut buf, 1).unwrap();
        rmp::encode::write_str(&mut buf, "linear").unwrap();
        rmp::encode::write_map_len(&mut buf, 1).unwrap();
        rmp::encode::write_str(&mut buf, "x").unwrap();
        rmp::encode::write_f64(&mut buf, f64::NAN).unwrap();
        let e = decode_command(&buf, MessageType::Twist, 1024).unwrap_err();
        assert_eq!(e, "`linear.x` is NaN or infinite");
    }

    #[test]
    fn hostile_sizes_and_depths_are_rejected_cheaply() {
        assert!(decode_command(&[0xdd, 0xff, 0xff, 0xff, 0xff], MessageType::Twist, 1024).is_err());
        let deep = vec![0x91u8; 5000];
        assert!(decode_command(&deep, MessageType::Twist, 10_000)
            .unwrap_err()
            .contains("nested too deeply"));
        assert!(decode_command(&vec![0u8; 2000], MessageType::Twist, 1024)
            .unwrap_err()
            .contains("exceeds the limit"));
    }

    #[test]
    fn values_that_overflow_an_f32_field_are_rejected() {
        let e = decode_command(
            &enc(serde_json::json!({"range": 1e300})),
            MessageType::Range,
            1024,
        )
        .unwrap_err();
        assert_eq!(e, "`range` does not fit its 32-bit field");
    }

    #[test]
    fn a_frame_command_keeps_its_can_id() {
        let c = decode_command(
            &enc(serde_json::json!({"id": 768, "dlc": 2, "data": [1, 2]})),
            MessageType::Frame,
            1024,
        )
        .unwrap();
        assert_eq!(c.message.get_path("id"), Some(Scalar::Int(768)));
        assert_eq!(c.id, rmpv::Value::from(768));
    }

    #[test]
    fn a_zero_stamp_counts_as_no_stamp() {
        let c = decode_command(
            &enc(serde_json::json!({"header": {"stamp": {"sec": 0, "nanosec": 0}, "frame_id": "x"}, "linear": {"x": 0.1}})),
            MessageType::Twist,
            1024,
        )
        .unwrap();
        assert_eq!(c.stamp, None);
    }

    #[test]
    fn header_stamp_is_read_for_the_age_check() {
        let c = decode_command(
            &enc(serde_json::json!({"header": {"stamp": {"sec": 5, "nanosec": 9}}, "linear": {"x": 0.1}})),
            MessageType::Twist,
            1024,
        )
        .unwrap();
        assert_eq!(c.stamp, Some(Time { sec: 5, nanosec: 9 }));
    }

    fn arb_value() -> impl Strategy<Value = rmpv::Value> {
        let leaf = prop_oneof![
            Just(rmpv::Value::Nil),
            any::<bool>().prop_map(rmpv::Value::from),
            any::<i64>().prop_map(rmpv::Value::from),
            any::<f64>().prop_map(rmpv::Value::from),
            "[a-z_.]{0,8}".prop_map(rmpv::Value::from),
            proptest::collection::vec(any::<u8>(), 0..16).prop_map(rmpv::Value::from),
        ];
        leaf.prop_recursive(6, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(rmpv::Value::Array),
                proptest::collection::vec(
                    (
                        prop_oneof![
                            Just("linear".to_string()),
                            Just("x".to_string()),
                            Just("id".to_string()),
                            "[a-z]{1,6}"
                        ],
                        inner
                    ),
                    0..8
                )
                .prop_map(|kv| rmpv::Value::Map(
                    kv.into_iter()
                        .map(|(k, v)| (rmpv::Value::from(k), v))
                        .collect()
                )),
            ]
        })
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
            for t in MessageType::ALL {
                let _ = decode_command(&data, t, 65536);
            }
        }

        #[test]
        fn arbitrary_msgpack_values_never_panic(v in arb_value()) {
            let mut buf = Vec::new();
            rmpv::encode::write_value(&mut buf, &v).unwrap();
            for t in MessageType::ALL {
                if let Ok(c) = decode_command(&buf, t, 65536) {
                    // Whatever decodes carries only finite floats.
                    let mut out = Vec::new();
                    c.message.encode_into(&mut out).unwrap();
                    let mut p = String::new();
                    let back = rmpv::decode::read_value(&mut &out[..]).unwrap();
                    // No infinity ever; NaN only as the "unknown" default of the types that
                    // define one.
                    prop_assert!(first_bad(&back, &mut p, false).is_none(), "{}", p);
                    prop_assert!(first_non_finite(&back, &mut p).is_none() || matches!(c.message, Message::BatteryState(_) | Message::NavSatFix(_)));
                }
            }
        }
    }
}
