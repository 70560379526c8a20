//! Robot files (`robots/<id>.toml`) as written: closed, tagged serde structs that reject
//! unknown keys. [`super::validate`] turns them into the runtime [`super::Robot`].

use serde::Deserialize;
use std::collections::BTreeMap;

/// A whole robot file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RobotConfig {
    pub id: String,
    #[serde(default)]
    pub devices: Vec<DeviceConfig>,
}

/// One device; `protocol` selects the variant and the keys it accepts.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "protocol", rename_all = "snake_case")]
pub enum DeviceConfig {
    Nmea(NmeaDeviceConfig),
    Lines(LinesDeviceConfig),
}

/// The protocol names a robot file may use, including those later builds add.
pub const ALL_PROTOCOLS: [&str; 6] = ["nmea", "lines", "modbus", "slcan", "socketcan", "dynamixel"];
/// The protocols this build implements.
pub const SUPPORTED_PROTOCOLS: [&str; 2] = ["nmea", "lines"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParityConfig {
    None,
    Odd,
    Even,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowControlConfig {
    None,
    Software,
    Hardware,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialConfig {
    pub path: String,
    #[serde(default = "default_baud")]
    pub baud: u32,
    #[serde(default = "default_data_bits")]
    pub data_bits: u8,
    #[serde(default = "default_parity")]
    pub parity: ParityConfig,
    #[serde(default = "default_stop_bits")]
    pub stop_bits: u8,
    #[serde(default = "default_flow_control")]
    pub flow_control: FlowControlConfig,
}

fn default_baud() -> u32 {
    115_200
}
fn default_data_bits() -> u8 {
    8
}
fn default_parity() -> ParityConfig {
    ParityConfig::None
}
fn default_stop_bits() -> u8 {
    1
}
fn default_flow_control() -> FlowControlConfig {
    FlowControlConfig::None
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NmeaDeviceConfig {
    pub name: String,
    pub serial: Option<SerialConfig>,
    pub tcp: Option<String>,
    pub frame_id: Option<String>,
    /// Milliseconds without a byte after which the device counts as gone and is reopened.
    pub idle_timeout_ms: Option<u64>,
    #[serde(default)]
    pub streams: Vec<NmeaStreamConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NmeaStreamConfig {
    pub sensor: String,
    #[serde(rename = "type")]
    pub msg_type: String,
    pub source: String,
    #[serde(default)]
    pub qos: u8,
    #[serde(default)]
    pub retain: bool,
    pub max_rate_hz: Option<f64>,
    pub frame_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineFormat {
    Kv,
    Csv,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinesDeviceConfig {
    pub name: String,
    pub serial: Option<SerialConfig>,
    pub tcp: Option<String>,
    pub frame_id: Option<String>,
    pub idle_timeout_ms: Option<u64>,
    pub format: LineFormat,
    /// csv: the name of each column, in order.
    pub columns: Option<Vec<String>>,
    /// csv: the separator character (default `,`).
    pub delimiter: Option<String>,
    #[serde(default)]
    pub streams: Vec<LinesStreamConfig>,
    #[serde(default)]
    pub commands: Vec<LinesCommandConfig>,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutOfRange {
    Reject,
    Clamp,
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

fn default_out_of_range() -> OutOfRange {
    OutOfRange::Reject
}
