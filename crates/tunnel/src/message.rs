//! The tunnel message types (`sdk/server-proxies/src/tunnels/messages.ts`)
//! and their JSON element.
//!
//! Every message is carried as `[type, json, content]` (see [`crate::frame`]).
//! The JSON uses PascalCase keys. [`TunnelMessage::to_json`] writes the keys
//! in the order the real service uses, so that encoded frames match captured
//! bytes exactly; [`TunnelMessage::from_parts`] accepts any key order, ignores
//! unknown keys and defaults missing optional fields, like the SDK's
//! `JSON.parse`.
//!
//! ```
//! use portcullis_tunnel::message::{HttpRequest, HttpResponse};
//!
//! let request = HttpRequest::new(7, "POST", "https://host/api/hubs/h/:send")
//!     .with_header("Content-Type", "text/plain")
//!     .with_content("42[\"hi\"]");
//! let response = HttpResponse::reply_to(&request, 202);
//! assert_eq!(response.ack_id, 7);
//! assert_eq!(request.header("content-type"), Some("text/plain"));
//! ```

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// HTTP headers as carried by the tunnel: `{name: [values]}`.
///
/// A `BTreeMap` keeps the encoding stable. Names are kept verbatim (the SDK
/// lowercases them itself when it reads them); use [`HttpRequest::header`] or
/// [`HttpResponse::header`] for a case-insensitive lookup.
pub type Headers = BTreeMap<String, Vec<String>>;

/// Numeric `Type` codes of the tunnel messages.
pub mod type_code {
    /// `HttpRequest`, both directions.
    pub const HTTP_REQUEST: i64 = 1;
    /// `HttpResponse`, both directions.
    pub const HTTP_RESPONSE: i64 = 2;
    /// `ServiceStatus`, service → SDK (ignored by the SDK; used as keep-alive).
    pub const SERVICE_STATUS: i64 = 5;
    /// `ConnectionReconnect`, service → SDK.
    pub const CONNECTION_RECONNECT: i64 = 6;
    /// `ConnectionClose`, service → SDK (the SDK does not reconnect).
    pub const CONNECTION_CLOSE: i64 = 7;
    /// `ConnectionRebalance`, service → SDK.
    pub const CONNECTION_REBALANCE: i64 = 8;
    /// `ConnectionConnected`, service → SDK; must be the first message.
    pub const CONNECTION_CONNECTED: i64 = 10;
}

/// One tunnel message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunnelMessage {
    /// Type 1: an HTTP request (a CloudEvent service → SDK, a REST call SDK → service).
    HttpRequest(HttpRequest),
    /// Type 2: an HTTP response, or one chunk of a streamed response.
    HttpResponse(HttpResponse),
    /// Type 5: a status notice. The SDK logs and drops it, so it serves as a keep-alive.
    ServiceStatus {
        /// Free text, e.g. `"keepalive"`.
        message: String,
    },
    /// Type 6: asks the SDK to replace this WebSocket with one to `endpoint`.
    ConnectionReconnect {
        /// Value for the `&target=` query parameter of the new tunnel URL.
        target_id: String,
        /// Endpoint to connect to.
        endpoint: String,
        /// Free text.
        message: String,
    },
    /// Type 7: closes this WebSocket for good (the SDK does not reconnect).
    ConnectionClose {
        /// Free text.
        message: String,
    },
    /// Type 8: asks the SDK to open an additional WebSocket to `endpoint`.
    ConnectionRebalance {
        /// Value for the `&target=` query parameter of the new tunnel URL.
        target_id: String,
        /// Endpoint to connect to.
        endpoint: String,
        /// Free text.
        message: String,
    },
    /// Type 10: the first message on every tunnel WebSocket.
    ConnectionConnected {
        /// Id of this tunnel WebSocket.
        connection_id: String,
        /// User id of the tunnel connection, usually `None`.
        user_id: Option<String>,
        /// Reconnection token, usually `None`.
        reconnection_token: Option<String>,
    },
    /// Any other type code (0, 3, 4, 9, …). The SDK drops these.
    ///
    /// Only for codes not listed in [`type_code`]: a frame whose code is known
    /// always decodes to the matching variant.
    Unknown {
        /// The message type code.
        type_code: i64,
        /// The JSON element, verbatim.
        json: String,
    },
}

