//! JSON Schemas for every payload, generated from the Rust types with schemars, in the
//! shape viewers need: subschemas inlined, floats nullable (NaN travels as `null` in
//! JSON), and `header.stamp` with Foxglove's `nsec` beside its `nanosec`.

use crate::diagnostics::DiagnosticsReport;
use crate::fleet::Ack;
use crate::messages::*;
use crate::meta::{Catalog, Status};
use schemars::generate::SchemaSettings;
use schemars::JsonSchema;
use serde_json::{json, Map, Value as Json};

/// Schema names of the meta topics, as `topic list` shows them.
pub const STATUS: &str = "botbus/status";
pub const CATALOG: &str = "botbus/catalog";
pub const DIAGNOSTICS: &str = "botbus/diagnostics";
pub const ACK: &str = "botbus/ack";
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

/// Floats become nullable and timestamps gain `nsec`, everywhere in `schema`.
fn viewer_shape(schema: &mut Json) {
    let Json::Object(obj) = schema else {
        if let Json::Array(items) = schema {
            items.iter_mut().for_each(viewer_shape);
        }
        return;
    };
    if obj.get("type") == Some(&json!("number")) {
        obj.insert("type".into(), json!(["number", "null"]));
    }
    if let Some(Json::Object(props)) = obj.get_mut("properties") {
        if props.contains_key("sec") && props.contains_key("nanosec") {
            props.insert(
                "nsec".into(),
                json!({"type": "integer", "format": "uint32", "minimum": 0,
                       "description": "= nanosec, the name Foxglove reads timestamps by"}),
            );
        }
    }
    obj.values_mut().for_each(viewer_shape);
}

/// The `map` schema: a header and named numbers, bools and strings. The names of a
/// `sample` payload become properties, each with the JSON type its value has (so a
/// recording lists a map stream's fields).
pub fn map_schema(sample: Option<&Json>) -> Json {
    let mut schema = generate::<HeaderOnly>();
    let any = json!({"type": ["number", "boolean", "string", "null"]});
    if let (Some(Json::Object(props)), Some(Json::Object(values))) =
        (schema.get_mut("properties"), sample)
    {
        for (name, v) in values.iter().filter(|(k, _)| *k != "header") {
            let t = match v {
                Json::Bool(_) => json!({"type": "boolean"}),
                Json::String(_) => json!({"type": "string"}),
                Json::Number(_) | Json::Null => json!({"type": ["number", "null"]}),
                _ => any.clone(),
            };
            props.insert(name.clone(), t);
        }
    }
    let obj = schema.as_object_mut().expect("an object schema");
    obj.insert("title".into(), json!("map"));
    obj.insert("additionalProperties".into(), any);
    schema
}

/// What every `map` payload has for certain.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct HeaderOnly {
    header: Header,
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
        _ => Json::Object(Map::from_iter([("title".into(), json!(UNLISTED))])),
    })
}

#[cfg(test)]
mod tests;
