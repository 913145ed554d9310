//! The Web PubSub REST calls the SDK sends through the tunnel (and, later,
//! over plain HTTP): one type, [`RestCall`], routed from a method and URL by
//! [`parse_rest`] and built back into them by [`RestCall::method`] and
//! [`RestCall::path_and_query`].
//!
//! The SDK's `Url` is `https://host` + path + `?api-version=…[&filter=…]`.
//! Query values are `application/x-www-form-urlencoded` (`+` is a space);
//! path segments are not encoded by the SDK (its names never need it), but
//! percent-escapes in them are decoded, and the builder escapes what must be. `api-version` and unknown query
//! parameters are ignored.
//!
//! ```
//! use portcullis_tunnel::rest::{RestCall, parse_rest};
//!
//! let call = parse_rest(
//!     "POST",
//!     "https://host/api/hubs/eio_hub/:send?api-version=2023-07-01&filter=%270%7ELw%7E%27+in+groups",
//! )
//! .unwrap();
//! assert_eq!(
//!     call,
//!     RestCall::SendToAll { hub: "eio_hub".into(), filter: Some("'0~Lw~' in groups".into()) }
//! );
//! assert!(parse_rest("GET", "/api/hubs/h/nothing").is_err());
//! ```

use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};
use serde::{Deserialize, Serialize};

