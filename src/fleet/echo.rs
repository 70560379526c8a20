//! `botbus topic echo`: subscribe to a filter and print each message: one JSON object per
//! line by default, YAML-style with `--pretty`, one field with `--field`, hex with `--raw`.

use super::client::{check_filter, FleetClient, FleetError, FleetOptions};
use super::json;
use crate::bus::Incoming;
use std::io::Write;
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ToolError {
    #[error(transparent)]
    Fleet(#[from] FleetError),
    #[error("output: {0}")]
    Output(#[from] std::io::Error),
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Default)]
pub struct EchoOptions {
    pub count: Option<u64>,
    pub raw: bool,
    pub pretty: bool,
    /// A dotted path into the payload (e.g. `header.seq`): print only that value.
    pub field: Option<String>,
    /// Give up after this long without a message; `None` waits forever.
    pub idle_timeout: Option<Duration>,
}

/// `{"topic": .., "payload": ..}`; payloads that are not MessagePack come as hex with a
/// note, never a crash.
pub fn render(msg: &Incoming, raw: bool) -> serde_json::Value {
    if raw {
        return serde_json::json!({"topic": msg.topic, "hex": crate::messages::hex_encode(&msg.payload)});
    }
    match json::decode_msgpack(&msg.payload) {
        Ok(v) => serde_json::json!({"topic": msg.topic, "payload": json::to_json(&v)}),
        Err(e) => serde_json::json!({
            "topic": msg.topic,
            "hex": crate::messages::hex_encode(&msg.payload),
            "note": format!("not MessagePack: {e}"),
        }),
    }
}

/// The value at a dotted path (`header.stamp.sec`, `position_covariance[0]`).
pub fn field<'a>(v: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    let mut cur = v;
    for part in path.split('.') {
        let (name, index) = match part.split_once('[') {
            Some((n, i)) => (n, i.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        if !name.is_empty() {
            cur = cur.get(name)?;
        }
        if let Some(i) = index {
            cur = cur.get(i)?;
        }
    }
    Some(cur)
}

/// A YAML-style rendering for people (not a YAML serializer: strings are not quoted).
pub fn pretty(v: &serde_json::Value, indent: usize, out: &mut String) {
    use serde_json::Value as J;
    let pad = "  ".repeat(indent);
    match v {
        J::Object(m) => {
            for (k, v) in m {
                match v {
                    J::Object(inner) if !inner.is_empty() => {
                        out.push_str(&format!("{pad}{k}:\n"));
                        pretty(v, indent + 1, out);
                    }
                    J::Array(items) if items.iter().any(|i| i.is_object() || i.is_array()) => {
                        out.push_str(&format!("{pad}{k}:\n"));
                        pretty(v, indent + 1, out);
                    }
                    _ => out.push_str(&format!("{pad}{k}: {}\n", scalar(v))),
                }
            }
        }
        J::Array(items) => {
            for i in items {
                if i.is_object() {
                    out.push_str(&format!("{pad}-\n"));
                    pretty(i, indent + 1, out);
                } else {
                    out.push_str(&format!("{pad}- {}\n", scalar(i)));
                }
            }
        }
        other => out.push_str(&format!("{pad}{}\n", scalar(other))),
    }
}

fn scalar(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "~".into(),
        serde_json::Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(scalar).collect();
            format!("[{}]", parts.join(", "))
        }
        other => other.to_string(),
    }
}

fn print(msg: &Incoming, opts: &EchoOptions, out: &mut (dyn Write + Send)) -> std::io::Result<()> {
    let v = render(msg, opts.raw);
    if let Some(path) = &opts.field {
        let payload = v.get("payload").unwrap_or(&serde_json::Value::Null);
        let found = field(payload, path)
            .cloned()
            .unwrap_or(serde_json::Value::Null);
        return writeln!(out, "{found}");
    }
    if opts.pretty {
        let mut s = String::from("---\n");
        pretty(&v, 0, &mut s);
        return write!(out, "{s}");
    }
    writeln!(out, "{v}")
}

pub async fn echo(
    opts: FleetOptions,
    filter: &str,
    eo: EchoOptions,
    out: &mut (dyn Write + Send),
) -> Result<u64, ToolError> {
    check_filter(filter).map_err(ToolError::Invalid)?;
    let fleet = FleetClient::connect(opts).await?;
    let mut rx = fleet.subscribe_raw(filter).await?;
    let mut seen = 0;
    while eo.count.is_none_or(|c| seen < c) {
        let msg = match eo.idle_timeout {
            Some(t) => match tokio::time::timeout(t, rx.recv()).await {
                Ok(m) => m,
                Err(_) => break,
            },
            None => rx.recv().await,
        };
        let Some(msg) = msg else { break };
        print(&msg, &eo, out)?;
        out.flush()?;
        seen += 1;
    }
    fleet.close().await;
    Ok(seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_found_by_dotted_path() {
        let v = serde_json::json!({"header": {"seq": 4}, "cov": [1.0, 2.0]});
        assert_eq!(field(&v, "header.seq"), Some(&serde_json::json!(4)));
        assert_eq!(field(&v, "cov[1]"), Some(&serde_json::json!(2.0)));
        assert_eq!(field(&v, "nope"), None);
    }

    #[test]
    fn pretty_output_is_indented_yaml_style() {
        let mut s = String::new();
        pretty(
            &serde_json::json!({"topic": "t", "payload": {"header": {"seq": 1}, "v": [1, 2], "x": null}}),
            0,
            &mut s,
        );
        assert_eq!(
            s,
            "topic: t\npayload:\n  header:\n    seq: 1\n  v: [1, 2]\n  x: ~\n"
        );
    }

    #[test]
    fn payloads_that_are_not_msgpack_are_shown_as_hex() {
        let m = Incoming {
            topic: "t".into(),
            payload: bytes::Bytes::from_static(b"\xc1oops"),
            qos: crate::bus::QoS::AtMostOnce,
            retain: false,
            oversized: None,
        };
        let v = render(&m, false);
        assert_eq!(v["hex"], "c16f6f7073");
        assert!(v["note"].as_str().unwrap().starts_with("not MessagePack"));
    }
}
