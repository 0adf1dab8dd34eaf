//! A self-signed test certificate and a client that trusts only it.

use crate::common::temp_path;
use std::path::PathBuf;

/// A self-signed certificate for localhost and 127.0.0.1, written to PEM
/// files; removed on drop.
pub struct Cert {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub der: tokio_rustls::rustls::pki_types::CertificateDer<'static>,
}

impl Cert {
    pub fn new() -> Cert {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("generate certificate");
        let cert = temp_path("cert.pem");
        let key = temp_path("key.pem");
        std::fs::write(&cert, ck.cert.pem()).expect("write cert");
        std::fs::write(&key, ck.signing_key.serialize_pem()).expect("write key");
        Cert {
            cert,
            key,
            der: ck.cert.der().clone(),
        }
    }

    /// `--tls-cert` and `--tls-key` for the server.
    pub fn args(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.cert.display().to_string(),
            "--tls-key".into(),
            self.key.display().to_string(),
        ]
    }

    /// A TLS client session over `io` with server `name`, trusting this
    /// certificate only.
    pub async fn handshake(
        &self,
        io: tokio::net::TcpStream,
        name: &str,
    ) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        let name = tokio_rustls::rustls::pki_types::ServerName::try_from(name.to_owned())
            .expect("server name");
        self.connector().connect(name, io).await.expect("handshake")
    }

    /// A client that trusts this certificate only.
    pub fn connector(&self) -> tokio_rustls::TlsConnector {
        use std::sync::Arc;
        use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
        let mut roots = RootCertStore::empty();
        roots.add(self.der.clone()).expect("add root");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocols")
            .with_root_certificates(roots)
            .with_no_client_auth();
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }
}

impl Drop for Cert {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.cert);
        let _ = std::fs::remove_file(&self.key);
    }
}
