//! A plain progress line on stderr every few seconds during long phases.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

/// Counters a phase advances; a background task prints them.
#[derive(Clone)]
pub struct Progress {
    inner: Arc<Inner>,
}

struct Inner {
    label: String,
    total: u64,
    done: AtomicU64,
    errors: AtomicU64,
    started: Instant,
}

impl Progress {
    pub fn new(label: impl Into<String>, total: u64) -> Self {
        Progress {
            inner: Arc::new(Inner {
                label: label.into(),
                total,
                done: AtomicU64::new(0),
                errors: AtomicU64::new(0),
                started: Instant::now(),
            }),
        }
    }

    pub fn inc(&self) {
        self.inner.done.fetch_add(1, Ordering::Relaxed);
    }

    pub fn error(&self) {
        self.inner.errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn done(&self) -> u64 {
        self.inner.done.load(Ordering::Relaxed)
    }

    pub fn errors(&self) -> u64 {
        self.inner.errors.load(Ordering::Relaxed)
    }

    fn line(&self) -> String {
        let elapsed = self.inner.started.elapsed().as_secs_f64();
        let total = if self.inner.total > 0 {
            format!("/{}", self.inner.total)
        } else {
            String::new()
        };
        format!(
            "  .. {}: {}{} done, {} errors, {:.1}s",
            self.inner.label,
            self.done(),
            total,
            self.errors(),
            elapsed
        )
    }

    /// Prints the line every `every` until the returned guard is dropped.
    pub fn show(&self, every: Duration) -> ProgressGuard {
        let me = self.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                eprintln!("{}", me.line());
            }
        });
        ProgressGuard { task }
    }
}

pub struct ProgressGuard {
    task: JoinHandle<()>,
}

impl Drop for ProgressGuard {
    fn drop(&mut self) {
        self.task.abort();
    }
}
