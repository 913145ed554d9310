//! Cluster fan-out: N clients spread evenly over the nodes of a cluster
//! (client i connects straight to node i mod nodes, the equivalent of sticky
//! sessions) join room `fan`; a trigger on node 1 makes the app emit
//! `fanout` to the room, repeated for some rounds. The nodes share the room
//! over Redis, so the deliveries to clients of nodes 2 and 3 are cross-node.
//!
//! Figures: deliveries/s overall and cross-node, delivery latency from the
//! timestamp in the payload split into same-node (node 1) and cross-node
//! deliveries, lost deliveries, and the Redis commands each broadcast costs.
//!
//! Redis commands are counted with `MONITOR` on the peer's own connections
//! (found from its processes' descriptors and /proc/net/tcp), so other
//! users of a shared Redis do not count: commands during the rounds ÷
//! rounds. The same count over an idle window before the rounds (nothing
//! broadcast: heartbeats, keep-alives) is reported as a rate and, command by
//! command, subtracted for the net figure. `INFO commandstats` before and after gives the whole
//! server's count too (every client's), and Redis' CPU per broadcast.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Map, Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::{ErrorCounts, Outcome, Probe, round};
use crate::client::{self, Ctx, Fail};
use crate::eio::{self, Eio};
use crate::http::HttpConn;
use crate::progress::Progress;
use crate::redis_info::{Monitor, Redis, Seen, Snapshot};
use crate::stats::{SharedHistogram, now_micros};

const ROOM: &str = "fan";
/// Seconds without broadcasts over which Redis' background command rate
/// (heartbeats, keep-alives) is measured before the rounds.
const IDLE_WINDOW: Duration = Duration::from_secs(3);

/// The cluster under test.
pub struct Cluster {
    /// One context per node; the trigger is on the first.
    pub nodes: Vec<Arc<Ctx>>,
    /// The Redis the nodes share.
    pub redis: std::net::SocketAddr,
}

/// Deliveries of one kind (same-node or cross-node).
#[derive(Default)]
struct Tally {
    delivered: AtomicU64,
    last: AtomicU64,
    latency: SharedHistogram,
}

impl Tally {
    fn record(&self, shard: usize, now: u64, t: Option<u64>) {
        if let Some(t) = t {
            self.latency.record(shard, now.saturating_sub(t));
        }
        self.last.fetch_max(now, Ordering::Relaxed);
        self.delivered.fetch_add(1, Ordering::Relaxed);
    }

    fn count(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }
}

