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
//! Owns: connection strings, access keys, HS256 tokens (minting and
//! verification), claims and audiences. Must not depend on the hub, the
//! tunnel, the gateway or anything that does I/O.
//!
//! # One JWT implementation
//!
//! Tokens are HS256 JWTs and nothing else, so the crate owns HS256 in one private module
//! (on `hmac`, `sha2`, `base64` and `serde_json`): minting signs through it, and it is the
//! single place that decides whether a token's form, signature and `exp`/`nbf` are valid
//! (the audience is then matched by [`verify`]). Each access key's HMAC state is keyed
//! once, in [`ClientTokenVerifier::new`], and a forged token is refused by its signature
//! before anything of it but the header's `alg` is decoded. A general JWT library was the
//! alternative: jsonwebtoken needs a process-wide crypto provider, and its RustCrypto
//! backend links RSA (RUSTSEC-2023-0071) and elliptic-curve code this crate never calls.
//! The tests still mint tokens with jsonwebtoken, as an independent implementation.
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

mod jwt;
mod ttl;

pub use claims::Claims;
pub use connection_string::{ConnectionString, ConnectionStringError};
pub use error::TokenError;
pub use keys::{AccessKeys, KeyError, MIN_STRONG_KEY_BYTES};
pub use mint::{
    ClientTokenOptions, RESERVED_CLAIMS, TokenId, mint_client_token, mint_client_token_at,
};
pub use ttl::parse_ttl;
pub use verify::{ClientTokenVerifier, VerifierConfig};