/// A tunnelled HTTP request (message type 1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HttpRequest {
    /// Correlates the request with its [`HttpResponse`]. Each side has its own counter.
    pub ack_id: u64,
    /// `LocalRouting`; the SDK sends `true` and echoes the request's value in responses.
    pub local_routing: bool,
    /// `ChannelName`; unused, usually `""`.
    pub channel_name: String,
    /// HTTP method (`HttpMethod`), e.g. `"POST"`.
    pub method: String,
    /// Absolute URL (`Url`), e.g. `https://host/api/hubs/h/:send?api-version=2023-07-01`.
    pub url: String,
    /// Request headers.
    pub headers: Headers,
    /// Body bytes; `None` is encoded as MessagePack `nil`.
    pub content: Option<Bytes>,
    /// `TracingId`, a number or `null`.
    pub tracing_id: Option<u64>,
}

/// A tunnelled HTTP response (message type 2), possibly one chunk of a stream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HttpResponse {
    /// The `AckId` of the request this answers.
    pub ack_id: u64,
    /// `LocalRouting`, echoed from the request.
    pub local_routing: bool,
    /// HTTP status code. Only the first chunk's status counts.
    pub status_code: u16,
    /// `ChannelName`, echoed from the request.
    pub channel_name: String,
    /// `true` when more chunks follow (streaming, used by `:invoke`).
    pub not_completed: bool,
    /// Response headers.
    pub headers: Headers,
    /// Body bytes (or this chunk's bytes); `None` is encoded as MessagePack `nil`.
    pub content: Option<Bytes>,
    /// `TracingId`, a number or `null`.
    pub tracing_id: Option<u64>,
}

fn first_header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.first())
        .map(String::as_str)
}

impl HttpRequest {
    /// A request with no headers, no content, `LocalRouting: false` and `ChannelName: ""`.
    pub fn new(ack_id: u64, method: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            ack_id,
            method: method.into(),
            url: url.into(),
            ..Self::default()
        }
    }

    /// Appends `value` to header `name` (builder style).
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers
            .entry(name.into())
            .or_default()
            .push(value.into());
        self
    }

    /// Sets the body (builder style).
    pub fn with_content(mut self, content: impl Into<Bytes>) -> Self {
        self.content = Some(content.into());
        self
    }

    /// First value of header `name`, compared ASCII case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        first_header(&self.headers, name)
    }
}

impl HttpResponse {
    /// A complete (`NotCompleted: false`) response with no headers and no content.
    pub fn new(ack_id: u64, status_code: u16) -> Self {
        Self {
            ack_id,
            status_code,
            ..Self::default()
        }
    }

    /// A response to `request`, echoing its `AckId`, `LocalRouting` and `ChannelName`.
    pub fn reply_to(request: &HttpRequest, status_code: u16) -> Self {
        Self {
            ack_id: request.ack_id,
            local_routing: request.local_routing,
            channel_name: request.channel_name.clone(),
            status_code,
            ..Self::default()
        }
    }

    /// Appends `value` to header `name` (builder style).
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers
            .entry(name.into())
            .or_default()
            .push(value.into());
        self
    }

    /// Sets the body (builder style).
    pub fn with_content(mut self, content: impl Into<Bytes>) -> Self {
        self.content = Some(content.into());
        self
    }

    /// Sets `NotCompleted` (builder style).
    pub fn with_not_completed(mut self, not_completed: bool) -> Self {
        self.not_completed = not_completed;
        self
    }

    /// First value of header `name`, compared ASCII case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        first_header(&self.headers, name)
    }
}

// ---------------------------------------------------------------------------
// JSON, outgoing: field order matters for byte-exact frames.

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct RequestOut<'a> {
    r#type: i64,
    ack_id: u64,
    http_method: &'a str,
    url: &'a str,
    headers: &'a Headers,
    local_routing: bool,
    channel_name: &'a str,
    tracing_id: Option<u64>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ResponseOut<'a> {
    r#type: i64,
    ack_id: u64,
    status_code: u16,
    headers: &'a Headers,
    local_routing: bool,
    channel_name: &'a str,
    not_completed: bool,
    tracing_id: Option<u64>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct MessageOut<'a> {
    r#type: i64,
    message: &'a str,
    tracing_id: Option<u64>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct TargetOut<'a> {
    r#type: i64,
    target_id: &'a str,
    endpoint: &'a str,
    message: &'a str,
    tracing_id: Option<u64>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ConnectedOut<'a> {
    r#type: i64,
    connection_id: &'a str,
    user_id: Option<&'a str>,
    reconnection_token: Option<&'a str>,
    tracing_id: Option<u64>,
}

