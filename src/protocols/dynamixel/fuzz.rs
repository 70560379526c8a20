//! Fuzz target for the status parser: any bytes, and mutated real status packets, in any
//! chunks give the same events, never make it hold a [`MAX_PACKET`] or more, and every
//! status it yields is one that was on the wire, CRC and stuffing intact. Well-formed
//! packets between garbage are all found, and a corrupt one costs only itself.

use super::packet::{encode, encode_status, Instruction, HEADER, MAX_PACKET};
use super::status::{events, Status, StatusError};
use super::DynamixelError;
use crate::fuzzing::{config, cuts, mutated, noisy_bytes, split};
use proptest::prelude::*;
use proptest::sample::Index;
use std::sync::Arc;

type Event = Result<Status, DynamixelError>;

/// Parameters where stuffing happens often.
fn params() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![2 => Just(0xFFu8), 1 => Just(0xFD), 1 => Just(0x00), 2 => any::<u8>()],
        0..24,
    )
}

fn status() -> impl Strategy<Value = Status> {
    (0u8..=252, any::<u8>(), params()).prop_map(|(id, error, params)| Status {
        id,
        error: StatusError::from_byte(error),
        params,
    })
}

fn wire(s: &Status) -> Vec<u8> {
    encode_status(s.id, s.error, &s.params).expect("small packets encode")
}

/// `bytes` with every header broken, so garbage holds none.
fn without_headers(mut bytes: Vec<u8>) -> Vec<u8> {
    while let Some(at) = bytes.windows(4).position(|w| w == HEADER) {
        bytes[at + 3] = 0x01;
    }
    bytes
}

fn garbage() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        noisy_bytes(40),
        proptest::collection::vec(
            prop_oneof![Just(0xFFu8), Just(0xFD), Just(0x00), Just(0x55)],
            0..12
        ),
    ]
    .prop_map(without_headers)
}

/// Pieces of a bus's traffic: packets, cut packets, headers with any id and length,
/// garbage.
fn traffic() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        3 => status().prop_map(|s| wire(&s)),
        1 => (status(), any::<Index>()).prop_map(|(s, i)| {
            let w = wire(&s);
            w[..i.index(w.len())].to_vec()
        }),
        1 => (any::<u8>(), any::<u16>()).prop_map(|(id, len)| {
            let mut h = HEADER.to_vec();
            h.push(id);
            h.extend_from_slice(&len.to_le_bytes());
            h
        }),
        2 => noisy_bytes(40),
    ];
    proptest::collection::vec(piece, 0..10).prop_map(|p| p.concat())
}

/// Status packets as devices send them (the e-Manual's, and stuffed ones) and a request
/// echoed back: the mutations' seeds.
fn seeds() -> Arc<Vec<Vec<u8>>> {
    let mut s: Vec<Vec<u8>> = vec![
        vec![
            0xFF, 0xFF, 0xFD, 0x00, 0x01, 0x07, 0x00, 0x55, 0x00, 0x06, 0x04, 0x26, 0x65, 0x5D,
        ],
        vec![
            0xFF, 0xFF, 0xFD, 0x00, 0x01, 0x08, 0x00, 0x55, 0x00, 0xA6, 0x00, 0x00, 0x00, 0x8C,
            0xC0, 0xFF, 0xFF, 0xFD, 0x00, 0x02, 0x08, 0x00, 0x55, 0x00, 0x1F, 0x08, 0x00, 0x00,
            0xBA, 0xBE,
        ],
        vec![
            0xFF, 0xFF, 0xFD, 0x00, 0x01, 0x04, 0x00, 0x55, 0x00, 0xA1, 0x0C,
        ],
    ];
    let stuffed = [0xFF, 0xFF, 0xFD, 0x00, 0xFF, 0xFF, 0xFF, 0xFD, 0xFD];
    s.push(encode_status(9, StatusError::from_byte(0x84), &stuffed).expect("encodes"));
    s.push(encode(1, Instruction::Ping, &[]).expect("encodes"));
    Arc::new(s)
}

proptest! {
    #![proptest_config(config(5_000))]

    /// Any bytes in any chunks: the same events, a bounded buffer, and each status
    /// yielded re-encodes to bytes that are in the input (so its CRC held and it was
    /// unstuffed faithfully).
    #[test]
    fn any_bytes_in_any_chunks_give_the_same_events_and_only_real_packets(
        data in prop_oneof![traffic(), mutated(seeds()), noisy_bytes(400)],
        at in cuts(12),
    ) {
        let whole = events(&[&data]);
        prop_assert_eq!(&events(&split(&data, &at)), &whole);
        for e in whole.iter().flatten() {
            let w = wire(e);
            prop_assert!(data.windows(w.len()).any(|x| x == w), "{:?} is not in the input", e);
        }
    }

    /// Packets between garbage, in any chunks, are each found, in order, and nothing else
    /// is reported.
    #[test]
    fn packets_between_garbage_are_all_found(
        packets in proptest::collection::vec((status(), garbage()), 1..8),
        lead in garbage(),
        at in cuts(12),
    ) {
        let mut data = lead;
        for (s, g) in &packets {
            data.extend_from_slice(&wire(s));
            data.extend_from_slice(g);
        }
        let want: Vec<Event> = packets.iter().map(|(s, _)| Ok(s.clone())).collect();
        prop_assert_eq!(events(&split(&data, &at)), want);
    }

    /// A packet corrupted anywhere after its header is reported, and every other packet
    /// is still found. The zeros at the end let a corrupted length run out.
    #[test]
    fn a_corrupt_packet_is_reported_and_costs_only_itself(
        packets in proptest::collection::vec((status(), garbage()), 2..6),
        which in any::<Index>(),
        byte in any::<Index>(),
        bit in 0u8..8,
        at in cuts(8),
    ) {
        let bad = which.index(packets.len());
        let mut data = Vec::new();
        for (i, (s, g)) in packets.iter().enumerate() {
            let mut w = wire(s);
            if i == bad {
                let b = 4 + byte.index(w.len() - 4);
                w[b] ^= 1 << bit;
            }
            data.extend_from_slice(&w);
            data.extend_from_slice(g);
        }
        data.extend_from_slice(&[0u8; MAX_PACKET]);
        let got = events(&split(&data, &at));
        let found: Vec<&Status> = got.iter().flatten().collect();
        let want: Vec<&Status> = packets
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != bad)
            .map(|(_, (s, _))| s)
            .collect();
        prop_assert_eq!(found, want);
        prop_assert!(got.iter().any(|e| e.is_err()), "the corrupt packet went unreported");
    }
}
