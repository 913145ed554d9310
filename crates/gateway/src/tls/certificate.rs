//! Loading a certificate and its key from PEM files, and the resolver that
//! hands the current one to every handshake while a reload swaps it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::TlsConfig;

/// Why a certificate or key could not be loaded. Messages name files and
/// causes, never key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The certificate file has no PEM certificate (or a malformed one).
    #[error("{}: no valid PEM certificate", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The key file has no PEM private key (or a malformed one).
    #[error("{}: no valid PEM private key (PKCS#8, PKCS#1 or SEC1)", path.display())]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// The key is not usable, or is not the certificate's.
    #[error("the key in {} does not fit the certificate in {}: {reason}", key.display(), cert.display())]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said (it names no key material).
        reason: rustls::Error,
    },
    /// rustls refused the configuration.
    #[error("cannot configure TLS: {0}")]
    Config(rustls::Error),
}

/// The gateway's certificate: what every TLS handshake presents. A reload
/// replaces it atomically; handshakes in progress and established
/// connections keep the one they started with.
pub struct CertificateStore {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<CertifiedKey>,
}

impl fmt::Debug for CertificateStore {
    // Paths only: the certified key holds the private key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateStore")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

impl CertificateStore {
    /// Reads the files named by `config`.
    pub fn load(config: &TlsConfig) -> Result<Arc<Self>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = read(&config.cert_path, &config.key_path, &provider)?;
        Ok(Arc::new(CertificateStore {
            cert_path: config.cert_path.clone(),
            key_path: config.key_path.clone(),
            provider,
            current: ArcSwap::from_pointee(key),
        }))
    }

    /// Reads the files again and, if they hold a valid certificate and
    /// matching key, presents them from the next handshake on. On error the
    /// current certificate stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let key = read(&self.cert_path, &self.key_path, &self.provider)?;
        self.current.store(Arc::new(key));
        Ok(())
    }

    /// The certificate file.
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// The key file.
    pub fn key_path(&self) -> &Path {
        &self.key_path
    }

    /// The certificate chain presented now (leaf first).
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        self.current.load().cert.clone()
    }
}

impl ResolvesServerCert for CertificateStore {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Parses both files and checks that the key signs for the certificate.
///
/// The files are small and read a few times a day at most, so they are read
/// synchronously.
fn read(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let cert_pem = read_file(cert)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .ok()
        .filter(|chain| !chain.is_empty())
        .ok_or_else(|| TlsError::NoCertificate {
            path: cert.to_owned(),
        })?;
    let key_pem = read_file(key)?;
    // The parse error is dropped on purpose: it may quote the file's bytes.
    let private_key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::NoKey {
        path: key.to_owned(),
    })?;
    CertifiedKey::from_der(chain, private_key, provider).map_err(|reason| TlsError::Mismatch {
        cert: cert.to_owned(),
        key: key.to_owned(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Files {
        dir: PathBuf,
    }

    impl Files {
        fn new(name: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("portcullis-tls-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            Files { dir }
        }

        fn write(&self, cert: &str, key: &str) -> TlsConfig {
            let config = TlsConfig::new(self.dir.join("cert.pem"), self.dir.join("key.pem"));
            std::fs::write(&config.cert_path, cert).unwrap();
            std::fs::write(&config.key_path, key).unwrap();
            config
        }
    }

    impl Drop for Files {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn self_signed(name: &str) -> (String, String) {
        let certified = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
        (certified.cert.pem(), certified.signing_key.serialize_pem())
    }

    #[test]
    fn loads_reloads_and_keeps_the_old_certificate_on_error() {
        let files = Files::new("store");
        let (cert_a, key_a) = self_signed("a.test");
        let config = files.write(&cert_a, &key_a);
        let store = CertificateStore::load(&config).unwrap();
        let first = store.chain();

        // A key of another certificate: refused, the old one stays.
        let (cert_b, key_b) = self_signed("b.test");
        files.write(&cert_b, &key_a);
        let error = store.reload().unwrap_err();
        assert!(matches!(error, TlsError::Mismatch { .. }), "{error}");
        assert_eq!(store.chain(), first);

        // Garbage where the key should be: refused, and the message does
        // not quote the file.
        files.write(
            &cert_b,
            "-----BEGIN PRIVATE KEY-----\nsecretsecret\n-----END PRIVATE KEY-----\n",
        );
        let error = store.reload().unwrap_err();
        assert!(!error.to_string().contains("secret"), "{error}");
        assert_eq!(store.chain(), first);

        files.write(&cert_b, &key_b);
        store.reload().unwrap();
        assert_ne!(store.chain(), first);
    }

    #[test]
    fn debug_shows_no_key_material() {
        let files = Files::new("debug");
        let (cert, key) = self_signed("a.test");
        let config = files.write(&cert, &key);
        let store = CertificateStore::load(&config).unwrap();
        let debug = format!("{store:?}");
        assert!(debug.contains("key.pem"));
        assert!(!debug.contains("PRIVATE"));
        assert!(!debug.contains("der"), "{debug}");
    }

    #[test]
    fn missing_files_and_empty_certificates_are_errors() {
        let files = Files::new("missing");
        let config = TlsConfig::new(files.dir.join("nope.pem"), files.dir.join("nope.key"));
        assert!(matches!(
            CertificateStore::load(&config),
            Err(TlsError::Read { .. })
        ));
        let (_, key) = self_signed("a.test");
        let config = files.write("", &key);
        assert!(matches!(
            CertificateStore::load(&config),
            Err(TlsError::NoCertificate { .. })
        ));
    }
}
