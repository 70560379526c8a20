//! Which topics exist and what they carry, learnt from the retained `status` and
//! `catalog` of every robot, and what changes when robots come and go.

use super::schema;
use crate::fleet::client::{rest_of, robot_of};
use crate::meta::{Catalog, Status, META_TOPICS, STATUS_TOPIC};
use std::collections::BTreeMap;

/// Where a topic comes from, which decides whether `play` may publish it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicKind {
    Stream,
    /// A command topic: never replayed unless named.
    Command,
    Ack,
    Meta,
    /// In no catalog.
    Unlisted,
}

/// One topic as a viewer channel: its schema name and how it is published.
#[derive(Debug, Clone, PartialEq)]
pub struct Channel {
    pub topic: String,
    pub schema_name: String,
    pub qos: u8,
    pub retain: bool,
    pub kind: TopicKind,
}

/// A channel that appeared or went away.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Advertise(Channel),
    Unadvertise(String),
}

#[derive(Debug, Default)]
struct Robot {
    /// `None` until a status arrives; a robot known only from its catalog counts as up.
    online: Option<bool>,
    catalog: Option<Catalog>,
    /// The channels advertised now, by topic.
    live: BTreeMap<String, Channel>,
}

/// Whether `topic` is a command topic by its name, `<prefix>/<robot>/cmd/...`, whatever
/// the prefix: the test `play` applies before it trusts any recorded metadata.
pub fn is_command_topic(topic: &str) -> bool {
    topic.split('/').nth(2) == Some("cmd")
}

/// Every robot's channels under one topic prefix.
#[derive(Debug)]
pub struct Topics {
    prefix: String,
    robots: BTreeMap<String, Robot>,
}

impl Topics {
    pub fn new(prefix: &str) -> Topics {
        Topics {
            prefix: prefix.to_string(),
            robots: BTreeMap::new(),
        }
    }

    /// The filters whose retained messages type every topic.
    pub fn meta_filters(&self) -> [String; 2] {
        [
            format!("{}/+/status", self.prefix),
            format!("{}/+/catalog", self.prefix),
        ]
    }

    /// Takes a message (any topic): a status or catalog updates the channels, and the
    /// changes come back in the order a viewer should apply them.
    pub fn observe(&mut self, topic: &str, payload: &[u8]) -> Vec<Change> {
        let Some(robot) = robot_of(&self.prefix, topic) else {
            return Vec::new();
        };
        let rest = rest_of(&self.prefix, robot, topic);
        if rest != "status" && rest != "catalog" {
            return Vec::new();
        }
        // An empty retained status clears it: the robot is gone for good, and all its
        // channels with it.
        let cleared = rest == "status" && payload.is_empty();
        let robot = robot.to_string();
        let r = self.robots.entry(robot.clone()).or_default();
        match rest {
            _ if cleared => {}
            // A cleared catalog: the robot's streams and commands go.
            "catalog" if payload.is_empty() => r.catalog = None,
            "status" => match rmp_serde::from_slice::<Status>(payload) {
                Ok(s) => r.online = Some(s.state == "online"),
                Err(e) => {
                    tracing::debug!(topic, "not a status: {e}");
                    return Vec::new();
                }
            },
            _ => match rmp_serde::from_slice::<Catalog>(payload) {
                Ok(c) => r.catalog = Some(c),
                Err(e) => {
                    tracing::debug!(topic, "not a catalog: {e}");
                    return Vec::new();
                }
            },
        }
        let wanted = if cleared {
            BTreeMap::new()
        } else {
            self.wanted(&robot)
        };
        let r = self.robots.get_mut(&robot).expect("entered above");
        let mut changes = Vec::new();
        r.live.retain(|t, c| {
            let keep = wanted.get(t) == Some(c);
            if !keep {
                changes.push(Change::Unadvertise(t.clone()));
            }
            keep
        });
        for (t, c) in wanted {
            if let std::collections::btree_map::Entry::Vacant(v) = r.live.entry(t) {
                changes.push(Change::Advertise(c.clone()));
                v.insert(c);
            }
        }
        if cleared {
            self.robots.remove(&robot);
        }
        changes
    }

    /// The channels `robot` should have now: all of its catalog and meta topics while it
    /// is up, only its status while it is down.
    fn wanted(&self, robot: &str) -> BTreeMap<String, Channel> {
        let r = &self.robots[robot];
        let base = format!("{}/{robot}", self.prefix);
        let mut out = BTreeMap::new();
        let mut add = |topic: String, schema_name: &str, qos: u8, retain: bool, kind| {
            let c = Channel {
                topic: topic.clone(),
                schema_name: schema_name.to_string(),
                qos,
                retain,
                kind,
            };
            out.insert(topic, c);
        };
        // Down, a robot keeps only its status channel, to show it offline.
        let down = r.online == Some(false);
        for m in META_TOPICS.iter().filter(|m| !down || **m == STATUS_TOPIC) {
            let topic = format!("{base}/{}", m.name);
            add(topic, m.type_name, m.qos, m.retain, TopicKind::Meta);
        }
        if down {
            return out;
        }
        if let Some(c) = &r.catalog {
            for s in &c.streams {
                add(
                    s.topic.clone(),
                    &s.msg_type,
                    s.qos,
                    s.retain,
                    TopicKind::Stream,
                );
            }
            for cmd in &c.commands {
                add(
                    cmd.topic.clone(),
                    &cmd.msg_type,
                    1,
                    false,
                    TopicKind::Command,
                );
                add(cmd.ack_topic.clone(), schema::ACK, 1, false, TopicKind::Ack);
            }
        }
        out
    }

    /// Whether `topic` belongs to a robot whose status says it is offline: its late or
    /// retained data is not a reason to offer a channel again.
    pub fn robot_down(&self, topic: &str) -> bool {
        robot_of(&self.prefix, topic)
            .and_then(|r| self.robots.get(r))
            .is_some_and(|r| r.online == Some(false))
    }

    /// The channel of `topic`: the one advertised, or else what its name says (a meta
    /// topic, an ack, a command) with the QoS and retain flag it arrived with.
    pub fn channel(&self, topic: &str, qos: u8, retain: bool) -> Channel {
        let robot = robot_of(&self.prefix, topic);
        if let Some(c) = robot
            .and_then(|r| self.robots.get(r))
            .and_then(|r| r.live.get(topic))
        {
            return c.clone();
        }
        let rest = robot.map_or("", |r| rest_of(&self.prefix, r, topic));
        let (schema_name, kind) = if let Some(m) = META_TOPICS.iter().find(|m| m.name == rest) {
            (m.type_name, TopicKind::Meta)
        } else if rest.starts_with("ack/") {
            (schema::ACK, TopicKind::Ack)
        } else if is_command_topic(topic) {
            (schema::UNLISTED, TopicKind::Command)
        } else {
            (schema::UNLISTED, TopicKind::Unlisted)
        };
        Channel {
            topic: topic.to_string(),
            schema_name: schema_name.to_string(),
            qos,
            retain,
            kind,
        }
    }
}

#[cfg(test)]
mod tests;
