//! Fuzz target for the MQTT packet path: what a broker sends (publishes of every QoS up to
//! and past the size limit, acks of our publishes, SUBACK, PUBREL, PINGRESP) read in any
//! chunks gives the same events and replies; cut short, a prefix of them; and arbitrary,
//! mutated or truncated bytes never panic, end at most in a lost connection, and never
//! make the read buffer hold more than one packet under the limit (or one oversized
//! packet's head).

use super::*;
use crate::bus::Outgoing;
use crate::fuzzing::{config, cuts, mutated, noisy_bytes, split};
use proptest::prelude::*;
use rumqttc::{PubAck, PubComp, PubRec, PubRel, Publish, SubAck, SubscribeReasonCode};
use std::sync::Arc;

const KA: Duration = Duration::from_secs(30);
/// The longest head of an oversized PUBLISH kept to read its topic and packet id:
/// fixed header, topic length, a 65,535-byte topic and the packet id.
const HEAD: usize = 5 + 2 + 65_535 + 2;

/// Ours: three QoS 1 and two QoS 2 publishes in flight (ids 1–5) and one subscription (6).
fn connection(max: usize) -> Connection {
    let now = Instant::now();
    let mut c = Connection::new(BytesMut::new(), KA, 100, max, now);
    for (i, qos) in [
        QoS::AtLeastOnce,
        QoS::AtLeastOnce,
        QoS::AtLeastOnce,
        QoS::ExactlyOnce,
        QoS::ExactlyOnce,
    ]
    .into_iter()
    .enumerate()
    {
        c.publish(Outgoing::new(
            format!("robot/r1/t{i}"),
            vec![b'x'; i],
            qos,
            false,
        ));
    }
    c.subscribe(&[("robot/r1/cmd/#".into(), QoS::AtLeastOnce)]);
    let n = c.to_write().len();
    c.wrote(n, now);
    c
}

/// What the broker sends next.
#[derive(Debug, Clone)]
enum Item {
    Publish {
        qos: u8,
        topic: usize,
        payload: usize,
        fill: u8,
    },
    PingResp,
    /// Acknowledges our next QoS 1 publish (PUBACK), or goes on with the next QoS 2 one
    /// (PUBREC, then PUBCOMP once we released it).
    Ack,
    SubAck(bool),
    /// Releases the last QoS 2 publish the broker sent us.
    PubRel,
}

fn item(max: usize) -> impl Strategy<Value = Item> {
    let payload = prop_oneof![
        0..64usize,
        max.saturating_sub(40)..max + 40,
        0..(3 * max).min(4_000)
    ];
    prop_oneof![
        4 => (0u8..3, 1usize..40, payload, any::<u8>())
            .prop_map(|(qos, topic, payload, fill)| Item::Publish { qos, topic, payload, fill }),
        1 => Just(Item::PingResp),
        2 => Just(Item::Ack),
        1 => any::<bool>().prop_map(Item::SubAck),
        1 => Just(Item::PubRel),
    ]
}

/// A session-consistent stream of broker packets for [`connection`], and the sizes of the
/// publishes in it.
fn stream(items: &[Item]) -> (Vec<u8>, Vec<(usize, Vec<u8>)>) {
    let mut bytes = BytesMut::new();
    let mut publishes = Vec::new();
    let (mut qos1, mut qos2, mut released, mut suback) =
        (vec![1u16, 2, 3], vec![4u16, 5], Vec::new(), true);
    let mut incoming2: Vec<u16> = Vec::new();
    let mut next_pkid = 100u16;
    for it in items {
        let p = match it {
            Item::Publish {
                qos,
                topic,
                payload,
                fill,
            } => {
                let mut p = Publish::new(
                    "c".repeat(*topic),
                    crate::bus::qos_from_u8(*qos),
                    vec![*fill; *payload],
                );
                if *qos > 0 {
                    p.pkid = next_pkid;
                    next_pkid += 1;
                    if *qos == 2 {
                        incoming2.push(p.pkid);
                    }
                }
                let start = bytes.len();
                Packet::Publish(p.clone())
                    .write(&mut bytes, usize::MAX)
                    .expect("encode");
                publishes.push((bytes.len() - start, p.payload.to_vec()));
                continue;
            }
            Item::PingResp => Packet::PingResp,
            Item::Ack if !qos1.is_empty() => Packet::PubAck(PubAck::new(qos1.remove(0))),
            Item::Ack if !released.is_empty() => Packet::PubComp(PubComp::new(released.remove(0))),
            Item::Ack if !qos2.is_empty() => {
                let id = qos2.remove(0);
                released.push(id);
                Packet::PubRec(PubRec::new(id))
            }
            Item::Ack => continue,
            Item::SubAck(ok) if suback => {
                suback = false;
                let code = if *ok {
                    SubscribeReasonCode::Success(QoS::AtLeastOnce)
                } else {
                    SubscribeReasonCode::Failure
                };
                Packet::SubAck(SubAck::new(6, vec![code]))
            }
            Item::SubAck(_) => continue,
            Item::PubRel => match incoming2.pop() {
                Some(id) => Packet::PubRel(PubRel::new(id)),
                None => continue,
            },
        };
        p.write(&mut bytes, usize::MAX).expect("encode");
    }
    (bytes.to_vec(), publishes)
}

