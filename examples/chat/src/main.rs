//! The Portcullis chat demo.
//!
//! An axum application with a login page (tower-sessions + axum-login),
//! `/negotiate`, and a Socket.IO chat (who is online, rooms, typing, messages
//! with the sender's verified name) written with `portcullis-server`.
//!
//! By default the gateway is embedded: one process, one port, serving the
//! pages, `/negotiate` and the Socket.IO clients
//! (`/clients/socketio/hubs/chat`). With `--gateway <connection string>` the
//! app attaches over the tunnel to a gateway running elsewhere (started with
//! `portcullis serve`), and browsers connect to that gateway.
//!
//! ```text
//! npm ci --prefix examples/chat          # socket.io-client for the browser
//! cargo run --release -p portcullis-chat # then open the printed URL
//! ```

mod chat;
mod users;
mod web;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use portcullis_auth::{AccessKeys, ConnectionString};
use portcullis_gateway::hub::DisconnectReason;
use portcullis_gateway::{Gateway, GatewayConfig};
use portcullis_server::SocketIo;

/// The hub the chat's clients connect to.
const HUB: &str = "chat";

/// The Portcullis chat demo: log in, then chat in rooms with the others.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Address to serve the app (and the embedded gateway) on. Port 0 picks a free port.
    #[arg(long, env = "CHAT_LISTEN", default_value = "127.0.0.1:3000")]
    listen: SocketAddr,

    /// The URL browsers reach this server at, when it differs from
    /// http://<listen> (behind a proxy, or listening on 0.0.0.0).
    #[arg(long, env = "CHAT_PUBLIC_URL")]
    public_url: Option<url::Url>,

    /// Attach over the tunnel to the gateway of this connection string
    /// (Endpoint=…;AccessKey=…;Version=1.0;) instead of embedding one.
    /// Start that gateway with `--token-expiry` for the same behaviour.
    #[arg(long, env = "CHAT_GATEWAY", value_name = "CONNECTION_STRING")]
    gateway: Option<ConnectionString>,

    /// Lifetime of the tokens `/negotiate` mints, in seconds. The page
    /// refreshes its token over the live connection before it expires.
    #[arg(long, env = "CHAT_TOKEN_TTL_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(2..=3600))]
    token_ttl_secs: u64,

    /// How long the embedded gateway keeps a connection past its token's
    /// expiry before closing it (it then reconnects with a new token).
    #[arg(long, env = "CHAT_TOKEN_EXPIRY_GRACE_MS", default_value_t = 25_000,
          value_parser = clap::value_parser!(u64).range(0..=600_000))]
    token_expiry_grace_ms: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,portcullis_gateway=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("chat: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let js_path = web::socket_io_js_path();
    let socket_io_js = std::fs::read(&js_path).map_err(|e| {
        format!(
            "cannot read the socket.io-client bundle {} ({e}).\n\
             Install it with: npm ci --prefix {}",
            js_path.display(),
            env!("CARGO_MANIFEST_DIR")
        )
    })?;

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("no local address: {e}"))?;
    let public_url = match &args.public_url {
        Some(url) => url.clone(),
        None => {
            let host = if local.ip().is_unspecified() {
                SocketAddr::from(([127, 0, 0, 1], local.port()))
            } else {
                local
            };
            url::Url::parse(&format!("http://{host}/")).map_err(|e| e.to_string())?
        }
    };

    let users = users::Users::demo();
    let token_ttl = Duration::from_secs(args.token_ttl_secs);
    let io = SocketIo::new();
    chat::install(&io, users.clone());

    // The tunnel (if any) must live as long as the server.
    let (connection, gateway, _tunnel) = match args.gateway {
        None => {
            // Embedded: the gateway serves the clients from this process, on
            // the app's own port, and the app's tokens are signed with its key.
            // Token expiry on: a connection whose token expired (and was
            // not refreshed in band) is closed after the grace period, so a
            // logged-out user cannot keep a connection alive on an old token.
            let gateway = Gateway::new(GatewayConfig {
                public_endpoint: args.public_url.clone(),
                token_expiry: Some(Duration::from_millis(args.token_expiry_grace_ms)),
                ..GatewayConfig::new(local, AccessKeys::generate())
            });
            io.attach(&gateway, HUB).map_err(|e| e.to_string())?;
            let connection =
                ConnectionString::new(public_url.clone(), gateway.config().access_keys.primary());
            (connection, Some(gateway), None)
        }
        Some(connection) => {
            // Over the tunnel: clients connect to that gateway (the endpoint
            // of /negotiate's answer); this process serves only the app.
            let tunnel = io
                .connect_tunnel(&connection.to_string(), HUB)
                .await
                .map_err(|e| {
                    format!("cannot attach to the gateway {}: {e}", connection.endpoint)
                })?;
            eprintln!(
                "attached over the tunnel to hub {HUB:?} of {}",
                connection.endpoint
            );
            (connection, None, Some(tunnel))
        }
    };
    let app = web::router(web::Settings {
        users,
        io: io.clone(),
        connection,
        hub: HUB,
        token_ttl,
        socket_io_js,
    })
    .map_err(|e| e.to_string())?;
    let router = match &gateway {
        Some(gateway) => app.merge(gateway.router()),
        None => app,
    };

    println!("Chat running at {public_url}");
    println!("Log in as alice/alice or bob/bob (two browsers, or a private window).");

    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            tokio::signal::ctrl_c().await.ok();
            if let Some(gateway) = gateway {
                for hub in gateway.hubs().all() {
                    hub.close_all(DisconnectReason::Shutdown);
                }
            }
        })
        .await
        .map_err(|e| format!("server error: {e}"))
}
