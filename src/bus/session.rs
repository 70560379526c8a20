//! Sans-IO MQTT 3.1.1 session state for one connection: packet ids, in-flight QoS 1/2
//! publishes until PUBACK/PUBCOMP, and the acks owed to the broker. Packet ids are taken
//! from the free ones, so ids never collide (rumqttc's `MqttState` cycles ids and stalls on
//! collision, the livelock of rumqttc #1014).

use super::Outgoing;
use rumqttc::{Packet, PubAck, PubComp, PubRec, PubRel, Publish, QoS, Subscribe, SubscribeFilter};
use std::collections::{BTreeMap, HashMap, HashSet};
use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
pub enum SessionError {
    #[error("broker acknowledged packet id {0}, which is not in flight")]
    Unsolicited(u16),
    #[error("broker sent an unexpected {0} packet")]
    Unexpected(&'static str),
}

/// What one incoming packet means for the connection.
#[derive(Debug, Default, PartialEq)]
pub struct Reaction {
    /// To write back to the broker (PUBACK, PUBREC, PUBREL, PUBCOMP).
    pub reply: Option<Packet>,
    /// A QoS 1/2 publish of ours that the broker now owns.
    pub delivered: Option<Outgoing>,
    /// An application message from a subscription.
    pub message: Option<Publish>,
    /// Filters the broker refused in a SUBACK.
    pub refused: Vec<String>,
    pub pong: bool,
}

struct Inflight {
    order: u64,
    msg: Outgoing,
    /// PUBREC seen; PUBCOMP pending.
    released: bool,
}

pub struct Session {
    max_inflight: usize,
    next_pkid: u16,
    next_order: u64,
    inflight: HashMap<u16, Inflight>,
    subscribing: HashMap<u16, Vec<String>>,
    /// QoS 2 publishes received and PUBREC'd, not yet released.
    incoming_qos2: HashSet<u16>,
}

impl Session {
    pub fn new(max_inflight: usize) -> Session {
        Session {
            max_inflight: max_inflight.clamp(1, 65_000),
            next_pkid: 1,
            next_order: 0,
            inflight: HashMap::new(),
            subscribing: HashMap::new(),
            incoming_qos2: HashSet::new(),
        }
    }

    pub fn inflight(&self) -> usize {
        self.inflight.len()
    }

    /// Whether another QoS 1/2 publish may go out now.
    pub fn can_send(&self) -> bool {
        self.inflight.len() < self.max_inflight
    }

    fn take_pkid(&mut self) -> u16 {
        loop {
            let id = self.next_pkid;
            self.next_pkid = if id == u16::MAX { 1 } else { id + 1 };
            if !self.inflight.contains_key(&id) && !self.subscribing.contains_key(&id) {
                return id;
            }
        }
    }

    /// The PUBLISH packet for `msg`; QoS 1/2 messages stay in flight until acknowledged.
    pub fn publish(&mut self, msg: Outgoing) -> Publish {
        let mut p = Publish {
            dup: false,
            qos: msg.qos,
            retain: msg.retain,
            topic: msg.topic.to_string(),
            pkid: 0,
            payload: msg.payload.clone(),
        };
        if msg.qos != QoS::AtMostOnce {
            p.pkid = self.take_pkid();
            let order = self.next_order;
            self.next_order += 1;
            self.inflight.insert(
                p.pkid,
                Inflight {
                    order,
                    msg,
                    released: false,
                },
            );
        }
        p
    }

    pub fn subscribe(&mut self, filters: &[(String, QoS)]) -> Option<Subscribe> {
        if filters.is_empty() {
            return None;
        }
        let pkid = self.take_pkid();
        self.subscribing
            .insert(pkid, filters.iter().map(|(f, _)| f.clone()).collect());
        Some(Subscribe {
            pkid,
            filters: filters
                .iter()
                .map(|(f, q)| SubscribeFilter::new(f.clone(), *q))
                .collect(),
        })
    }

    /// The reply owed for a publish we refused unread (too large): PUBACK or PUBREC, as
    /// for any other, so the broker does not send it again.
    pub fn refused_publish(&mut self, qos: QoS, pkid: u16) -> Option<Packet> {
        match qos {
            QoS::AtMostOnce => None,
            QoS::AtLeastOnce => Some(Packet::PubAck(PubAck::new(pkid))),
            QoS::ExactlyOnce => {
                self.incoming_qos2.insert(pkid);
                Some(Packet::PubRec(PubRec::new(pkid)))
            }
        }
    }

