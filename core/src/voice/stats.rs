//! What `/metrics` shows of the voice pipeline.

use std::collections::BTreeMap;

/// What `/metrics` shows of the pipeline.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PipelineStats {
    pub done: u64,
    pub failed: u64,
    /// Transient failures, each followed by a retry.
    pub retried: u64,
    pub bytes_downloaded: u64,
    /// Errors by step (`download`, `s3`, `inngest`, `outbox`) and kind (`transient`,
    /// `permanent`).
    pub errors: BTreeMap<(&'static str, &'static str), u64>,
    /// Seconds from the message's arrival to the event's acceptance.
    pub latency: Histogram,
}

/// A fixed-bucket histogram.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    pub bounds: &'static [f64],
    pub counts: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        const BOUNDS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];
        Histogram {
            bounds: BOUNDS,
            counts: vec![0; BOUNDS.len()],
            sum: 0.0,
            count: 0,
        }
    }
}

impl Histogram {
    pub fn observe(&mut self, value: f64) {
        for (bound, count) in self.bounds.iter().zip(&mut self.counts) {
            if value <= *bound {
                *count += 1;
            }
        }
        self.sum += value;
        self.count += 1;
    }
}
