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
    assert_eq!(s["properties"]["voltage"]["type"], "number");
    assert_eq!(s["properties"]["voltage"]["format"], "float");
    let stamp = &s["properties"]["header"]["properties"]["stamp"];
    assert_eq!(props(stamp), ["sec", "nanosec", "nsec"]);
}

#[test]
fn a_can_frame_says_its_data_is_a_hex_string() {
    let s = schema("can_msgs/Frame");
    let data = &s["properties"]["data"];
    assert_eq!(data["type"], "string");
    assert_eq!(data["contentEncoding"], "base64");
}

#[test]
fn the_meta_topics_have_their_own_schemas() {
    let status = schema(STATUS);
    assert_eq!(props(&status), ["state", "boot", "version"]);
    let catalog = schema(CATALOG);
    assert_eq!(props(&catalog), ["robot", "boot", "streams", "commands"]);
    let diag = schema(DIAGNOSTICS);
    assert_eq!(props(&diag), ["header", "devices", "mqtt"]);
    // `id` may be anything, which viewers cannot type: it is allowed, not listed.
    let ack = schema(ACK);
    assert_eq!(props(&ack), ["ok", "error", "applied"]);
    assert_eq!(ack["required"], json!(["ok", "error", "applied"]));
    assert_eq!(
        ack["properties"]["error"],
        json!({"type": "string", "nullable": true})
    );
    // A topic no catalog names: anything goes.
    assert_eq!(props(&schema(UNLISTED)), Vec::<String>::new());
}

#[test]
fn a_map_schema_takes_its_fields_from_a_sample_and_still_allows_others() {
    let sample = json!({"header": {}, "rpm": 1200, "ok": true, "mode": "auto", "t": null});
    let s = map_schema(Some(&sample));
    assert_eq!(props(&s), ["header", "rpm", "ok", "mode", "t"]);
    assert_eq!(s["properties"]["ok"]["type"], "boolean");
    assert_eq!(
        s["properties"]["t"],
        json!({"type": "number", "nullable": true})
    );
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

/// Foxglove Studio's and Lichtblick's `parseJsonSchema`, as a checker: an object with
/// `properties`, each with one `type` string they take, strings plain or base64, array
/// items typed. A schema outside it makes them drop the channel.
fn foxglove_parses(schema: &Json, path: &str) -> Result<(), String> {
    if schema["type"] != "object" {
        return Err(format!(
            "{path}: expected type object, got {}",
            schema["type"]
        ));
    }
    let props = schema["properties"]
        .as_object()
        .ok_or(format!("{path}: an object without properties"))?;
    for (name, p) in props {
        let at = format!("{path}.{name}");
        match p["type"].as_str() {
            Some("boolean" | "number" | "integer") => {}
            Some("string") => match p.get("contentEncoding") {
                None => {}
                Some(e) if e == "base64" => {}
                Some(e) => return Err(format!("{at}: contentEncoding {e}")),
            },
            Some("object") => foxglove_parses(p, &at)?,
            Some("array") => match p["items"]["type"].as_str() {
                Some("boolean" | "number" | "integer") => {}
                Some("string") if p["items"].get("contentEncoding").is_none() => {}
                Some("object") => foxglove_parses(&p["items"], &at)?,
                other => return Err(format!("{at}: array items of type {other:?}")),
            },
            _ => return Err(format!("{at}: type {}", p["type"])),
        }
    }
    Ok(())
}

#[test]
fn every_schema_is_in_the_subset_foxglove_and_lichtblick_parse() {
    let names = MessageType::ALL.iter().map(|t| t.name()).chain([
        STATUS,
        CATALOG,
        DIAGNOSTICS,
        ACK,
        UNLISTED,
    ]);
    for name in names {
        let s = schema(name);
        foxglove_parses(&s, name).unwrap_or_else(|e| panic!("{e}\n{s:#}"));
    }
    let sample = json!({"header": {}, "rpm": 1, "ok": false, "mode": "x"});
    foxglove_parses(&map_schema(Some(&sample)), "map").unwrap();
    // The checker refuses what the viewers refuse.
    let nullable_list =
        json!({"type": "object", "properties": {"v": {"type": ["number", "null"]}}});
    assert!(foxglove_parses(&nullable_list, "x").is_err());
    assert!(foxglove_parses(&json!({"type": "object"}), "x").is_err());
}
