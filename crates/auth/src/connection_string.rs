//! Connection strings of the form `Endpoint=<url>;AccessKey=<key>;Version=1.0;[Port=<n>;]`.
//!
//! Parsing follows the SDK's `parseConnectionString` (`@azure/web-pubsub`, identical in
//! `server-proxies/src/utils.ts`).

use std::fmt;
use std::str::FromStr;

use url::Url;

/// A parsed connection string: the service endpoint and the access key.
///
/// `endpoint` always ends with `/` when it comes from [`FromStr`] or [`ConnectionString::new`].
///
/// ```
/// use portcullis_auth::ConnectionString;
///
/// let cs: ConnectionString = "Endpoint=http://localhost;Port=8080;AccessKey=abc;Version=1.0;"
///     .parse()
///     .unwrap();
/// assert_eq!(cs.endpoint.as_str(), "http://localhost:8080/");
/// assert_eq!(cs.access_key, "abc");
/// assert_eq!(cs.client_url("chat"), "http://localhost:8080/clients/socketio/hubs/chat");
/// assert_eq!(cs.to_string(), "Endpoint=http://localhost:8080;AccessKey=abc;Version=1.0;");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionString {
    /// The service endpoint, always ending with `/` (for example `http://localhost:8080/`).
    pub endpoint: Url,
    /// The access key. Its UTF-8 bytes are the HS256 secret (it is not base64-decoded).
    pub access_key: String,
}

/// Why a connection string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionStringError {
    /// No non-empty `Endpoint=` part.
    #[error("connection string missing Endpoint")]
    MissingEndpoint,
    /// No non-empty `AccessKey=` part.
    #[error("connection string missing AccessKey")]
    MissingAccessKey,
    /// The endpoint is not a URL.
    #[error(
        "connection string Endpoint is not a valid URL ({0}): expected e.g. Endpoint=http://localhost:8080"
    )]
    InvalidEndpoint(String),
    /// The endpoint is a URL, but not an `http://` or `https://` one.
    #[error("connection string Endpoint must be an http:// or https:// URL, not '{0}:'")]
    UnsupportedScheme(String),
    /// `Port=` is not a number from 0 to 65535.
    #[error("connection string Port must be a number from 0 to 65535")]
    InvalidPort,
}

impl ConnectionString {
    /// Builds a connection string from an endpoint URL and an access key.
    ///
    /// A `/` is appended to the endpoint's path if it does not end with one.
    ///
    /// ```
    /// use portcullis_auth::ConnectionString;
    ///
    /// let url = url::Url::parse("http://127.0.0.1:8080/base").unwrap();
    /// let cs = ConnectionString::new(url, "key");
    /// assert_eq!(cs.endpoint.as_str(), "http://127.0.0.1:8080/base/");
    /// ```
    pub fn new(endpoint: Url, access_key: impl Into<String>) -> Self {
        Self {
            endpoint: with_trailing_slash(endpoint),
            access_key: access_key.into(),
        }
    }

    /// The client URL of `hub`: `{endpoint}clients/socketio/hubs/{hub}`.
    ///
    /// This is the `baseUrl` and token audience that the SDK's `negotiate` uses. The hub name
    /// is not percent-encoded, exactly like the SDK.
    pub fn client_url(&self, hub: &str) -> String {
        let endpoint = self.endpoint.as_str();
        let slash = if endpoint.ends_with('/') { "" } else { "/" };
        format!("{endpoint}{slash}clients/socketio/hubs/{hub}")
    }

    /// The endpoint as written in [`Display`](fmt::Display): without the trailing `/` and
    /// with any `;` percent-encoded so that the result parses back.
    ///
    /// A path ending in `//` keeps its last `/`: parsing adds a `/` only to a path that does
    /// not end with one, so `http://h/a//` written as `http://h/a/` would read back as
    /// `http://h/a/`.
    fn display_endpoint(&self) -> String {
        let text = self.endpoint.as_str();
        let text = match (self.endpoint.query(), self.endpoint.fragment()) {
            (None, None) if !text.ends_with("//") => text.strip_suffix('/').unwrap_or(text),
            _ => text,
        };
        text.replace(';', "%3B")
    }
}

impl fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionString")
            .field("endpoint", &self.endpoint.as_str())
            .field("access_key", &"<redacted>")
            .finish()
    }
}