// ---------------------------------------------------------------------------
// JSON, incoming: tolerant of order, unknown keys and missing optional fields.

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RequestIn {
    ack_id: u64,
    #[serde(default, deserialize_with = "lenient_bool")]
    local_routing: bool,
    #[serde(default, deserialize_with = "lenient_string")]
    channel_name: String,
    http_method: String,
    url: String,
    #[serde(default, deserialize_with = "lenient_headers")]
    headers: Headers,
    #[serde(default, deserialize_with = "lenient_tracing_id")]
    tracing_id: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ResponseIn {
    ack_id: u64,
    #[serde(default, deserialize_with = "lenient_bool")]
    local_routing: bool,
    status_code: u16,
    #[serde(default, deserialize_with = "lenient_string")]
    channel_name: String,
    #[serde(default, deserialize_with = "lenient_bool")]
    not_completed: bool,
    #[serde(default, deserialize_with = "lenient_headers")]
    headers: Headers,
    #[serde(default, deserialize_with = "lenient_tracing_id")]
    tracing_id: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct OtherIn {
    #[serde(default, deserialize_with = "lenient_string")]
    message: String,
    #[serde(default, deserialize_with = "lenient_string")]
    target_id: String,
    #[serde(default, deserialize_with = "lenient_string")]
    endpoint: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ConnectedIn {
    connection_id: String,
    #[serde(default, deserialize_with = "lenient_opt_string")]
    user_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_opt_string")]
    reconnection_token: Option<String>,
}

/// `null` → `false`.
fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(Option::<bool>::deserialize(d)?.unwrap_or(false))
}

/// `null` → `""`.
fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

fn lenient_opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Option::<String>::deserialize(d)
}

/// A non-negative integer (or a string of one) → `Some`; anything else → `None`.
fn lenient_tracing_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    })
}

/// `{name: [values]}`; a bare value counts as a one-element list, `null` is skipped,
/// numbers and booleans are stringified.
fn lenient_headers<'de, D: Deserializer<'de>>(d: D) -> Result<Headers, D::Error> {
    fn scalar(v: Value, out: &mut Vec<String>) {
        match v {
            Value::Null => {}
            Value::String(s) => out.push(s),
            Value::Array(items) => items.into_iter().for_each(|i| scalar(i, out)),
            other => out.push(other.to_string()),
        }
    }
    let Some(map) = Option::<serde_json::Map<String, Value>>::deserialize(d)? else {
        return Ok(Headers::new());
    };
    let mut headers = Headers::new();
    for (name, value) in map {
        let mut values = Vec::new();
        scalar(value, &mut values);
        headers.entry(name).or_default().extend(values);
    }
    Ok(headers)
}

impl TunnelMessage {
    /// The numeric `Type` of this message.
    pub fn type_code(&self) -> i64 {
        match self {
            Self::HttpRequest(_) => type_code::HTTP_REQUEST,
            Self::HttpResponse(_) => type_code::HTTP_RESPONSE,
            Self::ServiceStatus { .. } => type_code::SERVICE_STATUS,
            Self::ConnectionReconnect { .. } => type_code::CONNECTION_RECONNECT,
            Self::ConnectionClose { .. } => type_code::CONNECTION_CLOSE,
            Self::ConnectionRebalance { .. } => type_code::CONNECTION_REBALANCE,
            Self::ConnectionConnected { .. } => type_code::CONNECTION_CONNECTED,
            Self::Unknown { type_code, .. } => *type_code,
        }
    }

    /// The content element: the body of `Http*` messages, `None` for the others.
    pub fn content(&self) -> Option<&Bytes> {
        match self {
            Self::HttpRequest(r) => r.content.as_ref(),
            Self::HttpResponse(r) => r.content.as_ref(),
            _ => None,
        }
    }

