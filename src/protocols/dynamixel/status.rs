//! Status packets, the devices' answers: the error byte they carry, and the streaming
//! parser that cuts them out of whatever the serial port delivers. The parser (through
//! [`Framer`]) resyncs on the header after garbage or a corrupt packet, reports each
//! corrupt packet once, and never holds more than one
//! [`MAX_PACKET`](super::packet::MAX_PACKET).

use super::error::DynamixelError;
#[cfg(test)]
use super::packet::MAX_PACKET;
use super::packet::{unstuff, Framer, Instruction, BROADCAST_ID};
use std::fmt;

/// Bits 0..6 of a status's error byte: why the device did not carry out the instruction
/// (e-Manual, Protocol 2.0, "Status Packet", Error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorNumber {
    ResultFail,
    Instruction,
    Crc,
    DataRange,
    DataLength,
    DataLimit,
    Access,
    /// A number the e-Manual does not define, kept so it can be shown.
    Other(u8),
}

impl ErrorNumber {
    /// The number in bits 0..6 (0 is "no error", which is not an `ErrorNumber`).
    pub fn from_bits(bits: u8) -> Option<Self> {
        Some(match bits & 0x7F {
            0 => return None,
            1 => ErrorNumber::ResultFail,
            2 => ErrorNumber::Instruction,
            3 => ErrorNumber::Crc,
            4 => ErrorNumber::DataRange,
            5 => ErrorNumber::DataLength,
            6 => ErrorNumber::DataLimit,
            7 => ErrorNumber::Access,
            n => ErrorNumber::Other(n),
        })
    }

    pub fn bits(self) -> u8 {
        match self {
            ErrorNumber::ResultFail => 1,
            ErrorNumber::Instruction => 2,
            ErrorNumber::Crc => 3,
            ErrorNumber::DataRange => 4,
            ErrorNumber::DataLength => 5,
            ErrorNumber::DataLimit => 6,
            ErrorNumber::Access => 7,
            ErrorNumber::Other(n) => n & 0x7F,
        }
    }
}

impl fmt::Display for ErrorNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorNumber::ResultFail => f.write_str("result fail: the instruction failed"),
            ErrorNumber::Instruction => f.write_str(
                "instruction error: an undefined instruction, or Action without Reg Write",
            ),
            ErrorNumber::Crc => f.write_str("CRC error: the device got a corrupt packet"),
            ErrorNumber::DataRange => {
                f.write_str("data range error: the value is outside the item's range")
            }
            ErrorNumber::DataLength => {
                f.write_str("data length error: fewer bytes than the item holds")
            }
            ErrorNumber::DataLimit => {
                f.write_str("data limit error: the value is outside the item's limit")
            }
            ErrorNumber::Access => f.write_str(
                "access error: the item is read-only, write-only or undefined, or EEPROM \
                 is locked while torque is on",
            ),
            ErrorNumber::Other(n) => {
                write!(f, "error number {n}, which the e-Manual does not define")
            }
        }
    }
}

/// A status's error byte. `alert` (bit 7) says the device has a hardware error, to be
/// read from its Hardware Error Status item; the instruction itself may still have been
/// carried out. `number` says it was not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatusError {
    pub alert: bool,
    pub number: Option<ErrorNumber>,
}

impl StatusError {
    pub const NONE: StatusError = StatusError {
        alert: false,
        number: None,
    };

    pub fn from_byte(byte: u8) -> Self {
        StatusError {
            alert: byte & 0x80 != 0,
            number: ErrorNumber::from_bits(byte),
        }
    }

    pub fn byte(self) -> u8 {
        (self.alert as u8) << 7 | self.number.map_or(0, ErrorNumber::bits)
    }
}

impl fmt::Display for StatusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.number {
            Some(n) => n.fmt(f)?,
            None if !self.alert => return f.write_str("no error"),
            None => {}
        }
        if self.alert {
            if self.number.is_some() {
                f.write_str("; ")?;
            }
            f.write_str("alert: hardware error, see the device's Hardware Error Status")?;
        }
        Ok(())
    }
}

/// One status packet, unstuffed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub id: u8,
    pub error: StatusError,
    /// The parameters after the error byte: a read's data, a ping's model and firmware.
    pub params: Vec<u8>,
}

