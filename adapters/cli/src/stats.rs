//! Latency samples and their percentiles.

use std::time::Duration;

/// A set of latency samples.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Samples {
    ms: Vec<f64>,
}

impl Samples {
    /// No samples.
    pub fn new() -> Samples {
        Samples::default()
    }

    /// Adds one sample.
    pub fn push(&mut self, sample: Duration) {
        self.ms.push(sample.as_secs_f64() * 1e3);
    }

    /// How many samples there are.
    pub fn len(&self) -> usize {
        self.ms.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ms.is_empty()
    }

    /// The `q` quantile (0.0..=1.0, nearest rank) in milliseconds; `None` without samples.
    pub fn percentile_ms(&self, q: f64) -> Option<f64> {
        if self.ms.is_empty() {
            return None;
        }
        let mut sorted = self.ms.clone();
        sorted.sort_by(f64::total_cmp);
        let q = if q.is_nan() { 0.5 } else { q.clamp(0.0, 1.0) };
        // Nearest rank: the smallest sample with at least q of the samples at or below it.
        let rank = (q * sorted.len() as f64).ceil() as usize;
        sorted.get(rank.saturating_sub(1)).copied()
    }

    /// The mean in milliseconds; `None` without samples.
    pub fn mean_ms(&self) -> Option<f64> {
        if self.ms.is_empty() {
            return None;
        }
        Some(self.ms.iter().sum::<f64>() / self.ms.len() as f64)
    }
}

/// Rounds milliseconds to microsecond precision for reports.
pub fn round_ms(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn nearest_rank() {
        let mut s = Samples::new();
        assert_eq!(s.percentile_ms(0.5), None);
        for ms in [5, 1, 4, 2, 3] {
            s.push(Duration::from_millis(ms));
        }
        assert_eq!(s.percentile_ms(0.5), Some(3.0));
        assert_eq!(s.percentile_ms(0.99), Some(5.0));
        assert_eq!(s.percentile_ms(0.0), Some(1.0));
        assert_eq!(s.mean_ms(), Some(3.0));
    }

    proptest! {
        #[test]
        fn percentiles_are_samples_and_ordered(ms in proptest::collection::vec(0u64..100_000, 1..200), q in 0.0f64..1.0) {
            let mut s = Samples::new();
            for m in &ms {
                s.push(Duration::from_micros(*m));
            }
            let p = s.percentile_ms(q).expect("non-empty");
            let lo = s.percentile_ms(0.0).expect("non-empty");
            let hi = s.percentile_ms(1.0).expect("non-empty");
            prop_assert!(lo <= p && p <= hi);
            prop_assert!(ms.iter().any(|m| (*m as f64 / 1e3 - p).abs() < 1e-9));
        }
    }
}
