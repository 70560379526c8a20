//! Decoding a command payload into its declared type, without trusting it: size and depth
//! caps first, then finiteness, then serde with unknown fields rejected. A payload is read
//! from MessagePack once ([`Payload::read`]); its `id`, an e-stop and a typed command are
//! all answered from that one reading.

use crate::messages::{MapMessage, Message, MessageType, Scalar, Time};
use serde::de::DeserializeOwned;
use thiserror::Error;

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

/// Why a payload is not a command of its type. The `Display` text is the ack's `error`.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum DecodeError {
    #[error("payload of {size} bytes exceeds the limit of {max}")]
    TooLarge { size: usize, max: usize },
    #[error("not a valid command: nested too deeply")]
    TooDeep,
    /// rmpv's reason, as text: its error type is neither `Clone` nor comparable.
    #[error("not valid MessagePack: {0}")]
    NotMsgpack(String),
    #[error("{0} bytes after the MessagePack value")]
    TrailingBytes(usize),
    #[error("a command must be a MessagePack map")]
    NotAMap,
    /// `at` is the path of the map holding the key, `(top)` for the payload itself.
    #[error("`{at}`: field names must be strings, not {key}")]
    FieldNameNotText { at: String, key: rmpv::Value },
    #[error("`{path}` is not a list in {type_name}")]
    NotAList {
        path: String,
        type_name: &'static str,
    },
    /// serde's reason, as text, for the same reason as [`DecodeError::NotMsgpack`].
    #[error("does not decode as the command type: {0}")]
    WrongType(String),
    #[error("map keys must be strings")]
    MapKeyNotText,
    #[error("`{0}` is not UTF-8 text")]
    NotUtf8(String),
    #[error("`{0}` must be a number, bool or string")]
    NotAScalar(String),
    #[error("`{0}` is NaN or infinite")]
    NotFinite(String),
    #[error("`{0}` does not fit its 32-bit field")]
    Overflows32Bit(String),
}

/// A command payload, read from MessagePack once.
#[derive(Debug, Clone, PartialEq)]
pub struct Payload {
    /// The value, or why the bytes are not one.
    value: Result<rmpv::Value, DecodeError>,
    /// Bytes left after the value: only a typed command refuses them.
    trailing: usize,
}

impl Payload {
    /// Reads `bytes` within the size cap and [`MAX_DEPTH`].
    pub fn read(bytes: &[u8], max_bytes: usize) -> Payload {
        if bytes.len() > max_bytes {
            return Payload {
                value: Err(DecodeError::TooLarge {
                    size: bytes.len(),
                    max: max_bytes,
                }),
                trailing: 0,
            };
        }
        let mut rd = bytes;
        let value =
            rmpv::decode::read_value_with_max_depth(&mut rd, MAX_DEPTH).map_err(|e| match e {
                rmpv::decode::Error::DepthLimitExceeded => DecodeError::TooDeep,
                e => DecodeError::NotMsgpack(e.to_string()),
            });
        Payload {
            value,
            trailing: rd.len(),
        }
    }

    /// The pairs of a payload that is a map.
    fn pairs(&self) -> Option<&[(rmpv::Value, rmpv::Value)]> {
        match &self.value {
            Ok(rmpv::Value::Map(pairs)) => Some(pairs),
            _ => None,
        }
    }

    /// The command's `id` (the first one), for the ack of a payload refused before or
    /// while decoding; `Nil` when there is none to find.
    pub fn id(&self) -> rmpv::Value {
        self.pairs()
            .and_then(|pairs| pairs.iter().find(|(k, _)| k.as_str() == Some("id")))
            .map(|(_, v)| v.clone())
            .unwrap_or(rmpv::Value::Nil)
    }

    /// `Some(engage)` for a well-formed e-stop command: `{"engage": bool}` with an optional
    /// `id` and nothing else.
    pub fn estop(&self) -> Option<bool> {
        let pairs = self.pairs()?;
        let known = pairs
            .iter()
            .all(|(k, _)| matches!(k.as_str(), Some("engage" | "id")));
        match pairs.iter().find(|(k, _)| k.as_str() == Some("engage")) {
            Some((_, rmpv::Value::Boolean(b))) if known => Some(*b),
            _ => None,
        }
    }