/// One REST operation, with its path and query parameters decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestCall {
    /// `POST /api/hubs/{hub}/connections/{connectionId}/:send` → 202.
    SendToConnection {
        /// Hub.
        hub: String,
        /// Target connection.
        connection_id: String,
    },
    /// `POST /api/hubs/{hub}/:send[?filter=]` → 202.
    SendToAll {
        /// Hub.
        hub: String,
        /// OData filter.
        filter: Option<String>,
    },
    /// `POST /api/hubs/{hub}/groups/{group}/:send[?filter=]` → 202.
    SendToGroup {
        /// Hub.
        hub: String,
        /// Target group.
        group: String,
        /// OData filter.
        filter: Option<String>,
    },
    /// `POST /api/hubs/{hub}/users/{userId}/:send[?filter=]` → 202.
    SendToUser {
        /// Hub.
        hub: String,
        /// Target user.
        user_id: String,
        /// OData filter.
        filter: Option<String>,
    },
    /// `POST /api/hubs/{hub}/:addToGroups` with a [`GroupsBody`] → 200.
    AddToGroups {
        /// Hub.
        hub: String,
    },
    /// `POST /api/hubs/{hub}/:removeFromGroups` with a [`GroupsBody`] → 200.
    RemoveFromGroups {
        /// Hub.
        hub: String,
    },
    /// `PUT /api/hubs/{hub}/groups/{group}/connections/{connectionId}` → 200.
    AddConnectionToGroup {
        /// Hub.
        hub: String,
        /// Group.
        group: String,
        /// Connection.
        connection_id: String,
    },
    /// `DELETE /api/hubs/{hub}/groups/{group}/connections/{connectionId}` → 200 or 204.
    RemoveConnectionFromGroup {
        /// Hub.
        hub: String,
        /// Group.
        group: String,
        /// Connection.
        connection_id: String,
    },
    /// `DELETE /api/hubs/{hub}/connections/{connectionId}/groups` → 200.
    RemoveConnectionFromAllGroups {
        /// Hub.
        hub: String,
        /// Connection.
        connection_id: String,
    },
    /// `PUT /api/hubs/{hub}/users/{userId}/groups/{group}` → 200.
    AddUserToGroup {
        /// Hub.
        hub: String,
        /// User.
        user_id: String,
        /// Group.
        group: String,
    },
    /// `DELETE /api/hubs/{hub}/users/{userId}/groups/{group}` → 200.
    RemoveUserFromGroup {
        /// Hub.
        hub: String,
        /// User.
        user_id: String,
        /// Group.
        group: String,
    },
    /// `DELETE /api/hubs/{hub}/users/{userId}/groups` → 200.
    RemoveUserFromAllGroups {
        /// Hub.
        hub: String,
        /// User.
        user_id: String,
    },
    /// `POST /api/hubs/{hub}/:invoke[?filter=]` → 200, streamed.
    Invoke {
        /// Hub.
        hub: String,
        /// OData filter.
        filter: Option<String>,
    },
    /// `DELETE /api/hubs/{hub}/connections/{connectionId}[?reason=]` → 200.
    CloseConnection {
        /// Hub.
        hub: String,
        /// Connection.
        connection_id: String,
        /// Close reason.
        reason: Option<String>,
    },
    /// `HEAD /api/hubs/{hub}/connections/{connectionId}` → 200 or 404.
    ConnectionExists {
        /// Hub.
        hub: String,
        /// Connection.
        connection_id: String,
    },
    /// `HEAD /api/hubs/{hub}/groups/{group}` → 200 or 404.
    GroupExists {
        /// Hub.
        hub: String,
        /// Group.
        group: String,
    },
    /// `HEAD /api/hubs/{hub}/users/{userId}` → 200 or 404.
    UserExists {
        /// Hub.
        hub: String,
        /// User.
        user: String,
    },
    /// `POST /api/hubs/{hub}/:closeConnections[?excluded=…&reason=]` → 204.
    CloseAll {
        /// Hub.
        hub: String,
        /// Connections to spare (`excluded`, repeatable).
        excluded: Vec<String>,
        /// Close reason.
        reason: Option<String>,
    },
    /// `POST /api/hubs/{hub}/groups/{group}/:closeConnections[?excluded=…&reason=]` → 204.
    CloseGroup {
        /// Hub.
        hub: String,
        /// Group.
        group: String,
        /// Connections to spare.
        excluded: Vec<String>,
        /// Close reason.
        reason: Option<String>,
    },
    /// `POST /api/hubs/{hub}/users/{userId}/:closeConnections[?excluded=…&reason=]` → 204.
    CloseUser {
        /// Hub.
        hub: String,
        /// User.
        user_id: String,
        /// Connections to spare.
        excluded: Vec<String>,
        /// Close reason.
        reason: Option<String>,
    },
    /// `POST /api/hubs/{hub}/tokens/{jti}/:revoke[?expiresAt=]` → 200
    /// (a Portcullis extension: revokes one token by its `jti`).
    RevokeToken {
        /// Hub.
        hub: String,
        /// The token's `jti`.
        token_id: String,
        /// When the token expires (unix seconds), if the caller knows.
        expires_at: Option<u64>,
    },
    /// `POST /api/hubs/{hub}/users/{userId}/tokens/:revoke[?issuedBefore=]` → 200
    /// (a Portcullis extension: revokes every token of a user issued before
    /// a time, by default every token issued up to now, this second included).
    RevokeUserTokens {
        /// Hub.
        hub: String,
        /// User.
        user_id: String,
        /// Tokens with `iat` before this (unix seconds) are revoked.
        issued_before: Option<u64>,
    },
}

impl RestCall {
    /// The hub the call addresses.
    pub fn hub(&self) -> &str {
        match self {
            Self::SendToConnection { hub, .. }
            | Self::SendToAll { hub, .. }
            | Self::SendToGroup { hub, .. }
            | Self::SendToUser { hub, .. }
            | Self::AddToGroups { hub }
            | Self::RemoveFromGroups { hub }
            | Self::AddConnectionToGroup { hub, .. }
            | Self::RemoveConnectionFromGroup { hub, .. }
            | Self::RemoveConnectionFromAllGroups { hub, .. }
            | Self::AddUserToGroup { hub, .. }
            | Self::RemoveUserFromGroup { hub, .. }
            | Self::RemoveUserFromAllGroups { hub, .. }
            | Self::Invoke { hub, .. }
            | Self::CloseConnection { hub, .. }
            | Self::ConnectionExists { hub, .. }
            | Self::GroupExists { hub, .. }
            | Self::UserExists { hub, .. }
            | Self::CloseAll { hub, .. }
            | Self::CloseGroup { hub, .. }
            | Self::CloseUser { hub, .. }
            | Self::RevokeToken { hub, .. }
            | Self::RevokeUserTokens { hub, .. } => hub,
        }
    }
}

