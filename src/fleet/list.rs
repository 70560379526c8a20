//! `botbus topic list` and `botbus robots`: every robot seen (retained status), and every
//! topic with its type, QoS and rate, from the retained catalogs and the traffic itself.

use super::client::{rest_of, robot_of};
use crate::meta::{Catalog, Status, ACK_TYPE, DIAGNOSTICS_TOPIC, META_TOPICS};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, Serialize)]
pub struct RobotRow {
    pub robot: String,
    pub state: String,
    pub boot: u64,
    pub version: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct TopicRow {
    pub topic: String,
    pub robot: String,
    /// The message type, or `?` when no catalog names the topic.
    #[serde(rename = "type")]
    pub msg_type: String,
    pub qos: Option<u8>,
    /// `stream`, `command`, `ack`, `meta`, or `unlisted` (seen but in no catalog).
    pub kind: String,
    /// Messages per second seen while listening.
    pub rate_hz: Option<f64>,
    /// The catalog's `max_rate_hz`.
    pub max_rate_hz: Option<f64>,
}

/// What a short listen on `<prefix>/#` found.
#[derive(Debug, Default)]
pub struct Listing {
    statuses: BTreeMap<String, Status>,
    catalogs: BTreeMap<String, Catalog>,
    counts: BTreeMap<String, u64>,
}

impl Listing {
    /// Takes one message; `retained` ones name a topic but say nothing about its rate.
    pub fn observe(&mut self, prefix: &str, topic: &str, payload: &[u8], retained: bool) {
        let Some(robot) = robot_of(prefix, topic) else {
            return;
        };
        // `robot/<id>` alone has no rest; it is still traffic worth listing.
        let rest = rest_of(prefix, robot, topic);
        match rest {
            "status" => {
                if let Ok(s) = rmp_serde::from_slice::<Status>(payload) {
                    self.statuses.insert(robot.to_string(), s);
                }
            }
            "catalog" => {
                if let Ok(c) = rmp_serde::from_slice::<Catalog>(payload) {
                    self.catalogs.insert(robot.to_string(), c);
                }
            }
            _ => {
                let n = self.counts.entry(topic.to_string()).or_default();
                if !retained {
                    *n += 1;
                }
            }
        }
    }

    pub fn robots(&self) -> Vec<RobotRow> {
        let mut ids: Vec<&String> = self.statuses.keys().chain(self.catalogs.keys()).collect();
        ids.sort();
        ids.dedup();
        ids.into_iter()
            .map(|id| {
                let s = self.statuses.get(id);
                RobotRow {
                    robot: id.clone(),
                    state: s.map_or("unknown".into(), |s| s.state.clone()),
                    boot: s
                        .map(|s| s.boot)
                        .or(self.catalogs.get(id).map(|c| c.boot))
                        .unwrap_or(0),
                    version: s.map_or(String::new(), |s| s.version.clone()),
                }
            })
            .collect()
    }

