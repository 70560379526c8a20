//! A telemetry stream's publishing side: per-topic `seq`, `max_rate_hz` downsampling
//! (latest value wins) and MessagePack encoding into a reused buffer.

use crate::bus::{qos_from_u8, Outgoing, QoS};
use crate::messages::{Message, Time};
use crate::spec::StreamSpec;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

pub struct StreamPublisher {
    topic: Arc<str>,
    qos: QoS,
    retain: bool,
    seq: u64,
    frame_id: String,
    min_interval: Option<Duration>,
    next_allowed: Option<Instant>,
    pending: Option<Message>,
    buf: Vec<u8>,
}

impl StreamPublisher {
    pub fn new(spec: &StreamSpec, topic: String) -> StreamPublisher {
        StreamPublisher {
            topic: topic.into(),
            qos: qos_from_u8(spec.qos),
            retain: spec.retain,
            seq: 0,
            frame_id: spec.frame_id.clone(),
            min_interval: spec.min_interval,
            next_allowed: None,
            pending: None,
            buf: Vec::with_capacity(256),
        }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Fills the header of a sample body read at `stamp` (`seq` is set as it goes out),
    /// then publishes it now, or holds it until the rate cap allows one (replacing any
    /// sample already held: the latest value wins). What goes out is added to `out`, the
    /// device's batch for the bus.
    pub fn offer(&mut self, mut msg: Message, stamp: Time, now: Instant, out: &mut Vec<Outgoing>) {
        let h = msg.header_mut();
        h.stamp = stamp;
        h.frame_id.clone_from(&self.frame_id);
        match (self.min_interval, self.next_allowed) {
            (Some(_), Some(t)) if now < t => self.pending = Some(msg),
            _ => self.send(msg, now, out),
        }
    }

    /// When a held sample is due.
    pub fn deadline(&self) -> Option<Instant> {
        self.pending.as_ref().and(self.next_allowed)
    }

    pub fn flush_due(&mut self, now: Instant, out: &mut Vec<Outgoing>) {
        if self.deadline().is_some_and(|t| now >= t) {
            if let Some(m) = self.pending.take() {
                self.send(m, now, out);
            }
        }
    }

    fn send(&mut self, mut msg: Message, now: Instant, out: &mut Vec<Outgoing>) {
        if let Some(i) = self.min_interval {
            // Anchored to the previous slot so the long-run rate matches max_rate_hz.
            let base = match self.next_allowed {
                Some(t) if now.saturating_duration_since(t) < i => t,
                _ => now,
            };
            self.next_allowed = Some(base + i);
        }
        msg.header_mut().seq = self.seq;
        self.seq += 1;
        self.buf.clear();
        if let Err(e) = msg.encode_into(&mut self.buf) {
            tracing::error!(topic = %self.topic, "cannot encode message: {e}");
            return;
        }
        out.push(Outgoing {
            topic: self.topic.clone(),
            payload: Bytes::copy_from_slice(&self.buf),
            qos: self.qos,
            retain: self.retain,
            spool_id: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::MessageType;

    fn spec(max_rate_hz: Option<f64>) -> StreamSpec {
        StreamSpec {
            sensor: "battery".into(),
            msg_type: MessageType::BatteryState,
            qos: 1,
            retain: false,
            min_interval: max_rate_hz.map(|h| Duration::from_secs_f64(1.0 / h)),
            frame_id: "base_link".into(),
        }
    }

    fn header_of(m: &Outgoing) -> serde_json::Value {
        let v =
            crate::fleet::json::to_json(&crate::fleet::json::decode_msgpack(&m.payload).unwrap());
        v["header"].clone()
    }

    #[test]
    fn a_sample_body_gets_its_stamp_frame_and_seq_from_the_stream() {
        let mut out = Vec::new();
        let mut p = StreamPublisher::new(&spec(None), "robot/r1/battery".into());
        let now = Instant::now();
        for sec in [7, 8] {
            let body = MessageType::BatteryState.new_message();
            p.offer(body, Time { sec, nanosec: 9 }, now, &mut out);
        }
        assert_eq!(out.len(), 2);
        for (m, (seq, sec)) in out.iter().zip([(0, 7), (1, 8)]) {
            assert_eq!(&*m.topic, "robot/r1/battery");
            assert_eq!(
                header_of(m),
                serde_json::json!({"seq": seq, "stamp": {"sec": sec, "nanosec": 9}, "frame_id": "base_link"})
            );
        }
    }

    #[test]
    fn a_held_sample_keeps_the_stamp_it_was_read_at() {
        let mut out = Vec::new();
        let mut p = StreamPublisher::new(&spec(Some(10.0)), "robot/r1/battery".into());
        let t0 = Instant::now();
        p.offer(
            MessageType::BatteryState.new_message(),
            Time { sec: 1, nanosec: 0 },
            t0,
            &mut out,
        );
        // Within the rate cap: held, then sent at its deadline with its own stamp.
        p.offer(
            MessageType::BatteryState.new_message(),
            Time { sec: 2, nanosec: 0 },
            t0,
            &mut out,
        );
        assert_eq!(out.len(), 1, "the second sample is held by the rate cap");
        let due = p.deadline().unwrap();
        p.flush_due(due, &mut out);
        let [first, held] = &out[..] else {
            panic!("{} messages", out.len())
        };
        assert_eq!(header_of(first)["stamp"]["sec"], 1);
        assert_eq!(header_of(held)["stamp"]["sec"], 2);
        assert_eq!(header_of(held)["seq"], 1);
    }
}
