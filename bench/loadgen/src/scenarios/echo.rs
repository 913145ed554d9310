//! Echo: every client emits `echo` with an ack at a fixed rate (open loop;
//! latency counted from the scheduled send time, so a stalled server is not
//! hidden by a stalled sender) and the app acks the arguments back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::Barrier;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message;

use super::{ErrorCounts, Outcome, Probe, round};
use crate::client::{self, Ctx, Fail};
use crate::eio::{self, Eio, Sio};
use crate::progress::Progress;
use crate::stats::{SharedHistogram, now_micros};

/// How long outstanding acks are awaited after the sending stops.
pub const DRAIN: Duration = Duration::from_secs(2);

/// Is `packet` (a Socket.IO packet) the answer to ack id `id`? With the echo
/// hub the event itself comes back.
pub fn ack_id(echo_mode: bool, sio: &Sio<'_>) -> Option<u64> {
    match sio {
        Sio::Ack { id, .. } => Some(*id),
        Sio::Event { id: Some(id), .. } if echo_mode => Some(*id),
        _ => None,
    }
}

pub fn echo_packet(id: u64) -> String {
    format!("42{id}[\"echo\",{{\"t\":{}}}]", now_micros())
}

#[derive(Default)]
pub struct Tally {
    pub sent: u64,
    pub acked: u64,
    pub errors: ErrorCounts,
}

impl Tally {
    /// The tallies of every client task, once all have finished.
    pub async fn gather(tasks: Vec<tokio::task::JoinHandle<Tally>>) -> Tally {
        let mut tally = Tally::default();
        for task in tasks {
            if let Ok(t) = task.await {
                tally.sent += t.sent;
                tally.acked += t.acked;
                tally.errors.merge(t.errors);
            }
        }
        tally
    }
}

pub fn finish(
    out: &mut Outcome,
    tally: Tally,
    clients: usize,
    rate: f64,
    duration: Duration,
    cpu: f64,
    latency: &SharedHistogram,
) {
    out.set("clients", clients as u64);
    out.set("target_rate", rate);
    out.set("duration_s", round(duration.as_secs_f64(), 2));
    out.set("sent", tally.sent);
    out.set("acked", tally.acked);
    out.set("lost", tally.sent.saturating_sub(tally.acked));
    out.set(
        "achieved_rate",
        round(tally.acked as f64 / duration.as_secs_f64(), 1),
    );
    if tally.acked > 0 && cpu > 0.0 {
        out.set("cpu_us_per_echo", round(cpu * 1e6 / tally.acked as f64, 2));
    }
    tally.errors.write(out);
    out.latency(latency.merged());
}

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
    let progress = Progress::new("echo (websocket)", 0);
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
            let connected = client::connect_ws(&ctx, &ctx.token).await;
            ready.wait().await;
            let mut ws = match connected {
                Ok(ws) => ws,
                Err(fail) => {
                    tally.errors.add(&fail);
                    return tally;
                }
            };
            let begin = Instant::now() + period.mul_f64(i as f64 / clients as f64);
            let end = Instant::now() + duration;
            let mut tick = tokio::time::interval_at(begin, period);
            tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
            let mut pending: HashMap<u64, Instant> = HashMap::new();
            let mut id = 0u64;
            let mut sending = true;
            let drain_until = end + DRAIN;
            loop {
                tokio::select! {
                    at = tick.tick(), if sending => {
                        if at >= end {
                            sending = false;
                            continue;
                        }
                        id += 1;
                        pending.insert(id, at);
                        if let Err(fail) = client::send_text(&mut ws, echo_packet(id)).await {
                            tally.errors.add(&fail);
                            break;
                        }
                        tally.sent += 1;
                    }
                    msg = ws.next() => match msg {
                        Some(Ok(Message::Text(text))) => match eio::parse_eio(&text) {
                            Eio::Ping => {
                                if let Err(fail) = client::send_text(&mut ws, "3").await {
                                    tally.errors.add(&fail);
                                    break;
                                }
                            }
                            Eio::Message(m) => {
                                if let Some(id) = ack_id(ctx.echo_mode, &eio::parse_sio(m))
                                    && let Some(at) = pending.remove(&id)
                                {
                                    latency.record_duration(i, at.elapsed());
                                    tally.acked += 1;
                                    progress.inc();
                                }
                            }
                            _ => {}
                        },
                        Some(Ok(_)) => {}
                        _ => {
                            tally.errors.add(&Fail::new("closed", "closed during echo"));
                            break;
                        }
                    },
                    _ = tokio::time::sleep_until(drain_until), if !sending => break,
                }
                if !sending && pending.is_empty() {
                    break;
                }
            }
            tally
        }));
    }
    ready.wait().await;
    let _show = progress.show(Duration::from_secs(2));
    let cpu0 = probe.cpu();
    let tally = Tally::gather(tasks).await;
    let cpu = probe.cpu() - cpu0;
    let mut out = Outcome::default();
    out.set("transport", "websocket");
    finish(&mut out, tally, clients, rate, duration, cpu, &latency);
    out
}
