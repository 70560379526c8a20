//! Robot file → validated [`Robot`] in one step, collecting every problem with the key
//! path where it was found. This is the driver: it reads the top level, hands each device
//! to its protocol folder's `validate::device`, and checks names across devices. Only a
//! validated robot builds anything.

use super::robot::{Device, DeviceKind, Robot};
use crate::protocols::{can, dynamixel, lines, modbus, nmea};
use crate::spec::check::deserialize_at;
use crate::spec::{Checker, Problem};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Every problem found in one robot file. Displays as one line per problem.
#[derive(Debug, Clone)]
pub struct RobotFileError {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

/// `text` with its control characters escaped (`\n` as the two characters `\` `n`), so
/// a problem quoting a key or value from the file stays on its one line (found by
/// fuzzing: a name `"c\n"` split its problem over two lines).
fn one_line(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out.into()
}

impl fmt::Display for RobotFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            let message = one_line(&p.message);
            if p.path.is_empty() {
                write!(f, "{}: {message}", self.file.display())?;
            } else {
                write!(
                    f,
                    "{}: {}: {message}",
                    self.file.display(),
                    one_line(&p.path)
                )?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for RobotFileError {}

/// The top level of a robot file; `devices` are read one by one beside it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RobotConfig {
    id: String,
}

/// The protocols a robot file may name: one per protocol folder, and those a later build
/// adds. Closed, so the dispatch below has no fallback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Nmea,
    Lines,
    Modbus,
    Slcan,
    Socketcan,
    Dynamixel,
}

const PROTOCOLS: [(&str, Protocol); 6] = [
    ("nmea", Protocol::Nmea),
    ("lines", Protocol::Lines),
    ("modbus", Protocol::Modbus),
    ("slcan", Protocol::Slcan),
    ("socketcan", Protocol::Socketcan),
    ("dynamixel", Protocol::Dynamixel),
];

