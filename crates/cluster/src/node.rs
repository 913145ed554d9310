//! Node identities, and the owner node written into every connection id.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Separates the owner node's id from the random part of a connection id:
/// `<node>.<random>`. A dot never occurs in a node id nor in URL-safe
/// base64, so the split is unambiguous, and it needs no escaping in URLs.
pub const OWNER_SEPARATOR: char = '.';

/// Longest node id accepted.
const MAX_NODE_ID: usize = 32;

/// The id of a gateway node: 1 to 32 ASCII letters, digits, `_` or `-`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NodeId(Arc<str>);

impl NodeId {
    /// A fresh random id of 8 characters.
    pub fn generate() -> Self {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let id: String = (0..8)
            .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
            .collect();
        NodeId(id.into())
    }

    /// Parses a node id given by an operator (`--node-id`).
    pub fn parse(text: &str) -> Result<Self, InvalidNodeId> {
        let valid = (1..=MAX_NODE_ID).contains(&text.len())
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
        if valid {
            Ok(NodeId(text.into()))
        } else {
            Err(InvalidNodeId)
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A connection id owned by this node: `<node>.<random>`.
    pub fn connection_id(&self, random: &str) -> String {
        format!("{}{OWNER_SEPARATOR}{random}", self.0)
    }
}

/// A node id that is not 1 to 32 letters, digits, `_` or `-`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a node id is 1 to 32 ASCII letters, digits, '_' or '-'")]
pub struct InvalidNodeId;

impl TryFrom<String> for NodeId {
    type Error = InvalidNodeId;

    fn try_from(text: String) -> Result<Self, InvalidNodeId> {
        NodeId::parse(&text)
    }
}

impl From<NodeId> for String {
    fn from(id: NodeId) -> String {
        id.0.to_string()
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.0)
    }
}

/// The node that owns a connection, read from its id; `None` for ids
/// without an owner (made by a gateway outside any cluster, or invented).
pub fn owner_of(connection_id: &str) -> Option<&str> {
    let (node, rest) = connection_id.split_once(OWNER_SEPARATOR)?;
    (!rest.is_empty() && NodeId::parse(node).is_ok()).then_some(node)
}

/// What a node publishes about itself in the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Its id.
    pub id: NodeId,
    /// The base URL other nodes forward client requests to, and application
    /// servers open their extra tunnels to (`http://10.0.0.2:8080`).
    pub advertise: url::Url,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_ids_name_their_owner() {
        let node = NodeId::parse("n-1").unwrap();
        let id = node.connection_id("AbC_d-9");
        assert_eq!(id, "n-1.AbC_d-9");
        assert_eq!(owner_of(&id), Some("n-1"));
    }

    #[test]
    fn ids_without_an_owner() {
        for id in ["AbCdEf", ".x", "n1.", "a b.x", "", "x/y.z"] {
            assert_eq!(owner_of(id), None, "{id:?}");
        }
    }

    #[test]
    fn node_ids_are_checked() {
        assert!(NodeId::parse("").is_err());
        assert!(NodeId::parse("a.b").is_err());
        assert!(NodeId::parse(&"x".repeat(33)).is_err());
        let generated = NodeId::generate();
        assert_eq!(NodeId::parse(generated.as_str()), Ok(generated));
    }
}
