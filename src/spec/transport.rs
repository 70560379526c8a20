//! Byte transports as written (`serial = {...}` or `tcp = "host:port"`) and validated.
//! Opening them is [`crate::transport`]'s job.

use super::Checker;
use serde::Deserialize;
use std::path::PathBuf;

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

/// How a byte-stream device is reached.
#[derive(Debug, Clone, PartialEq)]
pub enum TransportSpec {
    Serial(SerialSpec),
    /// `host:port` of a ser2net-style serial server.
    Tcp(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct SerialSpec {
    /// Absolute, or relative to the robot file's folder.
    pub path: PathBuf,
    pub baud: u32,
    pub data_bits: u8,
    pub parity: ParityConfig,
    pub stop_bits: u8,
    pub flow_control: FlowControlConfig,
}

impl TransportSpec {
    /// A short description for logs: the path or the address.
    pub fn describe(&self) -> String {
        match self {
            TransportSpec::Serial(s) => s.path.display().to_string(),
            TransportSpec::Tcp(a) => format!("tcp://{a}"),
        }
    }
}

impl Checker {
    /// The device's `serial` or `tcp` key: exactly one must be given.
    pub fn transport(
        &mut self,
        serial: Option<SerialConfig>,
        tcp: Option<String>,
        at: &str,
    ) -> Option<TransportSpec> {
        match (serial, tcp) {
            (Some(s), None) => {
                let mut ok = true;
                if s.path.is_empty() {
                    self.problem(format!("{at}.serial.path"), "must not be empty");
                    ok = false;
                }
                if s.baud == 0 {
                    self.problem(format!("{at}.serial.baud"), "must be greater than 0");
                    ok = false;
                }
                if !(5..=8).contains(&s.data_bits) {
                    self.problem(format!("{at}.serial.data_bits"), "must be 5, 6, 7 or 8");
                    ok = false;
                }
                if !(1..=2).contains(&s.stop_bits) {
                    self.problem(format!("{at}.serial.stop_bits"), "must be 1 or 2");
                    ok = false;
                }
                let path = PathBuf::from(&s.path);
                let path = if path.is_relative() {
                    self.base.join(path)
                } else {
                    path
                };
                ok.then_some(TransportSpec::Serial(SerialSpec {
                    path,
                    baud: s.baud,
                    data_bits: s.data_bits,
                    parity: s.parity,
                    stop_bits: s.stop_bits,
                    flow_control: s.flow_control,
                }))
            }
            (None, Some(t)) => {
                let valid = t
                    .rsplit_once(':')
                    .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
                if !valid {
                    self.problem(
                        format!("{at}.tcp"),
                        format!("`{t}` is not host:port (for example \"10.0.0.5:4001\")"),
                    );
                    return None;
                }
                Some(TransportSpec::Tcp(t))
            }
            (Some(_), Some(_)) => {
                self.problem(at, "give either `serial` or `tcp`, not both");
                None
            }
            (None, None) => {
                self.problem(
                    at,
                    "missing transport: add `serial = { path = ..., baud = ... }` or `tcp = \"host:port\"`",
                );
                None
            }
        }
    }
}
