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
    Modbus(ModbusDeviceConfig),
    Slcan(CanDeviceConfig),
    Socketcan(CanDeviceConfig),
}

/// The protocol names a robot file may use, including those later builds add.
pub const ALL_PROTOCOLS: [&str; 6] = ["nmea", "lines", "modbus", "slcan", "socketcan", "dynamixel"];
/// The protocols this build implements.
pub const SUPPORTED_PROTOCOLS: [&str; 5] = ["nmea", "lines", "modbus", "slcan", "socketcan"];

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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModbusDeviceConfig {
    pub name: String,
    /// Modbus RTU over a serial port (RS-485 adapter).
    pub serial: Option<SerialConfig>,
    /// Modbus TCP.
    pub tcp: Option<String>,
    pub frame_id: Option<String>,
    /// How long to wait for a unit's answer (default 200 ms).
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub streams: Vec<ModbusStreamConfig>,
    #[serde(default)]
    pub commands: Vec<ModbusCommandConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegisterKind {
    Holding,
    Input,
    Coil,
    Discrete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegisterFormat {
    U16,
    I16,
    U32,
    I32,
    F32,
    Bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WordOrder {
    /// High word first (Modbus convention).
    Big,
    /// Low word first ("word swapped").
    Little,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterConfig {
    pub name: String,
    pub unit: u8,
    pub kind: RegisterKind,
    pub address: u16,
    pub format: Option<RegisterFormat>,
    pub word_order: Option<WordOrder>,
    pub scale: Option<f64>,
    pub offset: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModbusStreamConfig {
    pub sensor: String,
    #[serde(rename = "type", default = "default_map_type")]
    pub msg_type: String,
    pub poll_hz: f64,
    pub registers: Vec<RegisterConfig>,
    /// Message field path → register name; without it (type `map`), every register by name.
    #[serde(default)]
    pub fields: toml::Table,
    #[serde(default)]
    pub qos: u8,
    #[serde(default)]
    pub retain: bool,
    pub max_rate_hz: Option<f64>,
    pub frame_id: Option<String>,
}

fn default_map_type() -> String {
    "map".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteConfig {
    /// The command's field path whose value is written.
    pub field: String,
    pub unit: u8,
    pub address: u16,
    /// `holding` (default) or `coil`.
    pub kind: Option<RegisterKind>,
    pub format: Option<RegisterFormat>,
    pub word_order: Option<WordOrder>,
    pub scale: Option<f64>,
    pub offset: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModbusCommandConfig {
    pub actuator: String,
    #[serde(rename = "type")]
    pub msg_type: String,
    pub writes: Vec<WriteConfig>,
    #[serde(default)]
    pub limits: toml::Table,
    #[serde(default = "default_out_of_range")]
    pub out_of_range: OutOfRange,
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub safe: toml::Table,
    pub max_rate_hz: Option<f64>,
    pub max_age_ms: Option<u64>,
}

/// A CAN bus: an slcan adapter on a serial port (or TCP), or a SocketCAN interface.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanDeviceConfig {
    pub name: String,
    /// slcan: the adapter's serial port.
    pub serial: Option<SerialConfig>,
    /// slcan over a TCP serial server.
    pub tcp: Option<String>,
    /// socketcan: the interface, e.g. "can0".
    pub interface: Option<String>,
    /// slcan: the bus bitrate (10k to 1M); socketcan sets it with `ip link`.
    pub bitrate: Option<u32>,
    /// DBC file for `can_message` streams and commands (relative to the robot file).
    pub dbc: Option<String>,
    pub frame_id: Option<String>,
    pub idle_timeout_ms: Option<u64>,
    #[serde(default)]
    pub streams: Vec<CanStreamConfig>,
    #[serde(default)]
    pub commands: Vec<CanCommandConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanStreamConfig {
    pub sensor: String,
    /// `map` (the default with `can_message`) or `can_msgs/Frame` (the default with `ids`).
    #[serde(rename = "type")]
    pub msg_type: Option<String>,
    /// A DBC message: its signals, decoded, as a `map`.
    pub can_message: Option<String>,
    /// Raw frames with these ids (all ids when the stream has neither key... nor `ids`).
    pub ids: Option<Vec<u32>>,
    #[serde(default)]
    pub qos: u8,
    #[serde(default)]
    pub retain: bool,
    pub max_rate_hz: Option<f64>,
    pub frame_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanCommandConfig {
    pub actuator: String,
    #[serde(rename = "type")]
    pub msg_type: String,
    /// A DBC message to encode, with `signals = {Signal = "field.path"}`.
    pub can_message: Option<String>,
    #[serde(default)]
    pub signals: toml::Table,
    /// For `can_msgs/Frame` commands: the ids they may write.
    pub ids: Option<Vec<u32>>,
    #[serde(default)]
    pub limits: toml::Table,
    #[serde(default = "default_out_of_range")]
    pub out_of_range: OutOfRange,
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub safe: toml::Table,
    pub max_rate_hz: Option<f64>,
    pub max_age_ms: Option<u64>,
}
