//! Fault tests against the built binary on 127.0.0.1: floods of idle
//! connections, clients that reset mid-stream, clients that never read,
//! malformed requests. Each is bounded in time; resource use is measured
//! from /proc.

mod common;

use common::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_neither_block_streaming_nor_stay_open() {
    raise_fd_limit(2100);
    let d = Daemon::serve(&["--source", "pattern:160x120@30", "--header-timeout", "1"]);
    let a = d.addr(0);
    let base = d.open_fds();
    let started = Instant::now();
    let connects: Vec<_> = (0..2000)
        .map(|_| tokio::spawn(TcpStream::connect(a)))
        .collect();
    let mut idle = Vec::new();
    for c in connects {
        idle.push(c.await.expect("task").expect("connect"));
    }
    // The server holds them all (one descriptor each).
    let mut most = 0;
    eventually(Duration::from_secs(5), "2000 connections accepted", || {
        most = most.max(d.open_fds());
        std::future::ready(most >= base + 1900)
    })
    .await;

    // A real client streams meanwhile.
    let t = Instant::now();
    let mut c = StreamClient::connect(a, "/stream").await;
    for _ in 0..10 {
        c.next_frame().await;
    }
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());

    // Every idle connection is closed by the server after the header timeout.
    for io in idle {
        expect_closed(io, Duration::from_secs(10)).await;
    }
    assert!(started.elapsed() >= Duration::from_millis(900));
    println!(
        "2000 idle connections: peak fds {most} (base {base}), all closed after {:?}",
        started.elapsed()
    );
    // The stream client is unaffected.
    c.next_frame().await;
    drop(c);
    eventually(Duration::from_secs(5), "descriptors released", || {
        std::future::ready(d.open_fds() <= base + 5)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_reset_mid_stream_leak_nothing() {
    raise_fd_limit(200);
    let d = Daemon::serve(&["--source", "pattern:160x120@30"]);
    let a = d.addr(0);
    // Warm up (first stream, status) before taking the baseline.
    let mut c = StreamClient::connect(a, "/stream").await;
    c.next_frame().await;
    drop(c);
    wait_clients(a, 0, Duration::from_secs(5)).await;
    let base_fds = d.open_fds();
    let base_rss = d.rss_kib();

    for _batch in 0..10 {
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                tokio::spawn(async move {
                    // One whole part, read strictly.
                    let mut c = StreamClient::connect(a, "/stream").await;
                    c.next_frame_checked().await;
                    c.reset();
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("client task");
        }
    }
    wait_clients(a, 0, Duration::from_secs(10)).await;
    eventually(
        Duration::from_secs(5),
        "descriptors back to baseline",
        || std::future::ready(d.open_fds() <= base_fds + 5),
    )
    .await;
    let st = status(a).await;
    assert!(
        st["streams"][0]["frames_delivered"].as_u64().unwrap_or(0) >= 1000,
        "{st}"
    );
    let grown = d.rss_kib().saturating_sub(base_rss);
    println!(
        "1000 reset clients: fds {base_fds} -> {}, RSS +{grown} KiB",
        d.open_fds()
    );
    assert!(grown < 32 * 1024, "RSS grew {grown} KiB");
    // Still serving.
    let mut c = StreamClient::connect(a, "/stream").await;
    c.next_frame().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_never_read_are_dropped_and_memory_stays_bounded() {
    let d = Daemon::serve(&[
        "--source",
        "pattern:640x480@30",
        "--send-timeout",
        "1",
        "--send-buffer",
        "16384",
    ]);
    let a = d.addr(0);
    let mut watcher = StreamClient::connect(a, "/stream").await;
    watcher.next_frame().await;
    let base_rss = d.rss_kib();

    let mut stalled = Vec::new();
    for _ in 0..50 {
        let io = common::slow_request(a, "/stream", 4096).await;
        stalled.push(io);
    }
    let started = Instant::now();
    let mut most = 0;
    let mut peak_rss = 0;
    loop {
        // The watcher keeps getting frames all the while.
        watcher.next_frame().await;
        peak_rss = peak_rss.max(d.rss_kib());
        let n = stream_clients(a).await;
        most = most.max(n);
        if n == 1 && most > 1 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "stalled clients not dropped in 10 s ({n} left)"
        );
    }
    let dropped_after = started.elapsed();
    assert!(
        most >= 40,
        "the stalled clients were streaming: most {most}"
    );
    assert!(
        dropped_after >= Duration::from_millis(800),
        "dropped after {dropped_after:?}, before the send timeout"
    );
    let grown = peak_rss.saturating_sub(base_rss);
    println!(
        "50 stalled clients: dropped after {dropped_after:?}, peak RSS +{grown} KiB, most {most}"
    );
    assert!(
        grown < 32 * 1024,
        "RSS grew {grown} KiB with 50 stalled clients"
    );
    // The server closed them: what the kernel buffered, then the end.
    for mut io in stalled {
        let mut rest = Vec::new();
        // Ok at the end, or a reset: either way the connection is over.
        let _ended = tokio::time::timeout(Duration::from_secs(5), io.read_to_end(&mut rest))
            .await
            .expect("closed within 5 s");
    }
    watcher.next_frame().await;
}

/// Deterministic pseudo-random bytes (xorshift), so a failure reproduces.
fn garbage(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Sends `raw` and returns the status code of the answer, if any.
async fn status_of(addr: SocketAddr, raw: Vec<u8>) -> Option<u16> {
    let mut io = TcpStream::connect(addr).await.expect("connect");
    // The server may answer and close before taking everything.
    let _ = io.write_all(&raw).await;
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), io.read_to_end(&mut got))
        .await
        .expect("answered and closed within 10 s");
    let text = String::from_utf8_lossy(&got);
    text.strip_prefix("HTTP/1.")
        .and_then(|t| t.get(2..5))
        .and_then(|c| c.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_4xx_and_never_a_panic() {
    let mut d = Daemon::serve(&["--source", "pattern:160x120@30", "--header-timeout", "1"]);
    let a = d.addr(0);
    let mut big = b"GET /stream HTTP/1.1\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 64 * 1024));
    big.extend_from_slice(b"\r\n\r\n");
    let cases: Vec<(&str, Vec<u8>, &[u16])> = vec![
        (
            "unknown method",
            b"BREW /stream HTTP/1.1\r\n\r\n".to_vec(),
            &[405],
        ),
        ("64 KiB header", big, &[431]),
        (
            "raw invalid UTF-8 path",
            b"GET /\xff\xfe/stream HTTP/1.1\r\n\r\n".to_vec(),
            &[400],
        ),
        (
            "escaped invalid UTF-8 path",
            b"GET /%C3%28 HTTP/1.1\r\n\r\n".to_vec(),
            &[400],
        ),
        ("HTTP/0.9", b"GET /\r\n".to_vec(), &[400, 408]),
        (
            "HTTP/2 preface",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
            &[400, 405, 404],
        ),
        (
            "NUL in header",
            b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n".to_vec(),
            &[400],
        ),
        ("no space", b"GET/HTTP/1.1\r\n\r\n".to_vec(), &[400]),
        (
            "bare LF lines",
            b"GET /nope HTTP/1.1\nHost: x\n\n".to_vec(),
            &[404],
        ),
        (
            "huge version",
            b"GET / HTTP/1.99999\r\n\r\n".to_vec(),
            &[400],
        ),
        (
            "too many headers",
            (0..100)
                .fold(b"GET / HTTP/1.1\r\n".to_vec(), |mut v, i| {
                    v.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
                    v
                })
                .into_iter()
                .chain(*b"\r\n")
                .collect(),
            &[431],
        ),
    ];
    for (what, raw, want) in cases {
        let got = status_of(a, raw).await;
        assert!(
            got.is_some_and(|c| want.contains(&c)),
            "{what}: got {got:?}, want {want:?}"
        );
    }
    // Random garbage, all at once.
    let tasks: Vec<_> = (0..200u64)
        .map(|seed| {
            let raw = garbage(seed, 1 + (seed as usize * 37) % 3000);
            tokio::spawn(async move { (seed, status_of(a, raw).await) })
        })
        .collect();
    for t in tasks {
        let (seed, got) = t.await.expect("task");
        assert!(
            got.is_some_and(|c| (400..500).contains(&c)),
            "garbage seed {seed}: {got:?}"
        );
    }
    // Still serving, and nothing panicked.
    let (code, _, body) = get(a, "/snapshot").await;
    assert_eq!(code, 200);
    decode(&body);
    let mut c = StreamClient::connect(a, "/stream").await;
    c.next_frame().await;
    drop(c);
    assert_eq!(d.terminate(), Some(0));
    let log = d.stderr_text();
    assert!(!log.contains("panicked"), "{log}");
}

/// A relayed source that goes down and comes back while 100 clients watch:
/// they see the placeholder meanwhile and live frames again after, and not
/// one of them is disconnected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_and_recovering_source_disconnects_no_client() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    // The upstream's socket stays ours throughout, so that it comes back
    // on the same port (see `TestServer::start_on`).
    let up_socket = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let up_addr = up_socket.local_addr().expect("addr");
    let upstream = ["--source", "pattern:160x120@10"];
    let up = TestServer::start_on(&up_socket, &upstream);
    let relay = TestServer::start(&["--source", &format!("http://{up_addr}/stream")]).await;
    let a = relay.addr;
    let online = |want: bool| async move {
        let st = status(a).await;
        st["streams"][0]["online"].as_bool() == Some(want)
    };
    eventually(Duration::from_secs(10), "relay online", || online(true)).await;

    let stop = Arc::new(AtomicBool::new(false));
    // When each client last got a frame.
    let last = Arc::new(std::sync::Mutex::new(vec![Instant::now(); 100]));
    let mut clients = Vec::new();
    for i in 0..100 {
        let mut c = StreamClient::connect(a, "/stream").await;
        c.next_frame().await;
        let (stop, last) = (stop.clone(), last.clone());
        // Each client reads until told to stop; `next_frame` panics (failing
        // the task) if the server closes the connection.
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                c.next_frame().await;
                last.lock().expect("lock")[i] = Instant::now();
            }
        }));
    }
    assert_eq!(stream_clients(a).await, 100);

    // The upstream goes away: the relay goes offline, and stays so for a
    // while (the clients get placeholders meanwhile).
    up.stop().await;
    eventually(Duration::from_secs(10), "relay offline", || online(false)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // It comes back on the same address; the relay reconnects by itself.
    let up = TestServer::start_on(&up_socket, &upstream);
    eventually(Duration::from_secs(15), "relay online again", || {
        online(true)
    })
    .await;
    let recovered = Instant::now();
    eventually(
        Duration::from_secs(10),
        "every client gets frames after the recovery",
        || std::future::ready(last.lock().expect("lock").iter().all(|t| *t >= recovered)),
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.expect("client stayed connected throughout");
    }
    relay.stop().await;
    up.stop().await;
}
