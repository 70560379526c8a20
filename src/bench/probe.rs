//! The bench's subscriber: botbus's own bus client on one filter. Payloads carrying a
//! sample (`s`: sequence number, `t`: send time in µs since the bench's epoch, as a
//! MessagePack map or a `s=.. t=..` text line) are counted once per topic and sequence
//! and timed; every other message (status, diagnostics, acks) goes to [`Probe::others`].

use super::stats::Latency;
use super::BenchError;
use crate::bus::{self, BusConfig, BusHandle, Incoming, QoS};
use crate::config::Settings;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// A sample's sequence number and send time (µs since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub seq: u64,
    pub sent_us: u64,
}

/// The sample in a payload: a MessagePack map with integer `s` and `t`, or a text line
/// `s=<seq> t=<µs>` (what `mosquitto_pub -l` publishes in the baseline).
pub fn stamp_of(payload: &[u8]) -> Option<Stamp> {
    if let Ok(rmpv::Value::Map(entries)) = rmpv::decode::read_value(&mut &payload[..]) {
        let get = |key: &str| {
            entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .and_then(|(_, v)| v.as_u64())
        };
        return Some(Stamp {
            seq: get("s")?,
            sent_us: get("t")?,
        });
    }
    let text = std::str::from_utf8(payload).ok()?;
    let mut seq = None;
    let mut sent = None;
    for pair in text.split_whitespace() {
        match pair.split_once('=') {
            Some(("s", v)) => seq = v.parse().ok(),
            Some(("t", v)) => sent = v.parse().ok(),
            _ => {}
        }
    }
    Some(Stamp {
        seq: seq?,
        sent_us: sent?,
    })
}

/// What the probe has seen so far.
#[derive(Debug, Default)]
pub struct Seen {
    /// Distinct samples (topic, seq) received.
    pub delivered: u64,
    /// Samples received again (QoS 1 redelivery).
    pub duplicates: u64,
    /// Every message received on the filter, samples or not.
    pub messages: u64,
    pub latencies_us: Vec<f64>,
    pub last_sample: Option<Instant>,
    keys: HashSet<(String, u64)>,
}

/// A subscriber measuring delivery and latency on one filter.
pub struct Probe {
    pub bus: BusHandle,
    seen: Arc<Mutex<Seen>>,
    pub others: mpsc::UnboundedReceiver<Incoming>,
}

impl Probe {
    /// Connects with `settings`' broker and credentials, subscribes to `filter` at `qos`;
    /// samples are timed against `epoch`.
    pub async fn start(
        settings: &Settings,
        client_id: String,
        filter: &str,
        qos: QoS,
        epoch: Instant,
    ) -> Result<Probe, BenchError> {
        let mut cfg = BusConfig::from_settings(settings, client_id)
            .map_err(|e| BenchError::Setup(e.to_string()))?;
        cfg.subscriptions = vec![(filter.to_string(), qos)];
        cfg.incoming_capacity = 1 << 18;
        let url = cfg.url.to_string();
        let (bus, mut incoming) = bus::start(cfg);
        if !bus.wait_connected(Duration::from_secs(5)).await {
            bus.shutdown(Vec::new(), Duration::from_millis(100)).await;
            return Err(BenchError::Unreachable(url));
        }
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let (tx, others) = mpsc::unbounded_channel();
        let s = seen.clone();
        tokio::spawn(async move {
            while let Some(m) = incoming.recv().await {
                let now_us = epoch.elapsed().as_micros() as u64;
                let stamp = (!m.retain).then(|| stamp_of(&m.payload)).flatten();
                let mut seen = s.lock().unwrap_or_else(|e| e.into_inner());
                seen.messages += 1;
                match stamp {
                    Some(st) => {
                        if seen.keys.insert((m.topic.clone(), st.seq)) {
                            seen.delivered += 1;
                            seen.latencies_us
                                .push(now_us.saturating_sub(st.sent_us) as f64);
                        } else {
                            seen.duplicates += 1;
                        }
                        seen.last_sample = Some(Instant::now());
                    }
                    None => {
                        drop(seen);
                        let _ = tx.send(m);
                    }
                }
            }
        });
        Ok(Probe { bus, seen, others })
    }

    pub fn delivered(&self) -> u64 {
        self.lock().delivered
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until `sent` samples arrived, or none arrived for `idle`, or `cap` passed.
    /// Returns the time the last sample arrived.
    pub async fn wait_tail(&self, sent: u64, idle: Duration, cap: Duration) -> Option<Instant> {
        let start = Instant::now();
        loop {
            let (delivered, last) = {
                let s = self.lock();
                (s.delivered, s.last_sample)
            };
            let quiet = last.unwrap_or(start).elapsed() >= idle;
            if delivered >= sent || quiet || start.elapsed() >= cap {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Delivered, duplicates, all messages and the latency distribution so far.
    pub fn summary(&self) -> (u64, u64, u64, Latency) {
        let s = self.lock();
        (
            s.delivered,
            s.duplicates,
            s.messages,
            Latency::from_micros(s.latencies_us.clone()),
        )
    }

    /// Messages the probe's own queue dropped because it fell behind.
    pub fn dropped(&self) -> u64 {
        bus::BusStats::get(&self.bus.stats().dropped_incoming)
    }

    pub async fn close(&self) {
        self.bus.shutdown(Vec::new(), Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_is_read_from_a_msgpack_map_or_a_text_line() {
        let map = rmpv::Value::Map(vec![
            ("header".into(), rmpv::Value::Map(vec![])),
            ("s".into(), 7.into()),
            ("t".into(), 123_456.into()),
        ]);
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &map).unwrap();
        let want = Some(Stamp {
            seq: 7,
            sent_us: 123_456,
        });
        assert_eq!(stamp_of(&bytes), want);
        assert_eq!(stamp_of(b"s=7 t=123456"), want);
        assert_eq!(stamp_of(b"s=7"), None);
        assert_eq!(stamp_of(b"{\"state\": \"online\"}"), None);
    }
}
