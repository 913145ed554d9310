//! The CloudEvents the service sends the SDK as tunnel [`HttpRequest`]s, and
//! the SDK's answers to them.
//!
//! Four events matter to the Socket.IO SDK: `connect` (blocking; its answer
//! carries the Engine.IO handshake), `connected`, user `message` (blocking;
//! one Engine.IO payload string per event) and `disconnected`. Every request
//! carries the full header set of the real service (`ce-*`,
//! `WebHook-Request-Origin`, `Content-Type`), and is posted to
//! [`EVENT_HANDLER_URL`].
//!
//! ```
//! use portcullis_tunnel::cloud_events::{EventContext, user_message};
//!
//! let ctx = EventContext::new("eio_hub", "conn-abc123", "evt-1")
//!     .with_access_keys(["key1"]);
//! let request = user_message(&ctx, "42[\"msg\",\"hi\"]", 12);
//! assert_eq!(request.ack_id, 12);
//! assert_eq!(request.url, "http://localhost/eventhandler/");
//! assert_eq!(request.header("ce-type"), Some("azure.webpubsub.user.message"));
//! assert_eq!(request.header("content-type"), Some("text/plain"));
//! assert!(request.header("ce-signature").unwrap().starts_with("sha256="));
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;

use crate::message::{Headers, HttpRequest};

/// The absolute URL the service posts events to (the SDK requires an absolute
/// URL whose path starts with `/eventhandler`).
pub const EVENT_HANDLER_URL: &str = "http://localhost/eventhandler/";

/// `ce-type` of the `connect` event.
pub const TYPE_CONNECT: &str = "azure.webpubsub.sys.connect";
/// `ce-type` of the `connected` event.
pub const TYPE_CONNECTED: &str = "azure.webpubsub.sys.connected";
/// `ce-type` of the `disconnected` event.
pub const TYPE_DISCONNECTED: &str = "azure.webpubsub.sys.disconnected";
/// `ce-type` prefix of user events (`azure.webpubsub.user.<eventName>`).
pub const TYPE_USER_PREFIX: &str = "azure.webpubsub.user.";

const JSON_UTF8: &str = "application/json; charset=utf-8";
const TEXT_PLAIN: &str = "text/plain";

/// What every event about one client connection shares.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use portcullis_tunnel::cloud_events::EventContext;
///
/// let ctx = EventContext::new("hub", "conn-1", "e1")
///     .with_user_id(Some("bob".into()))
///     .with_origin_host("gw.example")
///     .with_time(UNIX_EPOCH + Duration::from_secs(1_704_067_200));
/// assert_eq!(ctx.user_id.as_deref(), Some("bob"));
/// ```
///
/// `Debug` shows how many access keys there are, never the keys.
#[derive(Clone, PartialEq, Eq)]
pub struct EventContext {
    /// Hub name (`ce-hub`; the SDK compares it case-insensitively with its own).
    pub hub: String,
    /// Client connection id (`ce-connectionId`), which becomes the Engine.IO `sid`.
    pub connection_id: String,
    /// Connection user id (`ce-userId`, omitted when `None`).
    pub user_id: Option<String>,
    /// Event id (`ce-id`); should be unique per event.
    pub event_id: String,
    /// Service host name (`WebHook-Request-Origin`).
    pub origin_host: String,
    /// Access keys; `ce-signature` holds one `sha256=<hex>` per key, comma-separated.
    /// With no keys the header is omitted.
    pub access_keys: Vec<String>,
    /// Event time (`ce-time`, RFC 3339 UTC, whole seconds).
    pub time: SystemTime,
}

impl std::fmt::Debug for EventContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The access keys sign every event: a logged context must not leak them.
        f.debug_struct("EventContext")
            .field("hub", &self.hub)
            .field("connection_id", &self.connection_id)
            .field("user_id", &self.user_id)
            .field("event_id", &self.event_id)
            .field("origin_host", &self.origin_host)
            .field(
                "access_keys",
                &format_args!("<{} redacted>", self.access_keys.len()),
            )
            .field("time", &self.time)
            .finish()
    }
}

impl EventContext {
    /// A context with no user, no access keys, origin `localhost` and the current time.
    pub fn new(
        hub: impl Into<String>,
        connection_id: impl Into<String>,
        event_id: impl Into<String>,
    ) -> Self {
        Self {
            hub: hub.into(),
            connection_id: connection_id.into(),
            user_id: None,
            event_id: event_id.into(),
            origin_host: "localhost".into(),
            access_keys: Vec::new(),
            time: SystemTime::now(),
        }
    }

