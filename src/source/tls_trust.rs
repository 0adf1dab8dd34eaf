//! Which server certificates a relay source trusts over HTTPS.
//!
//! By default the Mozilla root certificates, as browsers do. IP cameras
//! usually present a certificate they signed themselves, which no public
//! root vouches for; for those a stream can trust its own CA certificate
//! (`tls_ca`: the camera's certificate is issued by it) or pin the camera's
//! certificate (`tls_pin`: exactly this certificate, by file or SHA-256
//! fingerprint, whatever names or dates it holds). A failed verification
//! names these options and the fingerprint of the certificate presented,
//! so the fix is one config line.

use super::SourceError;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::{DigitallySignedStruct, SignatureScheme};

/// The trust setting of one stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum TlsTrust {
    /// Public CAs (Mozilla's root store).
    #[default]
    PublicRoots,
    /// Certificates issued by the CA certificate(s) in this PEM file.
    CaFile(PathBuf),
    /// Exactly the certificate with this SHA-256 fingerprint.
    Pinned([u8; 32]),
}

impl TlsTrust {
    /// `tls_pin`'s value: `sha256:HEX` (colons allowed, as openssl prints
    /// it) or the path of the certificate (PEM or DER).
    pub fn pin(value: &str) -> Result<TlsTrust, String> {
        if let Some(hex) = value.strip_prefix("sha256:") {
            let digits: String = hex.chars().filter(|c| *c != ':').collect();
            let bytes = (0..digits.len())
                .step_by(2)
                .map(|i| {
                    digits
                        .get(i..i + 2)
                        .and_then(|d| u8::from_str_radix(d, 16).ok())
                })
                .collect::<Option<Vec<u8>>>();
            return bytes
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .map(TlsTrust::Pinned)
                .ok_or_else(|| format!("'{value}' is not sha256: and 64 hex digits"));
        }
        let path = Path::new(value);
        let der = match CertificateDer::from_pem_file(path) {
            Ok(cert) => cert.as_ref().to_vec(),
            Err(_) => std::fs::read(path).map_err(|e| format!("cannot read {value}: {e}"))?,
        };
        Ok(TlsTrust::Pinned(fingerprint(&der)))
    }

    /// `tls_ca`'s value: a PEM file of one or more CA certificates, checked
    /// now so that a wrong path is a start-up error.
    pub fn ca_file(path: &str) -> Result<TlsTrust, String> {
        roots_from(Path::new(path))?;
        Ok(TlsTrust::CaFile(PathBuf::from(path)))
    }

    /// The rustls client settings for this trust.
    pub(super) fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, SourceError> {
        static PUBLIC: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
        let made = match self {
            TlsTrust::PublicRoots => {
                return PUBLIC
                    .get_or_init(|| {
                        let roots = rustls::RootCertStore {
                            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                        };
                        explained_webpki(roots, self.clone())
                    })
                    .clone()
                    .map_err(|e| SourceError::new(format!("cannot set up TLS: {e}")));
            }
            TlsTrust::CaFile(path) => {
                roots_from(path).and_then(|r| explained_webpki(r, self.clone()))
            }
            TlsTrust::Pinned(pin) => with_verifier(Verifier::new(Check::Pinned(*pin))),
        };
        made.map_err(|e| SourceError::new(format!("cannot set up TLS: {e}")))
    }
}

impl fmt::Display for TlsTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsTrust::PublicRoots => f.write_str("public roots"),
            TlsTrust::CaFile(p) => write!(f, "tls_ca {}", p.display()),
            TlsTrust::Pinned(pin) => write!(f, "tls_pin sha256:{}", hex(pin)),
        }
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots_from(path: &Path) -> Result<rustls::RootCertStore, String> {
    let name = path.display();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read CA file {name}: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("CA file {name}: {e}"))?;
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!("CA file {name} holds no usable PEM certificate"));
    }
    Ok(roots)
}

fn with_verifier(v: Arc<dyn ServerCertVerifier>) -> Result<Arc<rustls::ClientConfig>, String> {
    rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map(|b| {
            Arc::new(
                b.dangerous()
                    .with_custom_certificate_verifier(v)
                    .with_no_client_auth(),
            )
        })
        .map_err(|e| e.to_string())
}

/// The standard (webpki) verification, with failures that say what to do.
fn explained_webpki(
    roots: rustls::RootCertStore,
    trust: TlsTrust,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let inner =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| e.to_string())?;
    with_verifier(Verifier::new(Check::Explained(inner, trust)))
}

pub fn fingerprint(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// How the server's certificate is checked.
#[derive(Debug)]
enum Check {
    /// The standard (webpki) check, with failures that say what to do.
    Explained(Arc<rustls::client::WebPkiServerVerifier>, TlsTrust),
    /// Exactly the pinned certificate: names, dates and issuer do not
    /// matter, the pin is the whole trust.
    Pinned([u8; 32]),
}

/// A certificate check, plus the proof that the server holds the
/// certificate's private key (the handshake signatures), the same for every
/// kind of trust.
#[derive(Debug)]
struct Verifier {
    check: Check,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl Verifier {
    fn new(check: Check) -> Arc<Verifier> {
        Arc::new(Verifier {
            check,
            provider: provider(),
        })
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let seen = || fingerprint(end_entity);
        match &self.check {
            Check::Explained(inner, trust) => inner
                .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
                .map_err(|e| {
                    let trusted = match trust {
                        TlsTrust::CaFile(p) => format!("not issued by tls_ca {}", p.display()),
                        _ => "not signed by a public CA".to_owned(),
                    };
                    rustls::Error::General(format!(
                        "{e} ({trusted}; for a camera's own certificate set tls_pin = \
                         \"sha256:{}\", or tls_ca = \"PATH\" to the CA that issued it, \
                         in the stream's [[stream]] table)",
                        hex(&seen())
                    ))
                }),
            Check::Pinned(pin) if seen() == *pin => Ok(ServerCertVerified::assertion()),
            Check::Pinned(pin) => Err(rustls::Error::General(format!(
                "the server's certificate (sha256:{}) is not the one in tls_pin (sha256:{}); \
                 if the camera has a new certificate, pin that one",
                hex(&seen()),
                hex(pin)
            ))),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_parse_from_fingerprints() {
        let hex64 = "ab".repeat(32);
        assert_eq!(
            TlsTrust::pin(&format!("sha256:{hex64}")),
            Ok(TlsTrust::Pinned([0xab; 32]))
        );
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(
            TlsTrust::pin(&format!("sha256:{colons}")),
            Ok(TlsTrust::Pinned([0xab; 32]))
        );
        assert!(TlsTrust::pin("sha256:abcd").is_err());
        assert!(TlsTrust::pin("/nonexistent/cam.pem").is_err());
        assert!(TlsTrust::ca_file("/nonexistent/ca.pem").is_err());
    }
}
