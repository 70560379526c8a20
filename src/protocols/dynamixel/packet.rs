//! Packet framing, both ways: header `FF FF FD 00`, id, length (u16 LE), the instruction
//! and its parameters byte-stuffed, and the CRC over all of it. Byte stuffing (an `FD`
//! after every `FF FF FD` from the instruction on) keeps the header out of the body, so a
//! reader that lost its place finds the next packet by the header alone, which is what
//! [`Framer`] does for the status parser and for a simulated device's request parser.

use super::crc::crc16;
use super::error::DynamixelError;
use super::status::StatusError;

pub const HEADER: [u8; 4] = [0xFF, 0xFF, 0xFD, 0x00];
/// Every device executes a packet sent to this id; only Ping, Sync Read and Bulk Read are
/// answered.
pub const BROADCAST_ID: u8 = 0xFE;
/// Devices have ids 0 to 252; 253 and 255 would look like a header.
pub const MAX_DEVICE_ID: u8 = 0xFC;
/// The largest packet on the wire, stuffing included: DynamixelSDK's `RXPACKET_MAX_LEN`.
/// It bounds what the status parser holds, so a corrupt length never makes it wait for
/// (or keep) more than one such packet.
pub const MAX_PACKET: usize = 1024;
/// Header, id and length: the bytes before the length's count starts.
pub const PREFIX: usize = 7;
/// The largest LENGTH field: instruction, stuffed parameters and CRC of a
/// [`MAX_PACKET`]-byte packet.
pub const MAX_LENGTH: u16 = (MAX_PACKET - PREFIX) as u16;
/// The smallest LENGTH field: an instruction and the CRC.
pub const MIN_LENGTH: u16 = 3;

/// The instructions botbus sends, and the status that answers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instruction {
    Ping,
    Read,
    Write,
    Reboot,
    Status,
    SyncRead,
    SyncWrite,
    BulkRead,
    BulkWrite,
}

impl Instruction {
    pub const fn code(self) -> u8 {
        match self {
            Instruction::Ping => 0x01,
            Instruction::Read => 0x02,
            Instruction::Write => 0x03,
            Instruction::Reboot => 0x08,
            Instruction::Status => 0x55,
            Instruction::SyncRead => 0x82,
            Instruction::SyncWrite => 0x83,
            Instruction::BulkRead => 0x92,
            Instruction::BulkWrite => 0x93,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0x01 => Instruction::Ping,
            0x02 => Instruction::Read,
            0x03 => Instruction::Write,
            0x08 => Instruction::Reboot,
            0x55 => Instruction::Status,
            0x82 => Instruction::SyncRead,
            0x83 => Instruction::SyncWrite,
            0x92 => Instruction::BulkRead,
            0x93 => Instruction::BulkWrite,
            _ => return None,
        })
    }
}

/// Appends `region` (instruction and parameters) to `out` with an `FD` after every
/// `FF FF FD`. The run of `FF`s is counted rather than matched as three bytes, so
/// `FF FF FF FD` is stuffed too.
pub fn stuff(region: &[u8], out: &mut Vec<u8>) {
    let mut ffs = 0usize;
    for &b in region {
        out.push(b);
        match b {
            0xFF => ffs += 1,
            0xFD if ffs >= 2 => {
                out.push(0xFD);
                ffs = 0;
            }
            _ => ffs = 0,
        }
    }
}

/// `region` with its stuffing removed, or `None` when an `FF FF FD` is not followed by
/// its `FD`. Only what [`stuff`] makes is accepted, so a packet unstuffs one way only and
/// re-encodes to the bytes it came from.
pub fn unstuff(region: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(region.len());
    let mut ffs = 0usize;
    let mut stuffed_next = false;
    for &b in region {
        if stuffed_next {
            if b != 0xFD {
                return None;
            }
            stuffed_next = false;
            continue;
        }
        out.push(b);
        match b {
            0xFF => ffs += 1,
            0xFD if ffs >= 2 => {
                stuffed_next = true;
                ffs = 0;
            }
            _ => ffs = 0,
        }
    }
    (!stuffed_next).then_some(out)
}

/// The bytes of one packet to `id`: header, id, length, stuffed `instruction` and
/// `params`, CRC. `id` is taken as given; the builders in
/// [`instruction`](super::instruction) check it.
pub fn encode(id: u8, instruction: Instruction, params: &[u8]) -> Result<Vec<u8>, DynamixelError> {
    frame(id, instruction.code(), None, params)
}

/// A status packet from `id`, as a device sends it: for tests and simulators.
pub fn encode_status(id: u8, error: StatusError, params: &[u8]) -> Result<Vec<u8>, DynamixelError> {
    frame(id, Instruction::Status.code(), Some(error.byte()), params)
}