    /// Sets the user id (builder style).
    pub fn with_user_id(mut self, user_id: Option<String>) -> Self {
        self.user_id = user_id;
        self
    }

    /// Sets the origin host (builder style).
    pub fn with_origin_host(mut self, origin_host: impl Into<String>) -> Self {
        self.origin_host = origin_host.into();
        self
    }

    /// Sets the access keys used for `ce-signature` (builder style).
    pub fn with_access_keys<I, S>(mut self, keys: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.access_keys = keys.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the event time (builder style).
    pub fn with_time(mut self, time: SystemTime) -> Self {
        self.time = time;
        self
    }

    /// Sets the event id (builder style).
    pub fn with_event_id(mut self, event_id: impl Into<String>) -> Self {
        self.event_id = event_id.into();
        self
    }

    /// The `ce-signature` value: `sha256=<hex(HMAC-SHA256(key, connectionId))>`
    /// for each access key, joined by `,`.
    ///
    /// ```
    /// use portcullis_tunnel::cloud_events::EventContext;
    /// let ctx = EventContext::new("h", "c", "e").with_access_keys(["k1", "k2"]);
    /// let sig = ctx.signature();
    /// assert_eq!(sig.split(',').count(), 2);
    /// assert!(sig.split(',').all(|s| s.starts_with("sha256=") && s.len() == 7 + 64));
    /// ```
    pub fn signature(&self) -> String {
        self.access_keys
            .iter()
            .map(|key| {
                let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes())
                    .expect("HMAC accepts keys of any length");
                mac.update(self.connection_id.as_bytes());
                format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    fn request(
        &self,
        ack_id: u64,
        ce_type: &str,
        event_name: &str,
        content_type: &str,
        body: Bytes,
    ) -> HttpRequest {
        let mut headers = Headers::new();
        let mut set = |k: &str, v: String| {
            headers.insert(k.to_owned(), vec![v]);
        };
        set("ce-specversion", "1.0".into());
        set("ce-awpsversion", "1.0".into());
        set("ce-type", ce_type.into());
        set(
            "ce-source",
            format!("/hubs/{}/client/{}", self.hub, self.connection_id),
        );
        set("ce-id", self.event_id.clone());
        set("ce-time", rfc3339(self.time));
        if !self.access_keys.is_empty() {
            set("ce-signature", self.signature());
        }
        if let Some(user) = &self.user_id {
            set("ce-userId", user.clone());
        }
        set("ce-connectionId", self.connection_id.clone());
        set("ce-hub", self.hub.clone());
        set("ce-eventName", event_name.into());
        set("WebHook-Request-Origin", self.origin_host.clone());
        set("Content-Type", content_type.into());
        HttpRequest {
            ack_id,
            local_routing: false,
            channel_name: String::new(),
            method: "POST".into(),
            url: EVENT_HANDLER_URL.into(),
            headers,
            content: Some(body),
            tracing_id: None,
        }
    }
}

/// A client certificate in the `connect` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ClientCertificate {
    /// Certificate thumbprint.
    #[serde(default)]
    pub thumbprint: String,
    /// PEM content.
    #[serde(default)]
    pub content: String,
}

/// The JSON body of the `connect` event.
///
/// Every map is `name → [values]`. `claims` holds every claim of the client
/// token, verbatim names, values as string arrays (see [`claims_from_jwt`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ConnectEventBody {
    /// Client token claims.
    #[serde(default)]
    pub claims: BTreeMap<String, Vec<String>>,
    /// The client's handshake query string (must include `EIO: ["4"]`).
    #[serde(default)]
    pub query: BTreeMap<String, Vec<String>>,
    /// The client's handshake request headers, original casing.
    #[serde(default)]
    pub headers: BTreeMap<String, Vec<String>>,
    /// WebSocket subprotocols (always empty for Socket.IO).
    #[serde(default)]
    pub subprotocols: Vec<String>,
    /// Client certificates (always empty here).
    #[serde(default)]
    pub client_certificates: Vec<ClientCertificate>,
}

/// Converts JWT claims to the `Record<string, string[]>` shape of `connect`:
/// strings → `[s]`, numbers → `[decimal]`, booleans → `["true"|"false"]`,
/// arrays → one string per element, objects → `[JSON text]`, `null` → `[]`.
///
/// ```
/// use portcullis_tunnel::cloud_events::claims_from_jwt;
/// let claims = serde_json::json!({"userId": 0, "sub": "bob", "role": ["a", "b"]});
/// let map = claims_from_jwt(claims.as_object().unwrap());
/// assert_eq!(map["userId"], vec!["0"]);
/// assert_eq!(map["role"], vec!["a", "b"]);
/// ```
pub fn claims_from_jwt(claims: &serde_json::Map<String, Value>) -> BTreeMap<String, Vec<String>> {
    fn one(v: &Value) -> Option<String> {
        match v {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }
    claims
        .iter()
        .map(|(k, v)| {
            let values = match v {
                Value::Array(items) => items.iter().filter_map(one).collect(),
                other => one(other).into_iter().collect(),
            };
            (k.clone(), values)
        })
        .collect()
}

/// The `connect` event (blocking): its answer is parsed with [`parse_connect_response`].
///
/// ```
/// use portcullis_tunnel::cloud_events::{ConnectEventBody, EventContext, connect};
///
/// let mut body = ConnectEventBody::default();
/// body.query.insert("EIO".into(), vec!["4".into()]);
/// let request = connect(&EventContext::new("eio_hub", "c1", "e1"), &body, 1);
/// assert_eq!(request.header("ce-eventName"), Some("connect"));
/// let json: serde_json::Value = serde_json::from_slice(request.content.as_ref().unwrap()).unwrap();
/// assert_eq!(json["query"]["EIO"][0], "4");
/// assert_eq!(json["clientCertificates"], serde_json::json!([]));
/// ```
pub fn connect(ctx: &EventContext, body: &ConnectEventBody, ack_id: u64) -> HttpRequest {
    // Serialising maps of strings cannot fail.
    let json = serde_json::to_vec(body).unwrap_or_default();
    ctx.request(ack_id, TYPE_CONNECT, "connect", JSON_UTF8, json.into())
}

/// The `connected` event (non-blocking), body `{}`.
pub fn connected(ctx: &EventContext, ack_id: u64) -> HttpRequest {
    ctx.request(
        ack_id,
        TYPE_CONNECTED,
        "connected",
        JSON_UTF8,
        Bytes::from_static(b"{}"),
    )
}

/// The `disconnected` event (non-blocking), body `{"reason":"..."}`.
///
/// ```
/// use portcullis_tunnel::cloud_events::{EventContext, disconnected};
/// let request = disconnected(&EventContext::new("h", "c", "e"), "", 4);
/// assert_eq!(request.content.as_deref(), Some(&br#"{"reason":""}"#[..]));
/// ```
pub fn disconnected(ctx: &EventContext, reason: &str, ack_id: u64) -> HttpRequest {
    let json = serde_json::to_vec(&serde_json::json!({ "reason": reason })).unwrap_or_default();
    ctx.request(
        ack_id,
        TYPE_DISCONNECTED,
        "disconnected",
        JSON_UTF8,
        json.into(),
    )
}

/// The user `message` event (blocking): body = one Engine.IO payload string,
/// `Content-Type: text/plain`.
pub fn user_message(ctx: &EventContext, eio_payload: &str, ack_id: u64) -> HttpRequest {
    ctx.request(
        ack_id,
        &format!("{TYPE_USER_PREFIX}message"),
        "message",
        TEXT_PLAIN,
        Bytes::copy_from_slice(eio_payload.as_bytes()),
    )
}

/// A CloudEvent as received by the SDK side, parsed from a tunnel [`HttpRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedEvent {
    /// `ce-hub`.
    pub hub: String,
    /// `ce-connectionId`.
    pub connection_id: String,
    /// `ce-userId`, if present.
    pub user_id: Option<String>,
    /// `ce-id`, empty if absent.
    pub event_id: String,
    /// What happened.
    pub kind: EventKind,
}

/// The kind and body of a [`ReceivedEvent`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// `azure.webpubsub.sys.connect`.
    Connect(ConnectEventBody),
    /// `azure.webpubsub.sys.connected`.
    Connected,
    /// `azure.webpubsub.sys.disconnected`, with its reason (empty if none).
    Disconnected {
        /// The `reason` field of the body.
        reason: String,
    },
    /// `azure.webpubsub.user.<event_name>`.
    User {
        /// The user event name (`message` for Socket.IO).
        event_name: String,
        /// `Content-Type` (without parameters), lowercased.
        content_type: String,
        /// The body.
        data: Bytes,
    },
}