/// The `api-version` the SDK puts on every call (the router ignores it).
pub const API_VERSION: &str = "2023-07-01";

/// What a path segment escapes: the URL path-segment set (controls, space,
/// `"#<>?`{}/` and non-ASCII) plus `%`, because [`parse_rest`] decodes every
/// `%XX`. `~`, `-`, `_`, `.` and the base64url letters of group names stay
/// as they are, as in the SDK's URLs.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'`')
    .add(b'?')
    .add(b'{')
    .add(b'}')
    .add(b'/')
    .add(b'%');

impl RestCall {
    /// The HTTP method of the call.
    pub fn method(&self) -> &'static str {
        match self {
            Self::SendToConnection { .. }
            | Self::SendToAll { .. }
            | Self::SendToGroup { .. }
            | Self::SendToUser { .. }
            | Self::AddToGroups { .. }
            | Self::RemoveFromGroups { .. }
            | Self::Invoke { .. }
            | Self::CloseAll { .. }
            | Self::CloseGroup { .. }
            | Self::CloseUser { .. }
            | Self::RevokeToken { .. }
            | Self::RevokeUserTokens { .. } => "POST",
            Self::AddConnectionToGroup { .. } | Self::AddUserToGroup { .. } => "PUT",
            Self::RemoveConnectionFromGroup { .. }
            | Self::RemoveConnectionFromAllGroups { .. }
            | Self::RemoveUserFromGroup { .. }
            | Self::RemoveUserFromAllGroups { .. }
            | Self::CloseConnection { .. } => "DELETE",
            Self::ConnectionExists { .. } | Self::GroupExists { .. } | Self::UserExists { .. } => {
                "HEAD"
            }
        }
    }

    /// The path and query of the call as the SDK writes them:
    /// `/api/hubs/{hub}/…?api-version=2023-07-01` then `filter`, `excluded`
    /// (once per id) and `reason` where the call has them.
    ///
    /// Path segments are percent-encoded (see [`parse_rest`]), query values
    /// form-encoded, so [`parse_rest`] with [`RestCall::method`] gives back
    /// the same call whenever every segment (hub, ids, group) is non-empty.
    ///
    /// ```
    /// use portcullis_tunnel::rest::{RestCall, parse_rest};
    ///
    /// let call = RestCall::SendToGroup {
    ///     hub: "eio_hub".into(),
    ///     group: "0~Lw~cm9vbTE".into(),
    ///     filter: Some("not ('0~Lw~cm9vbTI' in groups)".into()),
    /// };
    /// let path = call.path_and_query();
    /// assert_eq!(
    ///     path,
    ///     "/api/hubs/eio_hub/groups/0~Lw~cm9vbTE/:send?api-version=2023-07-01&filter=not+%28%270%7ELw%7Ecm9vbTI%27+in+groups%29"
    /// );
    /// assert_eq!(parse_rest(call.method(), &path), Ok(call));
    /// ```
    pub fn path_and_query(&self) -> String {
        let mut out = String::from("/api/hubs/");
        out.extend(utf8_percent_encode(self.hub(), SEGMENT));
        // The literal segments (`groups`, `:send`, …) have nothing to escape.
        let mut push = |segment: &str| {
            out.push('/');
            out.extend(utf8_percent_encode(segment, SEGMENT));
        };
        let (mut filter, mut reason, mut excluded) = (None, None, &[][..]);
        let mut times: Option<(&str, u64)> = None;
        match self {
            Self::SendToConnection { connection_id, .. } => {
                push("connections");
                push(connection_id);
                push(":send");
            }
            Self::SendToAll { filter: f, .. } => {
                push(":send");
                filter = f.as_deref();
            }
            Self::SendToGroup {
                group, filter: f, ..
            } => {
                push("groups");
                push(group);
                push(":send");
                filter = f.as_deref();
            }
            Self::SendToUser {
                user_id, filter: f, ..
            } => {
                push("users");
                push(user_id);
                push(":send");
                filter = f.as_deref();
            }
            Self::AddToGroups { .. } => push(":addToGroups"),
            Self::RemoveFromGroups { .. } => push(":removeFromGroups"),
            Self::AddConnectionToGroup {
                group,
                connection_id,
                ..
            }
            | Self::RemoveConnectionFromGroup {
                group,
                connection_id,
                ..
            } => {
                push("groups");
                push(group);
                push("connections");
                push(connection_id);
            }
            Self::RemoveConnectionFromAllGroups { connection_id, .. } => {
                push("connections");
                push(connection_id);
                push("groups");
            }
            Self::AddUserToGroup { user_id, group, .. }
            | Self::RemoveUserFromGroup { user_id, group, .. } => {
                push("users");
                push(user_id);
                push("groups");
                push(group);
            }
            Self::RemoveUserFromAllGroups { user_id, .. } => {
                push("users");
                push(user_id);
                push("groups");
            }
            Self::Invoke { filter: f, .. } => {
                push(":invoke");
                filter = f.as_deref();
            }
            Self::CloseConnection {
                connection_id,
                reason: r,
                ..
            } => {
                push("connections");
                push(connection_id);
                reason = r.as_deref();
            }
            Self::ConnectionExists { connection_id, .. } => {
                push("connections");
                push(connection_id);
            }
            Self::GroupExists { group, .. } => {
                push("groups");
                push(group);
            }
            Self::UserExists { user, .. } => {
                push("users");
                push(user);
            }
            Self::CloseAll {
                excluded: e,
                reason: r,
                ..
            } => {
                push(":closeConnections");
                (excluded, reason) = (e.as_slice(), r.as_deref());
            }
            Self::CloseGroup {
                group,
                excluded: e,
                reason: r,
                ..
            } => {
                push("groups");
                push(group);
                push(":closeConnections");
                (excluded, reason) = (e.as_slice(), r.as_deref());
            }
            Self::CloseUser {
                user_id,
                excluded: e,
                reason: r,
                ..
            } => {
                push("users");
                push(user_id);
                push(":closeConnections");
                (excluded, reason) = (e.as_slice(), r.as_deref());
            }
            Self::RevokeToken {
                token_id,
                expires_at,
                ..
            } => {
                push("tokens");
                push(token_id);
                push(":revoke");
                times = expires_at.map(|t| ("expiresAt", t));
            }
            Self::RevokeUserTokens {
                user_id,
                issued_before,
                ..
            } => {
                push("users");
                push(user_id);
                push("tokens");
                push(":revoke");
                times = issued_before.map(|t| ("issuedBefore", t));
            }
        }
        out.push('?');
        let start = out.len();
        let mut query = form_urlencoded::Serializer::for_suffix(out, start);
        query.append_pair("api-version", API_VERSION);
        if let Some(filter) = filter {
            query.append_pair("filter", filter);
        }
        for id in excluded {
            query.append_pair("excluded", id);
        }
        if let Some(reason) = reason {
            query.append_pair("reason", reason);
        }
        if let Some((name, time)) = times {
            query.append_pair(name, &time.to_string());
        }
        query.finish()
    }
}

