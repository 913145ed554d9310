//! What a connection's handshake request carried (verified claims, query,
//! headers), kept packed in one allocation and expanded on first use.
//!
//! Most applications never read an idle client's handshake data, yet as
//! [`Claims`], a `Vec<(String, String)>` and a [`HeaderMap`] it takes over a
//! kilobyte in dozens of small allocations. Worse, the `HeaderMap` the
//! gateway hands over shares hyper's read buffer (its values are slices of
//! it), so keeping it keeps that whole buffer alive for the connection's
//! life. Packed, the data is one allocation about the size of its text,
//! with no reference to the gateway's buffers.

use std::sync::OnceLock;

use http::{HeaderMap, HeaderName, HeaderValue};
use portcullis_auth::Claims;

/// The packed handshake data of one connection.
pub(crate) struct RequestData {
    /// Three sections (claims, query, headers), each its byte length then
    /// its items; see [`Packer`].
    packed: Box<[u8]>,
    /// Allocated when first asked for (boxed: most connections never are).
    expanded: OnceLock<Box<Expanded>>,
}

/// The parts of the data asked for so far, expanded.
#[derive(Default)]
struct Expanded {
    claims: OnceLock<Claims>,
    query: OnceLock<Vec<(String, String)>>,
    headers: OnceLock<HeaderMap>,
}

const CLAIMS: usize = 0;
const QUERY: usize = 1;
const HEADERS: usize = 2;

impl RequestData {
    pub fn new(claims: &Claims, query: &[(String, String)], headers: &HeaderMap) -> Self {
        let mut packer = Packer::default();
        packer.section(|p| {
            for (name, values) in &claims.0 {
                p.item(name.as_bytes());
                p.number(values.len());
                values.iter().for_each(|v| p.item(v.as_bytes()));
            }
        });
        packer.section(|p| {
            for (key, value) in query {
                p.item(key.as_bytes());
                p.item(value.as_bytes());
            }
        });
        packer.section(|p| {
            for (name, value) in headers {
                p.item(name.as_str().as_bytes());
                p.item(value.as_bytes());
            }
        });
        RequestData {
            packed: packer.0.into_boxed_slice(),
            expanded: OnceLock::new(),
        }
    }

    pub fn claims(&self) -> &Claims {
        self.expanded().claims.get_or_init(|| {
            let mut claims = Claims::default();
            let mut items = self.section(CLAIMS);
            while let Some(name) = items.text() {
                let values = (0..items.number()).map_while(|_| items.text());
                claims
                    .0
                    .insert(name.to_owned(), values.map(str::to_owned).collect());
            }
            claims
        })
    }

    /// [`Claims::user_id`], read without expanding the claims (broadcast
    /// filters ask every socket for it).
    pub fn user_id(&self) -> Option<&str> {
        let mut items = self.section(CLAIMS);
        while let Some(name) = items.text() {
            let count = items.number();
            if name == "sub" {
                return if count == 0 { None } else { items.text() };
            }
            (0..count).for_each(|_| items.skip());
        }
        None
    }

    pub fn query(&self) -> &[(String, String)] {
        self.expanded().query.get_or_init(|| {
            self.query_pairs()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        })
    }

    /// The first value of query parameter `name`, read without expanding
    /// the query.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query_pairs().find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    pub fn headers(&self) -> &HeaderMap {
        self.expanded().headers.get_or_init(|| {
            let mut headers = HeaderMap::new();
            let mut items = self.section(HEADERS);
            while let (Some(name), Some(value)) = (items.next(), items.next()) {
                // Both were valid when packed.
                if let (Ok(name), Ok(value)) =
                    (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
                {
                    headers.append(name, value);
                }
            }
            headers
        })
    }

    fn expanded(&self) -> &Expanded {
        self.expanded.get_or_init(Box::default)
    }

    fn query_pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut items = self.section(QUERY);
        std::iter::from_fn(move || Some((items.text()?, items.text()?)))
    }

    /// The items of section `index`.
    fn section(&self, index: usize) -> Unpacker<'_> {
        let mut sections = Unpacker(&self.packed);
        for _ in 0..index {
            sections.skip();
        }
        Unpacker(sections.next().unwrap_or_default())
    }
}

