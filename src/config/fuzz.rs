//! Fuzz target for robot files: the shipped demo robot and every robot file in the README,
//! with bytes flipped, cut, repeated and spliced, and with their TOML trees edited (a value
//! replaced by one of another type or an extreme, a key removed, an unknown or known key
//! added). Validation never panics: it gives a robot or problems, each one line naming
//! what is wrong; and what it accepts is sane (limits finite and ordered, safe values
//! inside them, rates positive).

use super::Robot;
use crate::fuzzing::{config, mutated};
use crate::messages::Scalar;
use proptest::prelude::*;
use proptest::sample::Index;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// robots/demo.toml and the README's robot files (given an `id` where they have none).
fn seeds() -> Arc<Vec<Vec<u8>>> {
    static SEEDS: OnceLock<Arc<Vec<Vec<u8>>>> = OnceLock::new();
    SEEDS
        .get_or_init(|| {
            let root = env!("CARGO_MANIFEST_DIR");
            let demo = std::fs::read(format!("{root}/robots/demo.toml")).expect("demo robot");
            let readme = std::fs::read_to_string(format!("{root}/README.md")).expect("README");
            let mut v = vec![demo];
            for block in readme.split("```toml").skip(1) {
                let text = block.split("```").next().unwrap_or_default();
                if text.contains("[[devices]]") {
                    let has_id = text.starts_with("id = ") || text.contains("\nid = ");
                    let id = if has_id { "" } else { "id = \"r1\"\n" };
                    v.push(format!("{id}{text}").into_bytes());
                }
            }
            Arc::new(v)
        })
        .clone()
}

/// Where the fuzzed files "live": beside robots/comma_body.dbc, which they name.
fn path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("robots/fuzz.toml")
}

/// Validates `text`: a robot whose commands are sane, or problems that each say what.
fn check(text: &str) -> Result<(), TestCaseError> {
    match Robot::from_str(text, &path()) {
        Ok(robot) => {
            for (_, c) in robot.commands() {
                for l in &c.limits {
                    prop_assert!(
                        l.min.is_finite() && l.max.is_finite() && l.min <= l.max,
                        "{}: {:?}",
                        c.actuator,
                        l
                    );
                }
                // What an actuator is left at must pass its own limits.
                for (p, v) in &c.safe {
                    let Some(l) = c.limits.iter().find(|l| &l.path == p) else {
                        continue;
                    };
                    let x = match v {
                        Scalar::Int(i) => *i as f64,
                        Scalar::Float(f) => *f,
                        other => {
                            return Err(TestCaseError::fail(format!(
                                "{}: safe {p} = {other:?} has limits",
                                c.actuator
                            )))
                        }
                    };
                    prop_assert!(
                        x >= l.min && x <= l.max,
                        "{}: safe {} = {} outside {:?}",
                        c.actuator,
                        p,
                        x,
                        l
                    );
                }
                prop_assert!(
                    c.min_interval.is_none_or(|d| !d.is_zero()),
                    "{}",
                    c.actuator
                );
            }
            for (_, s) in robot.streams() {
                prop_assert!(s.min_interval.is_none_or(|d| !d.is_zero()), "{}", s.sensor);
            }
        }
        Err(e) => {
            prop_assert!(!e.problems.is_empty(), "an error without problems");
            for p in &e.problems {
                prop_assert!(
                    !p.message.trim().is_empty(),
                    "an empty problem at {}",
                    p.path
                );
            }
            // `botbus check` prints one line per problem, whatever the file quotes.
            let shown = e.to_string();
            prop_assert_eq!(shown.lines().count(), e.problems.len(), "{}", shown);
            prop_assert!(!shown.contains('\r'), "{}", shown);
        }
    }
    Ok(())
}

/// A value of any TOML type, or an extreme of one.
fn value() -> impl Strategy<Value = toml::Value> {
    use toml::Value as V;
    prop_oneof![
        any::<String>().prop_map(V::String),
        prop::sample::select(vec![
            "",
            "GGA",
            "map",
            "sensor_msgs/Imu",
            "std_msgs/Float64",
            "holding",
            "coil",
            "f32",
            "clamp",
            "kv",
            "csv",
            "json",
            "slcan",
            "nmea",
            "lines",
            "modbus",
            "socketcan",
            "dynamixel",
            "a/../b",
            "status/x",
            "#",
            "+",
            "robot/r1",
            "comma_body.dbc",
            "/dev/null",
            "no_such.dbc",
            "{linear.x:.3}",
            "{",
            "}"
        ])
        .prop_map(|s| V::String(s.into())),
        "[a-z_./]{1,12}".prop_map(V::String),
        any::<i64>().prop_map(V::Integer),
        prop::sample::select(vec![
            0i64,
            -1,
            1,
            2,
            3,
            7,
            255,
            256,
            65_535,
            65_536,
            i64::MAX,
            i64::MIN
        ])
        .prop_map(V::Integer),
        any::<f64>().prop_map(V::Float),
        prop::sample::select(vec![
            f64::NAN,
            f64::INFINITY,
            -f64::INFINITY,
            0.0,
            -0.0,
            1e-300,
            1e300,
            -1.0
        ])
        .prop_map(V::Float),
        any::<bool>().prop_map(V::Boolean),
        Just(V::Array(Vec::new())),
        Just(V::Array(vec![V::Float(1.0), V::Float(-1.0)])),
        Just(V::Array(vec![V::Integer(1), V::String("a".into())])),
        Just(V::Table(toml::Table::new())),
    ]
}

