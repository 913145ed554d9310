//! TLS for tunnels to `https://` endpoints (`wss://` tunnels): rustls with
//! the ring provider, chosen here rather than taken from a process-wide
//! default, so the application may link other rustls users freely.

use std::fmt;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};

use super::TunnelError;

/// How a tunnel connects: today, which certificates it trusts for a
/// `wss://` gateway. The default trusts the public web PKI (the Mozilla
/// roots of `webpki-roots`); add a private CA with
/// [`add_root_certificates_pem`](Self::add_root_certificates_pem), or give a
/// whole rustls configuration with [`tls_config`](Self::tls_config).
///
/// ```no_run
/// use portcullis_server::{SocketIo, TunnelOptions};
///
/// # async fn run(ca_pem: &[u8]) -> Result<(), portcullis_server::TunnelError> {
/// let io = SocketIo::new();
/// let options = TunnelOptions::new().add_root_certificates_pem(ca_pem)?;
/// let tunnel = io
///     .connect_tunnel_with("Endpoint=https://gw.internal;AccessKey=...;Version=1.0;", "chat", options)
///     .await?;
/// # drop(tunnel); Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct TunnelOptions {
    extra_roots: Vec<CertificateDer<'static>>,
    config: Option<Arc<ClientConfig>>,
}

impl fmt::Debug for TunnelOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TunnelOptions")
            .field("extra_roots", &self.extra_roots.len())
            .field("custom_tls_config", &self.config.is_some())
            .finish()
    }
}

impl TunnelOptions {
    /// The defaults: public roots only.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also trusts the CA certificates in `pem` (one or more `CERTIFICATE`
    /// blocks), e.g. a private CA that signed the gateway's certificate.
    pub fn add_root_certificates_pem(mut self, pem: &[u8]) -> Result<Self, TunnelError> {
        let certificates = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TunnelError::Tls(format!("invalid CA certificate PEM: {e}")))?;
        if certificates.is_empty() {
            return Err(TunnelError::Tls("no certificate in the CA PEM".into()));
        }
        self.extra_roots.extend(certificates);
        Ok(self)
    }

    /// Uses this rustls configuration for `wss://` tunnels (client
    /// certificates, pinned roots, another provider); the roots added with
    /// [`add_root_certificates_pem`](Self::add_root_certificates_pem) are
    /// then ignored.
    pub fn tls_config(mut self, config: Arc<ClientConfig>) -> Self {
        self.config = Some(config);
        self
    }

    /// The rustls configuration of a `wss://` tunnel.
    pub(crate) fn client_config(&self) -> Result<Arc<ClientConfig>, TunnelError> {
        if let Some(config) = &self.config {
            return Ok(config.clone());
        }
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for certificate in &self.extra_roots {
            roots
                .add(certificate.clone())
                .map_err(|e| TunnelError::Tls(format!("unusable CA certificate: {e}")))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TunnelError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        // No ALPN: the tunnel is an HTTP/1.1 upgrade, which is what a server
        // assumes without one.
        Ok(Arc::new(config))
    }
}

/// Whether a failed connect was TLS refusing the gateway (an untrusted or
/// mismatched certificate): a configuration error, not an outage.
pub(crate) fn tls_failure(error: &tokio_tungstenite::tungstenite::Error) -> Option<String> {
    use tokio_tungstenite::tungstenite::Error;
    match error {
        Error::Tls(error) => Some(error.to_string()),
        Error::Io(io) => io
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .map(ToString::to_string),
        _ => None,
    }
}
