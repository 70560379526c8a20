//! Raw robot file → validated [`Robot`] in one step, collecting every problem with the key
//! path where it was found. Only a validated robot builds anything.

use super::robot::*;
use crate::messages::{FieldKind, MessageType, Scalar};
use crate::protocols::dbc::{Database, MessageDef};
use crate::protocols::modbus::{Register, RegisterWrite};
use crate::protocols::template::Template;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// One problem in a robot file: where, and what.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

/// Every problem found in one robot file. Displays as one line per problem.
#[derive(Debug, Clone)]
pub struct RobotFileError {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

impl fmt::Display for RobotFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            if p.path.is_empty() {
                write!(f, "{}: {}", self.file.display(), p.message)?;
            } else {
                write!(f, "{}: {}: {}", self.file.display(), p.path, p.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for RobotFileError {}

/// A validated robot.
#[derive(Debug, Clone)]
pub struct Robot {
    pub id: String,
    pub file: PathBuf,
    pub devices: Vec<Device>,
}

#[derive(Debug, Clone)]
pub struct Device {
    pub name: String,
    pub transport: TransportSpec,
    pub protocol: ProtocolSpec,
    pub idle_timeout: Option<Duration>,
    pub streams: Vec<StreamSpec>,
    pub commands: Vec<CommandSpec>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TransportSpec {
    Serial(SerialSpec),
    /// `host:port` of a ser2net-style serial server.
    Tcp(String),
    /// A SocketCAN interface such as `can0`.
    SocketCan(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct SerialSpec {
    pub path: PathBuf,
    pub baud: u32,
    pub data_bits: u8,
    pub parity: ParityConfig,
    pub stop_bits: u8,
    pub flow_control: FlowControlConfig,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ProtocolSpec {
    Nmea,
    Lines {
        format: LineFormat,
        columns: Vec<String>,
        delimiter: char,
    },
    Modbus {
        /// How long to wait for a unit's answer.
        timeout: Duration,
    },
    Slcan {
        bitrate: u32,
    },
    SocketCan,
}

impl ProtocolSpec {
    pub fn name(&self) -> &'static str {
        match self {
            ProtocolSpec::Nmea => "nmea",
            ProtocolSpec::Lines { .. } => "lines",
            ProtocolSpec::Modbus { .. } => "modbus",
            ProtocolSpec::Slcan { .. } => "slcan",
            ProtocolSpec::SocketCan => "socketcan",
        }
    }
}

#[derive(Debug, Clone)]
pub struct StreamSpec {
    /// The topic suffix after `<prefix>/<id>/`.
    pub sensor: String,
    pub msg_type: MessageType,
    pub qos: u8,
    pub retain: bool,
    /// From `max_rate_hz`: the least time between two publishes.
    pub min_interval: Option<Duration>,
    pub frame_id: String,
    pub select: StreamSelect,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StreamSelect {
    /// An NMEA sentence formatter such as `GGA`, or a full address such as `GPGGA`.
    Nmea { source: String },
    Lines {
        /// Every `(key, value)` must match for a line to be taken.
        when: Vec<(String, String)>,
        /// `(message field path, line key)`; empty for `map` means every key.
        fields: Vec<(String, String)>,
    },
    Modbus {
        poll_interval: Duration,
        registers: Vec<Register>,
        /// `(message field path, register name)`; empty for `map` means every register.
        fields: Vec<(String, String)>,
    },
    /// A DBC message, decoded into a `map` of physical signal values.
    CanMessage { message: Arc<MessageDef> },
    /// Raw frames with these ids (every id when `None`).
    CanRaw { ids: Option<Vec<u32>> },
}

#[derive(Debug, Clone)]
pub struct Limit {
    pub path: String,
    pub min: f64,
    pub max: f64,
}

#[derive(Debug, Clone)]
pub struct CommandSpec {
    pub actuator: String,
    pub msg_type: MessageType,
    pub render: CommandRender,
    pub limits: Vec<Limit>,
    pub out_of_range: OutOfRange,
    pub timeout: Option<Duration>,
    pub safe: Vec<(String, Scalar)>,
    pub min_interval: Option<Duration>,
    pub max_age: Option<Duration>,
}

#[derive(Debug, Clone)]
pub enum CommandRender {
    /// `lines`: one text line per command.
    Template(Template),
    /// `modbus`: register writes, one per command field.
    Modbus(Vec<RegisterWrite>),
    /// CAN: a DBC message, signal name ← command field path.
    Can {
        message: Arc<MessageDef>,
        signals: Vec<(String, String)>,
    },
    /// CAN: the command is a `can_msgs/Frame`, written if its id is allowed.
    CanRaw { ids: Vec<u32> },
}

pub const RESERVED_SEGMENTS: [&str; 5] = ["status", "catalog", "diagnostics", "cmd", "ack"];

impl Robot {
    /// Reads and validates a robot file, reporting every problem found.
    pub fn load(path: &Path) -> Result<Robot, RobotFileError> {
        let fail = |message: String| RobotFileError {
            file: path.to_path_buf(),
            problems: vec![Problem {
                path: String::new(),
                message,
            }],
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read: {e}")))?;
        Robot::from_str(&text, path)
    }

    /// Validates robot-file text; `path` names the file in errors and anchors relative paths.
    pub fn from_str(text: &str, path: &Path) -> Result<Robot, RobotFileError> {
        let mut v = Validator {
            problems: Vec::new(),
            base: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        };
        let robot = v.robot(text);
        match robot {
            Some(mut r) if v.problems.is_empty() => {
                r.file = path.to_path_buf();
                Ok(r)
            }
            _ => Err(RobotFileError {
                file: path.to_path_buf(),
                problems: v.problems,
            }),
        }
    }

    pub fn streams(&self) -> impl Iterator<Item = (&Device, &StreamSpec)> {
        self.devices
            .iter()
            .flat_map(|d| d.streams.iter().map(move |s| (d, s)))
    }

    pub fn commands(&self) -> impl Iterator<Item = (&Device, &CommandSpec)> {
        self.devices
            .iter()
            .flat_map(|d| d.commands.iter().map(move |c| (d, c)))
    }
}

struct Validator {
    problems: Vec<Problem>,
    base: PathBuf,
}

/// Reads a TOML value through serde, recording where it failed.
fn deserialize_at<T: serde::de::DeserializeOwned>(
    value: toml::Value,
    prefix: &str,
) -> Result<T, Problem> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.path().to_string();
        let path = match (prefix.is_empty(), inner == ".") {
            (_, true) => prefix.to_string(),
            (true, false) => inner,
            (false, false) => format!("{prefix}.{inner}"),
        };
        Problem {
            path,
            message: clean_serde_message(&e.into_inner().to_string()),
        }
    })
}

/// serde's messages end with a location the path already gives; keep the first line.
fn clean_serde_message(m: &str) -> String {
    let first = m.lines().next().unwrap_or(m).trim();
    first.trim_end_matches('.').to_string()
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

impl Validator {
    fn problem(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }

    fn robot(&mut self, text: &str) -> Option<Robot> {
        let mut table: toml::Table = match text.parse::<toml::Table>() {
            Ok(t) => t,
            Err(e) => {
                let at = e
                    .span()
                    .map(|s| format!("line {}: ", line_of(text, s.start)))
                    .unwrap_or_default();
                let message = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
                self.problem("", format!("{at}TOML syntax error: {message}"));
                return None;
            }
        };
        let devices = table.remove("devices");
        let id = table.get("id").and_then(|v| v.as_str()).map(str::to_string);
        let top: Option<RobotConfig> = match deserialize_at(toml::Value::Table(table), "") {
            Ok(r) => Some(r),
            Err(p) => {
                self.problems.push(p);
                None
            }
        };
        // Checked even when another top-level key is wrong, so every problem shows.
        if let Some(id) = &id {
            self.check_name("id", id, false);
        }
        let mut out = Vec::new();
        match devices {
            None => {}
            Some(toml::Value::Array(items)) => {
                // Reported after each device's own problems.
                let duplicates = duplicate_names(&items);
                for (i, item) in items.into_iter().enumerate() {
                    if let Some(d) = self.device(item, &format!("devices[{i}]")) {
                        out.push(d);
                    }
                }
                self.problems.extend(duplicates);
            }
            Some(_) => self.problem("devices", "must be an array of tables ([[devices]])"),
        }
        let top = top?;
        Some(Robot {
            id: top.id,
            file: PathBuf::new(),
            devices: out,
        })
    }

    fn device(&mut self, item: toml::Value, at: &str) -> Option<Device> {
        let toml::Value::Table(mut table) = item else {
            self.problem(at, "must be a table");
            return None;
        };
        let protocol = match table.get("protocol") {
            Some(toml::Value::String(s)) => s.clone(),
            Some(_) => {
                self.problem(format!("{at}.protocol"), "must be a string");
                return None;
            }
            None => {
                self.problem(
                    format!("{at}.protocol"),
                    format!("missing; one of {}", ALL_PROTOCOLS.join(", ")),
                );
                return None;
            }
        };
        if !SUPPORTED_PROTOCOLS.contains(&protocol.as_str()) {
            let msg = if ALL_PROTOCOLS.contains(&protocol.as_str()) {
                format!(
                    "protocol `{protocol}` is not supported by this build yet (supported: {})",
                    SUPPORTED_PROTOCOLS.join(", ")
                )
            } else {
                format!(
                    "unknown protocol `{protocol}`, expected one of {}",
                    ALL_PROTOCOLS.join(", ")
                )
            };
            self.problem(format!("{at}.protocol"), msg);
            return None;
        }
        let streams = table.remove("streams");
        let commands = table.remove("commands");
        // Each protocol's struct is read directly (not through the tagged enum), so serde
        // errors keep their full key path, e.g. `devices[0].serial.baudd`.
        table.remove("protocol");
        let stream_items = self.items(streams, &format!("{at}.streams"));
        let command_items = self.items(commands, &format!("{at}.commands"));
        let raw = match protocol.as_str() {
            "nmea" => deserialize_at(toml::Value::Table(table), at).map(DeviceConfig::Nmea),
            "modbus" => deserialize_at(toml::Value::Table(table), at).map(DeviceConfig::Modbus),
            "slcan" => deserialize_at(toml::Value::Table(table), at).map(DeviceConfig::Slcan),
            "socketcan" => {
                deserialize_at(toml::Value::Table(table), at).map(DeviceConfig::Socketcan)
            }
            _ => deserialize_at(toml::Value::Table(table), at).map(DeviceConfig::Lines),
        };
        let raw = match raw {
            Ok(d) => d,
            Err(p) => {
                self.problems.push(p);
                // Still check the streams and commands, as far as they stand alone.
                if protocol == "nmea" {
                    let streams: Vec<NmeaStreamConfig> =
                        self.parse_items(stream_items, at, "streams");
                    for (i, st) in streams.into_iter().enumerate() {
                        self.nmea_stream(st, &format!("{at}.streams[{i}]"), "");
                    }
                } else if protocol == "modbus" {
                    // Their deeper checks need the device (units, registers): keys only.
                    let _: Vec<ModbusStreamConfig> = self.parse_items(stream_items, at, "streams");
                    let _: Vec<ModbusCommandConfig> =
                        self.parse_items(command_items, at, "commands");
                } else if protocol != "lines" {
                    // CAN: the DBC is the device's; keys only.
                    let _: Vec<CanStreamConfig> = self.parse_items(stream_items, at, "streams");
                    let _: Vec<CanCommandConfig> = self.parse_items(command_items, at, "commands");
                } else {
                    let streams: Vec<LinesStreamConfig> =
                        self.parse_items(stream_items, at, "streams");
                    for (i, st) in streams.into_iter().enumerate() {
                        self.lines_stream(st, &format!("{at}.streams[{i}]"), None, "");
                    }
                    let commands: Vec<LinesCommandConfig> =
                        self.parse_items(command_items, at, "commands");
                    for (i, c) in commands.into_iter().enumerate() {
                        self.lines_command(c, &format!("{at}.commands[{i}]"), &lines_types());
                    }
                }
                return None;
            }
        };
        match raw {
            DeviceConfig::Nmea(mut d) => {
                d.streams = self.parse_items(stream_items, at, "streams");
                if !command_items.is_empty() {
                    self.problem(
                        format!("{at}.commands"),
                        "nmea devices are read-only and take no commands",
                    );
                }
                self.nmea_device(d, at)
            }
            DeviceConfig::Lines(mut d) => {
                d.streams = self.parse_items(stream_items, at, "streams");
                d.commands = self.parse_items(command_items, at, "commands");
                self.lines_device(d, at)
            }
            DeviceConfig::Modbus(mut d) => {
                d.streams = self.parse_items(stream_items, at, "streams");
                d.commands = self.parse_items(command_items, at, "commands");
                self.modbus_device(d, at)
            }
            DeviceConfig::Slcan(mut d) | DeviceConfig::Socketcan(mut d) => {
                d.streams = self.parse_items(stream_items, at, "streams");
                d.commands = self.parse_items(command_items, at, "commands");
                self.can_device(d, at)
            }
        }
    }

    fn items(&mut self, v: Option<toml::Value>, at: &str) -> Vec<toml::Value> {
        match v {
            None => Vec::new(),
            Some(toml::Value::Array(a)) => a,
            Some(_) => {
                self.problem(at, "must be an array of tables");
                Vec::new()
            }
        }
    }

    fn parse_items<T: serde::de::DeserializeOwned>(
        &mut self,
        items: Vec<toml::Value>,
        at: &str,
        key: &str,
    ) -> Vec<T> {
        let mut out = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            match deserialize_at(item, &format!("{at}.{key}[{i}]")) {
                Ok(t) => out.push(t),
                Err(p) => self.problems.push(p),
            }
        }
        out
    }

    /// Checks a robot id, sensor or actuator name: `[A-Za-z0-9_-]` segments, joined by `/`
    /// where `segments` allows it, and no reserved first segment.
    fn check_name(&mut self, at: &str, name: &str, segments: bool) -> bool {
        let parts: Vec<&str> = name.split('/').collect();
        if !valid_name(name, segments) {
            let what = if segments {
                "segments of letters, digits, `_` or `-`, joined by `/`"
            } else {
                "letters, digits, `_` or `-`"
            };
            self.problem(at, format!("`{name}` is not a valid name: use {what}"));
            return false;
        }
        if segments && RESERVED_SEGMENTS.contains(&parts[0]) {
            self.problem(
                at,
                format!(
                    "`{name}` starts with the reserved segment `{}` (reserved: {})",
                    parts[0],
                    RESERVED_SEGMENTS.join(", ")
                ),
            );
            return false;
        }
        true
    }

    fn transport(
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

    fn msg_type(&mut self, at: &str, name: &str, allowed: &[MessageType]) -> Option<MessageType> {
        match MessageType::from_name(name) {
            Some(t) if allowed.contains(&t) => Some(t),
            Some(t) => {
                let names: Vec<&str> = allowed.iter().map(|t| t.name()).collect();
                self.problem(
                    format!("{at}.type"),
                    format!(
                        "`{t}` is not available here; use one of {}",
                        names.join(", ")
                    ),
                );
                None
            }
            None => {
                let names: Vec<&str> = MessageType::ALL.iter().map(|t| t.name()).collect();
                self.problem(
                    format!("{at}.type"),
                    format!("unknown type `{name}`; known: {}", names.join(", ")),
                );
                None
            }
        }
    }

    fn rate(&mut self, at: &str, key: &str, hz: Option<f64>) -> Option<Option<Duration>> {
        match hz {
            None => Some(None),
            Some(h) if h.is_finite() && h > 0.0 && h <= 1_000_000.0 => {
                Some(Some(Duration::from_secs_f64(1.0 / h)))
            }
            Some(h) => {
                self.problem(
                    format!("{at}.{key}"),
                    format!("must be a positive number of hertz, not {h}"),
                );
                None
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn stream_common(
        &mut self,
        at: &str,
        sensor: &str,
        qos: u8,
        max_rate_hz: Option<f64>,
        frame_id: Option<String>,
        device_frame: &str,
    ) -> Option<(Option<Duration>, String)> {
        let mut ok = self.check_name(&format!("{at}.sensor"), sensor, true);
        if qos > 2 {
            self.problem(format!("{at}.qos"), format!("must be 0, 1 or 2, not {qos}"));
            ok = false;
        }
        let rate = self.rate(at, "max_rate_hz", max_rate_hz);
        let frame = frame_id.unwrap_or_else(|| device_frame.to_string());
        (ok && rate.is_some()).then(|| (rate.unwrap(), frame))
    }

    fn nmea_stream(
        &mut self,
        s: NmeaStreamConfig,
        sat: &str,
        device_frame: &str,
    ) -> Option<StreamSpec> {
        let sat = sat.to_string();
        let t = self.msg_type(
            &sat,
            &s.msg_type,
            &[MessageType::NavSatFix, MessageType::Map],
        );
        let common = self.stream_common(
            &sat,
            &s.sensor,
            s.qos,
            s.max_rate_hz,
            s.frame_id,
            device_frame,
        );
        let source = s.source.trim().to_ascii_uppercase();
        let source_ok =
            (3..=6).contains(&source.len()) && source.bytes().all(|b| b.is_ascii_alphanumeric());
        if !source_ok {
            self.problem(
                format!("{sat}.source"),
                format!(
                    "`{}` is not an NMEA sentence name such as GGA or RMC",
                    s.source
                ),
            );
        }
        let formatter = if source.len() == 5 {
            &source[2..]
        } else {
            &source[..]
        };
        if t == Some(MessageType::NavSatFix)
            && source_ok
            && formatter != "GGA"
            && formatter != "RMC"
        {
            self.problem(
                format!("{sat}.source"),
                format!("sensor_msgs/NavSatFix is built from GGA or RMC, not `{source}`; use type \"map\" for other sentences"),
            );
            return None;
        }
        if let (Some(t), Some((min_interval, frame_id)), true) = (t, common, source_ok) {
            return Some(StreamSpec {
                sensor: s.sensor,
                msg_type: t,
                qos: s.qos,
                retain: s.retain,
                min_interval,
                frame_id,
                select: StreamSelect::Nmea { source },
            });
        }
        None
    }

    fn lines_stream(
        &mut self,
        s: LinesStreamConfig,
        sat: &str,
        csv_columns: Option<&[String]>,
        device_frame: &str,
    ) -> Option<StreamSpec> {
        let sat = sat.to_string();
        let all_types = lines_types();
        let t = self.msg_type(&sat, &s.msg_type, &all_types);
        let common = self.stream_common(
            &sat,
            &s.sensor,
            s.qos,
            s.max_rate_hz,
            s.frame_id,
            device_frame,
        );
        let mut when = Vec::new();
        for (k, v) in s.when {
            match scalar_text(&v) {
                Some(text) => when.push((k, text)),
                None => self.problem(
                    format!("{sat}.when.{k}"),
                    "must be a string, number or bool",
                ),
            }
        }
        let mut fields = Vec::new();
        let mut flat = Vec::new();
        let fields_given = !s.fields.is_empty();
        flatten(&toml::Value::Table(s.fields), "", &mut flat);
        for (path, v) in flat {
            let Some(key) = v.as_str() else {
                self.problem(
                    format!("{sat}.fields.{path}"),
                    "must be the name of a line key (a string)",
                );
                continue;
            };
            if let Some(t) = t {
                if t.kind_of(&path).is_none() {
                    self.problem(
                        format!("{sat}.fields.{path}"),
                        format!("`{path}` is not a field of {t}"),
                    );
                    continue;
                }
            }
            if csv_columns.is_some_and(|cols| !cols.iter().any(|c| c == key)) {
                self.problem(
                    format!("{sat}.fields.{path}"),
                    format!("line key `{key}` is not one of the columns"),
                );
                continue;
            }
            fields.push((path, key.to_string()));
        }
        if !fields_given && t.is_some() && t != Some(MessageType::Map) {
            self.problem(
                format!("{sat}.fields"),
                "missing: map message field paths to line keys, e.g. fields = { voltage = \"v\" }",
            );
            return None;
        }
        if let (Some(t), Some((min_interval, frame_id))) = (t, common) {
            return Some(StreamSpec {
                sensor: s.sensor,
                msg_type: t,
                qos: s.qos,
                retain: s.retain,
                min_interval,
                frame_id,
                select: StreamSelect::Lines { when, fields },
            });
        }
        None
    }

    fn modbus_stream(
        &mut self,
        s: ModbusStreamConfig,
        sat: &str,
        device_frame: &str,
    ) -> Option<StreamSpec> {
        let t = self.msg_type(sat, &s.msg_type, &lines_types());
        let common = self.stream_common(
            sat,
            &s.sensor,
            s.qos,
            s.max_rate_hz,
            s.frame_id,
            device_frame,
        );
        let poll = match s.poll_hz {
            h if h.is_finite() && h > 0.0 && h <= 1000.0 => Some(Duration::from_secs_f64(1.0 / h)),
            h => {
                self.problem(
                    format!("{sat}.poll_hz"),
                    format!("must be between 0 and 1000 Hz, not {h}"),
                );
                None
            }
        };
        let mut ok = true;
        if s.registers.is_empty() {
            self.problem(
                format!("{sat}.registers"),
                "must list at least one register",
            );
            ok = false;
        }
        let mut registers = Vec::new();
        for (i, r) in s.registers.into_iter().enumerate() {
            let rat = format!("{sat}.registers[{i}]");
            let mut rok = self.check_unit(&format!("{rat}.unit"), r.unit);
            if registers.iter().any(|x: &Register| x.name == r.name) {
                self.problem(
                    format!("{rat}.name"),
                    format!("duplicate register name `{}`", r.name),
                );
                rok = false;
            }
            let bits = matches!(r.kind, RegisterKind::Coil | RegisterKind::Discrete);
            let format = r.format.unwrap_or(if bits {
                RegisterFormat::Bool
            } else {
                RegisterFormat::U16
            });
            if bits && format != RegisterFormat::Bool {
                self.problem(
                    format!("{rat}.format"),
                    "coils and discrete inputs hold a bool",
                );
                rok = false;
            }
            let (scale, offset) = (r.scale.unwrap_or(1.0), r.offset.unwrap_or(0.0));
            rok &= self.check_scale(&rat, scale, offset);
            if r.address as u32
                + if matches!(
                    format,
                    RegisterFormat::U32 | RegisterFormat::I32 | RegisterFormat::F32
                ) {
                    2
                } else {
                    1
                }
                > 65536
            {
                self.problem(
                    format!("{rat}.address"),
                    "the register runs past address 65535",
                );
                rok = false;
            }
            ok &= rok;
            if rok {
                registers.push(Register {
                    name: r.name,
                    unit: r.unit,
                    kind: r.kind,
                    address: r.address,
                    format,
                    word_order: r.word_order.unwrap_or(WordOrder::Big),
                    scale,
                    offset,
                });
            }
        }
        let mut fields = Vec::new();
        let mut flat = Vec::new();
        let fields_given = !s.fields.is_empty();
        flatten(&toml::Value::Table(s.fields), "", &mut flat);
        for (path, v) in flat {
            let fat = format!("{sat}.fields.{path}");
            let Some(name) = v.as_str() else {
                self.problem(fat, "must be the name of a register (a string)");
                ok = false;
                continue;
            };
            if let Some(t) = t {
                if t.kind_of(&path).is_none() {
                    self.problem(fat, format!("`{path}` is not a field of {t}"));
                    ok = false;
                    continue;
                }
            }
            if !registers.iter().any(|r| r.name == name) {
                self.problem(fat, format!("no register is named `{name}`"));
                ok = false;
                continue;
            }
            fields.push((path, name.to_string()));
        }
        if !fields_given && t.is_some() && t != Some(MessageType::Map) {
            self.problem(
                format!("{sat}.fields"),
                "missing: map message field paths to register names, e.g. fields = { data = \"speed\" }",
            );
            ok = false;
        }
        let (t, (min_interval, frame_id), poll_interval) = (t?, common?, poll?);
        ok.then_some(StreamSpec {
            sensor: s.sensor,
            msg_type: t,
            qos: s.qos,
            retain: s.retain,
            min_interval,
            frame_id,
            select: StreamSelect::Modbus {
                poll_interval,
                registers,
                fields,
            },
        })
    }

    fn check_can_ids(&mut self, at: &str, ids: &[u32]) -> bool {
        match ids.iter().find(|id| **id > 0x1FFF_FFFF) {
            Some(id) => {
                self.problem(
                    at,
                    format!("0x{id:X} is not a CAN identifier (at most 29 bits)"),
                );
                false
            }
            None => true,
        }
    }

    fn can_stream(
        &mut self,
        s: CanStreamConfig,
        sat: &str,
        db: Option<&Database>,
        device_frame: &str,
    ) -> Option<StreamSpec> {
        let common = self.stream_common(
            sat,
            &s.sensor,
            s.qos,
            s.max_rate_hz,
            s.frame_id,
            device_frame,
        );
        let (select, t) = match (&s.can_message, &s.ids) {
            (Some(_), Some(_)) => {
                self.problem(
                    sat,
                    "give `can_message` (decoded signals) or `ids` (raw frames), not both",
                );
                return None;
            }
            (Some(name), None) => {
                let t = self.msg_type(
                    sat,
                    s.msg_type.as_deref().unwrap_or("map"),
                    &[MessageType::Map],
                );
                let message = match db {
                    None => {
                        self.problem(
                            format!("{sat}.can_message"),
                            "needs the device's `dbc = \"file.dbc\"`",
                        );
                        None
                    }
                    Some(db) => match db.message(name) {
                        Some(m) => Some(Arc::new(m.clone())),
                        None => {
                            self.problem(
                                format!("{sat}.can_message"),
                                format!("the DBC has no message `{name}`"),
                            );
                            None
                        }
                    },
                };
                (
                    message.map(|message| StreamSelect::CanMessage { message }),
                    t,
                )
            }
            (None, ids) => {
                let t = self.msg_type(
                    sat,
                    s.msg_type.as_deref().unwrap_or("can_msgs/Frame"),
                    &[MessageType::Frame],
                );
                let ok = ids
                    .as_ref()
                    .is_none_or(|ids| self.check_can_ids(&format!("{sat}.ids"), ids));
                (ok.then(|| StreamSelect::CanRaw { ids: ids.clone() }), t)
            }
        };
        let (select, t, (min_interval, frame_id)) = (select?, t?, common?);
        Some(StreamSpec {
            sensor: s.sensor,
            msg_type: t,
            qos: s.qos,
            retain: s.retain,
            min_interval,
            frame_id,
            select,
        })
    }

    fn can_command(
        &mut self,
        c: CanCommandConfig,
        at: &str,
        db: Option<&Database>,
    ) -> Option<CommandSpec> {
        let common = command_common!(c);
        let (message, signals, ids) = (c.can_message, c.signals, c.ids);
        let types: Vec<MessageType> = if message.is_some() {
            lines_types()
        } else {
            vec![MessageType::Frame]
        };
        self.command(common, at, &types, |v, t| {
            let Some(name) = message else {
                let Some(ids) = ids.filter(|i| !i.is_empty()) else {
                    v.problem(format!("{at}.ids"), "a can_msgs/Frame command needs `ids = [...]`, the identifiers it may write");
                    return None;
                };
                return v
                    .check_can_ids(&format!("{at}.ids"), &ids)
                    .then_some(CommandRender::CanRaw { ids });
            };
            let Some(db) = db else {
                v.problem(format!("{at}.can_message"), "needs the device's `dbc = \"file.dbc\"`");
                return None;
            };
            let Some(def) = db.message(&name) else {
                v.problem(format!("{at}.can_message"), format!("the DBC has no message `{name}`"));
                return None;
            };
            let mut ok = true;
            let mut pairs = Vec::new();
            if signals.is_empty() {
                v.problem(format!("{at}.signals"), "missing: map DBC signals to command fields, e.g. signals = { TORQUE_L = \"left\" }");
                ok = false;
            }
            for (sig, path) in signals {
                let sat = format!("{at}.signals.{sig}");
                let Some(path) = path.as_str() else {
                    v.problem(sat, "must be a command field path (a string)");
                    ok = false;
                    continue;
                };
                if !def.signals.iter().any(|s| s.name == sig) {
                    v.problem(sat, format!("message `{name}` has no signal `{sig}`"));
                    ok = false;
                    continue;
                }
                match t.kind_of(path) {
                    Some(k) if k.is_numeric() || k == FieldKind::Bool || k == FieldKind::Any => {
                        pairs.push((sig, path.to_string()))
                    }
                    _ => {
                        v.problem(sat, format!("`{path}` is not a numeric field of {t}"));
                        ok = false;
                    }
                }
            }
            ok.then(|| CommandRender::Can {
                message: Arc::new(def.clone()),
                signals: pairs,
            })
        })
    }

    fn can_device(&mut self, d: CanDeviceConfig, at: &str) -> Option<Device> {
        let name_ok = self.check_name(&format!("{at}.name"), &d.name, false);
        let device_frame = d.frame_id.clone().unwrap_or_else(|| d.name.clone());
        // The transport decides how the bus is reached: an interface is SocketCAN, a serial
        // port (or TCP) is an slcan adapter; the rest of the file is the same either way.
        let (transport, protocol) = match d.interface {
            Some(iface) => {
                let mut ok = true;
                if d.serial.is_some() || d.tcp.is_some() {
                    self.problem(
                        at,
                        "give `interface` (SocketCAN) or `serial`/`tcp` (slcan adapter), not both",
                    );
                    ok = false;
                }
                if iface.is_empty() || iface.len() > 15 || iface.contains(['/', ' ']) {
                    self.problem(
                        format!("{at}.interface"),
                        format!("`{iface}` is not a network interface name"),
                    );
                    ok = false;
                }
                (
                    ok.then_some(TransportSpec::SocketCan(iface)),
                    Some(ProtocolSpec::SocketCan),
                )
            }
            None => {
                let transport = self.transport(d.serial, d.tcp, at);
                let protocol = match d.bitrate {
                    Some(b) if crate::protocols::slcan::bitrate_code(b).is_some() => {
                        Some(ProtocolSpec::Slcan { bitrate: b })
                    }
                    Some(b) => {
                        self.problem(format!("{at}.bitrate"), format!("{b} is not an slcan bitrate (10000, 20000, 50000, 100000, 125000, 250000, 500000, 800000 or 1000000)"));
                        None
                    }
                    None => {
                        self.problem(format!("{at}.bitrate"), "missing: an slcan adapter needs the bus bitrate, e.g. bitrate = 500000");
                        None
                    }
                };
                (transport, protocol)
            }
        };
        let db = match &d.dbc {
            None => None,
            Some(file) => {
                let path = self.base.join(file);
                match Database::load(&path) {
                    Ok(db) => Some(db),
                    Err(e) => {
                        self.problem(format!("{at}.dbc"), e.to_string());
                        None
                    }
                }
            }
        };
        let db_ok = d.dbc.is_none() || db.is_some();
        let streams = d
            .streams
            .into_iter()
            .enumerate()
            .filter_map(|(i, st)| {
                self.can_stream(
                    st,
                    &format!("{at}.streams[{i}]"),
                    db.as_ref(),
                    &device_frame,
                )
            })
            .collect();
        let commands = d
            .commands
            .into_iter()
            .enumerate()
            .filter_map(|(i, c)| self.can_command(c, &format!("{at}.commands[{i}]"), db.as_ref()))
            .collect();
        let idle_timeout = d.idle_timeout_ms.and_then(idle);
        (name_ok && db_ok && transport.is_some() && protocol.is_some()).then(|| Device {
            name: d.name,
            transport: transport.unwrap(),
            protocol: protocol.unwrap(),
            idle_timeout,
            streams,
            commands,
        })
    }

    fn modbus_device(&mut self, d: ModbusDeviceConfig, at: &str) -> Option<Device> {
        let name_ok = self.check_name(&format!("{at}.name"), &d.name, false);
        let transport = self.transport(d.serial, d.tcp, at);
        let device_frame = d.frame_id.clone().unwrap_or_else(|| d.name.clone());
        let timeout = match d.timeout_ms.unwrap_or(200) {
            0 => {
                self.problem(format!("{at}.timeout_ms"), "must be greater than 0");
                None
            }
            ms => Some(Duration::from_millis(ms)),
        };
        let streams = d
            .streams
            .into_iter()
            .enumerate()
            .filter_map(|(i, st)| {
                self.modbus_stream(st, &format!("{at}.streams[{i}]"), &device_frame)
            })
            .collect();
        let commands = d
            .commands
            .into_iter()
            .enumerate()
            .filter_map(|(i, c)| {
                self.modbus_command(c, &format!("{at}.commands[{i}]"), &lines_types())
            })
            .collect();
        (name_ok && transport.is_some() && timeout.is_some()).then(|| Device {
            name: d.name,
            transport: transport.unwrap(),
            protocol: ProtocolSpec::Modbus {
                timeout: timeout.unwrap(),
            },
            idle_timeout: None,
            streams,
            commands,
        })
    }

    fn nmea_device(&mut self, d: NmeaDeviceConfig, at: &str) -> Option<Device> {
        let name_ok = self.check_name(&format!("{at}.name"), &d.name, false);
        let transport = self.transport(d.serial, d.tcp, at);
        let device_frame = d.frame_id.clone().unwrap_or_else(|| d.name.clone());
        let streams = d
            .streams
            .into_iter()
            .enumerate()
            .filter_map(|(i, st)| {
                self.nmea_stream(st, &format!("{at}.streams[{i}]"), &device_frame)
            })
            .collect();
        // A GPS talks at least once a second; silence means an unplugged or wedged port.
        let idle_timeout = idle(d.idle_timeout_ms.unwrap_or(NMEA_IDLE_TIMEOUT_MS));
        (name_ok && transport.is_some()).then(|| Device {
            name: d.name,
            transport: transport.unwrap(),
            protocol: ProtocolSpec::Nmea,
            idle_timeout,
            streams,
            commands: Vec::new(),
        })
    }

    fn lines_device(&mut self, d: LinesDeviceConfig, at: &str) -> Option<Device> {
        let name_ok = self.check_name(&format!("{at}.name"), &d.name, false);
        let transport = self.transport(d.serial, d.tcp, at);
        let device_frame = d.frame_id.clone().unwrap_or_else(|| d.name.clone());
        let columns = d.columns.clone().unwrap_or_default();
        match (d.format, d.columns.is_some()) {
            (LineFormat::Csv, false) => self.problem(
                format!("{at}.columns"),
                "format \"csv\" needs `columns = [...]`, the name of each column",
            ),
            (LineFormat::Kv | LineFormat::Json, true) => {
                self.problem(format!("{at}.columns"), "only format \"csv\" takes columns")
            }
            _ => {}
        }
        let delimiter = match (&d.delimiter, d.format) {
            (None, _) => ',',
            (Some(s), LineFormat::Csv) if s.chars().count() == 1 => s.chars().next().unwrap(),
            (Some(_), LineFormat::Csv) => {
                self.problem(format!("{at}.delimiter"), "must be a single character");
                ','
            }
            (Some(_), _) => {
                self.problem(
                    format!("{at}.delimiter"),
                    "only format \"csv\" takes a delimiter",
                );
                ','
            }
        };
        let all_types = lines_types();
        let csv_columns = (d.format == LineFormat::Csv).then_some(columns.as_slice());
        let streams = d
            .streams
            .into_iter()
            .enumerate()
            .filter_map(|(i, st)| {
                self.lines_stream(
                    st,
                    &format!("{at}.streams[{i}]"),
                    csv_columns,
                    &device_frame,
                )
            })
            .collect();
        let mut commands = Vec::new();
        for (i, c) in d.commands.into_iter().enumerate() {
            let cat = format!("{at}.commands[{i}]");
            if let Some(cmd) = self.lines_command(c, &cat, &all_types) {
                commands.push(cmd);
            }
        }
        let idle_timeout = d.idle_timeout_ms.and_then(idle);
        (name_ok && transport.is_some()).then(|| Device {
            name: d.name,
            transport: transport.unwrap(),
            protocol: ProtocolSpec::Lines {
                format: d.format,
                columns,
                delimiter,
            },
            idle_timeout,
            streams,
            commands,
        })
    }

    fn lines_command(
        &mut self,
        c: LinesCommandConfig,
        at: &str,
        types: &[MessageType],
    ) -> Option<CommandSpec> {
        let template_text = c.template;
        let common = command_common!(c);
        self.command(common, at, types, |v, t| {
            let tpl = match Template::parse(&template_text) {
                Ok(tpl) => tpl,
                Err(e) => {
                    v.problem(format!("{at}.template"), e);
                    return None;
                }
            };
            let mut ok = true;
            for p in tpl.paths() {
                match t.kind_of(p) {
                    Some(k)
                        if k.is_numeric()
                            || k == FieldKind::Bool
                            || k == FieldKind::Str
                            || k == FieldKind::Any => {}
                    _ => {
                        v.problem(
                            format!("{at}.template"),
                            format!("`{{{p}}}` is not a field of {t}"),
                        );
                        ok = false;
                    }
                }
            }
            ok.then_some(CommandRender::Template(tpl))
        })
    }

    fn modbus_command(
        &mut self,
        c: ModbusCommandConfig,
        at: &str,
        types: &[MessageType],
    ) -> Option<CommandSpec> {
        let writes = c.writes;
        let common = command_common!(c);
        self.command(common, at, types, |v, t| {
            if writes.is_empty() {
                v.problem(
                    format!("{at}.writes"),
                    "must list at least one register write",
                );
                return None;
            }
            let mut out = Vec::new();
            let mut all_ok = true;
            for (i, w) in writes.into_iter().enumerate() {
                let wat = format!("{at}.writes[{i}]");
                let kind = w.kind.unwrap_or(RegisterKind::Holding);
                let format = w.format.unwrap_or(match kind {
                    RegisterKind::Coil => RegisterFormat::Bool,
                    _ => RegisterFormat::U16,
                });
                let mut ok = v.check_unit(&format!("{wat}.unit"), w.unit);
                match kind {
                    RegisterKind::Holding => {}
                    RegisterKind::Coil if format == RegisterFormat::Bool => {}
                    RegisterKind::Coil => {
                        v.problem(format!("{wat}.format"), "a coil holds a bool");
                        ok = false;
                    }
                    _ => {
                        v.problem(
                            format!("{wat}.kind"),
                            "only holding registers and coils can be written",
                        );
                        ok = false;
                    }
                }
                match t.kind_of(&w.field) {
                    Some(k) if k.is_numeric() || k == FieldKind::Bool || k == FieldKind::Any => {}
                    _ => {
                        v.problem(
                            format!("{wat}.field"),
                            format!("`{}` is not a numeric or bool field of {t}", w.field),
                        );
                        ok = false;
                    }
                }
                let (scale, offset) = (w.scale.unwrap_or(1.0), w.offset.unwrap_or(0.0));
                ok &= v.check_scale(&wat, scale, offset);
                all_ok &= ok;
                if ok {
                    out.push(RegisterWrite {
                        field: w.field,
                        unit: w.unit,
                        kind,
                        address: w.address,
                        format,
                        word_order: w.word_order.unwrap_or(WordOrder::Big),
                        scale,
                        offset,
                    });
                }
            }
            all_ok.then_some(CommandRender::Modbus(out))
        })
    }

    fn check_unit(&mut self, at: &str, unit: u8) -> bool {
        if !(1..=247).contains(&unit) {
            self.problem(
                at,
                format!("must be a Modbus unit id from 1 to 247, not {unit}"),
            );
            return false;
        }
        true
    }

    fn check_scale(&mut self, at: &str, scale: f64, offset: f64) -> bool {
        let mut ok = true;
        if !scale.is_finite() || scale == 0.0 {
            self.problem(format!("{at}.scale"), "must be a finite, non-zero number");
            ok = false;
        }
        if !offset.is_finite() {
            self.problem(format!("{at}.offset"), "must be a finite number");
            ok = false;
        }
        ok
    }

    /// Checks the keys every command shares, then its protocol's way of writing.
    fn command(
        &mut self,
        c: CommandCommon,
        at: &str,
        types: &[MessageType],
        render: impl FnOnce(&mut Self, MessageType) -> Option<CommandRender>,
    ) -> Option<CommandSpec> {
        let mut ok = self.check_name(&format!("{at}.actuator"), &c.actuator, true);
        if c.actuator == "estop" {
            self.problem(
                format!("{at}.actuator"),
                "`estop` is reserved for the emergency stop topic",
            );
            ok = false;
        }
        let t = self.msg_type(at, &c.msg_type, types);
        let rate = self.rate(at, "max_rate_hz", c.max_rate_hz);
        let t = t?;
        let render = render(self, t);
        let mut limits = Vec::new();
        let mut flat = Vec::new();
        flatten(&toml::Value::Table(c.limits), "", &mut flat);
        for (path, v) in flat {
            let pat = format!("{at}.limits.{path}");
            let pair = v.as_array().and_then(|a| {
                (a.len() == 2)
                    .then(|| Some((num(&a[0])?, num(&a[1])?)))
                    .flatten()
            });
            match (pair, t.kind_of(&path)) {
                (_, None) => self.problem(pat, format!("`{path}` is not a field of {t}")),
                (_, Some(k)) if !k.is_numeric() && k != FieldKind::Any => self.problem(
                    pat,
                    format!("`{path}` is not numeric; limits apply to numbers"),
                ),
                (Some((min, max)), Some(_)) if min.is_finite() && max.is_finite() && min <= max => {
                    limits.push(Limit { path, min, max })
                }
                _ => self.problem(pat, "must be [min, max] with finite min <= max"),
            }
        }
        let mut safe = Vec::new();
        let mut flat = Vec::new();
        flatten(&toml::Value::Table(c.safe), "", &mut flat);
        if flat.is_empty() {
            self.problem(
                format!("{at}.safe"),
                "missing: every actuator needs its safe values, e.g. safe = { \"linear.x\" = 0.0 }",
            );
            ok = false;
        }
        for (path, v) in flat {
            let pat = format!("{at}.safe.{path}");
            let Some(kind) = t.kind_of(&path) else {
                self.problem(pat, format!("`{path}` is not a field of {t}"));
                ok = false;
                continue;
            };
            let value = match (&v, kind) {
                (toml::Value::Float(f), _) if f.is_finite() => Scalar::Float(*f),
                (toml::Value::Integer(i), _) => Scalar::Int(*i),
                (toml::Value::Boolean(b), _) => Scalar::Bool(*b),
                (toml::Value::String(s), FieldKind::Str | FieldKind::Any) => Scalar::Str(s.clone()),
                _ => {
                    self.problem(
                        pat,
                        "must be a finite number, bool or string matching the field",
                    );
                    ok = false;
                    continue;
                }
            };
            if let (Some(l), Some(x)) = (limits.iter().find(|l| l.path == path), value.as_f64()) {
                if x < l.min || x > l.max {
                    self.problem(
                        pat,
                        format!("{x} is outside the limits [{}, {}]", l.min, l.max),
                    );
                    ok = false;
                }
            }
            safe.push((path, value));
        }
        if c.timeout_ms == Some(0) {
            self.problem(
                format!("{at}.timeout_ms"),
                "must be greater than 0 (omit it for no deadman)",
            );
            ok = false;
        }
        (ok && render.is_some() && rate.is_some()).then(|| CommandSpec {
            actuator: c.actuator,
            msg_type: t,
            render: render.unwrap(),
            limits,
            out_of_range: c.out_of_range,
            timeout: c.timeout_ms.map(Duration::from_millis),
            safe,
            min_interval: rate.unwrap(),
            max_age: c.max_age_ms.map(Duration::from_millis),
        })
    }
}

/// Duplicate device, sensor and actuator names, read from the file as written, so the key
/// paths are exact and entries with other problems are compared too.
fn duplicate_names(devices: &[toml::Value]) -> Vec<Problem> {
    fn str_at<'a>(v: &'a toml::Value, key: &str) -> Option<&'a str> {
        v.get(key).and_then(|v| v.as_str())
    }
    fn list<'a>(v: &'a toml::Value, key: &str) -> &'a [toml::Value] {
        v.get(key)
            .and_then(|v| v.as_array())
            .map_or(&[][..], Vec::as_slice)
    }
    let mut problems = Vec::new();
    let mut problem = |path: String, message: String| problems.push(Problem { path, message });
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    let mut sensors: BTreeMap<&str, &str> = BTreeMap::new();
    let mut actuators: BTreeMap<&str, &str> = BTreeMap::new();
    for (i, d) in devices.iter().enumerate() {
        let Some(name) = str_at(d, "name") else {
            continue;
        };
        if let Some(prev) = names.insert(name, i) {
            problem(
                format!("devices[{i}].name"),
                format!("duplicate device name `{name}` (also devices[{prev}])"),
            );
        }
        for (j, st) in list(d, "streams").iter().enumerate() {
            let Some(sensor) = str_at(st, "sensor") else {
                continue;
            };
            if let Some(prev) = sensors.insert(sensor, name) {
                problem(
                    format!("devices[{i}].streams[{j}].sensor"),
                    format!("duplicate sensor `{sensor}` (also on device `{prev}`)"),
                );
            }
        }
        for (k, c) in list(d, "commands").iter().enumerate() {
            let Some(actuator) = str_at(c, "actuator") else {
                continue;
            };
            if let Some(prev) = actuators.insert(actuator, name) {
                problem(
                    format!("devices[{i}].commands[{k}].actuator"),
                    format!("duplicate actuator `{actuator}` (also on device `{prev}`)"),
                );
            }
        }
    }
    problems
}

/// The types a `lines` device can read or write.
fn lines_types() -> Vec<MessageType> {
    MessageType::ALL
        .into_iter()
        .filter(|t| *t != MessageType::Frame)
        .collect()
}

/// Default `idle_timeout_ms` of NMEA devices.
pub const NMEA_IDLE_TIMEOUT_MS: u64 = 5000;

/// `idle_timeout_ms = 0` turns the idle check off.
fn idle(ms: u64) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(ms))
}

/// Takes the keys every command has out of a protocol's command config (the structs are
/// separate so each can deny unknown keys; serde's `flatten` cannot).
macro_rules! command_common {
    ($c:expr) => {
        CommandCommon {
            actuator: $c.actuator,
            msg_type: $c.msg_type,
            limits: $c.limits,
            out_of_range: $c.out_of_range,
            timeout_ms: $c.timeout_ms,
            safe: $c.safe,
            max_rate_hz: $c.max_rate_hz,
            max_age_ms: $c.max_age_ms,
        }
    };
}
use command_common;

/// The keys every command has, whatever its protocol.
struct CommandCommon {
    actuator: String,
    msg_type: String,
    limits: toml::Table,
    out_of_range: OutOfRange,
    timeout_ms: Option<u64>,
    safe: toml::Table,
    max_rate_hz: Option<f64>,
    max_age_ms: Option<u64>,
}

fn num(v: &toml::Value) -> Option<f64> {
    match v {
        toml::Value::Float(f) => Some(*f),
        toml::Value::Integer(i) => Some(*i as f64),
        _ => None,
    }
}

fn scalar_text(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Reads nested TOML tables as dotted paths: `{linear = {x = 1}}` → `("linear.x", 1)`.
fn flatten(v: &toml::Value, prefix: &str, out: &mut Vec<(String, toml::Value)>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(v, &p, out);
            }
        }
        other => out.push((prefix.to_string(), other.clone())),
    }
}

/// Whether `name` is a valid robot id (`segments` false) or sensor/actuator name
/// (`segments` true: `[A-Za-z0-9_-]` segments joined by `/`). Reserved names aside.
pub fn valid_name(name: &str, segments: bool) -> bool {
    let seg_ok = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    if segments {
        name.split('/').all(seg_ok)
    } else {
        seg_ok(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        match Robot::from_str(text, Path::new("robots/t.toml")) {
            Ok(_) => Vec::new(),
            Err(e) => e.to_string().lines().map(str::to_string).collect(),
        }
    }

    /// The example robot file of DESIGN.md section 6, verbatim.
    const DESIGN_EXAMPLE: &str = r#"
id = "r1"

[[devices]]
name = "gps"
protocol = "nmea"                       # nmea | lines | modbus | slcan | socketcan | dynamixel
serial = { path = "/dev/ttyUSB0", baud = 9600 }   # or tcp = "host:port" (ser2net, Modbus TCP); socketcan: interface = "can0"
  [[devices.streams]]
  sensor = "gps/fix"                    # → robot/r1/gps/fix
  type = "sensor_msgs/NavSatFix"
  source = "GGA"                        # nmea sentence (GGA or RMC); type "map" gives all parsed fields
  qos = 0                               # 0 | 1 | 2
  retain = false
  max_rate_hz = 5                       # optional downsampling (latest value wins)

[[devices]]
name = "base"
protocol = "lines"                      # text lines from a microcontroller
serial = { path = "/dev/ttyACM0", baud = 115200 }
format = "kv"                           # kv: "tag=BAT v=12.4 i=0.8" | csv (with columns = [...]) | json (one object per line)
  [[devices.streams]]
  sensor = "battery"
  type = "sensor_msgs/BatteryState"
  when = { tag = "BAT" }                # only lines whose field tag == "BAT"
  fields = { voltage = "v", current = "i" }          # message field path = line key
  qos = 1
  [[devices.commands]]
  actuator = "drive"                    # robot/r1/cmd/drive, acks on robot/r1/ack/drive
  type = "geometry_msgs/Twist"
  template = "D {linear.x:.3} {angular.z:.3}"        # one line written per command, "\n" appended
  limits = { "linear.x" = [-1.0, 1.0], "angular.z" = [-2.0, 2.0] }
  out_of_range = "reject"               # reject | clamp
  timeout_ms = 500
  safe = { "linear.x" = 0.0, "angular.z" = 0.0 }
  max_rate_hz = 50
  max_age_ms = 250
"#;

    #[test]
    fn the_design_example_validates() {
        let r = Robot::from_str(DESIGN_EXAMPLE, Path::new("robots/r1.toml")).unwrap();
        assert_eq!(r.id, "r1");
        assert_eq!(r.streams().count(), 2);
        let (_, c) = r.commands().next().unwrap();
        assert_eq!(c.limits.len(), 2);
        assert_eq!(c.timeout, Some(Duration::from_millis(500)));
        assert_eq!(c.min_interval, Some(Duration::from_millis(20)));
    }

    #[test]
    fn the_demo_robot_validates() {
        let r = Robot::from_str(
            crate::demo::DEMO_ROBOT,
            Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/robots/demo.toml")),
        )
        .unwrap();
        assert_eq!(r.id, "demo");
    }

    #[test]
    fn every_problem_is_reported_with_its_key_path() {
        let p = problems(
            r#"
id = "r 1"
[[devices]]
name = "gps"
protocol = "nmea"
serial = { path = "/dev/x", baudd = 9600 }
[[devices]]
name = "base"
protocol = "lines"
tcp = "nohost"
format = "kv"
  [[devices.streams]]
  sensor = "cmd/x"
  type = "sensor_msgs/BatteryState"
  fields = { voltage = "v" }
  [[devices.streams]]
  sensor = "bat"
  type = "sensor_msgs/Nope"
  qos = 3
  [[devices.streams]]
  sensor = "bat2"
  type = "sensor_msgs/BatteryState"
  fields = { voltage = "v" }
  qos = "one"
"#,
        );
        let expect = [
            "robots/t.toml: id: `r 1` is not a valid name",
            "robots/t.toml: devices[0].serial.baudd: unknown field `baudd`",
            "robots/t.toml: devices[1].streams[2].qos: invalid type: string \"one\", expected u8",
            "robots/t.toml: devices[1].tcp: `nohost` is not host:port",
            "robots/t.toml: devices[1].streams[0].sensor: `cmd/x` starts with the reserved segment `cmd`",
            "robots/t.toml: devices[1].streams[1].type: unknown type `sensor_msgs/Nope`",
            "robots/t.toml: devices[1].streams[1].qos: must be 0, 1 or 2, not 3",
        ];
        for e in expect {
            assert!(
                p.iter().any(|l| l.starts_with(e)),
                "missing {e:?} in {p:#?}"
            );
        }
        assert_eq!(p.len(), expect.len(), "{p:#?}");
    }

    #[test]
    fn duplicates_and_reserved_names_are_errors() {
        let p = problems(
            r#"
id = "r1"
[[devices]]
name = "a"
protocol = "lines"
tcp = "h:1"
format = "kv"
  [[devices.streams]]
  sensor = "x"
  type = "map"
  [[devices.commands]]
  actuator = "estop"
  type = "std_msgs/Float64"
  template = "{data}"
  safe = { data = 0.0 }
[[devices]]
name = "a"
protocol = "lines"
tcp = "h:2"
format = "kv"
  [[devices.streams]]
  sensor = "x"
  type = "map"
"#,
        );
        assert!(
            p.iter()
                .any(|l| l.contains("devices[0].commands[0].actuator: `estop` is reserved")),
            "{p:#?}"
        );
        assert!(
            p.iter()
                .any(|l| l.contains("devices[1].name: duplicate device name `a`")),
            "{p:#?}"
        );
        assert!(
            p.iter()
                .any(|l| l.contains("devices[1].streams[0].sensor: duplicate sensor `x`")),
            "{p:#?}"
        );
    }

    #[test]
    fn a_bad_device_key_on_modbus_and_can_devices_is_the_only_problem_reported() {
        let p = problems(
            r#"
id = "r1"
[[devices]]
name = "drive"
protocol = "modbus"
tcp = "h:502"
timout_ms = 200
  [[devices.streams]]
  sensor = "drive/state"
  type = "map"
  poll_hz = 10
  registers = [{ name = "rpm", unit = 1, kind = "holding", address = 0 }]
  [[devices.commands]]
  actuator = "drive/speed"
  type = "std_msgs/Float64"
  writes = [{ field = "data", unit = 1, address = 10 }]
  safe = { data = 0.0 }
[[devices]]
name = "can"
protocol = "slcan"
tcp = "h:1"
dbcc = "x.dbc"
  [[devices.streams]]
  sensor = "can/raw"
  type = "can_msgs/Frame"
  ids = [0x10]
  [[devices.streams]]
  sensor = "can/bad"
  type = "can_msgs/Frame"
  idz = [0x10]
"#,
        );
        assert_eq!(p.len(), 3, "{p:#?}");
        assert!(
            p[0].contains("devices[0].timout_ms: unknown field"),
            "{p:#?}"
        );
        assert!(p[1].contains("devices[1].dbcc: unknown field"), "{p:#?}");
        assert!(
            p[2].contains("devices[1].streams[1].idz: unknown field"),
            "{p:#?}"
        );
    }

    #[test]
    fn a_bad_id_is_reported_beside_an_unknown_top_level_key() {
        let p = problems("id = \"r 1\"\nbogus = 1\n");
        assert!(p.iter().any(|l| l.contains("bogus")), "{p:#?}");
        assert!(
            p.iter()
                .any(|l| l.contains("id: `r 1` is not a valid name")),
            "{p:#?}"
        );
    }

    #[test]
    fn command_safety_config_is_checked() {
        let p = problems(
            r#"
id = "r1"
[[devices]]
name = "a"
protocol = "lines"
tcp = "h:1"
format = "kv"
  [[devices.commands]]
  actuator = "drive"
  type = "geometry_msgs/Twist"
  template = "D {linear.x:.3} {linear.q}"
  limits = { "linear.x" = [1.0, -1.0] }
"#,
        );
        assert!(
            p.iter()
                .any(|l| l.contains("template: `{linear.q}` is not a field")),
            "{p:#?}"
        );
        assert!(
            p.iter()
                .any(|l| l.contains("limits.linear.x: must be [min, max]")),
            "{p:#?}"
        );
        assert!(p.iter().any(|l| l.contains("safe: missing")), "{p:#?}");
    }

    #[test]
    fn dotted_toml_keys_read_as_field_paths_and_relative_paths_resolve() {
        let r = Robot::from_str(
            r#"
id = "r1"
[[devices]]
name = "imu"
protocol = "lines"
serial = { path = "dev/imu" }
format = "csv"
columns = ["tag", "az"]
  [[devices.streams]]
  sensor = "imu"
  type = "sensor_msgs/Imu"
  fields = { linear_acceleration.z = "az" }
"#,
            Path::new("/etc/botbus/robots/r1.toml"),
        )
        .unwrap();
        let d = &r.devices[0];
        assert_eq!(
            d.transport,
            TransportSpec::Serial(SerialSpec {
                path: PathBuf::from("/etc/botbus/robots/dev/imu"),
                baud: 115_200,
                data_bits: 8,
                parity: ParityConfig::None,
                stop_bits: 1,
                flow_control: FlowControlConfig::None,
            })
        );
        assert_eq!(
            d.streams[0].select,
            StreamSelect::Lines {
                when: vec![],
                fields: vec![("linear_acceleration.z".into(), "az".into())]
            }
        );
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let p = problems("id = \"r1\"\n[[devices]\n");
        assert_eq!(p.len(), 1);
        assert!(
            p[0].starts_with("robots/t.toml: line 2: TOML syntax error"),
            "{p:?}"
        );
    }
}
