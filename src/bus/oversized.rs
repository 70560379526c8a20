//! Recognising a PUBLISH too large to take from its first bytes, so it can be
//! acknowledged and skipped without buffering its payload (a broker would otherwise send
//! it again at once, or we would hold megabytes of it).

use bytes::BytesMut;
use rumqttc::QoS;

pub enum Oversized {
    No,
    /// A packet too large is starting, but its topic is not in yet.
    NeedMore,
    Yes(TooLarge),
}

/// The head of a PUBLISH too large to take: enough to acknowledge and report it.
#[derive(Debug, PartialEq)]
pub struct TooLarge {
    pub topic: String,
    pub qos: QoS,
    pub retain: bool,
    pub pkid: u16,
    /// The whole packet's length on the wire.
    pub len: usize,
}

/// Whether `rbuf` starts with a PUBLISH larger than `max`, and if so its topic and
/// packet id (read without buffering the payload).
pub fn oversized_publish(rbuf: &BytesMut, max: usize) -> Oversized {
    let Some(&byte1) = rbuf.first() else {
        return Oversized::No;
    };
    if byte1 >> 4 != 3 {
        return Oversized::No;
    }
    // The remaining length: 1 to 4 bytes of 7 bits each, least significant first.
    let mut remaining = 0usize;
    let mut varint = 0;
    loop {
        let Some(&b) = rbuf.get(1 + varint) else {
            return Oversized::NeedMore;
        };
        remaining |= ((b & 0x7F) as usize) << (7 * varint);
        varint += 1;
        if b & 0x80 == 0 {
            break;
        }
        if varint == 4 {
            // Malformed; let the packet reader report it.
            return Oversized::No;
        }
    }
    let start = 1 + varint;
    let len = start + remaining;
    if len <= max {
        return Oversized::No;
    }
    let qos = match (byte1 >> 1) & 3 {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    };
    let need_topic = start + 2;
    if rbuf.len() < need_topic {
        return Oversized::NeedMore;
    }
    let tlen = u16::from_be_bytes([rbuf[start], rbuf[start + 1]]) as usize;
    let end = need_topic + tlen + if qos == QoS::AtMostOnce { 0 } else { 2 };
    if rbuf.len() < end {
        return Oversized::NeedMore;
    }
    let topic = String::from_utf8_lossy(&rbuf[need_topic..need_topic + tlen]).into_owned();
    let pkid = if qos == QoS::AtMostOnce {
        0
    } else {
        u16::from_be_bytes([rbuf[end - 2], rbuf[end - 1]])
    };
    Oversized::Yes(TooLarge {
        topic,
        qos,
        retain: byte1 & 1 == 1,
        pkid,
        len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::Packet;

    #[test]
    fn an_oversized_publish_is_recognised_from_its_first_bytes() {
        let p = rumqttc::Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: true,
            topic: "robot/r1/cmd/drive".into(),
            pkid: 42,
            payload: bytes::Bytes::from(vec![b'a'; 70_000]),
        };
        let mut buf = BytesMut::new();
        Packet::Publish(p).write(&mut buf, usize::MAX).unwrap();
        let total = buf.len();
        // Only the first 100 bytes have arrived.
        let head = BytesMut::from(&buf[..100]);
        match oversized_publish(&head, 65_536) {
            Oversized::Yes(t) => assert_eq!(
                t,
                TooLarge {
                    topic: "robot/r1/cmd/drive".into(),
                    qos: QoS::AtLeastOnce,
                    retain: true,
                    pkid: 42,
                    len: total
                }
            ),
            _ => panic!("not recognised"),
        }
        assert!(matches!(
            oversized_publish(&BytesMut::from(&buf[..3]), 65_536),
            Oversized::NeedMore
        ));
        assert!(matches!(oversized_publish(&buf, 1 << 20), Oversized::No));
    }
}