    /// Decodes the payload as a command of `msg_type`. Every failure is a reason for the ack.
    pub fn into_command(self, msg_type: MessageType) -> Result<DecodedCommand, DecodeError> {
        let value = self.value?;
        if self.trailing > 0 {
            return Err(DecodeError::TrailingBytes(self.trailing));
        }
        let rmpv::Value::Map(pairs) = value else {
            return Err(DecodeError::NotAMap);
        };
        typed_command(pairs, msg_type)
    }
}

fn typed<T: DeserializeOwned>(v: rmpv::Value) -> Result<T, DecodeError> {
    rmpv::ext::from_value(v).map_err(|e| DecodeError::WrongType(e.to_string()))
}

/// A `map` command's values; `v` is the payload's map (anything else is not a command).
fn map_message(v: rmpv::Value) -> Result<MapMessage, DecodeError> {
    let rmpv::Value::Map(pairs) = v else {
        return Err(DecodeError::NotAMap);
    };
    let mut m = MapMessage::default();
    for (k, v) in pairs {
        let key = k.as_str().ok_or(DecodeError::MapKeyNotText)?.to_string();
        let value = match v {
            rmpv::Value::Boolean(b) => Scalar::Bool(b),
            rmpv::Value::Integer(i) => match i.as_i64() {
                Some(i) => Scalar::Int(i),
                None => Scalar::Float(i.as_f64().unwrap_or(f64::MAX)),
            },
            rmpv::Value::F32(f) => Scalar::Float(f as f64),
            rmpv::Value::F64(f) => Scalar::Float(f),
            rmpv::Value::String(s) => {
                let Some(text) = s.into_str() else {
                    return Err(DecodeError::NotUtf8(key));
                };
                // A number sent as text is a number, so the finite and limit checks see it.
                match text.trim().parse::<f64>() {
                    Ok(f) if !f.is_finite() => return Err(DecodeError::NotFinite(key)),
                    Ok(f) => Scalar::Float(f),
                    Err(_) => Scalar::Str(text),
                }
            }
            _ => return Err(DecodeError::NotAScalar(key)),
        };
        m.insert(&key, value);
    }
    Ok(m)
}

