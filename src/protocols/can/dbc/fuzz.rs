//! Fuzz target for DBC decoding against the real DBC files in tests/fixtures/dbc: any
//! payload of any length decodes every message without panic, to values inside what the
//! signal's bits, factor and offset allow, with exactly the multiplexed signals the switch
//! selects; slcan bytes of those frames in any chunks give the same samples, and a frame
//! shorter than its DBC length is an error, not a sample. Mutated DBC text is read or
//! refused, never a panic.

use super::*;
use crate::fuzzing::{config, cuts, fixture_files, mutated, split, stream};
use crate::messages::{Message, MessageType, Time};
use crate::protocols::can::{slcan, CanFrame, CanSelect, SlcanProtocol};
use crate::protocols::{Decoder, Output};
use proptest::prelude::*;
use proptest::sample::Index;
use std::sync::{Arc, OnceLock};

/// The messages of each fixture DBC file.
fn files() -> &'static [Vec<Arc<MessageDef>>] {
    static ALL: OnceLock<Vec<Vec<Arc<MessageDef>>>> = OnceLock::new();
    ALL.get_or_init(|| {
        fixture_files("dbc")
            .iter()
            .map(|bytes| {
                Database::parse(&String::from_utf8_lossy(bytes))
                    .expect("fixture DBC parses")
                    .messages
                    .into_iter()
                    .map(Arc::new)
                    .collect()
            })
            .collect()
    })
}

/// Every message of every fixture DBC file.
fn messages() -> &'static [Arc<MessageDef>] {
    static ALL: OnceLock<Vec<Arc<MessageDef>>> = OnceLock::new();
    ALL.get_or_init(|| files().concat())
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..=8),
        proptest::collection::vec(any::<u8>(), 0..=64),
        (0usize..=64, any::<u8>()).prop_map(|(n, b)| vec![b; n]),
    ]
}

fn dbc_texts() -> Arc<Vec<Vec<u8>>> {
    static SEEDS: OnceLock<Arc<Vec<Vec<u8>>>> = OnceLock::new();
    SEEDS.get_or_init(|| Arc::new(fixture_files("dbc"))).clone()
}

proptest! {
    #![proptest_config(config(5_000))]

    /// Any payload of any length: every decoded value is a signal of the message, at most
    /// once, inside its physical range, and present exactly when it fits the payload and
    /// (if multiplexed) the switch selects it.
    #[test]
    fn any_payload_decodes_to_values_the_signals_allow(pick in any::<Index>(), data in payload()) {
        let m = pick.get(messages());
        let mut out = Vec::new();
        decode(m, &data, &mut out);
        let switch = m.signals.iter().find(|s| s.mux == Mux::Switch).and_then(|s| raw_get(&data, s));
        let mut want: Vec<&str> = Vec::new();
        for s in &m.signals {
            let present = match s.mux {
                Mux::Plain | Mux::Switch => true,
                Mux::On(v) => switch == Some(v),
            };
            if present && fits(s, data.len()) {
                want.push(&s.name);
            }
        }
        let got: Vec<&str> = out.iter().map(|(n, _)| n.as_str()).collect();
        prop_assert_eq!(got, want);
        for (name, value) in &out {
            let s = m.signals.iter().find(|s| &s.name == name).expect("a signal");
            let v = value.as_f64().expect("a number");
            let (lo, hi) = bits_range(s, 64);
            let slack = 1e-9 * lo.abs().max(hi.abs()).max(1.0);
            prop_assert!(v >= lo - slack && v <= hi + slack, "{} = {} outside [{}, {}]", name, v, lo, hi);
        }
    }

    /// Frames of the fixtures' ids with payloads of any length, as slcan bytes in any
    /// chunks: a frame at least as long as its DBC message is that message's sample; a
    /// shorter one is an error; every frame is counted.
    #[test]
    fn slcan_frames_of_dbc_messages_decode_in_any_chunks(
        file in any::<Index>(),
        frames in proptest::collection::vec((any::<Index>(), payload()), 1..6),
        at in cuts(12),
    ) {
        let defs = file.get(files());
        let streams: Vec<_> = defs
            .iter()
            .map(|m| stream(&m.name, MessageType::Map, CanSelect::Message(m.clone())))
            .collect();
        let mut p = SlcanProtocol::new(500_000, &streams);
        let mut bytes = Vec::new();
        let mut want = Vec::new();
        for (pick, data) in &frames {
            let m = pick.get(defs);
            let data: Vec<u8> = data.iter().copied().take(8).collect();
            let f = CanFrame { id: m.id, extended: m.extended, rtr: false, fd: m.fd, dlc: data.len() as u8, data };
            bytes.extend_from_slice(&slcan::encode(&f));
            want.push("Frame".to_string());
            // Every stream whose message has this id (the same id in two messages counts twice).
            for (i, d) in defs.iter().enumerate() {
                if d.id != f.id || d.extended != f.extended {
                    continue;
                }
                if f.data.len() < d.dlc as usize {
                    want.push("Error".into());
                } else {
                    let mut values = Vec::new();
                    decode(d, &f.data, &mut values);
                    want.push(format!("Sample {i} {values:?}"));
                }
            }
        }
        let mut out = Vec::new();
        for c in split(&bytes, &at) {
            p.feed(c, Time::default(), &mut out);
            prop_assert!(p.pending() <= slcan::MAX_LINE);
        }
        let got: Vec<String> = out
            .iter()
            .map(|o| match o {
                Output::Frame => "Frame".to_string(),
                Output::Error(_) => "Error".to_string(),
                Output::Sample { stream, message: Message::Map(m), .. } => format!("Sample {stream} {:?}", m.values),
                other => format!("{other:?}"),
            })
            .collect();
        prop_assert_eq!(got, want);
    }
}

proptest! {
    // can-dbc parses a whole file per case: fewer cases, each a real file mutated.
    #![proptest_config(config(150))]

    /// A mutated DBC file is read or refused with a reason, never a panic; what is read
    /// decodes an 8-byte payload.
    #[test]
    fn mutated_dbc_files_are_read_or_refused(text in mutated(dbc_texts())) {
        if let Ok(db) = Database::parse(&String::from_utf8_lossy(&text)) {
            for m in &db.messages {
                let mut out = Vec::new();
                decode(m, &[0xA5; 8], &mut out);
                prop_assert!(out.len() <= m.signals.len());
            }
        }
    }
}
