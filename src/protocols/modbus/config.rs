//! A Modbus bus as written in a robot file (`protocol = "modbus"`).

use crate::spec::command::default_out_of_range;
use crate::spec::{OutOfRange, SerialConfig};
use serde::Deserialize;

/// The bus's own keys; its `streams` and `commands` are read one by one beside it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModbusConfig {
    pub name: String,
    /// Modbus RTU over a serial port (RS-485 adapter).
    pub serial: Option<SerialConfig>,
    /// Modbus TCP.
    pub tcp: Option<String>,
    pub frame_id: Option<String>,
    /// How long to wait for a unit's answer (default 200 ms).
    pub timeout_ms: Option<u64>,
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
