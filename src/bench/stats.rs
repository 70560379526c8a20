//! Latency percentiles (nearest rank) over the samples a benchmark collected.

use serde::Serialize;

/// The `p`-th percentile (0..=100) of `sorted` by the nearest-rank method: the smallest
/// sample with at least `p`% of the samples at or below it. `None` without samples.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    // The small tolerance keeps 99.9% of 1000 at rank 999, not 1000, despite rounding.
    let rank = (p.clamp(0.0, 100.0) * sorted.len() as f64 / 100.0 - 1e-9).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// A latency distribution in milliseconds. The percentiles are `None` without samples.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Latency {
    pub samples: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub p999_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

impl Latency {
    /// The distribution of `micros` (latencies in microseconds, in any order).
    pub fn from_micros(mut micros: Vec<f64>) -> Latency {
        micros.sort_by(f64::total_cmp);
        // Whole microseconds: finer digits are noise, and they keep the JSON short.
        let ms = |p: f64| percentile(&micros, p).map(|us| us.round() / 1000.0);
        Latency {
            samples: micros.len() as u64,
            p50_ms: ms(50.0),
            p99_ms: ms(99.0),
            p999_ms: ms(99.9),
            max_ms: ms(100.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles_pick_a_real_sample() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 99.9), Some(100.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
    }

    #[test]
    fn a_single_sample_is_every_percentile_and_none_is_none() {
        assert_eq!(percentile(&[7.0], 50.0), Some(7.0));
        assert_eq!(percentile(&[7.0], 99.9), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(Latency::from_micros(Vec::new()), Latency::default());
    }

    #[test]
    fn latencies_are_sorted_and_reported_in_milliseconds() {
        let mut us: Vec<f64> = (1..=1000).map(|i| f64::from(i) * 10.0).collect();
        us.reverse();
        let l = Latency::from_micros(us);
        assert_eq!(l.samples, 1000);
        assert_eq!(l.p50_ms, Some(5.0));
        assert_eq!(l.p99_ms, Some(9.9));
        assert_eq!(l.p999_ms, Some(9.99));
        assert_eq!(l.max_ms, Some(10.0));
        let l = Latency::from_micros(vec![21_605.000_4]);
        assert_eq!(l.p50_ms, Some(21.605));
    }
}