pub async fn run(
    cluster: &Cluster,
    probe: &Probe,
    receivers: usize,
    rounds: usize,
    concurrency: usize,
) -> Outcome {
    let nodes = cluster.nodes.len().max(1);
    let rest_trigger = cluster.nodes[0].echo_mode;
    let mut out = Outcome::default();
    out.set("nodes", nodes as u64);
    out.set("receivers", receivers as u64);
    out.set("rounds", rounds as u64);
    out.set("trigger", if rest_trigger { "rest" } else { "event" });
    out.set("trigger_node", 1u64);
    let cancel = CancellationToken::new();
    // [0]: clients of node 1 (same node as the trigger), [1]: the others.
    let tallies: Arc<[Tally; 2]> = Arc::new(Default::default());
    let joined_by_kind: Arc<[AtomicU64; 2]> = Arc::new(Default::default());
    let next = Arc::new(AtomicUsize::new(0));
    let progress = Progress::new(
        format!("cluster fan-out {receivers} over {nodes} nodes: connect and join"),
        receivers as u64,
    );
    let show = progress.show(Duration::from_secs(2));
    let mut workers = Vec::new();
    for worker in 0..concurrency.min(receivers).max(1) {
        let (nodes_ctx, next, cancel, progress) = (
            cluster.nodes.clone(),
            next.clone(),
            cancel.clone(),
            progress.clone(),
        );
        let (tallies, joined_by_kind) = (tallies.clone(), joined_by_kind.clone());
        workers.push(tokio::spawn(async move {
            let mut errors = ErrorCounts::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= receivers {
                    break;
                }
                let node = i % nodes_ctx.len();
                let ctx = &nodes_ctx[node];
                let mut ws = match client::connect_ws(ctx, &ctx.token).await {
                    Ok(ws) => ws,
                    Err(fail) => {
                        errors.add(&fail);
                        progress.error();
                        continue;
                    }
                };
                if !rest_trigger && let Err(fail) = client::join_room(ctx, &mut ws, ROOM).await {
                    errors.add(&fail);
                    progress.error();
                    continue;
                }
                let kind = usize::from(node != 0);
                joined_by_kind[kind].fetch_add(1, Ordering::Relaxed);
                progress.inc();
                let (cancel, tallies) = (cancel.clone(), tallies.clone());
                tokio::spawn(async move {
                    client::receive_loop(ws, cancel, move |data| {
                        if data.starts_with("[\"fanout\"") {
                            let now = now_micros();
                            tallies[kind].record(worker, now, eio::extract_t(data));
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
    let joined = [
        joined_by_kind[0].load(Ordering::Relaxed),
        joined_by_kind[1].load(Ordering::Relaxed),
    ];
    out.set("joined", progress.done());
    out.set("joined_same_node", joined[0]);
    out.set("joined_cross_node", joined[1]);
    match trigger_rounds(cluster, probe, rounds, joined, &tallies).await {
        Ok(figures) => {
            for (k, v) in figures {
                out.set(&k, v);
            }
        }
        Err(fail) => errors.add(&fail),
    }
    errors.write(&mut out);
    for (name, tally) in [("same_node", &tallies[0]), ("cross_node", &tallies[1])] {
        if let Value::Object(map) = crate::stats::summary(&tally.latency.merged()) {
            for (k, v) in map {
                if k != "count" {
                    out.set(&format!("{name}_{k}"), v);
                }
            }
        }
    }
    let (same, cross) = (tallies[0].latency.merged(), tallies[1].latency.merged());
    let mut all = same.clone();
    all.add(&cross).ok();
    out.latency(all);
    out.split = vec![("same-node".into(), same), ("cross-node".into(), cross)];
    cancel.cancel();
    tokio::time::sleep(Duration::from_millis(100)).await;
    out
}

enum Trigger {
    Event(Box<client::Ws>),
    Rest(HttpConn),
}

async fn rest(
    conn: &mut HttpConn,
    ctx: &Ctx,
    path: &str,
    content_type: &str,
    body: &str,
) -> Result<(), Fail> {
    let auth = format!("Bearer {}", ctx.api_token);
    let response = conn
        .request(
            "POST",
            &format!("/api/hubs/{}/{path}", ctx.hub),
            &[("Authorization", &auth), ("Content-Type", content_type)],
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
    Ok(())
}

/// Reads Redis' counters; an error is reported, not fatal.
async fn snapshot(redis: &mut Option<Redis>, error: &mut Option<String>) -> Option<Snapshot> {
    let conn = redis.as_mut()?;
    match conn.snapshot().await {
        Ok(s) => Some(s),
        Err(e) => {
            error.get_or_insert_with(|| format!("INFO: {e:#}"));
            *redis = None;
            None
        }
    }
}

async fn trigger_rounds(
    cluster: &Cluster,
    probe: &Probe,
    rounds: usize,
    joined: [u64; 2],
    tallies: &[Tally; 2],
) -> Result<Vec<(String, Value)>, Fail> {
    let ctx = &cluster.nodes[0];
    let mut trigger = if ctx.echo_mode {
        // Every node's clients join the group through that node's REST API
        // (whether one call would reach the others is the cluster's business;
        // this holds either way).
        for node in &cluster.nodes {
            let mut conn = HttpConn::connect(&node.sources, node.addr)
                .await
                .map_err(|e| Fail::new("tcp_connect", e))?;
            let body = json!({ "groups": [ROOM] }).to_string();
            rest(&mut conn, node, ":addToGroups", "application/json", &body).await?;
        }
        let conn = HttpConn::connect(&ctx.sources, ctx.addr)
            .await
            .map_err(|e| Fail::new("tcp_connect", e))?;
        Trigger::Rest(conn)
    } else {
        Trigger::Event(Box::new(client::connect_ws(ctx, &ctx.token).await?))
    };
    let mut redis_error = None;
    let mut redis = match Redis::connect(cluster.redis).await {
        Ok(r) => Some(r),
        Err(e) => {
            redis_error = Some(format!("connect {}: {e:#}", cluster.redis));
            None
        }
    };
    let monitor = match Monitor::start(cluster.redis).await {
        Ok(m) => Some(m),
        Err(e) => {
            redis_error.get_or_insert_with(|| format!("MONITOR: {e:#}"));
            None
        }
    };
    let pids: Vec<u32> = probe.processes.iter().map(|(_, pid)| *pid).collect();
    let mut own = crate::procfs::tcp_connections_to(&pids, cluster.redis);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The background rate of Redis commands, nothing being broadcast.
    let idle_start = snapshot(&mut redis, &mut redis_error).await;
    let idle_from = unix_now();
    tokio::time::sleep(IDLE_WINDOW).await;
    let before = snapshot(&mut redis, &mut redis_error).await;
    let rounds_from = unix_now();
    let progress = Progress::new("cluster fan-out: rounds", rounds as u64);
    let _show = progress.show(Duration::from_secs(2));
    let cpu0 = probe.cpu_times();
    let own_cpu0 = crate::procfs::cpu_times(std::process::id());
    let base = [tallies[0].count(), tallies[1].count()];
    let total_joined = joined[0] + joined[1];
    let mut busy = [0u64; 2];
    let mut busy_all = 0u64;
    let mut complete_rounds = 0u64;
    let mut incomplete_in_a_row = 0;
    for seq in 0..rounds {
        let target = base[0] + base[1] + total_joined * (seq as u64 + 1);
        let t = now_micros();
        let payload = json!({ "t": t, "seq": seq });
        match &mut trigger {
            Trigger::Event(ws) => {
                client::send_text(ws, format!("42[\"emit-room\",\"{ROOM}\",{payload}]")).await?;
            }
            Trigger::Rest(conn) => {
                let body = format!("42[\"fanout\",{payload}]");
                rest(
                    conn,
                    ctx,
                    &format!("groups/{ROOM}/:send"),
                    "text/plain",
                    &body,
                )
                .await?;
            }
        }
        // Wait for the round (answering the trigger's pings); after two
        // incomplete rounds in a row, wait less: the rest is lost anyway.
        let wait = if incomplete_in_a_row >= 2 { 1 } else { 5 };
        let give_up = Instant::now() + Duration::from_secs(wait);
        let delivered = || tallies[0].count() + tallies[1].count();
        while delivered() < target && Instant::now() < give_up {
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
        if delivered() >= target {
            complete_rounds += 1;
            incomplete_in_a_row = 0;
        } else {
            incomplete_in_a_row += 1;
        }
        let last = [
            tallies[0].last.load(Ordering::Relaxed),
            tallies[1].last.load(Ordering::Relaxed),
        ];
        for kind in 0..2 {
            busy[kind] += last[kind].saturating_sub(t);
        }
        busy_all += last[0].max(last[1]).saturating_sub(t);
        progress.inc();
        // Late deliveries of an incomplete round must not count for the next.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rounds_to = unix_now();
    let after = snapshot(&mut redis, &mut redis_error).await;
    // What the monitor has not read yet is on its way.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen = monitor.map(Monitor::stop);
    own.extend(crate::procfs::tcp_connections_to(&pids, cluster.redis));
    let own: std::collections::BTreeSet<String> = own.iter().map(|a| a.to_string()).collect();
    let cpu = probe.cpu_times() - cpu0;
    let own_cpu = crate::procfs::cpu_times(std::process::id())
        .zip(own_cpu0)
        .map(|(a, b)| a - b);
    let got = [tallies[0].count() - base[0], tallies[1].count() - base[1]];
    let got_all = got[0] + got[1];
    let expected = [joined[0] * rounds as u64, joined[1] * rounds as u64];
    let rate = |n: u64, micros: u64| json!(round(n as f64 / (micros.max(1) as f64 / 1e6), 1));
    let mut figures = vec![
        ("expected".to_owned(), json!(expected[0] + expected[1])),
        ("delivered".to_owned(), json!(got_all)),
        (
            "lost".to_owned(),
            json!((expected[0] + expected[1]).saturating_sub(got_all)),
        ),
        (
            "lost_same_node".to_owned(),
            json!(expected[0].saturating_sub(got[0])),
        ),
        (
            "lost_cross_node".to_owned(),
            json!(expected[1].saturating_sub(got[1])),
        ),
        ("complete_rounds".to_owned(), json!(complete_rounds)),
        ("deliveries_per_s".to_owned(), rate(got_all, busy_all)),
        (
            "same_node_deliveries_per_s".to_owned(),
            rate(got[0], busy[0]),
        ),
        (
            "cross_node_deliveries_per_s".to_owned(),
            rate(got[1], busy[1]),
        ),
        (
            "round_ms_mean".to_owned(),
            json!(round(busy_all as f64 / 1000.0 / rounds.max(1) as f64, 3)),
        ),
    ];
    if got_all > 0 && !probe.is_empty() {
        let per_delivery = |seconds: f64| json!(round(seconds * 1e6 / got_all as f64, 3));
        figures.push(("cpu_us_per_delivery".to_owned(), per_delivery(cpu.total())));
        // The kernel's share (socket writes and reads): a floor every server
        // pays alike, which bounds how far apart they can be.
        figures.push((
            "kernel_cpu_us_per_delivery".to_owned(),
            per_delivery(cpu.system),
        ));
    }
    if let (true, Some(own)) = (got_all > 0, own_cpu) {
        // The load generator's share of the same two cores.
        let per_delivery = |seconds: f64| json!(round(seconds * 1e6 / got_all as f64, 3));
        figures.push((
            "loadgen_cpu_us_per_delivery".to_owned(),
            per_delivery(own.total()),
        ));
        figures.push((
            "loadgen_kernel_cpu_us_per_delivery".to_owned(),
            per_delivery(own.system),
        ));
    }
    let windows = Windows {
        idle: (idle_from, rounds_from),
        rounds: (rounds_from, rounds_to),
        count: rounds,
    };
    if let Some(seen) = &seen {
        figures.extend(own_figures(seen, &own, &windows));
    }
    figures.extend(server_figures(
        (idle_start.as_ref(), before.as_ref(), after.as_ref()),
        &windows,
    ));
    if let Some(e) = redis_error {
        figures.push(("redis_error".to_owned(), json!(e)));
    }
    Ok(figures)
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The idle window and the rounds' window (Unix seconds), and the rounds.
struct Windows {
    idle: (f64, f64),
    rounds: (f64, f64),
    count: usize,
}

impl Windows {
    fn idle_secs(&self) -> f64 {
        (self.idle.1 - self.idle.0).max(1e-3)
    }

    fn rounds_secs(&self) -> f64 {
        (self.rounds.1 - self.rounds.0).max(0.0)
    }

    fn per_round(&self, n: f64) -> Value {
        json!(round(n / self.count.max(1) as f64, 2))
    }
}

/// The commands of the peer's own Redis connections (`own`): per broadcast
/// (by command too), their background rate, and per broadcast net of it.
fn own_figures(
    seen: &[Seen],
    own: &std::collections::BTreeSet<String>,
    w: &Windows,
) -> Vec<(String, Value)> {
    let within = |s: &Seen, (from, to): (f64, f64)| s.at >= from && s.at < to;
    let mut by_name: std::collections::BTreeMap<&str, u64> = Default::default();
    let mut idle_by_name: std::collections::BTreeMap<&str, u64> = Default::default();
    let (mut during, mut idle, mut scripted) = (0u64, 0u64, 0u64);
    for s in seen {
        if own.contains(&s.client) {
            if within(s, w.rounds) {
                during += 1;
                *by_name.entry(&s.command).or_default() += 1;
            } else if within(s, w.idle) {
                idle += 1;
                *idle_by_name.entry(&s.command).or_default() += 1;
            }
        } else if s.client == "lua" && within(s, w.rounds) {
            scripted += 1;
        }
    }
    let background = idle as f64 / w.idle_secs();
    // Each command less its own background rate (heartbeats come in bursts
    // of several commands: subtracting the total would take them from the
    // broadcasts' commands too).
    let net: f64 = by_name
        .iter()
        .map(|(name, n)| {
            let rate = idle_by_name.get(name).copied().unwrap_or(0) as f64 / w.idle_secs();
            (*n as f64 - rate * w.rounds_secs()).max(0.0)
        })
        .sum();
    let mut out = vec![
        ("redis_connections".to_owned(), json!(own.len())),
        ("redis_commands".to_owned(), json!(during)),
        (
            "redis_commands_per_broadcast".to_owned(),
            w.per_round(during as f64),
        ),
        (
            "redis_background_commands_per_s".to_owned(),
            json!(round(background, 2)),
        ),
        (
            "redis_commands_per_broadcast_net".to_owned(),
            w.per_round(net),
        ),
        (
            "redis_commands_per_broadcast_by_name".to_owned(),
            Value::Object(
                by_name
                    .into_iter()
                    .map(|(k, n)| (k.to_owned(), w.per_round(n as f64)))
                    .collect::<Map<String, Value>>(),
            ),
        ),
    ];
    if scripted > 0 {
        // Commands run inside scripts (EVAL) cannot be told apart by client.
        out.push((
            "redis_script_commands_per_broadcast_any_client".to_owned(),
            w.per_round(scripted as f64),
        ));
    }
    out
}

/// The whole server's counts (every client's, this probe's INFO left out)
/// and its CPU, per broadcast.
fn server_figures(
    (idle_start, before, after): (Option<&Snapshot>, Option<&Snapshot>, Option<&Snapshot>),
    w: &Windows,
) -> Vec<(String, Value)> {
    let (Some(before), Some(after)) = (before, after) else {
        return Vec::new();
    };
    let total: u64 = after.calls_since(before).values().sum();
    let mut out = vec![(
        "redis_server_commands_per_broadcast".to_owned(),
        w.per_round(total as f64),
    )];
    if let Some(idle_start) = idle_start {
        let idle: u64 = before.calls_since(idle_start).values().sum();
        out.push((
            "redis_server_background_commands_per_s".to_owned(),
            json!(round(idle as f64 / w.idle_secs(), 2)),
        ));
    }
    out.push((
        "redis_server_cpu_us_per_broadcast".to_owned(),
        w.per_round((after.cpu_s - before.cpu_s) * 1e6),
    ));
    out
}
