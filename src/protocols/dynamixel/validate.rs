//! A Dynamixel bus's keys → the validated [`Dynamixel`]: a byte transport, the servos'
//! model, polls of joint states or control-table items, and JointState-shaped commands
//! with per-joint limits.

use super::config::{DynamixelCommandConfig, DynamixelConfig, DynamixelStreamConfig, SafeConfig};
use super::table::{Item, Model};
use super::JointPoll;
use crate::messages::MessageType;
use crate::spec::check::num;
use crate::spec::{Checker, Command, CommandKeys, OutOfRange, Stream, TransportSpec};
use crate::stream_keys;
use std::time::Duration;

/// A validated Dynamixel bus (one port) and the servos on it.
#[derive(Debug, Clone)]
pub struct Dynamixel {
    pub transport: TransportSpec,
    pub model: Model,
    /// How long to wait for a servo's answer.
    pub timeout: Duration,
    pub streams: Vec<Stream<DxlPoll>>,
    pub commands: Vec<Command<DxlCommand>>,
}

impl Dynamixel {
    /// Every joint the robot file names on the bus, streams' then commands', in file
    /// order (a joint in several appears several times).
    pub fn joints(&self) -> impl Iterator<Item = &Joint> {
        self.streams.iter().flat_map(|s| &s.select.joints).chain(
            self.commands
                .iter()
                .flat_map(|c| c.render.joints.iter().map(|g| &g.joint)),
        )
    }
}

/// A servo and the joint it drives.
#[derive(Debug, Clone, PartialEq)]
pub struct Joint {
    pub name: String,
    pub id: u8,
}

/// What a stream reads, and how often.
#[derive(Debug, Clone, PartialEq)]
pub struct DxlPoll {
    pub interval: Duration,
    pub joints: Vec<Joint>,
    pub read: PollRead,
}

/// A poll's reads: a joint state (one sync read), or named control-table items.
#[derive(Debug, Clone, PartialEq)]
pub enum PollRead {
    JointState,
    Items(Vec<Item>),
}

/// A commanded joint, with its position limits in radians.
#[derive(Debug, Clone, PartialEq)]
pub struct JointGoal {
    pub joint: Joint,
    pub limits: (f64, f64),
}

/// How a JointState command becomes goals, and what its safe state is.
#[derive(Debug, Clone, PartialEq)]
pub struct DxlCommand {
    pub model: Model,
    pub joints: Vec<JointGoal>,
    /// The largest velocity goal in rad/s; velocity goals are refused without it.
    pub max_velocity: Option<f64>,
    pub out_of_range: OutOfRange,
    pub safe: SafeConfig,
}

/// Validates one `protocol = "dynamixel"` bus.
pub fn device(
    ck: &mut Checker,
    table: toml::Value,
    streams: Vec<toml::Value>,
    commands: Vec<toml::Value>,
    at: &str,
) -> Option<(String, Dynamixel)> {
    let (d, streams, commands): (
        Option<DynamixelConfig>,
        Vec<DynamixelStreamConfig>,
        Vec<DynamixelCommandConfig>,
    ) = ck.read_device(table, streams, commands, at);
    let d = d?;
    let name_ok = ck.check_name(&format!("{at}.name"), &d.name, false);
    let transport = ck.transport(d.serial, d.tcp, at);
    let device_frame = d.frame_id.unwrap_or_else(|| d.name.clone());
    let model = match Model::parse(d.model.as_deref().unwrap_or("x")) {
        Ok(m) => Some(m),
        Err(e) => {
            ck.problem(format!("{at}.model"), e.to_string());
            None
        }
    };
    let timeout = ck.answer_timeout(at, d.timeout_ms, 20);
    let model = model?;
    let streams = streams
        .into_iter()
        .enumerate()
        .filter_map(|(i, s)| stream(ck, s, &format!("{at}.streams[{i}]"), &device_frame, model))
        .collect();
    let commands = commands
        .into_iter()
        .enumerate()
        .filter_map(|(i, c)| command(ck, c, &format!("{at}.commands[{i}]"), model))
        .collect();
    let (true, Some(transport), Some(timeout)) = (name_ok, transport, timeout) else {
        return None;
    };
    Some((
        d.name,
        Dynamixel {
            transport,
            model,
            timeout,
            streams,
            commands,
        },
    ))
}

