//! Connection floods from one address and memory held for slow readers,
//! against the built binary: one client holding many idle sockets, or
//! stalling many TLS handshakes, must not lock out clients from other
//! addresses nor make the server hold a descriptor per socket; memory the
//! kernel holds for frames appears in `/metrics`.
//!
//! Other clients come from 127.0.0.2: every 127.0.0.0/8 address reaches the
//! loopback interface on Linux, so one machine can play several hosts.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A TCP connection to `addr` from the local address `from`.
async fn connect_from(from: &str, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(format!("{from}:0").parse().expect("address"))
        .expect("bind the client address");
    socket.connect(addr).await.expect("connect")
}

/// One `GET path` from `from`; the status, or 0 when the connection was
/// closed without an answer.
async fn status_from(from: &str, addr: SocketAddr, path: &str) -> u16 {
    let mut io = connect_from(from, addr).await;
    let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    if io.write_all(req.as_bytes()).await.is_err() {
        return 0;
    }
    let mut all = Vec::new();
    match tokio::time::timeout(Duration::from_secs(10), io.read_to_end(&mut all)).await {
        Ok(_) if all.windows(4).any(|w| w == b"\r\n\r\n") => split_response(&all).0,
        _ => 0,
    }
}

/// Opens `n` connections to `d` from 127.0.0.1 that send nothing; returns
/// them and the server's descriptor count once it has taken in at least
/// `at_least` of them and the count stays the same.
async fn hold_sockets(d: &Daemon, n: usize, at_least: usize) -> (Vec<TcpStream>, usize) {
    let base = d.open_fds();
    let mut held = Vec::new();
    for _ in 0..n {
        held.push(connect_from("127.0.0.1", d.addr(0)).await);
    }
    let mut last = 0;
    eventually(Duration::from_secs(10), "server descriptors settle", || {
        let now = d.open_fds();
        let settled = now == last && now >= base + at_least;
        last = now;
        std::future::ready(settled)
    })
    .await;
    (held, last)
}

#[tokio::test]
async fn one_address_holding_idle_sockets_leaves_room_for_others() {
    raise_fd_limit(200);
    let d = Daemon::serve(&[
        "--source",
        "pattern:160x120@10",
        "--max-connections",
        "50",
        "--max-streams-per-ip",
        "2",
        "--header-timeout",
        "30",
    ]);
    let a = d.addr(0);
    let (fds_before, rss_before) = (d.open_fds(), d.rss_kib());
    // Its share is half the slots.
    let (idle, fds_held) = hold_sockets(&d, 60, 25).await;
    let mut by_status = BTreeMap::new();
    for _ in 0..30 {
        *by_status
            .entry(status_from("127.0.0.2", a, "/status").await)
            .or_insert(0) += 1;
    }
    // The idle client itself is told 503 beyond its share.
    let own = status_from("127.0.0.1", a, "/status").await;
    println!(
        "60 idle sockets from 127.0.0.1; 30 requests from 127.0.0.2: answers by status \
         {by_status:?}; another from 127.0.0.1: {own}; server fds {fds_before} before, \
         {fds_held} while held; RSS {rss_before} KiB before, {} KiB after",
        d.rss_kib()
    );
    assert_eq!(by_status.get(&200), Some(&30), "{by_status:?}");
    assert!(own == 503 || own == 0, "{own}");
    // Its share is half the slots; refusals beyond it are bounded.
    assert!(
        fds_held <= fds_before + 25 + 64,
        "{fds_held} fds held for 60 sockets"
    );
    drop(idle);
}

#[tokio::test]
async fn stalled_tls_handshakes_count_against_max_connections() {
    raise_fd_limit(200);
    let cert = Cert::new();
    let (c, k) = (
        cert.cert.display().to_string(),
        cert.key.display().to_string(),
    );
    let d = Daemon::serve(&[
        "--source",
        "pattern:160x120@10",
        "--tls-cert",
        &c,
        "--tls-key",
        &k,
        "--max-connections",
        "10",
        "--header-timeout",
        "30",
    ]);
    let a = d.addr(0);
    let (fds_before, rss_before) = (d.open_fds(), d.rss_kib());
    // Connections that never send a ClientHello; one address gets half
    // the slots.
    let (stalled, fds_held) = hold_sockets(&d, 100, 5).await;
    // A client from elsewhere still gets through.
    let io = connect_from("127.0.0.2", a).await;
    let mut tls = cert.handshake(io, "127.0.0.1").await;
    tls.write_all(b"GET /status HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .expect("send");
    let mut all = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut all)).await;
    let (code, _, _) = split_response(&all);
    println!(
        "100 stalled TLS handshakes with --max-connections 10: server fds {fds_before} before, \
         {fds_held} while stalled; RSS {rss_before} KiB before, {} KiB after; 1 request from \
         127.0.0.2 answered {code}",
        d.rss_kib()
    );
    assert_eq!(code, 200);
    assert!(
        fds_held <= fds_before + 10,
        "{} descriptors for stalled handshakes",
        fds_held - fds_before
    );
    drop(stalled);
}

/// The value of the unlabelled sample `name` in a metrics exposition.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test]
async fn memory_of_frames_held_for_slow_readers_is_in_metrics() {
    raise_fd_limit(100);
    let d = Daemon::serve(&[
        "--source",
        "pattern:1280x720@15",
        "--quality",
        "95",
        "--send-buffer",
        "4096",
    ]);
    let a = d.addr(0);
    let scrape = || async {
        let (code, _, body) = get(a, "/metrics").await;
        assert_eq!(code, 200);
        String::from_utf8(body).expect("utf-8")
    };
    let (_, _, jpeg) = get(a, "/snapshot").await;
    let (fds_before, rss_before) = (d.open_fds(), d.rss_kib());
    let idle = scrape().await;
    // Slow readers: a tiny receive buffer; each takes its first frame, then
    // stops reading, so the frames sent after it stay held for it.
    let mut readers = Vec::new();
    for _ in 0..50 {
        let mut io = slow_request(a, "/stream", 4096).await;
        let mut got = 0;
        let mut buf = vec![0u8; 64 * 1024];
        while got < jpeg.len() + 1024 {
            let n = io.read(&mut buf).await.expect("read");
            assert!(n > 0, "stream ended");
            got += n;
        }
        readers.push(io);
    }
    let value = |text: &str, name: &str| {
        metric(text, name).unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
    };
    // The frames sent after the first are held for them once the server
    // has written what the sockets take.
    eventually(
        Duration::from_secs(10),
        "frames held in memory files",
        || async { value(&scrape().await, "mjpegd_frame_files_bytes") >= jpeg.len() as f64 * 0.5 },
    )
    .await;
    let held = scrape().await;
    let (idle_bytes, held_bytes) = (
        value(&idle, "mjpegd_frame_files_bytes"),
        value(&held, "mjpegd_frame_files_bytes"),
    );
    println!(
        "frame of {} bytes; memfd bytes {idle_bytes} without clients, {held_bytes} ({} files) with \
         50 stalled readers; RSS {rss_before} KiB / {} KiB (process_resident_memory_bytes {}); \
         fds {fds_before} / {}",
        jpeg.len(),
        value(&held, "mjpegd_frame_files"),
        d.rss_kib(),
        value(&held, "process_resident_memory_bytes"),
        d.open_fds()
    );
    // Without clients no frame needs a memory file; with stalled readers
    // at least the frame they are being sent is held, whole.
    assert!(idle_bytes < jpeg.len() as f64 * 0.5, "{idle_bytes}");
    assert!(held_bytes >= jpeg.len() as f64 * 0.5, "{held_bytes}");
    drop(readers);
}
