//! The orchestrator behind `bench/run`: for every scenario and every peer,
//! start a fresh server, run the scenario against it, stop it; then write
//! the JSON files, the Markdown summary and the charts.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::client::Ctx;
use crate::net::Sources;
use crate::peers::{self, Bins, PeerId};
use crate::report::{self, ScenarioRun, ServerResult};
use crate::scenarios::{self, Outcome, Probe, Scale};

/// Every scenario, in run order.
pub const SCENARIOS: [&str; 8] = [
    "connect",
    "connect-upgrade",
    "refused",
    "idle",
    "fanout",
    "cluster-fanout",
    "echo",
    "polling",
];

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Every scenario at small scale (a few minutes); the default.
    #[arg(long, conflicts_with_all = ["full", "ci"])]
    pub quick: bool,
    /// Every scenario at full scale (10k/50k idle, 1k/10k fan-out).
    #[arg(long, conflicts_with = "ci")]
    pub full: bool,
    /// A tiny run against Portcullis only (the harness's own test;
    /// cluster-fanout too, with 30 clients, when Redis answers).
    #[arg(long)]
    pub ci: bool,
    /// Servers to run, comma-separated: portcullis-embedded,
    /// portcullis-tunnel, portcullis-tunnel-rust, portcullis-echo, node-use,
    /// node-allow, socketioxide, and the 3-node cluster peers (which only
    /// cluster-fanout runs) portcullis-cluster, portcullis-cluster-tunnel-rust,
    /// node-socketio-redis, socketioxide-redis (default: all; with --ci the
    /// Portcullis ones but portcullis-cluster-tunnel-rust).
    #[arg(long, value_delimiter = ',')]
    pub peers: Vec<String>,
    /// Scenarios to run, comma-separated (default: all): connect,
    /// connect-upgrade, refused, idle, fanout, cluster-fanout, echo, polling.
    #[arg(long, value_delimiter = ',')]
    pub scenarios: Vec<String>,
    /// Folder for the results [default: bench/results].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Source addresses 127.0.0.1..N for client sockets.
    #[arg(long, default_value_t = 8)]
    pub sources: usize,
    /// The repository root [default: found from this crate's folder].
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// The gateway binary [default: <target>/release/portcullis].
    #[arg(long)]
    pub portcullis_bin: Option<PathBuf>,
    /// The socketioxide peer [default: bench/peers/socketioxide/target/release/bench-peer-socketioxide].
    #[arg(long)]
    pub socketioxide_bin: Option<PathBuf>,
    /// The embedded Portcullis peer's program [default:
    /// <target>/release/bench-embedded-peer].
    #[arg(long)]
    pub embedded_bin: Option<PathBuf>,
    /// The Node.js binary.
    #[arg(long, default_value = "node")]
    pub node: String,
    /// The Redis the cluster peers share (loopback only); cluster-fanout is
    /// skipped, saying so, when it does not answer.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// Stop starting scenarios after this many minutes [default: 15 quick,
    /// 120 full, 3 ci].
    #[arg(long)]
    pub max_minutes: Option<f64>,
    /// The name prefix of result files [default: today's date, UTC, with
    /// `-full` appended for --full].
    #[arg(long)]
    pub prefix: Option<String>,
    /// Skip the PNG charts.
    #[arg(long)]
    pub no_charts: bool,
    /// Run every scenario this many times against every server,
    /// interleaved, and keep each server's median run (by the scenario's
    /// first figure, e.g. deliveries/s); the JSON lists every run's figure.
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
}

/// Today's date (UTC) as YYYY-MM-DD.
pub fn today() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn default_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or(manifest)
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

/// One scenario instance: a name (`idle-1000`) and what to run.
#[derive(Debug, Clone)]
enum Job {
    Connect { upgrade: bool },
    Refused,
    Idle { count: usize, requested: usize },
    Fanout { receivers: usize },
    ClusterFanout { receivers: usize },
    Echo,
    Polling,
}

