//! The [`Checker`]: reads robot-file keys through serde and collects every problem with
//! the key path where it was found, so `botbus check` reports them all at once. Also the
//! checks shared by every protocol: names, message types, rates and field maps.

use crate::messages::MessageType;
use std::path::PathBuf;
use std::time::Duration;

/// One problem in a robot file: where, and what.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

/// First segments a sensor or actuator name may not take: the topics botbus itself uses.
pub const RESERVED_SEGMENTS: [&str; 5] = ["status", "catalog", "diagnostics", "cmd", "ack"];

/// Collects problems while validating one robot file.
#[derive(Debug, Default)]
pub struct Checker {
    pub problems: Vec<Problem>,
    /// The robot file's folder: relative device and DBC paths are read from there.
    pub base: PathBuf,
}

impl Checker {
    pub fn new(base: PathBuf) -> Checker {
        Checker {
            problems: Vec::new(),
            base,
        }
    }

    pub fn problem(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }

    /// Reads a TOML value through serde, recording where it failed.
    pub fn read<T: serde::de::DeserializeOwned>(
        &mut self,
        value: toml::Value,
        at: &str,
    ) -> Option<T> {
        match deserialize_at(value, at) {
            Ok(t) => Some(t),
            Err(p) => {
                self.problems.push(p);
                None
            }
        }
    }

    /// Reads each table of an array (`streams`, `commands`) on its own, so one bad entry
    /// does not hide the problems of the others.
    pub fn read_items<T: serde::de::DeserializeOwned>(
        &mut self,
        items: Vec<toml::Value>,
        at: &str,
    ) -> Vec<T> {
        items
            .into_iter()
            .enumerate()
            .filter_map(|(i, item)| self.read(item, &format!("{at}[{i}]")))
            .collect()
    }

    /// A device's own keys (`D`) and its `streams` (`S`) and `commands` (`C`) items, each
    /// item read on its own.
    pub fn read_device<D, S, C>(
        &mut self,
        keys: toml::Value,
        streams: Vec<toml::Value>,
        commands: Vec<toml::Value>,
        at: &str,
    ) -> (Option<D>, Vec<S>, Vec<C>)
    where
        D: serde::de::DeserializeOwned,
        S: serde::de::DeserializeOwned,
        C: serde::de::DeserializeOwned,
    {
        let device = self.read(keys, at);
        let streams = self.read_items(streams, &format!("{at}.streams"));
        let commands = self.read_items(commands, &format!("{at}.commands"));
        (device, streams, commands)
    }

    /// Checks a robot id, sensor or actuator name: `[A-Za-z0-9_-]` segments, joined by `/`
    /// where `segments` allows it, and no reserved first segment.
    pub fn check_name(&mut self, at: &str, name: &str, segments: bool) -> bool {
        if !valid_name(name, segments) {
            let what = if segments {
                "segments of letters, digits, `_` or `-`, joined by `/`"
            } else {
                "letters, digits, `_` or `-`"
            };
            self.problem(at, format!("`{name}` is not a valid name: use {what}"));
            return false;
        }
        let first = name.split('/').next().unwrap_or(name);
        if segments && RESERVED_SEGMENTS.contains(&first) {
            self.problem(
                at,
                format!(
                    "`{name}` starts with the reserved segment `{first}` (reserved: {})",
                    RESERVED_SEGMENTS.join(", ")
                ),
            );
            return false;
        }
        true
    }

