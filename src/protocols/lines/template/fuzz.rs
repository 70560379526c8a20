//! Fuzz target for command templates: any text parses or is refused with a reason; any
//! values render to exactly one line (never a second command), padded to the width asked,
//! with numbers that read back as the value sent; and through the safety layer, a command
//! with any values under any limits reaches the device inside those limits or not at all.

use super::*;
use crate::config::CommandRender;
use crate::fuzzing::config;
use crate::messages::{MapMessage, MessageType, Time};
use crate::safety::{decode_command, Actuator, Verdict};
use crate::spec::{Command, Limit, OutOfRange};
use proptest::prelude::*;

fn scalar() -> impl Strategy<Value = Scalar> {
    prop_oneof![
        any::<i64>().prop_map(Scalar::Int),
        any::<f64>().prop_map(Scalar::Float),
        (-1e6..1e6f64).prop_map(Scalar::Float),
        any::<bool>().prop_map(Scalar::Bool),
        any::<String>().prop_map(Scalar::Str),
        "[ -~]{0,12}".prop_map(Scalar::Str),
    ]
}

/// `{x:+08.3}` and the like, with every flag, width and precision a robot file may use.
fn spec_text() -> impl Strategy<Value = String> {
    (
        any::<bool>(),
        any::<bool>(),
        0usize..=64,
        proptest::option::of(0usize..=17),
    )
        .prop_map(|(plus, zero, width, precision)| {
            let mut s = String::new();
            if plus {
                s.push('+');
            }
            if zero {
                s.push('0');
            }
            if width > 0 {
                s.push_str(&width.to_string());
            }
            if let Some(p) = precision {
                s.push_str(&format!(".{p}"));
            }
            s
        })
}

/// A valid template over the map keys `k0`..`k3`, with literal text (braces included)
/// between the fields.
fn template_text() -> impl Strategy<Value = String> {
    proptest::collection::vec(("[ -z|~]{0,6}", 0usize..4, spec_text()), 0..5).prop_map(|parts| {
        let mut t = String::new();
        for (lit, key, spec) in parts {
            t.push_str(&lit.replace('{', "{{").replace('}', "}}"));
            if spec.is_empty() {
                t.push_str(&format!("{{k{key}}}"));
            } else {
                t.push_str(&format!("{{k{key}:{spec}}}"));
            }
        }
        t
    })
}

/// What the rendered field must read back as, checked on the field's text alone.
fn reads_back(text: &str, v: &Scalar, spec: Spec) -> Result<(), TestCaseError> {
    let t = text.trim_start();
    prop_assert!(
        text.chars().count() >= spec.width,
        "`{}` narrower than {}",
        text,
        spec.width
    );
    match v {
        Scalar::Bool(b) => prop_assert_eq!(t, if *b { "1" } else { "0" }),
        Scalar::Str(s) => prop_assert_eq!(t, s.trim_start()),
        Scalar::Int(i) => {
            // An integer is written exactly, whatever the precision: a device must get the
            // number that was sent, not its nearest f64.
            let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
            prop_assert!(frac.bytes().all(|b| b == b'0'), "`{}`", t);
            prop_assert_eq!(
                whole.parse::<i128>().ok(),
                Some(*i as i128),
                "`{}` for {}",
                t,
                i
            );
        }
        Scalar::Float(f) if f.is_finite() => {
            let back: f64 = t
                .parse()
                .map_err(|_| TestCaseError::fail(format!("`{t}` is not a number")))?;
            let tol = spec
                .precision
                .map_or(0.0, |p| 0.5 * 10f64.powi(-(p as i32)))
                + f.abs() * 1e-15;
            prop_assert!((back - f).abs() <= tol, "`{}` for {}", t, f);
        }
        Scalar::Float(_) => {}
    }
    Ok(())
}

/// A Twist command under `limits` on `linear.x` and `angular.z`, written as
/// `D {linear.x:.P} {angular.z:.P}`.
fn drive(limits: [(f64, f64); 2], precision: usize, out_of_range: OutOfRange) -> Actuator {
    let template = format!("D {{linear.x:.{precision}}} {{angular.z:.{precision}}}");
    Actuator::new(Command {
        actuator: "drive".into(),
        msg_type: MessageType::Twist,
        render: CommandRender::Template(Template::parse(&template).expect("valid")),
        limits: ["linear.x", "angular.z"]
            .iter()
            .zip(limits)
            .map(|(p, (min, max))| Limit {
                path: p.to_string(),
                min,
                max,
            })
            .collect(),
        out_of_range,
        timeout: None,
        safe: Vec::new(),
        min_interval: None,
        max_age: None,
    })
}

