//! The HTTP contract: methods, status codes, HTTP/1.0 and 1.1, keep-alive,
//! malformed requests. Against an in-process server on 127.0.0.1:0.

mod common;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn server() -> TestServer {
    TestServer::start(&["--source", "pattern:160x120@30"]).await
}

#[tokio::test]
async fn status_codes_and_methods() {
    let s = server().await;
    let a = s.addr;
    assert_eq!(get(a, "/nope").await.0, 404);
    assert_eq!(get(a, "/?action=bogus").await.0, 404);
    let (code, head, _) = request(a, "POST /stream HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc").await;
    assert_eq!(code, 405);
    assert!(head.contains("\r\nAllow: GET, HEAD, OPTIONS\r\n"), "{head}");
    assert!(
        head.contains("\r\nConnection: close\r\n"),
        "a request with a body is closed"
    );
    assert_eq!(
        request(a, "DELETE /snapshot HTTP/1.1\r\nConnection: close\r\n\r\n")
            .await
            .0,
        405
    );
    let (code, head, body) =
        request(a, "OPTIONS /stream HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert_eq!(code, 204);
    assert!(head.contains("Allow: GET, HEAD, OPTIONS"));
    assert!(body.is_empty());
    s.stop().await;
}

#[tokio::test]
async fn head_requests_send_headers_only() {
    let s = server().await;
    let (code, head, body) = request(
        s.addr,
        "HEAD /snapshot HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(code, 200);
    assert!(head.contains("Content-Type: image/jpeg"));
    assert!(body.is_empty());
    let (code, head, body) = request(s.addr, "HEAD /stream HTTP/1.1\r\n\r\n").await;
    assert_eq!(code, 200);
    assert!(head.contains("multipart/x-mixed-replace"));
    assert!(body.is_empty(), "HEAD /stream sends no body and closes");
    s.stop().await;
}

#[tokio::test]
async fn http10_clients_stream_and_close() {
    let s = server().await;
    let (code, head, body) = request(s.addr, "GET /snapshot HTTP/1.0\r\n\r\n").await;
    assert_eq!(code, 200);
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n"));
    assert_eq!(decode(&body), (160, 120));
    let mut c = StreamClient::open(s.addr, "/stream", "1.0").await;
    assert!(c.head.starts_with("HTTP/1.0 200 OK\r\n"), "{}", c.head);
    c.next_frame().await;
    s.stop().await;
}

#[tokio::test]
async fn keep_alive_serves_several_requests_on_one_connection() {
    let s = server().await;
    let mut io = TcpStream::connect(s.addr).await.expect("connect");
    // Two pipelined requests, then a third after reading.
    io.write_all(b"GET /status HTTP/1.1\r\nHost: a\r\n\r\nGET /nope HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .expect("send");
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    while count(&got, b"HTTP/1.1 ") < 2 || !ends_complete(&got) {
        let n = io.read(&mut buf).await.expect("read");
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200 OK"));
    assert!(text.contains("HTTP/1.1 404 Not Found"));
    io.write_all(b"GET /snapshot HTTP/1.1\r\nConnection: close\r\n\r\n")
        .await
        .expect("send");
    let mut rest = Vec::new();
    io.read_to_end(&mut rest).await.expect("read");
    assert!(rest.starts_with(b"HTTP/1.1 200 OK"));
    s.stop().await;
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

/// The 404's body is "not found\n", last in the pipelined pair.
fn ends_complete(got: &[u8]) -> bool {
    got.ends_with(b"not found\n")
}

#[tokio::test]
async fn malformed_requests_get_4xx() {
    let s = server().await;
    for (raw, want) in [
        ("GARBAGE\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nBad Header Line\r\n\r\n", 400),
        ("GET /%ff%fe HTTP/1.1\r\n\r\n", 400),
        ("GET / HTTP/9.9\r\n\r\n", 400),
    ] {
        let (code, _, _) = request(s.addr, raw).await;
        assert_eq!(code, want, "{raw:?}");
    }
    let big = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(64 * 1024));
    let mut io = TcpStream::connect(s.addr).await.expect("connect");
    let _ = io.write_all(big.as_bytes()).await;
    let mut resp = Vec::new();
    let _ = io.read_to_end(&mut resp).await;
    assert!(
        resp.starts_with(b"HTTP/1.1 431 "),
        "{}",
        String::from_utf8_lossy(&resp)
    );
    // The server is still fine.
    assert_eq!(get(s.addr, "/snapshot").await.0, 200);
    s.stop().await;
}

#[tokio::test]
async fn index_page_shows_every_stream() {
    let s = TestServer::start(&[
        "--source",
        "pattern:160x120@30",
        "--source",
        "garage=pattern@5",
    ])
    .await;
    let (code, head, body) = get(s.addr, "/").await;
    assert_eq!(code, 200);
    assert!(head.contains("text/html"));
    let html = String::from_utf8(body).expect("UTF-8");
    assert!(html.contains(r#"<img src="streams/pattern/stream""#));
    assert!(html.contains(r#"<img src="streams/garage/stream""#));
    assert!(html.contains("streams/garage/snapshot"));
    s.stop().await;
}
