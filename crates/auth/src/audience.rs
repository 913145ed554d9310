//! Matching the `aud` claim of a client token against a hub.

use url::Url;

/// Prefix of a hub's client path, relative to the endpoint path.
const HUB_PATH_PREFIX: &str = "clients/socketio/hubs/";

/// The audience that [`ClientTokenVerifier::verify`](crate::ClientTokenVerifier::verify)
/// accepts for one hub.
///
/// The `aud` must be an absolute URL whose path equals `/clients/socketio/hubs/{hub}`
/// (case-insensitively, with an optional trailing `/`). Scheme and host are ignored, unless a
/// public endpoint is given: then the path is the endpoint's path joined with
/// `clients/socketio/hubs/{hub}`, and scheme (`ws` = `http`, `wss` = `https`), host and port
/// must match the endpoint too.
///
/// ```
/// use portcullis_auth::audience::HubAudience;
///
/// let any_host = HubAudience::new("chat", None);
/// assert!(any_host.matches("http://localhost:8080/clients/socketio/hubs/chat"));
/// assert!(any_host.matches("wss://example.com/clients/socketio/hubs/Chat/"));
/// assert!(!any_host.matches("http://localhost:8080/clients/socketio/hubs/other"));
/// assert_eq!(any_host.expected(), "/clients/socketio/hubs/chat");
///
/// let public = url::Url::parse("https://gw.example.com/").unwrap();
/// let strict = HubAudience::new("chat", Some(&public));
/// assert!(strict.matches("wss://gw.example.com/clients/socketio/hubs/chat"));
/// assert!(!strict.matches("https://evil.example.com/clients/socketio/hubs/chat"));
/// ```
#[derive(Debug, Clone)]
pub struct HubAudience {
    /// The expected path, lowercased, without a trailing `/`.
    path: String,
    /// Scheme (normalised to http/https), host and port required when a public endpoint is set.
    origin: Option<Origin>,
    /// Human-readable expectation for error messages.
    expected: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

impl HubAudience {
    /// The audience for `hub`, optionally pinned to the gateway's public endpoint.
    pub fn new(hub: &str, public_endpoint: Option<&Url>) -> Self {
        let url = hub_url(hub, public_endpoint);
        let path = url.as_ref().map_or_else(
            || format!("/{HUB_PATH_PREFIX}{hub}"),
            |u| u.path().to_owned(),
        );
        let expected = match (public_endpoint, &url) {
            (Some(_), Some(url)) => url.as_str().to_owned(),
            _ => path.clone(),
        };
        Self {
            path: comparable_path(&path),
            origin: public_endpoint.map(origin_of),
            expected,
        }
    }

    /// True when `aud` is acceptable for this hub.
    pub fn matches(&self, aud: &str) -> bool {
        parse_from(aud, self.origin.as_ref())
            .is_some_and(|url| comparable_path(url.path()) == self.path)
    }

    /// What is expected, for messages: the path, or the full URL with a public endpoint.
    pub fn expected(&self) -> &str {
        &self.expected
    }
}

/// The audience a token must name to act on one hub's REST API or to attach
/// an application server to its tunnel.
///
/// Like [`HubAudience`], scheme and host only count when a public endpoint is
/// given, and paths are relative to that endpoint's path. The path must be
/// exactly the endpoint's (no suffix matching), so a client token can never
/// pass for an API or tunnel token, whatever the endpoint's path holds.
///
/// - **API**: `{base}/api/hubs/{hub}` or any path below it (the official
///   `WebPubSubServiceClient` signs the full request URL, e.g.
///   `…/api/hubs/chat/:send?api-version=…`).
/// - **Tunnel**: `{base}/server/tunnel` with `?hub={hub}` (what the official
///   SDK signs).
///
/// ```
/// use portcullis_auth::audience::ServiceAudience;
///
/// let api = ServiceAudience::api("chat", None);
/// assert!(api.matches("http://h/api/hubs/chat/:send?api-version=2024-01-01"));
/// assert!(api.matches("http://h/api/hubs/Chat"));
/// assert!(!api.matches("http://h/api/hubs/chatroom/:send"));
/// assert!(!api.matches("http://h/api/hubs/other/:send"));
/// assert!(!api.matches("http://h/clients/socketio/hubs/chat"));
///
/// let tunnel = ServiceAudience::tunnel("chat", None);
/// assert!(tunnel.matches("ws://h/server/tunnel?hub=chat"));
/// assert!(!tunnel.matches("ws://h/evil/server/tunnel?hub=chat"));
/// assert!(!tunnel.matches("ws://h/server/tunnel?hub=other"));
/// ```
#[derive(Debug, Clone)]
pub struct ServiceAudience {
    /// The expected path, lowercased, without a trailing `/`.
    path: String,
    /// Whether paths below `path` count too (the API's request URLs).
    below: bool,
    /// The hub the `hub` query parameter must name (the tunnel).
    hub_query: Option<String>,
    origin: Option<Origin>,
    expected: String,
}

impl ServiceAudience {
    /// The audience of REST API calls on `hub`.
    pub fn api(hub: &str, public_endpoint: Option<&Url>) -> Self {
        Self::new(&format!("api/hubs/{hub}"), true, None, public_endpoint)
    }

