//! The scenarios. Each takes a connected [`Ctx`] and a [`Probe`] on the
//! server's processes and returns flat figures (numbers where possible, so
//! ratios to Portcullis can be computed) and, where it measures latency, the
//! histogram for charts.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{Map, Value, json};

use crate::procfs;

pub mod cluster_fanout;
pub mod connect;
pub mod echo;
pub mod fanout;
pub mod idle;
pub mod polling;
pub mod refused;
pub mod soak;

/// The processes that make up one server (the tunnel peer has two).
#[derive(Debug, Clone, Default)]
pub struct Probe {
    pub processes: Vec<(String, u32)>,
}

impl Probe {
    /// Resident memory of all processes, in bytes.
    pub fn rss(&self) -> u64 {
        self.processes
            .iter()
            .filter_map(|(_, pid)| procfs::rss_bytes(*pid))
            .sum()
    }

    /// CPU seconds (user + system) of all processes.
    pub fn cpu(&self) -> f64 {
        self.cpu_times().total()
    }

    /// User and system CPU time of all the server's processes.
    pub fn cpu_times(&self) -> procfs::CpuTimes {
        self.processes
            .iter()
            .filter_map(|(_, pid)| procfs::cpu_times(*pid))
            .fold(procfs::CpuTimes::default(), |sum, t| sum + t)
    }

    pub fn is_empty(&self) -> bool {
        self.processes.is_empty()
    }
}

pub fn mib(bytes: u64) -> f64 {
    round(bytes as f64 / 1024.0 / 1024.0, 2)
}

pub fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

/// What a scenario measured.
#[derive(Debug, Default)]
pub struct Outcome {
    pub figures: Map<String, Value>,
    pub histogram: Option<Histogram<u64>>,
    /// Parts of `histogram` charted apart (cluster fan-out: same-node and
    /// cross-node deliveries), by name.
    pub split: Vec<(String, Histogram<u64>)>,
}

impl Outcome {
    pub fn set(&mut self, key: &str, value: impl Into<Value>) {
        self.figures.insert(key.to_owned(), value.into());
    }

    /// Adds the latency summary keys (`p50_ms`, …) of `h`.
    pub fn latency(&mut self, h: Histogram<u64>) {
        if let Value::Object(map) = crate::stats::summary(&h) {
            for (k, v) in map {
                let key = if k == "count" {
                    "samples".to_owned()
                } else {
                    k
                };
                self.figures.insert(key, v);
            }
        }
        self.histogram = Some(h);
    }
}

/// Counts failures by kind.
#[derive(Debug, Default)]
pub struct ErrorCounts {
    counts: BTreeMap<String, u64>,
    first: Option<String>,
}

impl ErrorCounts {
    pub fn add(&mut self, fail: &crate::client::Fail) {
        *self.counts.entry(fail.kind.clone()).or_default() += 1;
        if self.first.is_none() {
            self.first = Some(fail.to_string());
        }
    }

    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    /// The errors of every worker, once all have finished (a worker that
    /// panicked counts none).
    pub async fn gather(workers: Vec<tokio::task::JoinHandle<ErrorCounts>>) -> ErrorCounts {
        let mut errors = ErrorCounts::default();
        for worker in workers {
            if let Ok(e) = worker.await {
                errors.merge(e);
            }
        }
        errors
    }

    pub fn merge(&mut self, other: ErrorCounts) {
        for (k, v) in other.counts {
            *self.counts.entry(k).or_default() += v;
        }
        if self.first.is_none() {
            self.first = other.first;
        }
    }

    pub fn write(&self, out: &mut Outcome) {
        out.set("errors", self.total());
        if !self.counts.is_empty() {
            out.set("errors_by_kind", json!(self.counts));
        }
        if let Some(first) = &self.first {
            out.set("first_error", first.chars().take(300).collect::<String>());
        }
    }
}

/// Scale of one run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Scale {
    pub connect_total: usize,
    pub connect_concurrency: usize,
    pub upgrade_total: usize,
    pub refused_secs: f64,
    pub refused_concurrency: usize,
    pub refused_settle_secs: f64,
    pub idle_counts: Vec<usize>,
    pub idle_settle_secs: f64,
    pub fanout_sizes: Vec<usize>,
    pub fanout_rounds: usize,
    /// Receivers of cluster-fanout (spread over the 3 nodes); none: not run.
    pub cluster_fanout_sizes: Vec<usize>,
    pub cluster_fanout_rounds: usize,
    pub echo_clients: usize,
    pub echo_rate: f64,
    pub echo_secs: f64,
    pub polling_clients: usize,
    pub polling_rate: f64,
    pub polling_secs: f64,
    /// Pause after a server starts and after it stops, in milliseconds.
    pub server_settle_ms: u64,
    /// Clients (and bad-token handshakes) of the warm-up of every fresh server.
    pub warmup: usize,
    /// Hard bound on one scenario against one server.
    pub scenario_bound_secs: u64,
}

