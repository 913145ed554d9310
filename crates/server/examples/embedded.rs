//! The README's axum example, compiled with the crate's examples; a test
//! (`tests/axum_app.rs`) keeps the README's copy identical to this file.

use std::net::SocketAddr;

use axum::extract::Query;
use axum::{Router, http::StatusCode, routing::get};
use portcullis_server::extract::{AckSender, Data, State};
use portcullis_server::negotiate::{Negotiate, NegotiateOptions};
use portcullis_server::{AccessKeys, Gateway, GatewayConfig, SocketIo, SocketRef};
use serde::Deserialize;

/// Application state: any handler can ask for it with `State<Motd>`.
#[derive(Clone)]
struct Motd(&'static str);

/// The CONNECT `auth` the browser sends: `io(url, { auth: { nickname } })`.
#[derive(Deserialize)]
struct Auth {
    nickname: String,
}

#[derive(Deserialize)]
struct Login {
    user: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: SocketAddr = "127.0.0.1:8080".parse()?;

    // 1. The Socket.IO logic: connect handlers, middlewares and event
    //    handlers take extractors.
    let io = SocketIo::builder().with_state(Motd("be nice")).build();
    io.ns(
        "/",
        |socket: SocketRef, Data(auth): Data<Auth>, State(motd): State<Motd>| async move {
            socket.join("general");
            socket.emit("motd", &motd.0).ok();
            let nickname = auth.nickname;
            socket.on(
                "message",
                move |socket: SocketRef, Data(text): Data<String>, ack: AckSender| {
                    let nickname = nickname.clone();
                    async move {
                        // A tuple is two arguments: (nickname, text).
                        socket
                            .within("general")
                            .emit("message", &(nickname, text))
                            .ok();
                        ack.send(&"delivered").ok();
                    }
                },
            );
        },
    )
    .with(|socket: SocketRef| async move {
        // Refused sockets get a connect_error with this message.
        socket.user_id().map(|_| ()).ok_or("log in first")
    });

    // 2. Embedded: the gateway serves the clients from this process.
    let gateway = Gateway::new(GatewayConfig::new(addr, AccessKeys::generate()));
    io.attach(&gateway, "chat")?;

    // 3. `/negotiate` mints the browser's token (a real app asks its login;
    //    see `portcullis_server::login`).
    let negotiate = Negotiate::new(gateway.local_connection_string(), "chat")?.handler(
        |Query(login): Query<Login>| async move { Ok(NegotiateOptions::user(login.user)) },
    );

    // 4. The app's routes and fallback, and the gateway's routes (all under
    //    /clients/socketio, /server, /api and /health; no fallback).
    let app = Router::new()
        .route("/negotiate", get(negotiate))
        .fallback(|| async { (StatusCode::NOT_FOUND, "no such page") })
        .merge(gateway.router());
    // 5. Serve both on the configured address, with the gateway's limits
    //    on slow and half-open connections, until Ctrl-C.
    let shutdown = async {
        tokio::signal::ctrl_c().await.ok();
    };
    gateway.serve_app(app, shutdown).await?;
    Ok(())
}