    /// The message type named at `{at}.type`, if it is one of `allowed`.
    pub fn msg_type(
        &mut self,
        at: &str,
        name: &str,
        allowed: &[MessageType],
    ) -> Option<MessageType> {
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

    /// `timeout_ms`, how long to wait for a device's answer: `default_ms` when not given,
    /// never 0 (a poll that cannot be answered).
    pub fn answer_timeout(
        &mut self,
        at: &str,
        ms: Option<u64>,
        default_ms: u64,
    ) -> Option<Duration> {
        match ms.unwrap_or(default_ms) {
            0 => {
                self.problem(format!("{at}.timeout_ms"), "must be greater than 0");
                None
            }
            ms => Some(Duration::from_millis(ms)),
        }
    }

    /// `poll_hz` (0 < hz <= 1000) as the time between two polls. `try_`: a rate so small
    /// that its interval overflows a Duration is refused, not a panic.
    pub fn poll_interval(&mut self, at: &str, hz: f64) -> Option<Duration> {
        match hz {
            h if h.is_finite() && h > 0.0 && h <= 1000.0 => {
                Duration::try_from_secs_f64(1.0 / h).ok().or_else(|| {
                    self.problem(
                        format!("{at}.poll_hz"),
                        format!("{h} Hz is too slow to time"),
                    );
                    None
                })
            }
            h => {
                self.problem(
                    format!("{at}.poll_hz"),
                    format!("must be between 0 and 1000 Hz, not {h}"),
                );
                None
            }
        }
    }

    /// A `*_hz` key as the least time between two events; `Some(None)` when not given.
    pub fn rate(&mut self, at: &str, key: &str, hz: Option<f64>) -> Option<Option<Duration>> {
        // A rate so small that its interval overflows a Duration (found by fuzzing:
        // `max_rate_hz = 1e-308` panicked) is refused like any other bad rate.
        let interval = |h: f64| Duration::try_from_secs_f64(1.0 / h).ok();
        match hz {
            None => Some(None),
            Some(h) if h.is_finite() && h > 0.0 && h <= 1_000_000.0 && interval(h).is_some() => {
                Some(interval(h))
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

    /// A `fields` table (message field path → a name the device knows, e.g. a line key or
    /// a register), checked against the message type and `known`. `what` names the right
    /// side in messages ("line key", "register"); `unknown` gives the problem with a name
    /// the device does not have; `missing` is the hint when a typed (non-`map`) stream
    /// gives none. Returns the pairs and whether all were good.
    pub fn field_map(
        &mut self,
        at: &str,
        fields: toml::Table,
        t: Option<MessageType>,
        what: &str,
        unknown: impl Fn(&str) -> Option<String>,
        missing: &str,
    ) -> (Vec<(String, String)>, bool) {
        let mut ok = true;
        let mut pairs = Vec::new();
        let given = !fields.is_empty();
        let mut flat = Vec::new();
        flatten(&toml::Value::Table(fields), "", &mut flat);
        for (path, v) in flat {
            let fat = format!("{at}.fields.{path}");
            let Some(name) = v.as_str() else {
                self.problem(fat, format!("must be the name of a {what} (a string)"));
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
            if let Some(e) = unknown(name) {
                self.problem(fat, e);
                ok = false;
                continue;
            }
            pairs.push((path, name.to_string()));
        }
        if !given && t.is_some() && t != Some(MessageType::Map) {
            self.problem(format!("{at}.fields"), format!("missing: {missing}"));
            ok = false;
        }
        (pairs, ok)
    }
}

/// Reads a TOML value through serde, reporting where it failed.
pub fn deserialize_at<T: serde::de::DeserializeOwned>(
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

/// `idle_timeout_ms = 0` turns the idle check off.
pub fn idle(ms: u64) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(ms))
}

/// The types a device that speaks text or registers can read or write: all but raw CAN.
pub fn non_can_types() -> Vec<MessageType> {
    MessageType::ALL
        .into_iter()
        .filter(|t| *t != MessageType::Frame)
        .collect()
}

pub fn num(v: &toml::Value) -> Option<f64> {
    match v {
        toml::Value::Float(f) => Some(*f),
        toml::Value::Integer(i) => Some(*i as f64),
        _ => None,
    }
}

/// A TOML scalar as the text a device would send for it.
pub fn scalar_text(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Reads nested TOML tables as dotted paths: `{linear = {x = 1}}` → `("linear.x", 1)`.
pub fn flatten(v: &toml::Value, prefix: &str, out: &mut Vec<(String, toml::Value)>) {
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
    use crate::spec::StreamKeys;

    fn table(text: &str) -> toml::Table {
        text.parse().unwrap()
    }

    fn messages(ck: &Checker) -> Vec<String> {
        ck.problems
            .iter()
            .map(|p| format!("{}: {}", p.path, p.message))
            .collect()
    }

    #[test]
    fn a_field_map_keeps_good_pairs_and_reports_each_bad_one_at_its_path() {
        let mut ck = Checker::default();
        let fields = table("voltage = \"v\"\ncurrent = \"nope\"\ntemperature = 3\nbogus = \"v\"\n");
        let unknown = |k: &str| (k != "v").then(|| format!("no key `{k}`"));
        let (pairs, ok) = ck.field_map(
            "s",
            fields,
            Some(MessageType::BatteryState),
            "line key",
            unknown,
            "hint",
        );
        assert!(!ok);
        assert_eq!(pairs, vec![("voltage".to_string(), "v".to_string())]);
        assert_eq!(
            messages(&ck),
            vec![
                "s.fields.bogus: `bogus` is not a field of sensor_msgs/BatteryState",
                "s.fields.current: no key `nope`",
                "s.fields.temperature: must be the name of a line key (a string)",
            ]
        );
    }

    #[test]
    fn a_typed_stream_without_fields_is_told_how_to_map_them_but_a_map_needs_none() {
        let mut ck = Checker::default();
        let none = |_: &str| None;
        let (_, ok) = ck.field_map(
            "s",
            toml::Table::new(),
            Some(MessageType::Map),
            "x",
            none,
            "hint",
        );
        assert!(ok && ck.problems.is_empty());
        let (_, ok) = ck.field_map(
            "s",
            toml::Table::new(),
            Some(MessageType::Imu),
            "x",
            none,
            "map fields like so",
        );
        assert!(!ok);
        assert_eq!(messages(&ck), vec!["s.fields: missing: map fields like so"]);
    }

    #[test]
    fn names_may_not_take_a_reserved_first_segment_or_odd_characters() {
        let mut ck = Checker::default();
        assert!(ck.check_name("a", "arm/joint_1", true));
        assert!(!ck.check_name("b", "cmd/x", true));
        assert!(!ck.check_name("c", "arm/joint 1", true));
        assert!(!ck.check_name("d", "a/b", false));
        assert_eq!(ck.problems.len(), 3);
        assert!(ck.problems[0].message.contains("reserved segment `cmd`"));
        assert_eq!(ck.problems[2].path, "d");
    }

    #[test]
    fn shared_stream_keys_are_checked_and_the_device_frame_is_the_default() {
        let mut ck = Checker::default();
        let keys = |sensor: &str, qos, hz| StreamKeys {
            sensor: sensor.into(),
            qos,
            retain: false,
            max_rate_hz: hz,
            frame_id: None,
        };
        let spec = ck
            .stream(
                "s",
                keys("imu", 1, Some(50.0)),
                Some(MessageType::Imu),
                "base",
            )
            .unwrap();
        assert_eq!(spec.frame_id, "base");
        assert_eq!(spec.min_interval, Some(Duration::from_millis(20)));
        assert!(ck
            .stream("s", keys("imu", 3, Some(-1.0)), Some(MessageType::Imu), "b")
            .is_none());
        assert_eq!(
            messages(&ck),
            vec![
                "s.qos: must be 0, 1 or 2, not 3",
                "s.max_rate_hz: must be a positive number of hertz, not -1",
            ]
        );
    }

    /// Found by fuzzing: a rate whose interval overflows a Duration panicked.
    #[test]
    fn a_rate_too_small_to_time_is_a_problem_not_a_panic() {
        let mut ck = Checker::default();
        assert_eq!(ck.rate("s", "max_rate_hz", Some(1.5e-308)), None);
        assert_eq!(
            ck.rate("s", "max_rate_hz", Some(1e-6)),
            Some(Some(Duration::from_secs(1_000_000)))
        );
        assert_eq!(ck.problems.len(), 1);
    }

    #[test]
    fn serde_problems_carry_the_full_key_path() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Inner {
            baud: u32,
        }
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Outer {
            serial: Inner,
        }
        let mut ck = Checker::default();
        let v = toml::Value::Table(table("serial = { baudd = 1 }"));
        assert!(ck.read::<Outer>(v, "devices[2]").is_none());
        assert_eq!(
            messages(&ck),
            vec!["devices[2].serial.baudd: unknown field `baudd`, expected `baud`"]
        );
    }
}