    /// The audience of `hub`'s application-server tunnel.
    pub fn tunnel(hub: &str, public_endpoint: Option<&Url>) -> Self {
        Self::new("server/tunnel", false, Some(hub), public_endpoint)
    }

    fn new(
        relative: &str,
        below: bool,
        hub_query: Option<&str>,
        public_endpoint: Option<&Url>,
    ) -> Self {
        let base = public_endpoint.map_or("", |e| e.path().trim_end_matches('/'));
        let path = comparable_path(&format!("{base}/{relative}"));
        let shown = match hub_query {
            Some(hub) => format!("{base}/{relative}?hub={hub}"),
            None if below => format!("{base}/{relative}[/...]"),
            None => format!("{base}/{relative}"),
        };
        let expected = match public_endpoint {
            Some(endpoint) => format!("{}{shown}", endpoint.origin().ascii_serialization()),
            None => shown,
        };
        Self {
            path,
            below,
            hub_query: hub_query.map(str::to_ascii_lowercase),
            origin: public_endpoint.map(origin_of),
            expected,
        }
    }

    /// True when `aud` is acceptable.
    pub fn matches(&self, aud: &str) -> bool {
        let Some(url) = parse_from(aud, self.origin.as_ref()) else {
            return false;
        };
        let path = comparable_path(url.path());
        let path_ok = path == self.path
            || (self.below
                && path
                    .strip_prefix(&self.path)
                    .is_some_and(|rest| rest.starts_with('/')));
        let hub_ok = self.hub_query.as_ref().is_none_or(|hub| {
            url.query_pairs()
                .any(|(k, v)| k == "hub" && v.eq_ignore_ascii_case(hub))
        });
        path_ok && hub_ok
    }

    /// What is expected, for messages.
    pub fn expected(&self) -> &str {
        &self.expected
    }
}

/// `{endpoint path}/clients/socketio/hubs/{hub}` on the public endpoint (or a placeholder host),
/// normalised the way the URL parser normalises an `aud`.
fn hub_url(hub: &str, public_endpoint: Option<&Url>) -> Option<Url> {
    let mut url = match public_endpoint {
        Some(endpoint) => endpoint.clone(),
        None => Url::parse("http://localhost/").ok()?,
    };
    let base = url.path().trim_end_matches('/').to_owned();
    url.set_path(&format!("{base}/{HUB_PATH_PREFIX}{hub}"));
    url.set_query(None);
    url.set_fragment(None);
    Some(url)
}

/// `aud` as a URL, if it is one and (when an origin is required) from it.
fn parse_from(aud: &str, origin: Option<&Origin>) -> Option<Url> {
    let url = Url::parse(aud).ok()?;
    origin.is_none_or(|o| *o == origin_of(&url)).then_some(url)
}

fn comparable_path(path: &str) -> String {
    path.strip_suffix('/').unwrap_or(path).to_ascii_lowercase()
}

fn origin_of(url: &Url) -> Origin {
    let scheme = match url.scheme() {
        "ws" => "http",
        "wss" => "https",
        other => other,
    };
    Origin {
        scheme: scheme.to_owned(),
        host: url.host_str().unwrap_or_default().to_ascii_lowercase(),
        port: url.port_or_known_default(),
    }
}
