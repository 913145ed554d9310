//! Clients that stop reading: a WebSocket whose peer never takes its bytes
//! (the TCP window stays shut) must not hold the gateway's task, socket or
//! session. Every write is bounded by `--write-timeout-ms`.

mod common;

use std::time::{Duration, Instant};

use common::TestGateway;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::Message;

const HUB: &str = "echo";
/// Short, so the test is quick; the default is 10 s.
const WRITE_TIMEOUT: Duration = Duration::from_millis(500);
/// Echoed messages the client asks for and never reads: far more than the
/// kernel buffers on both sides hold.
const MESSAGES: usize = 200;
const MESSAGE_BYTES: usize = 64 * 1024;

fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| entries.count())
        .unwrap_or(0)
}

/// Opens a WebSocket session with a small receive buffer, reads the open
/// packet, then makes the echo hub send it `MESSAGES` large messages it
/// never reads. Returns the socket, kept open (and unread) by the caller.
async fn flood_a_client_that_never_reads(
    gateway: &TestGateway,
) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(gateway.addr.parse().unwrap()).await.unwrap();
    let url = format!(
        "{}/clients/socketio/hubs/{HUB}/?EIO=4&transport=websocket&access_token={}",
        gateway.ws(),
        gateway.token(HUB)
    );
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();
    let open = ws.next().await.unwrap().unwrap();
    assert!(open.to_text().unwrap().starts_with('0'), "{open:?}");
    let message = format!("4{}", "x".repeat(MESSAGE_BYTES));
    for _ in 0..MESSAGES {
        // Once the gateway is stuck writing to us it stops reading too, and
        // our own sends block: that is as far as the flood needs to go.
        let send = ws.send(Message::text(message.clone()));
        if tokio::time::timeout(Duration::from_millis(200), send)
            .await
            .is_err()
        {
            break;
        }
    }
    ws
}

#[tokio::test]
async fn a_client_that_never_reads_is_closed_and_freed() {
    let timeout = WRITE_TIMEOUT.as_millis().to_string();
    let gateway = TestGateway::start(&["--echo-hub", HUB, "--write-timeout-ms", &timeout]);
    let files_before = open_files(gateway.pid());

    let stuck = flood_a_client_that_never_reads(&gateway).await;
    let flooded = Instant::now();
    // The session ends within the write timeout (plus scheduling slack),
    // though the client is still there and still not reading.
    let deadline = flooded + WRITE_TIMEOUT * 10;
    while gateway.connections().await > 0 {
        assert!(
            Instant::now() < deadline,
            "the session of a client that never reads is still held after {:?}",
            flooded.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("session freed {:?} after the flood", flooded.elapsed());
    // Its socket is released too (nothing else holds it).
    let deadline = Instant::now() + Duration::from_secs(5);
    while open_files(gateway.pid()) > files_before {
        assert!(
            Instant::now() < deadline,
            "the gateway still holds {} descriptors (was {files_before})",
            open_files(gateway.pid())
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(stuck);

    // Other clients are served as before.
    let mut ws = tokio_tungstenite::connect_async(format!(
        "{}/clients/socketio/hubs/{HUB}/?EIO=4&transport=websocket&access_token={}",
        gateway.ws(),
        gateway.token(HUB)
    ))
    .await
    .unwrap()
    .0;
    ws.next().await.unwrap().unwrap();
    ws.send(Message::text("4still here")).await.unwrap();
    let echo = ws.next().await.unwrap().unwrap();
    assert_eq!(echo.to_text().unwrap(), "4still here");
}
