//! Connect storm: authenticated connects (WebSocket handshake or polling
//! handshake + upgrade, then namespace CONNECT) as fast as `concurrency`
//! clients in flight allow. Connected clients stay open until the end.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use super::{ErrorCounts, Outcome, Probe, mib, round};
use crate::client::{self, Ctx, Ws};
use crate::progress::Progress;
use crate::stats::SharedHistogram;

pub async fn run(
    ctx: Arc<Ctx>,
    probe: &Probe,
    total: usize,
    concurrency: usize,
    upgrade: bool,
) -> Outcome {
    let next = Arc::new(AtomicUsize::new(0));
    let latency = Arc::new(SharedHistogram::new());
    let held: Arc<Mutex<Vec<Ws>>> = Arc::new(Mutex::new(Vec::with_capacity(total)));
    let label = if upgrade {
        "connect (polling + upgrade)"
    } else {
        "connect (websocket)"
    };
    let progress = Progress::new(label, total as u64);
    let _show = progress.show(Duration::from_secs(2));
    let cpu0 = probe.cpu();
    let started = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..concurrency.min(total).max(1) {
        let (ctx, next, latency, held, progress) = (
            ctx.clone(),
            next.clone(),
            latency.clone(),
            held.clone(),
            progress.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut errors = ErrorCounts::default();
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let t0 = Instant::now();
                let result = if upgrade {
                    client::connect_upgrade(&ctx, &ctx.token).await
                } else {
                    client::connect_ws(&ctx, &ctx.token).await
                };
                match result {
                    Ok(ws) => {
                        latency.record_duration(worker, t0.elapsed());
                        held.lock().await.push(ws);
                        progress.inc();
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
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = probe.cpu() - cpu0;
    let connected = held.lock().await.len();
    let rss = probe.rss();
    let mut out = Outcome::default();
    out.set(
        "transport",
        if upgrade {
            "polling+upgrade"
        } else {
            "websocket"
        },
    );
    out.set("attempts", total as u64);
    out.set("connected", connected as u64);
    out.set("duration_s", round(elapsed, 3));
    out.set(
        "connects_per_s",
        round(connected as f64 / elapsed.max(1e-9), 1),
    );
    if connected > 0 && !probe.is_empty() {
        out.set("cpu_us_per_connect", round(cpu * 1e6 / connected as f64, 1));
        out.set("rss_with_clients_mib", mib(rss));
    }
    errors.write(&mut out);
    out.latency(latency.merged());
    // Close every client (not measured).
    held.lock().await.clear();
    out
}
