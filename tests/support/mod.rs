//! Helpers for the security and fault tests: read the first frames of a
//! stream over any connection (TCP, TLS, unix socket), a test certificate.
//! The binary runner (`Daemon`) lives in `tests/common`, shared with the
//! other tests; it is re-exported here for the tests that use this module.
#![allow(dead_code)] // each test file uses a different subset

use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

#[allow(unused_imports)] // as with dead_code: each test file uses a subset
pub use crate::common::{Daemon, temp_path};

/// Reads a response head (through the blank line); returns it and any bytes
/// read past it.
pub async fn read_head<R: AsyncRead + Unpin>(io: &mut R) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return (String::from_utf8_lossy(&buf).into_owned(), rest);
        }
        assert!(buf.len() < 64 * 1024, "no head end in 64 KiB");
        read_some(io, &mut buf).await;
    }
}

async fn read_some<R: AsyncRead + Unpin>(io: &mut R, buf: &mut Vec<u8>) {
    let mut chunk = [0u8; 16 * 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), io.read(&mut chunk))
        .await
        .expect("data within 5 s")
        .expect("read");
    assert!(n > 0, "connection closed");
    buf.extend_from_slice(&chunk[..n]);
}

/// Reads `count` parts of a `multipart/x-mixed-replace` body with boundary
/// `mjpegd-boundary` (starting with `rest`, bytes already read past the head)
/// and returns their JPEGs, each checked to decode.
pub async fn read_frames<R: AsyncRead + Unpin>(
    io: &mut R,
    mut buf: Vec<u8>,
    count: usize,
) -> Vec<Vec<u8>> {
    let delimiter = format!("--{}\r\n", crate::common::BOUNDARY).into_bytes();
    let mut frames = Vec::new();
    while frames.len() < count {
        // Part: delimiter, headers, blank line, Content-Length bytes, CRLF.
        let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            read_some(io, &mut buf).await;
            continue;
        };
        assert!(
            buf.starts_with(&delimiter),
            "{:?}",
            String::from_utf8_lossy(&buf[..head_end])
        );
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no length in {head:?}"));
        let start = head_end + 4;
        while buf.len() < start + len + 2 {
            read_some(io, &mut buf).await;
        }
        let jpeg = buf[start..start + len].to_vec();
        assert_eq!(&buf[start + len..start + len + 2], b"\r\n");
        decode(&jpeg);
        frames.push(jpeg);
        buf.drain(..start + len + 2);
    }
    frames
}

// Every test crate that uses this module also has `mod common`.
pub use crate::common::decode;

/// Sends `raw` on a fresh connection of any kind and reads the response until
/// the server closes; returns (status, head, body).
pub async fn exchange<S>(mut io: S, raw: &[u8]) -> (u16, String, Vec<u8>)
where
    S: AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::AsyncWriteExt;
    io.write_all(raw).await.expect("send");
    let mut all = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), io.read_to_end(&mut all))
        .await
        .expect("response within 10 s");
    crate::common::split_response(&all)
}

/// Raises this process's open-file limit to its hard maximum (tests that
/// open thousands of connections).
pub fn raise_fd_limit() -> u64 {
    mjpegd::rlimit::raise_fd_limit()
}

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
