//! Benchmark peer: socketioxide 0.18 serving the bench app on
//! `/clients/socketio/hubs/<hub>/`, with the same auth rule as Portcullis: an
//! HS256 JWT signed with the access key, in `?access_token=`, whose audience
//! is a URL with path `/clients/socketio/hubs/<hub>`. The JWT is checked in a
//! tower layer (an axum middleware) in front of socketioxide, on every request
//! without `sid` (the Engine.IO handshake, polling or WebSocket): a bad token
//! gets `401` before socketioxide sees the request.
//!
//! Env: `ACCESS_KEY` (required), `HUB` (default `bench`), `PORT` (default 0),
//! `HOST` (default `127.0.0.1`), `WORKERS` (tokio worker threads, default:
//! the number of cores). Prints `LISTENING <port>` once listening.
//!
//! Cluster mode (the `cluster-fanout` benchmark): with `REDIS_URL` set (e.g.
//! `redis://127.0.0.1:6379/?protocol=resp3`; the adapter needs RESP3), the
//! app runs on the `socketioxide-redis` adapter with the `redis` crate
//! driver, its channels named with `REDIS_PREFIX` (default
//! `portcullis-bench-socketioxide`), so several processes share rooms.
//!
//! The app: `echo` acks its argument; `join` joins a room (acks the rooms);
//! `emit-room` (room, data) emits `fanout` with data to the room (acks true).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, Data, SocketRef};
use socketioxide_redis::drivers::redis::redis_client as redis;
use socketioxide_redis::{RedisAdapter, RedisAdapterConfig, RedisAdapterCtr};

#[derive(Deserialize)]
struct Claims {
    aud: String,
}

struct Auth {
    key: DecodingKey,
    validation: Validation,
    audience_path: String,
}

impl Auth {
    fn verify(&self, token: &str) -> bool {
        if token.is_empty() || token.len() > 8192 {
            return false;
        }
        let Ok(data) = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation) else {
            return false;
        };
        url::Url::parse(&data.claims.aud).is_ok_and(|u| {
            u.path()
                .trim_end_matches('/')
                .eq_ignore_ascii_case(&self.audience_path)
        })
    }
}

fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The gate: a handshake (no `sid`) without a valid token gets 401.
async fn gate(State(auth): State<Arc<Auth>>, request: Request, next: Next) -> Response {
    let query = request.uri().query().unwrap_or("");
    if query_param(query, "sid").is_none() {
        let ok = query_param(query, "access_token").is_some_and(|t| auth.verify(t));
        if !ok {
            return (
                StatusCode::UNAUTHORIZED,
                r#"{"code":4,"message":"unauthorized"}"#,
            )
                .into_response();
        }
    }
    next.run(request).await
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let key = std::env::var("ACCESS_KEY").map_err(|_| "ACCESS_KEY is required")?;
    let hub = std::env::var("HUB").unwrap_or_else(|_| "bench".into());
    let host = std::env::var("HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = std::env::var("WORKERS").ok().and_then(|w| w.parse().ok()) {
        runtime.worker_threads(workers);
    }
    runtime
        .enable_all()
        .build()?
        .block_on(serve(key, hub, host, port))
}

/// The bench app's handlers, for any adapter.
async fn on_connect<A: Adapter>(socket: SocketRef<A>) {
    socket.on(
        "echo",
        async |Data(data): Data<Value>, ack: AckSender<A>| {
            ack.send(&data).ok();
        },
    );
    socket.on(
        "join",
        async |socket: SocketRef<A>, Data(room): Data<String>, ack: AckSender<A>| {
            socket.join(room);
            ack.send(&socket.rooms()).ok();
        },
    );
    socket.on(
        "emit-room",
        async |io: SocketIo<A>, Data((room, data)): Data<(String, Value)>, ack: AckSender<A>| {
            io.to(room).emit("fanout", &data).await.ok();
            ack.send(&true).ok();
        },
    );
}

async fn serve(
    key: String,
    hub: String,
    host: String,
    port: u16,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.validate_aud = false; // checked by path below, as Portcullis does
    validation.leeway = 30;
    validation.set_required_spec_claims(&["exp"]);
    let auth = Arc::new(Auth {
        key: DecodingKey::from_secret(key.as_bytes()),
        validation,
        audience_path: format!("/clients/socketio/hubs/{hub}"),
    });

    let builder = SocketIo::builder().req_path(format!("/clients/socketio/hubs/{hub}/"));
    let app = axum::Router::new();
    let app = match std::env::var("REDIS_URL") {
        Ok(url) => {
            let prefix = std::env::var("REDIS_PREFIX")
                .unwrap_or_else(|_| "portcullis-bench-socketioxide".into());
            let client = redis::Client::open(url)?;
            let config = RedisAdapterConfig::new().with_prefix(prefix);
            let adapter = RedisAdapterCtr::new_with_redis_config(&client, config).await?;
            let (layer, io) = builder
                .with_adapter::<RedisAdapter<_>>(adapter)
                .build_layer();
            // A remote adapter subscribes to its channels before the
            // namespace serves anyone.
            io.ns("/", on_connect).await?;
            app.layer(layer)
        }
        Err(_) => {
            let (layer, io) = builder.build_layer();
            io.ns("/", on_connect);
            app.layer(layer)
        }
    };
    let app = app.layer(middleware::from_fn_with_state(auth, gate));

    let listener = tokio::net::TcpListener::bind((host.as_str(), port)).await?;
    println!("LISTENING {}", listener.local_addr()?.port());
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            tokio::signal::ctrl_c().await.ok();
        })
        .await?;
    Ok(())
}