/// Why a tunnel request is not a usable CloudEvent.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// A required header is missing (the SDK would answer 500).
    #[error("CloudEvent lacks header {0}")]
    MissingHeader(&'static str),
    /// `ce-type` is not an `azure.webpubsub.*` type this crate knows.
    #[error("unsupported CloudEvent type {0:?}")]
    UnknownType(String),
    /// The JSON body of a system event is invalid.
    #[error("invalid body for {ce_type}: {source}")]
    InvalidBody {
        /// The event type.
        ce_type: &'static str,
        /// The parse error.
        source: serde_json::Error,
    },
}

impl ReceivedEvent {
    /// Parses a service → SDK request. Header names are matched case-insensitively.
    ///
    /// ```
    /// use portcullis_tunnel::cloud_events::{EventContext, EventKind, ReceivedEvent, disconnected};
    /// let request = disconnected(&EventContext::new("h", "c", "e"), "bye", 1);
    /// let event = ReceivedEvent::from_request(&request).unwrap();
    /// assert_eq!(event.kind, EventKind::Disconnected { reason: "bye".into() });
    /// ```
    pub fn from_request(request: &HttpRequest) -> Result<Self, EventError> {
        let need = |name: &'static str| request.header(name).ok_or(EventError::MissingHeader(name));
        let ce_type = need("ce-type")?;
        let hub = need("ce-hub")?.to_owned();
        let connection_id = need("ce-connectionId")?.to_owned();
        let body = request.content.clone().unwrap_or_default();
        let kind = match ce_type {
            TYPE_CONNECT => {
                EventKind::Connect(serde_json::from_slice(&body).map_err(|source| {
                    EventError::InvalidBody {
                        ce_type: TYPE_CONNECT,
                        source,
                    }
                })?)
            }
            TYPE_CONNECTED => EventKind::Connected,
            TYPE_DISCONNECTED => {
                #[derive(Deserialize)]
                struct Body {
                    #[serde(default)]
                    reason: Option<String>,
                }
                let b: Body =
                    serde_json::from_slice(&body).map_err(|source| EventError::InvalidBody {
                        ce_type: TYPE_DISCONNECTED,
                        source,
                    })?;
                EventKind::Disconnected {
                    reason: b.reason.unwrap_or_default(),
                }
            }
            other => match other.strip_prefix(TYPE_USER_PREFIX) {
                Some(name) => EventKind::User {
                    event_name: request.header("ce-eventName").unwrap_or(name).to_owned(),
                    content_type: request
                        .header("content-type")
                        .unwrap_or("")
                        .split(';')
                        .next()
                        .unwrap_or("")
                        .trim()
                        .to_ascii_lowercase(),
                    data: body,
                },
                None => return Err(EventError::UnknownType(other.to_owned())),
            },
        };
        Ok(Self {
            hub,
            connection_id,
            user_id: request.header("ce-userId").map(str::to_owned),
            event_id: request.header("ce-id").unwrap_or("").to_owned(),
            kind,
        })
    }
}

