//! The crate's typed revocation calls, embedded and over the tunnel: a
//! revoked user's connections get a Socket.IO DISCONNECT and are closed,
//! the application hears why, and the token is refused afterwards.

mod common;

use std::time::{Duration, SystemTime};

use common::{DEADLINE, HUB, Mode, TestServer};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_text(ws: &mut Ws) -> Option<String> {
    loop {
        match tokio::time::timeout(DEADLINE, ws.next())
            .await
            .expect("the gateway said nothing in time")
        {
            Some(Ok(Message::Text(text))) => return Some(text.to_string()),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => {}
        }
    }
}

/// A WebSocket client of `token`, connected to the `/` namespace.
async fn connected(server: &TestServer, token: &str) -> Ws {
    let url = format!(
        "ws://{}/clients/socketio/hubs/{HUB}/?EIO=4&transport=websocket&access_token={token}",
        server.addr
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    assert!(next_text(&mut ws).await.unwrap().starts_with("0{"));
    ws.send(Message::text("40")).await.unwrap();
    let connect = next_text(&mut ws).await.unwrap();
    assert!(connect.starts_with("40{"), "{connect}");
    ws
}

async fn handshake_status(server: &TestServer, token: &str) -> u16 {
    let url = format!(
        "{}{}/?EIO=4&transport=polling&access_token={token}",
        server.endpoint(),
        server.path()
    );
    reqwest::get(url).await.unwrap().status().as_u16()
}

async fn revoking_a_user_disconnects_its_sockets(mode: Mode) {
    let mut server = TestServer::start_in(mode, Duration::from_secs(10)).await;
    let token = server.token("ann", &[]);
    let mut ann = connected(&server, &token).await;
    let mut bob = connected(&server, &server.token("bob", &[])).await;

    server
        .io
        .revoke_user_tokens("ann", SystemTime::now() + Duration::from_secs(1))
        .await
        .expect("recorded");

    // The test application greets each socket; the last thing before the
    // close is the DISCONNECT.
    let mut frames = Vec::new();
    while let Some(frame) = next_text(&mut ann).await {
        frames.push(frame);
    }
    assert_eq!(frames.last().map(String::as_str), Some("41"), "{frames:?}");
    let disconnected = server
        .expect("ann's disconnect", |v| v["kind"] == "disconnected")
        .await;
    assert_eq!(disconnected["ns"], "/");
    assert_eq!(handshake_status(&server, &token).await, 401);

    // Bob is untouched.
    bob.send(Message::text("3")).await.unwrap();
    assert_eq!(
        handshake_status(&server, &server.token("bob", &[])).await,
        200
    );
}

async fn revoking_a_token_by_id(mode: Mode) {
    let server = TestServer::start_in(mode, Duration::from_secs(10)).await;
    server
        .io
        .revoke_token("no-such-token", None)
        .await
        .expect("a revocation of a token nobody holds is recorded all the same");
}

in_both_modes!(
    revoking_a_user_disconnects_its_sockets,
    revoking_a_token_by_id
);

#[tokio::test]
async fn a_detached_server_cannot_revoke() {
    let io = portcullis_server::SocketIo::new();
    assert_eq!(
        io.revoke_user_tokens("ann", SystemTime::now()).await,
        Err(portcullis_server::RevokeError::NotAttached)
    );
}
