//! Helpers for the security and fault tests: run the binary with a chosen
//! environment and capture its stderr, read the first frames of a stream over
//! any connection (TCP, TLS, unix socket), count a process's open files.
#![allow(dead_code)] // each test file uses a different subset

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The `mjpegd` binary, running, with its listen lines and a file holding
/// everything it wrote to stderr.
pub struct Daemon {
    pub child: Child,
    /// The addresses from its `listening on ...` lines, e.g.
    /// `http://127.0.0.1:4711` or `unix:/tmp/x.sock`.
    pub listening: Vec<String>,
    pub stderr: PathBuf,
}

impl Daemon {
    /// Runs the binary with `args` and `env`, and waits for `lines`
    /// `listening on` lines on stdout.
    pub fn start(args: &[&str], env: &[(&str, &str)], lines: usize) -> Daemon {
        let stderr = temp_path("stderr");
        let mut child = Command::new(env!("CARGO_BIN_EXE_mjpegd"))
            .args(args)
            .env_remove("MJPEGD_AUTH")
            .env_remove("MJPEGD_TOKEN_SECRET")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("run mjpegd");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut reader = std::io::BufReader::new(stdout);
        let mut listening = Vec::new();
        while listening.len() < lines {
            let mut line = String::new();
            let n = reader.read_line(&mut line).expect("read stdout");
            if n == 0 {
                let _ = child.wait();
                panic!(
                    "mjpegd exited early: {}",
                    std::fs::read_to_string(&stderr).unwrap_or_default()
                );
            }
            let addr = line
                .trim()
                .strip_prefix("listening on ")
                .unwrap_or_else(|| panic!("unexpected line {line:?}"));
            listening.push(addr.to_owned());
        }
        Daemon {
            child,
            listening,
            stderr,
        }
    }

    /// The `HOST:PORT` of the `n`th listen line (`http://` or `https://`).
    pub fn addr(&self, n: usize) -> std::net::SocketAddr {
        let l = &self.listening[n];
        l.split_once("://")
            .map(|(_, a)| a)
            .unwrap_or_else(|| panic!("not a TCP address: {l}"))
            .parse()
            .expect("address")
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// SIGTERM, then waits up to 10 s for the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            assert!(Instant::now() < deadline, "mjpegd did not exit in 10 s");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Open file descriptors of the process.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("proc fd")
            .count()
    }

    /// Resident memory in KiB.
    pub fn rss_kib(&self) -> u64 {
        crate::common::rss_kib(self.pid())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        crate::common::stop_child(&mut self.child);
        let _ = std::fs::remove_file(&self.stderr);
    }
}

/// A fresh path in the temp directory (not created).
pub fn temp_path(what: &str) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "mjpegd-test-{}-{}-{what}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

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
    let delimiter = b"--mjpegd-boundary\r\n";
    let mut frames = Vec::new();
    while frames.len() < count {
        // Part: delimiter, headers, blank line, Content-Length bytes, CRLF.
        let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            read_some(io, &mut buf).await;
            continue;
        };
        assert!(
            buf.starts_with(delimiter),
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
