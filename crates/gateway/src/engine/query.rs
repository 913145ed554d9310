//! The Engine.IO query parameters of a client request.

use std::borrow::Cow;

/// The parameters the gateway reads itself, borrowed from the raw query when
/// they need no decoding (the common case), so a refused request allocates
/// nothing here.
#[derive(Debug, Default)]
pub(crate) struct EngineQuery<'a> {
    pub eio: Option<Cow<'a, str>>,
    pub transport: Option<Cow<'a, str>>,
    pub sid: Option<Cow<'a, str>>,
    pub access_token: Option<Cow<'a, str>>,
}

impl<'a> EngineQuery<'a> {
    pub fn parse(query: &'a str) -> Self {
        let mut parsed = EngineQuery::default();
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
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
    fn reads_engine_parameters() {
        let q =
            EngineQuery::parse("EIO=4&transport=polling&t=x&sid=abc&access_token=a.b.c&sid=zzz");
        assert_eq!(q.eio.as_deref(), Some("4"));
        assert_eq!(q.transport.as_deref(), Some("polling"));
        assert_eq!(q.sid.as_deref(), Some("abc"));
        assert_eq!(q.access_token.as_deref(), Some("a.b.c"));
        assert!(matches!(q.access_token, Some(Cow::Borrowed(_))));
    }
}
