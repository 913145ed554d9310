//! Label values and sets: fixed vocabularies (`&'static str`), so no
//! label value ever comes from a client.

use std::fmt::Write as _;

use portcullis_hub::DisconnectReason;
use portcullis_tunnel::rest::RestCall;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};

/// The hub label of handshake refusals for a hub that does not exist (no
/// application server ever attached): not a valid hub name, so it cannot
/// collide with one.
pub const UNKNOWN_HUB: &str = "(unknown)";

/// Why the gateway refused a handshake (the `reason` label of
/// `portcullis_handshake_refusals_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalReason {
    /// No token, on a hub that does not allow anonymous clients.
    MissingToken,
    /// The token is past its `exp`.
    ExpiredToken,
    /// The token's audience names another hub or endpoint.
    WrongAudience,
    /// The token is longer than `--max-token-bytes`.
    TokenTooLarge,
    /// Any other bad token: malformed, wrong algorithm or signature, no
    /// expiry or audience, not yet valid.
    InvalidToken,
    /// The token was revoked (by its `jti` or with its user's tokens).
    RevokedToken,
    /// Not a well-formed Engine.IO handshake (transport, `EIO`, method).
    BadRequest,
    /// No application server is attached to the hub.
    NoApplication,
    /// `--max-connections` reached.
    ConnectionLimit,
    /// `--max-pending-handshakes` reached.
    PendingLimit,
    /// `--max-connections-per-user` reached.
    UserLimit,
    /// `--max-connections-per-address` reached.
    AddressLimit,
    /// The application server refused the client.
    ApplicationRefused,
    /// The application server did not answer within `--connect-timeout-ms`.
    ApplicationTimeout,
    /// Something failed inside the gateway.
    Internal,
}

impl RefusalReason {
    /// Every reason, in label order.
    pub const ALL: [RefusalReason; 15] = [
        RefusalReason::MissingToken,
        RefusalReason::ExpiredToken,
        RefusalReason::WrongAudience,
        RefusalReason::TokenTooLarge,
        RefusalReason::InvalidToken,
        RefusalReason::RevokedToken,
        RefusalReason::BadRequest,
        RefusalReason::NoApplication,
        RefusalReason::ConnectionLimit,
        RefusalReason::PendingLimit,
        RefusalReason::UserLimit,
        RefusalReason::AddressLimit,
        RefusalReason::ApplicationRefused,
        RefusalReason::ApplicationTimeout,
        RefusalReason::Internal,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::MissingToken => "missing_token",
            RefusalReason::ExpiredToken => "expired_token",
            RefusalReason::WrongAudience => "wrong_audience",
            RefusalReason::TokenTooLarge => "token_too_large",
            RefusalReason::InvalidToken => "invalid_token",
            RefusalReason::RevokedToken => "revoked_token",
            RefusalReason::BadRequest => "bad_request",
            RefusalReason::NoApplication => "no_application",
            RefusalReason::ConnectionLimit => "connection_limit",
            RefusalReason::PendingLimit => "pending_limit",
            RefusalReason::UserLimit => "user_limit",
            RefusalReason::AddressLimit => "address_limit",
            RefusalReason::ApplicationRefused => "application_refused",
            RefusalReason::ApplicationTimeout => "application_timeout",
            RefusalReason::Internal => "internal",
        }
    }

    /// The reason of a token the gate refused.
    pub fn of_token_error(error: &portcullis_auth::TokenError) -> Self {
        use portcullis_auth::TokenError as E;
        match error {
            E::Missing => RefusalReason::MissingToken,
            E::Expired => RefusalReason::ExpiredToken,
            E::WrongAudience { .. } => RefusalReason::WrongAudience,
            E::TooLarge { .. } => RefusalReason::TokenTooLarge,
            _ => RefusalReason::InvalidToken,
        }
    }

    pub(super) fn index(self) -> usize {
        self as usize
    }
}

/// The `reason` label of `portcullis_disconnections_total`.
pub(super) fn disconnect_label(reason: &DisconnectReason) -> usize {
    match reason {
        DisconnectReason::ClientClosed => 0,
        DisconnectReason::TransportClosed => 1,
        DisconnectReason::PingTimeout => 2,
        DisconnectReason::ServerClosed(_) => 3,
        DisconnectReason::ProtocolError(_) => 4,
        DisconnectReason::PayloadTooLarge => 5,
        DisconnectReason::SlowClient => 6,
        DisconnectReason::Shutdown => 7,
        DisconnectReason::TokenExpired => 8,
        DisconnectReason::TokenRevoked => 9,
    }
}

pub(super) const DISCONNECT_LABELS: [&str; 10] = [
    "client_closed",
    "transport_closed",
    "ping_timeout",
    "server_closed",
    "protocol_error",
    "payload_too_large",
    "slow_client",
    "shutdown",
    "token_expired",
    "token_revoked",
];

/// The `operation` label of `portcullis_rest_requests_total`.
pub(crate) fn rest_operation(call: &RestCall) -> &'static str {
    match call {
        RestCall::SendToConnection { .. } => "send_to_connection",
        RestCall::SendToAll { .. } => "send_to_all",
        RestCall::SendToGroup { .. } => "send_to_group",
        RestCall::SendToUser { .. } => "send_to_user",
        RestCall::AddToGroups { .. } => "add_to_groups",
        RestCall::RemoveFromGroups { .. } => "remove_from_groups",
        RestCall::AddConnectionToGroup { .. } => "add_connection_to_group",
        RestCall::RemoveConnectionFromGroup { .. } => "remove_connection_from_group",
        RestCall::RemoveConnectionFromAllGroups { .. } => "remove_connection_from_all_groups",
        RestCall::AddUserToGroup { .. } => "add_user_to_group",
        RestCall::RemoveUserFromGroup { .. } => "remove_user_from_group",
        RestCall::RemoveUserFromAllGroups { .. } => "remove_user_from_all_groups",
        RestCall::Invoke { .. } => "invoke",
        RestCall::CloseConnection { .. } => "close_connection",
        RestCall::ConnectionExists { .. } => "connection_exists",
        RestCall::GroupExists { .. } => "group_exists",
        RestCall::UserExists { .. } => "user_exists",
        RestCall::CloseAll { .. } => "close_all",
        RestCall::CloseGroup { .. } => "close_group",
        RestCall::CloseUser { .. } => "close_user",
        RestCall::RevokeToken { .. } => "revoke_token",
        RestCall::RevokeUserTokens { .. } => "revoke_user_tokens",
    }
}

/// The `operation` label of a REST request that did not parse.
pub(crate) const REST_INVALID: &str = "invalid";

/// A label value from a fixed set of `&'static str`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Static(pub(super) &'static str);

impl EncodeLabelValue for Static {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct HubLabels {
    pub(super) hub: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct HubTransportLabels {
    pub(super) hub: String,
    pub(super) transport: Static,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct HubOutcomeLabels {
    pub(super) hub: String,
    pub(super) outcome: Static,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct HubReasonLabels {
    pub(super) hub: String,
    pub(super) reason: Static,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct HubEventLabels {
    pub(super) hub: String,
    pub(super) event: Static,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct RestLabels {
    pub(super) operation: Static,
    pub(super) status: u16,
}
