//! The schemas against the payloads they describe.

use super::*;
use crate::view::json::viewer_json;

fn props(schema: &Json) -> Vec<String> {
    schema["properties"]
        .as_object()
        .expect("properties")
        .keys()
        .cloned()
        .collect()
}

#[test]
fn every_message_type_has_an_object_schema_with_a_header() {
    for t in MessageType::ALL {
        let s = schema(t.name());
        assert_eq!(s["type"], "object", "{t}");
        assert!(props(&s).contains(&"header".to_string()), "{t}: {s}");
        // Inlined: viewers need not resolve references.
        assert!(!s.to_string().contains("$ref"), "{t}: {s}");
    }
}

#[test]
fn battery_state_fields_are_nullable_floats_and_the_stamp_has_nsec() {
    let s = schema("sensor_msgs/BatteryState");
    assert_eq!(s["title"], "BatteryState");
    assert_eq!(
        props(&s),
        [
            "header",
            "voltage",
            "current",
            "charge",
            "percentage",
            "temperature"
        ]
    );
    assert_eq!(
        s["properties"]["voltage"]["type"],
        json!(["number", "null"])
    );
    assert_eq!(s["properties"]["voltage"]["format"], "float");
    let stamp = &s["properties"]["header"]["properties"]["stamp"];
    assert_eq!(props(stamp), ["sec", "nanosec", "nsec"]);
}

#[test]
fn a_can_frame_says_its_data_is_a_hex_string() {
    let s = schema("can_msgs/Frame");
    let data = &s["properties"]["data"];
    assert_eq!(data["type"], "string");
    assert_eq!(data["contentEncoding"], "base16");
}

#[test]
fn the_meta_topics_have_their_own_schemas() {
    let status = schema(STATUS);
    assert_eq!(props(&status), ["state", "boot", "version"]);
    let catalog = schema(CATALOG);
    assert_eq!(props(&catalog), ["robot", "boot", "streams", "commands"]);
    let diag = schema(DIAGNOSTICS);
    assert_eq!(props(&diag), ["header", "devices", "mqtt"]);
    assert_eq!(props(&schema(ACK)), ["id", "ok", "error", "applied"]);
    // A topic no catalog names: anything goes.
    assert_eq!(schema(UNLISTED), json!({"title": UNLISTED}));
}

#[test]
fn a_map_schema_takes_its_fields_from_a_sample_and_still_allows_others() {
    let sample = json!({"header": {}, "rpm": 1200, "ok": true, "mode": "auto", "t": null});
    let s = map_schema(Some(&sample));
    assert_eq!(props(&s), ["header", "rpm", "ok", "mode", "t"]);
    assert_eq!(s["properties"]["ok"]["type"], "boolean");
    assert_eq!(s["properties"]["t"]["type"], json!(["number", "null"]));
    assert_eq!(
        s["additionalProperties"]["type"],
        json!(["number", "boolean", "string", "null"])
    );
    assert_eq!(props(&schema("map")), ["header"]);
}

#[test]
fn the_schema_names_every_field_of_a_real_payload() {
    // A payload the daemon publishes: every key of its JSON is a property of the schema.
    let mut m = BatteryState {
        voltage: 12.5,
        ..Default::default()
    };
    m.header.frame_id = "base".into();
    let json = viewer_json(&rmp_serde::to_vec_named(&m).unwrap()).unwrap();
    let s = schema("sensor_msgs/BatteryState");
    for (k, _) in json.as_object().unwrap() {
        assert!(s["properties"].get(k).is_some(), "{k}");
    }
    let stamp = &json["header"]["stamp"];
    for (k, _) in stamp.as_object().unwrap() {
        assert!(
            s["properties"]["header"]["properties"]["stamp"]["properties"]
                .get(k)
                .is_some()
        );
    }
    // NaN (unknown) is null, and the schema allows it.
    assert_eq!(json["current"], Json::Null);
}