fn jobs(selected: &[String], scale: &Scale, fd_limit: u64) -> Result<Vec<(String, Job)>> {
    let mut out = Vec::new();
    for name in SCENARIOS {
        if !selected.is_empty() && !selected.iter().any(|s| s == name) {
            continue;
        }
        match name {
            "connect" => out.push((name.to_owned(), Job::Connect { upgrade: false })),
            "connect-upgrade" => out.push((name.to_owned(), Job::Connect { upgrade: true })),
            "refused" => out.push((name.to_owned(), Job::Refused)),
            "idle" => {
                for &requested in &scale.idle_counts {
                    // Every process here has at most `fd_limit` descriptors
                    // (the hard limit, which an unprivileged run cannot
                    // raise): the server needs one per client, and so do we.
                    let cap = (fd_limit as usize).saturating_sub(1000).max(100);
                    let count = requested.min(cap);
                    out.push((format!("idle-{count}"), Job::Idle { count, requested }));
                }
            }
            "fanout" => {
                for &receivers in &scale.fanout_sizes {
                    out.push((format!("fanout-{receivers}"), Job::Fanout { receivers }));
                }
            }
            "cluster-fanout" => {
                for &receivers in &scale.cluster_fanout_sizes {
                    out.push((
                        format!("cluster-fanout-{receivers}"),
                        Job::ClusterFanout { receivers },
                    ));
                }
            }
            "echo" => out.push((name.to_owned(), Job::Echo)),
            "polling" => out.push((name.to_owned(), Job::Polling)),
            _ => {}
        }
    }
    for s in selected {
        if !SCENARIOS.contains(&s.as_str()) {
            bail!("unknown scenario {s:?} (known: {})", SCENARIOS.join(", "));
        }
    }
    Ok(out)
}

fn title(job: &Job) -> String {
    match job {
        Job::Connect { upgrade: false } => "Connect storm, WebSocket without upgrade".into(),
        Job::Connect { upgrade: true } => "Connect storm, polling handshake then upgrade".into(),
        Job::Refused => "Refused storm: bad-token handshakes (polling)".into(),
        Job::Idle { count, .. } => {
            format!("Idle: resident memory per idle WebSocket client ({count})")
        }
        Job::Fanout { receivers } => format!("Fan-out: one emit to a room of {receivers}"),
        Job::ClusterFanout { receivers } => format!(
            "Cluster fan-out to {receivers} over {} nodes (Redis)",
            peers::CLUSTER_NODES
        ),
        Job::Echo => "Echo with ack over WebSocket at a fixed rate".into(),
        Job::Polling => "Echo with ack over long-polling at a fixed rate".into(),
    }
}

fn parameters(job: &Job, scale: &Scale, sources: usize) -> Value {
    let mut p = match job {
        Job::Connect { upgrade } => json!({
            "transport": if *upgrade { "polling+upgrade" } else { "websocket" },
            "total": if *upgrade { scale.upgrade_total } else { scale.connect_total },
            "concurrency": scale.connect_concurrency,
        }),
        Job::Refused => json!({
            "duration_s": scale.refused_secs,
            "concurrency": scale.refused_concurrency,
            "settle_s": scale.refused_settle_secs,
            "token": "HS256, signed with the wrong key",
        }),
        Job::Idle { count, requested } => json!({
            "clients": count,
            "requested_clients": requested,
            "clamped_by_fd_limit": count < requested,
            "settle_s": scale.idle_settle_secs,
            "concurrency": scale.connect_concurrency,
        }),
        Job::Fanout { receivers } => json!({
            "receivers": receivers,
            "rounds": scale.fanout_rounds,
            "concurrency": scale.connect_concurrency,
        }),
        Job::ClusterFanout { receivers } => json!({
            "receivers": receivers,
            "nodes": peers::CLUSTER_NODES,
            "node_addresses": (0..peers::CLUSTER_NODES)
                .map(|i| peers::node_ip(i).to_string())
                .collect::<Vec<_>>(),
            "spread": "client i connects straight to node (i mod 3) + 1: sticky, no load balancer",
            "trigger_node": 1,
            "rounds": scale.cluster_fanout_rounds,
            "concurrency": scale.connect_concurrency,
        }),
        Job::Echo => json!({
            "clients": scale.echo_clients,
            "rate_per_s": scale.echo_rate,
            "duration_s": scale.echo_secs,
        }),
        Job::Polling => json!({
            "clients": scale.polling_clients,
            "rate_per_s": scale.polling_rate,
            "duration_s": scale.polling_secs,
        }),
    };
    if let Value::Object(map) = &mut p {
        map.insert("warmup_clients".into(), json!(scale.warmup));
        map.insert("source_addresses".into(), json!(sources));
    }
    p
}

