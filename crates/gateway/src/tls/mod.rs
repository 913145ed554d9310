//! TLS on the gateway's own listener: rustls with the ring provider, HTTP/1.1
//! (with WebSocket upgrades) over it, and a certificate that is re-read when
//! its files change or when asked ([`Gateway::reload_tls`](crate::Gateway::reload_tls),
//! which the binary calls on SIGHUP), without touching live connections.
//!
//! The handshake itself runs in the listener, inside the pre-gate limits: a
//! client that opens TCP and never finishes its handshake is pre-gate and
//! idle, so the header-read timeout, the per-address cap and eviction apply
//! to it as to a client that never sends a request (see
//! [`crate::listener`]).

mod certificate;
mod reload;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;

pub use certificate::{CertificateStore, TlsError};
pub(crate) use reload::watch;

/// Where the certificate and its key are, and how often to look for a new
/// one. The files are PEM: the certificate chain (leaf first), and one
/// private key (PKCS#8, PKCS#1 or SEC1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// The certificate chain, PEM.
    pub cert_path: PathBuf,
    /// The private key, PEM.
    pub key_path: PathBuf,
    /// How often the files' modification times are checked; a change loads
    /// them again. Zero: never (reload on request only).
    pub reload_interval: Duration,
}

impl TlsConfig {
    /// The files, checked for changes every 5 seconds.
    pub fn new(cert_path: impl Into<PathBuf>, key_path: impl Into<PathBuf>) -> Self {
        TlsConfig {
            cert_path: cert_path.into(),
            key_path: key_path.into(),
            reload_interval: Duration::from_secs(5),
        }
    }

    /// Loads the files once, to report a bad certificate or key before
    /// serving (the gateway loads them again when it starts).
    pub fn check(&self) -> Result<(), TlsError> {
        CertificateStore::load(self).map(drop)
    }
}

/// The rustls configuration of the listener: the ring provider (explicitly,
/// so nothing depends on a process-wide default), TLS 1.2 and 1.3, no client
/// certificates, the certificate from `store`, and ALPN `http/1.1` only (the
/// gateway serves HTTP/1.1; WebSocket upgrades are HTTP/1.1 requests).
pub(crate) fn server_config(store: Arc<CertificateStore>) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_cert_resolver(store);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
