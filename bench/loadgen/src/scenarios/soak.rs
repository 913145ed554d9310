//! Soak: a long run of everything a gateway meets in production at once, to
//! show that nothing accumulates. Steady idle clients stay connected while
//! other clients connect, echo and leave (churn), some clients stop reading
//! while the server writes to them (slow readers), some connections send
//! half a request and stall (half-open), and bad tokens knock (refused).
//!
//! Reported: resident memory and open files of the server before the run,
//! under full load once warmed up and again at the end of the run, at their
//! peak, and after everything closed and settled; how many valid clients were
//! refused or failed (the promise is none); what each kind of misbehaving
//! client achieved.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::{ErrorCounts, Outcome, Probe, mib, round};
use crate::client::{self, Ctx};
use crate::eio;
use crate::http::HttpConn;
use crate::procfs;

/// How many clients of each kind run at once.
#[derive(Debug, Clone, Copy)]
pub struct SoakMix {
    pub steady: usize,
    pub churn: usize,
    pub slow_readers: usize,
    pub half_open: usize,
    pub refused: usize,
}

/// Counters shared by the workers.
#[derive(Debug, Default)]
struct Tally {
    churn_cycles: AtomicU64,
    slow_reader_sessions: AtomicU64,
    half_open_opened: AtomicU64,
    half_open_closed_by_server: AtomicU64,
    refused_401: AtomicU64,
    refused_other: AtomicU64,
}

pub async fn run(ctx: Arc<Ctx>, probe: &Probe, mix: SoakMix, duration: Duration) -> Outcome {
    let start = Sample::take(probe);
    let peak = Arc::new(Peak::default());
    let cancel = CancellationToken::new();
    let tally = Arc::new(Tally::default());
    let sampler = tokio::spawn(sample(probe.clone(), peak.clone(), cancel.clone()));

    let (steady, steady_dropped) = connect_steady(&ctx, mix.steady, &cancel).await;
    let mut workers = Vec::new();
    for _ in 0..mix.churn {
        workers.push(tokio::spawn(churn(
            ctx.clone(),
            tally.clone(),
            cancel.clone(),
        )));
    }
    for _ in 0..mix.slow_readers {
        let (ctx, tally, cancel) = (ctx.clone(), tally.clone(), cancel.clone());
        workers.push(tokio::spawn(slow_reader(ctx, tally, cancel)));
    }
    for _ in 0..mix.half_open {
        let (ctx, tally, cancel) = (ctx.clone(), tally.clone(), cancel.clone());
        workers.push(tokio::spawn(half_open(ctx, tally, cancel)));
    }
    for _ in 0..mix.refused {
        let (ctx, tally, cancel) = (ctx.clone(), tally.clone(), cancel.clone());
        workers.push(tokio::spawn(refused(ctx, tally, cancel)));
    }
    // Under full load twice: once warmed up, once at the end. Equal figures
    // mean nothing accumulates while the mix runs.
    let warm_up = (duration / 4).min(Duration::from_secs(60));
    tokio::time::sleep(warm_up).await;
    let warm = Sample::take(probe);
    tokio::time::sleep(duration.saturating_sub(warm_up)).await;
    let loaded_end = Sample::take(probe);
    cancel.cancel();
    let valid_errors = ErrorCounts::gather(workers).await;
    drop(steady);
    sampler.abort();
    // Everything the run opened is gone; let the server let go of it.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let end = Sample::take(probe);

    let mut out = Outcome::default();
    out.set("duration_s", round(duration.as_secs_f64(), 1));
    out.set("steady_clients", mix.steady as u64);
    out.set("steady_dropped", steady_dropped.load(Ordering::Relaxed));
    out.set("churn_cycles", tally.churn_cycles.load(Ordering::Relaxed));
    out.set(
        "slow_reader_sessions",
        tally.slow_reader_sessions.load(Ordering::Relaxed),
    );
    out.set(
        "half_open_opened",
        tally.half_open_opened.load(Ordering::Relaxed),
    );
    out.set(
        "half_open_closed_by_server",
        tally.half_open_closed_by_server.load(Ordering::Relaxed),
    );
    out.set("refused_401", tally.refused_401.load(Ordering::Relaxed));
    out.set("refused_other", tally.refused_other.load(Ordering::Relaxed));
    out.set("valid_client_failures", valid_errors.total());
    valid_errors.write(&mut out);
    out.set("rss_start_mib", mib(start.rss));
    out.set("rss_warm_mib", mib(warm.rss));
    out.set("rss_loaded_end_mib", mib(loaded_end.rss));
    out.set("open_files_warm", warm.files);
    out.set("open_files_loaded_end", loaded_end.files);
    out.set("rss_peak_mib", mib(peak.rss.load(Ordering::Relaxed)));
    out.set("rss_end_mib", mib(end.rss));
    out.set("open_files_start", start.files);
    out.set("open_files_peak", peak.files.load(Ordering::Relaxed));
    out.set("open_files_end", end.files);
    out
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    rss: u64,
    files: u64,
}

