//! A microcontroller that prints one line per stream of its robot-file device, in the
//! device's format, with plausible values for battery, IMU and other fields.

use super::validate::{LineFormat, LineSelect, Lines};
use crate::messages::{FieldKind, MessageType};

/// A plausible value for a field at time `t`, by what its path says it is.
pub fn value_for(path: &str, kind: FieldKind, t: f64) -> String {
    // Each path gets its own phase, so x and y of one vector do not move in lockstep.
    let phase = path
        .bytes()
        .fold(0u32, |a, b| a.wrapping_mul(31).wrapping_add(b as u32)) as f64;
    let wave = |period: f64| (t / period * std::f64::consts::TAU + phase).sin();
    match kind {
        FieldKind::Bool => return (wave(10.0) > 0.0).to_string(),
        FieldKind::Str | FieldKind::Bytes => return "ok".into(),
        FieldKind::Int { min, max } => {
            let span = (max.saturating_sub(min)).clamp(1, 1000);
            return (min.max(0) + (t as i64).rem_euclid(span)).to_string();
        }
        _ => {}
    }
    let v = if path.ends_with("voltage") {
        12.6 - 0.4 * (t / 600.0).fract() + 0.01 * wave(3.0)
    } else if path.ends_with("current") {
        -1.2 + 0.3 * wave(7.0)
    } else if path.ends_with("percentage") {
        0.9 - 0.2 * (t / 600.0).fract()
    } else if path.ends_with("charge") {
        18.0 - 2.0 * (t / 600.0).fract()
    } else if path.contains("temperature") {
        31.0 + 2.0 * wave(60.0)
    } else if path == "linear_acceleration.z" {
        9.81 + 0.05 * wave(0.7)
    } else if path.starts_with("linear_acceleration") {
        0.2 * wave(2.3)
    } else if path.starts_with("angular_velocity") {
        0.05 * wave(4.1)
    } else if path == "orientation.w" {
        1.0
    } else if path.starts_with("orientation") {
        0.0
    } else if path.ends_with("range") {
        1.5 + 0.5 * wave(5.0)
    } else {
        wave(8.0)
    };
    format!("{v:.3}")
}

/// The line keys a stream reads, with the value to print for each.
fn stream_values(msg_type: MessageType, select: &LineSelect, t: f64) -> Vec<(String, String)> {
    let LineSelect { when, fields } = select;
    let mut out: Vec<(String, String)> = when.clone();
    if fields.is_empty() {
        out.push(("value".into(), format!("{:.3}", (t * 0.5).sin())));
        out.push(("count".into(), (t as i64).to_string()));
    }
    for (path, key) in fields {
        let kind = msg_type.kind_of(path).unwrap_or(FieldKind::Float);
        out.push((key.clone(), value_for(path, kind, t)));
    }
    out
}

fn json_insert(obj: &mut serde_json::Map<String, serde_json::Value>, key: &str, value: &str) {
    let v = match crate::messages::Scalar::infer(value) {
        crate::messages::Scalar::Int(i) => serde_json::json!(i),
        crate::messages::Scalar::Float(f) => serde_json::json!(f),
        crate::messages::Scalar::Bool(b) => serde_json::json!(b),
        crate::messages::Scalar::Str(s) => serde_json::json!(s),
    };
    match key.split_once('.') {
        Some((head, rest)) => {
            let child = obj
                .entry(head.to_string())
                .or_insert_with(|| serde_json::json!({}));
            if let Some(map) = child.as_object_mut() {
                json_insert(map, rest, value);
            }
        }
        None => {
            obj.insert(key.to_string(), v);
        }
    }
}

/// One line per stream of `device` at time `t`.
pub fn lines(device: &Lines, t: f64) -> String {
    let mut out = String::new();
    for s in &device.streams {
        let values = stream_values(s.spec.msg_type, &s.select, t);
        let line = match &device.format {
            LineFormat::Kv => values
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" "),
            LineFormat::Csv { columns, delimiter } => columns
                .iter()
                .map(|c| {
                    values
                        .iter()
                        .find(|(k, _)| k == c)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_else(|| "0".into())
                })
                .collect::<Vec<_>>()
                .join(&delimiter.to_string()),
            LineFormat::Json => {
                let mut obj = serde_json::Map::new();
                for (k, v) in &values {
                    json_insert(&mut obj, k, v);
                }
                serde_json::Value::Object(obj).to_string()
            }
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}
