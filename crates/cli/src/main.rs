//! `portcullis`: the gateway binary.
//!
//! Owns: the command line, environment variables, the TOML configuration
//! file and logging set-up; the service itself is the `portcullis-gateway`
//! library. Nothing depends on this package.

mod cli;
mod cluster_args;
mod reload;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use portcullis_auth::MIN_STRONG_KEY_BYTES;
use portcullis_gateway::Gateway;
use tracing_subscriber::EnvFilter;

use cli::{Cli, Command, LogFormat, ServeConfig};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Token(args) => match args.mint() {
            Ok(token) => {
                println!("{token}");
                ExitCode::SUCCESS
            }
            Err(message) => fail(&message),
        },
        Command::Serve(args) => match args.resolve() {
            Ok(config) if config.check_config => check_config(&config),
            Ok(config) => serve(config),
            Err(message) => fail(&message),
        },
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("portcullis: {message}");
    ExitCode::from(2)
}

/// `serve --check-config`: the configuration is valid; say what it amounts
/// to (the gateway's `Debug` redacts the access keys).
fn check_config(config: &ServeConfig) -> ExitCode {
    let gateway = &config.gateway;
    println!(
        "portcullis: configuration OK: listen {}, {} access key(s), log format {:?}, drain period {} ms, drain timeout {} ms",
        gateway.listen,
        gateway.access_keys.all().len(),
        config.log_format,
        gateway.drain_period.as_millis(),
        gateway.drain_timeout.as_millis(),
    );
    ExitCode::SUCCESS
}

/// Sets up logging on stderr in the chosen format, at the level of
/// `PORTCULLIS_LOG` (default `info`).
fn init_logging(format: LogFormat) {
    let filter =
        EnvFilter::try_from_env("PORTCULLIS_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        // The event's fields at the top level (`hub`, `reason`, …), as log
        // collectors index them.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
}

/// How long the runtime may take to stop its last tasks once serving has
/// returned (the drain already bounded everything that matters).
const RUNTIME_STOP: Duration = Duration::from_secs(1);

fn serve(config: ServeConfig) -> ExitCode {
    init_logging(config.log_format);
    let config = config.gateway;
    warn_about_weak_keys(&config.access_keys);
    // Before printing the connection string: a bad certificate is a start-up
    // error, not a gateway that refuses every handshake.
    if let Some(tls) = &config.tls
        && let Err(error) = tls.check()
    {
        return fail(&format!("cannot load the TLS certificate: {error}"));
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => return fail(&format!("cannot start the runtime: {error}")),
    };
    let code = runtime.block_on(async move {
        let mut signals = match Signals::new() {
            Ok(signals) => signals,
            Err(error) => return fail(&format!("cannot watch for signals: {error}")),
        };
        let listener = match tokio::net::TcpListener::bind(config.listen).await {
            Ok(listener) => listener,
            Err(error) => return fail(&format!("cannot listen on {}: {error}", config.listen)),
        };
        let local = listener.local_addr().unwrap_or(config.listen);
        let timeout = config.drain_timeout;
        let gateway = Gateway::new(config);
        // The one line application servers need; printed to stdout so scripts
        // can read it.
        println!("{}", gateway.connection_string(local));
        tracing::info!(%local, tls = gateway.config().tls.is_some(), "portcullis listening");
        reload::on_sighup(&gateway);
        let (drain, drain_now) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let signal = signals.next().await;
            tracing::info!(
                signal,
                timeout_ms = timeout.as_millis() as u64,
                "draining; send the signal again to exit at once"
            );
            let _ = drain.send(());
            let signal = signals.next().await;
            tracing::warn!(signal, "second signal: exiting without finishing the drain");
            std::process::exit(1);
        });
        let shutdown = async move {
            let _ = drain_now.await;
        };
        match gateway.serve(listener, shutdown).await {
            Ok(()) => {
                tracing::info!("portcullis stopped");
                ExitCode::SUCCESS
            }
            Err(error) => fail(&format!("server error: {error}")),
        }
    });
    runtime.shutdown_timeout(RUNTIME_STOP);
    code
}

/// Logs a warning for each access key shorter than
/// [`MIN_STRONG_KEY_BYTES`]: such keys are accepted (the SDK does), but a
/// single leaked token lets an attacker brute-force them offline. Only the
/// key's position and length are logged, never the key.
fn warn_about_weak_keys(keys: &portcullis_auth::AccessKeys) {
    for index in keys.weak_key_positions() {
        tracing::warn!(
            key = index,
            bytes = keys.all()[index].len(),
            minimum = MIN_STRONG_KEY_BYTES,
            "access key #{index} is shorter than {MIN_STRONG_KEY_BYTES} bytes: \
             use a long random key (e.g. 32 random bytes, base64-encoded)"
        );
    }
}

/// SIGTERM and SIGINT (Ctrl-C), as many times as they come: the first
/// starts the drain, the second exits at once.
struct Signals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals {
                terminate: signal(SignalKind::terminate())?,
                interrupt: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// The name of the next signal received.
    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.terminate.recv() => "SIGTERM",
                _ = self.interrupt.recv() => "SIGINT",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}
