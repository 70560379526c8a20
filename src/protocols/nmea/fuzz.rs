//! Fuzz target for the NMEA core: real receiver captures (tests/fixtures/nmea), mutated
//! and cut into arbitrary chunks, and arbitrary bytes. Chunking never changes what is
//! decoded, a single changed byte never yields a fix the capture did not have (the
//! checksum's job), every line is counted as a frame or an error, and the decoder never
//! holds more than one sentence's cap.

use super::{NmeaDecoder, MAX_SENTENCE};
use crate::fuzzing::{config, cuts, fixture_files, mutated, noisy_bytes, printable, split, stream};
use crate::messages::{MessageType, Time};
use crate::protocols::{Decoder, Output};
use proptest::prelude::*;
use proptest::sample::Index;
use std::sync::{Arc, OnceLock};

fn captures() -> Arc<Vec<Vec<u8>>> {
    static SEEDS: OnceLock<Arc<Vec<Vec<u8>>>> = OnceLock::new();
    SEEDS
        .get_or_init(|| Arc::new(fixture_files("nmea")))
        .clone()
}

/// A GGA and an RMC stream as fixes, and every GSA as a `map`.
fn decoder() -> NmeaDecoder {
    NmeaDecoder::new(&[
        stream("fix", MessageType::NavSatFix, "GGA".to_string()),
        stream("rmc", MessageType::NavSatFix, "RMC".to_string()),
        stream("gsa", MessageType::Map, "GSA".to_string()),
    ])
}

/// Outputs as text: NaN fields (an unknown altitude) compare equal this way.
fn feed(chunks: &[&[u8]]) -> Result<Vec<String>, TestCaseError> {
    let mut d = decoder();
    let mut out = Vec::new();
    for c in chunks {
        d.feed(c, Time::default(), &mut out);
        prop_assert!(d.pending() <= MAX_SENTENCE, "holds {} bytes", d.pending());
    }
    Ok(out.iter().map(|o| format!("{o:?}")).collect())
}

fn samples(out: &[String]) -> Vec<&String> {
    out.iter().filter(|o| o.starts_with("Sample")).collect()
}

proptest! {
    #![proptest_config(config(2_000))]

    /// The same bytes read in any chunks give the same samples and errors in the same order.
    #[test]
    fn mutated_captures_decode_the_same_in_any_chunks(
        data in mutated(captures()),
        at in cuts(12),
    ) {
        let whole = feed(&[&data])?;
        prop_assert_eq!(feed(&split(&data, &at))?, whole);
    }

    /// One changed byte anywhere in a capture never yields a sample the capture did not
    /// have: the checksum catches it, or the change was outside the sentence.
    #[test]
    fn one_changed_byte_never_makes_a_new_fix(
        pick in any::<Index>(),
        at in any::<Index>(),
        flip in 1u8..=255,
    ) {
        let seeds = captures();
        let original = pick.get(seeds.as_slice());
        let mut data = original.clone();
        let i = at.index(data.len());
        // XOR with a non-zero byte: always a change, and any new value reachable. (No
        // rejected cases: proptest caps them per run, which would end a long run.)
        data[i] ^= flip;
        let before = feed(&[original])?;
        let known = samples(&before);
        for s in samples(&feed(&[&data])?) {
            prop_assert!(known.contains(&s), "new sample {}", s);
        }
    }

    /// Any bytes: no panic, and every line is counted (a frame or an error), each sample
    /// comes from a counted frame, and at most one per stream.
    #[test]
    fn every_line_of_any_bytes_is_a_frame_or_an_error(
        lines in proptest::collection::vec(noisy_bytes(120), 1..8),
    ) {
        let mut d = decoder();
        for line in lines {
            let line: Vec<u8> = line.into_iter().filter(|b| *b != b'\n' && *b != b'\r').collect();
            if line.is_empty() {
                continue;
            }
            let mut out = Vec::new();
            d.feed(&line, Time::default(), &mut out);
            d.feed(b"\r\n", Time::default(), &mut out);
            let frames = out.iter().filter(|o| matches!(o, Output::Frame)).count();
            let errors = out.iter().filter(|o| matches!(o, Output::Error(_))).count();
            let samples = out.iter().filter(|o| matches!(o, Output::Sample { .. })).count();
            prop_assert!(frames + errors >= 1, "line {:?} went uncounted", line);
            prop_assert!(frames <= 1 && errors <= 2);
            prop_assert!(samples <= 3 * frames);
            prop_assert_eq!(d.pending(), 0);
        }
    }

    /// Junk far past the cap without a line end is one error; the sentence after it
    /// decodes, whatever the chunks.
    #[test]
    fn a_fix_after_any_overlong_junk_is_read(
        junk in printable(MAX_SENTENCE + 1..4 * MAX_SENTENCE),
        at in cuts(12),
    ) {
        let mut data = junk;
        data.extend_from_slice(b"\r\n$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47\r\n");
        let out = feed(&split(&data, &at))?;
        prop_assert_eq!(out.len(), 3, "{:?}", out);
        prop_assert!(out[0].contains("TooLong"), "{:?}", out);
        prop_assert!(out[2].contains("NavSatFix"), "{:?}", out);
    }
}