#[derive(Debug, Clone)]
enum Edit {
    Replace(Index, toml::Value),
    Remove(Index),
    /// Adds `key` (known to some table, or not) to a table.
    Add(Index, String, toml::Value),
}

fn edit() -> impl Strategy<Value = Edit> {
    let key = prop_oneof![
        prop::sample::select(vec![
            "id",
            "name",
            "protocol",
            "serial",
            "tcp",
            "interface",
            "format",
            "columns",
            "delimiter",
            "bitrate",
            "dbc",
            "timeout_ms",
            "idle_timeout_ms",
            "frame_id",
            "sensor",
            "type",
            "source",
            "when",
            "fields",
            "qos",
            "retain",
            "max_rate_hz",
            "poll_hz",
            "registers",
            "can_message",
            "ids",
            "actuator",
            "template",
            "limits",
            "out_of_range",
            "safe",
            "max_age_ms",
            "writes",
            "signals",
            "scale",
            "offset",
            "word_order",
            "unit",
            "address",
            "kind",
            "path",
            "baud",
            "parity",
            "devices",
            "streams",
            "commands"
        ])
        .prop_map(String::from),
        "[a-z_]{1,8}",
    ];
    prop_oneof![
        4 => (any::<Index>(), value()).prop_map(|(i, v)| Edit::Replace(i, v)),
        2 => any::<Index>().prop_map(Edit::Remove),
        2 => (any::<Index>(), key, value()).prop_map(|(i, k, v)| Edit::Add(i, k, v)),
    ]
}

/// A step from a table or an array to one of its values.
#[derive(Debug, Clone)]
enum Step {
    Key(String),
    At(usize),
}

/// The path of every value under `v`.
fn paths(v: &toml::Value, here: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    out.push(here.clone());
    match v {
        toml::Value::Table(t) => {
            for (k, x) in t {
                here.push(Step::Key(k.clone()));
                paths(x, here, out);
                here.pop();
            }
        }
        toml::Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                here.push(Step::At(i));
                paths(x, here, out);
                here.pop();
            }
        }
        _ => {}
    }
}

fn at_mut<'a>(v: &'a mut toml::Value, path: &[Step]) -> Option<&'a mut toml::Value> {
    let Some((first, rest)) = path.split_first() else {
        return Some(v);
    };
    let next = match (v, first) {
        (toml::Value::Table(t), Step::Key(k)) => t.get_mut(k)?,
        (toml::Value::Array(a), Step::At(i)) => a.get_mut(*i)?,
        _ => return None,
    };
    at_mut(next, rest)
}

/// Applies `edits` to the TOML tree of `text`.
fn edited(text: &[u8], edits: &[Edit]) -> Option<String> {
    let mut v = toml::Value::Table(
        std::str::from_utf8(text)
            .ok()?
            .parse::<toml::Table>()
            .ok()?,
    );
    for e in edits {
        let mut all = Vec::new();
        paths(&v, &mut Vec::new(), &mut all);
        let pick = |i: &Index| all[i.index(all.len())].clone();
        match e {
            Edit::Replace(i, x) => {
                let p = pick(i);
                if p.is_empty() {
                    continue;
                }
                if let Some(slot) = at_mut(&mut v, &p) {
                    *slot = x.clone();
                }
            }
            Edit::Remove(i) => {
                let p = pick(i);
                let Some((last, parent)) = p.split_last() else {
                    continue;
                };
                match (at_mut(&mut v, parent), last) {
                    (Some(toml::Value::Table(t)), Step::Key(k)) => {
                        t.remove(k);
                    }
                    (Some(toml::Value::Array(a)), Step::At(n)) if *n < a.len() => {
                        a.remove(*n);
                    }
                    _ => {}
                }
            }
            Edit::Add(i, k, x) => {
                if let Some(toml::Value::Table(t)) = at_mut(&mut v, &pick(i)) {
                    t.insert(k.clone(), x.clone());
                }
            }
        }
    }
    toml::to_string(&v).ok()
}

proptest! {
    #![proptest_config(config(1_500))]

    /// Real robot files with bytes flipped, cut, repeated or spliced.
    #[test]
    fn mutated_robot_files_validate_or_list_their_problems(text in mutated(seeds())) {
        check(&String::from_utf8_lossy(&text))?;
    }

    /// Robot files with values of the wrong type or at extremes, keys missing or added.
    #[test]
    fn edited_robot_files_validate_or_list_their_problems(
        pick in any::<Index>(),
        edits in proptest::collection::vec(edit(), 1..4),
    ) {
        let seeds = seeds();
        if let Some(text) = edited(pick.get::<Vec<u8>>(&seeds), &edits) {
            check(&text)?;
        }
    }

    /// Arbitrary text, and text made of TOML's own characters.
    #[test]
    fn any_text_validates_or_lists_its_problems(
        text in prop_oneof![any::<String>(), "[\\[\\]a-z_=\"{}, .0-9\\n#]{0,200}"],
    ) {
        check(&text)?;
    }
}

#[test]
fn every_seed_robot_file_validates() {
    let seeds = seeds();
    assert!(seeds.len() >= 4, "{} seeds", seeds.len());
    for s in seeds.iter() {
        let text = String::from_utf8_lossy(s);
        if let Err(e) = Robot::from_str(&text, &path()) {
            panic!("{e}\n---\n{text}");
        }
    }
}
