//! Engine.IO v4 / Socket.IO v5 clients: WebSocket without upgrade, polling
//! then upgrade, and long-polling, written against the wire format.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{WebSocketStream, client_async_with_config};

use crate::eio::{self, Eio, Open, Sio};
use crate::http::HttpConn;
use crate::net::Sources;

pub type Ws = WebSocketStream<TcpStream>;

/// Everything a client needs to reach the server under test.
#[derive(Debug)]
pub struct Ctx {
    pub addr: SocketAddr,
    pub hub: String,
    /// `/clients/socketio/hubs/<hub>/`
    pub path: String,
    /// A valid client token.
    pub token: String,
    /// A token signed with the wrong key.
    pub bad_token: String,
    /// A REST API token (Portcullis only).
    pub api_token: String,
    pub sources: Arc<Sources>,
    /// The server echoes Engine.IO messages (Portcullis' built-in echo hub)
    /// instead of running the bench app: `40` comes back as `40`, an event
    /// with an ack id comes back as itself.
    pub echo_mode: bool,
    /// Bound on each step of a connect.
    pub step_timeout: Duration,
}

/// Why a client operation failed: `kind` is what results count by.
#[derive(Debug)]
pub struct Fail {
    pub kind: String,
    pub detail: String,
}

impl Fail {
    pub fn new(kind: impl Into<String>, detail: impl fmt::Display) -> Self {
        Fail {
            kind: kind.into(),
            detail: detail.to_string(),
        }
    }
}

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.detail)
    }
}

impl std::error::Error for Fail {}

pub type CResult<T> = Result<T, Fail>;

fn ws_config() -> WebSocketConfig {
    // Small buffers: the load generator holds tens of thousands of these.
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
}

fn ws_fail(e: tungstenite::Error) -> Fail {
    match e {
        tungstenite::Error::Http(response) => Fail::new(
            format!("http_{}", response.status().as_u16()),
            "refused at the WebSocket handshake",
        ),
        tungstenite::Error::Io(e) => Fail::new("io", e),
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
            Fail::new("closed", "connection closed")
        }
        other => Fail::new("ws", other),
    }
}

async fn within<T>(d: Duration, what: &str, f: impl Future<Output = CResult<T>>) -> CResult<T> {
    match timeout(d, f).await {
        Ok(r) => r,
        Err(_) => Err(Fail::new("timeout", what)),
    }
}

/// The next text message (WebSocket control frames are handled by
/// tungstenite; binary frames are skipped).
pub async fn next_text(ws: &mut Ws) -> CResult<tungstenite::Utf8Bytes> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => return Ok(text),
            Some(Ok(Message::Close(_))) | None => {
                return Err(Fail::new("closed", "closed by the server"));
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(ws_fail(e)),
        }
    }
}

pub async fn send_text(ws: &mut Ws, text: impl Into<String>) -> CResult<()> {
    ws.send(Message::text(text.into())).await.map_err(ws_fail)
}

/// Sends `40` and waits for the namespace CONNECT answer, answering pings.
async fn sio_connect(ws: &mut Ws) -> CResult<()> {
    send_text(ws, "40").await?;
    loop {
        let text = next_text(ws).await?;
        match eio::parse_eio(&text) {
            Eio::Ping => send_text(ws, "3").await?,
            Eio::Message(m) => match eio::parse_sio(m) {
                Sio::Connect => return Ok(()),
                Sio::ConnectError(_) => return Err(Fail::new("refused_at_connect", m)),
                _ => {}
            },
            Eio::Close => return Err(Fail::new("closed", "engine.io close")),
            _ => {}
        }
    }
}

async fn ws_open(ctx: &Ctx, query: &str) -> CResult<Ws> {
    let stream = ctx
        .sources
        .connect(ctx.addr)
        .await
        .map_err(|e| Fail::new("tcp_connect", e))?;
    let url = format!("ws://{}{}?{}", ctx.addr, ctx.path, query);
    let (ws, _) = client_async_with_config(url, stream, Some(ws_config()))
        .await
        .map_err(ws_fail)?;
    Ok(ws)
}