impl Scale {
    pub fn quick() -> Self {
        Scale {
            connect_total: 2000,
            connect_concurrency: 50,
            upgrade_total: 1000,
            refused_secs: 5.0,
            refused_concurrency: 32,
            refused_settle_secs: 2.0,
            idle_counts: vec![1000, 5000],
            idle_settle_secs: 2.0,
            fanout_sizes: vec![1000],
            fanout_rounds: 10,
            cluster_fanout_sizes: vec![300],
            cluster_fanout_rounds: 50,
            echo_clients: 50,
            echo_rate: 1000.0,
            echo_secs: 5.0,
            polling_clients: 20,
            polling_rate: 200.0,
            polling_secs: 5.0,
            server_settle_ms: 500,
            warmup: 300,
            scenario_bound_secs: 120,
        }
    }

    pub fn full() -> Self {
        Scale {
            connect_total: 10_000,
            connect_concurrency: 100,
            upgrade_total: 5000,
            refused_secs: 20.0,
            refused_concurrency: 50,
            refused_settle_secs: 5.0,
            idle_counts: vec![10_000, 50_000],
            idle_settle_secs: 5.0,
            fanout_sizes: vec![1000, 10_000],
            fanout_rounds: 20,
            cluster_fanout_sizes: vec![3000],
            cluster_fanout_rounds: 100,
            echo_clients: 100,
            echo_rate: 5000.0,
            echo_secs: 20.0,
            polling_clients: 100,
            polling_rate: 1000.0,
            polling_secs: 20.0,
            server_settle_ms: 500,
            warmup: 1000,
            scenario_bound_secs: 600,
        }
    }

    pub fn ci() -> Self {
        Scale {
            connect_total: 40,
            connect_concurrency: 8,
            upgrade_total: 20,
            refused_secs: 1.0,
            refused_concurrency: 4,
            refused_settle_secs: 0.2,
            idle_counts: vec![50],
            idle_settle_secs: 0.3,
            fanout_sizes: vec![20],
            fanout_rounds: 3,
            // Cheap (three gateways, a few seconds); skipped, saying so,
            // when Redis does not answer.
            cluster_fanout_sizes: vec![30],
            cluster_fanout_rounds: 3,
            echo_clients: 4,
            echo_rate: 40.0,
            echo_secs: 1.0,
            polling_clients: 3,
            polling_rate: 15.0,
            polling_secs: 1.0,
            server_settle_ms: 100,
            warmup: 0,
            scenario_bound_secs: 60,
        }
    }

    pub fn bound(&self) -> Duration {
        Duration::from_secs(self.scenario_bound_secs)
    }
}

/// Warms a fresh server up before it is measured (JIT compilers, lazily
/// initialised paths, allocator pools): `connects` clients connect, echo
/// once and leave, and as many bad-token handshakes are refused.
pub async fn warmup(ctx: std::sync::Arc<crate::client::Ctx>, connects: usize) {
    if connects == 0 {
        return;
    }
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (client_ctx, next) = (ctx.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let ctx = client_ctx;
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < connects {
                if let Ok(mut ws) = crate::client::connect_ws(&ctx, &ctx.token).await {
                    crate::client::echo_once(&ctx, &mut ws).await.ok();
                }
            }
        }));
        let ctx = ctx.clone();
        tasks.push(tokio::spawn(async move {
            let path = format!(
                "{}?{}",
                ctx.path,
                crate::eio::query(Some(&ctx.bad_token), "polling", None)
            );
            let Ok(mut conn) = crate::http::HttpConn::connect(&ctx.sources, ctx.addr).await else {
                return;
            };
            for _ in 0..connects / 16 {
                if conn.closed {
                    match crate::http::HttpConn::connect(&ctx.sources, ctx.addr).await {
                        Ok(c) => conn = c,
                        Err(_) => return,
                    }
                }
                if conn.request("GET", &path, &[], None).await.is_err() {
                    return;
                }
            }
        }));
    }
    for task in tasks {
        task.await.ok();
    }
}
