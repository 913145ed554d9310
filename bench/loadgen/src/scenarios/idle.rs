//! Idle: resident memory per connected, idle WebSocket client. The clients
//! answer pings and do nothing else.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use super::{ErrorCounts, Outcome, Probe, mib, round};
use crate::client::{self, Ctx};
use crate::progress::Progress;

pub async fn run(
    ctx: Arc<Ctx>,
    probe: &Probe,
    count: usize,
    concurrency: usize,
    settle: Duration,
) -> Outcome {
    let before: Vec<(String, u64)> = per_process(probe);
    let rss_before = probe.rss();
    let cancel = CancellationToken::new();
    let next = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicU64::new(0));
    let progress = Progress::new(format!("idle {count}"), count as u64);
    let _show = progress.show(Duration::from_secs(2));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency.min(count).max(1) {
        let (ctx, next, cancel, dropped, progress) = (
            ctx.clone(),
            next.clone(),
            cancel.clone(),
            dropped.clone(),
            progress.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut errors = ErrorCounts::default();
            while next.fetch_add(1, Ordering::Relaxed) < count {
                match client::connect_ws(&ctx, &ctx.token).await {
                    Ok(ws) => {
                        progress.inc();
                        let (cancel, dropped) = (cancel.clone(), dropped.clone());
                        tokio::spawn(async move {
                            if client::receive_loop(ws, cancel, |_| {}).await {
                                dropped.fetch_add(1, Ordering::Relaxed);
                            }
                        });
                    }
                    Err(fail) => {
                        errors.add(&fail);
                        progress.error();
                    }
                }
            }
            errors
        }));
    }
    let errors = ErrorCounts::gather(workers).await;
    let connect_s = started.elapsed().as_secs_f64();
    tokio::time::sleep(settle).await;
    let rss_after = probe.rss();
    let after = per_process(probe);
    let connected = progress.done();
    let alive = connected.saturating_sub(dropped.load(Ordering::Relaxed));
    let mut out = Outcome::default();
    out.set("clients", count as u64);
    out.set("connected", connected);
    out.set("alive_at_measure", alive);
    out.set("connect_s", round(connect_s, 2));
    out.set("settle_s", round(settle.as_secs_f64(), 2));
    out.set("rss_before_mib", mib(rss_before));
    out.set("rss_after_mib", mib(rss_after));
    if alive > 0 {
        let per = (rss_after as f64 - rss_before as f64) / alive as f64 / 1024.0;
        out.set("kib_per_conn", round(per, 2));
        if before.len() > 1 {
            let mut each = Map::new();
            for ((name, b), (_, a)) in before.iter().zip(after.iter()) {
                each.insert(
                    name.clone(),
                    Value::from(round((*a as f64 - *b as f64) / alive as f64 / 1024.0, 2)),
                );
            }
            out.set("kib_per_conn_by_process", Value::Object(each));
        }
    }
    if let Some(own) = crate::procfs::rss_bytes(std::process::id()) {
        out.set("loadgen_rss_mib", mib(own));
    }
    errors.write(&mut out);
    cancel.cancel();
    // Let the client tasks close their sockets.
    tokio::time::sleep(Duration::from_millis(100)).await;
    out
}

fn per_process(probe: &Probe) -> Vec<(String, u64)> {
    probe
        .processes
        .iter()
        .map(|(name, pid)| (name.clone(), crate::procfs::rss_bytes(*pid).unwrap_or(0)))
        .collect()
}
