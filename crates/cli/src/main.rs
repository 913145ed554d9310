//! `portcullis`: the gateway binary.
//!
//! Owns: the command line, environment variables, the TOML configuration
//! file and logging set-up; the service itself is the `portcullis-gateway`
//! library. Nothing depends on this package.

mod cli;
mod reload;

use std::process::ExitCode;

use clap::Parser;
use portcullis_auth::MIN_STRONG_KEY_BYTES;
use portcullis_gateway::Gateway;
use tracing_subscriber::EnvFilter;

use cli::{Cli, Command};

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
            Ok(config) => serve(config),
            Err(message) => fail(&message),
        },
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("portcullis: {message}");
    ExitCode::from(2)
}

fn serve(config: portcullis_gateway::GatewayConfig) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("PORTCULLIS_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
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
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(config.listen).await {
            Ok(listener) => listener,
            Err(error) => return fail(&format!("cannot listen on {}: {error}", config.listen)),
        };
        let local = listener.local_addr().unwrap_or(config.listen);
        let gateway = Gateway::new(config);
        // The one line application servers need; printed to stdout so scripts
        // can read it.
        println!("{}", gateway.connection_string(local));
        tracing::info!(%local, tls = gateway.config().tls.is_some(), "portcullis listening");
        reload::on_sighup(&gateway);
        match gateway.serve(listener, shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => fail(&format!("server error: {error}")),
        }
    })
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

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