/// Why a REST request could not be routed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestError {
    /// No route for this path (HTTP 404).
    #[error("not found: {0}")]
    NotFound(String),
    /// The path exists but not for this method (HTTP 405).
    #[error("method {method} not allowed for {path}")]
    MethodNotAllowed {
        /// The method given.
        method: String,
        /// The path given.
        path: String,
    },
    /// The URL or a body is malformed (HTTP 400).
    #[error("bad request: {0}")]
    BadRequest(String),
}

impl RestError {
    /// The HTTP status to answer with: 404, 405 or 400.
    pub fn status_code(&self) -> u16 {
        match self {
            Self::NotFound(_) => 404,
            Self::MethodNotAllowed { .. } => 405,
            Self::BadRequest(_) => 400,
        }
    }
}

/// The JSON body of `:addToGroups` / `:removeFromGroups`:
/// `{"groups":[…],"filter":"…"}`.
///
/// ```
/// use portcullis_tunnel::rest::GroupsBody;
/// let body = GroupsBody::from_json(
///     br#"{"groups":["0~Lw~cm9vbTE"],"filter":"connectionId eq 'conn-abc123'"}"#,
/// )
/// .unwrap();
/// assert_eq!(body.groups, vec!["0~Lw~cm9vbTE"]);
/// assert_eq!(body.effective_filter(), Some("connectionId eq 'conn-abc123'"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GroupsBody {
    /// Group names.
    #[serde(default)]
    pub groups: Vec<String>,
    /// OData filter selecting the connections; missing or empty means all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
}

