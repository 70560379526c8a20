//! Channels from status and catalog messages as the daemon publishes them.

use super::*;
use crate::config::Robot;
use crate::meta::{catalog, status_message, Topics as Names};

const ROBOT: &str = r#"
id = "r1"
[[devices]]
name = "base"
protocol = "lines"
serial = { path = "/dev/null", baud = 115200 }
format = "kv"
  [[devices.streams]]
  sensor = "battery"
  type = "sensor_msgs/BatteryState"
  fields = { voltage = "v" }
  qos = 1
  retain = true
  [[devices.commands]]
  actuator = "drive"
  type = "geometry_msgs/Twist"
  template = "D {linear.x:.3}"
  limits = { "linear.x" = [-1.0, 1.0] }
  safe = { "linear.x" = 0.0 }
"#;

fn catalog_payload() -> Vec<u8> {
    let robot = Robot::from_str(ROBOT, std::path::Path::new("r1.toml")).expect("robot");
    let names = Names::new("robot", "r1");
    rmp_serde::to_vec_named(&catalog(&robot, &names, 3)).unwrap()
}

fn status(online: bool) -> Vec<u8> {
    status_message(&Names::new("robot", "r1"), online, 3)
        .payload
        .to_vec()
}

fn advertised(changes: &[Change]) -> Vec<(String, String)> {
    changes
        .iter()
        .filter_map(|c| match c {
            Change::Advertise(c) => Some((c.topic.clone(), c.schema_name.clone())),
            Change::Unadvertise(_) => None,
        })
        .collect()
}

fn unadvertised(changes: &[Change]) -> Vec<String> {
    changes
        .iter()
        .filter_map(|c| match c {
            Change::Unadvertise(t) => Some(t.clone()),
            Change::Advertise(_) => None,
        })
        .collect()
}

#[test]
fn a_robot_that_comes_advertises_its_catalog_and_meta_topics_and_going_unadvertises_them() {
    let mut t = Topics::new("robot");
    let c = t.observe("robot/r1/status", &status(true));
    assert_eq!(
        advertised(&c),
        [
            ("robot/r1/catalog".to_string(), "botbus/catalog".to_string()),
            ("robot/r1/diagnostics".into(), "botbus/diagnostics".into()),
            ("robot/r1/status".into(), "botbus/status".into()),
        ]
    );
    let c = t.observe("robot/r1/catalog", &catalog_payload());
    assert_eq!(
        advertised(&c),
        [
            ("robot/r1/ack/drive".to_string(), "botbus/ack".to_string()),
            ("robot/r1/battery".into(), "sensor_msgs/BatteryState".into()),
            ("robot/r1/cmd/drive".into(), "geometry_msgs/Twist".into()),
        ]
    );
    let battery = t.channel("robot/r1/battery", 0, false);
    assert_eq!((battery.qos, battery.retain), (1, true));
    assert_eq!(
        t.channel("robot/r1/cmd/drive", 1, false).kind,
        TopicKind::Command
    );
    // The same catalog again (a reconnect) changes nothing.
    assert!(t.observe("robot/r1/catalog", &catalog_payload()).is_empty());
    // Offline: everything but the status goes.
    let c = t.observe("robot/r1/status", &status(false));
    assert!(advertised(&c).is_empty());
    assert_eq!(
        unadvertised(&c),
        [
            "robot/r1/ack/drive",
            "robot/r1/battery",
            "robot/r1/catalog",
            "robot/r1/cmd/drive",
            "robot/r1/diagnostics"
        ]
    );
    // A cleared status: the robot is gone, status included.
    let c = t.observe("robot/r1/status", b"");
    assert_eq!(unadvertised(&c), ["robot/r1/status"]);
    assert_eq!(
        t.channel("robot/r1/battery", 0, false).kind,
        TopicKind::Unlisted
    );
}

#[test]
fn unknown_topics_are_typed_by_their_names_with_the_flags_they_came_with() {
    let t = Topics::new("robot");
    let c = t.channel("robot/r9/diagnostics", 0, false);
    assert_eq!(
        (c.schema_name.as_str(), c.kind),
        ("botbus/diagnostics", TopicKind::Meta)
    );
    let c = t.channel("robot/r9/cmd/arm", 1, false);
    assert_eq!(c.kind, TopicKind::Command);
    let c = t.channel("robot/r9/weird", 2, true);
    assert_eq!(
        (c.schema_name.as_str(), c.qos, c.retain),
        ("botbus/unlisted", 2, true)
    );
    let c = t.channel("other/thing", 0, false);
    assert_eq!(c.kind, TopicKind::Unlisted);
}

#[test]
fn garbage_on_a_meta_topic_changes_nothing() {
    let mut t = Topics::new("robot");
    assert!(t.observe("robot/r1/status", &[0xc1, 0x00]).is_empty());
    assert!(t.observe("robot/r1/catalog", b"not msgpack").is_empty());
    assert!(t.observe("robot/r1/battery", b"anything").is_empty());
}

#[test]
fn topics_that_stop_at_the_robot_level_are_typed_not_a_crash() {
    let mut t = Topics::new("robot");
    for topic in ["robot/r1", "robot/", "robot", "robot//x"] {
        assert!(t.observe(topic, b"\x80").is_empty(), "{topic}");
        assert_eq!(
            t.channel(topic, 0, false).kind,
            TopicKind::Unlisted,
            "{topic}"
        );
    }
}

#[test]
fn a_command_topic_is_known_by_its_name_under_any_prefix() {
    assert!(is_command_topic("robot/r1/cmd/drive"));
    assert!(is_command_topic("fleet/r1/cmd/arm/goal"));
    assert!(!is_command_topic("robot/r1/ack/drive"));
    assert!(!is_command_topic("robot/cmd"));
    assert!(!is_command_topic("robot/r1/sensors/cmd"));
    let t = Topics::new("robot");
    assert_eq!(
        t.channel("fleet/r1/cmd/drive", 1, false).kind,
        TopicKind::Command
    );
}

#[test]
fn a_robot_is_down_once_its_status_says_offline() {
    let mut t = Topics::new("robot");
    assert!(!t.robot_down("robot/r1/battery"));
    t.observe("robot/r1/status", &status(true));
    assert!(!t.robot_down("robot/r1/battery"));
    t.observe("robot/r1/status", &status(false));
    assert!(t.robot_down("robot/r1/battery"));
}
