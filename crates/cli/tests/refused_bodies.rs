//! Requests refused before their body was read still reach their client: the
//! gateway reads and throws away the rest of the body (up to `maxPayload`,
//! within the write timeout) before it answers, so the client sees the
//! status and message instead of a reset connection, and a kept-alive
//! connection stays usable.

mod common;

use common::TestGateway;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

const HUB: &str = "echo";

fn gateway() -> TestGateway {
    TestGateway::start(&["--echo-hub", HUB])
}

/// One kept-alive HTTP/1.1 connection to the gateway.
struct KeptAlive {
    reader: BufReader<OwnedReadHalf>,
    writer: Option<OwnedWriteHalf>,
}

impl KeptAlive {
    async fn open(gateway: &TestGateway) -> Self {
        let (read, write) = TcpStream::connect(&gateway.addr)
            .await
            .unwrap()
            .into_split();
        KeptAlive {
            reader: BufReader::new(read),
            writer: Some(write),
        }
    }

    /// Sends a POST with a `size`-byte body and reads the answer. The request
    /// is written from another task, so a gateway that answers before reading
    /// the body cannot stall the test.
    async fn post(&mut self, path: &str, size: usize) -> Result<(u16, String), String> {
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: text/plain\r\ncontent-length: {size}\r\n\r\n"
        )
        .into_bytes();
        request.extend(std::iter::repeat_n(b'4', size));
        let mut writer = self.writer.take().expect("one request at a time");
        let write = tokio::spawn(async move {
            let written = writer.write_all(&request).await;
            (writer, written)
        });
        let response = self.read_response().await;
        let (writer, written) = write.await.unwrap();
        self.writer = Some(writer);
        written.map_err(|error| format!("writing the request: {error}"))?;
        response
    }

    async fn read_response(&mut self) -> Result<(u16, String), String> {
        let mut status_line = String::new();
        self.reader
            .read_line(&mut status_line)
            .await
            .map_err(|error| format!("reading the answer: {error}"))?;
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("no answer, the connection ended: {status_line:?}"))?;
        let mut length = 0;
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).await.unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).await.unwrap();
        Ok((status, String::from_utf8(body).unwrap()))
    }
}

fn polling_path(gateway: &TestGateway, query: &str) -> String {
    let url = gateway.client_url(HUB, query);
    let start = url.find("/clients/").unwrap();
    url[start..].to_owned()
}

/// Sends half a megabyte to `path` twice on one connection, far more than
/// the socket buffers hold (without reading it, the gateway's close would
/// reset the connection), and expects `status` with `message` each time.
async fn refused_twice(gateway: &TestGateway, path: &str, status: u16, message: &str) {
    let mut connection = KeptAlive::open(gateway).await;
    for attempt in 0..2 {
        let (got, body) = connection
            .post(path, 512 * 1024)
            .await
            .unwrap_or_else(|error| panic!("attempt {attempt}: {error}"));
        assert_eq!(got, status, "{body}");
        assert!(body.contains(message), "{body}");
    }
}

#[tokio::test]
async fn posts_to_ended_sessions_are_answered_and_the_connection_kept() {
    let gateway = gateway();
    let token = gateway.token(HUB);
    let query = format!("EIO=4&transport=polling&sid=no-such-session&access_token={token}");
    refused_twice(&gateway, &polling_path(&gateway, &query), 400, "\"code\":1").await;
}

#[tokio::test]
async fn unauthenticated_posts_get_their_401() {
    let gateway = gateway();
    // A handshake without a token, sent as a POST with a body.
    let path = polling_path(&gateway, "EIO=4&transport=polling");
    refused_twice(&gateway, &path, 401, "access_token").await;
}

#[tokio::test]
async fn rest_calls_without_a_token_get_their_401() {
    let gateway = gateway();
    let path = format!("/api/hubs/{HUB}/:send?api-version=2024-01-01");
    refused_twice(&gateway, &path, 401, "Bearer").await;
}

#[tokio::test]
async fn a_payload_over_max_payload_gets_its_413_and_the_connection_kept() {
    let gateway = TestGateway::start(&["--echo-hub", HUB, "--max-payload", "1000000"]);
    let sid = gateway.open_polling(HUB).await;
    let token = gateway.token(HUB);
    let path = polling_path(
        &gateway,
        &format!("EIO=4&transport=polling&sid={sid}&access_token={token}"),
    );
    let mut connection = KeptAlive::open(&gateway).await;
    // 1.5 MB: over the limit, and within what the gateway reads to answer.
    let (status, body) = connection.post(&path, 1_500_000).await.unwrap();
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("maxPayload (1000000 bytes)"), "{body}");
    // The session is over, and the same connection hears it.
    let (status, body) = connection.post(&path, 10).await.unwrap();
    assert_eq!(status, 400, "{body}");
}