impl Sample {
    fn take(probe: &Probe) -> Self {
        let files = probe
            .processes
            .iter()
            .filter_map(|(_, pid)| procfs::open_files(*pid))
            .sum();
        Sample {
            rss: probe.rss(),
            files,
        }
    }
}

#[derive(Debug, Default)]
struct Peak {
    rss: AtomicU64,
    files: AtomicU64,
}

async fn sample(probe: Probe, peak: Arc<Peak>, cancel: CancellationToken) {
    while !cancel.is_cancelled() {
        let now = Sample::take(&probe);
        peak.rss.fetch_max(now.rss, Ordering::Relaxed);
        peak.files.fetch_max(now.files, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Connects `count` clients that stay idle (answering pings) for the whole
/// run; counts those the server drops.
async fn connect_steady(
    ctx: &Arc<Ctx>,
    count: usize,
    cancel: &CancellationToken,
) -> (Vec<tokio::task::JoinHandle<()>>, Arc<AtomicU64>) {
    let dropped = Arc::new(AtomicU64::new(0));
    let mut held = Vec::new();
    for _ in 0..count {
        match client::connect_ws(ctx, &ctx.token).await {
            Ok(ws) => {
                let (cancel, dropped) = (cancel.clone(), dropped.clone());
                held.push(tokio::spawn(async move {
                    if client::receive_loop(ws, cancel, |_| {}).await {
                        dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }));
            }
            Err(_) => {
                dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    (held, dropped)
}

/// Valid clients that connect, echo once and leave, over and over. Every
/// failure is a valid client the gateway let down.
async fn churn(ctx: Arc<Ctx>, tally: Arc<Tally>, cancel: CancellationToken) -> ErrorCounts {
    let mut errors = ErrorCounts::default();
    while !cancel.is_cancelled() {
        let cycle = async {
            let mut ws = client::connect_ws(&ctx, &ctx.token).await?;
            client::echo_once(&ctx, &mut ws).await?;
            let _ = ws.close(None).await;
            Ok::<_, client::Fail>(())
        };
        match cycle.await {
            Ok(()) => {
                tally.churn_cycles.fetch_add(1, Ordering::Relaxed);
            }
            Err(fail) => errors.add(&fail),
        }
    }
    errors
}

/// Clients that ask for echoes and never read them, held for a while, then
/// dropped; the gateway must close them and let their memory go.
async fn slow_reader(ctx: Arc<Ctx>, tally: Arc<Tally>, cancel: CancellationToken) -> ErrorCounts {
    let message = format!("42[\"echo\",\"{}\"]", "x".repeat(16 * 1024));
    while !cancel.is_cancelled() {
        let Ok(mut ws) = client::connect_ws(&ctx, &ctx.token).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        tally.slow_reader_sessions.fetch_add(1, Ordering::Relaxed);
        let held_until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < held_until && !cancel.is_cancelled() {
            let send = ws.send(Message::text(message.clone()));
            if tokio::time::timeout(Duration::from_millis(100), send)
                .await
                .is_err()
            {
                // The server stopped reading us: it is stuck writing, as
                // intended; wait for it to give up.
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    ErrorCounts::default()
}

/// Connections that send part of a request and stall, until the server
/// closes them (or a minute passes).
async fn half_open(ctx: Arc<Ctx>, tally: Arc<Tally>, cancel: CancellationToken) -> ErrorCounts {
    let partial = format!(
        "GET {}?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n",
        ctx.path
    );
    while !cancel.is_cancelled() {
        let Ok(mut stream) = ctx.sources.connect(ctx.addr).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        tally.half_open_opened.fetch_add(1, Ordering::Relaxed);
        if stream.write_all(partial.as_bytes()).await.is_err() {
            continue;
        }
        let mut buf = [0u8; 512];
        let closed = tokio::select! {
            _ = cancel.cancelled() => false,
            read = tokio::time::timeout(Duration::from_secs(60), tokio::io::AsyncReadExt::read(&mut stream, &mut buf)) => read.is_ok(),
        };
        if closed {
            tally
                .half_open_closed_by_server
                .fetch_add(1, Ordering::Relaxed);
        }
    }
    ErrorCounts::default()
}

/// Handshakes with a token signed by the wrong key.
async fn refused(ctx: Arc<Ctx>, tally: Arc<Tally>, cancel: CancellationToken) -> ErrorCounts {
    let path = format!(
        "{}?{}",
        ctx.path,
        eio::query(Some(&ctx.bad_token), "polling", None)
    );
    let mut conn: Option<HttpConn> = None;
    while !cancel.is_cancelled() {
        if conn.as_ref().is_none_or(|c| c.closed) {
            conn = HttpConn::connect(&ctx.sources, ctx.addr).await.ok();
        }
        let Some(c) = conn.as_mut() else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        match c.request("GET", &path, &[], None).await {
            Ok(response) if response.status == 401 => {
                tally.refused_401.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                tally.refused_other.fetch_add(1, Ordering::Relaxed);
                conn = None;
            }
        }
        // An attacker at a modest rate; the point is the mix, not the storm.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    ErrorCounts::default()
}
