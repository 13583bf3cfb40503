//! Samples, percentiles and the ratio table.

use std::time::Duration;

/// Collects latencies, discarding the first `warmup` (connections, caches and the emulator's
/// first allocations settle there).
#[derive(Debug, Clone)]
pub struct Recorder {
    warmup_left: usize,
    samples: Vec<Duration>,
}

impl Recorder {
    /// A recorder that drops the first `warmup` samples.
    pub fn new(warmup: usize) -> Recorder {
        Recorder {
            warmup_left: warmup,
            samples: Vec::new(),
        }
    }

    /// Records one latency.
    pub fn push(&mut self, d: Duration) {
        if self.warmup_left > 0 {
            self.warmup_left -= 1;
        } else {
            self.samples.push(d);
        }
    }

    /// The recorded samples' summary (`None` before any sample past the warm-up).
    pub fn summary(&self) -> Option<Summary> {
        Summary::of(&self.samples)
    }
}

/// Percentiles and mean of a sample, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Median.
    pub p50: f64,
    /// 99th percentile (nearest rank).
    pub p99: f64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Number of samples.
    pub n: usize,
}

impl Summary {
    /// Summarizes `samples` (`None` when empty).
    pub fn of(samples: &[Duration]) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        // Through nanoseconds, so whole microseconds stay exact.
        let mut sorted: Vec<f64> = samples
            .iter()
            .map(|d| d.as_nanos() as f64 / 1000.0)
            .collect();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let rank = |q: f64| {
            // Nearest rank: the smallest value with at least q of the sample at or below it.
            let idx = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
            sorted.get(idx).copied()
        };
        Some(Summary {
            p50: rank(0.50)?,
            p99: rank(0.99)?,
            mean: sorted.iter().sum::<f64>() / n as f64,
            n,
        })
    }
}

/// The result table: every row as a ratio to the baseline row.
#[derive(Debug)]
pub struct Table {
    baseline: Summary,
    rows: Vec<(String, Summary)>,
}

impl Table {
    /// A table whose ratios are against `baseline`.
    pub fn new(name: &str, baseline: Summary) -> Table {
        Table {
            baseline,
            rows: vec![(name.to_string(), baseline)],
        }
    }

    /// Adds a row (skipped when there were no samples).
    pub fn row(&mut self, name: &str, summary: Option<Summary>) {
        if let Some(s) = summary {
            self.rows.push((name.to_string(), s));
        }
    }

    /// The table as text.
    pub fn render(&self) -> String {
        let mut out = format!(
            "{:<44} {:>6} {:>9} {:>9} {:>9} {:>8} {:>8}\n",
            "measure (µs)", "n", "p50", "p99", "mean", "p50/raw", "p99/raw"
        );
        for (name, s) in &self.rows {
            out.push_str(&format!(
                "{:<44} {:>6} {:>9.1} {:>9.1} {:>9.1} {:>7.2}x {:>7.2}x\n",
                name,
                s.n,
                s.p50,
                s.p99,
                s.mean,
                s.p50 / self.baseline.p50,
                s.p99 / self.baseline.p99
            ));
        }
        out
    }
}

/// One line comparing two rows of the same measure: `b`'s p50 and p99 as ratios to `a`'s.
pub fn versus(measure: &str, a: Option<Summary>, b: Option<Summary>) -> Option<String> {
    let (a, b) = (a?, b?);
    Some(format!(
        "{measure:<44} p50 {:>5.2}x   p99 {:>5.2}x",
        b.p50 / a.p50,
        b.p99 / a.p99
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn us(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|x| Duration::from_micros(*x)).collect()
    }

    #[test]
    fn nearest_rank_percentiles() {
        let s = Summary::of(&us(&(1..=100).collect::<Vec<_>>())).unwrap();
        assert_eq!((s.p50, s.p99, s.n), (50.0, 99.0, 100));
        assert!((s.mean - 50.5).abs() < 1e-9);
        let one = Summary::of(&us(&[7])).unwrap();
        assert_eq!((one.p50, one.p99), (7.0, 7.0));
        assert_eq!(Summary::of(&[]), None);
    }

    #[test]
    fn warmup_is_discarded_and_ratios_use_the_baseline() {
        let mut r = Recorder::new(2);
        for x in [1000, 1000, 10, 20] {
            r.push(Duration::from_micros(x));
        }
        let s = r.summary().unwrap();
        assert_eq!((s.n, s.p99), (2, 20.0));
        let mut t = Table::new("base", Summary::of(&us(&[10])).unwrap());
        t.row("twice", Summary::of(&us(&[20])));
        t.row("empty", None);
        let text = t.render();
        assert!(text.contains("twice") && text.contains("2.00x"), "{text}");
        assert!(!text.contains("empty"));
        assert_eq!(
            versus("m", Summary::of(&us(&[10])), Summary::of(&us(&[15]))).unwrap(),
            format!("{:<44} p50  1.50x   p99  1.50x", "m")
        );
    }

    proptest! {
        #[test]
        fn percentiles_are_ordered_sample_values(v in proptest::collection::vec(0u64..1_000_000, 1..300)) {
            let s = Summary::of(&us(&v)).unwrap();
            let min = *v.iter().min().unwrap() as f64;
            let max = *v.iter().max().unwrap() as f64;
            prop_assert!(min <= s.p50 && s.p50 <= s.p99 && s.p99 <= max);
            prop_assert!(min <= s.mean && s.mean <= max);
            prop_assert!(v.iter().any(|x| *x as f64 == s.p50));
            prop_assert!(v.iter().any(|x| *x as f64 == s.p99));
        }
    }
}
