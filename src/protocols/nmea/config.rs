//! An NMEA device as written in a robot file (`protocol = "nmea"`).

use crate::spec::SerialConfig;
use serde::Deserialize;

/// The device's own keys; its `streams` are read one by one beside it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NmeaConfig {
    pub name: String,
    pub serial: Option<SerialConfig>,
    pub tcp: Option<String>,
    pub frame_id: Option<String>,
    /// Milliseconds without a byte after which the device counts as gone and is reopened.
    pub idle_timeout_ms: Option<u64>,
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