    pub fn topics(&self, prefix: &str, window: Duration) -> Vec<TopicRow> {
        let secs = window.as_secs_f64().max(1e-3);
        let rate = |t: &str| {
            self.counts
                .get(t)
                .filter(|n| **n > 0)
                .map(|n| *n as f64 / secs)
        };
        let mut rows: BTreeMap<String, TopicRow> = BTreeMap::new();
        for (robot, c) in &self.catalogs {
            for s in &c.streams {
                rows.insert(
                    s.topic.clone(),
                    TopicRow {
                        topic: s.topic.clone(),
                        robot: robot.clone(),
                        msg_type: s.msg_type.clone(),
                        qos: Some(s.qos),
                        kind: "stream".into(),
                        rate_hz: rate(&s.topic),
                        max_rate_hz: s.max_rate_hz,
                    },
                );
            }
            for cmd in &c.commands {
                rows.insert(
                    cmd.topic.clone(),
                    TopicRow {
                        topic: cmd.topic.clone(),
                        robot: robot.clone(),
                        msg_type: cmd.msg_type.clone(),
                        qos: Some(1),
                        kind: "command".into(),
                        rate_hz: rate(&cmd.topic),
                        max_rate_hz: None,
                    },
                );
            }
            let base = format!("{prefix}/{robot}");
            for m in META_TOPICS {
                let t = format!("{base}/{}", m.name);
                rows.insert(
                    t.clone(),
                    TopicRow {
                        topic: t.clone(),
                        robot: robot.clone(),
                        msg_type: m.type_name.into(),
                        qos: Some(m.qos),
                        kind: "meta".into(),
                        rate_hz: rate(&t),
                        max_rate_hz: None,
                    },
                );
            }
        }
        for t in self.counts.keys() {
            if rows.contains_key(t) {
                continue;
            }
            let robot = robot_of(prefix, t).unwrap_or("").to_string();
            let rest = rest_of(prefix, &robot, t);
            let known = self.catalogs.contains_key(&robot);
            let (kind, ty) = if rest.starts_with("ack/") && known {
                ("ack", ACK_TYPE)
            } else if rest == DIAGNOSTICS_TOPIC.name {
                ("meta", DIAGNOSTICS_TOPIC.type_name)
            } else {
                ("unlisted", "?")
            };
            rows.insert(
                t.clone(),
                TopicRow {
                    topic: t.clone(),
                    robot,
                    msg_type: ty.into(),
                    qos: None,
                    kind: kind.into(),
                    rate_hz: rate(t),
                    max_rate_hz: None,
                },
            );
        }
        rows.into_values().collect()
    }
}

/// The robot table.
pub fn render_robots(robots: &[RobotRow]) -> String {
    let mut s = format!(
        "{:<24} {:<8} {:>6}  {}\n",
        "ROBOT", "STATE", "BOOT", "VERSION"
    );
    for r in robots {
        s.push_str(&format!(
            "{:<24} {:<8} {:>6}  {}\n",
            r.robot, r.state, r.boot, r.version
        ));
    }
    if robots.is_empty() {
        s.push_str("(no robots seen)\n");
    }
    s
}

/// The topic table; unlisted topics are marked.
pub fn render_topics(topics: &[TopicRow]) -> String {
    let mut s = format!(
        "{:<44} {:<26} {:>3}  {:<9}  {}\n",
        "TOPIC", "TYPE", "QOS", "RATE", "NOTE"
    );
    for t in topics {
        let qos = t.qos.map_or("-".to_string(), |q| q.to_string());
        let rate = t.rate_hz.map_or("-".to_string(), |r| format!("{r:.1} Hz"));
        let note = match (t.kind.as_str(), t.max_rate_hz) {
            ("unlisted", _) => "not in any catalog".to_string(),
            ("stream", Some(m)) => format!("max {m:.1} Hz"),
            ("command", _) => "command".to_string(),
            (k, _) if k != "stream" => k.to_string(),
            _ => String::new(),
        };
        let line = format!(
            "{:<44} {:<26} {:>3}  {:<9}  {}",
            t.topic, t.msg_type, qos, rate, note
        );
        s.push_str(line.trim_end());
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::{CommandEntry, StreamEntry};

    #[test]
    fn robots_and_topics_come_from_status_catalog_and_traffic() {
        let mut l = Listing::default();
        let status = Status {
            state: "online".into(),
            boot: 3,
            version: "0.1.0".into(),
        };
        l.observe(
            "robot",
            "robot/r1/status",
            &rmp_serde::to_vec_named(&status).unwrap(),
            true,
        );
        let cat = Catalog {
            robot: "r1".into(),
            boot: 3,
            streams: vec![StreamEntry {
                topic: "robot/r1/gps/fix".into(),
                msg_type: "sensor_msgs/NavSatFix".into(),
                qos: 0,
                retain: false,
                device: "gps".into(),
                max_rate_hz: Some(5.0),
            }],
            commands: vec![CommandEntry {
                topic: "robot/r1/cmd/drive".into(),
                ack_topic: "robot/r1/ack/drive".into(),
                msg_type: "geometry_msgs/Twist".into(),
                limits: Default::default(),
                timeout_ms: Some(500),
                device: "base".into(),
                out_of_range: "reject".into(),
                template: None,
            }],
        };
        l.observe(
            "robot",
            "robot/r1/catalog",
            &rmp_serde::to_vec_named(&cat).unwrap(),
            true,
        );
        for _ in 0..10 {
            l.observe("robot", "robot/r1/gps/fix", b"x", false);
        }
        l.observe("robot", "robot/r9/mystery", b"x", true);
        l.observe("robot", "robot/foo", b"hi", false);
        l.observe("robot", "robot", b"hi", false);
        let robots = l.robots();
        assert_eq!(robots.len(), 1);
        assert_eq!((robots[0].state.as_str(), robots[0].boot), ("online", 3));
        let topics = l.topics("robot", Duration::from_secs(2));
        let fix = topics
            .iter()
            .find(|t| t.topic == "robot/r1/gps/fix")
            .unwrap();
        assert_eq!(fix.rate_hz, Some(5.0));
        assert_eq!(fix.msg_type, "sensor_msgs/NavSatFix");
        let odd = topics
            .iter()
            .find(|t| t.topic == "robot/r9/mystery")
            .unwrap();
        assert_eq!(odd.kind, "unlisted");
        assert_eq!(odd.rate_hz, None, "a retained message is not traffic");
        let table = render_topics(&topics);
        assert!(table.contains("not in any catalog"), "{table}");
        assert!(table.contains("robot/r1/cmd/drive"), "{table}");
    }
}
