//! Errors of sends, acknowledgements and attachment.

/// Why an emit could not be sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The socket is not connected (any more), or was refused.
    #[error("the socket is not connected")]
    Disconnected,
    /// The data could not be serialized to JSON.
    #[error("the data could not be serialized: {0}")]
    Serialize(#[from] serde_json::Error),
    /// The [`SocketIo`](crate::SocketIo) is not attached to a gateway yet.
    #[error("the Socket.IO server is not attached to a gateway")]
    NotAttached,
}

/// Why an acknowledgement did not arrive.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AckError {
    /// The client did not answer in time.
    #[error("the client did not acknowledge in time")]
    Timeout,
    /// The socket disconnected before answering.
    #[error("the socket disconnected before acknowledging")]
    Disconnected,
    /// The answer did not deserialize into the requested type.
    #[error("the acknowledgement could not be deserialized: {0}")]
    Decode(#[source] serde_json::Error),
    /// The event could not be sent.
    #[error(transparent)]
    Send(#[from] SendError),
}

/// Why a token revocation did not take effect.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RevokeError {
    /// The [`SocketIo`](crate::SocketIo) is not attached to a gateway yet.
    #[error("the Socket.IO server is not attached to a gateway")]
    NotAttached,
    /// The gateway did not record it: its revocation list for the hub is
    /// full (connections holding the tokens were still closed), or the
    /// tunnel was lost before it answered. Retry, or raise the gateway's
    /// `--max-revocations`.
    #[error(
        "the gateway did not record the revocation (revocation list full, or the tunnel was lost); retry"
    )]
    NotRecorded,
}

/// Why [`SocketIo::attach`](crate::SocketIo::attach) failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttachError {
    /// The hub name is not 1–128 ASCII letters, digits, `_`, `-` or `.`.
    #[error("invalid hub name {0:?}: use 1 to 128 ASCII letters, digits, '_', '-' or '.'")]
    InvalidHubName(String),
    /// This `SocketIo` is already attached to a hub.
    #[error("this Socket.IO server is already attached to hub {0:?}")]
    AlreadyAttached(String),
}