impl Status {
    /// The device refused the instruction when its error number is set; an alert alone
    /// still carries data.
    pub fn check(&self) -> Result<&Self, DynamixelError> {
        match self.error.number {
            Some(_) => Err(DynamixelError::Device {
                id: self.id,
                error: self.error,
            }),
            None => Ok(self),
        }
    }
}

/// Cuts status packets out of a byte stream fed in arbitrary chunks: a [`Framer`] (which
/// skips garbage and reports bad headers and CRCs) whose packets are read as statuses. A
/// packet that is well formed but not a readable status is reported once as an error.
#[derive(Debug, Default)]
pub struct StatusParser {
    framer: Framer,
}

impl StatusParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Drops partial input, after the port was reopened.
    pub fn reset(&mut self) {
        self.framer.reset();
    }

    /// Bytes held for the next [`push`](Self::push); less than
    /// [`MAX_PACKET`](super::packet::MAX_PACKET).
    pub fn pending(&self) -> usize {
        self.framer.pending()
    }

    /// Feeds `bytes`; each status packet, and each corrupt one, goes to `out` in order.
    pub fn push(&mut self, bytes: &[u8], mut out: impl FnMut(Result<Status, DynamixelError>)) {
        self.framer.push(bytes, |frame| {
            out(frame.and_then(|f| decode(f.id, f.region)))
        });
    }
}

/// The status in a packet from `id` whose CRC matched; `region` is its stuffed
/// instruction, error and parameters.
fn decode(id: u8, region: &[u8]) -> Result<Status, DynamixelError> {
    let malformed = |reason| DynamixelError::Malformed { id, reason };
    let plain = unstuff(region).ok_or_else(|| malformed("its byte stuffing is broken"))?;
    let Some((&instruction, rest)) = plain.split_first() else {
        return Err(malformed("no instruction"));
    };
    if instruction != Instruction::Status.code() {
        return Err(DynamixelError::NotStatus { id, instruction });
    }
    if id == BROADCAST_ID {
        return Err(malformed("a status from the broadcast id"));
    }
    let Some((&error, params)) = rest.split_first() else {
        return Err(malformed("no error byte"));
    };
    Ok(Status {
        id,
        error: StatusError::from_byte(error),
        params: params.to_vec(),
    })
}