impl GroupsBody {
    /// Parses the JSON body; unknown keys are ignored.
    pub fn from_json(body: &[u8]) -> Result<Self, RestError> {
        serde_json::from_slice(body)
            .map_err(|e| RestError::BadRequest(format!("invalid groups body: {e}")))
    }

    /// The filter, or `None` when it is missing or blank (all connections).
    pub fn effective_filter(&self) -> Option<&str> {
        self.filter.as_deref().filter(|f| !f.trim().is_empty())
    }
}

#[derive(Default)]
struct Query {
    filter: Option<String>,
    reason: Option<String>,
    excluded: Vec<String>,
    expires_at: Option<String>,
    issued_before: Option<String>,
}

/// A unix time in seconds from a query parameter.
fn unix_seconds(name: &str, value: Option<String>) -> Result<Option<u64>, RestError> {
    value
        .map(|text| {
            text.parse::<u64>().map_err(|_| {
                RestError::BadRequest(format!(
                    "{name} must be a unix time in whole seconds, not {text:?}"
                ))
            })
        })
        .transpose()
}

fn parse_query(query: &str) -> Query {
    let mut q = Query::default();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "expiresAt" if q.expires_at.is_none() => q.expires_at = Some(value.into_owned()),
            "issuedBefore" if q.issued_before.is_none() => {
                q.issued_before = Some(value.into_owned())
            }
            "filter" if q.filter.is_none() => q.filter = Some(value.into_owned()),
            "reason" if q.reason.is_none() => q.reason = Some(value.into_owned()),
            "excluded" => q.excluded.push(value.into_owned()),
            _ => {}
        }
    }
    q
}