/// A Socket.IO client over WebSocket without upgrade: WebSocket handshake,
/// Engine.IO OPEN, namespace CONNECT.
pub async fn connect_ws(ctx: &Ctx, token: &str) -> CResult<Ws> {
    within(ctx.step_timeout, "websocket connect", async {
        let mut ws = ws_open(ctx, &eio::query(Some(token), "websocket", None)).await?;
        let text = next_text(&mut ws).await?;
        if eio::parse_open(&text).is_none() {
            return Err(Fail::new("protocol", format!("expected OPEN, got {text}")));
        }
        sio_connect(&mut ws).await?;
        Ok(ws)
    })
    .await
}

/// The polling handshake: `GET ?EIO=4&transport=polling` on `conn`.
pub async fn polling_handshake(ctx: &Ctx, conn: &mut HttpConn, token: &str) -> CResult<Open> {
    let path = format!("{}?{}", ctx.path, eio::query(Some(token), "polling", None));
    let response = conn
        .request("GET", &path, &[], None)
        .await
        .map_err(|e| Fail::new("io", e))?;
    if response.status != 200 {
        return Err(Fail::new(
            format!("http_{}", response.status),
            response.text().to_owned(),
        ));
    }
    let text = response.text();
    let first = eio::split_payload(text).next().unwrap_or("");
    eio::parse_open(first)
        .ok_or_else(|| Fail::new("protocol", format!("expected OPEN, got {text}")))
}

/// What socket.io-client does by default: polling handshake, then upgrade
/// to WebSocket (`2probe`/`3probe`/`5`), then namespace CONNECT.
pub async fn connect_upgrade(ctx: &Ctx, token: &str) -> CResult<Ws> {
    within(ctx.step_timeout, "upgrade connect", async {
        let mut conn = HttpConn::connect(&ctx.sources, ctx.addr)
            .await
            .map_err(|e| Fail::new("tcp_connect", e))?;
        let open = polling_handshake(ctx, &mut conn, token).await?;
        let mut ws = ws_open(ctx, &eio::query(Some(token), "websocket", Some(&open.sid))).await?;
        send_text(&mut ws, "2probe").await?;
        loop {
            let text = next_text(&mut ws).await?;
            if text.as_str() == "3probe" {
                break;
            }
        }
        send_text(&mut ws, "5").await?;
        drop(conn);
        sio_connect(&mut ws).await?;
        Ok(ws)
    })
    .await
}

/// A long-polling client: one connection for the GETs, one for the POSTs.
pub struct PollingClient {
    pub get: HttpConn,
    pub post: HttpConn,
    /// Path and query of the session's requests.
    pub url: String,
}

impl PollingClient {
    /// POSTs `packets` (joined with the record separator).
    pub async fn post(&mut self, packets: &[String]) -> CResult<()> {
        post_packets(&mut self.post, &self.url, packets).await
    }
}

/// POSTs `packets` (joined with the record separator) to a polling session.
pub async fn post_packets(conn: &mut HttpConn, url: &str, packets: &[String]) -> CResult<()> {
    let body = packets.join("\u{1e}");
    let response = conn
        .request(
            "POST",
            url,
            &[("Content-Type", "text/plain;charset=UTF-8")],
            Some(body.as_bytes()),
        )
        .await
        .map_err(|e| Fail::new("io", e))?;
    if response.status != 200 {
        return Err(Fail::new(
            format!("http_{}", response.status),
            response.text().to_owned(),
        ));
    }
    Ok(())
}

