//! Fuzz target for the slcan decoder: any bytes in any chunks give the same events and
//! never hold more than [`MAX_LINE`]; a line is read as a frame only when it is exactly a
//! frame's Lawicel text (so garbage is never taken for data); frames with timestamps
//! survive any chunking; a line without end is one error and the next frame is read.

use super::*;
use crate::fuzzing::{config, cuts, mutated, noisy_bytes, printable, split};
use proptest::prelude::*;
use std::sync::Arc;

type Event = Result<SlcanEvent, SlcanError>;

fn events(chunks: &[&[u8]]) -> Result<Vec<Event>, TestCaseError> {
    let mut d = SlcanDecoder::default();
    let mut out = Vec::new();
    for c in chunks {
        d.push(c, |e| out.push(e));
        prop_assert!(d.pending() <= MAX_LINE, "holds {} bytes", d.pending());
    }
    Ok(out)
}

fn frame() -> impl Strategy<Value = CanFrame> {
    (
        any::<bool>(),
        any::<bool>(),
        0u32..0x2000_0000,
        proptest::collection::vec(any::<u8>(), 0..=8),
        0u8..=8,
    )
        .prop_map(|(extended, rtr, id, data, dlc)| CanFrame {
            id: if extended { id } else { id & 0x7FF },
            extended,
            rtr,
            fd: false,
            dlc: if rtr { dlc } else { data.len() as u8 },
            data: if rtr { Vec::new() } else { data },
        })
}

/// Lines as adapters send them, the mutations' seeds.
fn seeds() -> Arc<Vec<Vec<u8>>> {
    let lines: [&[u8]; 6] = [
        b"t1232DEAD\rT1ABCDEF03010203\r",
        b"t7FF0\rt0211FF1A2B\rr1234\rR000000012\r",
        b"\r\x07z\rZ\r",
        b"t12380011223344556677\rT18FEF1008AABBCCDDEEFF00112233\r",
        b"t5A13fe\rt00181234567890abcdef\r",
        b"C\rS6\rO\r",
    ];
    Arc::new(lines.iter().map(|l| l.to_vec()).collect())
}

proptest! {
    #![proptest_config(config(10_000))]

    /// Any bytes, and mutated adapter output, give the same events in any chunks.
    #[test]
    fn any_bytes_give_the_same_events_in_any_chunks(
        data in prop_oneof![noisy_bytes(400), mutated(seeds())],
        at in cuts(12),
    ) {
        let whole = events(&[&data])?;
        prop_assert_eq!(events(&split(&data, &at))?, whole);
    }

    /// A line decodes as a frame only if it is that frame's own text (hex digits in either
    /// case, an optional 4-digit timestamp): nothing else is taken for data.
    #[test]
    fn only_a_frames_exact_text_decodes_as_that_frame(
        line in "[tTrR][0-9a-fA-F+ x-]{0,30}",
    ) {
        let mut input = line.clone().into_bytes();
        input.push(b'\r');
        for e in events(&[&input])? {
            let Ok(SlcanEvent::Frame { frame, timestamp_ms }) = e else { continue };
            let text = String::from_utf8(encode(&frame)).expect("ascii");
            let text = text.trim_end_matches('\r');
            let body = match timestamp_ms {
                Some(ts) => {
                    let (body, stamp) = line.split_at(line.len() - 4);
                    prop_assert_eq!(u16::from_str_radix(stamp, 16).ok(), Some(ts));
                    prop_assert!(stamp.bytes().all(|b| b.is_ascii_hexdigit()), "{:?}", line);
                    body
                }
                None => &line[..],
            };
            prop_assert_eq!(&body[..1], &text[..1]);
            prop_assert_eq!(body[1..].to_ascii_uppercase(), &text[1..], "line {:?}", line);
        }
    }

    /// Frames with and without timestamps, between the adapter's replies, in any chunks.
    #[test]
    fn frames_with_timestamps_decode_in_any_chunks(
        frames in proptest::collection::vec((frame(), proptest::option::of(0u16..60_000)), 1..8),
        at in cuts(12),
    ) {
        let mut data = Vec::new();
        let mut want = Vec::new();
        for (f, ts) in &frames {
            let mut line = encode(f);
            line.pop();
            if let Some(ts) = ts {
                line.extend_from_slice(format!("{ts:04X}").as_bytes());
            }
            line.extend_from_slice(b"\rz\r");
            data.extend_from_slice(&line);
            want.push(Ok(SlcanEvent::Frame { frame: f.clone(), timestamp_ms: *ts }));
            want.push(Ok(SlcanEvent::Sent));
        }
        prop_assert_eq!(events(&split(&data, &at))?, want);
    }

    /// A line without end is one error however long it runs; the frame after it decodes.
    #[test]
    fn a_frame_after_any_overlong_line_is_read(
        junk in printable(MAX_LINE + 1..2_000),
        f in frame(),
        at in cuts(12),
    ) {
        let mut data = junk;
        data.push(b'\r');
        data.extend_from_slice(&encode(&f));
        let got = events(&split(&data, &at))?;
        prop_assert_eq!(got.len(), 2, "{:?}", got);
        prop_assert!(matches!(got[0], Err(SlcanError::Garbage(_))));
        prop_assert_eq!(&got[1], &Ok(SlcanEvent::Frame { frame: f, timestamp_ms: None }));
    }
}
