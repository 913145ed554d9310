//! Fan-out: one emit to a room of N clients, repeated for a number of
//! rounds. A trigger client emits `emit-room` ("fan", {t, seq}) and the app
//! emits `fanout` to the room; for a server without an app (Portcullis' echo
//! hub) the clients are put in the group and the emit is sent through the
//! REST API instead. Latency is measured from the timestamp in the payload.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::{ErrorCounts, Outcome, Probe, round};
use crate::client::{self, Ctx, Fail};
use crate::eio::{self, Eio};
use crate::http::HttpConn;
use crate::progress::Progress;
use crate::stats::{SharedHistogram, now_micros};

const ROOM: &str = "fan";

pub async fn run(
    ctx: Arc<Ctx>,
    probe: &Probe,
    receivers: usize,
    rounds: usize,
    concurrency: usize,
    rest_trigger: bool,
) -> Outcome {
    let mut out = Outcome::default();
    out.set("receivers", receivers as u64);
    out.set("rounds", rounds as u64);
    out.set("trigger", if rest_trigger { "rest" } else { "event" });
    let cancel = CancellationToken::new();
    let delivered = Arc::new(AtomicU64::new(0));
    let last_delivery = Arc::new(AtomicU64::new(0));
    let latency = Arc::new(SharedHistogram::new());
    let next = Arc::new(AtomicUsize::new(0));
    let progress = Progress::new(
        format!("fan-out {receivers}: connect and join"),
        receivers as u64,
    );
    let show = progress.show(Duration::from_secs(2));
    let mut workers = Vec::new();
    for worker in 0..concurrency.min(receivers).max(1) {
        let (ctx, next, cancel, progress) =
            (ctx.clone(), next.clone(), cancel.clone(), progress.clone());
        let (delivered, last_delivery, latency) =
            (delivered.clone(), last_delivery.clone(), latency.clone());
        workers.push(tokio::spawn(async move {
            let mut errors = ErrorCounts::default();
            while next.fetch_add(1, Ordering::Relaxed) < receivers {
                let mut ws = match client::connect_ws(&ctx, &ctx.token).await {
                    Ok(ws) => ws,
                    Err(fail) => {
                        errors.add(&fail);
                        progress.error();
                        continue;
                    }
                };
                if !rest_trigger && let Err(fail) = client::join_room(&ctx, &mut ws, ROOM).await {
                    errors.add(&fail);
                    progress.error();
                    continue;
                }
                progress.inc();
                let (cancel, delivered, last_delivery, latency) = (
                    cancel.clone(),
                    delivered.clone(),
                    last_delivery.clone(),
                    latency.clone(),
                );
                tokio::spawn(async move {
                    client::receive_loop(ws, cancel, move |data| {
                        if data.starts_with("[\"fanout\"") {
                            let now = now_micros();
                            if let Some(t) = eio::extract_t(data) {
                                latency.record(worker, now.saturating_sub(t));
                            }
                            last_delivery.fetch_max(now, Ordering::Relaxed);
                            delivered.fetch_add(1, Ordering::Relaxed);
                        }
                    })
                    .await;
                });
            }
            errors
        }));
    }
    let mut errors = ErrorCounts::gather(workers).await;
    drop(show);
    let joined = progress.done();
    out.set("joined", joined);
    let result = trigger_rounds(
        &ctx,
        probe,
        rounds,
        joined,
        rest_trigger,
        &delivered,
        &last_delivery,
    )
    .await;
    match result {
        Ok(rounds_figures) => {
            for (k, v) in rounds_figures {
                out.set(&k, v);
            }
        }
        Err(fail) => errors.add(&fail),
    }
    errors.write(&mut out);
    out.latency(latency.merged());
    cancel.cancel();
    tokio::time::sleep(Duration::from_millis(100)).await;
    out
}

enum Trigger {
    Event(Box<client::Ws>),
    Rest(HttpConn),
}

