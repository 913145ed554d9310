//! A minimal HTTP/1.1 client over one keep-alive TCP connection: enough for
//! Engine.IO long-polling, the refused-handshake storm and REST triggers,
//! with the connection bound to a chosen source address.

use std::net::SocketAddr;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::net::Sources;

/// A response: status, body, and whether the server closes the connection.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
    pub close: bool,
}

impl Response {
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap_or("")
    }
}

/// One HTTP/1.1 connection.
pub struct HttpConn {
    stream: TcpStream,
    host: String,
    buf: Vec<u8>,
    pub closed: bool,
}

impl HttpConn {
    pub async fn connect(sources: &Sources, addr: SocketAddr) -> Result<Self> {
        let stream = sources.connect(addr).await.context("connect")?;
        Ok(HttpConn {
            stream,
            host: addr.to_string(),
            buf: Vec::with_capacity(1024),
            closed: false,
        })
    }

    /// Sends a request and reads the whole response.
    pub async fn request(
        &mut self,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<Response> {
        if self.closed {
            bail!("connection closed");
        }
        let mut head = format!(
            "{method} {path_and_query} HTTP/1.1\r\nHost: {}\r\nAccept: */*\r\n",
            self.host
        );
        for (name, value) in headers {
            head.push_str(name);
            head.push_str(": ");
            head.push_str(value);
            head.push_str("\r\n");
        }
        if let Some(body) = body {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        if let Some(body) = body {
            out.extend_from_slice(body);
        }
        self.stream.write_all(&out).await.context("write request")?;
        let response = self.read_response().await?;
        if response.close {
            self.closed = true;
        }
        Ok(response)
    }

    async fn fill(&mut self) -> Result<usize> {
        let mut chunk = [0u8; 8192];
        let n = self.stream.read(&mut chunk).await.context("read")?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    async fn read_response(&mut self) -> Result<Response> {
        // Head.
        let (status, head_len, length, chunked, close) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut parsed = httparse::Response::new(&mut headers);
            match parsed.parse(&self.buf).context("parse response")? {
                httparse::Status::Complete(len) => {
                    let status = parsed.code.unwrap_or(0);
                    let mut length = None;
                    let mut chunked = false;
                    let mut close = parsed.version == Some(0);
                    for header in parsed.headers.iter() {
                        let value = std::str::from_utf8(header.value).unwrap_or("");
                        if header.name.eq_ignore_ascii_case("content-length") {
                            length = value.trim().parse::<usize>().ok();
                        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
                            chunked = value.to_ascii_lowercase().contains("chunked");
                        } else if header.name.eq_ignore_ascii_case("connection") {
                            close = value.eq_ignore_ascii_case("close");
                        }
                    }
                    break (status, len, length, chunked, close);
                }
                httparse::Status::Partial => {
                    if self.fill().await? == 0 {
                        self.closed = true;
                        bail!("connection closed before a response");
                    }
                }
            }
        };
        self.buf.drain(..head_len);
        let body = if chunked {
            self.read_chunked().await?
        } else if let Some(length) = length {
            while self.buf.len() < length {
                if self.fill().await? == 0 {
                    bail!("connection closed in the body");
                }
            }
            self.buf.drain(..length).collect()
        } else if close {
            while self.fill().await? > 0 {}
            std::mem::take(&mut self.buf)
        } else {
            Vec::new()
        };
        Ok(Response {
            status,
            body,
            close,
        })
    }

    async fn read_chunked(&mut self) -> Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    break pos;
                }
                if self.fill().await? == 0 {
                    bail!("connection closed in a chunk header");
                }
            };
            let size_text = std::str::from_utf8(&self.buf[..line_end]).unwrap_or("");
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .context("chunk size")?;
            self.buf.drain(..line_end + 2);
            while self.buf.len() < size + 2 {
                if self.fill().await? == 0 {
                    bail!("connection closed in a chunk");
                }
            }
            body.extend_from_slice(&self.buf[..size]);
            self.buf.drain(..size + 2);
            if size == 0 {
                return Ok(body);
            }
        }
    }
}
