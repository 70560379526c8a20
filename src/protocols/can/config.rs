//! A CAN bus as written in a robot file (`protocol = "slcan"` or `"socketcan"`).

use crate::spec::command::default_out_of_range;
use crate::spec::{OutOfRange, SerialConfig};
use serde::Deserialize;

/// The bus's own keys: an slcan adapter on a serial port (or TCP), or a SocketCAN
/// interface. Its `streams` and `commands` are read one by one beside it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanConfig {
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
    /// Raw frames with these ids (every id when the stream has neither key).
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
