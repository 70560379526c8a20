//! Fuzz target for the text-line core in its three formats (kv, csv, json): generated
//! valid lines with arbitrary values decode to exactly those values in any chunks;
//! mutated lines and arbitrary bytes never panic, every line is counted, the decoder never
//! holds more than [`MAX_LINE`], and JSON nested without end is an error, not a crash.

use super::{LineFormat, LineSelect, LinesDecoder, MAX_LINE};
use crate::fuzzing::{config, cuts, mutated, noisy_bytes, split, stream};
use crate::messages::{Message, MessageType, Scalar, Time};
use crate::protocols::{Decoder, Output};
use proptest::prelude::*;
use std::sync::Arc;

/// A line's values: a float, an integer and a word that reads as neither.
#[derive(Debug, Clone)]
struct Values {
    v: f64,
    n: i64,
    s: String,
}

fn values() -> impl Strategy<Value = Values> {
    (
        prop_oneof![
            any::<f64>().prop_map(|f| if f.is_finite() { f } else { 0.0 }),
            -1e3..1e3f64
        ],
        any::<i64>(),
        "x[a-zA-Z0-9_]{0,12}",
    )
        .prop_map(|(v, n, s)| Values { v, n, s })
}

fn format() -> impl Strategy<Value = LineFormat> {
    prop_oneof![
        Just(LineFormat::Kv),
        Just(LineFormat::Json),
        prop::sample::select(vec![',', ';', '|', '\t']).prop_map(|delimiter| LineFormat::Csv {
            columns: ["tag", "v", "n", "s"].map(String::from).to_vec(),
            delimiter,
        }),
    ]
}

/// The line a device would write for `x` in `format`.
fn line(format: &LineFormat, x: &Values) -> String {
    match format {
        LineFormat::Kv => format!("tag=T v={} n={} s={}\n", x.v, x.n, x.s),
        LineFormat::Csv { delimiter: d, .. } => format!("T{d}{}{d}{}{d}{}\r\n", x.v, x.n, x.s),
        LineFormat::Json => format!(
            "{}\n",
            serde_json::json!({"tag": "T", "v": x.v, "n": x.n, "s": x.s, "deep": {"a": [1, {"b": null}]}})
        ),
    }
}

/// `data` as a Float64 from `v`, and every key but `tag` as a map, on lines tagged `T`.
fn decoder(format: &LineFormat) -> LinesDecoder {
    let select = |fields: &[(&str, &str)]| LineSelect {
        when: vec![("tag".into(), "T".into())],
        fields: fields
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
    };
    LinesDecoder::new(
        format,
        &[
            stream("value", MessageType::Float64, select(&[("data", "v")])),
            stream("all", MessageType::Map, select(&[])),
        ],
    )
}

fn feed(format: &LineFormat, chunks: &[&[u8]]) -> Result<Vec<Output>, TestCaseError> {
    let mut d = decoder(format);
    let mut out = Vec::new();
    for c in chunks {
        d.feed(c, Time::default(), &mut out);
        prop_assert!(d.pending() <= MAX_LINE, "holds {} bytes", d.pending());
    }
    Ok(out)
}

/// Real-looking lines of each format, the mutations' seeds.
fn seeds() -> Arc<Vec<Vec<u8>>> {
    let lines = [
        "tag=BAT v=12.4 i=0.8 soc=0.93\n",
        "tag=IMU ax=0.01 ay=-0.02 az=9.81 gz=0.001\r\n",
        "tag=LOG msg=boot;ok=true,n=3\n",
        "BAT, 11.9, -1.5, x\n",
        "T;1e-3;-7;xy\r\n",
        "{\"tag\":\"odom\",\"ticks\":[3,4],\"ok\":true,\"t\":{\"c\":21.5}}\n",
        "{\"tag\":\"T\",\"v\":1.5e300,\"n\":-9223372036854775808,\"s\":\"\\u00e9\\n\"}\n",
    ];
    Arc::new(lines.iter().map(|l| l.as_bytes().to_vec()).collect())
}

