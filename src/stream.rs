//! A telemetry stream's publishing side: per-topic `seq`, `max_rate_hz` downsampling
//! (latest value wins) and MessagePack encoding into a reused buffer.

use crate::bus::{qos_from_u8, BusHandle, Outgoing, QoS};
use crate::config::StreamSpec;
use crate::messages::Message;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

pub struct StreamPublisher {
    topic: Arc<str>,
    qos: QoS,
    retain: bool,
    seq: u64,
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
            min_interval: spec.min_interval,
            next_allowed: None,
            pending: None,
            buf: Vec::with_capacity(256),
        }
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Publishes now, or holds the sample until the rate cap allows one (replacing any
    /// sample already held: the latest value wins).
    pub fn offer(&mut self, msg: Message, now: Instant, bus: &BusHandle) {
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
