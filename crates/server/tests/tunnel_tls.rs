//! `connect_tunnel` to an `https://` gateway: the tunnel is `wss://`,
//! trusting a private CA given in `TunnelOptions`; events and acks cross it;
//! an untrusted certificate is an error, not a retry loop.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use portcullis_auth::{AccessKeys, ClientTokenOptions, mint_client_token};
use portcullis_gateway::{Gateway, GatewayConfig, TlsConfig};
use portcullis_server::extract::AckSender;
use portcullis_server::rustls;
use portcullis_server::{SocketIo, SocketRef, TunnelError, TunnelOptions};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio_tungstenite::Connector;
use tokio_tungstenite::tungstenite::Message;

const KEY: &str = "tunnel-tls-test-access-key";
const HUB: &str = "secure";
const STEP: Duration = Duration::from_secs(10);

/// A CA, and a certificate for 127.0.0.1 it signed, in `dir`.
struct Pki {
    ca_pem: String,
    dir: std::path::PathBuf,
}

impl Pki {
    fn new() -> Self {
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "tunnel test CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
        let dir = std::env::temp_dir().join(format!(
            "portcullis-tunnel-tls-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cert.pem"), leaf_cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), leaf_key.serialize_pem()).unwrap();
        Pki {
            ca_pem: ca_cert.pem(),
            dir,
        }
    }

    fn tls_config(&self) -> TlsConfig {
        TlsConfig::new(self.dir.join("cert.pem"), self.dir.join("key.pem"))
    }

    /// A client configuration trusting this CA only.
    fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(self.ca_pem.as_bytes()).unwrap())
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Arc::new(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A TLS gateway on loopback; returns its connection string.
async fn tls_gateway(pki: &Pki) -> (std::net::SocketAddr, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = GatewayConfig::new(addr, AccessKeys::new(vec![KEY.to_owned()]).unwrap());
    config.tls = Some(pki.tls_config());
    let gateway = Gateway::new(config);
    let connection_string = gateway.connection_string(addr).to_string();
    tokio::spawn(gateway.serve(listener, std::future::pending()));
    (addr, connection_string)
}

fn app() -> SocketIo {
    let io = SocketIo::new();
    io.ns("/", |socket: SocketRef| async move {
        socket.on("ping", |ack: AckSender| async move {
            ack.send(&"pong").ok();
        });
    });
    io
}

async fn next_text(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> String {
    loop {
        match tokio::time::timeout(STEP, ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) if text.as_str() == "2" => {
                ws.send(Message::text("3")).await.unwrap();
            }
            Ok(Some(Ok(Message::Text(text)))) => return text.to_string(),
            Ok(Some(Ok(_))) => {}
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_tunnel_to_an_https_gateway_is_wss_with_a_private_ca() {
    let pki = Pki::new();
    let (addr, connection_string) = tls_gateway(&pki).await;
    assert!(connection_string.starts_with("Endpoint=https://"));

    let io = app();
    let options = TunnelOptions::new()
        .add_root_certificates_pem(pki.ca_pem.as_bytes())
        .unwrap();
    let tunnel = tokio::time::timeout(
        STEP,
        io.connect_tunnel_with(&connection_string, HUB, options),
    )
    .await
    .expect("the tunnel within 10 s")
    .expect("the tunnel");
    assert!(tunnel.is_connected());
    assert!(tunnel.url().starts_with("wss://"), "{}", tunnel.url());

    // A client over wss; its event reaches the application over the wss
    // tunnel and the ack comes back.
    let token = mint_client_token(
        KEY,
        &format!("https://{addr}/clients/socketio/hubs/{HUB}"),
        &ClientTokenOptions {
            user_id: Some("alice".into()),
            ..Default::default()
        },
    );
    let url = format!(
        "wss://{addr}/clients/socketio/hubs/{HUB}/?EIO=4&transport=websocket&access_token={token}"
    );
    let (mut ws, _) = tokio_tungstenite::connect_async_tls_with_config(
        url,
        None,
        true,
        Some(Connector::Rustls(pki.client_config())),
    )
    .await
    .expect("wss client");
    assert!(next_text(&mut ws).await.starts_with("0{"));
    ws.send(Message::text("40")).await.unwrap();
    assert!(next_text(&mut ws).await.starts_with("40{"));
    ws.send(Message::text(r#"421["ping"]"#)).await.unwrap();
    assert_eq!(next_text(&mut ws).await, r#"431["pong"]"#);
    assert!(tunnel.stats().user_events >= 1);
}

#[tokio::test]
async fn an_untrusted_gateway_certificate_is_an_error_not_a_retry() {
    let pki = Pki::new();
    let (_, connection_string) = tls_gateway(&pki).await;
    // Public roots only: the private CA is unknown.
    let result = tokio::time::timeout(STEP, app().connect_tunnel(&connection_string, HUB))
        .await
        .expect("an answer within 10 s, not endless retries");
    match result {
        Err(TunnelError::Tls(reason)) => {
            assert!(reason.to_lowercase().contains("certificate"), "{reason}")
        }
        other => panic!("expected a TLS error, got {other:?}"),
    }

    // A bad CA PEM is refused up front.
    assert!(matches!(
        TunnelOptions::new().add_root_certificates_pem(b"not a certificate"),
        Err(TunnelError::Tls(_))
    ));
}