/// `ids` and `joints`, one name per id: servo ids 0..=252, no id or name twice.
fn joints(ck: &mut Checker, at: &str, ids: &[u8], names: Vec<String>) -> Option<Vec<Joint>> {
    let mut ok = true;
    if ids.is_empty() {
        ck.problem(format!("{at}.ids"), "must list at least one servo id");
        ok = false;
    }
    if ids.len() != names.len() {
        ck.problem(
            format!("{at}.joints"),
            format!(
                "must name one joint per id: {} ids, {} joints",
                ids.len(),
                names.len()
            ),
        );
        ok = false;
    }
    for (i, id) in ids.iter().enumerate() {
        if *id > 252 {
            ck.problem(
                format!("{at}.ids[{i}]"),
                format!("must be a servo id from 0 to 252, not {id}"),
            );
            ok = false;
        }
        if ids[..i].contains(id) {
            ck.problem(format!("{at}.ids[{i}]"), format!("duplicate id {id}"));
            ok = false;
        }
    }
    for (i, n) in names.iter().enumerate() {
        if n.is_empty() || n.chars().any(char::is_control) {
            ck.problem(format!("{at}.joints[{i}]"), "must be a non-empty name");
            ok = false;
        }
        if names[..i].contains(n) {
            ck.problem(
                format!("{at}.joints[{i}]"),
                format!("duplicate joint `{n}`"),
            );
            ok = false;
        }
    }
    ok.then(|| {
        ids.iter()
            .zip(names)
            .map(|(&id, name)| Joint { name, id })
            .collect()
    })
}

fn stream(
    ck: &mut Checker,
    s: DynamixelStreamConfig,
    at: &str,
    device_frame: &str,
    model: Model,
) -> Option<Stream<DxlPoll>> {
    let t = ck.msg_type(
        at,
        &s.msg_type,
        &[MessageType::JointState, MessageType::Map],
    );
    let (ids, names, poll_hz, item_names) = (s.ids, s.joints, s.poll_hz, s.items);
    let spec = ck.stream(at, stream_keys!(s), t, device_frame);
    let interval = ck.poll_interval(at, poll_hz);
    let joints = joints(ck, at, &ids, names);
    let read = match t? {
        MessageType::JointState => {
            if !item_names.is_empty() {
                ck.problem(
                    format!("{at}.items"),
                    "a JointState stream reads position, velocity and current; use type = \"map\" for items",
                );
                None
            } else if let Err(e) = JointPoll::new(model, &ids) {
                ck.problem(format!("{at}.ids"), e.to_string());
                None
            } else {
                Some(PollRead::JointState)
            }
        }
        _ => items(ck, at, model, item_names).map(PollRead::Items),
    };
    let (Some(spec), Some(interval), Some(joints), Some(read)) = (spec, interval, joints, read)
    else {
        return None;
    };
    Some(Stream {
        spec,
        select: DxlPoll {
            interval,
            joints,
            read,
        },
    })
}

