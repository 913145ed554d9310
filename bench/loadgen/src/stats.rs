//! Latency histograms (microseconds) and their summaries.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// The process-wide time base of payload timestamps.
pub fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Microseconds since [`epoch`].
pub fn now_micros() -> u64 {
    epoch().elapsed().as_micros() as u64
}

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds")
}

/// A histogram shared by many tasks, sharded to keep lock contention low.
pub struct SharedHistogram {
    shards: Vec<Mutex<Histogram<u64>>>,
}

impl SharedHistogram {
    pub fn new() -> Self {
        SharedHistogram {
            shards: (0..16).map(|_| Mutex::new(new_histogram())).collect(),
        }
    }

    pub fn record(&self, shard: usize, micros: u64) {
        let mut h = self.shards[shard % self.shards.len()]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        h.saturating_record(micros.max(1));
    }

    pub fn record_duration(&self, shard: usize, d: Duration) {
        self.record(shard, d.as_micros() as u64);
    }

    pub fn merged(&self) -> Histogram<u64> {
        let mut all = new_histogram();
        for shard in &self.shards {
            let h = shard.lock().unwrap_or_else(|e| e.into_inner());
            all.add(&*h).ok();
        }
        all
    }
}

impl Default for SharedHistogram {
    fn default() -> Self {
        Self::new()
    }
}

fn ms(micros: u64) -> f64 {
    (micros as f64 / 1000.0 * 1000.0).round() / 1000.0
}

/// p50/p90/p99/p999/max in milliseconds, and the count.
pub fn summary(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return json!({ "count": 0 });
    }
    json!({
        "count": h.len(),
        "p50_ms": ms(h.value_at_quantile(0.50)),
        "p90_ms": ms(h.value_at_quantile(0.90)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "p999_ms": ms(h.value_at_quantile(0.999)),
        "max_ms": ms(h.max()),
        "mean_ms": (h.mean() / 1000.0 * 1000.0).round() / 1000.0,
    })
}

/// The quantile curve of a histogram for charts: (quantile, milliseconds).
pub fn curve(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let mut points = Vec::new();
    let mut q = 0.0f64;
    // Denser towards the tail: 0, 0.1 … 0.9, 0.91 … 0.99, 0.991 … 0.999, 0.9999.
    while q < 0.9999 {
        points.push((q, h.value_at_quantile(q) as f64 / 1000.0));
        let step = if q < 0.9 {
            0.05
        } else if q < 0.99 {
            0.01
        } else if q < 0.999 {
            0.001
        } else {
            0.0001
        };
        q += step;
    }
    points.push((0.9999, h.value_at_quantile(0.9999) as f64 / 1000.0));
    points
}
