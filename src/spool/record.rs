//! The spool's on-disk formats, without I/O: a record is
//! `[0xB5][len u32][crc32 u32][qos u8][retain u8][topic len u16][topic][payload]` and the
//! `head` file is `[head u64][crc32 u32]` (little endian).

use crate::bus::{Outgoing, QoS};
use bytes::Bytes;
use std::sync::Arc;

const MAGIC: u8 = 0xB5;
/// Magic, length and CRC, before the body the CRC covers.
pub const HEADER: usize = 9;

/// The length of `m`'s record.
pub fn encoded_len(m: &Outgoing) -> usize {
    HEADER + 4 + m.topic.len() + m.payload.len()
}

/// Appends `m`'s record to `out`.
pub fn encode(m: &Outgoing, out: &mut Vec<u8>) {
    let topic = m.topic.as_bytes();
    let body_len = 4 + topic.len() + m.payload.len();
    out.push(MAGIC);
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    let crc_at = out.len();
    out.extend_from_slice(&[0; 4]);
    let body_at = out.len();
    out.push(m.qos as u8);
    out.push(m.retain as u8);
    out.extend_from_slice(&(topic.len() as u16).to_le_bytes());
    out.extend_from_slice(topic);
    out.extend_from_slice(&m.payload);
    let crc = crc32fast::hash(&out[body_at..]);
    out[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
}

/// Parses the record at the start of `data`: the message and the record's length, or
/// `None` when the bytes are not a whole, intact record.
pub fn decode(data: &[u8]) -> Option<(Outgoing, usize)> {
    if data.len() < HEADER || data[0] != MAGIC {
        return None;
    }
    let len = u32::from_le_bytes(data[1..5].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(data[5..9].try_into().ok()?);
    let body = data.get(HEADER..HEADER.checked_add(len)?)?;
    if len < 4 || crc32fast::hash(body) != crc {
        return None;
    }
    let qos = match body[0] {
        1 => QoS::AtLeastOnce,
        2 => QoS::ExactlyOnce,
        _ => return None,
    };
    let tlen = u16::from_le_bytes([body[2], body[3]]) as usize;
    let topic = std::str::from_utf8(body.get(4..4 + tlen)?).ok()?;
    let payload = Bytes::copy_from_slice(&body[4 + tlen..]);
    let m = Outgoing::new(Arc::<str>::from(topic), payload, qos, body[1] != 0);
    Some((m, HEADER + len))
}

/// The byte offset of each whole record at the start of `data`, and where they end: a torn
/// or corrupt tail begins there.
pub fn scan(data: &[u8]) -> (Vec<u32>, usize) {
    let mut offsets = Vec::new();
    let mut at = 0usize;
    while let Some((_, n)) = decode(&data[at..]) {
        offsets.push(at as u32);
        at += n;
    }
    (offsets, at)
}

/// The `head` file's contents for `head`.
pub fn encode_head(head: u64) -> [u8; 12] {
    let mut b = [0u8; 12];
    b[..8].copy_from_slice(&head.to_le_bytes());
    let crc = crc32fast::hash(&b[..8]);
    b[8..].copy_from_slice(&crc.to_le_bytes());
    b
}

/// The head a `head` file holds, or `None` when it is corrupt.
pub fn decode_head(b: &[u8]) -> Option<u64> {
    let (head, crc) = (b.get(..8)?, b.get(8..12)?);
    (b.len() == 12 && crc32fast::hash(head).to_le_bytes() == crc)
        .then(|| u64::from_le_bytes(head.try_into().expect("8 bytes")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The record of `Outgoing::new("a/b", [1, 2, 3], QoS::AtLeastOnce, true)`, written out
    /// by hand so a change of format cannot go unnoticed.
    const FIXTURE: [u8; 19] = [
        0xB5, // magic
        10, 0, 0, 0, // body length: 4 + 3 + 3
        0x45, 0x12, 0x57, 0x2e, // crc32 of the body
        1, 1, // qos, retain
        3, 0, // topic length
        b'a', b'/', b'b', // topic
        1, 2, 3, // payload
    ];

    fn fixture_msg() -> Outgoing {
        Outgoing::new("a/b", vec![1u8, 2, 3], QoS::AtLeastOnce, true)
    }

    #[test]
    fn a_record_is_encoded_byte_for_byte_as_documented() {
        let mut out = Vec::new();
        encode(&fixture_msg(), &mut out);
        assert_eq!(out, FIXTURE);
        assert_eq!(encoded_len(&fixture_msg()), FIXTURE.len());
    }

    #[test]
    fn a_whole_record_decodes_to_its_message_and_length() {
        let (m, n) = decode(&FIXTURE).unwrap();
        assert_eq!(m, fixture_msg());
        assert_eq!(n, FIXTURE.len());
    }

    #[test]
    fn a_torn_record_is_not_decoded() {
        for cut in 0..FIXTURE.len() {
            assert_eq!(decode(&FIXTURE[..cut]), None, "cut at {cut}");
        }
    }

    #[test]
    fn a_record_with_a_bad_crc_is_not_decoded() {
        let mut bad = FIXTURE;
        bad[17] ^= 0xff; // a payload byte
        assert_eq!(decode(&bad), None);
        let mut bad = FIXTURE;
        bad[5] ^= 0x01; // the CRC itself
        assert_eq!(decode(&bad), None);
    }

    #[test]
    fn a_record_with_a_bad_magic_is_not_decoded() {
        let mut bad = FIXTURE;
        bad[0] = 0xB4;
        assert_eq!(decode(&bad), None);
    }

    #[test]
    fn a_huge_length_is_not_trusted() {
        let mut bad = FIXTURE;
        bad[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode(&bad), None);
    }

    #[test]
    fn a_scan_stops_at_a_torn_tail() {
        let mut data = FIXTURE.repeat(3);
        data.extend_from_slice(&FIXTURE[..7]);
        let (offsets, end) = scan(&data);
        assert_eq!(offsets, vec![0, 19, 38]);
        assert_eq!(end, 57);
    }

    #[test]
    fn a_scan_stops_at_a_corrupt_record() {
        let mut data = FIXTURE.repeat(3);
        data[19 + 15] ^= 0xff;
        assert_eq!(scan(&data), (vec![0], 19));
    }

    #[test]
    fn the_head_file_round_trips_and_rejects_corruption() {
        let b = encode_head(0x0102_0304_0506_0708);
        assert_eq!(&b[..8], &[8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(decode_head(&b), Some(0x0102_0304_0506_0708));
        let mut bad = b;
        bad[0] ^= 1;
        assert_eq!(decode_head(&bad), None);
        assert_eq!(decode_head(&b[..11]), None);
        assert_eq!(decode_head(&[b.as_slice(), &[0]].concat()), None);
    }
}
