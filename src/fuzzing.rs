//! Shared pieces of the fuzz targets (the `fuzz` test modules beside each parser): case
//! counts sized for CI that `PROPTEST_CASES` raises for long local runs, structure-aware
//! mutations of real inputs, and splitting input at arbitrary chunk boundaries.

use crate::messages::MessageType;
use crate::spec::{Stream, StreamSpec};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config;
use std::sync::Arc;

/// `cases` proptest cases, or `PROPTEST_CASES` when it is set: CI runs a fixed budget and
/// a long local run needs no code change. A failure is kept under `proptest-regressions/`
/// and replayed first by every later run.
pub fn config(cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    Config {
        cases,
        ..Config::default()
    }
}

/// Bytes the parsers give meaning to (line ends, NMEA, kv, csv, JSON and MessagePack
/// markers, slcan's BEL), so mutations reach past the first syntax check.
const SPECIAL: &[u8] = b"\n\r\0\xff\x07$!*,=;:{}[]\".-+ 0789AFafTtRrZz\x80\xc0\xc1\xdc\xdd\xde\xdf";

/// One edit of an input. Positions are [`Index`]es, so a mutation fits any length.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Flips one bit.
    Flip(Index, u8),
    /// Sets one byte to one of [`SPECIAL`].
    Special(Index, Index),
    /// Sets one byte to anything.
    Byte(Index, u8),
    /// Removes the bytes between two positions.
    Delete(Index, Index),
    /// Repeats the bytes between two positions right after themselves.
    Duplicate(Index, Index),
    /// Inserts bytes at a position.
    Insert(Index, Vec<u8>),
    /// Cuts the input at a position.
    Truncate(Index),
    /// Replaces the tail from a position by another seed's tail from a position.
    Splice(Index, Index, Index),
}

pub fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, b)),
        3 => (any::<Index>(), any::<Index>()).prop_map(|(i, s)| Mutation::Special(i, s)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Byte(i, b)),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::Delete(a, b)),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Mutation::Duplicate(a, b)),
        1 => (any::<Index>(), proptest::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => (any::<Index>(), any::<Index>(), any::<Index>())
            .prop_map(|(a, s, b)| Mutation::Splice(a, s, b)),
    ]
}

/// The range between two positions of `len` bytes, in order.
fn span(a: &Index, b: &Index, len: usize) -> std::ops::Range<usize> {
    let (a, b) = (a.index(len + 1), b.index(len + 1));
    a.min(b)..a.max(b)
}

/// Applies `edits` to `data` in order; `seeds` are what a splice takes tails from.
pub fn apply(mut data: Vec<u8>, edits: &[Mutation], seeds: &[Vec<u8>]) -> Vec<u8> {
    for m in edits {
        let len = data.len();
        match m {
            Mutation::Flip(i, bit) if len > 0 => data[i.index(len)] ^= 1 << bit,
            Mutation::Special(i, s) if len > 0 => data[i.index(len)] = *s.get(SPECIAL),
            Mutation::Byte(i, b) if len > 0 => data[i.index(len)] = *b,
            Mutation::Delete(a, b) => {
                data.drain(span(a, b, len));
            }
            Mutation::Duplicate(a, b) => {
                let r = span(a, b, len);
                let copy = data[r.clone()].to_vec();
                data.splice(r.end..r.end, copy);
            }
            Mutation::Insert(i, bytes) => {
                let at = i.index(len + 1);
                data.splice(at..at, bytes.iter().copied());
            }
            Mutation::Truncate(i) => data.truncate(i.index(len + 1)),
            Mutation::Splice(at, seed, from) if !seeds.is_empty() => {
                let other = seed.get(seeds);
                data.truncate(at.index(len + 1));
                data.extend_from_slice(&other[from.index(other.len() + 1)..]);
            }
            _ => {}
        }
    }
    data
}

/// One of `seeds` with one to four [`Mutation`]s applied: flipped, overwritten, cut,
/// repeated and spliced versions of real input.
pub fn mutated(seeds: Arc<Vec<Vec<u8>>>) -> impl Strategy<Value = Vec<u8>> {
    (any::<Index>(), proptest::collection::vec(mutation(), 1..=4))
        .prop_map(move |(pick, edits)| apply(pick.get(&seeds).clone(), &edits, &seeds))
}

/// `len` bytes from a seed: a strategy per byte costs a value tree per byte, which in a
/// debug build is most of a case's time. These shrink by length and seed.
fn expand(seed: u64, len: usize, byte: impl Fn(u64) -> u8) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            // xorshift64*
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            byte(x.wrapping_mul(0x2545_F491_4F6C_DD1D))
        })
        .collect()
}

/// Up to `max` bytes, half from anywhere and half from [`SPECIAL`], so random input has
/// line ends, separators and markers often enough to reach the parsers' later stages.
pub fn noisy_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    (0..max, any::<u64>()).prop_map(|(len, seed)| {
        expand(seed, len, |r| {
            if r & 1 == 0 {
                SPECIAL[(r >> 8) as usize % SPECIAL.len()]
            } else {
                (r >> 16) as u8
            }
        })
    })
}

/// Printable ASCII without line ends, `len` bytes long: a line that never ends.
pub fn printable(len: std::ops::Range<usize>) -> impl Strategy<Value = Vec<u8>> {
    (len, any::<u64>()).prop_map(|(len, seed)| expand(seed, len, |r| 0x20 + ((r >> 16) % 95) as u8))
}

/// Up to `n` chunk boundaries, for [`split`].
pub fn cuts(n: usize) -> impl Strategy<Value = Vec<Index>> {
    proptest::collection::vec(any::<Index>(), 0..=n)
}

/// `data` cut at `cuts` (empty chunks included, as a read of zero new bytes would be).
pub fn split<'a>(data: &'a [u8], cuts: &[Index]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c.index(data.len() + 1)).collect();
    at.sort_unstable();
    let mut out = Vec::with_capacity(at.len() + 1);
    let mut start = 0;
    for a in at {
        out.push(&data[start..a]);
        start = a;
    }
    out.push(&data[start..]);
    out
}

/// Every file of `tests/fixtures/<dir>`, in name order: the real captures that seed the
/// mutations.
pub fn fixture_files(dir: &str) -> Vec<Vec<u8>> {
    let dir = format!("{}/tests/fixtures/{dir}", env!("CARGO_MANIFEST_DIR"));
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.expect("fixture entry").path())
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .collect()
}

/// A stream `sensor` of `msg_type` selecting `select`, with the spec's other keys at
/// their defaults.
pub fn stream<S>(sensor: &str, msg_type: MessageType, select: S) -> Stream<S> {
    Stream {
        spec: StreamSpec {
            sensor: sensor.into(),
            msg_type,
            qos: 0,
            retain: false,
            min_interval: None,
            frame_id: "fuzz".into(),
        },
        select,
    }
}

mod tests {
    use super::*;

    proptest! {
        #![proptest_config(config(1_000))]

        #[test]
        fn chunks_join_back_to_the_input(data in noisy_bytes(64), at in cuts(6)) {
            let parts = split(&data, &at);
            prop_assert_eq!(parts.len(), at.len() + 1);
            prop_assert_eq!(parts.concat(), data);
        }

        #[test]
        fn any_edits_apply_to_any_input(
            data in noisy_bytes(32),
            edits in proptest::collection::vec(mutation(), 0..8),
        ) {
            // Duplications at most double the input each, so 8 edits stay small.
            let out = apply(data.clone(), &edits, &[data.clone(), Vec::new()]);
            prop_assert!(out.len() <= (data.len() + 16) << 8);
        }
    }
}
