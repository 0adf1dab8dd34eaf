//! HTTPS with a self-signed certificate: curl (when installed) fetching a
//! snapshot and the start of the stream from the binary, a rustls client
//! reading the stream, and clients that never finish the handshake.

mod common;

use common::*;
use std::process::Command;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn tls_server(cert: &Cert, extra: &[&str]) -> TestServer {
    let mut args: Vec<String> = vec!["--source".into(), "pattern:160x120@30".into()];
    args.extend(cert.args());
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    TestServer::start(&args).await
}

#[tokio::test]
async fn rustls_client_reads_the_stream() {
    let cert = Cert::new();
    let s = tls_server(&cert, &[]).await;
    let tcp = TcpStream::connect(s.addr).await.expect("connect");
    let mut tls = cert.handshake(tcp, "localhost").await;
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        None,
        "client offered no ALPN"
    );
    tls.write_all(b"GET /stream HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("send");
    let (head, rest) = read_head(&mut tls).await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains(&format!("multipart/x-mixed-replace;boundary={BOUNDARY}")));
    let frames = FrameReader::new(&mut tls, &rest).frames(5).await;
    assert_eq!(decode(&frames[4]), (160, 120));

    // Plain HTTP on the HTTPS port gets no HTTP answer.
    let mut plain = TcpStream::connect(s.addr).await.expect("connect");
    plain
        .write_all(b"GET /snapshot HTTP/1.1\r\nConnection: close\r\n\r\n")
        .await
        .expect("send");
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut got))
        .await
        .expect("closed within 5 s");
    assert!(!got.starts_with(b"HTTP/1.1 200"));
    s.stop().await;
}

/// Connections that never send a ClientHello do not hold up the accept loop
/// and are closed at the head deadline.
#[tokio::test]
async fn stalled_handshakes_block_nobody_and_time_out() {
    let cert = Cert::new();
    let s = tls_server(&cert, &["--header-timeout", "2"]).await;
    let mut silent = Vec::new();
    for _ in 0..50 {
        silent.push(TcpStream::connect(s.addr).await.expect("connect"));
    }
    // One that starts a handshake with garbage and then stalls.
    let mut partial = TcpStream::connect(s.addr).await.expect("connect");
    partial
        .write_all(&[0x16, 0x03, 0x01, 0x02])
        .await
        .expect("send");
    silent.push(partial);

    let started = Instant::now();
    let tcp = TcpStream::connect(s.addr).await.expect("connect");
    let mut tls = cert.handshake(tcp, "127.0.0.1").await;
    tls.write_all(b"GET /snapshot HTTP/1.1\r\nConnection: close\r\n\r\n")
        .await
        .expect("send");
    let (head, _) = read_head(&mut tls).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // Well before the stalled handshakes time out.
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "served after {:?}",
        started.elapsed()
    );

    for io in silent {
        expect_closed(io, Duration::from_secs(5)).await;
    }
    assert!(started.elapsed() >= Duration::from_millis(1800));
    s.stop().await;
}

#[test]
fn curl_fetches_snapshot_and_stream_over_https() {
    require("curl");
    let cert = Cert::new();
    let mut args: Vec<String> = vec![
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--source".into(),
        "pattern:320x240@30".into(),
    ];
    args.extend(cert.args());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut d = Daemon::start(&args, &[("MJPEGD_AUTH", "cam:era-pass")], 1);
    assert!(
        d.listening[0].starts_with("https://127.0.0.1:"),
        "{:?}",
        d.listening
    );
    let port = d.addr(0).port();
    let cacert = cert.cert.display().to_string();
    let resolve = format!("localhost:{port}:127.0.0.1");
    let curl = |path: &str, extra: &[&str]| {
        Command::new("curl")
            .args([
                "-sS",
                "--cacert",
                &cacert,
                "--resolve",
                &resolve,
                "-u",
                "cam:era-pass",
            ])
            .args(extra)
            .arg(format!("https://localhost:{port}{path}"))
            .output()
            .expect("run curl")
    };

    let out = curl("/snapshot", &["--fail"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(decode(&out.stdout), (320, 240));

    // The stream never ends: curl stops after its time limit (exit 28)
    // with the start of the stream.
    let out = curl("/stream", &["--max-time", "2"]);
    assert_eq!(
        out.status.code(),
        Some(28),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let body = out.stdout;
    assert!(body.len() > 1000, "{} bytes", body.len());
    // Every complete part of what arrived decodes.
    let delimiter = format!("--{BOUNDARY}\r\n");
    let parts = body
        .windows(delimiter.len())
        .filter(|w| *w == delimiter.as_bytes())
        .count();
    assert!(parts >= 3, "{parts} parts in 2 s");
    let frames = rt.block_on(FrameReader::new(&body[..], &[]).frames(parts - 1));
    assert_eq!(decode(&frames[0]), (320, 240));

    // Without the certificate curl refuses the connection: it is real TLS.
    let out = Command::new("curl")
        .args(["-sS", "--resolve", &resolve])
        .arg(format!("https://localhost:{port}/snapshot"))
        .output()
        .expect("run curl");
    assert_ne!(out.status.code(), Some(0));
    // Wrong credentials over TLS: 401.
    let out = curl(
        "/snapshot",
        &["-o", "/dev/null", "-w", "%{http_code}", "-u", "cam:wrong"],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "401");
    assert_eq!(d.terminate(), Some(0));
}
