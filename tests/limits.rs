//! Client limits, the request head deadline, unix socket listeners and the
//! exposure warning, against the real server.

mod common;

use common::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `GET path` on a new TCP connection: the response head and a reader of
/// the body.
async fn open(addr: std::net::SocketAddr, path: &str) -> (String, FrameReader<TcpStream>) {
    open_stream(TcpStream::connect(addr).await.expect("connect"), path).await
}

#[tokio::test]
async fn max_clients_refuses_extra_streams_with_503() {
    let s = TestServer::start(&["--source", "pattern:160x120@30", "--max-clients", "2"]).await;
    let (h1, mut c1) = open(s.addr, "/stream").await;
    let (h2, _c2) = open(s.addr, "/streams/pattern/stream").await;
    assert!(h1.starts_with("HTTP/1.1 200 ") && h2.starts_with("HTTP/1.1 200 "));
    let (h3, _) = open(s.addr, "/?action=stream").await;
    assert!(h3.starts_with("HTTP/1.1 503 "), "{h3}");
    assert!(h3.contains("\r\nRetry-After: "), "{h3}");
    // Other requests are not stream clients.
    assert_eq!(get(s.addr, "/snapshot").await.0, 200);
    // The first two still stream; a slot frees up when one leaves.
    assert_eq!(c1.frames(2).await.len(), 2);
    drop(c1);
    wait_clients(s.addr, 1, Duration::from_secs(10)).await;
    // The slot is released as the connection task ends, just after the
    // stream's client count drops: allow it a moment.
    let admitted = std::cell::RefCell::new(None);
    let (addr, c4) = (s.addr, &admitted);
    eventually(
        Duration::from_secs(5),
        "a slot for a new stream",
        move || async move {
            let (h4, reader) = open(addr, "/stream").await;
            *c4.borrow_mut() = Some(reader).filter(|_| h4.starts_with("HTTP/1.1 200 "));
            c4.borrow().is_some()
        },
    )
    .await;
    let mut c4 = admitted.into_inner().expect("a stream");
    assert_eq!(c4.frames(1).await.len(), 1);
    s.stop().await;
}

#[tokio::test]
async fn streams_per_address_are_limited() {
    let s = TestServer::start(&[
        "--source",
        "pattern:160x120@30",
        "--max-streams-per-ip",
        "1",
    ])
    .await;
    let (h1, _c1) = open(s.addr, "/stream").await;
    assert!(h1.starts_with("HTTP/1.1 200 "), "{h1}");
    let (h2, mut c2) = open(s.addr, "/stream").await;
    assert!(h2.starts_with("HTTP/1.1 503 "), "{h2}");
    assert!(h2.contains("Retry-After"), "{h2}");
    let body = c2.read_to_end().await;
    assert!(String::from_utf8_lossy(&body).contains("address"));
    assert_eq!(get(s.addr, "/snapshot").await.0, 200);
    s.stop().await;
}

#[tokio::test]
async fn max_connections_answers_503_and_closes() {
    let s = TestServer::start(&["--source", "pattern:160x120@30", "--max-connections", "3"]).await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(TcpStream::connect(s.addr).await.expect("connect"));
    }
    // The server counts them as it accepts them (in order, but each
    // connection's task may start a little later).
    let addr = s.addr;
    eventually(
        Duration::from_secs(5),
        "a fourth connection refused",
        || async move { get(addr, "/status").await.0 == 503 },
    )
    .await;
    let (code, head, _) = get(s.addr, "/status").await;
    assert_eq!(code, 503, "{head}");
    assert!(
        head.contains("Retry-After") && head.contains("Connection: close"),
        "{head}"
    );
    drop(idle);
    eventually(
        Duration::from_secs(5),
        "served again after the idle ones left",
        || async { get(s.addr, "/status").await.0 == 200 },
    )
    .await;
    s.stop().await;
}

/// A client that sends its request a byte at a time, each byte well within
/// any per-read timeout, is still cut when the whole head takes too long.
#[tokio::test]
async fn a_slowly_trickled_head_is_cut_at_the_header_timeout() {
    let s = TestServer::start(&["--source", "pattern:160x120@30", "--header-timeout", "1"]).await;
    let mut io = TcpStream::connect(s.addr).await.expect("connect");
    let req =
        b"GET /snapshot HTTP/1.1\r\nHost: slowloris\r\nX-Padding: aaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let started = Instant::now();
    let mut cut = None;
    for &b in req.iter() {
        if io.write_all(&[b]).await.is_err() {
            cut = Some(started.elapsed());
            break;
        }
        // Between bytes, see whether the server has answered or closed.
        let mut buf = [0u8; 1024];
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(100), io.read(&mut buf)).await {
            let n = r.unwrap_or(0);
            let text = String::from_utf8_lossy(&buf[..n]);
            assert!(n == 0 || text.starts_with("HTTP/1.1 408 "), "{text}");
            cut = Some(started.elapsed());
            break;
        }
    }
    let cut = cut.expect("the server cut the trickling client before its head was complete");
    assert!(
        cut >= Duration::from_millis(900) && cut < Duration::from_secs(4),
        "cut after {cut:?}"
    );
    assert_eq!(get(s.addr, "/snapshot").await.0, 200);
    s.stop().await;
}

#[test]
fn unix_socket_listener_serves_and_cleans_up() {
    let path = temp_path("sock");
    // A stale socket file from a previous run that did not clean up.
    drop(std::os::unix::net::UnixListener::bind(&path).expect("bind stale"));
    assert!(path.exists());
    let spec = format!("unix:{}", path.display());
    let mut d = Daemon::start(
        &[
            "--listen",
            &spec,
            "--listen",
            "127.0.0.1:0",
            "--source",
            "pattern:160x120@30",
            "--max-streams-per-ip",
            "1",
        ],
        &[],
        2,
    );
    // TCP listeners are reported first.
    assert!(d.listening[0].starts_with("http://127.0.0.1:"));
    assert_eq!(d.listening[1], spec);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let io = tokio::net::UnixStream::connect(&path)
            .await
            .expect("connect");
        let (code, _, body) = exchange(
            io,
            b"GET /snapshot HTTP/1.1\r\nHost: proxy\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(code, 200);
        assert_eq!(decode(&body), (160, 120));
        // Everything behind the proxy shares one address: no per-address
        // limit applies.
        let mut streams = Vec::new();
        for _ in 0..2 {
            let io = tokio::net::UnixStream::connect(&path)
                .await
                .expect("connect");
            let (head, mut body) = open_stream(io, "/stream").await;
            assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
            assert_eq!(body.frames(1).await.len(), 1);
            streams.push(body);
        }
    });
    assert_eq!(d.terminate(), Some(0));
    assert!(!path.exists(), "socket file removed at exit");

    // Something that is not a socket is never removed.
    std::fs::write(&path, "precious").expect("write");
    let out = run(&["--listen", &spec]);
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a socket"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&path).expect("still there"),
        "precious"
    );
    let _ = std::fs::remove_file(&path);
}

#[test]
fn exposing_without_auth_warns() {
    let mut d = Daemon::start(&["--listen", "0.0.0.0:0"], &[], 1);
    assert!(d.listening[0].starts_with("http://0.0.0.0:"));
    eventually_blocking(Duration::from_secs(5), "the warning", || {
        d.stderr_text().contains("without --auth")
    });
    assert_eq!(d.terminate(), Some(0));

    // Everything the process wrote is in the log once it has exited.
    let mut d = Daemon::serve(&[]);
    assert_eq!(d.terminate(), Some(0));
    assert!(!d.stderr_text().contains("without --auth"));
}
