//! JSON Schemas for every payload, generated from the Rust types with schemars, in the
//! subset Foxglove and Lichtblick parse: subschemas inlined, one `type` string per field
//! (they refuse `["number", "null"]`), every object with `properties`, bytes as base64,
//! and `header.stamp` with Foxglove's `nsec` beside its `nanosec`. Floats say they may be
//! `null` (NaN travels as `null` in JSON) with `"nullable": true`, the OpenAPI keyword,
//! since the viewers refuse the standard spelling.

use crate::diagnostics::DiagnosticsReport;
use crate::fleet::Ack;
use crate::messages::*;
use crate::meta::{Catalog, Status, ACK_TYPE, CATALOG_TOPIC, DIAGNOSTICS_TOPIC, STATUS_TOPIC};
use schemars::generate::SchemaSettings;
use schemars::JsonSchema;
use serde_json::{json, Value as Json};

/// Schema names of the meta topics, as `topic list` shows them.
pub const STATUS: &str = STATUS_TOPIC.type_name;
pub const CATALOG: &str = CATALOG_TOPIC.type_name;
pub const DIAGNOSTICS: &str = DIAGNOSTICS_TOPIC.type_name;
pub const ACK: &str = ACK_TYPE;
/// A topic no catalog names: its schema accepts anything.
pub const UNLISTED: &str = "botbus/unlisted";

fn generate<T: JsonSchema>() -> Json {
    let generator = SchemaSettings::draft07()
        .with(|s| s.inline_subschemas = true)
        .for_serialize()
        .into_generator();
    let mut schema = generator.into_root_schema_for::<T>().to_value();
    viewer_shape(&mut schema);
    schema
}

/// `schema` in the viewers' subset (see the module doc), everywhere in it.
fn viewer_shape(schema: &mut Json) {
    let Json::Object(obj) = schema else {
        if let Json::Array(items) = schema {
            items.iter_mut().for_each(viewer_shape);
        }
        return;
    };
    // `Option<T>`: schemars writes `anyOf: [T, null]` or `type: [t, "null"]`.
    let mut nullable = false;
    if let Some(Json::Array(alts)) = obj.get("anyOf").cloned() {
        let (nulls, rest): (Vec<_>, Vec<_>) = alts
            .into_iter()
            .partition(|a| a.get("type") == Some(&json!("null")));
        if let ([_], [Json::Object(other)]) = (nulls.as_slice(), rest.as_slice()) {
            obj.remove("anyOf");
            obj.extend(other.clone());
            nullable = true;
        }
    }
    if let Some(Json::Array(types)) = obj.get("type").cloned() {
        let rest: Vec<&Json> = types.iter().filter(|t| *t != "null").collect();
        if let [one] = rest.as_slice() {
            nullable |= rest.len() < types.len();
            obj.insert("type".into(), (*one).clone());
        }
    }
    if nullable || obj.get("type") == Some(&json!("number")) {
        obj.insert("nullable".into(), json!(true));
    }
    if obj.get("type") == Some(&json!("object")) && !obj.contains_key("properties") {
        obj.insert("properties".into(), json!({}));
    }
    obj.values_mut().for_each(viewer_shape);
    // A field that may hold anything (a command's `id`) has no type a viewer can take: it
    // is left out of `properties`, and still allowed.
    let mut untyped = Vec::new();
    if let Some(Json::Object(props)) = obj.get_mut("properties") {
        props.retain(|name, p| {
            let typed = p.get("type").is_some_and(Json::is_string);
            if !typed {
                untyped.push(Json::String(name.clone()));
            }
            typed
        });
        if props.contains_key("sec") && props.contains_key("nanosec") {
            props.insert(
                "nsec".into(),
                json!({"type": "integer", "format": "uint32", "minimum": 0,
                       "description": "= nanosec, the name Foxglove reads timestamps by"}),
            );
        }
    }
    if let Some(Json::Array(required)) = obj.get_mut("required") {
        required.retain(|r| !untyped.contains(r));
    }
}

/// The `map` schema: a header and named numbers, bools and strings. The names of a
/// `sample` payload become properties, each with the JSON type its value has (so a
/// recording lists a map stream's fields).
pub fn map_schema(sample: Option<&Json>) -> Json {
    let mut schema = generate::<HeaderOnly>();
    if let (Some(Json::Object(props)), Some(Json::Object(values))) =
        (schema.get_mut("properties"), sample)
    {
        for (name, v) in values.iter().filter(|(k, _)| *k != "header") {
            let t = match v {
                Json::Bool(_) => json!({"type": "boolean"}),
                Json::String(_) => json!({"type": "string"}),
                _ => json!({"type": "number", "nullable": true}),
            };
            props.insert(name.clone(), t);
        }
    }
    let obj = schema.as_object_mut().expect("an object schema");
    obj.insert("title".into(), json!("map"));
    obj.insert(
        "additionalProperties".into(),
        json!({"type": ["number", "boolean", "string", "null"]}),
    );
    schema
}

/// What every `map` payload has for certain.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct HeaderOnly {
    header: Header,
}

/// The schema of a channel of type `name` whose first payload is `sample`: a `map`
/// stream's lists that payload's fields.
pub fn schema_with_sample(name: &str, sample: Option<&Json>) -> Json {
    match name {
        "map" => map_schema(sample),
        other => schema(other),
    }
}

/// The schema of a type name (a message type of DESIGN.md section 4 or a meta type).
pub fn schema(name: &str) -> Json {
    let typed = MessageType::from_name(name).map(|t| match t {
        MessageType::NavSatFix => generate::<NavSatFix>(),
        MessageType::Imu => generate::<Imu>(),
        MessageType::JointState => generate::<JointState>(),
        MessageType::BatteryState => generate::<BatteryState>(),
        MessageType::Temperature => generate::<Temperature>(),
        MessageType::Range => generate::<Range>(),
        MessageType::Twist => generate::<Twist>(),
        MessageType::Float64 => generate::<Float64>(),
        MessageType::Bool => generate::<BoolMsg>(),
        MessageType::String => generate::<StringMsg>(),
        MessageType::Frame => generate::<Frame>(),
        MessageType::Map => map_schema(None),
    });
    typed.unwrap_or_else(|| match name {
        STATUS => generate::<Status>(),
        CATALOG => generate::<Catalog>(),
        DIAGNOSTICS => generate::<DiagnosticsReport>(),
        ACK => generate::<Ack>(),
        _ => json!({"title": UNLISTED, "type": "object", "properties": {}}),
    })
}

#[cfg(test)]
mod tests;
