//! The Engine.IO query parameters of a client request.

use std::borrow::Cow;

/// The parameters the gateway reads itself, borrowed from the raw query when
/// they need no decoding (the common case), so a refused request allocates
/// nothing here. Its `Debug` never shows the token.
#[derive(Default)]
pub(crate) struct EngineQuery<'a> {
    pub eio: Option<Cow<'a, str>>,
    pub transport: Option<Cow<'a, str>>,
    pub sid: Option<Cow<'a, str>>,
    pub access_token: Option<Cow<'a, str>>,
}

impl std::fmt::Debug for EngineQuery<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineQuery")
            .field("eio", &self.eio)
            .field("transport", &self.transport)
            .field("sid", &self.sid)
            .field(
                "access_token",
                &self.access_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl<'a> EngineQuery<'a> {
    /// Reads the four parameters. Only their values are scanned for escapes
    /// (a refused handshake's long token is looked at once, not decoded).
    pub fn parse(query: &'a str) -> Self {
        let mut parsed = EngineQuery::default();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (key, value) = decode_pair(pair);
            let slot = match key.as_ref() {
                "EIO" => &mut parsed.eio,
                "transport" => &mut parsed.transport,
                "sid" => &mut parsed.sid,
                "access_token" => &mut parsed.access_token,
                _ => continue,
            };
            // The first occurrence wins, as in engine.io.
            if slot.is_none() {
                *slot = Some(value);
            }
        }
        parsed
    }
}

/// One `key=value` pair, borrowed when it holds no `%` or `+`; otherwise
/// decoded as `application/x-www-form-urlencoded`.
fn decode_pair(pair: &str) -> (Cow<'_, str>, Cow<'_, str>) {
    if !pair.contains(['%', '+']) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        return (Cow::Borrowed(key), Cow::Borrowed(value));
    }
    url::form_urlencoded::parse(pair.as_bytes())
        .next()
        .unwrap_or_default()
}

/// Every query parameter, in order, for the handler's connect request.
pub(crate) fn all_pairs(query: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_token() {
        let query = EngineQuery::parse("EIO=4&transport=polling&access_token=secret.jwt.value");
        let text = format!("{query:?}");
        assert!(
            !text.contains("secret.jwt.value") && text.contains("<redacted>"),
            "{text}"
        );
    }

    #[test]
    fn reads_engine_parameters() {
        let q =
            EngineQuery::parse("EIO=4&transport=polling&t=x&sid=abc&access_token=a.b.c&sid=zzz");
        assert_eq!(q.eio.as_deref(), Some("4"));
        assert_eq!(q.transport.as_deref(), Some("polling"));
        assert_eq!(q.sid.as_deref(), Some("abc"));
        assert_eq!(q.access_token.as_deref(), Some("a.b.c"));
        assert!(matches!(q.access_token, Some(Cow::Borrowed(_))));
    }

    #[test]
    fn decodes_escaped_pairs_and_keeps_empty_values() {
        let q = EngineQuery::parse("&EIO=4&trans%70ort=web+socket&sid=&&access_token=a%2Eb");
        assert_eq!(q.eio.as_deref(), Some("4"));
        assert_eq!(q.transport.as_deref(), Some("web socket"));
        assert_eq!(q.sid.as_deref(), Some(""));
        assert_eq!(q.access_token.as_deref(), Some("a.b"));
    }

    #[test]
    fn agrees_with_form_urlencoded() {
        for query in [
            "EIO",
            "EIO=4=5",
            "sid=%zz",
            "transport=%F0%9F%98%80",
            "x=1&sid=a+b",
        ] {
            let q = EngineQuery::parse(query);
            let expected = |name: &str| {
                url::form_urlencoded::parse(query.as_bytes())
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.into_owned())
            };
            assert_eq!(
                q.eio.as_deref().map(str::to_owned),
                expected("EIO"),
                "{query}"
            );
            assert_eq!(
                q.sid.as_deref().map(str::to_owned),
                expected("sid"),
                "{query}"
            );
            assert_eq!(
                q.transport.as_deref().map(str::to_owned),
                expected("transport"),
                "{query}"
            );
        }
    }
}