    pub fn on_packet(&mut self, packet: Packet) -> Result<Reaction, SessionError> {
        let mut r = Reaction::default();
        match packet {
            Packet::Publish(p) => {
                match p.qos {
                    QoS::AtMostOnce => r.message = Some(p),
                    QoS::AtLeastOnce => {
                        r.reply = Some(Packet::PubAck(PubAck::new(p.pkid)));
                        r.message = Some(p);
                    }
                    QoS::ExactlyOnce => {
                        r.reply = Some(Packet::PubRec(PubRec::new(p.pkid)));
                        // A retransmission of a QoS 2 message already received is not
                        // delivered twice: that is what QoS 2 promises.
                        if self.incoming_qos2.insert(p.pkid) {
                            r.message = Some(p);
                        }
                    }
                }
            }
            Packet::PubRel(rel) => {
                self.incoming_qos2.remove(&rel.pkid);
                r.reply = Some(Packet::PubComp(PubComp::new(rel.pkid)));
            }
            Packet::PubAck(ack) => match self.inflight.get(&ack.pkid) {
                Some(f) if f.msg.qos == QoS::AtLeastOnce => {
                    r.delivered = self.inflight.remove(&ack.pkid).map(|f| f.msg);
                }
                _ => return Err(SessionError::Unsolicited(ack.pkid)),
            },
            Packet::PubRec(rec) => match self.inflight.get_mut(&rec.pkid) {
                Some(f) if f.msg.qos == QoS::ExactlyOnce => {
                    f.released = true;
                    r.reply = Some(Packet::PubRel(PubRel::new(rec.pkid)));
                }
                _ => return Err(SessionError::Unsolicited(rec.pkid)),
            },
            Packet::PubComp(comp) => match self.inflight.get(&comp.pkid) {
                Some(f) if f.released => {
                    r.delivered = self.inflight.remove(&comp.pkid).map(|f| f.msg);
                }
                _ => return Err(SessionError::Unsolicited(comp.pkid)),
            },
            Packet::SubAck(ack) => {
                let filters = self
                    .subscribing
                    .remove(&ack.pkid)
                    .ok_or(SessionError::Unsolicited(ack.pkid))?;
                for (f, code) in filters.into_iter().zip(ack.return_codes) {
                    if code == rumqttc::SubscribeReasonCode::Failure {
                        r.refused.push(f);
                    }
                }
            }
            Packet::UnsubAck(_) => {}
            Packet::PingResp => r.pong = true,
            Packet::ConnAck(_) => return Err(SessionError::Unexpected("CONNACK")),
            Packet::Connect(_) => return Err(SessionError::Unexpected("CONNECT")),
            Packet::Subscribe(_) => return Err(SessionError::Unexpected("SUBSCRIBE")),
            Packet::Unsubscribe(_) => return Err(SessionError::Unexpected("UNSUBSCRIBE")),
            Packet::PingReq => return Err(SessionError::Unexpected("PINGREQ")),
            Packet::Disconnect => return Err(SessionError::Unexpected("DISCONNECT")),
        }
        Ok(r)
    }

    /// Ends the session: every unacknowledged publish, oldest first, to be sent again on
    /// the next connection (where the broker may see some twice: at-least-once).
    pub fn into_unacked(self) -> Vec<Outgoing> {
        let sorted: BTreeMap<u64, Outgoing> = self
            .inflight
            .into_values()
            .map(|f| (f.order, f.msg))
            .collect();
        sorted.into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn msg(topic: &str, qos: QoS) -> Outgoing {
        Outgoing {
            topic: topic.into(),
            payload: Bytes::from_static(b"x"),
            qos,
            retain: false,
            spool_id: None,
        }
    }

    #[test]
    fn qos1_is_in_flight_until_puback() {
        let mut s = Session::new(10);
        let p = s.publish(msg("a", QoS::AtLeastOnce));
        assert_eq!(p.pkid, 1);
        assert_eq!(s.inflight(), 1);
        let r = s.on_packet(Packet::PubAck(PubAck::new(1))).unwrap();
        assert_eq!(r.delivered.unwrap().topic.as_ref(), "a");
        assert_eq!(s.inflight(), 0);
        assert_eq!(
            s.on_packet(Packet::PubAck(PubAck::new(1))),
            Err(SessionError::Unsolicited(1))
        );
    }

    #[test]
    fn qos2_completes_on_pubcomp_after_pubrel() {
        let mut s = Session::new(10);
        let p = s.publish(msg("a", QoS::ExactlyOnce));
        let r = s.on_packet(Packet::PubRec(PubRec::new(p.pkid))).unwrap();
        assert_eq!(r.reply, Some(Packet::PubRel(PubRel::new(p.pkid))));
        assert!(r.delivered.is_none());
        let r = s.on_packet(Packet::PubComp(PubComp::new(p.pkid))).unwrap();
        assert!(r.delivered.is_some());
    }

    #[test]
    fn packet_ids_skip_those_still_in_flight() {
        let mut s = Session::new(10);
        let a = s.publish(msg("a", QoS::AtLeastOnce)).pkid;
        s.next_pkid = a; // wrap around onto an id still in flight
        let b = s.publish(msg("b", QoS::AtLeastOnce)).pkid;
        assert_ne!(a, b);
    }

    #[test]
    fn unacked_messages_come_back_oldest_first() {
        let mut s = Session::new(10);
        for t in ["a", "b", "c"] {
            s.publish(msg(t, QoS::AtLeastOnce));
        }
        s.on_packet(Packet::PubAck(PubAck::new(2))).unwrap();
        let topics: Vec<_> = s.into_unacked().into_iter().map(|m| m.topic).collect();
        assert_eq!(
            topics,
            vec!["a".into(), "c".into()] as Vec<std::sync::Arc<str>>
        );
    }

    #[test]
    fn incoming_qos2_duplicates_are_delivered_once() {
        let mut s = Session::new(10);
        let mut p = Publish::new("cmd", QoS::ExactlyOnce, b"1".to_vec());
        p.pkid = 7;
        assert!(s
            .on_packet(Packet::Publish(p.clone()))
            .unwrap()
            .message
            .is_some());
        assert!(s.on_packet(Packet::Publish(p)).unwrap().message.is_none());
        let r = s.on_packet(Packet::PubRel(PubRel::new(7))).unwrap();
        assert_eq!(r.reply, Some(Packet::PubComp(PubComp::new(7))));
    }
}