/// The Engine.IO handshake returned by the SDK in a 2xx answer to `connect`:
/// `{"socketio":{"sid","upgrades","pingInterval","pingTimeout","maxPayload"}}`.
///
/// It is the Engine.IO open packet payload minus the leading `0`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectResponse {
    /// Engine.IO session id (equals the connection id).
    pub sid: String,
    /// Upgrades offered by the SDK (always `[]`; the service rewrites it).
    #[serde(default)]
    pub upgrades: Vec<String>,
    /// Milliseconds between pings (engine.io default 25000 if absent).
    #[serde(default = "default_ping_interval")]
    pub ping_interval: u64,
    /// Milliseconds to wait for a pong (engine.io default 20000 if absent).
    #[serde(default = "default_ping_timeout")]
    pub ping_timeout: u64,
    /// Largest accepted payload in bytes (engine.io default 1000000 if absent).
    #[serde(default = "default_max_payload")]
    pub max_payload: u64,
}

fn default_ping_interval() -> u64 {
    25_000
}
fn default_ping_timeout() -> u64 {
    20_000
}
fn default_max_payload() -> u64 {
    1_000_000
}

#[derive(Serialize, Deserialize)]
struct ConnectResponseBody<T> {
    socketio: T,
}

impl ConnectResponse {
    /// The 200 body the SDK sends: `{"socketio":{...}}`.
    pub fn to_body(&self) -> Bytes {
        serde_json::to_vec(&ConnectResponseBody { socketio: self })
            .unwrap_or_default()
            .into()
    }

