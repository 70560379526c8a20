//! The actuator safety layer, shared by every protocol: the check order of DESIGN.md §5
//! (size and depth → type → finite → limits → max age → max rate → e-stop), the deadman,
//! and the safe values. Pure state driven by the caller's clock, so every rule is tested
//! without I/O. [`supervisor`] runs these for a whole robot, with the e-stop, broker loss,
//! safe-write retries and shutdown; [`render`] turns a checked message into a device write.

pub mod decode;
pub mod events;
pub mod render;
pub mod supervisor;

use crate::config::CommandSpec;
use crate::messages::{Message, Scalar, Time};
use crate::protocols::can::CanWrite;
use crate::spec::OutOfRange;
pub use decode::{decode_command, DecodeError, DecodedCommand, Payload};
pub use render::RenderError;
use std::time::Duration;
pub use supervisor::Supervisor;
use tokio::time::Instant;

/// What to do with a command.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Write this (possibly clamped) message; `applied` lists the values after clamping.
    Apply {
        message: Message,
        applied: Vec<(String, Scalar)>,
    },
    Reject(String),
}

/// One actuator's safety state.
#[derive(Debug)]
pub struct Actuator {
    pub spec: CommandSpec,
    last_accepted: Option<Instant>,
    /// The deadman deadline while armed; cleared once the safe values were written.
    deadline: Option<Instant>,
}

impl Actuator {
    pub fn new(spec: CommandSpec) -> Actuator {
        Actuator {
            spec,
            last_accepted: None,
            deadline: None,
        }
    }

    /// The message that puts the actuator in its safe state.
    pub fn safe_message(&self) -> Message {
        let mut m = self.spec.msg_type.new_message();
        for (path, value) in &self.spec.safe {
            // Validated against the type when the robot file was loaded.
            let _ = m.set_path(path, value);
        }
        m
    }

    /// Runs every check after decoding. `wall` is the UTC clock for the age check; `now`
    /// the monotonic clock for rate and deadman.
    pub fn check(
        &mut self,
        cmd: &DecodedCommand,
        now: Instant,
        wall: Time,
        estop: bool,
    ) -> Verdict {
        let mut message = cmd.message.clone();
        for l in &self.spec.limits {
            // A limited field must be a number: a string, a bool or a missing `map` key
            // would otherwise slip past its limits to the device.
            let v = match message.get_path(&l.path) {
                Some(Scalar::Int(i)) => i as f64,
                Some(Scalar::Float(f)) if f.is_finite() => f,
                Some(other) => {
                    return Verdict::Reject(format!(
                        "{} = `{other}` is not a number; it has limits",
                        l.path
                    ))
                }
                None => return Verdict::Reject(format!("{} is missing; it has limits", l.path)),
            };
            if v < l.min || v > l.max {
                match self.spec.out_of_range {
                    OutOfRange::Reject => {
                        return Verdict::Reject(format!(
                            "{} = {v} is outside the limits [{}, {}]",
                            l.path, l.min, l.max
                        ))
                    }
                    OutOfRange::Clamp => {
                        // A field that cannot take the clamped value (an integer field with
                        // fractional limits) is refused: the original must never go out.
                        let c = v.clamp(l.min, l.max);
                        if let Err(e) = message.set_path(&l.path, &Scalar::Float(c)) {
                            return Verdict::Reject(format!(
                                "{} = {v} is outside the limits [{}, {}] and cannot be clamped to {c}: {e}",
                                l.path, l.min, l.max
                            ));
                        }
                    }
                }
            }
        }
        if let (Some(max_age), Some(stamp)) = (self.spec.max_age, cmd.stamp) {
            let age = wall.as_secs_f64() - stamp.as_secs_f64();
            if age > max_age.as_secs_f64() {
                return Verdict::Reject(format!(
                    "stale: stamped {:.0} ms ago, max_age_ms is {}",
                    age * 1000.0,
                    max_age.as_millis()
                ));
            }
            if -age > max_age.as_secs_f64() {
                return Verdict::Reject(format!(
                    "stamped {:.0} ms in the future; check the sender's clock",
                    -age * 1000.0
                ));
            }
        }
        if let (Some(min), Some(last)) = (self.spec.min_interval, self.last_accepted) {
            if now.saturating_duration_since(last) < min {
                return Verdict::Reject(format!(
                    "too fast: max_rate_hz allows one command every {:.1} ms",
                    min.as_secs_f64() * 1000.0
                ));
            }
        }
        if estop {
            return Verdict::Reject("estop".into());
        }
        let applied = self.applied(&message);
        Verdict::Apply { message, applied }
    }