/// A polling client through namespace CONNECT.
pub async fn connect_polling(ctx: &Ctx, token: &str) -> CResult<PollingClient> {
    within(ctx.step_timeout, "polling connect", async {
        let mut get = HttpConn::connect(&ctx.sources, ctx.addr)
            .await
            .map_err(|e| Fail::new("tcp_connect", e))?;
        let open = polling_handshake(ctx, &mut get, token).await?;
        let post = HttpConn::connect(&ctx.sources, ctx.addr)
            .await
            .map_err(|e| Fail::new("tcp_connect", e))?;
        let url = format!(
            "{}?{}",
            ctx.path,
            eio::query(Some(token), "polling", Some(&open.sid))
        );
        let mut client = PollingClient { get, post, url };
        client.post(&["40".to_owned()]).await?;
        loop {
            let response = client
                .get
                .request("GET", &client.url, &[], None)
                .await
                .map_err(|e| Fail::new("io", e))?;
            if response.status != 200 {
                return Err(Fail::new(
                    format!("http_{}", response.status),
                    response.text().to_owned(),
                ));
            }
            let mut pong = false;
            for packet in eio::split_payload(response.text()) {
                match eio::parse_eio(packet) {
                    Eio::Ping => pong = true,
                    Eio::Message(m) => match eio::parse_sio(m) {
                        Sio::Connect => {
                            if pong {
                                client.post(&["3".to_owned()]).await?;
                            }
                            return Ok(client);
                        }
                        Sio::ConnectError(_) => return Err(Fail::new("refused_at_connect", m)),
                        _ => {}
                    },
                    Eio::Close => return Err(Fail::new("closed", "engine.io close")),
                    _ => {}
                }
            }
            if pong {
                client.post(&["3".to_owned()]).await?;
            }
        }
    })
    .await
}

/// Reads a connected client until `cancel`: answers pings, hands every
/// Socket.IO event's data to `on_event`. Returns true if the server closed
/// the connection (rather than `cancel`).
pub async fn receive_loop(
    mut ws: Ws,
    cancel: tokio_util::sync::CancellationToken,
    mut on_event: impl FnMut(&str),
) -> bool {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return false,
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(text))) => match eio::parse_eio(&text) {
                    Eio::Ping if send_text(&mut ws, "3").await.is_err() => return true,
                    Eio::Message(m) => {
                        if let Sio::Event { data, .. } = eio::parse_sio(m) {
                            on_event(data);
                        }
                    }
                    Eio::Close => return true,
                    _ => {}
                },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return true,
                Some(Ok(_)) => {}
            }
        }
    }
}

/// Joins `room` with the bench app's `join` event and waits for its ack.
pub async fn join_room(ctx: &Ctx, ws: &mut Ws, room: &str) -> CResult<()> {
    within(ctx.step_timeout, "join", async {
        send_text(
            ws,
            format!("421[\"join\",{}]", serde_json::Value::from(room)),
        )
        .await?;
        loop {
            let text = next_text(ws).await?;
            match eio::parse_eio(&text) {
                Eio::Ping => send_text(ws, "3").await?,
                Eio::Message(m) => {
                    if let Sio::Ack { id: 1, .. } = eio::parse_sio(m) {
                        return Ok(());
                    }
                }
                Eio::Close => return Err(Fail::new("closed", "engine.io close")),
                _ => {}
            }
        }
    })
    .await
}

/// Emits one `echo` with an ack and waits for it.
pub async fn echo_once(ctx: &Ctx, ws: &mut Ws) -> CResult<()> {
    within(ctx.step_timeout, "echo", async {
        send_text(ws, "421[\"echo\",{\"t\":0}]").await?;
        loop {
            let text = next_text(ws).await?;
            match eio::parse_eio(&text) {
                Eio::Ping => send_text(ws, "3").await?,
                Eio::Message(m) => match eio::parse_sio(m) {
                    Sio::Ack { id: 1, .. } => return Ok(()),
                    Sio::Event { id: Some(1), .. } if ctx.echo_mode => return Ok(()),
                    _ => {}
                },
                Eio::Close => return Err(Fail::new("closed", "engine.io close")),
                _ => {}
            }
        }
    })
    .await
}