    /// The Engine.IO open packet for the client, with `upgrades` replaced:
    /// `0{"sid":…,"upgrades":[…],"pingInterval":…,"pingTimeout":…,"maxPayload":…}`.
    ///
    /// ```
    /// use portcullis_tunnel::cloud_events::{ConnectOutcome, parse_connect_response};
    /// let body = br#"{"socketio":{"sid":"conn-abc123","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}}"#;
    /// let ConnectOutcome::Accepted(open) = parse_connect_response(200, body).unwrap() else { panic!() };
    /// assert_eq!(
    ///     open.open_packet(&["websocket"]),
    ///     r#"0{"sid":"conn-abc123","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#
    /// );
    /// ```
    pub fn open_packet(&self, upgrades: &[&str]) -> String {
        let open = Self {
            upgrades: upgrades.iter().map(|s| (*s).to_owned()).collect(),
            ..self.clone()
        };
        format!("0{}", serde_json::to_string(&open).unwrap_or_default())
    }
}

/// The SDK's answer to `connect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectOutcome {
    /// 2xx with a valid handshake body.
    Accepted(ConnectResponse),
    /// Any other status; `message` is the body as (lossy UTF-8) text, e.g.
    /// `EIO server refused connection with error: …`. Fail the client's
    /// handshake with the same status and message.
    Rejected {
        /// HTTP status.
        status: u16,
        /// Body text.
        message: String,
    },
}

/// A 2xx answer to `connect` whose body is not a handshake.
#[derive(Debug, thiserror::Error)]
#[error("invalid connect response body: {0}")]
pub struct ConnectResponseError(#[from] pub serde_json::Error);

/// Parses the SDK's response to `connect` from its status and body.
///
/// Extra keys are ignored, in the envelope and in `socketio`.
///
/// ```
/// use portcullis_tunnel::cloud_events::{ConnectOutcome, parse_connect_response};
/// assert_eq!(
///     parse_connect_response(400, b"EIO server refused connection with error: undefined").unwrap(),
///     ConnectOutcome::Rejected {
///         status: 400,
///         message: "EIO server refused connection with error: undefined".into()
///     }
/// );
/// ```
pub fn parse_connect_response(
    status: u16,
    body: &[u8],
) -> Result<ConnectOutcome, ConnectResponseError> {
    if !(200..300).contains(&status) {
        return Ok(ConnectOutcome::Rejected {
            status,
            message: String::from_utf8_lossy(body).into_owned(),
        });
    }
    let parsed: ConnectResponseBody<ConnectResponse> = serde_json::from_slice(body)?;
    Ok(ConnectOutcome::Accepted(parsed.socketio))
}

/// Formats `time` as RFC 3339 UTC with whole seconds, e.g. `2024-01-01T00:00:00Z`.
/// Times before 1970 are clamped to the epoch, times after 9999 to its last
/// second (RFC 3339 has four-digit years).
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use portcullis_tunnel::cloud_events::rfc3339;
/// assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(1_704_067_200)), "2024-01-01T00:00:00Z");
/// ```
pub fn rfc3339(time: SystemTime) -> String {
    // humantime refuses (by panicking in `to_string`) times outside
    // 1970..=9999; the clamp keeps every `SystemTime` in that range.
    let last = UNIX_EPOCH + LAST_RFC3339_SECOND;
    humantime::format_rfc3339_seconds(time.clamp(UNIX_EPOCH, last)).to_string()
}

/// 9999-12-31T23:59:59Z, as a duration since the epoch.
const LAST_RFC3339_SECOND: Duration = Duration::from_secs(253_402_300_799);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_access_keys() {
        let ctx = EventContext::new("h", "c", "e").with_access_keys(["super-secret-key"]);
        let text = format!("{ctx:?}");
        assert!(!text.contains("super-secret-key"), "{text}");
        assert!(text.contains("<1 redacted>"), "{text}");
    }

    #[test]
    fn rfc3339_known_dates() {
        let at = |s| rfc3339(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_795_544_222), "2026-11-24T18:17:02Z");
        assert_eq!(at(4_102_444_799), "2099-12-31T23:59:59Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH - Duration::from_secs(5)),
            "1970-01-01T00:00:00Z"
        );
        // Sub-second parts are dropped, not rounded.
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_millis(1_999)),
            "1970-01-01T00:00:01Z"
        );
        assert_eq!(at(253_402_300_799), "9999-12-31T23:59:59Z");
        assert_eq!(at(253_402_300_800), "9999-12-31T23:59:59Z");
        assert_eq!(at(u64::MAX / 4), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn hmac_sha256_rfc4231_case_2() {
        let ctx =
            EventContext::new("h", "what do ya want for nothing?", "e").with_access_keys(["Jefe"]);
        assert_eq!(
            ctx.signature(),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
