//! `loadgen`: the Portcullis load generator and benchmark harness.
//!
//! - `loadgen bench [--quick|--full|--ci] [--peers a,b] [--scenarios x,y]`
//!   starts each server (one fresh process per scenario), runs the
//!   scenarios, and writes `bench/results/<date>-<scenario>.json`, a
//!   Markdown summary and PNG charts. `bench/run` builds what it needs and
//!   calls this.
//! - `loadgen scenario NAME --url http://127.0.0.1:PORT --key KEY` runs one
//!   scenario against a server already running (loopback only) and prints
//!   its figures as JSON.

mod charts;
mod client;
mod eio;
mod http;
mod net;
mod peers;
mod procfs;
mod progress;
mod redis_info;
mod report;
mod run;
mod scenarios;
mod stats;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use serde_json::json;

#[derive(Parser)]
#[command(
    name = "loadgen",
    version,
    about = "Portcullis load generator and benchmark harness"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run scenarios against the peers and write the results.
    Bench(run::BenchArgs),
    /// Run one scenario against a server that is already running.
    Scenario(ScenarioArgs),
}

#[derive(clap::Args)]
struct ScenarioArgs {
    /// connect, connect-upgrade, refused, idle, fanout, cluster-fanout,
    /// echo, polling, soak.
    name: String,
    /// The server, e.g. http://127.0.0.1:8080 (loopback only); for
    /// cluster-fanout node 1, where the trigger is.
    #[arg(long)]
    url: String,
    /// cluster-fanout: the other nodes (repeatable); receivers are spread
    /// evenly over --url and these.
    #[arg(long)]
    node: Vec<String>,
    /// cluster-fanout: the Redis the nodes share (its INFO counts commands).
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// The access key tokens are signed with.
    #[arg(long)]
    key: String,
    #[arg(long, default_value = "bench")]
    hub: String,
    /// Server process ids to measure (memory, CPU); repeatable.
    #[arg(long)]
    pid: Vec<u32>,
    /// The server is Portcullis' echo hub (echoed acks, REST fan-out).
    #[arg(long)]
    echo_mode: bool,
    #[arg(long, default_value_t = 8)]
    sources: usize,
    /// Clients (connect total, idle count, fan-out receivers, echo clients).
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
    /// Rate per second (echo, polling).
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Seconds (refused, echo, polling, soak); rounds for fan-out.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Soak: clients of each kind at once, as
    /// steady,churn,slow-readers,half-open,refused.
    #[arg(long, default_value = "1000,20,10,200,4")]
    soak_mix: String,
}

fn soak_mix(text: &str) -> Result<scenarios::soak::SoakMix> {
    let n: Vec<usize> = text
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .context("--soak-mix is five numbers separated by commas")?;
    let [steady, churn, slow_readers, half_open, refused] = n[..] else {
        bail!("--soak-mix is five numbers: steady,churn,slow-readers,half-open,refused");
    };
    Ok(scenarios::soak::SoakMix {
        steady,
        churn,
        slow_readers,
        half_open,
        refused,
    })
}

fn server_addr(url: &str) -> Result<std::net::SocketAddr> {
    let host = url
        .trim_end_matches('/')
        .strip_prefix("http://")
        .context("--url must be http://HOST:PORT")?;
    let addr: std::net::SocketAddr = host.parse().context("--url must be http://IP:PORT")?;
    net::check_loopback(&addr)?;
    Ok(addr)
}

async fn scenario(args: ScenarioArgs) -> Result<()> {
    let addr = server_addr(&args.url)?;
    net::raise_fd_limit();
    let sources = Arc::new(net::Sources::new(args.sources));
    let ctx = Arc::new(run::make_ctx(
        addr,
        &args.hub,
        &args.key,
        sources.clone(),
        args.echo_mode,
    ));
    let probe = scenarios::Probe {
        processes: args.pid.iter().map(|p| (format!("pid {p}"), *p)).collect(),
    };
    let secs = Duration::from_secs_f64(args.duration);
    let outcome = match args.name.as_str() {
        "connect" => {
            scenarios::connect::run(ctx, &probe, args.clients, args.concurrency, false).await
        }
        "connect-upgrade" => {
            scenarios::connect::run(ctx, &probe, args.clients, args.concurrency, true).await
        }
        "refused" => {
            scenarios::refused::run(ctx, &probe, secs, args.concurrency, Duration::from_secs(2))
                .await
        }
        "idle" => {
            scenarios::idle::run(
                ctx,
                &probe,
                args.clients,
                args.concurrency,
                Duration::from_secs(2),
            )
            .await
        }
        "fanout" => {
            let rest = args.echo_mode;
            scenarios::fanout::run(
                ctx,
                &probe,
                args.clients,
                args.duration as usize,
                args.concurrency,
                rest,
            )
            .await
        }
        "cluster-fanout" => {
            let mut nodes = vec![ctx];
            for url in &args.node {
                nodes.push(Arc::new(run::make_ctx(
                    server_addr(url)?,
                    &args.hub,
                    &args.key,
                    sources.clone(),
                    args.echo_mode,
                )));
            }
            let cluster = scenarios::cluster_fanout::Cluster {
                nodes,
                redis: redis_info::parse_url(&args.redis_url)?,
            };
            scenarios::cluster_fanout::run(
                &cluster,
                &probe,
                args.clients,
                args.duration as usize,
                args.concurrency,
            )
            .await
        }
        "echo" => scenarios::echo::run(ctx, &probe, args.clients, args.rate, secs).await,
        "polling" => scenarios::polling::run(ctx, &probe, args.clients, args.rate, secs).await,
        "soak" => scenarios::soak::run(ctx, &probe, soak_mix(&args.soak_mix)?, secs).await,
        other => bail!("unknown scenario {other}"),
    };
    println!("{}", serde_json::to_string_pretty(&json!(outcome.figures))?);
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    stats::epoch();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match cli.command {
            Command::Bench(args) => run::bench(args).await,
            Command::Scenario(args) => scenario(args).await,
        }
    })
}