    /// Call after the accepted command was written: arms the deadman.
    pub fn accepted(&mut self, now: Instant) {
        self.last_accepted = Some(now);
        self.deadline = self.spec.timeout.map(|t| now + t);
    }

    /// The fields a write carries (the template's, or the register writes'), after clamping.
    pub fn applied(&self, message: &Message) -> Vec<(String, Scalar)> {
        let paths: Vec<&str> = match &self.spec.render {
            crate::config::CommandRender::Template(t) => t.paths().collect(),
            crate::config::CommandRender::Modbus(ws) => {
                ws.iter().map(|w| w.field.as_str()).collect()
            }
            crate::config::CommandRender::Can(CanWrite::Message { signals, .. }) => {
                signals.iter().map(|(_, p)| p.as_str()).collect()
            }
            crate::config::CommandRender::Can(CanWrite::Raw { .. }) => {
                vec!["id", "is_extended", "dlc", "data"]
            }
            crate::config::CommandRender::Dynamixel(_) => vec!["name", "position", "velocity"],
        };
        let mut out: Vec<(String, Scalar)> = Vec::new();
        for p in paths {
            if out.iter().any(|(q, _)| q == p) {
                continue;
            }
            if let Some(v) = message.get_path(p) {
                out.push((p.to_string(), v));
            }
        }
        out
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// True when the deadman is due: the caller writes the safe values, once.
    pub fn deadman_due(&mut self, now: Instant) -> bool {
        if self.deadline.is_some_and(|d| now >= d) {
            self.deadline = None;
            return true;
        }
        false
    }

    /// After a safe write for another reason (e-stop, shutdown, link loss), the deadman
    /// has nothing left to do until the next accepted command.
    pub fn disarm(&mut self) {
        self.deadline = None;
    }

    /// How long the broker may be gone before this actuator goes safe.
    pub fn broker_grace(&self) -> Duration {
        self.spec.timeout.unwrap_or(Duration::from_secs(1))
    }
}

/// `[("linear.x", 0.5)]` → `{"linear": {"x": 0.5}}`, for acks.
pub fn nest(fields: &[(String, Scalar)]) -> rmpv::Value {
    fn insert(map: &mut Vec<(rmpv::Value, rmpv::Value)>, path: &str, v: &Scalar) {
        let (head, rest) = crate::messages::fields::split_path(path);
        let pos = map.iter().position(|(k, _)| k.as_str() == Some(head));
        if rest.is_empty() {
            let value = match v {
                Scalar::Int(i) => rmpv::Value::from(*i),
                Scalar::Float(f) => rmpv::Value::from(*f),
                Scalar::Bool(b) => rmpv::Value::from(*b),
                Scalar::Str(s) => rmpv::Value::from(s.as_str()),
            };
            match pos {
                Some(i) => map[i].1 = value,
                None => map.push((rmpv::Value::from(head), value)),
            }
            return;
        }
        let i = match pos {
            Some(i) => i,
            None => {
                map.push((rmpv::Value::from(head), rmpv::Value::Map(Vec::new())));
                map.len() - 1
            }
        };
        if let rmpv::Value::Map(inner) = &mut map[i].1 {
            insert(inner, rest.trim_start_matches('.'), v);
        }
    }
    let mut root = Vec::new();
    for (p, v) in fields {
        insert(&mut root, p, v);
    }
    rmpv::Value::Map(root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CommandRender, Limit};
    use crate::messages::MessageType;
    use crate::protocols::lines::Template;

    fn spec(out_of_range: OutOfRange) -> CommandSpec {
        CommandSpec {
            actuator: "drive".into(),
            msg_type: MessageType::Twist,
            render: CommandRender::Template(
                Template::parse("D {linear.x:.3} {angular.z:.3}").unwrap(),
            ),
            limits: vec![
                Limit {
                    path: "linear.x".into(),
                    min: -1.0,
                    max: 1.0,
                },
                Limit {
                    path: "angular.z".into(),
                    min: -2.0,
                    max: 2.0,
                },
            ],
            out_of_range,
            timeout: Some(Duration::from_millis(500)),
            safe: vec![
                ("linear.x".into(), Scalar::Float(0.0)),
                ("angular.z".into(), Scalar::Float(0.0)),
            ],
            min_interval: Some(Duration::from_millis(20)),
            max_age: Some(Duration::from_millis(250)),
        }
    }

    fn twist(x: f64, z: f64, stamp: Option<Time>) -> DecodedCommand {
        let mut m = MessageType::Twist.new_message();
        m.set_path("linear.x", &Scalar::Float(x)).unwrap();
        m.set_path("angular.z", &Scalar::Float(z)).unwrap();
        DecodedCommand {
            id: rmpv::Value::Nil,
            message: m,
            stamp,
        }
    }

    const WALL: Time = Time {
        sec: 1000,
        nanosec: 0,
    };

    #[test]
    fn in_range_commands_apply_with_their_values() {
        let mut a = Actuator::new(spec(OutOfRange::Reject));
        let v = a.check(&twist(0.5, 0.1, None), Instant::now(), WALL, false);
        let Verdict::Apply { applied, .. } = v else {
            panic!("{v:?}")
        };
        assert_eq!(
            applied,
            vec![
                ("linear.x".into(), Scalar::Float(0.5)),
                ("angular.z".into(), Scalar::Float(0.1))
            ]
        );
    }

    #[test]
    fn out_of_range_is_rejected_or_clamped_as_configured() {
        let mut a = Actuator::new(spec(OutOfRange::Reject));
        assert_eq!(
            a.check(&twist(1.5, 0.0, None), Instant::now(), WALL, false),
            Verdict::Reject("linear.x = 1.5 is outside the limits [-1, 1]".into())
        );
        let mut a = Actuator::new(spec(OutOfRange::Clamp));
        let Verdict::Apply { message, applied } =
            a.check(&twist(1.5, -3.0, None), Instant::now(), WALL, false)
        else {
            panic!()
        };
        assert_eq!(message.get_path("linear.x"), Some(Scalar::Float(1.0)));
        assert_eq!(applied[1], ("angular.z".into(), Scalar::Float(-2.0)));
    }

    #[test]
    fn stale_and_future_stamps_are_rejected() {
        let mut a = Actuator::new(spec(OutOfRange::Reject));
        let stale = Time {
            sec: 999,
            nanosec: 500_000_000,
        };
        let v = a.check(&twist(0.1, 0.0, Some(stale)), Instant::now(), WALL, false);
        assert!(
            matches!(v, Verdict::Reject(ref r) if r.starts_with("stale")),
            "{v:?}"
        );
        let future = Time {
            sec: 1001,
            nanosec: 0,
        };
        let v = a.check(&twist(0.1, 0.0, Some(future)), Instant::now(), WALL, false);
        assert!(
            matches!(v, Verdict::Reject(ref r) if r.contains("future")),
            "{v:?}"
        );
        let fresh = Time {
            sec: 999,
            nanosec: 900_000_000,
        };
        assert!(matches!(
            a.check(&twist(0.1, 0.0, Some(fresh)), Instant::now(), WALL, false),
            Verdict::Apply { .. }
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn commands_faster_than_max_rate_are_rejected() {
        let mut a = Actuator::new(spec(OutOfRange::Reject));
        let t0 = Instant::now();
        assert!(matches!(
            a.check(&twist(0.1, 0.0, None), t0, WALL, false),
            Verdict::Apply { .. }
        ));
        a.accepted(t0);
        tokio::time::advance(Duration::from_millis(10)).await;
        let v = a.check(&twist(0.1, 0.0, None), Instant::now(), WALL, false);
        assert!(
            matches!(v, Verdict::Reject(ref r) if r.starts_with("too fast")),
            "{v:?}"
        );
        tokio::time::advance(Duration::from_millis(15)).await;
        assert!(matches!(
            a.check(&twist(0.1, 0.0, None), Instant::now(), WALL, false),
            Verdict::Apply { .. }
        ));
    }

    #[test]
    fn a_value_that_cannot_be_clamped_into_its_field_is_rejected_not_passed_through() {
        // An integer field whose limits are fractional: the clamped value does not fit it,
        // and the out-of-range original must not go out instead.
        let mut spec = spec(OutOfRange::Clamp);
        spec.msg_type = MessageType::Frame;
        spec.limits = vec![Limit {
            path: "id".into(),
            min: 768.0,
            max: 1023.5,
        }];
        let mut a = Actuator::new(spec);
        let mut m = MessageType::Frame.new_message();
        m.set_path("id", &Scalar::Int(0x500)).unwrap();
        let cmd = DecodedCommand {
            id: rmpv::Value::Nil,
            message: m,
            stamp: None,
        };
        let v = a.check(&cmd, Instant::now(), WALL, false);
        assert!(
            matches!(v, Verdict::Reject(ref r) if r.contains("cannot be clamped")),
            "{v:?}"
        );
    }

    #[test]
    fn limited_fields_that_are_not_numbers_are_rejected() {
        let mut spec = spec(OutOfRange::Clamp);
        spec.msg_type = MessageType::Map;
        spec.limits = vec![Limit {
            path: "speed".into(),
            min: -1.0,
            max: 1.0,
        }];
        let mut a = Actuator::new(spec);
        let mut m = crate::messages::MapMessage::default();
        m.insert("speed", Scalar::Str("0\nM 99".into()));
        let cmd = DecodedCommand {
            id: rmpv::Value::Nil,
            message: Message::Map(m),
            stamp: None,
        };
        let v = a.check(&cmd, Instant::now(), WALL, false);
        assert!(
            matches!(v, Verdict::Reject(ref r) if r.contains("not a number")),
            "{v:?}"
        );
        let cmd = DecodedCommand {
            id: rmpv::Value::Nil,
            message: Message::Map(crate::messages::MapMessage::default()),
            stamp: None,
        };
        let v = a.check(&cmd, Instant::now(), WALL, false);
        assert!(
            matches!(v, Verdict::Reject(ref r) if r.contains("missing")),
            "{v:?}"
        );
    }

    #[test]
    fn estop_rejects_otherwise_valid_commands() {
        let mut a = Actuator::new(spec(OutOfRange::Reject));
        assert_eq!(
            a.check(&twist(0.1, 0.0, None), Instant::now(), WALL, true),
            Verdict::Reject("estop".into())
        );
    }

    #[test]
    fn limits_are_checked_before_estop_as_the_order_says() {
        let mut a = Actuator::new(spec(OutOfRange::Reject));
        let v = a.check(&twist(9.0, 0.0, None), Instant::now(), WALL, true);
        assert!(matches!(v, Verdict::Reject(ref r) if r.contains("outside")));
    }

    #[tokio::test(start_paused = true)]
    async fn deadman_fires_once_after_the_timeout_and_rearms_on_the_next_command() {
        let mut a = Actuator::new(spec(OutOfRange::Reject));
        assert!(
            !a.deadman_due(Instant::now()),
            "not armed before any command"
        );
        a.accepted(Instant::now());
        tokio::time::advance(Duration::from_millis(499)).await;
        assert!(!a.deadman_due(Instant::now()));
        tokio::time::advance(Duration::from_millis(2)).await;
        assert!(a.deadman_due(Instant::now()));
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(!a.deadman_due(Instant::now()), "written once");
        a.accepted(Instant::now());
        tokio::time::advance(Duration::from_millis(501)).await;
        assert!(a.deadman_due(Instant::now()));
    }

    #[test]
    fn safe_message_carries_the_safe_values() {
        let mut s = spec(OutOfRange::Reject);
        s.safe[0].1 = Scalar::Float(-0.25);
        let a = Actuator::new(s);
        assert_eq!(
            a.safe_message().get_path("linear.x"),
            Some(Scalar::Float(-0.25))
        );
    }

    #[test]
    fn applied_values_nest_by_path() {
        let v = nest(&[
            ("linear.x".into(), Scalar::Float(0.5)),
            ("linear.y".into(), Scalar::Int(1)),
            ("ok".into(), Scalar::Bool(true)),
        ]);
        let json = crate::fleet::json::to_json(&v);
        assert_eq!(
            json,
            serde_json::json!({"linear": {"x": 0.5, "y": 1}, "ok": true})
        );
    }
}