/// Refuses what serde would read leniently: map keys that are not strings (an integer
/// key reads as a field index) and arrays where the type has no array (an array reads
/// as a positional struct, `{"linear": [0.5]}` as `linear.x = 0.5`).
fn check_shape(
    v: &rmpv::Value,
    path: &mut String,
    msg_type: MessageType,
) -> Result<(), DecodeError> {
    match v {
        rmpv::Value::Map(pairs) => {
            let len = path.len();
            for (k, item) in pairs {
                let Some(k) = k.as_str() else {
                    let at = if path.is_empty() { "(top)" } else { path };
                    return Err(DecodeError::FieldNameNotText {
                        at: at.to_string(),
                        key: k.clone(),
                    });
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
                return Err(DecodeError::NotAList {
                    path: path.clone(),
                    type_name: msg_type.name(),
                });
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

/// Decodes `payload` as a command of `msg_type`: [`Payload::read`] then
/// [`Payload::into_command`], for a caller that needs nothing else from the payload.
pub fn decode_command(
    payload: &[u8],
    msg_type: MessageType,
    max_bytes: usize,
) -> Result<DecodedCommand, DecodeError> {
    Payload::read(payload, max_bytes).into_command(msg_type)
}

/// The checks after reading, on the pairs of a payload that is a map.
fn typed_command(
    mut pairs: Vec<(rmpv::Value, rmpv::Value)>,
    msg_type: MessageType,
) -> Result<DecodedCommand, DecodeError> {
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
        MessageType::Map => Message::Map(map_message(v)?),
    };
    // Decoded as the type first, then finite: the order DESIGN.md section 5 gives.
    let mut path = String::new();
    if let Some(p) = first_non_finite(&raw, &mut path) {
        return Err(DecodeError::NotFinite(p));
    }
    // A finite f64 can still overflow an f32 field (BatteryState, Range) into infinity.
    // This reads the message's own encoding, not the payload again.
    let named = rmp_serde::to_vec_named(&message).unwrap_or_default();
    if let Ok(v) = rmpv::decode::read_value(&mut &named[..]) {
        let mut path = String::new();
        if let Some(p) = first_bad(&v, &mut path, false) {
            return Err(DecodeError::Overflows32Bit(p));
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
mod fuzz;

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
        .unwrap_err()
        .to_string();
        assert!(e.contains("`linear` is not a list"), "{e}");
        // {1: {0: 0.5}}
        let p = [0x81, 0x01, 0x81, 0x00, 0xcb, 0x3f, 0xe0, 0, 0, 0, 0, 0, 0];
        let e = decode_command(&p, MessageType::Twist, 1024)
            .unwrap_err()
            .to_string();
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
        let e = decode_command(&p, MessageType::Twist, 1024)
            .unwrap_err()
            .to_string();
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn ids_are_salvaged_from_payloads_that_fail_later_checks() {
        let p = Payload::read(
            &enc(serde_json::json!({"id": "a1", "linear": {"x": "fast"}})),
            1024,
        );
        assert_eq!(p.id(), rmpv::Value::from("a1"));
        assert!(p.into_command(MessageType::Twist).is_err());
        let hostile = Payload::read(b"\xdd\xff\xff\xff\xff", 1024);
        assert_eq!(hostile.id(), rmpv::Value::Nil);
        assert_eq!(Payload::read(&[0u8; 2000], 1024).id(), rmpv::Value::Nil);
    }

    #[test]
    fn an_estop_is_a_flat_map_with_a_bool_engage_and_at_most_an_id_beside_it() {
        let estop = |j| Payload::read(&enc(j), 1024).estop();
        assert_eq!(
            estop(serde_json::json!({"id": 1, "engage": true})),
            Some(true)
        );
        assert_eq!(estop(serde_json::json!({"engage": false})), Some(false));
        assert_eq!(estop(serde_json::json!({"engage": 1})), None);
        assert_eq!(estop(serde_json::json!({"engage": true, "x": 1})), None);
        assert_eq!(estop(serde_json::json!([true])), None);
    }

    #[test]
    fn bytes_after_the_value_refuse_a_command_but_not_an_estop_or_its_id() {
        let mut p = enc(serde_json::json!({"id": 3, "engage": true}));
        p.push(0xc0);
        let p = Payload::read(&p, 1024);
        assert_eq!(p.estop(), Some(true));
        assert_eq!(p.id(), rmpv::Value::from(3));
        assert_eq!(
            p.into_command(MessageType::Bool).unwrap_err().to_string(),
            "1 bytes after the MessagePack value"
        );
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
        let err = |j| {
            decode_command(&enc(j), MessageType::Twist, 1024)
                .unwrap_err()
                .to_string()
        };
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
        let e = decode_command(&buf, MessageType::Twist, 1024)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "`linear.x` is NaN or infinite");
    }

    #[test]
    fn hostile_sizes_and_depths_are_rejected_cheaply() {
        assert!(decode_command(&[0xdd, 0xff, 0xff, 0xff, 0xff], MessageType::Twist, 1024).is_err());
        let deep = vec![0x91u8; 5000];
        assert!(decode_command(&deep, MessageType::Twist, 10_000)
            .unwrap_err()
            .to_string()
            .contains("nested too deeply"));
        assert!(decode_command(&vec![0u8; 2000], MessageType::Twist, 1024)
            .unwrap_err()
            .to_string()
            .contains("exceeds the limit"));
    }

    #[test]
    fn values_that_overflow_an_f32_field_are_rejected() {
        let e = decode_command(
            &enc(serde_json::json!({"range": 1e300})),
            MessageType::Range,
            1024,
        )
        .unwrap_err()
        .to_string();
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
