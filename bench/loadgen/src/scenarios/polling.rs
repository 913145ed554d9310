//! Polling echo: the echo scenario for long-polling clients (one connection
//! for the long-poll GETs, one for the POSTs, as browsers do).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Barrier, mpsc};
use tokio::time::{Instant, MissedTickBehavior};

use super::echo::{DRAIN, Tally, ack_id, echo_packet, finish};
use super::{Outcome, Probe};
use crate::client::{self, Ctx, Fail};
use crate::eio::{self, Eio};
use crate::progress::Progress;
use crate::stats::SharedHistogram;

pub async fn run(
    ctx: Arc<Ctx>,
    probe: &Probe,
    clients: usize,
    rate: f64,
    duration: Duration,
) -> Outcome {
    let clients = clients.max(1);
    let period = Duration::from_secs_f64(clients as f64 / rate.max(0.001));
    let latency = Arc::new(SharedHistogram::new());
    let ready = Arc::new(Barrier::new(clients + 1));
    let progress = Progress::new("echo (polling)", 0);
    let mut tasks = Vec::new();
    for i in 0..clients {
        let (ctx, latency, ready, progress) = (
            ctx.clone(),
            latency.clone(),
            ready.clone(),
            progress.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let connected = client::connect_polling(&ctx, &ctx.token).await;
            ready.wait().await;
            let client = match connected {
                Ok(c) => c,
                Err(fail) => {
                    tally.errors.add(&fail);
                    return tally;
                }
            };
            let client::PollingClient {
                mut get,
                mut post,
                url,
            } = client;
            let pending: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
            let (pong_tx, mut pong_rx) = mpsc::unbounded_channel::<()>();
            let acked = Arc::new(std::sync::atomic::AtomicU64::new(0));
            // The reader: long-poll GETs.
            let reader = {
                let (ctx, pending, latency, acked, progress) = (
                    ctx.clone(),
                    pending.clone(),
                    latency.clone(),
                    acked.clone(),
                    progress.clone(),
                );
                let get_url = url.clone();
                tokio::spawn(async move {
                    loop {
                        let response = match get.request("GET", &get_url, &[], None).await {
                            Ok(r) if r.status == 200 => r,
                            Ok(r) => {
                                return Some(Fail::new(
                                    format!("http_{}", r.status),
                                    r.text().to_owned(),
                                ));
                            }
                            Err(e) => return Some(Fail::new("io", e)),
                        };
                        for packet in eio::split_payload(response.text()) {
                            match eio::parse_eio(packet) {
                                Eio::Ping => {
                                    pong_tx.send(()).ok();
                                }
                                Eio::Message(m) => {
                                    if let Some(id) = ack_id(ctx.echo_mode, &eio::parse_sio(m)) {
                                        let sent = pending
                                            .lock()
                                            .unwrap_or_else(|e| e.into_inner())
                                            .remove(&id);
                                        if let Some(at) = sent {
                                            latency.record_duration(i, at.elapsed());
                                            acked
                                                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                            progress.inc();
                                        }
                                    }
                                }
                                Eio::Close => return Some(Fail::new("closed", "engine.io close")),
                                _ => {}
                            }
                        }
                    }
                })
            };
            // The writer: POSTs at the fixed rate, and pongs.
            let begin = Instant::now() + period.mul_f64(i as f64 / clients as f64);
            let end = Instant::now() + duration;
            let mut tick = tokio::time::interval_at(begin, period);
            tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
            let mut id = 0u64;
            loop {
                let mut batch = Vec::new();
                tokio::select! {
                    at = tick.tick() => {
                        if at >= end {
                            break;
                        }
                        id += 1;
                        pending.lock().unwrap_or_else(|e| e.into_inner()).insert(id, at);
                        batch.push(echo_packet(id));
                        tally.sent += 1;
                    }
                    Some(()) = pong_rx.recv() => batch.push("3".to_owned()),
                }
                while pong_rx.try_recv().is_ok() {
                    batch.push("3".to_owned());
                }
                if let Err(fail) = client::post_packets(&mut post, &url, &batch).await {
                    tally.errors.add(&fail);
                    break;
                }
            }
            // Drain outstanding acks.
            let drain_until = Instant::now() + DRAIN;
            while Instant::now() < drain_until
                && !pending.lock().unwrap_or_else(|e| e.into_inner()).is_empty()
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            reader.abort();
            if let Ok(Some(fail)) = reader.await {
                tally.errors.add(&fail);
            }
            tally.acked = acked.load(std::sync::atomic::Ordering::Relaxed);
            tally
        }));
    }
    ready.wait().await;
    let _show = progress.show(Duration::from_secs(2));
    let cpu0 = probe.cpu();
    let tally = Tally::gather(tasks).await;
    let cpu = probe.cpu() - cpu0;
    let mut out = Outcome::default();
    out.set("transport", "polling");
    finish(&mut out, tally, clients, rate, duration, cpu, &latency);
    out
}
