//! Authentication for Portcullis, a self-hosted Socket.IO gateway that is wire-compatible with
//! Azure Web PubSub for Socket.IO.
//!
//! The crate covers everything that happens before an Engine.IO session exists:
//!
//! - [`ConnectionString`]: parsing `Endpoint=…;AccessKey=…;Version=1.0;` exactly like the SDK.
//! - [`AccessKeys`]: one or more HS256 access keys (several keys allow rotation).
//! - [`mint_client_token`]: client tokens as the SDK's `negotiate` mints them.
//! - [`ClientTokenVerifier`]: verification of client tokens (signature, expiry, audience).
//! - [`Claims`]: the verified claims in the form the SDK reads (`name -> [strings]`).
//!
//! ```
//! use portcullis_auth::{AccessKeys, ClientTokenOptions, ClientTokenVerifier, VerifierConfig};
//!
//! let keys = AccessKeys::new(vec!["my-access-key".to_owned()]).unwrap();
//! let options = ClientTokenOptions { user_id: Some("bob".into()), ..Default::default() };
//! let token = portcullis_auth::mint_client_token(
//!     keys.primary(),
//!     "http://localhost:8080/clients/socketio/hubs/chat",
//!     &options,
//! );
//! let verifier = ClientTokenVerifier::new(VerifierConfig::new(keys));
//! let claims = verifier.verify(&token, "chat").unwrap();
//! assert_eq!(claims.user_id(), Some("bob"));
//! ```

#![warn(missing_docs)]

pub mod audience;
pub mod claims;
pub mod connection_string;
pub mod error;
pub mod keys;
pub mod mint;
pub mod verify;

mod crypto;
mod signature;
mod ttl;

pub use claims::Claims;
pub use connection_string::{ConnectionString, ConnectionStringError};
pub use error::TokenError;
pub use keys::{AccessKeys, KeyError, MIN_STRONG_KEY_BYTES};
pub use mint::{ClientTokenOptions, RESERVED_CLAIMS, mint_client_token, mint_client_token_at};
pub use ttl::parse_ttl;
pub use verify::{ClientTokenVerifier, VerifierConfig};
