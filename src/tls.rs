//! TLS for HTTPS: the server certificate chain and key, loaded once at
//! start-up into a rustls acceptor (ring crypto provider, so building needs no
//! C toolchain beyond what `ring` itself brings).
//!
//! The handshake itself runs in each connection's task, under the request
//! head deadline, so a client that connects and never says hello cannot hold
//! up other clients.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{self, ServerConfig};

/// TLS connections write their bytes (the kernel cannot encrypt a
/// `sendfile`).
impl crate::http::Transport for tokio_rustls::server::TlsStream<tokio::net::TcpStream> {}

/// A loaded certificate and key, ready to accept connections.
#[derive(Clone)]
pub struct TlsSettings {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub acceptor: TlsAcceptor,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish()
    }
}

/// Two settings are the same when they come from the same files.
impl PartialEq for TlsSettings {
    fn eq(&self, other: &Self) -> bool {
        self.cert == other.cert && self.key == other.key
    }
}

impl TlsSettings {
    /// Loads the PEM certificate chain at `cert` (the server's certificate
    /// first) and the PEM private key at `key` (PKCS#8, PKCS#1 or SEC1).
    /// The error is one line naming the file and what is wrong.
    pub fn load(cert: &Path, key: &Path) -> Result<TlsSettings, String> {
        let chain = read_chain(cert)?;
        let private = PrivateKeyDer::from_pem_file(key).map_err(|e| {
            format!(
                "cannot read a PEM private key from {}: {}",
                key.display(),
                e
            )
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup failed: {e}"))?
            .with_no_client_auth()
            .with_single_cert(chain, private)
            .map_err(|e| {
                format!(
                    "certificate {} and key {} do not work together: {e}",
                    cert.display(),
                    key.display()
                )
            })?;
        // Only HTTP/1.1 is spoken; saying so lets clients that prefer HTTP/2
        // fall back without guessing.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsSettings {
            cert: cert.to_owned(),
            key: key.to_owned(),
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let what = |e: String| format!("cannot read PEM certificates from {}: {e}", path.display());
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| what(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| what(e.to_string()))?;
    if chain.is_empty() {
        return Err(what("no CERTIFICATE section".into()));
    }
    Ok(chain)
}