/// Runs `job` against the server whose nodes are `nodes` (one unless it
/// is a cluster peer); `redis` is what the cluster peers share.
async fn run_job(
    job: &Job,
    nodes: &[Arc<Ctx>],
    redis: std::net::SocketAddr,
    probe: &Probe,
    scale: &Scale,
) -> Outcome {
    let secs = Duration::from_secs_f64;
    let ctx = nodes[0].clone();
    match job {
        Job::Connect { upgrade } => {
            let total = if *upgrade {
                scale.upgrade_total
            } else {
                scale.connect_total
            };
            scenarios::connect::run(ctx, probe, total, scale.connect_concurrency, *upgrade).await
        }
        Job::Refused => {
            scenarios::refused::run(
                ctx,
                probe,
                secs(scale.refused_secs),
                scale.refused_concurrency,
                secs(scale.refused_settle_secs),
            )
            .await
        }
        Job::Idle { count, .. } => {
            scenarios::idle::run(
                ctx,
                probe,
                *count,
                scale.connect_concurrency,
                secs(scale.idle_settle_secs),
            )
            .await
        }
        Job::Fanout { receivers } => {
            let rest = ctx.echo_mode;
            scenarios::fanout::run(
                ctx,
                probe,
                *receivers,
                scale.fanout_rounds,
                scale.connect_concurrency,
                rest,
            )
            .await
        }
        Job::ClusterFanout { receivers } => {
            let cluster = scenarios::cluster_fanout::Cluster {
                nodes: nodes.to_vec(),
                redis,
            };
            scenarios::cluster_fanout::run(
                &cluster,
                probe,
                *receivers,
                scale.cluster_fanout_rounds,
                scale.connect_concurrency,
            )
            .await
        }
        Job::Echo => {
            scenarios::echo::run(
                ctx,
                probe,
                scale.echo_clients,
                scale.echo_rate,
                secs(scale.echo_secs),
            )
            .await
        }
        Job::Polling => {
            scenarios::polling::run(
                ctx,
                probe,
                scale.polling_clients,
                scale.polling_rate,
                secs(scale.polling_secs),
            )
            .await
        }
    }
}

/// Tokens for a server at `addr`.
pub fn make_ctx(
    addr: std::net::SocketAddr,
    hub: &str,
    key: &str,
    sources: Arc<Sources>,
    echo_mode: bool,
) -> Ctx {
    use portcullis_auth::{ClientTokenOptions, mint_client_token};
    let audience = format!("http://{addr}/clients/socketio/hubs/{hub}");
    let options = ClientTokenOptions {
        user_id: Some("bench".into()),
        ttl: Duration::from_secs(4 * 3600),
        ..Default::default()
    };
    let token = mint_client_token(key, &audience, &options);
    let bad_token = mint_client_token(&format!("{key}-wrong"), &audience, &options);
    let api_token = mint_client_token(
        key,
        &format!("http://{addr}/api/hubs/{hub}"),
        &ClientTokenOptions {
            ttl: Duration::from_secs(4 * 3600),
            ..Default::default()
        },
    );
    Ctx {
        addr,
        hub: hub.to_owned(),
        path: format!("/clients/socketio/hubs/{hub}/"),
        token,
        bad_token,
        api_token,
        sources,
        echo_mode,
        step_timeout: Duration::from_secs(15),
    }
}