/// Routes a REST request from its method and URL.
///
/// `path_and_query_or_url` may be absolute (`https://host/api/hubs/…`, any
/// scheme and host) or a path with an optional query (`/api/hubs/…?…`).
/// Methods are matched case-insensitively. A fragment is ignored.
///
/// ```
/// use portcullis_tunnel::rest::{RestCall, parse_rest};
///
/// assert_eq!(
///     parse_rest(
///         "DELETE",
///         "/api/hubs/eio_hub/groups/0~Lw~cm9vbTE/connections/conn-abc123?api-version=2023-07-01"
///     ),
///     Ok(RestCall::RemoveConnectionFromGroup {
///         hub: "eio_hub".into(),
///         group: "0~Lw~cm9vbTE".into(),
///         connection_id: "conn-abc123".into(),
///     })
/// );
/// ```
pub fn parse_rest(method: &str, path_and_query_or_url: &str) -> Result<RestCall, RestError> {
    let mut target = path_and_query_or_url;
    if let Some(i) = target.find('#') {
        target = &target[..i];
    }
    if let Some(scheme_end) = target.find("://") {
        let after = &target[scheme_end + 3..];
        target = after.find(['/', '?']).map_or("", |i| &after[i..]);
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let query = parse_query(query);

    let raw_segments: Vec<&str> = path.split('/').skip(1).collect();
    if !path.starts_with('/') {
        return Err(RestError::NotFound(format!(
            "path {path:?} does not start with /api/hubs/"
        )));
    }
    let mut segments = Vec::with_capacity(raw_segments.len());
    for raw in &raw_segments {
        let decoded = percent_decode_str(raw).decode_utf8().map_err(|_| {
            RestError::BadRequest(format!("path segment {raw:?} is not valid UTF-8"))
        })?;
        if decoded.is_empty() {
            return Err(RestError::NotFound(format!(
                "empty segment in path {path:?}"
            )));
        }
        segments.push(decoded.into_owned());
    }
    let not_found = || RestError::NotFound(format!("no REST route for path {path:?}"));
    let [api, hubs, hub, rest @ ..] = segments.as_slice() else {
        return Err(not_found());
    };
    if api != "api" || hubs != "hubs" {
        return Err(not_found());
    }
    let hub = hub.clone();
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    let method = method.to_ascii_uppercase();

    // Find the route and the method it needs, then check the method.
    let (allowed, call): (&str, RestCall) = match rest.as_slice() {
        [":send"] => (
            "POST",
            RestCall::SendToAll {
                hub,
                filter: query.filter,
            },
        ),
        [":addToGroups"] => ("POST", RestCall::AddToGroups { hub }),
        [":removeFromGroups"] => ("POST", RestCall::RemoveFromGroups { hub }),
        [":invoke"] => (
            "POST",
            RestCall::Invoke {
                hub,
                filter: query.filter,
            },
        ),
        [":closeConnections"] => (
            "POST",
            RestCall::CloseAll {
                hub,
                excluded: query.excluded,
                reason: query.reason,
            },
        ),
        ["connections", id] => {
            let connection_id = (*id).to_owned();
            match method.as_str() {
                "HEAD" => ("HEAD", RestCall::ConnectionExists { hub, connection_id }),
                _ => (
                    "DELETE",
                    RestCall::CloseConnection {
                        hub,
                        connection_id,
                        reason: query.reason,
                    },
                ),
            }
        }
        ["connections", id, ":send"] => (
            "POST",
            RestCall::SendToConnection {
                hub,
                connection_id: (*id).to_owned(),
            },
        ),
        ["connections", id, "groups"] => (
            "DELETE",
            RestCall::RemoveConnectionFromAllGroups {
                hub,
                connection_id: (*id).to_owned(),
            },
        ),
        ["groups", group] => (
            "HEAD",
            RestCall::GroupExists {
                hub,
                group: (*group).to_owned(),
            },
        ),
        ["groups", group, ":send"] => (
            "POST",
            RestCall::SendToGroup {
                hub,
                group: (*group).to_owned(),
                filter: query.filter,
            },
        ),
        ["groups", group, ":closeConnections"] => (
            "POST",
            RestCall::CloseGroup {
                hub,
                group: (*group).to_owned(),
                excluded: query.excluded,
                reason: query.reason,
            },
        ),
        ["groups", group, "connections", id] => {
            let (group, connection_id) = ((*group).to_owned(), (*id).to_owned());
            match method.as_str() {
                "PUT" => (
                    "PUT",
                    RestCall::AddConnectionToGroup {
                        hub,
                        group,
                        connection_id,
                    },
                ),
                _ => (
                    "DELETE",
                    RestCall::RemoveConnectionFromGroup {
                        hub,
                        group,
                        connection_id,
                    },
                ),
            }
        }
        ["users", user] => (
            "HEAD",
            RestCall::UserExists {
                hub,
                user: (*user).to_owned(),
            },
        ),
        ["users", user, ":send"] => (
            "POST",
            RestCall::SendToUser {
                hub,
                user_id: (*user).to_owned(),
                filter: query.filter,
            },
        ),
        ["users", user, ":closeConnections"] => (
            "POST",
            RestCall::CloseUser {
                hub,
                user_id: (*user).to_owned(),
                excluded: query.excluded,
                reason: query.reason,
            },
        ),
        ["tokens", id, ":revoke"] => (
            "POST",
            RestCall::RevokeToken {
                hub,
                token_id: (*id).to_owned(),
                expires_at: unix_seconds("expiresAt", query.expires_at)?,
            },
        ),
        ["users", user, "tokens", ":revoke"] => (
            "POST",
            RestCall::RevokeUserTokens {
                hub,
                user_id: (*user).to_owned(),
                issued_before: unix_seconds("issuedBefore", query.issued_before)?,
            },
        ),
        ["users", user, "groups"] => (
            "DELETE",
            RestCall::RemoveUserFromAllGroups {
                hub,
                user_id: (*user).to_owned(),
            },
        ),
        ["users", user, "groups", group] => {
            let (user_id, group) = ((*user).to_owned(), (*group).to_owned());
            match method.as_str() {
                "PUT" => (
                    "PUT",
                    RestCall::AddUserToGroup {
                        hub,
                        user_id,
                        group,
                    },
                ),
                _ => (
                    "DELETE",
                    RestCall::RemoveUserFromGroup {
                        hub,
                        user_id,
                        group,
                    },
                ),
            }
        }
        _ => return Err(not_found()),
    };
    if method != allowed {
        return Err(RestError::MethodNotAllowed {
            method,
            path: path.to_owned(),
        });
    }
    Ok(call)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(method: &str, url: &str) -> RestCall {
        parse_rest(method, url).unwrap_or_else(|e| panic!("{method} {url}: {e}"))
    }

    #[test]
    fn revocations() {
        assert_eq!(
            ok(
                "POST",
                "/api/hubs/chat/tokens/abc/:revoke?expiresAt=1800000000"
            ),
            RestCall::RevokeToken {
                hub: "chat".into(),
                token_id: "abc".into(),
                expires_at: Some(1_800_000_000),
            }
        );
        assert_eq!(
            ok("POST", "/api/hubs/chat/users/bob/tokens/:revoke"),
            RestCall::RevokeUserTokens {
                hub: "chat".into(),
                user_id: "bob".into(),
                issued_before: None,
            }
        );
        assert_eq!(
            parse_rest(
                "POST",
                "/api/hubs/chat/users/bob/tokens/:revoke?issuedBefore=soon"
            )
            .unwrap_err()
            .status_code(),
            400
        );
        assert_eq!(
            parse_rest("GET", "/api/hubs/chat/tokens/abc/:revoke")
                .unwrap_err()
                .status_code(),
            405
        );
    }

    #[test]
    fn captured_sdk_calls() {
        let h = || "eio_hub".to_owned();
        assert_eq!(
            ok(
                "POST",
                "https://host/api/hubs/eio_hub/connections/conn-abc123/:send?api-version=2023-07-01"
            ),
            RestCall::SendToConnection {
                hub: h(),
                connection_id: "conn-abc123".into()
            }
        );
        assert_eq!(
            ok(
                "POST",
                "https://host/api/hubs/eio_hub/groups/0~Lw~cm9vbTE/:send?api-version=2023-07-01&filter=not+%28%270%7ELw%7Ecm9vbTI%27+in+groups%29"
            ),
            RestCall::SendToGroup {
                hub: h(),
                group: "0~Lw~cm9vbTE".into(),
                filter: Some("not ('0~Lw~cm9vbTI' in groups)".into())
            }
        );
        assert_eq!(
            ok(
                "POST",
                "https://host/api/hubs/eio_hub/groups/0~L2NoYXQ~cg/:send?api-version=2023-07-01"
            ),
            RestCall::SendToGroup {
                hub: h(),
                group: "0~L2NoYXQ~cg".into(),
                filter: None
            }
        );
        assert_eq!(
            ok(
                "POST",
                "https://host/api/hubs/eio_hub/:addToGroups?api-version=2023-07-01"
            ),
            RestCall::AddToGroups { hub: h() }
        );
        assert_eq!(
            ok(
                "POST",
                "https://host/api/hubs/eio_hub/:removeFromGroups?api-version=2023-07-01"
            ),
            RestCall::RemoveFromGroups { hub: h() }
        );
        assert_eq!(
            ok(
                "POST",
                "https://host/api/hubs/eio_hub/:invoke?api-version=2023-07-01&filter=%270%7ELw%7E%27+in+groups"
            ),
            RestCall::Invoke {
                hub: h(),
                filter: Some("'0~Lw~' in groups".into())
            }
        );
        // The multi-room filter, form-encoded the way URLSearchParams does it.
        let filter = "'0~Lw~YQ' in groups or '0~Lw~Yg' in groups and not ('0~Lw~Yw' in groups) and not ('0~Lw~ZA' in groups)";
        let encoded: String = form_urlencoded::byte_serialize(filter.as_bytes()).collect();
        assert_eq!(
            ok(
                "POST",
                &format!(
                    "https://host/api/hubs/eio_hub/:send?api-version=2023-07-01&filter={encoded}"
                )
            ),
            RestCall::SendToAll {
                hub: h(),
                filter: Some(filter.into())
            }
        );
    }

    #[test]
    fn azure_rest_conventions() {
        assert_eq!(
            ok("POST", "/api/hubs/h/users/u%20x/:send"),
            RestCall::SendToUser {
                hub: "h".into(),
                user_id: "u x".into(),
                filter: None
            }
        );
        assert_eq!(
            ok("DELETE", "/api/hubs/h/connections/c?reason=bye+now"),
            RestCall::CloseConnection {
                hub: "h".into(),
                connection_id: "c".into(),
                reason: Some("bye now".into())
            }
        );
        assert_eq!(
            ok("HEAD", "/api/hubs/h/connections/c"),
            RestCall::ConnectionExists {
                hub: "h".into(),
                connection_id: "c".into()
            }
        );
        assert_eq!(
            ok("head", "/api/hubs/h/groups/g"),
            RestCall::GroupExists {
                hub: "h".into(),
                group: "g".into()
            }
        );
        assert_eq!(
            ok("HEAD", "/api/hubs/h/users/u"),
            RestCall::UserExists {
                hub: "h".into(),
                user: "u".into()
            }
        );
        assert_eq!(
            ok("PUT", "/api/hubs/h/groups/g/connections/c"),
            RestCall::AddConnectionToGroup {
                hub: "h".into(),
                group: "g".into(),
                connection_id: "c".into()
            }
        );
        assert_eq!(
            ok(
                "POST",
                "/api/hubs/h/:closeConnections?excluded=a&excluded=b&reason=r"
            ),
            RestCall::CloseAll {
                hub: "h".into(),
                excluded: vec!["a".into(), "b".into()],
                reason: Some("r".into())
            }
        );
        assert_eq!(
            ok("POST", "/api/hubs/h/groups/g/:closeConnections"),
            RestCall::CloseGroup {
                hub: "h".into(),
                group: "g".into(),
                excluded: vec![],
                reason: None
            }
        );
        assert_eq!(
            ok("PUT", "/api/hubs/h/users/u/groups/g"),
            RestCall::AddUserToGroup {
                hub: "h".into(),
                user_id: "u".into(),
                group: "g".into()
            }
        );
        assert_eq!(
            ok("DELETE", "/api/hubs/h/users/u/groups"),
            RestCall::RemoveUserFromAllGroups {
                hub: "h".into(),
                user_id: "u".into()
            }
        );
        assert_eq!(
            ok("DELETE", "/api/hubs/h/connections/c/groups"),
            RestCall::RemoveConnectionFromAllGroups {
                hub: "h".into(),
                connection_id: "c".into()
            }
        );
        assert_eq!(
            ok("POST", "http://example:8080/api/hubs/h/:send").hub(),
            "h"
        );
    }

    #[test]
    fn errors() {
        for (m, u) in [
            ("POST", "/api/hubs/h/:nope"),
            ("POST", "/api/hubs/h"),
            ("POST", "/api/hubs//:send"),
            ("POST", "/api/h/:send"),
            ("POST", "api/hubs/h/:send"),
            ("POST", "https://host"),
            ("POST", ""),
            ("GET", "/api/hubs/h/groups/g/connections/c/x"),
        ] {
            let e = parse_rest(m, u).unwrap_err();
            assert_eq!(e.status_code(), 404, "{m} {u}: {e}");
            assert!(e.to_string().starts_with("not found"));
        }
        assert_eq!(
            parse_rest("GET", "/api/hubs/h/:send")
                .unwrap_err()
                .status_code(),
            405
        );
        assert_eq!(
            parse_rest("POST", "/api/hubs/h/groups/g/connections/c")
                .unwrap_err()
                .status_code(),
            405
        );
        assert_eq!(
            parse_rest("POST", "/api/hubs/%ff/:send")
                .unwrap_err()
                .status_code(),
            400
        );
        assert!(GroupsBody::from_json(b"[").is_err());
        let body = GroupsBody::from_json(br#"{"groups":[],"filter":"  ","x":1}"#).unwrap();
        assert_eq!(body.effective_filter(), None);
    }
}
