//! Fuzz target for the line framer: arbitrary bytes in arbitrary chunks against a plain
//! model of what it must do, with the held-back bytes never above the cap.

use super::*;
use crate::fuzzing::{config, cuts, noisy_bytes, printable, split};
use proptest::prelude::*;

type Event = Result<Vec<u8>, FramingError>;

/// What the framer must hand out for `data` fed at once, and what it then holds: every
/// terminated piece that is not empty, or an error when it is longer than `max`; the
/// unterminated tail is held if it fits and reported (once) if not.
fn model(data: &[u8], max: usize) -> (Vec<Event>, usize) {
    let mut out = Vec::new();
    let mut pieces: Vec<&[u8]> = data.split(|&b| b == b'\n' || b == b'\r').collect();
    let tail = pieces.pop().unwrap_or_default();
    for p in pieces {
        if p.len() > max {
            out.push(Err(FramingError::TooLong { max }));
        } else if !p.is_empty() {
            out.push(Ok(p.to_vec()));
        }
    }
    if tail.len() > max {
        out.push(Err(FramingError::TooLong { max }));
        (out, 0)
    } else {
        (out, tail.len())
    }
}

proptest! {
    #![proptest_config(config(10_000))]

    /// Chunking changes neither the lines nor the errors nor their order, and the framer
    /// never holds more than its cap, whatever the device sends.
    #[test]
    fn any_bytes_in_any_chunks_frame_as_the_model_says(
        data in noisy_bytes(600),
        at in cuts(8),
        max in 1usize..80,
    ) {
        let mut f = LineFramer::new(max);
        let mut got = Vec::new();
        for chunk in split(&data, &at) {
            f.push(chunk, |l| got.push(l.map(|b| b.to_vec())));
            prop_assert!(f.pending() <= max, "holds {} bytes, cap {}", f.pending(), max);
        }
        let (want, pending) = model(&data, max);
        prop_assert_eq!(got, want);
        prop_assert_eq!(f.pending(), pending);
    }

    /// A line far beyond the cap, fed in pieces of any size, is one error, holds nothing,
    /// and the next line after its end comes through.
    #[test]
    fn an_overlong_line_is_one_error_and_framing_resyncs(
        junk in printable(100..3000),
        at in cuts(16),
        max in 1usize..64,
    ) {
        let mut data = junk;
        data.extend_from_slice(b"\r\nok=1\n");
        let mut f = LineFramer::new(max);
        let mut got = Vec::new();
        for chunk in split(&data, &at) {
            f.push(chunk, |l| got.push(l.map(|b| b.to_vec())));
            prop_assert!(f.pending() <= max);
        }
        let ok = if max >= 4 { vec![Ok(b"ok=1".to_vec())] } else { vec![Err(FramingError::TooLong { max })] };
        let mut want = vec![Err(FramingError::TooLong { max })];
        want.extend(ok);
        prop_assert_eq!(got, want);
    }
}
