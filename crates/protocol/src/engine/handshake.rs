use serde::{Deserialize, Serialize};

/// The parameters of a session, sent to the client in the `open` packet.
///
/// Serialises to exactly the keys engine.io clients and the official
/// conformance suite expect: `sid`, `upgrades`, `pingInterval`, `pingTimeout`,
/// `maxPayload`.
///
/// ```
/// use portcullis_protocol::engine::OpenParams;
/// let open = OpenParams {
///     sid: "abc".into(),
///     upgrades: vec!["websocket".into()],
///     ping_interval: 25_000,
///     ping_timeout: 20_000,
///     max_payload: 1_000_000,
/// };
/// assert_eq!(
///     open.to_json(),
///     r#"{"sid":"abc","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenParams {
    /// The session id, also the connection id.
    pub sid: String,
    /// Transports the client may upgrade to.
    pub upgrades: Vec<String>,
    /// Milliseconds between server pings.
    pub ping_interval: u64,
    /// Milliseconds the server waits for a pong.
    pub ping_timeout: u64,
    /// Largest payload, in bytes, the server accepts in one request or frame.
    pub max_payload: u64,
}

impl OpenParams {
    /// The JSON text that follows the `0` of the open packet.
    pub fn to_json(&self) -> String {
        // Serialising a struct of strings and integers cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}
