//! Why a connection ended, as a type on both sides of the tunnel.
//!
//! The gateway tells application servers why a client left with a text (the
//! `disconnected` event's `reason`, which the official SDK reads as it is);
//! [`DisconnectReason`] prints that text and parses it back, so the text is
//! written in one place.

use serde::{Deserialize, Serialize};

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DisconnectReason {
    /// The client sent an Engine.IO close packet.
    ClientClosed,
    /// The client's transport went away (WebSocket closed or failed).
    TransportClosed,
    /// No pong (or, with [`Heartbeat::Application`](crate::Heartbeat::Application), no packet at all) in time.
    PingTimeout,
    /// The handler or an operator closed the connection.
    ServerClosed(String),
    /// The client broke the protocol (invalid packet, overlapping polls, …).
    ProtocolError(String),
    /// The client sent more than `max_payload` bytes at once.
    PayloadTooLarge,
    /// The client did not read fast enough and its queue reached its bound.
    SlowClient,
    /// The gateway is shutting down.
    Shutdown,
    /// The connection's token expired and no fresh one came within the grace
    /// period (hubs that enforce token expiry). The client may reconnect
    /// with a new token.
    TokenExpired,
    /// The connection's token was revoked (by its `jti`, or with every token
    /// of its user).
    TokenRevoked,
}

impl std::fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DisconnectReason::ClientClosed => f.write_str("client closed the connection"),
            DisconnectReason::TransportClosed => f.write_str("transport closed"),
            DisconnectReason::PingTimeout => f.write_str("ping timeout"),
            DisconnectReason::ServerClosed(why) if why.is_empty() => {
                f.write_str("closed by the server")
            }
            DisconnectReason::ServerClosed(why) => write!(f, "closed by the server: {why}"),
            DisconnectReason::ProtocolError(why) => write!(f, "protocol error: {why}"),
            DisconnectReason::PayloadTooLarge => f.write_str("payload too large"),
            DisconnectReason::SlowClient => f.write_str("client too slow: outbound queue full"),
            DisconnectReason::Shutdown => f.write_str("gateway shutting down"),
            DisconnectReason::TokenExpired => f.write_str("token expired"),
            DisconnectReason::TokenRevoked => f.write_str("token revoked"),
        }
    }
}

impl DisconnectReason {
    /// The reason a [`Display`](std::fmt::Display) text names (an empty
    /// text is a closed transport), or `None` for a text this crate does not
    /// print.
    pub fn from_text(text: &str) -> Option<Self> {
        const FIXED: [(&str, DisconnectReason); 9] = [
            ("", DisconnectReason::TransportClosed),
            (
                "client closed the connection",
                DisconnectReason::ClientClosed,
            ),
            ("transport closed", DisconnectReason::TransportClosed),
            ("ping timeout", DisconnectReason::PingTimeout),
            ("payload too large", DisconnectReason::PayloadTooLarge),
            (
                "client too slow: outbound queue full",
                DisconnectReason::SlowClient,
            ),
            ("gateway shutting down", DisconnectReason::Shutdown),
            ("token expired", DisconnectReason::TokenExpired),
            ("token revoked", DisconnectReason::TokenRevoked),
        ];
        if let Some((_, reason)) = FIXED.iter().find(|(t, _)| *t == text) {
            return Some(reason.clone());
        }
        if text == "closed by the server" {
            return Some(DisconnectReason::ServerClosed(String::new()));
        }
        if let Some(why) = text.strip_prefix("closed by the server: ") {
            return Some(DisconnectReason::ServerClosed(why.to_owned()));
        }
        text.strip_prefix("protocol error: ")
            .map(|why| DisconnectReason::ProtocolError(why.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_survives_its_text() {
        let reasons = [
            DisconnectReason::ClientClosed,
            DisconnectReason::TransportClosed,
            DisconnectReason::PingTimeout,
            DisconnectReason::ServerClosed(String::new()),
            DisconnectReason::ServerClosed("application server unavailable".into()),
            DisconnectReason::ProtocolError("bad packet".into()),
            DisconnectReason::PayloadTooLarge,
            DisconnectReason::SlowClient,
            DisconnectReason::Shutdown,
            DisconnectReason::TokenExpired,
            DisconnectReason::TokenRevoked,
        ];
        for reason in reasons {
            assert_eq!(
                DisconnectReason::from_text(&reason.to_string()),
                Some(reason)
            );
        }
    }

    #[test]
    fn unknown_texts_are_none() {
        assert_eq!(DisconnectReason::from_text("something else"), None);
        assert_eq!(
            DisconnectReason::from_text(""),
            Some(DisconnectReason::TransportClosed)
        );
    }
}
