//! The slcan (Lawicel) serial CAN protocol, sans-IO: CANable, USBtin and similar adapters.
//! Setup (`C`, `S0`–`S8`, `O`), received frames `t`/`T`/`r`/`R` with or without the 16-bit
//! millisecond timestamp, transmit encoding, the adapter's BEL error replies, and resync on
//! garbage.

use crate::protocols::can::CanFrame;
use std::fmt::Write;
use thiserror::Error;

/// The longest slcan line (`T` + 8 id + 1 dlc + 16 data + 4 timestamp), with room to
/// spare: a longer one is discarded up to its line end and counted.
pub const MAX_LINE: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SlcanError {
    #[error("the adapter refused a command (BEL)")]
    Refused,
    #[error("not an slcan frame: {0}")]
    Garbage(String),
    #[error("slcan frame {line}: {reason}")]
    Malformed { line: String, reason: &'static str },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlcanEvent {
    Frame {
        frame: CanFrame,
        /// Adapter timestamp in ms (wraps at 60000), when timestamps are on.
        timestamp_ms: Option<u16>,
    },
    /// `\r` alone: the adapter accepted a command.
    Ok,
    /// `z\r` / `Z\r`: the adapter queued a frame we sent.
    Sent,
}

/// The `S` code for a bitrate.
pub fn bitrate_code(bitrate: u32) -> Option<u8> {
    Some(match bitrate {
        10_000 => 0,
        20_000 => 1,
        50_000 => 2,
        100_000 => 3,
        125_000 => 4,
        250_000 => 5,
        500_000 => 6,
        800_000 => 7,
        1_000_000 => 8,
        _ => return None,
    })
}

/// Close, set the bitrate, open: what an adapter needs after it is plugged in (closing
/// first makes the sequence work whatever state the adapter was left in).
pub fn setup(bitrate: u32) -> Option<Vec<u8>> {
    let code = bitrate_code(bitrate)?;
    Some(format!("C\rS{code}\rO\r").into_bytes())
}

/// The transmit line for a frame.
pub fn encode(frame: &CanFrame) -> Vec<u8> {
    let mut s = String::with_capacity(MAX_LINE);
    let kind = match (frame.extended, frame.rtr) {
        (false, false) => 't',
        (true, false) => 'T',
        (false, true) => 'r',
        (true, true) => 'R',
    };
    s.push(kind);
    if frame.extended {
        let _ = write!(s, "{:08X}", frame.id);
    } else {
        let _ = write!(s, "{:03X}", frame.id);
    }
    // A remote frame has no data but asks for `dlc` bytes.
    let dlc = if frame.rtr {
        frame.dlc.min(8) as usize
    } else {
        frame.data.len().min(8)
    };
    let _ = write!(s, "{dlc:X}");
    if !frame.rtr {
        for b in &frame.data[..dlc] {
            let _ = write!(s, "{b:02X}");
        }
    }
    s.push('\r');
    s.into_bytes()
}

fn hex(b: &[u8]) -> Option<u32> {
    // `from_str_radix` also takes a leading `+`, which is no hex digit: `t+12...` is
    // garbage, not frame 0x12.
    if !b.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let s = std::str::from_utf8(b).ok()?;
    u32::from_str_radix(s, 16).ok()
}

fn parse_frame(line: &[u8]) -> Result<SlcanEvent, SlcanError> {
    let shown = || String::from_utf8_lossy(line).into_owned();
    let bad = |reason| SlcanError::Malformed {
        line: shown(),
        reason,
    };
    let (extended, rtr) = match line[0] {
        b't' => (false, false),
        b'T' => (true, false),
        b'r' => (false, true),
        b'R' => (true, true),
        _ => return Err(SlcanError::Garbage(shown())),
    };
    let id_len = if extended { 8 } else { 3 };
    if line.len() < 1 + id_len + 1 {
        return Err(bad("too short"));
    }
    let id = hex(&line[1..1 + id_len]).ok_or_else(|| bad("identifier is not hex"))?;
    if (!extended && id > 0x7FF) || id > 0x1FFF_FFFF {
        return Err(bad("identifier out of range"));
    }
    let dlc = hex(&line[1 + id_len..2 + id_len]).ok_or_else(|| bad("length is not hex"))? as usize;
    if dlc > 8 {
        return Err(bad("length above 8"));
    }
    let data_start = 2 + id_len;
    let data_len = if rtr { 0 } else { dlc * 2 };
    let rest = &line[data_start..];
    let timestamp_ms = match rest.len().checked_sub(data_len) {
        Some(0) => None,
        Some(4) => Some(hex(&rest[data_len..]).ok_or_else(|| bad("timestamp is not hex"))? as u16),
        _ => return Err(bad("length does not match the data")),
    };
    let mut data = Vec::with_capacity(data_len / 2);
    for i in 0..data_len / 2 {
        let b = hex(&rest[2 * i..2 * i + 2]).ok_or_else(|| bad("data is not hex"))?;
        data.push(b as u8);
    }
    Ok(SlcanEvent::Frame {
        frame: CanFrame {
            id,
            extended,
            rtr,
            fd: false,
            dlc: dlc as u8,
            data,
        },
        timestamp_ms,
    })
}

/// Splits adapter output into events.
#[derive(Debug, Default)]
pub struct SlcanDecoder {
    buf: Vec<u8>,
    discarding: bool,
}

impl SlcanDecoder {
    pub fn reset(&mut self) {
        self.buf.clear();
        self.discarding = false;
    }

    /// Bytes of an unfinished line, at most [`MAX_LINE`].
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    pub fn push(&mut self, bytes: &[u8], mut out: impl FnMut(Result<SlcanEvent, SlcanError>)) {
        for &b in bytes {
            match b {
                0x07 => {
                    self.buf.clear();
                    self.discarding = false;
                    out(Err(SlcanError::Refused));
                }
                b'\r' | b'\n' => {
                    if self.discarding {
                        self.discarding = false;
                        self.buf.clear();
                        continue;
                    }
                    let line = std::mem::take(&mut self.buf);
                    match line.as_slice() {
                        [] if b == b'\r' => out(Ok(SlcanEvent::Ok)),
                        [] => {}
                        [b'z'] | [b'Z'] => out(Ok(SlcanEvent::Sent)),
                        l => out(parse_frame(l)),
                    }
                    self.buf = line;
                    self.buf.clear();
                }
                _ => {
                    if self.discarding {
                        continue;
                    }
                    if self.buf.len() >= MAX_LINE {
                        out(Err(SlcanError::Garbage(format!(
                            "{}… (no line end within {MAX_LINE} bytes)",
                            String::from_utf8_lossy(&self.buf[..8])
                        ))));
                        self.buf.clear();
                        self.discarding = true;
                    } else {
                        self.buf.push(b);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn events(input: &[u8]) -> Vec<Result<SlcanEvent, SlcanError>> {
        let mut d = SlcanDecoder::default();
        let mut out = Vec::new();
        d.push(input, |e| out.push(e));
        out
    }

    fn frame(id: u32, extended: bool, data: &[u8]) -> CanFrame {
        CanFrame {
            id,
            extended,
            dlc: data.len() as u8,
            data: data.to_vec(),
            ..CanFrame::default()
        }
    }

    #[test]
    fn frames_with_and_without_timestamps_decode() {
        let e = events(b"t1232DEAD\rT1ABCDEF03010203\rt7FF0\rt0211FF1A2B\rr1234\rR000000012\r");
        assert_eq!(
            e,
            vec![
                Ok(SlcanEvent::Frame {
                    frame: frame(0x123, false, &[0xDE, 0xAD]),
                    timestamp_ms: None
                }),
                Ok(SlcanEvent::Frame {
                    frame: frame(0x1ABCDEF0, true, &[1, 2, 3]),
                    timestamp_ms: None
                }),
                Ok(SlcanEvent::Frame {
                    frame: frame(0x7FF, false, &[]),
                    timestamp_ms: None
                }),
                Ok(SlcanEvent::Frame {
                    frame: frame(0x021, false, &[0xFF]),
                    timestamp_ms: Some(0x1A2B)
                }),
                Ok(SlcanEvent::Frame {
                    frame: CanFrame {
                        id: 0x123,
                        extended: false,
                        rtr: true,
                        fd: false,
                        dlc: 4,
                        data: vec![]
                    },
                    timestamp_ms: None
                }),
                Ok(SlcanEvent::Frame {
                    frame: CanFrame {
                        id: 1,
                        extended: true,
                        rtr: true,
                        fd: false,
                        dlc: 2,
                        data: vec![]
                    },
                    timestamp_ms: None
                }),
            ]
        );
    }

    #[test]
    fn replies_errors_and_garbage_are_told_apart_and_framing_resyncs() {
        let e = events(b"\r\x07z\rhello\rt12\rt8001\rt1239\r\x00\xff\xfet1230\r");
        assert_eq!(e[0], Ok(SlcanEvent::Ok));
        assert_eq!(e[1], Err(SlcanError::Refused));
        assert_eq!(e[2], Ok(SlcanEvent::Sent));
        assert!(matches!(e[3], Err(SlcanError::Garbage(_))));
        assert!(matches!(
            e[4],
            Err(SlcanError::Malformed {
                reason: "too short",
                ..
            })
        ));
        assert!(matches!(
            e[5],
            Err(SlcanError::Malformed {
                reason: "identifier out of range",
                ..
            })
        ));
        assert!(matches!(
            e[6],
            Err(SlcanError::Malformed {
                reason: "length above 8",
                ..
            })
        ));
        // Binary junk glued to a frame spoils that line; the next one decodes.
        assert!(e[7].is_err());
        let e = events(b"\x00\xff\xfe\rt1230\r");
        assert_eq!(
            e.last(),
            Some(&Ok(SlcanEvent::Frame {
                frame: frame(0x123, false, &[]),
                timestamp_ms: None
            }))
        );
    }

    /// Found by fuzzing: `u32::from_str_radix` takes a leading `+`, so `r+aA0` was read as
    /// a remote frame for id 0xAA.
    #[test]
    fn a_plus_sign_is_not_a_hex_digit() {
        for line in [
            &b"r+aA0\r"[..],
            b"t1232+F+F\r",
            b"t0211FF+A2B\r",
            b"t12+1FF\r",
        ] {
            let e = events(line);
            assert!(
                matches!(e[..], [Err(SlcanError::Malformed { .. })]),
                "{}: {e:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn transmit_lines_and_setup_are_lawicel() {
        assert_eq!(
            encode(&frame(0x250, false, &[0x01, 0xF4, 0xFE, 0x0C])),
            b"t250401F4FE0C\r"
        );
        assert_eq!(encode(&frame(0x18FEF100, true, &[0xAA])), b"T18FEF1001AA\r");
        assert_eq!(setup(500_000).unwrap(), b"C\rS6\rO\r");
        assert_eq!(setup(1_000_000).unwrap(), b"C\rS8\rO\r");
        assert_eq!(setup(333_333), None);
        let rtr = CanFrame {
            id: 0x123,
            extended: false,
            rtr: true,
            fd: false,
            dlc: 4,
            data: vec![],
        };
        assert_eq!(encode(&rtr), b"r1234\r");
    }

    proptest! {
        #[test]
        fn encoded_frames_decode_to_themselves(id in 0u32..0x2000_0000, extended in any::<bool>(), data in proptest::collection::vec(any::<u8>(), 0..=8)) {
            let f = frame(if extended { id } else { id & 0x7FF }, extended, &data);
            prop_assert_eq!(events(&encode(&f)), vec![Ok(SlcanEvent::Frame { frame: f, timestamp_ms: None })]);
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..1024)) {
            let _ = events(&data);
        }
    }
}
