//! Viewer JSON and its way back to MessagePack, with real payloads.

use super::*;
use crate::messages::{BatteryState, Frame, Header, MapMessage, NavSatFix, Scalar, Time};
use crate::view::schema::{map_schema, schema};

fn header() -> Header {
    Header {
        seq: 300,
        stamp: Time {
            sec: 1_796_000_000,
            nanosec: 123_456_789,
        },
        frame_id: "base".into(),
    }
}

#[test]
fn the_stamp_gets_nsec_beside_nanosec_and_nan_is_null() {
    let m = BatteryState {
        header: header(),
        voltage: 12.6,
        ..Default::default()
    };
    let j = viewer_json(&rmp_serde::to_vec_named(&m).unwrap()).unwrap();
    assert_eq!(
        j["header"]["stamp"],
        json!({"sec": 1_796_000_000, "nanosec": 123_456_789, "nsec": 123_456_789})
    );
    assert_eq!(j["voltage"], json!(12.6));
    assert_eq!(j["charge"], Json::Null);
    assert_eq!(stamp_ns(&j), Some(1_796_000_000_123_456_789));
}

#[test]
fn a_payload_without_a_stamp_has_no_publish_time() {
    assert_eq!(stamp_ns(&json!({"state": "online"})), None);
    assert_eq!(
        stamp_ns(&json!({"header": {"stamp": {"sec": -5, "nanosec": 0}}})),
        None
    );
}

#[test]
fn not_messagepack_is_an_error() {
    assert!(viewer_json(&[0x82, 0xa1]).is_err());
    assert!(viewer_json(&[0x01, 0x02]).is_err());
}

/// MessagePack → viewer JSON → MessagePack gives the same bytes.
fn round_trip(bytes: &[u8], type_name: &str) {
    let j = viewer_json(bytes).unwrap();
    let back = to_msgpack(&j, &schema(type_name)).unwrap();
    assert_eq!(back, bytes, "{type_name}: {j}");
}

#[test]
fn typed_messages_come_back_byte_for_byte() {
    let b = BatteryState {
        header: header(),
        voltage: 12.6,
        current: -0.8,
        percentage: 0.93,
        ..Default::default()
    };
    round_trip(
        &rmp_serde::to_vec_named(&b).unwrap(),
        "sensor_msgs/BatteryState",
    );
    let mut fix = NavSatFix {
        header: header(),
        latitude: 48.117_300_5,
        longitude: 11.516_666_7,
        altitude: 545.4,
        ..Default::default()
    };
    fix.status.status = 0;
    fix.position_covariance[0] = 2.25;
    round_trip(
        &rmp_serde::to_vec_named(&fix).unwrap(),
        "sensor_msgs/NavSatFix",
    );
    let f = Frame {
        header: header(),
        id: 0x1234_5678,
        is_extended: true,
        dlc: 3,
        data: vec![0x00, 0xab, 0xff],
        ..Default::default()
    };
    round_trip(&rmp_serde::to_vec_named(&f).unwrap(), "can_msgs/Frame");
}

#[test]
fn map_messages_keep_integers_floats_bools_and_strings() {
    let mut m = MapMessage {
        header: header(),
        values: Vec::new(),
    };
    m.insert("rpm", Scalar::Int(-1200));
    m.insert("temp", Scalar::Float(41.0));
    m.insert("ok", Scalar::Bool(true));
    m.insert("mode", Scalar::Str("auto".into()));
    let bytes = rmp_serde::to_vec_named(&m).unwrap();
    round_trip(&bytes, "map");
    let j = viewer_json(&bytes).unwrap();
    assert_eq!(to_msgpack(&j, &map_schema(Some(&j))).unwrap(), bytes);
}