impl Protocol {
    fn names() -> String {
        PROTOCOLS
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Robot {
    /// Reads and validates a robot file, reporting every problem found.
    pub fn load(path: &Path) -> Result<Robot, RobotFileError> {
        let text = std::fs::read_to_string(path).map_err(|e| RobotFileError {
            file: path.to_path_buf(),
            problems: vec![Problem {
                path: String::new(),
                message: format!("cannot read: {e}"),
            }],
        })?;
        Robot::from_str(&text, path)
    }

    /// Validates robot-file text; `path` names the file in errors and anchors relative paths.
    pub fn from_str(text: &str, path: &Path) -> Result<Robot, RobotFileError> {
        let mut ck = Checker::new(path.parent().map(Path::to_path_buf).unwrap_or_default());
        let robot = robot(&mut ck, text);
        match robot {
            Some(mut r) if ck.problems.is_empty() => {
                r.file = path.to_path_buf();
                Ok(r)
            }
            _ => Err(RobotFileError {
                file: path.to_path_buf(),
                problems: ck.problems,
            }),
        }
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn robot(ck: &mut Checker, text: &str) -> Option<Robot> {
    let mut table: toml::Table = match text.parse::<toml::Table>() {
        Ok(t) => t,
        Err(e) => {
            let at = e
                .span()
                .map(|s| format!("line {}: ", line_of(text, s.start)))
                .unwrap_or_default();
            let message = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
            ck.problem("", format!("{at}TOML syntax error: {message}"));
            return None;
        }
    };
    let devices = table.remove("devices");
    let id = table.get("id").and_then(|v| v.as_str()).map(str::to_string);
    let top: Option<RobotConfig> = match deserialize_at(toml::Value::Table(table), "") {
        Ok(r) => Some(r),
        Err(p) => {
            ck.problems.push(p);
            None
        }
    };
    // Checked even when another top-level key is wrong, so every problem shows.
    if let Some(id) = &id {
        ck.check_name("id", id, false);
    }
    let mut out = Vec::new();
    match devices {
        None => {}
        Some(toml::Value::Array(items)) => {
            // Reported after each device's own problems.
            let duplicates = duplicate_names(&items);
            for (i, item) in items.into_iter().enumerate() {
                if let Some(d) = device(ck, item, &format!("devices[{i}]")) {
                    out.push(d);
                }
            }
            ck.problems.extend(duplicates);
        }
        Some(_) => ck.problem("devices", "must be an array of tables ([[devices]])"),
    }
    Some(Robot {
        id: top?.id,
        file: PathBuf::new(),
        devices: out,
    })
}

/// One `[[devices]]` table: its `protocol` picks the folder that validates the rest.
fn device(ck: &mut Checker, item: toml::Value, at: &str) -> Option<Device> {
    let toml::Value::Table(mut table) = item else {
        ck.problem(at, "must be a table");
        return None;
    };
    let protocol = match table.remove("protocol") {
        Some(toml::Value::String(s)) => s,
        Some(_) => {
            ck.problem(format!("{at}.protocol"), "must be a string");
            return None;
        }
        None => {
            ck.problem(
                format!("{at}.protocol"),
                format!("missing; one of {}", Protocol::names()),
            );
            return None;
        }
    };
    let Some(&(_, protocol_kind)) = PROTOCOLS.iter().find(|(n, _)| *n == protocol) else {
        ck.problem(
            format!("{at}.protocol"),
            format!(
                "unknown protocol `{protocol}`, expected one of {}",
                Protocol::names()
            ),
        );
        return None;
    };
    // Streams and commands are read item by item, and each protocol's own struct is read
    // directly rather than through an internally tagged enum: serde buffers such an enum's
    // content, and serde_path_to_error then loses the key path below the device (e.g.
    // `devices[0].serial.baudd`).
    let streams = items(ck, table.remove("streams"), &format!("{at}.streams"));
    let commands = items(ck, table.remove("commands"), &format!("{at}.commands"));
    let keys = toml::Value::Table(table);
    let (name, kind) = match protocol_kind {
        Protocol::Nmea => nmea::validate::device(ck, keys, streams, commands, at)
            .map(|(n, d)| (n, DeviceKind::Nmea(d))),
        Protocol::Lines => lines::validate::device(ck, keys, streams, commands, at)
            .map(|(n, d)| (n, DeviceKind::Lines(d))),
        Protocol::Modbus => modbus::validate::device(ck, keys, streams, commands, at)
            .map(|(n, d)| (n, DeviceKind::Modbus(d))),
        Protocol::Slcan | Protocol::Socketcan => {
            can::validate::device(ck, keys, streams, commands, at)
                .map(|(n, d)| (n, DeviceKind::Can(d)))
        }
        Protocol::Dynamixel => dynamixel::validate::device(ck, keys, streams, commands, at)
            .map(|(n, d)| (n, DeviceKind::Dynamixel(d))),
    }?;
    Some(Device { name, kind })
}

fn items(ck: &mut Checker, v: Option<toml::Value>, at: &str) -> Vec<toml::Value> {
    match v {
        None => Vec::new(),
        Some(toml::Value::Array(a)) => a,
        Some(_) => {
            ck.problem(at, "must be an array of tables");
            Vec::new()
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocols::lines::LineSelect;
    use crate::spec::{FlowControlConfig, ParityConfig, SerialSpec, TransportSpec};
    use std::time::Duration;

    /// A robot `r1` with one text-line device `a`, for tests to add streams and commands to.
    const LINES_ROBOT: &str = "id = \"r1\"\n[[devices]]\nname = \"a\"\nprotocol = \"lines\"\ntcp = \"h:1\"\nformat = \"kv\"\n";

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

    /// Found by fuzzing: `safe = { left = "" }` on a `map` command with limits on `left`
    /// validated, and its deadman then had nothing it could write.
    #[test]
    fn a_safe_value_of_a_limited_field_must_be_a_number() {
        let p = problems(&format!(
            r#"{LINES_ROBOT}
  [[devices.commands]]
  actuator = "pump"
  type = "map"
  template = "P {{left}} {{mode}}"
  limits = {{ left = [-5.0, 5.0] }}
  safe = {{ left = "", mode = "off" }}
"#
        ));
        assert_eq!(
            p,
            vec!["robots/t.toml: devices[0].commands[0].safe.left: `left` has limits [-5, 5], so its safe value must be a number"]
        );
    }

    #[test]
    fn each_problem_is_one_line_whatever_the_file_quotes() {
        let p = problems("id = \"r\\n1\"\n");
        assert_eq!(
            p,
            vec!["robots/t.toml: id: `r\\n1` is not a valid name: use letters, digits, `_` or `-`"]
        );
    }

    /// Found by fuzzing: a 5-byte `source` that is not ASCII was sliced inside a character.
    #[test]
    fn a_source_that_is_not_ascii_is_a_problem_not_a_panic() {
        let p = problems(
            "id = \"r1\"\n[[devices]]\nname = \"gps\"\nprotocol = \"nmea\"\ntcp = \"h:1\"\n  [[devices.streams]]\n  sensor = \"gps/fix\"\n  type = \"sensor_msgs/NavSatFix\"\n  source = \"M🕴\"\n",
        );
        assert_eq!(
            p,
            vec!["robots/t.toml: devices[0].streams[0].source: `M🕴` is not an NMEA sentence name such as GGA or RMC"]
        );
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
        let DeviceKind::Lines(d) = &r.devices[0].kind else {
            panic!("not a lines device")
        };
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
            LineSelect {
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
