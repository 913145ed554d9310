//! Refused storm: handshakes with a bad token (signed with the wrong key),
//! back to back on `concurrency` keep-alive connections for a while: what
//! an attacker costs each server in CPU and in memory kept afterwards.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use super::{ErrorCounts, Outcome, Probe, mib, round};
use crate::client::{Ctx, Fail};
use crate::eio;
use crate::http::HttpConn;
use crate::progress::Progress;
use crate::stats::SharedHistogram;

pub async fn run(
    ctx: Arc<Ctx>,
    probe: &Probe,
    duration: Duration,
    concurrency: usize,
    settle: Duration,
) -> Outcome {
    let path = format!(
        "{}?{}",
        ctx.path,
        eio::query(Some(&ctx.bad_token), "polling", None)
    );
    let latency = Arc::new(SharedHistogram::new());
    let progress = Progress::new("refused storm", 0);
    let _show = progress.show(Duration::from_secs(2));
    let peak = Arc::new(AtomicU64::new(0));
    let rss_before = probe.rss();
    let sampler = {
        let (probe, peak) = (probe.clone(), peak.clone());
        tokio::spawn(async move {
            loop {
                peak.fetch_max(probe.rss(), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let cpu0 = probe.cpu();
    let started = Instant::now();
    let deadline = started + duration;
    let mut workers = Vec::new();
    for worker in 0..concurrency.max(1) {
        let (ctx, path, latency, progress) =
            (ctx.clone(), path.clone(), latency.clone(), progress.clone());
        workers.push(tokio::spawn(async move {
            let mut answers: BTreeMap<u16, u64> = BTreeMap::new();
            let mut errors = ErrorCounts::default();
            let mut reconnects = 0u64;
            let mut conn: Option<HttpConn> = None;
            while Instant::now() < deadline {
                if conn.as_ref().is_none_or(|c| c.closed) {
                    match HttpConn::connect(&ctx.sources, ctx.addr).await {
                        Ok(c) => {
                            reconnects += 1;
                            conn = Some(c);
                        }
                        Err(e) => {
                            errors.add(&Fail::new("tcp_connect", e));
                            progress.error();
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    }
                }
                let Some(c) = conn.as_mut() else { continue };
                let t0 = Instant::now();
                match tokio::time::timeout(ctx.step_timeout, c.request("GET", &path, &[], None))
                    .await
                {
                    Ok(Ok(response)) => {
                        latency.record_duration(worker, t0.elapsed());
                        *answers.entry(response.status).or_default() += 1;
                        progress.inc();
                    }
                    Ok(Err(e)) => {
                        errors.add(&Fail::new("io", e));
                        progress.error();
                        conn = None;
                    }
                    Err(_) => {
                        errors.add(&Fail::new("timeout", "refused handshake"));
                        progress.error();
                        conn = None;
                    }
                }
            }
            (answers, errors, reconnects)
        }));
    }
    let mut answers: BTreeMap<u16, u64> = BTreeMap::new();
    let mut errors = ErrorCounts::default();
    let mut connections = 0u64;
    for worker in workers {
        if let Ok((a, e, r)) = worker.await {
            for (k, v) in a {
                *answers.entry(k).or_default() += v;
            }
            errors.merge(e);
            connections += r;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = probe.cpu() - cpu0;
    let rss_end = probe.rss();
    peak.fetch_max(rss_end, Ordering::Relaxed);
    tokio::time::sleep(settle).await;
    sampler.abort();
    let rss_after = probe.rss();
    let attempts: u64 = answers.values().sum();
    let mut out = Outcome::default();
    out.set("attempts", attempts);
    out.set("duration_s", round(elapsed, 3));
    out.set(
        "attempts_per_s",
        round(attempts as f64 / elapsed.max(1e-9), 1),
    );
    let main_status = answers
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(s, _)| *s)
        .unwrap_or(0);
    out.set("answer", main_status);
    out.set(
        "answers",
        json!(
            answers
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect::<BTreeMap<_, _>>()
        ),
    );
    out.set("sessions_created", answers.get(&200).copied().unwrap_or(0));
    out.set("tcp_connections", connections);
    if attempts > 0 && !probe.is_empty() {
        out.set("cpu_us_per_attempt", round(cpu * 1e6 / attempts as f64, 2));
    }
    if !probe.is_empty() {
        out.set("rss_before_mib", mib(rss_before));
        out.set("rss_peak_mib", mib(peak.load(Ordering::Relaxed)));
        out.set("rss_after_mib", mib(rss_after));
        out.set("settle_s", round(settle.as_secs_f64(), 2));
        out.set(
            "retained_kib",
            round((rss_after as f64 - rss_before as f64) / 1024.0, 1),
        );
    }
    errors.write(&mut out);
    out.latency(latency.merged());
    out
}