async fn trigger_rounds(
    ctx: &Ctx,
    probe: &Probe,
    rounds: usize,
    joined: u64,
    rest_trigger: bool,
    delivered: &AtomicU64,
    last_delivery: &AtomicU64,
) -> Result<Vec<(String, serde_json::Value)>, Fail> {
    let api = |path: &str| format!("/api/hubs/{}/{path}", ctx.hub);
    let auth = format!("Bearer {}", ctx.api_token);
    let mut trigger = if rest_trigger {
        let mut conn = HttpConn::connect(&ctx.sources, ctx.addr)
            .await
            .map_err(|e| Fail::new("tcp_connect", e))?;
        let body = json!({ "groups": [ROOM] }).to_string();
        let response = conn
            .request(
                "POST",
                &api(":addToGroups"),
                &[
                    ("Authorization", &auth),
                    ("Content-Type", "application/json"),
                ],
                Some(body.as_bytes()),
            )
            .await
            .map_err(|e| Fail::new("io", e))?;
        if response.status / 100 != 2 {
            return Err(Fail::new(
                format!("rest_{}", response.status),
                response.text().to_owned(),
            ));
        }
        Trigger::Rest(conn)
    } else {
        Trigger::Event(Box::new(client::connect_ws(ctx, &ctx.token).await?))
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let progress = Progress::new(format!("fan-out {joined}: rounds"), rounds as u64);
    let _show = progress.show(Duration::from_secs(2));
    let cpu0 = probe.cpu();
    let base = delivered.load(Ordering::Relaxed);
    let mut busy_micros = 0u64;
    let mut complete_rounds = 0u64;
    for seq in 0..rounds {
        let target = base + joined * (seq as u64 + 1);
        let t = now_micros();
        let payload = json!({ "t": t, "seq": seq });
        match &mut trigger {
            Trigger::Event(ws) => {
                client::send_text(ws, format!("42[\"emit-room\",\"{ROOM}\",{payload}]")).await?;
            }
            Trigger::Rest(conn) => {
                let body = format!("42[\"fanout\",{payload}]");
                let response = conn
                    .request(
                        "POST",
                        &api(&format!("groups/{ROOM}/:send")),
                        &[("Authorization", &auth), ("Content-Type", "text/plain")],
                        Some(body.as_bytes()),
                    )
                    .await
                    .map_err(|e| Fail::new("io", e))?;
                if response.status / 100 != 2 {
                    return Err(Fail::new(
                        format!("rest_{}", response.status),
                        response.text().to_owned(),
                    ));
                }
            }
        }
        // Wait for the round to be delivered (answering the trigger's pings).
        let give_up = Instant::now() + Duration::from_secs(10);
        while delivered.load(Ordering::Relaxed) < target && Instant::now() < give_up {
            match &mut trigger {
                Trigger::Event(ws) => {
                    tokio::select! {
                        msg = ws.next() => {
                            if let Some(Ok(Message::Text(text))) = msg
                                && eio::parse_eio(&text) == Eio::Ping
                            {
                                client::send_text(ws, "3").await?;
                            }
                        }
                        _ = tokio::time::sleep(Duration::from_millis(1)) => {}
                    }
                }
                Trigger::Rest(_) => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        }
        if delivered.load(Ordering::Relaxed) >= target {
            complete_rounds += 1;
        }
        busy_micros += last_delivery.load(Ordering::Relaxed).saturating_sub(t);
        progress.inc();
        // Late deliveries of an incomplete round must not count for the next.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cpu = probe.cpu() - cpu0;
    let got = delivered.load(Ordering::Relaxed) - base;
    let expected = joined * rounds as u64;
    let mut figures = vec![
        ("expected".to_owned(), json!(expected)),
        ("delivered".to_owned(), json!(got)),
        ("lost".to_owned(), json!(expected.saturating_sub(got))),
        ("complete_rounds".to_owned(), json!(complete_rounds)),
        (
            "deliveries_per_s".to_owned(),
            json!(round(got as f64 / (busy_micros.max(1) as f64 / 1e6), 1)),
        ),
        (
            "round_ms_mean".to_owned(),
            json!(round(busy_micros as f64 / 1000.0 / rounds.max(1) as f64, 3)),
        ),
    ];
    if got > 0 && !probe.is_empty() {
        figures.push((
            "cpu_us_per_delivery".to_owned(),
            json!(round(cpu * 1e6 / got as f64, 3)),
        ));
    }
    Ok(figures)
}
