//! Plain HTTP exchanges with the server over any connection (TCP, TLS, unix
//! socket), and connections that read slowly.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads a response head (through the blank line); returns it and any bytes
/// read past it.
pub async fn read_head<R: AsyncRead + Unpin>(io: &mut R) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return (String::from_utf8(buf).expect("head is UTF-8"), rest);
        }
        assert!(buf.len() < 64 * 1024, "no head end in 64 KiB");
        let mut chunk = [0u8; 16 * 1024];
        let n = tokio::time::timeout(Duration::from_secs(5), io.read(&mut chunk))
            .await
            .expect("data within 5 s")
            .expect("read");
        assert!(n > 0, "connection closed");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Sends `raw` on a connection of any kind and reads the response until the
/// server closes; returns (status, head, body).
pub async fn exchange<S>(mut io: S, raw: &[u8]) -> (u16, String, Vec<u8>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    io.write_all(raw).await.expect("send");
    let mut all = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), io.read_to_end(&mut all))
        .await
        .expect("response within 10 s");
    // A TLS peer may close without `close_notify` after the whole response:
    // an error then is no error of the response.
    if let Err(e) = read {
        assert!(!all.is_empty(), "read: {e}");
    }
    split_response(&all)
}

/// A one-shot request on a new TCP connection; returns (status code, head,
/// body). Reads until close.
pub async fn request(addr: SocketAddr, raw: &str) -> (u16, String, Vec<u8>) {
    let io = TcpStream::connect(addr).await.expect("connect");
    exchange(io, raw.as_bytes()).await
}

/// A whole response as read until close: (status code, head, body).
pub fn split_response(all: &[u8]) -> (u16, String, Vec<u8>) {
    let end = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(all)));
    let head = String::from_utf8_lossy(&all[..end + 4]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, head, all[end + 4..].to_vec())
}

/// `GET path` with `Connection: close`.
pub async fn get(addr: SocketAddr, path: &str) -> (u16, String, Vec<u8>) {
    request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
    )
    .await
}

/// `GET path`, failing unless the status is `want` (showing the response);
/// returns the head and body.
pub async fn get_expecting(addr: SocketAddr, path: &str, want: u16) -> (String, Vec<u8>) {
    let (code, head, body) = get(addr, path).await;
    assert_eq!(
        code,
        want,
        "{path}: {head}{}",
        String::from_utf8_lossy(&body)
    );
    (head, body)
}

/// `/status` as JSON.
pub async fn status(addr: SocketAddr) -> serde_json::Value {
    let (_, body) = get_expecting(addr, "/status", 200).await;
    serde_json::from_slice(&body).expect("status is JSON")
}

/// Fails unless the server closes `io` (without sending anything) within
/// `within`.
pub async fn expect_closed<S: AsyncRead + Unpin>(mut io: S, within: Duration) {
    let mut buf = [0u8; 64];
    let r = tokio::time::timeout(within, io.read(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("closed by the server within {within:?}"));
    assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
}

/// A connection to `addr` with a receive buffer of `rcvbuf` bytes: a viewer
/// on a slow link, or one that stops reading, fills up after a few KiB.
pub async fn slow_link(addr: SocketAddr, rcvbuf: u32) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(rcvbuf).expect("SO_RCVBUF");
    socket.connect(addr).await.expect("connect")
}

/// A `slow_link` that has asked for `path` and reads nothing yet.
pub async fn slow_request(addr: SocketAddr, path: &str, rcvbuf: u32) -> TcpStream {
    let mut io = slow_link(addr, rcvbuf).await;
    let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n");
    io.write_all(req.as_bytes()).await.expect("send request");
    io
}

/// The value of header `name` (any case) in a response head.
pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

/// The `X-Timestamp` of a snapshot response.
pub fn timestamp(head: &str) -> f64 {
    header(head, "x-timestamp")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no X-Timestamp in {head}"))
}

/// Stream `name` in a `/status` document (`None`: the first).
pub fn stream_of(status: &serde_json::Value, name: Option<&str>) -> serde_json::Value {
    let streams = status["streams"].as_array().expect("streams array");
    match name {
        None => streams.first(),
        Some(name) => streams.iter().find(|s| s["name"] == name),
    }
    .unwrap_or_else(|| panic!("no stream {name:?} in {status}"))
    .clone()
}

/// Polls `/status` of `addr` until stream `name` (`None`: the first)
/// satisfies `check`; returns its entry. Fails after `within` with the
/// entry last seen.
pub async fn wait_stream(
    addr: SocketAddr,
    name: Option<&str>,
    within: Duration,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let wait = crate::common::Patience::new(within, what);
    loop {
        let entry = stream_of(&status(addr).await, name);
        if check(&entry) {
            return entry;
        }
        wait.not_yet_showing(&entry);
        tokio::time::sleep(crate::common::Patience::PAUSE).await;
    }
}

/// The client count of the first stream of `addr`.
pub async fn stream_clients(addr: SocketAddr) -> u64 {
    let st = status(addr).await;
    st["streams"][0]["clients"]
        .as_u64()
        .unwrap_or_else(|| panic!("no client count in {st}"))
}

/// Waits until the first stream of `addr` counts `want` clients; returns
/// how long that took.
pub async fn wait_clients(addr: SocketAddr, want: u64, within: Duration) -> Duration {
    let what = format!("{want} stream clients counted");
    crate::common::eventually(within, &what, || async move {
        stream_clients(addr).await == want
    })
    .await
}
