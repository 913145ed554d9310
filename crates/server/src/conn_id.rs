//! The id of a client connection, in either attach mode.

use std::borrow::Borrow;
use std::fmt;

use crate::short_id::ShortId;

/// A connection id as the gateway gave it (the Engine.IO `sid`), in either
/// attach mode.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct ConnId(ShortId);

impl ConnId {
    pub fn new(id: &str) -> Self {
        ConnId(ShortId::new(id))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnId({})", self.as_str())
    }
}

impl Borrow<str> for ConnId {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}