/// Everything one parser makes of `chunks` fed in order, checking its bound after each:
/// the tests' and the fuzz target's way to run it.
#[cfg(test)]
pub(super) fn events(chunks: &[&[u8]]) -> Vec<Result<Status, DynamixelError>> {
    let mut p = StatusParser::new();
    let mut out = Vec::new();
    for c in chunks {
        p.push(c, |e| out.push(e));
        assert!(p.pending() < MAX_PACKET, "holds {} bytes", p.pending());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::crc::crc16;
    use super::super::packet::{encode, encode_status, every_split, MAX_LENGTH};
    use super::*;

    type Event = Result<Status, DynamixelError>;

    /// `body` with its CRC appended, however wrong the body is.
    fn with_crc(mut body: Vec<u8>) -> Vec<u8> {
        let crc = crc16(&body);
        body.extend_from_slice(&crc.to_le_bytes());
        body
    }

    fn status(id: u8, error: u8, params: &[u8]) -> Event {
        Ok(Status {
            id,
            error: StatusError::from_byte(error),
            params: params.to_vec(),
        })
    }

    // e-Manual, Protocol 2.0, "Ping" example 2 and "Read" example: status packets.
    const PING_1: &[u8] = &[
        0xFF, 0xFF, 0xFD, 0x00, 0x01, 0x07, 0x00, 0x55, 0x00, 0x06, 0x04, 0x26, 0x65, 0x5D,
    ];
    const PING_2: &[u8] = &[
        0xFF, 0xFF, 0xFD, 0x00, 0x02, 0x07, 0x00, 0x55, 0x00, 0x06, 0x04, 0x26, 0x6F, 0x6D,
    ];
    const READ_1: &[u8] = &[
        0xFF, 0xFF, 0xFD, 0x00, 0x01, 0x08, 0x00, 0x55, 0x00, 0xA6, 0x00, 0x00, 0x00, 0x8C, 0xC0,
    ];

    #[test]
    fn the_emanual_status_packets_parse_and_re_encode_byte_for_byte() {
        let mut all = Vec::new();
        for p in [PING_1, PING_2, READ_1] {
            all.extend_from_slice(p);
        }
        assert_eq!(
            events(&[&all]),
            vec![
                status(1, 0, &[0x06, 0x04, 0x26]),
                status(2, 0, &[0x06, 0x04, 0x26]),
                status(1, 0, &[0xA6, 0, 0, 0]),
            ]
        );
        assert_eq!(
            encode_status(1, StatusError::NONE, &[0x06, 0x04, 0x26]).unwrap(),
            PING_1
        );
        assert_eq!(
            encode_status(1, StatusError::NONE, &[0xA6, 0, 0, 0]).unwrap(),
            READ_1
        );
    }

    #[test]
    fn every_split_of_a_concatenation_gives_the_same_packets() {
        let stuffed = encode_status(7, StatusError::NONE, &[0xFF, 0xFF, 0xFD, 0x10]).unwrap();
        let mut all = Vec::new();
        for p in [PING_1, &stuffed[..], READ_1, PING_2] {
            all.extend_from_slice(p);
        }
        let whole = events(&[&all]);
        assert_eq!(whole.len(), 4);
        for chunks in every_split(&all) {
            assert_eq!(events(&chunks), whole, "{chunks:?}");
        }
    }

    #[test]
    fn garbage_before_and_between_packets_is_skipped() {
        let mut all = vec![0x00, 0xFF, 0x13, 0xFF, 0xFF, 0xFD, 0x55];
        all.extend_from_slice(PING_1);
        all.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFD, 0x01]);
        all.extend_from_slice(READ_1);
        // A header prefix at the very end is held, not reported.
        all.extend_from_slice(&[0xFF, 0xFF, 0xFD]);
        let mut p = StatusParser::new();
        let mut out = Vec::new();
        p.push(&all, |e| out.push(e));
        assert_eq!(
            out,
            vec![
                status(1, 0, &[0x06, 0x04, 0x26]),
                status(1, 0, &[0xA6, 0, 0, 0])
            ]
        );
        assert_eq!(p.pending(), 3);
    }

    #[test]
    fn a_crc_corrupt_packet_is_counted_and_the_next_one_parsed() {
        let mut bad = READ_1.to_vec();
        bad[9] ^= 0x01;
        let mut all = bad.clone();
        all.extend_from_slice(PING_2);
        let got = events(&[&all]);
        assert_eq!(
            got,
            vec![
                Err(DynamixelError::Crc {
                    id: 1,
                    got: 0xC08C,
                    want: crc16(&bad[..bad.len() - 2])
                }),
                status(2, 0, &[0x06, 0x04, 0x26]),
            ]
        );
    }

    /// A corrupt length can make a packet look longer than it is; resyncing one byte on
    /// from its header still finds the packets it swallowed.
    #[test]
    fn a_corrupt_length_does_not_lose_the_packets_after_it() {
        let mut bad = PING_1.to_vec();
        bad[5] = 0x40;
        let mut all = bad;
        all.extend_from_slice(READ_1);
        all.extend_from_slice(&[0u8; 64]);
        let got = events(&[&all]);
        assert!(
            matches!(got[0], Err(DynamixelError::Crc { id: 1, .. })),
            "{got:?}"
        );
        assert_eq!(got[1..], [status(1, 0, &[0xA6, 0, 0, 0])]);
    }

    #[test]
    fn an_impossible_length_or_id_is_a_bad_header() {
        let mut all = vec![0xFF, 0xFF, 0xFD, 0x00, 0x01, 0xFF, 0xFF];
        all.extend_from_slice(&[0xFF, 0xFF, 0xFD, 0x00, 0xFD, 0x04, 0x00]);
        all.extend_from_slice(&[0xFF, 0xFF, 0xFD, 0x00, 0x01, 0x02, 0x00]);
        all.extend_from_slice(PING_1);
        assert_eq!(
            events(&[&all]),
            vec![
                Err(DynamixelError::BadHeader {
                    id: 1,
                    length: 0xFFFF
                }),
                Err(DynamixelError::BadHeader {
                    id: 0xFD,
                    length: 4
                }),
                Err(DynamixelError::BadHeader { id: 1, length: 2 }),
                status(1, 0, &[0x06, 0x04, 0x26]),
            ]
        );
    }

    #[test]
    fn the_largest_length_is_held_and_never_more() {
        let mut p = StatusParser::new();
        let mut out = Vec::new();
        let len = MAX_LENGTH.to_le_bytes();
        p.push(&[0xFF, 0xFF, 0xFD, 0x00, 0x01, len[0], len[1]], |e| {
            out.push(e)
        });
        for _ in 0..100 {
            p.push(&[0x55; 100], |e| out.push(e));
            assert!(p.pending() < MAX_PACKET);
        }
        assert!(matches!(out[0], Err(DynamixelError::Crc { id: 1, .. })));
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn stuffed_status_payloads_are_unstuffed() {
        let params = [0xFF, 0xFF, 0xFD, 0x00, 0xFF, 0xFF, 0xFF, 0xFD];
        let wire = encode_status(3, StatusError::NONE, &params).unwrap();
        assert_eq!(
            &wire[7..wire.len() - 2],
            &[0x55, 0x00, 0xFF, 0xFF, 0xFD, 0xFD, 0x00, 0xFF, 0xFF, 0xFF, 0xFD, 0xFD]
        );
        assert_eq!(u16::from_le_bytes([wire[5], wire[6]]), 14);
        assert_eq!(events(&[&wire]), vec![status(3, 0, &params)]);
    }

    #[test]
    fn a_status_with_a_good_crc_that_cannot_be_read_is_malformed() {
        let cases: [(&[u8], u8, &str); 3] = [
            // `FF FF FD 01` in the body: a sender that did not stuff, CRC'd correctly.
            (
                &[
                    0xFF, 0xFF, 0xFD, 0x00, 0x03, 0x08, 0x00, 0x55, 0x00, 0xFF, 0xFF, 0xFD, 0x01,
                ],
                3,
                "its byte stuffing is broken",
            ),
            (
                &[0xFF, 0xFF, 0xFD, 0x00, 0x01, 0x03, 0x00, 0x55],
                1,
                "no error byte",
            ),
            (
                &[0xFF, 0xFF, 0xFD, 0x00, 0xFE, 0x04, 0x00, 0x55, 0x00],
                0xFE,
                "a status from the broadcast id",
            ),
        ];
        for (body, id, reason) in cases {
            let wire = with_crc(body.to_vec());
            assert_eq!(
                events(&[&wire]),
                vec![Err(DynamixelError::Malformed { id, reason })],
                "{reason}"
            );
        }
    }

    #[test]
    fn an_echoed_instruction_is_not_a_status() {
        let ping = encode(1, Instruction::Ping, &[]).unwrap();
        let mut all = ping;
        all.extend_from_slice(PING_1);
        assert_eq!(
            events(&[&all]),
            vec![
                Err(DynamixelError::NotStatus {
                    id: 1,
                    instruction: 0x01
                }),
                status(1, 0, &[0x06, 0x04, 0x26]),
            ]
        );
    }

    #[test]
    fn the_error_byte_and_alert_bit_decode() {
        // Write status with Data Range Error and the alert bit: ERR = 0x84.
        let wire = encode_status(1, StatusError::from_byte(0x84), &[]).unwrap();
        let got = events(&[&wire]);
        let Ok(s) = &got[0] else { panic!("{got:?}") };
        assert_eq!(
            s.error,
            StatusError {
                alert: true,
                number: Some(ErrorNumber::DataRange)
            }
        );
        assert_eq!(
            s.error.to_string(),
            "data range error: the value is outside the item's range; alert: hardware \
             error, see the device's Hardware Error Status"
        );
        assert!(s.check().is_err());
        let alert_only = StatusError::from_byte(0x80);
        assert_eq!(
            alert_only.to_string(),
            "alert: hardware error, see the device's Hardware Error Status"
        );
        assert_eq!(StatusError::NONE.to_string(), "no error");
        for byte in 0..=255u8 {
            assert_eq!(StatusError::from_byte(byte).byte(), byte);
        }
        assert_eq!(ErrorNumber::from_bits(7), Some(ErrorNumber::Access));
        assert_eq!(ErrorNumber::from_bits(9), Some(ErrorNumber::Other(9)));
    }
}