/// Writes numbers (LEB128) and length-prefixed items.
#[derive(Default)]
struct Packer(Vec<u8>);

impl Packer {
    fn number(&mut self, mut n: usize) {
        while n >= 0x80 {
            self.0.push((n as u8 & 0x7f) | 0x80);
            n >>= 7;
        }
        self.0.push(n as u8);
    }

    fn item(&mut self, bytes: &[u8]) {
        self.number(bytes.len());
        self.0.extend_from_slice(bytes);
    }

    /// Writes what `write` packs as one item, so readers can skip it.
    fn section(&mut self, write: impl FnOnce(&mut Packer)) {
        let mut inner = Packer::default();
        write(&mut inner);
        self.item(&inner.0);
    }
}

/// Reads what [`Packer`] wrote. Reading past the end yields nothing.
struct Unpacker<'a>(&'a [u8]);

impl<'a> Unpacker<'a> {
    fn number(&mut self) -> usize {
        let mut n = 0usize;
        for shift in (0..usize::BITS).step_by(7) {
            let Some((&byte, rest)) = self.0.split_first() else {
                break;
            };
            self.0 = rest;
            n |= usize::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                break;
            }
        }
        n
    }

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.0.is_empty() {
            return None;
        }
        let len = self.number().min(self.0.len());
        let (item, rest) = self.0.split_at(len);
        self.0 = rest;
        Some(item)
    }

    /// The next item as text (it was packed from a `str`).
    fn text(&mut self) -> Option<&'a str> {
        self.next()
            .map(|b| std::str::from_utf8(b).unwrap_or_default())
    }

    fn skip(&mut self) {
        self.next();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RequestData {
        let mut claims = Claims::default();
        claims.0.insert("sub".into(), vec!["bob".into()]);
        claims.0.insert("role".into(), vec!["a".into(), "b".into()]);
        claims.0.insert("empty".into(), vec![]);
        let query = vec![
            ("EIO".to_owned(), "4".to_owned()),
            ("x".to_owned(), "é".repeat(100)),
            ("x".to_owned(), String::new()),
        ];
        let mut headers = HeaderMap::new();
        headers.append("host", HeaderValue::from_static("example.com"));
        headers.append("x-many", HeaderValue::from_static("1"));
        headers.append("cookie", HeaderValue::from_static("a=1"));
        headers.append("x-many", HeaderValue::from_static("2"));
        RequestData::new(&claims, &query, &headers)
    }

    #[test]
    fn round_trips_claims_query_and_headers() {
        let data = sample();
        assert_eq!(data.user_id(), Some("bob"));
        assert_eq!(data.claims().roles(), ["a", "b"]);
        assert!(data.claims().0.contains_key("empty"));
        assert_eq!(data.claims().0.len(), 3);
        assert_eq!(data.query_param("x"), Some("é".repeat(100).as_str()));
        assert_eq!(data.query_param("y"), None);
        assert_eq!(data.query().len(), 3);
        assert_eq!(data.query()[2], ("x".to_owned(), String::new()));
        let headers = data.headers();
        assert_eq!(headers.len(), 4);
        assert_eq!(headers["host"], "example.com");
        let many: Vec<_> = headers.get_all("x-many").iter().collect();
        assert_eq!(many, ["1", "2"]);
        let order: Vec<_> = headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(order, ["host", "x-many", "cookie"]);
    }

    #[test]
    fn empty_data_and_missing_sub() {
        let data = RequestData::new(&Claims::default(), &[], &HeaderMap::new());
        assert_eq!(data.user_id(), None);
        assert!(data.claims().0.is_empty());
        assert!(data.query().is_empty());
        assert!(data.headers().is_empty());

        let mut claims = Claims::default();
        claims.0.insert("sub".into(), vec![]);
        let data = RequestData::new(&claims, &[], &HeaderMap::new());
        assert_eq!(data.user_id(), None);
    }
}
