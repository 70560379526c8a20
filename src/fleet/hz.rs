//! `botbus topic hz`: per-topic rate, mean/min/max gap and lost messages (gaps in
//! `header.seq`), refreshed every second like `ros2 topic hz`. A gap is filled by a
//! late arrival, as when a robot replays its backlog behind live data (`live_first`).

use super::json;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// The statistics of one topic.
#[derive(Debug, Clone, Default)]
pub struct TopicStats {
    pub count: u64,
    /// Arrival gaps of the last `window` messages.
    gaps: VecDeque<Duration>,
    last: Option<Instant>,
    /// The highest `seq` seen since the last restart.
    max_seq: Option<u64>,
    /// Ranges `start..end` of `seq` not seen yet, below `max_seq`.
    missing: BTreeMap<u64, u64>,
    /// Missing when the robot restarted: they can no longer come.
    lost_for_good: u64,
    /// Messages whose seq was seen already (at-least-once redelivery).
    pub duplicates: u64,
    /// Times `seq` went backwards: a restart.
    pub restarts: u64,
}

impl TopicStats {
    /// Messages missing from `header.seq` (a later arrival still fills its gap).
    pub fn lost(&self) -> u64 {
        self.lost_for_good + self.missing.iter().map(|(a, b)| b - a).sum::<u64>()
    }

    /// Takes `seq` out of a missing range; false when it was not missing.
    fn fill(&mut self, seq: u64) -> bool {
        let Some((&start, &end)) = self.missing.range(..=seq).next_back() else {
            return false;
        };
        if seq >= end {
            return false;
        }
        self.missing.remove(&start);
        if start < seq {
            self.missing.insert(start, seq);
        }
        if seq + 1 < end {
            self.missing.insert(seq + 1, end);
        }
        true
    }

    fn seq(&mut self, seq: u64) {
        let Some(max) = self.max_seq else {
            self.max_seq = Some(seq);
            return;
        };
        if seq > max {
            if seq > max + 1 {
                self.missing.insert(max + 1, seq);
            }
            self.max_seq = Some(seq);
        } else if self.fill(seq) {
            // A late arrival: the backlog behind live data, or a resend.
        } else if seq == 0 && max > 0 {
            // The robot restarted at 0: what was missing will not come any more.
            self.restarts += 1;
            self.lost_for_good = self.lost();
            self.missing.clear();
            self.max_seq = Some(0);
        } else {
            // At-least-once redelivery.
            self.duplicates += 1;
        }
    }

    pub fn rate_hz(&self) -> Option<f64> {
        let total: Duration = self.gaps.iter().sum();
        (!self.gaps.is_empty() && !total.is_zero())
            .then(|| self.gaps.len() as f64 / total.as_secs_f64())
    }

    pub fn gap_ms(&self) -> Option<(f64, f64, f64)> {
        if self.gaps.is_empty() {
            return None;
        }
        let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
        let mean = self.gaps.iter().map(ms).sum::<f64>() / self.gaps.len() as f64;
        let min = self.gaps.iter().map(ms).fold(f64::INFINITY, f64::min);
        let max = self.gaps.iter().map(ms).fold(0.0, f64::max);
        Some((mean, min, max))
    }
}

/// Statistics for every topic a filter matched.
#[derive(Debug, Default)]
pub struct Hz {
    pub topics: BTreeMap<String, TopicStats>,
    window: usize,
}

/// `header.seq` of a MessagePack payload, if it has one.
pub fn seq_of(payload: &[u8]) -> Option<u64> {
    let v = json::decode_msgpack(payload).ok()?;
    let rmpv::Value::Map(pairs) = v else {
        return None;
    };
    let header = pairs
        .iter()
        .find(|(k, _)| k.as_str() == Some("header"))?
        .1
        .as_map()?;
    header
        .iter()
        .find(|(k, _)| k.as_str() == Some("seq"))?
        .1
        .as_u64()
}

impl Hz {
    pub fn new(window: usize) -> Hz {
        Hz {
            topics: BTreeMap::new(),
            window: window.max(1),
        }
    }