fn one_line(name: &str, peer: PeerId, result: &ServerResult) -> String {
    if result.status != "ok" {
        return format!(
            "[{name}] {}: {} {}",
            peer.name(),
            result.status,
            result.error.as_deref().unwrap_or("")
        );
    }
    let figures: Vec<String> = report::headline(name)
        .iter()
        .filter_map(|(k, label)| result.figures.get(*k).map(|v| format!("{label} {v}")))
        .collect();
    format!("[{name}] {}: {}", peer.name(), figures.join(", "))
}

pub async fn bench(args: BenchArgs) -> Result<()> {
    let mode = if args.full {
        "full"
    } else if args.ci {
        "ci"
    } else {
        "quick"
    };
    let scale = match mode {
        "full" => Scale::full(),
        "ci" => Scale::ci(),
        _ => Scale::quick(),
    };
    let root = args.root.clone().unwrap_or_else(default_root);
    let target = target_dir(&root);
    let bins = Bins {
        portcullis: args
            .portcullis_bin
            .clone()
            .unwrap_or_else(|| target.join("release/portcullis")),
        socketioxide: args.socketioxide_bin.clone().unwrap_or_else(|| {
            root.join("bench/peers/socketioxide/target/release/bench-peer-socketioxide")
        }),
        embedded: Some(
            args.embedded_bin
                .clone()
                .unwrap_or_else(|| target.join("release/bench-embedded-peer")),
        ),
        node: args.node.clone(),
        redis_url: args.redis_url.clone(),
        root: root.clone(),
    };
    let peers: Vec<PeerId> = if args.peers.is_empty() {
        if args.ci {
            vec![
                PeerId::PortcullisEmbedded,
                PeerId::PortcullisTunnel,
                PeerId::PortcullisTunnelRust,
                PeerId::PortcullisEcho,
                PeerId::PortcullisCluster,
            ]
        } else {
            PeerId::ALL.to_vec()
        }
    } else {
        let mut list = Vec::new();
        for name in &args.peers {
            match PeerId::parse(name) {
                Some(p) if !list.contains(&p) => list.push(p),
                Some(_) => {}
                None => bail!(
                    "unknown peer {name:?} (known: {})",
                    PeerId::ALL.map(PeerId::name).join(", ")
                ),
            }
        }
        list
    };
    let fd_limit = crate::net::raise_fd_limit();
    let jobs = jobs(&args.scenarios, &scale, fd_limit)?;
    let out_dir = args
        .out
        .clone()
        .unwrap_or_else(|| root.join("bench/results"));
    let logs = out_dir.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("create {}", logs.display()))?;
    // Full-scale results sit beside the quick ones instead of replacing them.
    let prefix = args.prefix.clone().unwrap_or_else(|| match mode {
        "full" => format!("{}-full", today()),
        _ => today(),
    });
    let sources = Arc::new(Sources::new(args.sources));
    let max = Duration::from_secs_f64(
        60.0 * args.max_minutes.unwrap_or(match mode {
            "full" => 120.0,
            "ci" => 3.0,
            _ => 15.0,
        }),
    );
    let machine = crate::procfs::machine();
    let mut versions = peers::versions(&bins);
    // The cluster scenario needs the shared Redis: is it there?
    let wants_redis = jobs
        .iter()
        .any(|(_, j)| matches!(j, Job::ClusterFanout { .. }))
        && peers.iter().any(|p| p.cluster());
    let redis = crate::redis_info::parse_url(&args.redis_url);
    let redis_problem = if wants_redis {
        match check_redis(&redis).await {
            Ok(version) => {
                if let Value::Object(v) = &mut versions {
                    v.insert("redis (server)".into(), json!(version));
                }
                None
            }
            Err(e) => {
                let why = format!(
                    "Redis not reachable at {} ({e:#}): cluster-fanout needs a Redis 7 there (or pass --redis-url)",
                    args.redis_url
                );
                eprintln!("cluster-fanout skipped: {why}");
                Some(why)
            }
        }
    } else {
        None
    };
    let redis_addr = redis.unwrap_or_else(|_| ([127, 0, 0, 1], 6379).into());
    let runnable = |p: PeerId| bins.unavailable(p).is_none();
    let started = Instant::now();
    let key = format!(
        "bench-{:x}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    let hub = "bench";
    eprintln!(
        "bench --{mode}: {} scenario runs x {} servers; fd limit {fd_limit}; {} source addresses; results in {}",
        jobs.len(),
        peers.len(),
        sources.len(),
        out_dir.display()
    );
    eprintln!("machine: {}", crate::procfs::machine_line(&machine));
    let meta = json!({
        "date": today(),
        "mode": mode,
        "machine": machine,
        "versions": versions,
        "fd_limit": fd_limit,
        "loopback_only": true,
        "notes": "One fresh server per scenario and server; the load generator runs on the same cores as the server.",
    });
    let mut runs = Vec::new();
    for (name, job) in &jobs {
        // The cluster peers run cluster-fanout and nothing else.
        let cluster_job = matches!(job, Job::ClusterFanout { .. });
        let job_peers: Vec<PeerId> = peers
            .iter()
            .copied()
            .filter(|p| p.cluster() == cluster_job)
            .collect();
        if job_peers.is_empty() {
            eprintln!(
                "[{name}] no selected server runs this scenario ({})",
                if cluster_job {
                    "only the cluster peers do"
                } else {
                    "the cluster peers only run cluster-fanout"
                }
            );
            continue;
        }
        let mut run = ScenarioRun {
            name: name.clone(),
            title: title(job),
            parameters: parameters(job, &scale, sources.len()),
            servers: Vec::new(),
            baseline: report::baseline(&job_peers, runnable),
        };
        // With --repeat, every server runs the scenario that many times,
        // interleaved (A B C, A B C, …), and keeps its median run.
        let mut tries: Vec<Vec<ServerResult>> = job_peers.iter().map(|_| Vec::new()).collect();
        for attempt in 0..args.repeat.max(1) {
            for (i, &peer) in job_peers.iter().enumerate() {
                let log_name = if args.repeat > 1 {
                    format!("{name}-r{}", attempt + 1)
                } else {
                    name.clone()
                };
                let skip = if started.elapsed() > max {
                    Some(("skipped", "the run's time bound was reached".to_owned()))
                } else if let (true, Some(why)) = (cluster_job, &redis_problem) {
                    Some(("skipped", why.clone()))
                } else {
                    bins.unavailable(peer)
                };
                let result = match skip {
                    Some((status, why)) => ServerResult {
                        peer,
                        status: status.into(),
                        error: Some(why),
                        figures: Default::default(),
                        histogram: None,
                        split: Vec::new(),
                    },
                    None => {
                        run_one(
                            &bins, peer, &log_name, job, &scale, &key, hub, &sources, &logs,
                            &prefix, redis_addr,
                        )
                        .await
                    }
                };
                eprintln!("{}", one_line(&log_name, peer, &result));
                tries[i].push(result);
            }
        }
        for list in tries {
            run.servers.push(median_run(name, list));
        }
        let doc = run.to_json(&meta);
        let file = out_dir.join(format!("{prefix}-{name}.json"));
        std::fs::write(&file, serde_json::to_string_pretty(&doc)? + "\n")
            .with_context(|| format!("write {}", file.display()))?;
        runs.push(run);
    }
    // Summary.
    let table = report::markdown(&runs);
    let mut summary = format!(
        "# Benchmark summary, {} (`bench/run --{mode}`)\n\nMachine: {}. Loopback only; the load generator shares the cores with the server.\n\n",
        today(),
        crate::procfs::machine_line(&meta["machine"])
    );
    summary.push_str("Versions: ");
    if let Value::Object(v) = &meta["versions"] {
        let parts: Vec<String> = v
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| format!("{k} {}", v.as_str().unwrap_or(&v.to_string())))
            .collect();
        summary.push_str(&parts.join(", "));
    }
    summary.push_str(
        ".\n\nCells: the figure, and in parentheses its ratio to the baseline Portcullis server of its table (named above the table).\n\n",
    );
    summary.push_str(&table);
    summary.push_str("\nServers:\n\n");
    // Only the servers of the scenarios that ran (the cluster peers run
    // nothing but cluster-fanout).
    let ran = |p: &PeerId| runs.iter().any(|r| r.servers.iter().any(|s| s.peer == *p));
    for p in peers.iter().filter(|p| ran(p)) {
        summary.push_str(&format!(
            "- **{}** (`{}`): {}\n",
            p.label(),
            p.name(),
            p.description()
        ));
    }
    let file = out_dir.join(format!("{prefix}-summary.md"));
    std::fs::write(&file, &summary).with_context(|| format!("write {}", file.display()))?;
    if !args.no_charts
        && let Err(e) = charts(&runs, &peers, &out_dir, &prefix)
    {
        eprintln!("charts: {e:#}");
    }
    println!("{table}");
    eprintln!(
        "wrote {} and {} JSON files in {:.0} s",
        file.display(),
        runs.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn run_one(
    bins: &Bins,
    peer: PeerId,
    name: &str,
    job: &Job,
    scale: &Scale,
    key: &str,
    hub: &str,
    sources: &Arc<Sources>,
    logs: &Path,
    prefix: &str,
    redis: std::net::SocketAddr,
) -> ServerResult {
    let mut result = ServerResult {
        peer,
        status: "failed".into(),
        error: None,
        figures: Default::default(),
        histogram: None,
        split: Vec::new(),
    };
    let log = logs.join(format!("{prefix}-{name}-{}.log", peer.name()));
    std::fs::remove_file(&log).ok();
    let mut server = match peers::start(peer, bins, key, hub, &log).await {
        Ok(s) => s,
        Err(e) => {
            result.error = Some(format!("start: {e:#}"));
            return result;
        }
    };
    // Let the fresh server settle before the baseline readings.
    let settle = Duration::from_millis(scale.server_settle_ms);
    tokio::time::sleep(settle).await;
    let nodes: Vec<Arc<Ctx>> = server
        .nodes
        .iter()
        .map(|&addr| Arc::new(make_ctx(addr, hub, key, sources.clone(), peer.echo_mode())))
        .collect();
    let probe = server.probe.clone();
    let rss_start = probe.rss();
    // A cluster's warm-up is shared among its nodes.
    let warmup = async {
        for ctx in &nodes {
            scenarios::warmup(ctx.clone(), scale.warmup / nodes.len()).await;
        }
    };
    if tokio::time::timeout(scale.bound(), warmup).await.is_err() {
        result.error = Some("the warm-up did not finish".into());
        server.stop().await;
        return result;
    }
    // Let what the warm-up left (closing sockets) settle.
    if scale.warmup > 0 {
        tokio::time::sleep(settle).await;
    }
    match tokio::time::timeout(scale.bound(), run_job(job, &nodes, redis, &probe, scale)).await {
        Ok(mut outcome) => {
            outcome.set("server_rss_start_mib", scenarios::mib(rss_start));
            result.figures = outcome.figures;
            result.histogram = outcome.histogram;
            result.split = outcome.split;
            if server.alive() {
                result.status = "ok".into();
            } else {
                result.error = Some(format!(
                    "the server exited during the scenario (see {})",
                    log.display()
                ));
            }
        }
        Err(_) => {
            result.error = Some(format!(
                "hard bound of {} s reached",
                scale.scenario_bound_secs
            ));
        }
    }
    server.stop().await;
    // Sockets in TIME_WAIT and the previous server's exit settle.
    tokio::time::sleep(settle).await;
    result
}

/// Of a server's runs of one scenario, the median by the scenario's first
/// headline figure (the lower middle of an even count), among those that
/// completed; every run's figure and the failures are added to its figures.
fn median_run(name: &str, mut list: Vec<ServerResult>) -> ServerResult {
    if list.len() == 1 {
        return list.remove(0);
    }
    let total = list.len();
    let key = report::headline(name)[0].0;
    let value = |r: &ServerResult| r.figures.get(key).and_then(Value::as_f64);
    let every: Vec<Value> = list
        .iter()
        .map(|r| value(r).map_or(Value::Null, |v| json!(v)))
        .collect();
    let (mut ok, failed): (Vec<ServerResult>, Vec<ServerResult>) = list
        .into_iter()
        .partition(|r| r.status == "ok" && value(r).is_some());
    if ok.is_empty() {
        return failed.into_iter().next().expect("at least one run");
    }
    ok.sort_by(|a, b| {
        value(a)
            .partial_cmp(&value(b))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let mut chosen = ok.swap_remove((ok.len() - 1) / 2);
    chosen.figures.insert("repeats".into(), json!(total));
    chosen
        .figures
        .insert(format!("{key}_every_run"), Value::Array(every));
    if !failed.is_empty() {
        chosen
            .figures
            .insert("failed_repeats".into(), json!(failed.len()));
    }
    chosen
}

/// Whether Redis answers at `addr`: its version.
async fn check_redis(addr: &Result<std::net::SocketAddr>) -> Result<Option<String>> {
    let addr = match addr {
        Ok(a) => *a,
        Err(e) => bail!("{e:#}"),
    };
    let mut redis = crate::redis_info::Redis::connect(addr).await?;
    redis.ping().await?;
    redis.version().await
}

fn charts(runs: &[ScenarioRun], peers: &[PeerId], out: &Path, prefix: &str) -> Result<()> {
    let color = |p: PeerId| peers.iter().position(|q| *q == p).unwrap_or(0);
    for run in runs {
        // The cluster peers have a table of their own: colour by position in it.
        let color = |p: PeerId| {
            if p.cluster() {
                run.servers.iter().position(|s| s.peer == p).unwrap_or(0)
            } else {
                color(p)
            }
        };
        let chart = |part: Option<&str>| -> Result<()> {
            let series: Vec<crate::charts::LatencySeries> = run
                .servers
                .iter()
                .filter(|s| s.status == "ok")
                .filter_map(|s| {
                    let h = match part {
                        None => s.histogram.as_ref()?,
                        Some(part) => s.split.iter().find(|(n, _)| n == part).map(|(_, h)| h)?,
                    };
                    (!h.is_empty()).then(|| {
                        (
                            s.peer.label().to_owned(),
                            color(s.peer),
                            crate::stats::curve(h),
                        )
                    })
                })
                .collect();
            if series.is_empty() {
                return Ok(());
            }
            let (file, what) = match part {
                None => (
                    format!("{prefix}-{}-latency.png", run.name),
                    "latency".into(),
                ),
                Some(part) => (
                    format!("{prefix}-{}-{part}-latency.png", run.name),
                    format!("{part} latency"),
                ),
            };
            crate::charts::latency(&out.join(file), &format!("{} — {what}", run.title), &series)
        };
        chart(None)?;
        let mut parts: Vec<&str> = Vec::new();
        for s in &run.servers {
            for (name, _) in &s.split {
                if !parts.contains(&name.as_str()) {
                    parts.push(name);
                }
            }
        }
        for part in parts {
            chart(Some(part))?;
        }
    }
    let idle: Vec<&ScenarioRun> = runs
        .iter()
        .filter(|r| report::family(&r.name) == "idle")
        .collect();
    if !idle.is_empty() {
        let counts: Vec<usize> = idle
            .iter()
            .map(|r| r.parameters["clients"].as_u64().unwrap_or(0) as usize)
            .collect();
        let series: Vec<crate::charts::MemorySeries> = peers
            .iter()
            .map(|p| {
                let values = idle
                    .iter()
                    .map(|r| {
                        r.servers
                            .iter()
                            .find(|s| s.peer == *p && s.status == "ok")
                            .and_then(|s| s.figures.get("kib_per_conn")?.as_f64())
                    })
                    .collect::<Vec<_>>();
                (p.label().to_owned(), color(*p), values)
            })
            .filter(|(_, _, v)| v.iter().any(Option::is_some))
            .collect();
        if !series.is_empty() {
            let path = out.join(format!("{prefix}-memory.png"));
            crate::charts::memory(
                &path,
                "Resident memory per idle WebSocket client",
                &counts,
                &series,
            )?;
        }
    }
    Ok(())
}
