//! Socket.IO room ↔ Web PubSub group naming (`web-pubsub-adapter.ts _getGroupName`).
//!
//! `group(namespace, room) = "0~" + base64url(namespace) + "~" + base64url(room)`,
//! with base64url the RFC 4648 §5 alphabet over UTF-8 bytes, without padding.
//! The room-less name `"0~<b64ns>~"` is the *namespace group*, which the
//! service (not the SDK) maintains. Group names are case-sensitive.
//!
//! ```
//! use portcullis_tunnel::group_name::{group_name, namespace_group_prefix};
//!
//! assert_eq!(group_name("/", Some("room1")), "0~Lw~cm9vbTE");
//! assert_eq!(group_name("/chat", None), "0~L2NoYXQ~");
//! assert!(group_name("/chat", Some("r")).starts_with(&namespace_group_prefix("/chat")));
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The group of `room` in `namespace`, or the namespace group when `room` is `None`.
///
/// Note that `Some("")` yields the namespace group too: the encoding cannot
/// tell an empty room from no room.
pub fn group_name(namespace: &str, room: Option<&str>) -> String {
    let mut name = namespace_group_prefix(namespace);
    if let Some(room) = room {
        URL_SAFE_NO_PAD.encode_string(room, &mut name);
    }
    name
}

/// `"0~" + base64url(namespace) + "~"`: the namespace group's name, and the
/// prefix of every group of a room in that namespace.
pub fn namespace_group_prefix(namespace: &str) -> String {
    let mut name = String::from("0~");
    URL_SAFE_NO_PAD.encode_string(namespace, &mut name);
    name.push('~');
    name
}

/// Splits a group name made by [`group_name`] back into `(namespace, room)`.
///
/// Returns `None` for names not of the form `0~<b64>~[<b64>]` or whose parts
/// are not valid base64url-encoded UTF-8. The room is `None` for a namespace
/// group.
///
/// ```
/// use portcullis_tunnel::group_name::parse_group_name;
/// assert_eq!(parse_group_name("0~L2NoYXQ~cg"), Some(("/chat".into(), Some("r".into()))));
/// assert_eq!(parse_group_name("0~Lw~"), Some(("/".into(), None)));
/// assert_eq!(parse_group_name("room1"), None);
/// ```
pub fn parse_group_name(group: &str) -> Option<(String, Option<String>)> {
    let rest = group.strip_prefix("0~")?;
    let (ns, room) = rest.split_once('~')?;
    let decode = |s: &str| {
        URL_SAFE_NO_PAD
            .decode(s)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
    };
    let namespace = decode(ns)?;
    let room = if room.is_empty() {
        None
    } else {
        Some(decode(room)?)
    };
    Some((namespace, room))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_table() {
        assert_eq!(group_name("/", None), "0~Lw~");
        assert_eq!(namespace_group_prefix("/"), "0~Lw~");
        assert_eq!(group_name("/", Some("room1")), "0~Lw~cm9vbTE");
        assert_eq!(group_name("/chat", Some("r")), "0~L2NoYXQ~cg");
        assert_eq!(group_name("/ns", Some("rm")), "0~L25z~cm0");
        assert_eq!(group_name("/", Some("room2")), "0~Lw~cm9vbTI");
        assert_eq!(group_name("/", Some("room3")), "0~Lw~cm9vbTM");
        assert_eq!(
            group_name("/", Some("irr9xH15B5I4I2clAAAA")),
            "0~Lw~aXJyOXhIMTVCNUk0STJjbEFBQUE"
        );
        for (room, g) in [
            ("a", "0~Lw~YQ"),
            ("b", "0~Lw~Yg"),
            ("c", "0~Lw~Yw"),
            ("d", "0~Lw~ZA"),
        ] {
            assert_eq!(group_name("/", Some(room)), g);
        }
    }

    #[test]
    fn url_safe_alphabet_and_utf8() {
        // 0xfb 0xff encodes to "-_8" in base64url ("+/8" in standard base64).
        assert_eq!(group_name("/", Some("\u{fbff}")), "0~Lw~76-_");
        assert_eq!(
            parse_group_name(&group_name("/é", Some("ü"))),
            Some(("/é".into(), Some("ü".into())))
        );
    }
}
