//! A raw Socket.IO client over WebSocket, so tests check every frame in
//! order.
#![allow(dead_code)]

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use portcullis_auth::{ClientTokenOptions, mint_client_token};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::{DEADLINE, HUB, KEY};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A raw Socket.IO client on WebSocket, connected to `/`.
pub struct Raw {
    ws: Ws,
    pub sid: String,
    /// Packets read while looking for another one, in order.
    backlog: std::collections::VecDeque<String>,
}

impl Raw {
    pub async fn connect(addr: SocketAddr, user: &str) -> Raw {
        let token = mint_client_token(
            KEY,
            &format!("http://{addr}/clients/socketio/hubs/{HUB}"),
            &ClientTokenOptions {
                user_id: Some(user.into()),
                ..Default::default()
            },
        );
        let url = format!(
            "ws://{addr}/clients/socketio/hubs/{HUB}/?EIO=4&transport=websocket&access_token={token}"
        );
        let (ws, _) = tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(url))
            .await
            .expect("connects in time")
            .expect("connects");
        let mut raw = Raw {
            ws,
            sid: String::new(),
            backlog: Default::default(),
        };
        assert!(raw.next_raw().await.starts_with('0'), "open packet");
        raw.send("40").await;
        let connect = raw.next().await;
        let answer: Value =
            serde_json::from_str(connect.strip_prefix('0').expect("40{sid}")).unwrap();
        raw.sid = answer["sid"].as_str().unwrap().to_owned();
        raw
    }

    pub async fn send(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.expect("send");
    }

    /// The next text frame, pings included.
    pub async fn next_raw(&mut self) -> String {
        loop {
            let frame = tokio::time::timeout(DEADLINE, self.ws.next())
                .await
                .expect("a frame in time")
                .expect("socket open")
                .expect("a frame");
            if let Message::Text(text) = frame {
                return text.as_str().to_owned();
            }
        }
    }

    /// The next Socket.IO packet; pings are answered.
    pub async fn next(&mut self) -> String {
        if let Some(packet) = self.backlog.pop_front() {
            return packet;
        }
        self.read().await
    }

    async fn read(&mut self) -> String {
        loop {
            let text = self.next_raw().await;
            if text == "2" {
                self.send("3").await;
                continue;
            }
            return text.strip_prefix('4').expect("a message").to_owned();
        }
    }

    /// The next EVENT named `name`: its ack id and arguments.
    pub async fn event(&mut self, name: &str) -> (Option<u64>, Vec<Value>) {
        let mut skipped = Vec::new();
        let found = loop {
            let packet = self.next().await;
            let Some(rest) = packet.strip_prefix('2') else {
                skipped.push(packet);
                continue;
            };
            let start = rest.find('[').expect("an array");
            let id = rest[..start].parse().ok();
            let mut args: Vec<Value> = serde_json::from_str(&rest[start..]).unwrap();
            if args.first() == Some(&json!(name)) {
                args.remove(0);
                break (id, args);
            }
            skipped.push(packet);
        };
        for packet in skipped.into_iter().rev() {
            self.backlog.push_front(packet);
        }
        found
    }

    /// The ACK with id `id`.
    pub async fn ack(&mut self, id: u64) -> Vec<Value> {
        let prefix = format!("3{id}");
        let mut skipped = Vec::new();
        let found = loop {
            let packet = self.next().await;
            if let Some(rest) = packet.strip_prefix(&prefix)
                && rest.starts_with('[')
            {
                break serde_json::from_str(rest).unwrap();
            }
            skipped.push(packet);
        };
        for packet in skipped.into_iter().rev() {
            self.backlog.push_front(packet);
        }
        found
    }
}