fn items(ck: &mut Checker, at: &str, model: Model, names: Vec<String>) -> Option<Vec<Item>> {
    if names.is_empty() {
        ck.problem(
            format!("{at}.items"),
            "must list control-table items, e.g. items = [\"present_temperature\"]",
        );
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    for (i, n) in names.iter().enumerate() {
        match model.item(n) {
            Ok(item) => out.push(item),
            Err(e) => {
                ck.problem(format!("{at}.items[{i}]"), e.to_string());
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

/// The positions a servo reaches in position control, in rad: the X series' 0..=4095
/// (e-Manual, Min/Max Position Limit), the P series' half a turn either way.
fn position_range(model: Model) -> (f64, f64) {
    let units = model.units();
    match model {
        Model::XSeries => (units.position_rad(0), units.position_rad(4095)),
        _ => (-std::f64::consts::PI, std::f64::consts::PI),
    }
}

fn command(
    ck: &mut Checker,
    c: DynamixelCommandConfig,
    at: &str,
    model: Model,
) -> Option<Command<DxlCommand>> {
    let (ids, names, limits, max_velocity, safe, out_of_range) = (
        c.ids,
        c.joints,
        c.limits,
        c.max_velocity,
        c.safe,
        c.out_of_range,
    );
    // Per-joint limits and the safe state are this protocol's own, checked here.
    let keys = CommandKeys {
        actuator: c.actuator,
        msg_type: c.msg_type,
        limits: toml::Table::new(),
        out_of_range,
        timeout_ms: c.timeout_ms,
        safe: toml::Table::new(),
        max_rate_hz: c.max_rate_hz,
        max_age_ms: c.max_age_ms,
    };
    ck.command_own_safe(keys, at, &[MessageType::JointState], |ck, _| {
        let joints = joints(ck, at, &ids, names)?;
        let mut ok = true;
        if let Some(v) = max_velocity {
            if !(v.is_finite() && v > 0.0) {
                ck.problem(
                    format!("{at}.max_velocity"),
                    "must be a positive number of rad/s",
                );
                ok = false;
            }
        }
        for name in limits.keys() {
            if !joints.iter().any(|j| &j.name == name) {
                ck.problem(
                    format!("{at}.limits.{name}"),
                    format!("`{name}` is not one of this command's joints"),
                );
                ok = false;
            }
        }
        // Every joint needs its limits: a goal is never written unchecked.
        let mut goals = Vec::new();
        for joint in joints {
            let lat = format!("{at}.limits.{}", joint.name);
            let pair = limits.get(&joint.name).map(|v| {
                v.as_array().and_then(|a| {
                    (a.len() == 2)
                        .then(|| Some((num(&a[0])?, num(&a[1])?)))
                        .flatten()
                })
            });
            match pair {
                None => {
                    ck.problem(
                        lat,
                        format!(
                            "missing: every joint needs its [min, max] in radians, e.g. limits = {{ {} = [-1.5, 1.5] }}",
                            joint.name
                        ),
                    );
                    ok = false;
                }
                Some(Some((min, max))) if min.is_finite() && max.is_finite() && min <= max => {
                    // A goal outside the servo's position range would be refused by the
                    // servo without a word (Sync Write has no answer): refuse the limits.
                    let (lo, hi) = position_range(model);
                    if min < lo || max > hi {
                        ck.problem(
                            lat,
                            format!(
                                "must lie within the {model} position range [{lo:.4}, {hi:.4}] rad"
                            ),
                        );
                        ok = false;
                        continue;
                    }
                    goals.push(JointGoal {
                        joint,
                        limits: (min, max),
                    });
                }
                Some(_) => {
                    ck.problem(lat, "must be [min, max] in radians with finite min <= max");
                    ok = false;
                }
            }
        }
        ok.then_some(DxlCommand {
            model,
            joints: goals,
            max_velocity,
            out_of_range,
            safe,
        })
    })
}

#[cfg(test)]
mod tests {
    use crate::config::{DeviceKind, Robot};
    use std::path::Path;

    const ARM: &str = r#"
id = "r1"
[[devices]]
name = "arm"
protocol = "dynamixel"
serial = { path = "/dev/ttyUSB0", baud = 57600 }
  [[devices.streams]]
  sensor = "arm/joints"
  ids = [1, 2]
  joints = ["shoulder", "elbow"]
  poll_hz = 50
  [[devices.streams]]
  sensor = "arm/health"
  type = "map"
  ids = [1, 2]
  joints = ["shoulder", "elbow"]
  items = ["present_temperature"]
  poll_hz = 1
  [[devices.commands]]
  actuator = "arm/goal"
  ids = [1, 2]
  joints = ["shoulder", "elbow"]
  limits = { shoulder = [-1.5, 1.5], elbow = [-2.0, 2.0] }
  timeout_ms = 500
  safe = "hold"
"#;

    fn problems(text: &str) -> Vec<String> {
        match Robot::from_str(text, Path::new("robots/t.toml")) {
            Ok(_) => Vec::new(),
            Err(e) => e.to_string().lines().map(str::to_string).collect(),
        }
    }

    #[test]
    fn an_arm_validates_into_joint_polls_and_a_checked_command() {
        let robot = Robot::from_str(ARM, Path::new("robots/t.toml")).unwrap();
        let DeviceKind::Dynamixel(bus) = &robot.devices[0].kind else {
            panic!("not a dynamixel bus");
        };
        assert_eq!(bus.model, super::Model::XSeries);
        assert_eq!(bus.timeout, std::time::Duration::from_millis(20));
        assert_eq!(bus.streams[0].select.read, super::PollRead::JointState);
        assert_eq!(
            bus.streams[0].spec.msg_type,
            crate::messages::MessageType::JointState
        );
        let cmd = &bus.commands[0];
        assert_eq!(cmd.render.safe, super::SafeConfig::Hold);
        assert_eq!(cmd.render.joints[1].limits, (-2.0, 2.0));
        assert!(cmd.safe.is_empty(), "the safe state is the protocol's own");
        assert_eq!(cmd.timeout, Some(std::time::Duration::from_millis(500)));
    }

    #[test]
    fn each_mistake_is_named_at_its_key() {
        let cases = [
            (
                (
                    "ids = [1, 2]\n  joints = [\"shoulder\", \"elbow\"]\n  poll_hz",
                    "ids = [1, 2]\n  joints = [\"shoulder\"]\n  poll_hz",
                ),
                "devices[0].streams[0].joints: must name one joint per id: 2 ids, 1 joints",
            ),
            (
                (
                    "ids = [1, 2]\n  joints = [\"shoulder\", \"elbow\"]\n  poll_hz = 50",
                    "ids = [1, 1]\n  joints = [\"shoulder\", \"elbow\"]\n  poll_hz = 50",
                ),
                "devices[0].streams[0].ids[1]: duplicate id 1",
            ),
            (
                (
                    "items = [\"present_temperature\"]",
                    "items = [\"present_temprature\"]",
                ),
                "devices[0].streams[1].items[0]",
            ),
            (
                (
                    "limits = { shoulder = [-1.5, 1.5], elbow = [-2.0, 2.0] }",
                    "limits = { shoulder = [-1.5, 1.5] }",
                ),
                "devices[0].commands[0].limits.elbow: missing: every joint needs its [min, max]",
            ),
            (
                (
                    "limits = { shoulder = [-1.5, 1.5], elbow = [-2.0, 2.0] }",
                    "limits = { shoulder = [1.5, -1.5], elbow = [-2.0, 2.0], knee = [0, 1] }",
                ),
                "devices[0].commands[0].limits.knee: `knee` is not one of this command's joints",
            ),
            (
                ("safe = \"hold\"", "safe = \"drop\""),
                "devices[0].commands[0].safe",
            ),
            (
                ("baud = 57600 }", "baud = 57600 }\nmodel = \"xl430\""),
                "devices[0].model",
            ),
            (
                ("elbow = [-2.0, 2.0] }", "elbow = [-2.0, 3.2] }"),
                "devices[0].commands[0].limits.elbow: must lie within the",
            ),
            (
                ("poll_hz = 50", "poll_hz = 0"),
                "devices[0].streams[0].poll_hz: must be between 0 and 1000 Hz",
            ),
        ];
        for ((from, to), want) in cases {
            assert!(ARM.contains(from), "{from}");
            let got = problems(&ARM.replacen(from, to, 1));
            assert!(
                got.iter().any(|p| p.contains(want)),
                "{to}: want {want:?} in {got:?}"
            );
        }
        // Reversed limits are caught too.
        let got = problems(&ARM.replacen("shoulder = [-1.5, 1.5]", "shoulder = [1.5, -1.5]", 1));
        assert!(
            got.iter()
                .any(|p| p.contains("limits.shoulder: must be [min, max]")),
            "{got:?}"
        );
    }
}
