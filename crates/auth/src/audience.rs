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
        let Ok(url) = Url::parse(aud) else {
            return false;
        };
        let origin_ok = self.origin.as_ref().is_none_or(|o| *o == origin_of(&url));
        origin_ok && comparable_path(url.path()) == self.path
    }

    /// What is expected, for messages: the path, or the full URL with a public endpoint.
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
