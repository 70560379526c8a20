//! A telemetry stream's publishing side: per-topic `seq`, `max_rate_hz` downsampling
//! (latest value wins) and MessagePack encoding into a reused buffer.

use crate::bus::{qos_from_u8, BusHandle, Outgoing, QoS};
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
    /// sample already held: the latest value wins).
    pub fn offer(&mut self, mut msg: Message, stamp: Time, now: Instant, bus: &BusHandle) {
        let h = msg.header_mut();
        h.stamp = stamp;
        h.frame_id.clone_from(&self.frame_id);
        match (self.min_interval, self.next_allowed) {
            (Some(_), Some(t)) if now < t => self.pending = Some(msg),
            _ => self.send(msg, now, bus),
        }
    }

    /// When a held sample is due.
    pub fn deadline(&self) -> Option<Instant> {
        self.pending.as_ref().and(self.next_allowed)
    }

    pub fn flush_due(&mut self, now: Instant, bus: &BusHandle) {
        if self.deadline().is_some_and(|t| now >= t) {
            if let Some(m) = self.pending.take() {
                self.send(m, now, bus);
            }
        }
    }

    fn send(&mut self, mut msg: Message, now: Instant, bus: &BusHandle) {
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
        let out = Outgoing {
            topic: self.topic.clone(),
            payload: Bytes::copy_from_slice(&self.buf),
            qos: self.qos,
            retain: self.retain,
            spool_id: None,
        };
        if bus.publish(out).is_err() {
            tracing::debug!(topic = %self.topic, "bus queue full; sample dropped");
        }
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

    #[tokio::test]
    async fn a_sample_body_gets_its_stamp_frame_and_seq_from_the_stream() {
        let (bus, mut out) = BusHandle::capture();
        let mut p = StreamPublisher::new(&spec(None), "robot/r1/battery".into());
        let now = Instant::now();
        for sec in [7, 8] {
            let body = MessageType::BatteryState.new_message();
            p.offer(body, Time { sec, nanosec: 9 }, now, &bus);
        }
        for (seq, sec) in [(0, 7), (1, 8)] {
            let m = out.recv().await.unwrap();
            assert_eq!(&*m.topic, "robot/r1/battery");
            assert_eq!(
                header_of(&m),
                serde_json::json!({"seq": seq, "stamp": {"sec": sec, "nanosec": 9}, "frame_id": "base_link"})
            );
        }
    }

    #[tokio::test]
    async fn a_held_sample_keeps_the_stamp_it_was_read_at() {
        let (bus, mut out) = BusHandle::capture();
        let mut p = StreamPublisher::new(&spec(Some(10.0)), "robot/r1/battery".into());
        let t0 = Instant::now();
        p.offer(
            MessageType::BatteryState.new_message(),
            Time { sec: 1, nanosec: 0 },
            t0,
            &bus,
        );
        // Within the rate cap: held, then sent at its deadline with its own stamp.
        p.offer(
            MessageType::BatteryState.new_message(),
            Time { sec: 2, nanosec: 0 },
            t0,
            &bus,
        );
        let due = p.deadline().unwrap();
        p.flush_due(due, &bus);
        let first = out.recv().await.unwrap();
        let held = out.recv().await.unwrap();
        assert_eq!(header_of(&first)["stamp"]["sec"], 1);
        assert_eq!(header_of(&held)["stamp"]["sec"], 2);
        assert_eq!(header_of(&held)["seq"], 1);
    }
}