/// What a connection made of a broker's bytes: its events, the replies it wrote, and
/// why it was lost, if it was.
type Outcome = (Vec<Event>, Vec<u8>, Option<String>);

/// Feeds `chunks`; the events, the replies written, and how it ended. Checks the read
/// buffer's bound after every read.
fn run(max: usize, chunks: &[&[u8]]) -> Result<Outcome, TestCaseError> {
    let now = Instant::now();
    let mut c = connection(max);
    let mut events = Vec::new();
    let mut replies = Vec::new();
    for chunk in chunks {
        c.read_buf().extend_from_slice(chunk);
        let r = c.on_read(now);
        events.extend(c.events());
        replies.extend_from_slice(c.to_write());
        let n = c.to_write().len();
        c.wrote(n, now);
        if let Err(e) = r {
            return Ok((events, replies, Some(e.to_string())));
        }
        let held = c.read_buf().len();
        prop_assert!(
            held <= (max + 5).max(HEAD),
            "holds {} bytes with a limit of {}",
            held,
            max
        );
    }
    Ok((events, replies, None))
}

fn limit() -> impl Strategy<Value = usize> {
    prop::sample::select(vec![64usize, 1_000, 65_536])
}

/// Real broker streams to mutate.
fn seeds() -> Arc<Vec<Vec<u8>>> {
    let items = |max: usize| {
        vec![
            Item::Publish {
                qos: 1,
                topic: 18,
                payload: 12,
                fill: b'a',
            },
            Item::Ack,
            Item::Publish {
                qos: 2,
                topic: 5,
                payload: max + 10,
                fill: 0,
            },
            Item::PubRel,
            Item::PingResp,
            Item::SubAck(true),
            Item::Ack,
            Item::Publish {
                qos: 0,
                topic: 3,
                payload: 0,
                fill: 0,
            },
        ]
    };
    Arc::new([64, 1_000].iter().map(|m| stream(&items(*m)).0).collect())
}

proptest! {
    #![proptest_config(config(2_000))]

    /// A broker's packets in any chunks: the same events and replies as read at once, one
    /// message per publish (an oversized one reported with its size and no payload), no
    /// error.
    #[test]
    fn broker_packets_in_any_chunks_give_the_same_events_and_replies(
        (max, items) in limit().prop_flat_map(|m| (Just(m), proptest::collection::vec(item(m), 1..12))),
        at in cuts(16),
    ) {
        let (bytes, publishes) = stream(&items);
        let whole = run(max, &[&bytes])?;
        prop_assert_eq!(&whole.2, &None);
        let chunked = run(max, &split(&bytes, &at))?;
        prop_assert_eq!(&chunked, &whole);
        let messages: Vec<&Incoming> = whole.0.iter().filter_map(|e| match e { Event::Message(m) => Some(m), _ => None }).collect();
        prop_assert_eq!(messages.len(), publishes.len());
        for (m, (len, payload)) in messages.iter().zip(&publishes) {
            if *len > max {
                prop_assert_eq!(m.oversized, Some(*len));
                prop_assert!(m.payload.is_empty());
            } else {
                prop_assert_eq!(m.oversized, None);
                prop_assert_eq!(&m.payload[..], &payload[..]);
            }
        }
    }

    /// The same stream cut anywhere: a prefix of the events, no error (the rest is awaited).
    #[test]
    fn a_cut_stream_gives_a_prefix_of_the_events(
        (max, items) in limit().prop_flat_map(|m| (Just(m), proptest::collection::vec(item(m), 1..10))),
        cut in any::<proptest::sample::Index>(),
        at in cuts(8),
    ) {
        let (bytes, _) = stream(&items);
        let (all, _, _) = run(max, &[&bytes])?;
        let short = &bytes[..cut.index(bytes.len() + 1)];
        let (some, _, end) = run(max, &split(short, &at))?;
        prop_assert_eq!(end, None);
        prop_assert!(some.len() <= all.len());
        prop_assert_eq!(&all[..some.len()], &some[..]);
    }

    /// Arbitrary and mutated bytes in any chunks: no panic, the read buffer bounded, and
    /// the same outcome as read at once up to where the connection is lost.
    #[test]
    fn any_bytes_end_at_worst_in_a_lost_connection(
        max in limit(),
        data in prop_oneof![noisy_bytes(600), mutated(seeds())],
        at in cuts(12),
    ) {
        let whole = run(max, &[&data])?;
        let chunked = run(max, &split(&data, &at))?;
        prop_assert_eq!(whole.2.is_some(), chunked.2.is_some());
        let n = whole.0.len().min(chunked.0.len());
        prop_assert_eq!(&whole.0[..n], &chunked.0[..n]);
    }
}