/// A command field as a sender might write it: any number, or text, or the wrong type.
fn field_value() -> impl Strategy<Value = rmpv::Value> {
    prop_oneof![
        4 => any::<f64>().prop_map(rmpv::Value::from),
        4 => (-10.0..10.0f64).prop_map(rmpv::Value::from),
        2 => any::<i64>().prop_map(rmpv::Value::from),
        1 => any::<f32>().prop_map(rmpv::Value::from),
        1 => "(-?[0-9]{1,3}(\\.[0-9]{1,4})?|nan|inf|-inf|1e999| 0.5 |x)".prop_map(rmpv::Value::from),
        1 => any::<bool>().prop_map(rmpv::Value::from),
        1 => Just(rmpv::Value::Nil),
    ]
}

fn limits() -> impl Strategy<Value = (f64, f64)> {
    (-1e4..1e4f64, 0.0..1e4f64).prop_map(|(min, span)| (min, min + span))
}

proptest! {
    #![proptest_config(config(4_000))]

    /// Any text parses or is refused with a reason; a parsed template keeps its source and
    /// has no empty field path.
    #[test]
    fn any_text_parses_or_is_refused(
        text in prop_oneof![any::<String>(), "[{}:.+0-9a-z_ \\n]{0,24}", template_text()],
    ) {
        if let Ok(t) = Template::parse(&text) {
            prop_assert_eq!(t.source(), text.as_str());
            prop_assert!(t.paths().all(|p| !p.is_empty()));
            prop_assert!(!text.contains('\n') && !text.contains('\r'));
        }
    }

    /// Any values render to one line or are refused: a single `\n` at the end, no control
    /// character before it, each field at least as wide as asked and reading back as
    /// its value.
    #[test]
    fn any_values_render_to_one_line_that_reads_back(
        text in template_text(),
        values in proptest::collection::vec(scalar(), 4),
    ) {
        let t = Template::parse(&text).expect("generated templates are valid");
        let mut m = MapMessage::default();
        for (i, v) in values.iter().enumerate() {
            m.insert(&format!("k{i}"), v.clone());
        }
        let mut line = String::new();
        let r = t.render(&Message::Map(m), &mut line);
        let controls = t.paths().any(|p| {
            let i: usize = p[1..].parse().unwrap_or(0);
            matches!(&values[i], Scalar::Str(s) if s.chars().any(char::is_control))
        });
        prop_assert_eq!(r.is_err(), controls, "{:?}", r);
        if r.is_err() {
            return Ok(());
        }
        let body = line.strip_suffix('\n').expect("ends with a newline");
        prop_assert!(!body.chars().any(char::is_control), "{:?}", line);
        // Each field again on its own, so its text can be read back.
        for p in &t.parts {
            if let Part::Field { path, spec } = p {
                let v = &values[path[1..].parse::<usize>().expect("k<n>")];
                let mut one = String::new();
                format_scalar(v, *spec, &mut one);
                prop_assert!(body.contains(&one));
                reads_back(&one, v, *spec)?;
            }
        }
    }

    /// Through the safety layer: a Twist with any field values under any limits is refused,
    /// or written as one line whose numbers are inside the limits (to the template's
    /// rounding), whether out-of-range values are rejected or clamped.
    #[test]
    fn commands_with_any_values_reach_the_device_inside_their_limits(
        x in field_value(),
        z in field_value(),
        extra in proptest::option::of(("[a-z]{1,6}", field_value())),
        lim in [limits(), limits()],
        precision in 0usize..=6,
        clamp in any::<bool>(),
    ) {
        let mode = if clamp { OutOfRange::Clamp } else { OutOfRange::Reject };
        let mut a = drive(lim, precision, mode);
        let mut pairs = vec![
            ("linear".into(), rmpv::Value::Map(vec![("x".into(), x)])),
            ("angular".into(), rmpv::Value::Map(vec![("z".into(), z)])),
        ];
        pairs.extend(extra.map(|(k, v)| (rmpv::Value::from(k), v)));
        let mut payload = Vec::new();
        rmpv::encode::write_value(&mut payload, &rmpv::Value::Map(pairs)).expect("encode");
        let Ok(cmd) = decode_command(&payload, MessageType::Twist, 65_536) else {
            return Ok(());
        };
        let Verdict::Apply { message, .. } = a.check(&cmd, tokio::time::Instant::now(), Time::default(), false) else {
            return Ok(());
        };
        let crate::device::DeviceWrite::Line(bytes) = crate::safety::render::render(&a.spec.render, &message)
            .expect("a checked Twist renders") else {
            return Err(TestCaseError::fail("not a line"));
        };
        let line = String::from_utf8(bytes).expect("text");
        let fields: Vec<&str> = line.trim_end_matches('\n').split(' ').collect();
        prop_assert_eq!(fields.len(), 3, "{:?}", line);
        let half = 0.5 * 10f64.powi(-(precision as i32));
        for (text, (min, max)) in fields[1..].iter().zip(lim) {
            let v: f64 = text.parse().expect("a number");
            let slack = half + max.abs().max(min.abs()) * 1e-12;
            prop_assert!(v >= min - slack && v <= max + slack, "{} outside [{}, {}] in {:?}", v, min, max, line);
        }
    }
}
