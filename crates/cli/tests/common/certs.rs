//! Certificates made by the tests: a CA and leaf certificates for
//! `localhost` and `127.0.0.1` that it signs, written as PEM files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// A test CA.
pub struct Ca {
    /// Its certificate, PEM (what clients are told to trust).
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A leaf certificate and its key, PEM.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    /// The certificate, DER (to recognise it in a handshake).
    pub der: Vec<u8>,
}

impl Ca {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate for `localhost` and `127.0.0.1` with `serial`.
    pub fn leaf(&self, serial: u64) -> Leaf {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("leaf params");
        params.serial_number = Some(SerialNumber::from(serial));
        params
            .distinguished_name
            .push(DnType::CommonName, "portcullis test");
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().expect("leaf key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("leaf certificate");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }
}

/// A directory of certificate files, removed on drop.
pub struct CertDir {
    pub dir: PathBuf,
}

impl CertDir {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "portcullis-tls-{name}-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).expect("cert dir");
        CertDir { dir }
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    pub fn key(&self) -> PathBuf {
        self.dir.join("key.pem")
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Writes `leaf` as the certificate and key, each replaced atomically
    /// (written aside, then renamed), as certificate tools do.
    pub fn install(&self, leaf: &Leaf) {
        replace(&self.cert(), &leaf.cert_pem);
        replace(&self.key(), &leaf.key_pem);
    }

    pub fn write_ca(&self, ca: &Ca) {
        std::fs::write(self.ca(), &ca.pem).expect("write CA");
    }

    pub fn cert_str(&self) -> String {
        self.cert().to_str().expect("utf-8 path").to_owned()
    }

    pub fn key_str(&self) -> String {
        self.key().to_str().expect("utf-8 path").to_owned()
    }
}

impl Drop for CertDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn replace(path: &Path, contents: &str) {
    let aside = path.with_extension("new");
    std::fs::write(&aside, contents).expect("write");
    std::fs::rename(&aside, path).expect("rename");
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

/// A rustls client configuration (ring) trusting exactly `cas`, offering
/// ALPN `http/1.1` when `alpn` is set.
pub fn client_config(cas: &[&Ca]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in cas {
        let der = CertificateDer::from_pem_slice(ca.pem.as_bytes()).expect("CA PEM");
        roots.add(der).expect("add CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// Connects to `addr` over TLS trusting `cas` and returns the leaf
/// certificate the server presented (DER) and the negotiated ALPN protocol,
/// or the handshake error.
pub async fn presented_certificate(
    addr: &str,
    cas: &[&Ca],
) -> Result<(Vec<u8>, Option<Vec<u8>>), std::io::Error> {
    let mut config = (*client_config(cas)).clone();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from("127.0.0.1").expect("server name");
    let stream = connector.connect(name, tcp).await?;
    let (_, connection) = stream.get_ref();
    let leaf = connection
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|der| der.to_vec())
        .expect("a certificate");
    Ok((leaf, connection.alpn_protocol().map(<[u8]>::to_vec)))
}

/// A reqwest client trusting `ca` only (no public roots).
pub fn https_client(ca: &Ca) -> reqwest::Client {
    let certificate = reqwest::Certificate::from_pem(ca.pem.as_bytes()).expect("CA for reqwest");
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(certificate)
        .build()
        .expect("https client")
}