/// Writes `Endpoint=<url>;AccessKey=<key>;Version=1.0;`.
///
/// The endpoint is written without its trailing `/`, and an explicit port stays inside it
/// (`Endpoint=http://127.0.0.1:8080;…`). The output parses back with [`FromStr`]
/// (unless the access key itself contains `;`). **It contains the access key.**
impl fmt::Display for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Endpoint={};AccessKey={};Version=1.0;",
            self.display_endpoint(),
            self.access_key
        )
    }
}

/// Parses a connection string exactly like the SDK does.
///
/// 1. Split on `;`; in each part the key (lowercased) runs up to the first `=` and the value
///    is kept verbatim. Parts without `=` are ignored; a later duplicate key wins.
/// 2. `Endpoint` is required; `https://` is prepended if it does not start with `http`.
/// 3. `AccessKey` is required.
/// 4. `Port` overrides the URL's port (a scheme's default port is dropped; an empty value
///    removes the port). `Version` and unknown keys are ignored.
///
/// Stricter than the SDK: only `http`/`https` endpoints are accepted, and a `Port` that is not
/// a number is an error instead of being silently ignored.
impl FromStr for ConnectionString {
    type Err = ConnectionStringError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts = Parts::parse(s);
        let endpoint = parts
            .endpoint
            .ok_or(ConnectionStringError::MissingEndpoint)?;
        let access_key = parts
            .access_key
            .ok_or(ConnectionStringError::MissingAccessKey)?;
        let mut url = parse_endpoint(endpoint)?;
        if let Some(port) = parts.port {
            apply_port(&mut url, port)?;
        }
        Ok(Self::new(url, access_key))
    }
}

/// The parts of a connection string that matter, after the SDK's split.
#[derive(Default)]
struct Parts<'a> {
    endpoint: Option<&'a str>,
    access_key: Option<&'a str>,
    port: Option<&'a str>,
}

impl<'a> Parts<'a> {
    fn parse(s: &'a str) -> Self {
        let mut parts = Self::default();
        for (key, value) in s.split(';').filter_map(|part| part.split_once('=')) {
            // The SDK treats an empty value like a missing one (`if (!parsed["endpoint"])`).
            let value = Some(value).filter(|v| !v.is_empty());
            match key.to_ascii_lowercase().as_str() {
                "endpoint" => parts.endpoint = value,
                "accesskey" => parts.access_key = value,
                // An empty Port is meaningful (it clears the port), so keep it.
                "port" => parts.port = Some(value.unwrap_or("")),
                _ => {}
            }
        }
        parts
    }
}

fn parse_endpoint(endpoint: &str) -> Result<Url, ConnectionStringError> {
    let has_http_prefix = endpoint
        .get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case("http"));
    let text = if has_http_prefix {
        endpoint.to_owned()
    } else {
        format!("https://{endpoint}")
    };
    let url =
        Url::parse(&text).map_err(|e| ConnectionStringError::InvalidEndpoint(e.to_string()))?;
    match url.scheme() {
        "http" | "https" => Ok(url),
        other => Err(ConnectionStringError::UnsupportedScheme(
            other.chars().take(16).collect(),
        )),
    }
}

fn apply_port(url: &mut Url, port: &str) -> Result<(), ConnectionStringError> {
    let port = match port.trim() {
        "" => None,
        digits => Some(
            digits
                .parse::<u16>()
                .map_err(|_| ConnectionStringError::InvalidPort)?,
        ),
    };
    // `set_port` drops the scheme's default port by itself, like the WHATWG URL setter.
    url.set_port(port)
        .map_err(|()| ConnectionStringError::InvalidPort)
}

fn with_trailing_slash(mut url: Url) -> Url {
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `connection_string` fuzz target
    /// (`fuzz/regressions/connection_string/`): an endpoint whose path ends in `//` lost a
    /// `/` when printed, so `Display` did not parse back to the same endpoint.
    #[test]
    fn display_keeps_a_doubled_trailing_slash() {
        for input in [
            "Endpoint=http://m//%!:/m//;AccessKey=key",
            "Endpoint=http://h/base//;AccessKey=k",
            "Endpoint=http://h//;AccessKey=k",
        ] {
            let cs = ConnectionString::from_str(input).unwrap();
            assert!(cs.endpoint.path().ends_with("//"), "{input}");
            let again = ConnectionString::from_str(&cs.to_string()).unwrap();
            assert_eq!(again, cs, "{input} -> {cs}");
        }
        let cs = ConnectionString::from_str("Endpoint=http://h/base/;AccessKey=k").unwrap();
        assert_eq!(
            cs.to_string(),
            "Endpoint=http://h/base;AccessKey=k;Version=1.0;"
        );
    }
}
