//! A text-line device as written in a robot file (`protocol = "lines"`).

use crate::spec::command::default_out_of_range;
use crate::spec::{OutOfRange, SerialConfig};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineFormatConfig {
    Kv,
    Csv,
    Json,
}

/// The device's own keys; its `streams` and `commands` are read one by one beside it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinesConfig {
    pub name: String,
    pub serial: Option<SerialConfig>,
    pub tcp: Option<String>,
    pub frame_id: Option<String>,
    pub idle_timeout_ms: Option<u64>,
    pub format: LineFormatConfig,
    /// csv: the name of each column, in order.
    pub columns: Option<Vec<String>>,
    /// csv: the separator character (default `,`).
    pub delimiter: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinesStreamConfig {
    pub sensor: String,
    #[serde(rename = "type")]
    pub msg_type: String,
    #[serde(default)]
    pub when: BTreeMap<String, toml::Value>,
    /// Message field path → line key. Nested TOML tables are read as dotted paths.
    #[serde(default)]
    pub fields: toml::Table,
    #[serde(default)]
    pub qos: u8,
    #[serde(default)]
    pub retain: bool,
    pub max_rate_hz: Option<f64>,
    pub frame_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinesCommandConfig {
    pub actuator: String,
    #[serde(rename = "type")]
    pub msg_type: String,
    pub template: String,
    /// Field path → `[min, max]`. Nested TOML tables are read as dotted paths.
    #[serde(default)]
    pub limits: toml::Table,
    #[serde(default = "default_out_of_range")]
    pub out_of_range: OutOfRange,
    pub timeout_ms: Option<u64>,
    /// Field path → value written on deadman, e-stop, disconnect and shutdown.
    #[serde(default)]
    pub safe: toml::Table,
    pub max_rate_hz: Option<f64>,
    pub max_age_ms: Option<u64>,
}
