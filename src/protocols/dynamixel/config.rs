//! A Dynamixel bus as written in a robot file (`protocol = "dynamixel"`): the port, the
//! servos' model, joint-state and control-table streams, and JointState-shaped commands.

use crate::spec::command::default_out_of_range;
use crate::spec::{OutOfRange, SerialConfig};
use serde::Deserialize;

/// The bus's own keys; its `streams` and `commands` are read one by one beside it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DynamixelConfig {
    pub name: String,
    /// The RS-485 or TTL adapter (U2D2, OpenRB); Dynamixel's factory rate is 57600.
    pub serial: Option<SerialConfig>,
    /// A serial server (ser2net) instead of a local port.
    pub tcp: Option<String>,
    pub frame_id: Option<String>,
    /// The servos' control table: `x` (the default: XM430, XH430, XM540, XH540, XW) or a
    /// P-series model (`ph54`, `ph42`, `pm54`, `pm42`).
    pub model: Option<String>,
    /// How long to wait for a servo's answer (default 20 ms).
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DynamixelStreamConfig {
    pub sensor: String,
    /// `sensor_msgs/JointState` (present position, velocity and current) or `map` (the
    /// control-table `items` of each joint).
    #[serde(rename = "type", default = "default_joint_state")]
    pub msg_type: String,
    /// Servo ids, and one joint name per id.
    pub ids: Vec<u8>,
    pub joints: Vec<String>,
    pub poll_hz: f64,
    /// For `map`: control-table items by name, e.g. `["present_temperature"]`.
    #[serde(default)]
    pub items: Vec<String>,
    #[serde(default)]
    pub qos: u8,
    #[serde(default)]
    pub retain: bool,
    pub max_rate_hz: Option<f64>,
    pub frame_id: Option<String>,
}

fn default_joint_state() -> String {
    "sensor_msgs/JointState".into()
}

/// What an actuator does when it must be made safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SafeConfig {
    /// Torque off: the joints go limp (the default).
    #[default]
    TorqueOff,
    /// The present position becomes the goal, with torque on: an arm holding a load
    /// keeps it rather than dropping it.
    Hold,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DynamixelCommandConfig {
    pub actuator: String,
    #[serde(rename = "type", default = "default_joint_state")]
    pub msg_type: String,
    pub ids: Vec<u8>,
    pub joints: Vec<String>,
    /// Per joint, `[min, max]` in radians for position goals.
    #[serde(default)]
    pub limits: toml::Table,
    /// The largest velocity goal, in rad/s; without it, velocity goals are refused.
    pub max_velocity: Option<f64>,
    #[serde(default = "default_out_of_range")]
    pub out_of_range: OutOfRange,
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub safe: SafeConfig,
    pub max_rate_hz: Option<f64>,
    pub max_age_ms: Option<u64>,
}
