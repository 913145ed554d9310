//! Error replies in engine.io's shape: an HTTP status and a JSON body
//! `{"code":N,"message":"…"}` whose message says what to do.

use std::borrow::Cow;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

use crate::metrics::RefusalReason;

/// engine.io's error codes, which clients and tools already know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// 0: the `transport` query parameter is missing or unknown.
    UnknownTransport = 0,
    /// 1: the `sid` names no live session of this hub.
    UnknownSid = 1,
    /// 2: a handshake that is not a GET.
    BadHandshakeMethod = 2,
    /// 3: anything else the request got wrong.
    BadRequest = 3,
    /// 4: refused: no valid token, or the application refused.
    Forbidden = 4,
    /// 5: `EIO` is not 4.
    UnsupportedProtocolVersion = 5,
}

/// An error reply of the client endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineError {
    /// HTTP status.
    pub status: StatusCode,
    /// engine.io error code.
    pub code: ErrorCode,
    /// Human-readable message.
    pub message: Cow<'static, str>,
    /// Why a handshake was refused, for the metrics (not sent).
    reason: Option<RefusalReason>,
}

impl EngineError {
    /// An error with the given parts.
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        EngineError {
            status,
            code,
            message: message.into(),
            reason: None,
        }
    }

    /// The same error, counted under `reason` if it refuses a handshake.
    pub(crate) fn with_reason(mut self, reason: RefusalReason) -> Self {
        self.reason = Some(reason);
        self
    }

    /// Why the handshake was refused, as the metrics count it.
    pub(crate) fn refusal_reason(&self) -> RefusalReason {
        self.reason.unwrap_or(match self.code {
            ErrorCode::Forbidden => RefusalReason::ApplicationRefused,
            _ => RefusalReason::BadRequest,
        })
    }

    /// `400`, code 0.
    pub fn unknown_transport() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::UnknownTransport,
            "Transport unknown: use transport=polling or transport=websocket",
        )
    }

    /// `400`, code 1.
    pub fn unknown_sid() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::UnknownSid,
            "Session ID unknown: the session ended or belongs to another hub; open a new one",
        )
    }

    /// `400`, code 3.
    pub fn bad_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, message)
    }

    /// `401`, code 4.
    pub fn unauthorized(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, ErrorCode::Forbidden, message)
    }
}

#[derive(serde::Serialize)]
struct ErrorBody<'a> {
    code: u8,
    message: &'a str,
}

impl IntoResponse for EngineError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            code: self.code as u8,
            message: &self.message,
        };
        let body = serde_json::to_string(&body).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}
