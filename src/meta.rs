//! The meta topics every robot publishes: `status` (also the Last Will), the retained
//! `catalog` of its streams and commands, and the topic names themselves.

use crate::bus::{qos_from_u8, Outgoing, QoS};
use crate::config::{CommandRender, Robot};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Topic names for one robot under one prefix.
#[derive(Debug, Clone)]
pub struct Topics {
    pub base: String,
}

impl Topics {
    pub fn new(prefix: &str, robot_id: &str) -> Topics {
        Topics {
            base: format!("{prefix}/{robot_id}"),
        }
    }
    pub fn sensor(&self, sensor: &str) -> String {
        format!("{}/{sensor}", self.base)
    }
    pub fn command(&self, actuator: &str) -> String {
        format!("{}/cmd/{actuator}", self.base)
    }
    pub fn ack(&self, actuator: &str) -> String {
        format!("{}/ack/{actuator}", self.base)
    }
    pub fn status(&self) -> String {
        format!("{}/status", self.base)
    }
    pub fn catalog(&self) -> String {
        format!("{}/catalog", self.base)
    }
    pub fn diagnostics(&self) -> String {
        format!("{}/diagnostics", self.base)
    }
    pub fn commands_filter(&self) -> String {
        format!("{}/cmd/#", self.base)
    }
}

/// A meta topic every robot publishes beside its streams (DESIGN.md section 3): its name
/// under `<prefix>/<id>/`, the type name `topic list` and the viewers give it, and how it
/// is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetaTopic {
    pub name: &'static str,
    pub type_name: &'static str,
    pub qos: u8,
    pub retain: bool,
}

pub const STATUS_TOPIC: MetaTopic = MetaTopic {
    name: "status",
    type_name: "botbus/status",
    qos: 1,
    retain: true,
};
pub const CATALOG_TOPIC: MetaTopic = MetaTopic {
    name: "catalog",
    type_name: "botbus/catalog",
    qos: 1,
    retain: true,
};
pub const DIAGNOSTICS_TOPIC: MetaTopic = MetaTopic {
    name: "diagnostics",
    type_name: "botbus/diagnostics",
    qos: 0,
    retain: false,
};
pub const META_TOPICS: [MetaTopic; 3] = [STATUS_TOPIC, CATALOG_TOPIC, DIAGNOSTICS_TOPIC];

/// The type name of the `ack/<actuator>` topics.
pub const ACK_TYPE: &str = "botbus/ack";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Status {
    pub state: String,
    pub boot: u64,
    pub version: String,
}

pub fn status_message(topics: &Topics, online: bool, boot: u64) -> Outgoing {
    let s = Status {
        state: if online { "online" } else { "offline" }.into(),
        boot,
        version: VERSION.into(),
    };
    let payload = rmp_serde::to_vec_named(&s).expect("status encodes");
    Outgoing::new(topics.status(), payload, QoS::AtLeastOnce, true)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StreamEntry {
    pub topic: String,
    #[serde(rename = "type")]
    pub msg_type: String,
    pub qos: u8,
    pub retain: bool,
    pub device: String,
    /// Extension: the `max_rate_hz` cap, when the stream has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rate_hz: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CommandEntry {
    pub topic: String,
    pub ack_topic: String,
    #[serde(rename = "type")]
    pub msg_type: String,
    /// Field path → `[min, max]`.
    pub limits: BTreeMap<String, [f64; 2]>,
    pub timeout_ms: Option<u64>,
    pub device: String,
    /// Extensions: how out-of-range values are treated, and the line template.
    #[serde(default)]
    pub out_of_range: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Catalog {
    pub robot: String,
    pub boot: u64,
    pub streams: Vec<StreamEntry>,
    pub commands: Vec<CommandEntry>,
}

pub fn catalog(robot: &Robot, topics: &Topics, boot: u64) -> Catalog {
    Catalog {
        robot: robot.id.clone(),
        boot,
        streams: robot
            .streams()
            .map(|(d, s)| StreamEntry {
                topic: topics.sensor(&s.sensor),
                msg_type: s.msg_type.name().into(),
                qos: s.qos,
                retain: s.retain,
                device: d.name.clone(),
                max_rate_hz: s.min_interval.map(|i| 1.0 / i.as_secs_f64()),
            })
            .collect(),
        commands: robot
            .commands()
            .map(|(d, c)| CommandEntry {
                topic: topics.command(&c.actuator),
                ack_topic: topics.ack(&c.actuator),
                msg_type: c.msg_type.name().into(),
                // A Dynamixel actuator's limits are per joint, in radians.
                limits: match &c.render {
                    CommandRender::Dynamixel(d) => d
                        .joints
                        .iter()
                        .map(|g| (g.joint.name.clone(), [g.limits.0, g.limits.1]))
                        .collect(),
                    _ => c
                        .limits
                        .iter()
                        .map(|l| (l.path.clone(), [l.min, l.max]))
                        .collect(),
                },
                timeout_ms: c.timeout.map(|t| t.as_millis() as u64),
                device: d.name.clone(),
                out_of_range: format!("{:?}", c.out_of_range).to_lowercase(),
                template: match &c.render {
                    CommandRender::Template(t) => Some(t.source().to_string()),
                    CommandRender::Modbus(_)
                    | CommandRender::Can(_)
                    | CommandRender::Dynamixel(_) => None,
                },
            })
            .collect(),
    }
}

pub fn catalog_message(topics: &Topics, catalog: &Catalog) -> Outgoing {
    let payload = rmp_serde::to_vec_named(catalog).expect("catalog encodes");
    Outgoing::new(topics.catalog(), payload, qos_from_u8(1), true)
}