proptest! {
    #![proptest_config(config(3_000))]

    /// Valid lines with any values, in any chunks: each gives the Float64 of its `v`
    /// exactly and a map of its other keys, and nothing else.
    #[test]
    fn valid_lines_decode_to_their_values_in_any_chunks(
        format in format(),
        xs in proptest::collection::vec(values(), 1..6),
        at in cuts(10),
    ) {
        let data: String = xs.iter().map(|x| line(&format, x)).collect();
        let out = feed(&format, &split(data.as_bytes(), &at))?;
        prop_assert_eq!(out.len(), 3 * xs.len(), "{:?}", out);
        for (x, o) in xs.iter().zip(out.chunks(3)) {
            prop_assert_eq!(&o[0], &Output::Frame);
            let Output::Sample { message: Message::Float64(f), stream: 0, .. } = &o[1] else {
                return Err(TestCaseError::fail(format!("{o:?}")));
            };
            prop_assert_eq!(f.data, x.v);
            let Output::Sample { message: Message::Map(m), stream: 1, .. } = &o[2] else {
                return Err(TestCaseError::fail(format!("{o:?}")));
            };
            prop_assert_eq!(m.get("v").and_then(Scalar::as_f64), Some(x.v));
            prop_assert_eq!(m.get("n"), Some(&Scalar::Int(x.n)));
            prop_assert_eq!(m.get("s"), Some(&Scalar::Str(x.s.clone())));
            prop_assert_eq!(m.get("tag"), None);
        }
    }

    /// Mutated lines of every format: the same outputs in any chunks, never more held
    /// than the cap.
    #[test]
    fn mutated_lines_decode_the_same_in_any_chunks(
        format in format(),
        data in mutated(seeds()),
        at in cuts(10),
    ) {
        let whole = feed(&format, &[&data])?;
        let chunked = feed(&format, &split(&data, &at))?;
        prop_assert_eq!(format!("{chunked:?}"), format!("{whole:?}"));
    }

    /// Any line of any bytes is counted: a frame (with at most one sample per stream) or
    /// an error.
    #[test]
    fn every_line_of_any_bytes_is_a_frame_or_an_error(
        format in format(),
        line in noisy_bytes(200),
    ) {
        let line: Vec<u8> = line.into_iter().filter(|b| *b != b'\n' && *b != b'\r').collect();
        let blank = std::str::from_utf8(&line).is_ok_and(|t| t.trim().is_empty());
        let mut d = decoder(&format);
        let mut out = Vec::new();
        d.feed(&line, Time::default(), &mut out);
        d.feed(b"\n", Time::default(), &mut out);
        let frames = out.iter().filter(|o| matches!(o, Output::Frame)).count();
        let errors = out.iter().filter(|o| matches!(o, Output::Error(_))).count();
        let samples = out.iter().filter(|o| matches!(o, Output::Sample { .. })).count();
        if blank {
            prop_assert!(out.is_empty());
        } else {
            prop_assert!(frames + errors >= 1, "line {:?} went uncounted", line);
        }
        prop_assert!(frames <= 1 && samples <= 2 * frames && errors <= 2);
    }

    /// JSON nested far deeper than anyone writes is an error, not a stack overflow.
    #[test]
    fn deeply_nested_json_is_an_error(depth in 0usize..20_000, object in any::<bool>()) {
        let (open, close) = if object { ("{\"a\":", "}") } else { ("[", "]") };
        let line = format!("{{\"tag\":\"T\",\"x\":{}1{}}}\n", open.repeat(depth), close.repeat(depth));
        let out = feed(&LineFormat::Json, &[line.as_bytes()])?;
        if depth > 200 {
            prop_assert!(matches!(&out[..], [Output::Error(_)]), "{:?}", out);
        }
    }

    /// A line far past the cap is one error, held nowhere; the line after it decodes.
    #[test]
    fn a_line_after_any_overlong_junk_is_read(
        junk_len in MAX_LINE + 1..4 * MAX_LINE,
        x in values(),
        at in cuts(12),
    ) {
        let mut data = vec![b'x'; junk_len];
        data.extend_from_slice(b"\r\n");
        data.extend_from_slice(line(&LineFormat::Kv, &x).as_bytes());
        let out = feed(&LineFormat::Kv, &split(&data, &at))?;
        prop_assert_eq!(out.len(), 4, "{:?}", out);
        prop_assert!(matches!(&out[0], Output::Error(crate::protocols::ProtocolError::Framing(_))));
        let v = match &out[2] {
            Output::Sample { message: Message::Float64(f), .. } => Some(f.data),
            _ => None,
        };
        prop_assert_eq!(v, Some(x.v), "{:?}", out);
    }
}
