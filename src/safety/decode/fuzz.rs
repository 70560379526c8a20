//! Fuzz target for MessagePack command decoding: real command payloads of every type,
//! flipped, cut, repeated and spliced, and payloads that claim huge sizes, decoded as every
//! command type. Nothing panics or allocates what the payload only claims; a cut payload is
//! always refused (never read as a smaller command); bytes after a command refuse it; and
//! what decodes, encoded again, decodes to the same command.

use super::*;
use crate::fuzzing::{config, mutated};
use proptest::prelude::*;
use std::sync::{Arc, OnceLock};

const MAX: usize = 65_536;

fn enc(v: serde_json::Value) -> Vec<u8> {
    rmp_serde::to_vec_named(&v).expect("encode")
}

/// Commands as senders write them, one or more per type, and hostile headers that claim
/// sizes far beyond the payload (a 4 GiB array, string, binary and map).
fn seeds() -> Arc<Vec<Vec<u8>>> {
    static SEEDS: OnceLock<Arc<Vec<Vec<u8>>>> = OnceLock::new();
    SEEDS
        .get_or_init(|| {
            use serde_json::json;
            let stamp = json!({"stamp": {"sec": 1_700_000_000, "nanosec": 5}, "frame_id": "base"});
            let mut v = vec![
                enc(json!({"id": 1, "header": stamp, "linear": {"x": 0.5, "y": 0.0, "z": 0.0}, "angular": {"x": 0.0, "y": 0.0, "z": -0.25}})),
                enc(json!({"id": "a1", "linear": {"x": 1e300}, "angular": {"z": 1}})),
                enc(json!({"id": 2, "name": ["left", "right"], "position": [0.1, -0.2], "velocity": [], "effort": [1.5]})),
                enc(json!({"voltage": 12.4, "current": -1.5, "percentage": 0.9, "present": true})),
                enc(json!({"id": 768, "is_extended": false, "is_rtr": false, "is_error": false, "dlc": 2, "data": [1, 2]})),
                enc(json!({"id": 7, "header": stamp, "left": 100, "right": -100.5, "mode": "fast"})),
                enc(json!({"data": 3.25})),
                enc(json!({"data": true})),
                enc(json!({"data": "hello"})),
                enc(json!({"temperature": 21.5, "variance": 0.1})),
                enc(json!({"range": 2.5, "min_range": 0.1, "max_range": 10.0, "radiation_type": 1})),
                enc(json!({"id": 9, "engage": true})),
                vec![0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0],
                vec![0xdb, 0xff, 0xff, 0xff, 0xff, b'a'],
                vec![0xc6, 0xff, 0xff, 0xff, 0xff, 0x00],
                vec![0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, b'x'],
                vec![0x91; 200],
            ];
            // A Frame whose data is binary rather than an array of integers.
            let mut frame = Vec::new();
            rmp::encode::write_map_len(&mut frame, 2).expect("encode");
            rmp::encode::write_str(&mut frame, "dlc").expect("encode");
            rmp::encode::write_uint(&mut frame, 3).expect("encode");
            rmp::encode::write_str(&mut frame, "data").expect("encode");
            rmp::encode::write_bin(&mut frame, &[9, 8, 7]).expect("encode");
            v.push(frame);
            Arc::new(v)
        })
        .clone()
}

/// The command `payload` decodes to as `t`, or why not, as comparable text (a NaN, in a
/// default field or in a refused key, is then equal to itself).
fn decoded(payload: &[u8], t: MessageType) -> String {
    format!("{:?}", decode_command(payload, t, MAX))
}

proptest! {
    #![proptest_config(config(3_000))]

    /// Mutated commands decode as every type without panic, the same way twice; the id and
    /// e-stop readings never panic; a refused payload says why.
    #[test]
    fn mutated_commands_decode_or_are_refused_as_every_type(payload in mutated(seeds())) {
        let p = Payload::read(&payload, MAX);
        let _ = (p.id(), p.estop());
        for t in MessageType::ALL {
            prop_assert_eq!(decoded(&payload, t), decoded(&payload, t));
            if let Err(e) = decode_command(&payload, t, MAX) {
                prop_assert!(!e.to_string().is_empty());
            }
        }
    }

    /// Every strict prefix of a real command is refused as every type: a payload cut
    /// short never passes as a smaller command.
    #[test]
    fn a_cut_command_is_always_refused(pick in any::<proptest::sample::Index>(), cut in any::<proptest::sample::Index>()) {
        let seeds = seeds();
        let payload = pick.get(seeds.as_slice());
        let short = &payload[..cut.index(payload.len())];
        for t in MessageType::ALL {
            prop_assert!(decode_command(short, t, MAX).is_err(), "{:?} as {:?}", short, t);
        }
    }

    /// Bytes after a command refuse it, whatever they are.
    #[test]
    fn bytes_after_a_command_refuse_it(
        pick in any::<proptest::sample::Index>(),
        tail in proptest::collection::vec(any::<u8>(), 1..16),
    ) {
        let seeds = seeds();
        let mut payload = pick.get(seeds.as_slice()).clone();
        let whole: Vec<bool> = MessageType::ALL.iter().map(|t| decode_command(&payload, *t, MAX).is_ok()).collect();
        payload.extend_from_slice(&tail);
        for (t, was_ok) in MessageType::ALL.iter().zip(whole) {
            let r = decode_command(&payload, *t, MAX);
            if was_ok {
                prop_assert!(matches!(r, Err(DecodeError::TrailingBytes(n)) if n == tail.len()), "{:?}", r);
            }
        }
    }

    /// What decodes, encoded as the daemon encodes messages and decoded again as the same
    /// type, is the same message.
    #[test]
    fn a_decoded_command_encoded_again_decodes_the_same(payload in mutated(seeds())) {
        for t in MessageType::ALL {
            let Ok(c) = decode_command(&payload, t, MAX) else { continue };
            let mut again = Vec::new();
            c.message.encode_into(&mut again).expect("encode");
            // NavSatFix and BatteryState fill what a command leaves out with NaN ("unknown"),
            // which a command may not send itself.
            let value = rmpv::decode::read_value(&mut &again[..]).expect("own encoding");
            if first_non_finite(&value, &mut String::new()).is_some() {
                continue;
            }
            let back = decode_command(&again, t, MAX);
            prop_assert!(back.is_ok(), "{:?} re-encoded as {:?}: {:?}", t, again, back);
            let back = back.expect("checked");
            prop_assert_eq!(format!("{:?}", back.message), format!("{:?}", c.message));
        }
    }
}