    /// The JSON element (content excluded), keys in the real service's order.
    ///
    /// Non-`Http*` messages always carry `"TracingId":null`. For
    /// [`TunnelMessage::Unknown`] the stored JSON is returned verbatim.
    ///
    /// ```
    /// use portcullis_tunnel::TunnelMessage;
    /// let msg = TunnelMessage::ServiceStatus { message: "keepalive".into() };
    /// assert_eq!(msg.to_json(), r#"{"Type":5,"Message":"keepalive","TracingId":null}"#);
    /// ```
    pub fn to_json(&self) -> String {
        let r#type = self.type_code();
        let json = match self {
            Self::HttpRequest(r) => serde_json::to_string(&RequestOut {
                r#type,
                ack_id: r.ack_id,
                http_method: &r.method,
                url: &r.url,
                headers: &r.headers,
                local_routing: r.local_routing,
                channel_name: &r.channel_name,
                tracing_id: r.tracing_id,
            }),
            Self::HttpResponse(r) => serde_json::to_string(&ResponseOut {
                r#type,
                ack_id: r.ack_id,
                status_code: r.status_code,
                headers: &r.headers,
                local_routing: r.local_routing,
                channel_name: &r.channel_name,
                not_completed: r.not_completed,
                tracing_id: r.tracing_id,
            }),
            Self::ServiceStatus { message } | Self::ConnectionClose { message } => {
                serde_json::to_string(&MessageOut {
                    r#type,
                    message,
                    tracing_id: None,
                })
            }
            Self::ConnectionReconnect {
                target_id,
                endpoint,
                message,
            }
            | Self::ConnectionRebalance {
                target_id,
                endpoint,
                message,
            } => serde_json::to_string(&TargetOut {
                r#type,
                target_id,
                endpoint,
                message,
                tracing_id: None,
            }),
            Self::ConnectionConnected {
                connection_id,
                user_id,
                reconnection_token,
            } => serde_json::to_string(&ConnectedOut {
                r#type,
                connection_id,
                user_id: user_id.as_deref(),
                reconnection_token: reconnection_token.as_deref(),
                tracing_id: None,
            }),
            Self::Unknown { json, .. } => return json.clone(),
        };
        // Serialising structs of strings, integers and string maps cannot fail.
        json.unwrap_or_default()
    }

    /// Builds a message from its three frame elements.
    ///
    /// The `Type` inside the JSON is ignored: `type_code` decides. For the
    /// known types the JSON must be an object with the required fields
    /// (`AckId`, `HttpMethod`, `Url` for requests; `AckId`, `StatusCode` for
    /// responses; `ConnectionId` for `ConnectionConnected`); other fields
    /// default. For unknown types the JSON must merely be valid. `content` is
    /// dropped for non-`Http*` messages.
    pub fn from_parts(
        type_code: i64,
        json: &str,
        content: Option<Bytes>,
    ) -> Result<Self, serde_json::Error> {
        Ok(match type_code {
            type_code::HTTP_REQUEST => {
                let r: RequestIn = serde_json::from_str(json)?;
                Self::HttpRequest(HttpRequest {
                    ack_id: r.ack_id,
                    local_routing: r.local_routing,
                    channel_name: r.channel_name,
                    method: r.http_method,
                    url: r.url,
                    headers: r.headers,
                    content,
                    tracing_id: r.tracing_id,
                })
            }
            type_code::HTTP_RESPONSE => {
                let r: ResponseIn = serde_json::from_str(json)?;
                Self::HttpResponse(HttpResponse {
                    ack_id: r.ack_id,
                    local_routing: r.local_routing,
                    status_code: r.status_code,
                    channel_name: r.channel_name,
                    not_completed: r.not_completed,
                    headers: r.headers,
                    content,
                    tracing_id: r.tracing_id,
                })
            }
            type_code::CONNECTION_CONNECTED => {
                let c: ConnectedIn = serde_json::from_str(json)?;
                Self::ConnectionConnected {
                    connection_id: c.connection_id,
                    user_id: c.user_id,
                    reconnection_token: c.reconnection_token,
                }
            }
            type_code::SERVICE_STATUS
            | type_code::CONNECTION_RECONNECT
            | type_code::CONNECTION_CLOSE
            | type_code::CONNECTION_REBALANCE => {
                let o: OtherIn = serde_json::from_str(json)?;
                match type_code {
                    type_code::SERVICE_STATUS => Self::ServiceStatus { message: o.message },
                    type_code::CONNECTION_CLOSE => Self::ConnectionClose { message: o.message },
                    type_code::CONNECTION_RECONNECT => Self::ConnectionReconnect {
                        target_id: o.target_id,
                        endpoint: o.endpoint,
                        message: o.message,
                    },
                    _ => Self::ConnectionRebalance {
                        target_id: o.target_id,
                        endpoint: o.endpoint,
                        message: o.message,
                    },
                }
            }
            other => {
                serde_json::from_str::<serde::de::IgnoredAny>(json)?;
                Self::Unknown {
                    type_code: other,
                    json: json.to_owned(),
                }
            }
        })
    }
}

impl From<HttpRequest> for TunnelMessage {
    fn from(r: HttpRequest) -> Self {
        Self::HttpRequest(r)
    }
}

impl From<HttpResponse> for TunnelMessage {
    fn from(r: HttpResponse) -> Self {
        Self::HttpResponse(r)
    }
}
