//! Benchmark peer "Portcullis embedded": the gateway and the bench app in
//! one process, the app written with `portcullis-server` (crates/server).
//!
//! Env: `ACCESS_KEY` (required), `HUB` (default `bench`), `PORT` (default 0).
//! Prints `LISTENING <port>` once listening; stops on SIGTERM or Ctrl-C.
//!
//! With `CONNECTION_STRING` set instead, the same app runs without a gateway
//! of its own: it attaches to that gateway over the server tunnel, prints
//! `READY` once attached, and runs until SIGTERM or Ctrl-C.
//!
//! The app: `echo` acks its argument; `join` joins a room (acks the rooms);
//! `emit-room` (room, data) emits `fanout` with data to the room (acks true).

use portcullis_auth::AccessKeys;
use portcullis_gateway::{Gateway, GatewayConfig};
use portcullis_server::SocketIo;
use portcullis_server::SocketRef;
use portcullis_server::extract::{AckSender, Data};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let hub = std::env::var("HUB").unwrap_or_else(|_| "bench".into());
    let io = bench_app();
    if let Ok(connection_string) = std::env::var("CONNECTION_STRING") {
        let _tunnel = io.connect_tunnel(&connection_string, &hub).await?;
        println!("READY");
        shutdown_signal().await;
        return Ok(());
    }
    let key = std::env::var("ACCESS_KEY").map_err(|_| "ACCESS_KEY is required")?;
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    let mut config = GatewayConfig::new(addr, AccessKeys::new(vec![key])?);
    config.max_connections = 1_000_000;
    // Every load-generator client carries the same token.
    config.max_connections_per_user = 0;
    config.max_pending_handshakes = 100_000;
    let gateway = Gateway::new(config);
    io.attach(&gateway, &hub)?;

    println!("LISTENING {}", addr.port());
    gateway.serve(listener, shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// The bench app, the same in both modes.
fn bench_app() -> SocketIo {
    let io = SocketIo::new();
    io.ns("/", |socket: SocketRef| async move {
        socket.on(
            "echo",
            |Data(data): Data<Value>, ack: AckSender| async move {
                ack.send(&data).ok();
            },
        );
        socket.on(
            "join",
            |socket: SocketRef, Data(room): Data<String>, ack: Option<AckSender>| async move {
                socket.join(room);
                if let Some(ack) = ack {
                    ack.send(&socket.rooms()).ok();
                }
            },
        );
        socket.on(
            "emit-room",
            |socket: SocketRef,
             Data((room, data)): Data<(String, Value)>,
             ack: Option<AckSender>| async move {
                socket.within(room).emit("fanout", &data).ok();
                if let Some(ack) = ack {
                    ack.send(&true).ok();
                }
            },
        );
    });
    io
}