fn frame(
    id: u8,
    instruction: u8,
    error: Option<u8>,
    params: &[u8],
) -> Result<Vec<u8>, DynamixelError> {
    // Stuffing at most adds a byte per three, so checking the worst case first keeps a
    // huge parameter list from being copied before it is refused.
    let plain = PREFIX + 1 + error.is_some() as usize + params.len() + 2;
    if plain > MAX_PACKET {
        return Err(DynamixelError::TooLong { bytes: plain });
    }
    let mut out = Vec::with_capacity(plain + plain / 3);
    out.extend_from_slice(&HEADER);
    out.push(id);
    out.extend_from_slice(&[0, 0]);
    let mut region = Vec::with_capacity(2 + params.len());
    region.push(instruction);
    region.extend(error);
    region.extend_from_slice(params);
    stuff(&region, &mut out);
    let bytes = out.len() + 2;
    if bytes > MAX_PACKET {
        return Err(DynamixelError::TooLong { bytes });
    }
    let length = (bytes - PREFIX) as u16;
    out[5..7].copy_from_slice(&length.to_le_bytes());
    let crc = crc16(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// One packet cut from a byte stream by a [`Framer`], its header and CRC checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub id: u8,
    /// The stuffed bytes between the length and the CRC: the instruction, then (in a
    /// status) the error byte, then the parameters.
    pub region: &'a [u8],
}

/// Cuts packets, whatever their instruction, out of a byte stream fed in arbitrary
/// chunks: the framing shared by the status parser and the request parser.
///
/// Garbage between packets is skipped silently (a bus has turnaround noise). A header
/// whose id or length no packet has and a CRC that does not match are each reported
/// once; after a corrupt packet the search for the next header starts one byte after the
/// corrupt one's header, since its length may be what was corrupted.
#[derive(Debug)]
pub struct Framer {
    /// Unparsed input: a header prefix, or a packet waiting for its last bytes. Never
    /// longer than [`MAX_PACKET`]; allocated once at that size.
    buf: Vec<u8>,
}

impl Default for Framer {
    fn default() -> Self {
        Framer {
            buf: Vec::with_capacity(MAX_PACKET),
        }
    }
}

impl Framer {
    /// Drops partial input, after the port was reopened.
    pub fn reset(&mut self) {
        self.buf.clear();
    }

    /// Bytes held for the next [`push`](Self::push); less than [`MAX_PACKET`].
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Feeds `bytes`; each packet, and each corrupt one, goes to `out` in order.
    pub fn push(&mut self, bytes: &[u8], mut out: impl FnMut(Result<Frame<'_>, DynamixelError>)) {
        let mut rest = bytes;
        while !rest.is_empty() {
            // Taking no more than fits keeps the buffer at one packet whatever the chunk.
            let room = MAX_PACKET - self.buf.len();
            let (now, later) = rest.split_at(room.min(rest.len()));
            self.buf.extend_from_slice(now);
            rest = later;
            self.parse(&mut out);
        }
    }

    fn parse(&mut self, out: &mut impl FnMut(Result<Frame<'_>, DynamixelError>)) {
        let mut start = 0;
        loop {
            let rest = &self.buf[start..];
            let Some(at) = rest.windows(HEADER.len()).position(|w| w == HEADER) else {
                // Keep a tail that may be the start of a header cut by the chunk.
                start += rest.len() - header_prefix(rest);
                break;
            };
            start += at;
            let p = &self.buf[start..];
            let (Some(&id), Some(&lo), Some(&hi)) = (p.get(4), p.get(5), p.get(6)) else {
                break;
            };
            let length = u16::from_le_bytes([lo, hi]);
            let id_ok = id <= MAX_DEVICE_ID || id == BROADCAST_ID;
            if !id_ok || !(MIN_LENGTH..=MAX_LENGTH).contains(&length) {
                out(Err(DynamixelError::BadHeader { id, length }));
                start += 1;
                continue;
            }
            let total = PREFIX + length as usize;
            let Some(packet) = p.get(..total) else {
                break;
            };
            let (body, tail) = packet.split_at(total - 2);
            let got = u16::from_le_bytes([tail[0], tail[1]]);
            let want = crc16(body);
            if got != want {
                out(Err(DynamixelError::Crc { id, got, want }));
                start += 1;
                continue;
            }
            out(Ok(Frame {
                id,
                region: &body[PREFIX..],
            }));
            start += total;
        }
        self.buf.drain(..start);
    }
}

/// How many bytes at the end of `bytes` are the first bytes of a header.
fn header_prefix(bytes: &[u8]) -> usize {
    (1..HEADER.len())
        .rev()
        .find(|&n| bytes.ends_with(&HEADER[..n]))
        .unwrap_or(0)
}

/// Every way to cut `bytes` into three chunks (empty ones included), and one byte at a
/// time: a stream parser's tests, since where a read ends must not matter.
#[cfg(test)]
pub(super) fn every_split(bytes: &[u8]) -> Vec<Vec<&[u8]>> {
    let mut out = Vec::new();
    for i in 0..=bytes.len() {
        for j in i..=bytes.len() {
            out.push(vec![&bytes[..i], &bytes[i..j], &bytes[j..]]);
        }
    }
    out.push(bytes.chunks(1).collect());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn stuffed(region: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        stuff(region, &mut out);
        out
    }

    /// e-Manual, Protocol 2.0, "Packet Process": "When the pattern 0xFF 0xFF 0xFD
    /// appears, add Byte Stuffing (0xFD)" over the instruction and parameter fields.
    #[test]
    fn every_ff_ff_fd_gets_an_fd_and_nothing_else_does() {
        assert_eq!(stuffed(&[0xFF, 0xFF, 0xFD]), [0xFF, 0xFF, 0xFD, 0xFD]);
        assert_eq!(
            stuffed(&[0xFF, 0xFF, 0xFD, 0xFD]),
            [0xFF, 0xFF, 0xFD, 0xFD, 0xFD]
        );
        assert_eq!(
            stuffed(&[0xFF, 0xFF, 0xFF, 0xFD]),
            [0xFF, 0xFF, 0xFF, 0xFD, 0xFD]
        );
        assert_eq!(
            stuffed(&[0xFF, 0xFF, 0xFD, 0xFF, 0xFF, 0xFD, 0x01]),
            [0xFF, 0xFF, 0xFD, 0xFD, 0xFF, 0xFF, 0xFD, 0xFD, 0x01]
        );
        for plain in [
            &[0xFF, 0xFD, 0xFD][..],
            &[0xFF, 0x00, 0xFF, 0xFD],
            &[0xFD, 0xFF, 0xFF],
        ] {
            assert_eq!(stuffed(plain), plain);
        }
    }

    #[test]
    fn unstuffing_refuses_a_missing_stuffing_byte() {
        assert_eq!(
            unstuff(&[0xFF, 0xFF, 0xFD, 0xFD]),
            Some(vec![0xFF, 0xFF, 0xFD])
        );
        assert_eq!(unstuff(&[0xFF, 0xFF, 0xFD]), None);
        assert_eq!(unstuff(&[0xFF, 0xFF, 0xFD, 0x00]), None);
        assert_eq!(unstuff(&[0xFF, 0xFF, 0xFF, 0xFD, 0x01]), None);
    }

    /// The stuffed length is what LENGTH counts and the stuffed bytes are what the CRC
    /// covers ("Processing Order of Transmission", steps 2 and 3). The e-Manual gives no
    /// byte example of a stuffed packet, so this one is built by hand: a Write of
    /// 0x00FDFFFF to Goal Position (116) of id 1, whose data holds `FF FF FD`.
    #[test]
    fn a_stuffed_write_counts_and_checks_the_stuffed_bytes() {
        let got = encode(1, Instruction::Write, &[0x74, 0x00, 0xFF, 0xFF, 0xFD, 0x00]).unwrap();
        let body = [
            0xFF, 0xFF, 0xFD, 0x00, 0x01, 0x0A, 0x00, 0x03, 0x74, 0x00, 0xFF, 0xFF, 0xFD, 0xFD,
            0x00,
        ];
        assert_eq!(&got[..body.len()], &body);
        assert_eq!(got.len(), body.len() + 2);
        assert_eq!(got[body.len()..], crc16(&body).to_le_bytes());
    }

    #[test]
    fn packets_over_the_limit_are_refused() {
        let params = vec![0u8; MAX_PACKET - PREFIX - 3];
        assert_eq!(
            encode(1, Instruction::Write, &params).map(|p| p.len()),
            Ok(MAX_PACKET)
        );
        let params = vec![0u8; MAX_PACKET - PREFIX - 2];
        assert!(matches!(
            encode(1, Instruction::Write, &params),
            Err(DynamixelError::TooLong { .. })
        ));
        // Stuffing can push a packet that fits plain over the limit.
        let mut params = vec![0u8; MAX_PACKET - PREFIX - 3];
        params[..3].copy_from_slice(&[0xFF, 0xFF, 0xFD]);
        assert_eq!(
            encode(1, Instruction::Write, &params),
            Err(DynamixelError::TooLong {
                bytes: MAX_PACKET + 1
            })
        );
    }

    #[test]
    fn instruction_codes_round_trip() {
        for code in 0..=255u8 {
            if let Some(i) = Instruction::from_code(code) {
                assert_eq!(i.code(), code);
            }
        }
    }

    proptest! {
        #[test]
        fn unstuffing_undoes_stuffing(region in proptest::collection::vec(prop_oneof![Just(0xFFu8), Just(0xFD), any::<u8>()], 0..64)) {
            let s = stuffed(&region);
            prop_assert!(!s.windows(4).any(|w| w == HEADER), "{:02X?}", s);
            prop_assert_eq!(unstuff(&s), Some(region));
        }

        #[test]
        fn what_unstuffs_stuffs_back_to_itself(region in proptest::collection::vec(prop_oneof![Just(0xFFu8), Just(0xFD), any::<u8>()], 0..64)) {
            if let Some(plain) = unstuff(&region) {
                prop_assert_eq!(stuffed(&plain), region);
            }
        }
    }
}