    pub fn record(&mut self, topic: &str, payload: &[u8], at: Instant) {
        let window = self.window;
        let t = self.topics.entry(topic.to_string()).or_default();
        t.count += 1;
        if let Some(last) = t.last {
            t.gaps.push_back(at.saturating_duration_since(last));
            while t.gaps.len() > window {
                t.gaps.pop_front();
            }
        }
        t.last = Some(at);
        if let Some(seq) = seq_of(payload) {
            t.seq(seq);
        }
    }

    /// One line per topic.
    pub fn report(&self) -> Vec<String> {
        self.topics
            .iter()
            .map(|(topic, t)| {
                let rate = t
                    .rate_hz()
                    .map_or("-".to_string(), |r| format!("{r:.2} Hz"));
                let gaps = t.gap_ms().map_or("-".to_string(), |(mean, min, max)| {
                    format!("mean {mean:.1} ms  min {min:.1} ms  max {max:.1} ms")
                });
                let mut s = format!(
                    "{topic}: rate {rate}  gap {gaps}  n {}  lost {}",
                    t.count,
                    t.lost()
                );
                if t.duplicates > 0 {
                    s.push_str(&format!("  duplicates {}", t.duplicates));
                }
                if t.restarts > 0 {
                    s.push_str(&format!("  restarts {}", t.restarts));
                }
                s
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(seq: u64) -> Vec<u8> {
        rmp_serde::to_vec_named(&serde_json::json!({"header": {"seq": seq}, "data": 1.0})).unwrap()
    }

    #[test]
    fn rate_gaps_and_lost_messages_are_measured() {
        let mut hz = Hz::new(100);
        let t0 = Instant::now();
        for (i, seq) in [0u64, 1, 2, 5, 6, 6].iter().enumerate() {
            hz.record(
                "robot/r1/x",
                &msg(*seq),
                t0 + Duration::from_millis(100 * i as u64),
            );
        }
        let t = &hz.topics["robot/r1/x"];
        assert_eq!(t.lost(), 2);
        assert_eq!(t.duplicates, 1);
        assert!((t.rate_hz().unwrap() - 10.0).abs() < 1e-9);
        let (mean, min, max) = t.gap_ms().unwrap();
        assert!(
            (mean - 100.0).abs() < 1e-6 && (min - 100.0).abs() < 1e-6 && (max - 100.0).abs() < 1e-6
        );
        let line = &hz.report()[0];
        assert!(line.starts_with("robot/r1/x: rate 10.00 Hz"), "{line}");
        assert!(line.contains("lost 2"), "{line}");
    }

    #[test]
    fn a_restart_at_seq_zero_is_not_a_loss() {
        let mut hz = Hz::new(10);
        let t0 = Instant::now();
        for (i, seq) in [7u64, 8, 0, 1].iter().enumerate() {
            hz.record("t", &msg(*seq), t0 + Duration::from_millis(i as u64));
        }
        assert_eq!(hz.topics["t"].lost(), 0);
        assert_eq!(hz.topics["t"].restarts, 1);
    }

    fn record_all(hz: &mut Hz, seqs: impl IntoIterator<Item = u64>) {
        let t0 = Instant::now();
        for (i, seq) in seqs.into_iter().enumerate() {
            hz.record("t", &msg(seq), t0 + Duration::from_millis(i as u64));
        }
    }

    #[test]
    fn a_backlog_arriving_behind_live_data_fills_its_gap() {
        let mut hz = Hz::new(10);
        // 0..10, an outage, live data 20..25 first, then the backlog 10..20.
        record_all(&mut hz, (0..10).chain(20..25));
        assert_eq!(hz.topics["t"].lost(), 10, "missing until the backlog comes");
        record_all(&mut hz, 10..20);
        let t = &hz.topics["t"];
        assert_eq!((t.lost(), t.duplicates, t.restarts), (0, 0, 0));
        // A part of a gap that never comes stays lost; a redelivery is a duplicate.
        record_all(&mut hz, [30, 27, 27, 31]);
        let t = &hz.topics["t"];
        assert_eq!((t.lost(), t.duplicates), (4, 1));
    }

    #[test]
    fn gaps_open_at_a_restart_stay_lost() {
        let mut hz = Hz::new(10);
        record_all(&mut hz, [0, 1, 5, 0, 1, 2]);
        let t = &hz.topics["t"];
        assert_eq!((t.lost(), t.restarts), (3, 1));
    }
}
